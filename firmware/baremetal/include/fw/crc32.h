/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320, as zlib's crc32):
 * guards the state kept in retained RAM. Nibble table: 64 bytes of flash. */
#ifndef FW_CRC32_H
#define FW_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* crc = fw_crc32(0, p, n) for a whole buffer; chain by passing the result. */
uint32_t fw_crc32(uint32_t crc, const void *data, size_t n);

#endif
