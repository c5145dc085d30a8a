/* Board functions every Cortex-M board shares. */
#include "fw/board.h"

uint32_t board_irq_hold(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

void board_irq_release(uint32_t held)
{
    __asm volatile("msr primask, %0" ::"r"(held) : "memory");
}
