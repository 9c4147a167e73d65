/* Raw internal flash as ModelOTA storage (STM32L4 HAL): 2 KiB pages,
 * programmed a double word (8 bytes) at a time, only where erased; reads
 * are memory-mapped. BASE: the first page given to ModelOTA, here 256 KiB
 * into bank 1 (a page number counts within its bank: on a 1 MiB dual-bank
 * part bank 2 starts at 0x08080000, page 0 of FLASH_BANK_2). */
#include <string.h>

#include "modelota.h"
#include "stm32l4xx_hal.h"

#define BASE 0x08040000u
#define PAGE 2048u

static int fl_read(const modelota_storage* s, uint32_t b, uint32_t off, uint8_t* buf,
                   uint32_t n) {
    (void)s;
    memcpy(buf, (const void*)(uintptr_t)(BASE + b * PAGE + off), n);
    return 0;
}
static int fl_prog(const modelota_storage* s, uint32_t b, uint32_t off, const uint8_t* buf,
                   uint32_t n) {
    (void)s;
    uint32_t a = BASE + b * PAGE + off;
    int rc = 0;
    HAL_FLASH_Unlock();
    for (uint32_t i = 0; i < n && rc == 0; i += 8) { /* prog_size 8: n is a multiple */
        uint64_t dw;
        memcpy(&dw, buf + i, 8);
        if (HAL_FLASH_Program(FLASH_TYPEPROGRAM_DOUBLEWORD, a + i, dw) != HAL_OK) rc = -1;
    }
    HAL_FLASH_Lock();
    return rc;
}
static int fl_erase(const modelota_storage* s, uint32_t b) {
    (void)s;
    FLASH_EraseInitTypeDef e = {FLASH_TYPEERASE_PAGES, FLASH_BANK_1,
                                (BASE - FLASH_BASE) / PAGE + b, 1};
    uint32_t bad = 0;
    HAL_FLASH_Unlock();
    HAL_StatusTypeDef rc = HAL_FLASHEx_Erase(&e, &bad);
    HAL_FLASH_Lock();
    return rc == HAL_OK ? 0 : -1;
}

/* 32 pages (64 KiB) from BASE */
static const modelota_storage kFlash = {NULL, fl_read, fl_prog, fl_erase, NULL, 8, PAGE, 32, 0xFF};
