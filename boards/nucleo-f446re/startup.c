/* NUCLEO-F446RE start-up: the vector table and the reset handler.
 *
 * The table holds the Cortex-M4 core exceptions and the device interrupts up
 * to the last one the board uses (CAN1 RX0, IRQ 20); no other interrupt is
 * ever enabled. Everything not handled by board.c lands in Default_Handler,
 * which spins so that a debugger finds the core there (IPSR says which). */
#include <stdint.h>

#include "stm32f446.h"

/* From link.ld. */
extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end;
extern uint32_t __bss_start, __bss_end;

extern int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void);

#define WEAK_DEFAULT __attribute__((weak, alias("Default_Handler")))
void NMI_Handler(void) WEAK_DEFAULT;
void HardFault_Handler(void) WEAK_DEFAULT;
void MemManage_Handler(void) WEAK_DEFAULT;
void BusFault_Handler(void) WEAK_DEFAULT;
void UsageFault_Handler(void) WEAK_DEFAULT;
void SVC_Handler(void) WEAK_DEFAULT;
void DebugMon_Handler(void) WEAK_DEFAULT;
void PendSV_Handler(void) WEAK_DEFAULT;
void SysTick_Handler(void) WEAK_DEFAULT;
void CAN1_RX0_IRQHandler(void) WEAK_DEFAULT;

typedef void (*vector_t)(void);

#define N_IRQ_VECTORS (IRQ_CAN1_RX0 + 1u)

typedef struct {
    uint32_t *initial_sp;
    vector_t core[15];               /* exceptions 1..15 */
    vector_t irq[N_IRQ_VECTORS];     /* device interrupts 0..20 */
} vector_table_t;

#define D Default_Handler
__attribute__((section(".isr_vector"), used))
const vector_table_t vector_table = {
    &__stack_top,
    {
        Reset_Handler, NMI_Handler, HardFault_Handler, MemManage_Handler, BusFault_Handler,
        UsageFault_Handler, 0, 0, 0, 0, SVC_Handler, DebugMon_Handler, 0, PendSV_Handler,
        SysTick_Handler,
    },
    {
        /* 0 WWDG .. 19 CAN1_TX: never enabled */
        D, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D,
        CAN1_RX0_IRQHandler,     /* 20 */
    },
};
#undef D

void Reset_Handler(void)
{
    /* Full access to CP10/CP11 before any floating-point instruction: the
     * code is built for the hard-float ABI, so main() may use s-registers
     * from its first instruction. */
    SCB_CPACR |= SCB_CPACR_CP10_CP11_FULL;
    __asm volatile("dsb\n\tisb" ::: "memory");

    SCB_VTOR = (uint32_t)(uintptr_t)&vector_table;

    /* volatile: keeps the compiler from turning the loops into memcpy/memset
     * calls before .data exists. */
    {
        const uint32_t *src = &__data_load;
        volatile uint32_t *dst = &__data_start;
        while (dst < &__data_end) *dst++ = *src++;
    }
    {
        volatile uint32_t *dst = &__bss_start;
        while (dst < &__bss_end) *dst++ = 0u;
    }
    /* The retained region (__retained_start .. __retained_end) is left alone. */

    (void)main();
    for (;;) {
    }
}

void Default_Handler(void)
{
    for (;;) {
    }
}
