#include "bmsfil_e2e.h"

/* CRC-4/G-704 register after 4 more input bits, all 0, from register i:
 * the reflected polynomial 0xC applied bit by bit. */
static uint8_t crc4_nibble(uint8_t reg)
{
    static const uint8_t table[16] = {0x0u, 0xDu, 0x3u, 0xEu, 0x6u, 0xBu, 0x5u, 0x8u,
                                      0xCu, 0x1u, 0xFu, 0x2u, 0xAu, 0x7u, 0x9u, 0x4u};
    return table[reg & 0xFu];
}

static uint8_t crc4_byte(uint8_t reg, uint8_t byte)
{
    reg = crc4_nibble((uint8_t)(reg ^ (byte & 0xFu)));
    return crc4_nibble((uint8_t)(reg ^ (byte >> 4)));
}

uint8_t bmsfil_e2e_crc4(const uint8_t *data, size_t n)
{
    uint8_t reg = 0u;
    for (size_t i = 0; i < n; i++) reg = crc4_byte(reg, data[i]);
    return reg;
}

uint8_t bmsfil_e2e_frame_crc(uint16_t frame_id, const uint8_t data[8])
{
    /* the Data ID first: the 11-bit identifier, low byte then high byte */
    uint8_t reg = crc4_byte(0u, (uint8_t)(frame_id & 0xFFu));
    reg = crc4_byte(reg, (uint8_t)(frame_id >> 8));
    for (size_t i = 0; i < 8u; i++) {
        /* byte 1's high nibble is the crc field: taken as 0 */
        uint8_t byte = i == 1u ? (uint8_t)(data[i] & 0x0Fu) : data[i];
        reg = crc4_byte(reg, byte);
    }
    return reg;
}

void bmsfil_e2e_protect(uint16_t frame_id, uint8_t data[8])
{
    data[1] = (uint8_t)((data[1] & 0x0Fu) | (uint8_t)(bmsfil_e2e_frame_crc(frame_id, data) << 4));
}

int bmsfil_e2e_check(uint16_t frame_id, const uint8_t data[8])
{
    return (data[1] >> 4) == bmsfil_e2e_frame_crc(frame_id, data) ? 0 : -1;
}
