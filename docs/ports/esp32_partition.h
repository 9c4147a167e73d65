/* An ESP32 flash partition as ModelOTA storage (ESP-IDF esp_partition_*).
 * partitions.csv:  model, data, 0x40, , 64K
 * Erase unit: one 4 KiB sector; writes of 4 bytes (16 with flash encryption). */
#include "esp_partition.h"
#include "modelota.h"

static int part_read(const modelota_storage* s, uint32_t b, uint32_t off, uint8_t* buf,
                     uint32_t n) {
    const esp_partition_t* p = (const esp_partition_t*)s->context;
    return esp_partition_read(p, b * 4096u + off, buf, n) == ESP_OK ? 0 : -1;
}
static int part_prog(const modelota_storage* s, uint32_t b, uint32_t off, const uint8_t* buf,
                     uint32_t n) {
    const esp_partition_t* p = (const esp_partition_t*)s->context;
    return esp_partition_write(p, b * 4096u + off, buf, n) == ESP_OK ? 0 : -1;
}
static int part_erase(const modelota_storage* s, uint32_t b) {
    const esp_partition_t* p = (const esp_partition_t*)s->context;
    return esp_partition_erase_range(p, b * 4096u, 4096u) == ESP_OK ? 0 : -1;
}

static modelota_storage g_partition = {NULL, part_read, part_prog, part_erase, NULL,
                                       4, 4096, 0, 0xFF};

/* The "model" partition as storage, or NULL when the table has none. */
static const modelota_storage* partition_storage(void) {
    const esp_partition_t* p = esp_partition_find_first(
        ESP_PARTITION_TYPE_DATA, (esp_partition_subtype_t)0x40, "model");
    if (p == NULL) return NULL;
    g_partition.context = (void*)p;
    g_partition.block_count = (uint32_t)(p->size / 4096u);
    return &g_partition;
}
