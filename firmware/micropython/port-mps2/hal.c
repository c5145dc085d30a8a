/* The board under the MicroPython port: mps2-an386 as QEMU models it.
 *
 * UART0 (CMSDK APB UART, 0x40004000) is the SLCAN link to the harness: its
 * RX interrupt drains each byte into a ring at once (QEMU hands this UART
 * one byte at a time, the next only after the previous one was read; see
 * boards/qemu-mps2-an386/README.md). UART1 (0x40005000) is the console:
 * print() and tracebacks, which must not mix with the SLCAN stream.
 * SysTick runs on the 25 MHz CPU clock; under QEMU's -icount it advances a
 * fixed number of ticks per instruction, measured at boot on a straight
 * run of 1024 NOPs, as the bare-metal board does. */
#include <stdint.h>

#include "py/mpconfig.h"
#include "py/mphal.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define UART0_BASE 0x40004000u
#define UART1_BASE 0x40005000u
#define UART_DATA(b) REG32((b) + 0x00u)
#define UART_STATE(b) REG32((b) + 0x04u)
#define UART_CTRL(b) REG32((b) + 0x08u)
#define UART_INTCLEAR(b) REG32((b) + 0x0Cu)
#define UART_BAUDDIV(b) REG32((b) + 0x10u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u
#define UART_CTRL_RXINTEN 0x8u
#define UART_INT_RX 0x2u
#define UART0_RX_IRQ 0u

#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define NVIC_ISER0 REG32(0xE000E100u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)

#define SYSCLK_HZ 25000000u
#define SYSTICK_RELOAD 0xFFFFFFu
#define CAL_NOPS 1024u

void SysTick_Handler(void);
void Uart0Rx_Handler(void);

static volatile uint32_t systick_wraps;
#define RX_RING 1024u
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;
static uint64_t ticks_per_cal;

void SysTick_Handler(void)
{
    systick_wraps++;
}

void Uart0Rx_Handler(void)
{
    UART_INTCLEAR(UART0_BASE) = UART_INT_RX;
    while ((UART_STATE(UART0_BASE) & UART_STATE_RXFULL) && rx_head - rx_tail < RX_RING) {
        rx_ring[rx_head % RX_RING] = (uint8_t)UART_DATA(UART0_BASE);
        rx_head++;
    }
}

uint64_t mps2_ticks(void)
{
    uint32_t seen, wraps, value;
    do {
        seen = systick_wraps;
        wraps = seen;
        value = SYST_CVR;
        if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
            value = SYST_CVR;
            wraps++;
        }
    } while (seen != systick_wraps);
    return (uint64_t)wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

uint32_t mps2_ticks_to_instructions(uint64_t ticks)
{
    if (ticks_per_cal == 0u) {
        return 0;
    }
    return (uint32_t)((ticks * CAL_NOPS + ticks_per_cal / 2u) / ticks_per_cal);
}

static uint64_t time_nops(int with_nops)
{
    uint64_t t0 = mps2_ticks();
    if (with_nops) {
        __asm volatile(".rept 1024\n\tnop\n\t.endr" ::: "memory");
    }
    return mps2_ticks() - t0;
}

void mps2_hal_init(void)
{
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7u;
    UART_BAUDDIV(UART0_BASE) = 16u;
    UART_CTRL(UART0_BASE) = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
    UART_BAUDDIV(UART1_BASE) = 16u;
    UART_CTRL(UART1_BASE) = UART_CTRL_TXEN;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    uint64_t best_empty = ~(uint64_t)0, best_nops = ~(uint64_t)0;
    for (int i = 0; i < 4; i++) {
        uint64_t e = time_nops(0), n = time_nops(1);
        if (e < best_empty) best_empty = e;
        if (n < best_nops) best_nops = n;
    }
    ticks_per_cal = best_nops > best_empty ? best_nops - best_empty : 0u;
}

size_t mps2_link_read(uint8_t *buf, size_t max)
{
    size_t n = 0;
    while (n < max && rx_head != rx_tail) {
        buf[n++] = rx_ring[rx_tail % RX_RING];
        rx_tail++;
    }
    /* A byte the interrupt left behind (the ring was full): QEMU sends the
     * next only once this one is read. */
    __asm volatile("cpsid i" ::: "memory");
    while (n < max && rx_head == rx_tail && (UART_STATE(UART0_BASE) & UART_STATE_RXFULL)) {
        buf[n++] = (uint8_t)UART_DATA(UART0_BASE);
    }
    __asm volatile("cpsie i" ::: "memory");
    return n;
}

void mps2_link_write(const uint8_t *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (UART_STATE(UART0_BASE) & UART_STATE_TXFULL) {
        }
        UART_DATA(UART0_BASE) = bytes[i];
    }
}

/* Sleep until a byte has come in (1) or `ms` of (virtual) time have
 * passed (0). SysTick wakes the CPU at every wrap (0.67 s), so the timeout
 * is checked at least that often. Waking for each byte lets the
 * interpreter work on the bytes it has while QEMU's I/O thread hands over
 * the next ones: waiting for a whole line instead measured 10-25 % fewer
 * samples per second. */
int mps2_link_wait(uint32_t ms)
{
    uint64_t start = mps2_ticks();
    uint64_t span = (uint64_t)ms * (SYSCLK_HZ / 1000u);
    for (;;) {
        __asm volatile("cpsid i" ::: "memory");
        if (rx_head != rx_tail || (UART_STATE(UART0_BASE) & UART_STATE_RXFULL)) {
            __asm volatile("cpsie i" ::: "memory");
            return 1;
        }
        if (mps2_ticks() - start >= span) {
            __asm volatile("cpsie i" ::: "memory");
            return 0;
        }
        __asm volatile("wfi" ::: "memory");
        __asm volatile("cpsie i" ::: "memory");
    }
}

/* The console, UART1. */
mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        while (UART_STATE(UART1_BASE) & UART_STATE_TXFULL) {
        }
        UART_DATA(UART1_BASE) = (uint8_t)str[i];
    }
    return len;
}

int mp_hal_stdin_rx_chr(void)
{
    for (;;) {
        if (UART_STATE(UART1_BASE) & UART_STATE_RXFULL) {
            return (int)(UART_DATA(UART1_BASE) & 0xFFu);
        }
    }
}

mp_uint_t mp_hal_ticks_ms(void)
{
    return (mp_uint_t)(mps2_ticks() / (SYSCLK_HZ / 1000u));
}

mp_uint_t mp_hal_ticks_us(void)
{
    return (mp_uint_t)(mps2_ticks() / (SYSCLK_HZ / 1000000u));
}

mp_uint_t mp_hal_ticks_cpu(void)
{
    return (mp_uint_t)mps2_ticks();
}

void mp_hal_delay_us(mp_uint_t us)
{
    uint64_t start = mps2_ticks();
    while (mps2_ticks() - start < (uint64_t)us * (SYSCLK_HZ / 1000000u)) {
    }
}

void mp_hal_delay_ms(mp_uint_t ms)
{
    mp_hal_delay_us(ms * 1000u);
}
