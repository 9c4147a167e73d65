/* docs/ports/stm32_flash.h over tests/port_standins/stm32l4xx_hal.h */
#include "../../docs/ports/stm32_flash.h"

#include <stdlib.h>

#include "port.h"

const modelota_storage* port_open(uint32_t blocks) {
    return blocks <= kFlash.block_count ? &kFlash : NULL;
}
void port_wipe(void) {
    if (stm32_standin_init() != 0) abort(); /* maps the flash at FLASH_BASE */
}
void port_power_cycle(void) { HAL_FLASH_Lock(); }
