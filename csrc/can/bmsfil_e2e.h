/* End-to-end protection of the measurement frames (MeasPack, MeasCell):
 * the 4-bit crc field of csrc/can/bmsfil.dbc. Hand-written, beside the
 * codec generated from the DBC (which packs the crc field like any other
 * signal but knows nothing of its meaning).
 *
 * The CRC is CRC-4/G-704 (ITU-T G.704): polynomial x^4 + x + 1 (0x3), init
 * 0, reflected in and out, xorout 0; check value 0x7 over "123456789". It
 * runs over the 8 data bytes in order, each byte least significant bit
 * first (the contract's Intel bit order: frame bit 0 first, bit 63 last),
 * with the crc field (bits 12-15: the high nibble of byte 1) taken as 0.
 *
 * C99, no heap, no mutable state; the caller owns the 8 bytes. */
#ifndef BMSFIL_E2E_H
#define BMSFIL_E2E_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* First bit and width of the crc field in MeasPack and MeasCell. */
#define BMSFIL_E2E_CRC_START 12u
#define BMSFIL_E2E_CRC_LENGTH 4u

/* CRC-4/G-704 of `n` bytes (no field masked): the catalogue's function. */
uint8_t bmsfil_e2e_crc4(const uint8_t *data, size_t n);

/* The crc a measurement frame's 8 data bytes should carry (its crc field ignored). */
uint8_t bmsfil_e2e_frame_crc(const uint8_t data[8]);

/* Write the crc field of a packed measurement frame. */
void bmsfil_e2e_protect(uint8_t data[8]);

/* 0 when the frame's crc field matches its other 60 bits, -1 when not. */
int bmsfil_e2e_check(const uint8_t data[8]);

#ifdef __cplusplus
}
#endif

#endif
