/* What the application needs from a board (boards/<name>/board.c).
 *
 * A board brings the clock up, owns the transport (a UART carrying SLCAN or
 * a CAN controller), a free-running tick counter, a region of RAM that the
 * start-up code neither clears nor initialises (kept across a warm reset),
 * and a system reset. */
#ifndef FW_BOARD_H
#define FW_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "fw/frame.h"

/* Clocks, pins, transport, tick counter. Called once from main(). */
void board_init(void);

/* The board's transport, ready to poll and send after board_init(). */
const fw_transport_t *board_transport(void);

/* Free-running tick counter (64-bit, never wraps in practice) and its rate. */
uint64_t board_ticks(void);
uint32_t board_tick_hz(void);

/* Instructions executed in `ticks` ticks, or 0 when the board cannot know
 * (real silicon without an instruction counter). Emulated boards run QEMU
 * with -icount, where ticks are a fixed multiple of instructions. */
uint32_t board_ticks_to_instructions(uint64_t ticks);

/* Hold off interrupts (returns what to restore) and let them in again:
 * the app times each cell step with interrupts held off, so that an
 * interrupt (a byte arriving) never counts as the estimator's work. */
uint32_t board_irq_hold(void);
void board_irq_release(uint32_t held);

/* Sleep until something may have happened (a byte or frame arrived, the
 * tick counter advanced); returns at once if an event is already pending,
 * so that no wake-up is lost between a poll and the sleep. */
void board_wait_for_event(void);

/* Retained RAM: neither zeroed nor loaded at start-up, kept across a warm
 * reset, random after a power loss. */
void *board_retained(size_t *size_bytes);

/* Reset the whole chip as a watchdog would (retained RAM survives). */
void board_reset(void) __attribute__((noreturn));

/* Short name for the status output, e.g. "qemu-mps2-an386". */
extern const char board_name[];

#endif
