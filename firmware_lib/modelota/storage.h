/*
 * Storage HAL: everything a port supplies to keep weights in flash, EEPROM or
 * a file, in the shape of littlefs's lfs_config. One struct of callbacks and
 * geometry; the core never touches hardware itself. docs/PORTING.md has
 * examples for AVR EEPROM, an ESP32 partition, an SD file and raw flash.
 *
 * Addresses are (block, offset-in-block). Rules the core follows, and that a
 * port may rely on:
 *   - read:  any offset and size inside one block;
 *   - prog:  offset and size are multiples of prog_size, inside one block, and
 *            only on bytes that are erased since the block's last erase;
 *   - erase: sets every byte of the block to erased_value.
 * Callbacks return 0 on success and a negative value on failure (reported
 * as MODELOTA_STORAGE_IO). sync may be NULL when writes are durable at once.
 */
#ifndef MODELOTA_STORAGE_H
#define MODELOTA_STORAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct modelota_storage modelota_storage;

struct modelota_storage {
    void* context; /* for the port: device handle, file, partition... */
    int (*read)(const modelota_storage* s, uint32_t block, uint32_t off, uint8_t* buf,
                uint32_t size);
    int (*prog)(const modelota_storage* s, uint32_t block, uint32_t off, const uint8_t* buf,
                uint32_t size);
    int (*erase)(const modelota_storage* s, uint32_t block);
    int (*sync)(const modelota_storage* s);
    uint32_t prog_size;   /* program unit in bytes (1 for EEPROM, 4..16 for flash) */
    uint32_t block_size;  /* erase unit in bytes, a multiple of prog_size */
    uint32_t block_count; /* blocks in this storage */
    uint8_t erased_value; /* 0xFF for NOR flash, 0x00 for some EEPROM emulations */
};

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_STORAGE_H */
