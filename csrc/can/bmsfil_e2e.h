/* End-to-end protection of the measurement frames (MeasPack, MeasCell):
 * the 4-bit crc field of csrc/can/bmsfil.dbc. Hand-written, beside the
 * codec generated from the DBC (which packs the crc field like any other
 * signal but knows nothing of its meaning).
 *
 * The CRC is CRC-4/G-704 (ITU-T G.704): polynomial x^4 + x + 1 (0x3), init
 * 0, reflected in and out, xorout 0; check value 0x7 over "123456789".
 * Contract bmsfil-can-4: it runs over a Data ID, the frame's 11-bit CAN
 * identifier as 2 bytes little-endian (low byte first), then the 8 data
 * bytes in order, each byte least significant bit first (the contract's
 * Intel bit order: frame bit 0 first, bit 63 last), with the crc field
 * (bits 12-15: the high nibble of byte 1) taken as 0.
 *
 * Why the Data ID: the CRC is linear, so crc(id, payload) = crc0(payload)
 * XOR K(id), where K(id) is the register after the 2 ID bytes carried through
 * 64 more zero bits (a bijection on registers). After the ID bytes the
 * register is 0x7 for MeasPack (0x100) and 0xB for MeasCell (0x101): both
 * nonzero, so an all-zero payload (whose crc field 0 would pass a CRC with
 * init 0 and no ID) is refused under either ID; and they differ, so a valid
 * payload of one frame arriving under the other's ID is always refused.
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

/* CRC-4/G-704 of `n` bytes (no field masked, no Data ID): the catalogue's function. */
uint8_t bmsfil_e2e_crc4(const uint8_t *data, size_t n);

/* The crc a measurement frame with 11-bit identifier `frame_id` and these 8
 * data bytes should carry (its crc field ignored). */
uint8_t bmsfil_e2e_frame_crc(uint16_t frame_id, const uint8_t data[8]);

/* Write the crc field of a packed measurement frame sent with `frame_id`. */
void bmsfil_e2e_protect(uint16_t frame_id, uint8_t data[8]);

/* 0 when the crc field of a frame received with `frame_id` matches its ID
 * and its other 60 bits, -1 when not. */
int bmsfil_e2e_check(uint16_t frame_id, const uint8_t data[8]);

#ifdef __cplusplus
}
#endif

#endif
