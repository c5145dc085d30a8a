/* The firmware's board API on the host, for fuzzing the app and its SLCAN
 * transport: bytes in from a buffer, bytes out counted and checked, a
 * retained region that survives "resets" (a longjmp back to the driver,
 * which boots the app again on the same region), a tick counter. */
#include "host_board.h"

#include <stdlib.h>
#include <string.h>

const char board_name[] = "host-fuzz";

host_board_t host;

static int fuzz_getc(void *io)
{
    (void)io;
    if (host.in_pos >= host.in_len) return -1;
    return host.in[host.in_pos++];
}

static void fuzz_write(void *io, const uint8_t *bytes, size_t n)
{
    (void)io;
    for (size_t i = 0; i < n; i++) {
        /* SLCAN output is printable ASCII, CR or BELL, nothing else. */
        if (!((bytes[i] >= 0x20 && bytes[i] < 0x7F) || bytes[i] == '\r' || bytes[i] == '\a')) abort();
    }
    host.out_bytes += n;
}

void host_board_start(const uint8_t *data, size_t n)
{
    host.in = data;
    host.in_len = n;
    host.in_pos = 0;
    host.out_bytes = 0;
    host.resets = 0;
    host.ticks = 0;
    memset(host.retained, 0, sizeof host.retained);
}

void board_init(void)
{
    fw_slcan_init(&host.slcan, fuzz_getc, fuzz_write, 0, 1);
    host.transport.poll = fw_slcan_poll;
    host.transport.send = fw_slcan_send;
    host.transport.ctx = &host.slcan;
}

const fw_transport_t *board_transport(void) { return &host.transport; }
uint64_t board_ticks(void) { return host.ticks += 7u; }
uint32_t board_tick_hz(void) { return 1000u; }
uint32_t board_ticks_to_instructions(uint64_t ticks) { return (uint32_t)ticks; }
uint32_t board_irq_hold(void) { return 0; }
void board_irq_release(uint32_t held) { (void)held; }
void board_wait_for_event(void) {}

void *board_retained(size_t *size_bytes)
{
    *size_bytes = sizeof host.retained;
    return host.retained;
}

void board_reset(void)
{
    host.resets++;
    longjmp(host.reset_jump, 1);
}
