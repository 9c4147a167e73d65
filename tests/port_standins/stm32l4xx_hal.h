/*
 * Stand-in for the STM32L4 HAL flash driver (stm32l4xx_hal_flash.h and
 * _flash_ex.h), with the rules of the chip (RM0351, 3.3): flash at
 * FLASH_BASE, memory-mapped for reads (here: 1 MiB mapped at 0x08000000 in
 * the test process); 2 KiB pages, two banks of 256 pages; programming and
 * erasing only between HAL_FLASH_Unlock() and HAL_FLASH_Lock(); a double
 * word programmed at an 8-byte aligned address, only where it reads
 * 0xFFFFFFFFFFFFFFFF (else PROGERR: HAL_ERROR), except for all zeros;
 * a page erase names a page of one bank (0..255).
 */
#ifndef MODELOTA_STANDIN_STM32L4XX_HAL_H
#define MODELOTA_STANDIN_STM32L4XX_HAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { HAL_OK = 0x00, HAL_ERROR = 0x01, HAL_BUSY = 0x02, HAL_TIMEOUT = 0x03 } HAL_StatusTypeDef;

#define FLASH_BASE 0x08000000UL
#define FLASH_PAGE_SIZE 0x800U
#define FLASH_BANK_1 0x01U
#define FLASH_BANK_2 0x02U
#define FLASH_TYPEERASE_PAGES 0x00U
#define FLASH_TYPEERASE_MASSERASE 0x01U
#define FLASH_TYPEPROGRAM_DOUBLEWORD 0x00U

typedef struct {
    uint32_t TypeErase;
    uint32_t Banks;
    uint32_t Page;
    uint32_t NbPages;
} FLASH_EraseInitTypeDef;

HAL_StatusTypeDef HAL_FLASH_Unlock(void);
HAL_StatusTypeDef HAL_FLASH_Lock(void);
HAL_StatusTypeDef HAL_FLASH_Program(uint32_t TypeProgram, uint32_t Address, uint64_t Data);
HAL_StatusTypeDef HAL_FLASHEx_Erase(FLASH_EraseInitTypeDef* pEraseInit, uint32_t* PageError);

/* test side: map the flash (all erased) at FLASH_BASE; 0 on success */
int stm32_standin_init(void);
void stm32_standin_wipe(void);

#ifdef __cplusplus
}
#endif

#endif
