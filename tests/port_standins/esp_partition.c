/* tests/port_standins/esp_partition.h: a 64 KiB partition on NOR flash. */
#include "esp_partition.h"

#include <string.h>

#include "power.h"

uint8_t esp_standin_flash[64 * 1024];

static const esp_partition_t kModel = {
    NULL, ESP_PARTITION_TYPE_DATA, (esp_partition_subtype_t)0x40, 0x110000u,
    (uint32_t)sizeof(esp_standin_flash), SPI_FLASH_SEC_SIZE, "model", false, false};

void esp_standin_wipe(void) { memset(esp_standin_flash, 0xFF, sizeof esp_standin_flash); }

const esp_partition_t* esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype,
                                                const char* label) {
    if (type != kModel.type || (subtype != kModel.subtype && subtype != ESP_PARTITION_SUBTYPE_ANY)) {
        return NULL;
    }
    return (label == NULL || strcmp(label, kModel.label) == 0) ? &kModel : NULL;
}

static esp_err_t check(const esp_partition_t* p, size_t offset, size_t size) {
    if (p != &kModel) return ESP_ERR_INVALID_ARG;
    return offset > p->size || size > p->size - offset ? ESP_ERR_INVALID_SIZE : ESP_OK;
}

esp_err_t esp_partition_read(const esp_partition_t* p, size_t src_offset, void* dst, size_t size) {
    esp_err_t rc = check(p, src_offset, size);
    if (rc == ESP_OK) memcpy(dst, esp_standin_flash + src_offset, size);
    return rc;
}

esp_err_t esp_partition_write(const esp_partition_t* p, size_t dst_offset, const void* src,
                              size_t size) {
    esp_err_t rc = check(p, dst_offset, size);
    if (rc != ESP_OK) return rc;
    if (!modelota_standin_power_take()) return ESP_FAIL;
    const uint8_t* s = (const uint8_t*)src;
    for (size_t i = 0; i < size; ++i) {
        esp_standin_flash[dst_offset + i] &= s[i]; /* NOR: programming clears bits only */
    }
    return ESP_OK;
}

esp_err_t esp_partition_erase_range(const esp_partition_t* p, size_t offset, size_t size) {
    esp_err_t rc = check(p, offset, size);
    if (rc != ESP_OK) return rc;
    if (offset % SPI_FLASH_SEC_SIZE != 0 || size % SPI_FLASH_SEC_SIZE != 0) {
        return ESP_ERR_INVALID_ARG;
    }
    for (size_t s = 0; s < size; s += SPI_FLASH_SEC_SIZE) { /* sector by sector */
        if (!modelota_standin_power_take()) return ESP_FAIL;
        memset(esp_standin_flash + offset + s, 0xFF, SPI_FLASH_SEC_SIZE);
    }
    return ESP_OK;
}
