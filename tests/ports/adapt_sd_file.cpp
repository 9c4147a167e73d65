/* docs/ports/sd_file.h over the SD stand-in (tests/arduino_shims/SD) */
#include "../../docs/ports/sd_file.h"

#include "port.h"

const modelota_storage* port_open(uint32_t blocks) {
    if (!SD.begin()) return nullptr;
    return sd_storage("/MODEL.BIN", blocks);
}
void port_wipe(void) { SDLib::shim::wipe(); }
void port_power_cycle(void) {
    SDLib::shim::power_cycle();
    g_file = File(); /* the sketch's File died with its RAM */
}
