/*
 * What tests/ports/port_driver.cpp needs from each port's adapter: the
 * port's storage over its stand-in (tests/port_standins), a new chip, and
 * what a reboot loses.
 */
#ifndef MODELOTA_TEST_PORT_H
#define MODELOTA_TEST_PORT_H

#include <stdint.h>

#include "storage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The port's storage after a (re)boot, NULL when it cannot be opened. */
const modelota_storage* port_open(uint32_t blocks);
/* A new chip, card or partition: everything erased or empty. */
void port_wipe(void);
/* Power cut: drop what the medium's driver held in RAM. */
void port_power_cycle(void);

#ifdef __cplusplus
}
#endif

#endif
