/* A classic CAN frame as the firmware moves it between transport and app. */
#ifndef FW_FRAME_H
#define FW_FRAME_H

#include <stdint.h>

typedef struct {
    uint32_t id;       /* 11-bit identifier (the contract uses no extended IDs) */
    uint8_t dlc;       /* 0..8 */
    uint8_t extended;  /* 1: 29-bit ID (never sent by the app; received ones are refused) */
    uint8_t remote;    /* 1: remote frame (refused by the app) */
    uint8_t data[8];
} fw_frame_t;

/* How frames reach and leave the app. Two implementations exist: SLCAN
 * (Lawicel ASCII) over a byte stream such as a UART (fw/slcan.h), and a
 * board's own CAN controller (boards/<name>/). */
typedef struct {
    /* 1: a frame was received into *f; 0: nothing pending; <0: a transport
     * fault (overrun, bus-off); the app reports it and calls again. */
    int (*poll)(void *ctx, fw_frame_t *f);
    /* 0: queued for sending (blocks while the queue is full); <0: not sent. */
    int (*send)(void *ctx, const fw_frame_t *f);
    void *ctx;
} fw_transport_t;

#endif
