/*
 * Stand-in for ESP-IDF's esp_partition API (components/esp_partition),
 * with the behaviour of NOR flash under it: one 64 KiB data partition
 * "model" (subtype 0x40); reads and writes anywhere inside it (a write can
 * only clear bits, as on the chip: writing over unerased bytes ANDs them,
 * with no error); erase_range() only on whole 4 KiB sectors
 * (ESP_ERR_INVALID_ARG otherwise); anything past the end is
 * ESP_ERR_INVALID_SIZE.
 */
#ifndef MODELOTA_STANDIN_ESP_PARTITION_H
#define MODELOTA_STANDIN_ESP_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int esp_err_t;
#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_SIZE 0x104
#define SPI_FLASH_SEC_SIZE 4096

typedef enum { ESP_PARTITION_TYPE_APP = 0x00, ESP_PARTITION_TYPE_DATA = 0x01 } esp_partition_type_t;
typedef enum {
    ESP_PARTITION_SUBTYPE_DATA_NVS = 0x02,
    ESP_PARTITION_SUBTYPE_ANY = 0xff
} esp_partition_subtype_t;

typedef struct {
    void* flash_chip;
    esp_partition_type_t type;
    esp_partition_subtype_t subtype;
    uint32_t address;
    uint32_t size;
    uint32_t erase_size;
    char label[17];
    bool encrypted;
    bool readonly;
} esp_partition_t;

const esp_partition_t* esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype,
                                                const char* label);
esp_err_t esp_partition_read(const esp_partition_t* partition, size_t src_offset, void* dst,
                             size_t size);
esp_err_t esp_partition_write(const esp_partition_t* partition, size_t dst_offset,
                              const void* src, size_t size);
esp_err_t esp_partition_erase_range(const esp_partition_t* partition, size_t offset,
                                    size_t size);

/* test side: the partition's bytes, and a new chip (all erased) */
extern uint8_t esp_standin_flash[64 * 1024];
void esp_standin_wipe(void);

#ifdef __cplusplus
}
#endif

#endif
