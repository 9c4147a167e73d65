/*
 * CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the same function
 * as zlib's crc32(): modelota_crc32(0, data, n) == zlib.crc32(data), and
 * chaining works the same way: crc32(crc32(0, a), b) == crc32(0, a + b).
 */
#ifndef MODELOTA_CRC32_H
#define MODELOTA_CRC32_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

uint32_t modelota_crc32(uint32_t crc, const uint8_t* data, size_t len);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_CRC32_H */
