#ifndef HOST_BOARD_H
#define HOST_BOARD_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "fw/app.h"
#include "fw/board.h"
#include "fw/slcan.h"

typedef struct {
    const uint8_t *in;
    size_t in_len, in_pos;
    size_t out_bytes;
    unsigned resets;
    uint64_t ticks;
    jmp_buf reset_jump;
    fw_slcan_t slcan;
    fw_transport_t transport;
    uint64_t retained[(sizeof(fw_saved_t) + 7u) / 8u];  /* word-aligned, as on a board */
} host_board_t;

extern host_board_t host;

/* A fresh board (retained RAM zeroed, as after power-on) reading `data`. */
void host_board_start(const uint8_t *data, size_t n);

#endif
