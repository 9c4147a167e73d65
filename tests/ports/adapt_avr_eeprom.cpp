/* docs/ports/avr_eeprom.h over tests/port_standins/EEPROM.h */
#include "../../docs/ports/avr_eeprom.h"

#include "port.h"

const modelota_storage* port_open(uint32_t blocks) {
    return blocks <= kEeprom.block_count ? &kEeprom : nullptr;
}
void port_wipe(void) { EEPROM.wipe(); }
void port_power_cycle(void) {}
