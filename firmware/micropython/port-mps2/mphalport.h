/* The HAL of the mps2-an386 MicroPython port (hal.c). */
#ifndef BMSFIL_MPS2_MPHALPORT_H
#define BMSFIL_MPS2_MPHALPORT_H

#include <stddef.h>
#include <stdint.h>

/* No pins (and so no extmod/virtpin.h, which the sdist does not carry). */
#define mp_hal_pin_obj_t void *

static inline void mp_hal_set_interrupt_char(int c)
{
    (void)c;
}

mp_uint_t mp_hal_ticks_ms(void);
mp_uint_t mp_hal_ticks_us(void);
mp_uint_t mp_hal_ticks_cpu(void);
void mp_hal_delay_ms(mp_uint_t ms);
void mp_hal_delay_us(mp_uint_t us);

/* Board: UART0 (the SLCAN link, RX interrupt into a ring), UART1 (the
 * console: print() and tracebacks), SysTick (ticks, instruction counts). */
void mps2_hal_init(void);
size_t mps2_link_read(uint8_t *buf, size_t max);
void mps2_link_write(const uint8_t *bytes, size_t n);
int mps2_link_wait(uint32_t ms);
uint64_t mps2_ticks(void);
uint32_t mps2_ticks_to_instructions(uint64_t ticks);

#endif
