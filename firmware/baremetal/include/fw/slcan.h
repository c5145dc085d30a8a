/* SLCAN (Lawicel ASCII) over a byte stream: the transport of boards without
 * a CAN controller, and of the emulated board, whose UART the harness
 * reaches with python-can's `slcan` interface.
 *
 * Host to firmware, one command per line ending in CR:
 *   tIIIL<data>   11-bit data frame   -> frame for the app, reply "z\r"
 *   TIIIIIIIIL... 29-bit data frame   -> passed on (the app refuses it), "Z\r"
 *   rIIIL, RIIIIIIIIL  remote frames  -> passed on (the app refuses them), "z\r"/"Z\r"
 *   O, L, C       open, open listen-only, close               -> "\r"
 *   S0..S8, sXXYY bit rate (accepted; there is no bus to time) -> "\r"
 *   V, N, F       version "V1013\r", serial "NBMSF\r", status flags "F00\r"
 *   Z0            timestamps off -> "\r"; Z1 (timestamps on) is refused
 * Anything else, a malformed line or a line longer than 31 characters is
 * answered with BELL (0x07) and dropped. Firmware to host: "tIIIL<data>\r".
 *
 * While the channel is closed, frames in either direction are dropped and
 * counted (as an adapter would not put them on the bus). `start_open`
 * opens it at boot: the emulated board's UART plays the adapter, and an
 * adapter does not close when the target behind it resets. */
#ifndef FW_SLCAN_H
#define FW_SLCAN_H

#include <stddef.h>
#include <stdint.h>

#include "fw/frame.h"

#define FW_SLCAN_LINE_MAX 32

typedef struct {
    /* Byte I/O of the board: next received byte or -1 when none is waiting;
     * write blocks until every byte is accepted. */
    int (*getc)(void *io);
    void (*write)(void *io, const uint8_t *bytes, size_t n);
    void *io;
    char line[FW_SLCAN_LINE_MAX];
    uint8_t len;
    uint8_t overlong;      /* discarding the rest of a line that did not fit */
    uint8_t open;          /* 1: open, 2: open listen-only, 0: closed */
    uint32_t dropped_rx;   /* frames received while closed or listen-only */
    uint32_t dropped_tx;   /* frames the app sent while closed */
    uint32_t bad_lines;    /* lines answered with BELL */
} fw_slcan_t;

void fw_slcan_init(fw_slcan_t *s, int (*getc)(void *io),
                   void (*write)(void *io, const uint8_t *bytes, size_t n), void *io, int start_open);

/* fw_transport_t functions; ctx is the fw_slcan_t. */
int fw_slcan_poll(void *ctx, fw_frame_t *f);
int fw_slcan_send(void *ctx, const fw_frame_t *f);

/* Parse one complete line (without its CR); exposed for tests and fuzzing.
 * Returns 1 and fills *f for a data or remote frame, 0 for a command
 * (already answered), -1 for a bad line (BELL sent). */
int fw_slcan_line(fw_slcan_t *s, const char *line, size_t len, fw_frame_t *f);

#endif
