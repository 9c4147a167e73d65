/*
 * Host-side helpers for the native simulation build: a RAM-backed weight
 * region driven through the callback interface (the path flash and EEPROM
 * ports take), with failure injection for StorageIo tests.
 */
#ifndef MODELOTA_SIM_STORAGE_H
#define MODELOTA_SIM_STORAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sim_region {
    uint8_t* bytes;
    uint32_t size;
    uint32_t reads;
    uint32_t writes;
    int32_t fail_write_at; /* fail the Nth write (0-based) when >= 0 */
    int32_t fail_read_at;  /* fail the Nth read when >= 0 */
} sim_region;

int sim_region_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
int sim_region_write(void* ctx, uint32_t offset, const uint8_t* src, uint32_t len);

#ifdef __cplusplus
}
#endif

#endif
