/* mps2-an386 under QEMU: CMSDK APB UART0 carrying SLCAN, SysTick on the
 * 25 MHz CPU clock as the tick counter, system reset through AIRCR.
 *
 * Instruction counting: QEMU runs this board with -icount, so the virtual
 * clock, and with it SysTick, advances a fixed number of ticks per guest
 * instruction. board_init() measures that ratio on a straight run of 1024
 * NOPs (minus an empty run) and board_ticks_to_instructions() applies it,
 * so nothing here depends on the -icount shift QEMU was given. */
#include <stdint.h>

#include "fw/app.h"
#include "fw/board.h"
#include "fw/slcan.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* CMSDK APB UART0 */
#define UART0_BASE 0x40004000u
#define UART_DATA REG32(UART0_BASE + 0x00u)
#define UART_STATE REG32(UART0_BASE + 0x04u)
#define UART_CTRL REG32(UART0_BASE + 0x08u)
#define UART_INTCLEAR REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV REG32(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TXEN 0x1u
#define UART_CTRL_RXEN 0x2u
#define UART_CTRL_RXINTEN 0x8u
#define UART_INT_RX 0x2u
#define UART0_RX_IRQ 0u

/* System control */
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define NVIC_ISER0 REG32(0xE000E100u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)

#define SYSCLK_HZ 25000000u
#define SYSTICK_RELOAD 0xFFFFFFu
#define CAL_NOPS 1024u

const char board_name[] = "qemu-mps2-an386";

static volatile uint32_t systick_wraps;
/* Bytes received by the RX interrupt, taken by uart_getc (one producer,
 * one consumer, so no lock: each index is written by one side only). */
#define RX_RING 256u
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;
static uint64_t ticks_per_cal;  /* ticks for CAL_NOPS instructions */
static fw_slcan_t slcan;
static fw_transport_t transport;

/* The app keeps its state in the retained region (128 KB in link.ld). */
typedef char check_retained_fits[sizeof(fw_saved_t) <= 131072u ? 1 : -1];

extern uint8_t __retained_start[], __retained_end[];

void SysTick_Handler(void)
{
    systick_wraps++;
}

/* Moves the bytes the UART holds into the ring, as far as it has room.
 * Called from the RX interrupt, and by uart_getc with interrupts held off
 * (the ring's head is then still written by one side at a time). */
static void rx_pull(void)
{
    while ((UART_STATE & UART_STATE_RXFULL) && rx_head - rx_tail < RX_RING) {
        rx_ring[rx_head % RX_RING] = (uint8_t)UART_DATA;
        rx_head++;
    }
}

void Uart0Rx_Handler(void)
{
    UART_INTCLEAR = UART_INT_RX;
    rx_pull();
}

uint64_t board_ticks(void)
{
    /* Also right with interrupts held off (board_irq_hold): a wrap whose
     * interrupt is still pending is counted here, with VAL read after it. */
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

uint32_t board_tick_hz(void)
{
    return SYSCLK_HZ;
}

uint32_t board_ticks_to_instructions(uint64_t ticks)
{
    if (ticks_per_cal == 0u) return 0;
    return (uint32_t)((ticks * CAL_NOPS + ticks_per_cal / 2u) / ticks_per_cal);
}

static uint64_t time_nops(int with_nops)
{
    uint64_t t0 = board_ticks();
    if (with_nops) {
        __asm volatile(".rept 1024\n\tnop\n\t.endr" ::: "memory");
    }
    return board_ticks() - t0;
}

static void calibrate(void)
{
    uint64_t best_empty = ~(uint64_t)0, best_nops = ~(uint64_t)0;
    for (int i = 0; i < 4; i++) {
        uint64_t e = time_nops(0), n = time_nops(1);
        if (e < best_empty) best_empty = e;
        if (n < best_nops) best_nops = n;
    }
    /* Without -icount the ratio is meaningless; a real clock shows as a
     * ratio far from a fixed one. The harness only trusts the count when it
     * started QEMU with -icount itself. */
    ticks_per_cal = best_nops > best_empty ? best_nops - best_empty : 0u;
}

static int uart_getc(void *io)
{
    int c;
    (void)io;
    /* A byte the interrupt left in the UART because the ring was full raises
     * no new interrupt (QEMU delivers the next byte only once it is read),
     * so it is taken here, once the ring has room again: without this a pack
     * whose frames outran the ring (24 cells and more) stalled for good. */
    if (UART_STATE & UART_STATE_RXFULL) {
        __asm volatile("cpsid i" ::: "memory");
        rx_pull();
        __asm volatile("cpsie i" ::: "memory");
    }
    if (rx_head == rx_tail) return -1;
    c = rx_ring[rx_tail % RX_RING];
    rx_tail++;
    return c;
}

static void uart_write(void *io, const uint8_t *bytes, size_t n)
{
    (void)io;
    for (size_t i = 0; i < n; i++) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = bytes[i];
    }
}

void board_init(void)
{
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7u;  /* processor clock, interrupt on wrap, enabled */
    UART_BAUDDIV = 16u;
    UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    calibrate();
    fw_slcan_init(&slcan, uart_getc, uart_write, 0, 1);
    transport.poll = fw_slcan_poll;
    transport.send = fw_slcan_send;
    transport.ctx = &slcan;
}

const fw_transport_t *board_transport(void)
{
    return &transport;
}

void board_wait_for_event(void)
{
    /* The RX interrupt takes each byte as soon as QEMU delivers it (QEMU
     * hands this UART one byte at a time, the next only after the previous
     * one was read), so the CPU can sleep between them. Spinning instead
     * measured slower: it competes with QEMU's own I/O thread for the host. */
    __asm volatile("cpsid i" ::: "memory");
    if (rx_head == rx_tail) __asm volatile("wfi" ::: "memory");
    __asm volatile("cpsie i" ::: "memory");
}

void *board_retained(size_t *size_bytes)
{
    *size_bytes = (size_t)(__retained_end - __retained_start);
    return __retained_start;
}

void board_reset(void)
{
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = 0x05FA0004u;  /* VECTKEY | SYSRESETREQ */
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}
