/* docs/ports/esp32_partition.h over tests/port_standins/esp_partition.h */
#include "../../docs/ports/esp32_partition.h"

#include "port.h"

const modelota_storage* port_open(uint32_t blocks) {
    const modelota_storage* s = partition_storage();
    return s != NULL && blocks <= s->block_count ? s : NULL;
}
void port_wipe(void) { esp_standin_wipe(); }
void port_power_cycle(void) {}
