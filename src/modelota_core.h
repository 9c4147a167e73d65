/*
 * The portable core alone (firmware_lib/modelota.h: Updater, wire format,
 * CRC32, status codes, Store, link), C and C++, for sketch files that use
 * the C API (examples/CApi). Outside Arduino, put firmware_lib/ on the
 * include path and #include "modelota.h" instead.
 */
#ifndef MODELOTA_CORE_ARDUINO_H
#define MODELOTA_CORE_ARDUINO_H

#include "../firmware_lib/modelota.h"

#endif /* MODELOTA_CORE_ARDUINO_H */
