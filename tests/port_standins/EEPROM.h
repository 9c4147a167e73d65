/*
 * Stand-in for the AVR core's EEPROM library (EEPROM.h) with its semantics:
 * 4 KiB (a Mega's E2END 4095), byte reads and byte writes, no erase;
 * update() writes only a byte that differs (and only that costs a write).
 * An index outside the EEPROM stops the program: a port must not do that.
 */
#ifndef MODELOTA_STANDIN_EEPROM_H
#define MODELOTA_STANDIN_EEPROM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "power.h"

#ifndef E2END
#define E2END 4095
#endif

struct EEPROMClass {
    uint8_t read(int idx) { return cell(idx); }
    void write(int idx, uint8_t val) {
        uint8_t& c = cell(idx);
        if (modelota_standin_power_take()) {
            c = val;
            ++writes;
        }
    }
    void update(int idx, uint8_t val) {
        if (cell(idx) != val) write(idx, val);
    }
    uint16_t length() { return E2END + 1; }

    /* test side */
    void wipe() { memset(bytes, 0xFF, sizeof bytes); } /* a new chip reads 0xFF */
    uint8_t bytes[E2END + 1];
    unsigned long writes;

private:
    uint8_t& cell(int idx) {
        if (idx < 0 || idx > E2END) {
            fprintf(stderr, "EEPROM index %d outside 0..%d\n", idx, E2END);
            abort();
        }
        return bytes[idx];
    }
};

static EEPROMClass EEPROM;

#endif
