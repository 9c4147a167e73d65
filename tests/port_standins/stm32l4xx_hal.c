/* tests/port_standins/stm32l4xx_hal.h: the flash of a 1 MiB dual-bank L4. */
#define _GNU_SOURCE
#include "stm32l4xx_hal.h"

#include <string.h>
#include <sys/mman.h>

#include "power.h"

#define FLASH_SIZE (1024u * 1024u)
#define BANK_PAGES 256u

static uint8_t* g_flash;
static int g_locked = 1;

int stm32_standin_init(void) {
    if (g_flash == NULL) {
        void* p = mmap((void*)FLASH_BASE, FLASH_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != (void*)FLASH_BASE) return -1;
        g_flash = (uint8_t*)p;
    }
    stm32_standin_wipe();
    return 0;
}

void stm32_standin_wipe(void) {
    memset(g_flash, 0xFF, FLASH_SIZE);
    g_locked = 1;
}

HAL_StatusTypeDef HAL_FLASH_Unlock(void) {
    g_locked = 0;
    return HAL_OK;
}

HAL_StatusTypeDef HAL_FLASH_Lock(void) {
    g_locked = 1;
    return HAL_OK;
}

HAL_StatusTypeDef HAL_FLASH_Program(uint32_t TypeProgram, uint32_t Address, uint64_t Data) {
    if (g_locked || TypeProgram != FLASH_TYPEPROGRAM_DOUBLEWORD || Address % 8u != 0 ||
        Address < FLASH_BASE || Address - FLASH_BASE > FLASH_SIZE - 8u) {
        return HAL_ERROR;
    }
    uint8_t* at = g_flash + (Address - FLASH_BASE);
    uint64_t now;
    memcpy(&now, at, 8);
    if (now != UINT64_MAX && Data != 0) return HAL_ERROR; /* PROGERR */
    if (!modelota_standin_power_take()) return HAL_ERROR;
    memcpy(at, &Data, 8);
    return HAL_OK;
}

HAL_StatusTypeDef HAL_FLASHEx_Erase(FLASH_EraseInitTypeDef* e, uint32_t* PageError) {
    *PageError = 0xFFFFFFFFu;
    if (g_locked || e->TypeErase != FLASH_TYPEERASE_PAGES ||
        (e->Banks != FLASH_BANK_1 && e->Banks != FLASH_BANK_2) || e->Page >= BANK_PAGES ||
        e->NbPages > BANK_PAGES - e->Page) {
        return HAL_ERROR;
    }
    uint32_t first = (e->Banks == FLASH_BANK_2 ? BANK_PAGES : 0u) + e->Page;
    for (uint32_t i = 0; i < e->NbPages; ++i) {
        if (!modelota_standin_power_take()) {
            *PageError = e->Page + i;
            return HAL_ERROR;
        }
        memset(g_flash + (first + i) * FLASH_PAGE_SIZE, 0xFF, FLASH_PAGE_SIZE);
    }
    return HAL_OK;
}
