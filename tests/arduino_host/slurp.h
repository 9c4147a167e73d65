/* A whole file as bytes, for the host test drivers (glue_driver.cpp,
 * tests/ports/port_driver.cpp); exits with 2 when it cannot be read. */
#ifndef MODELOTA_TEST_SLURP_H
#define MODELOTA_TEST_SLURP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <vector>

inline std::vector<uint8_t> slurp(const char* path) {
    std::vector<uint8_t> out;
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    int c;
    while ((c = fgetc(f)) != EOF) {
        out.push_back(static_cast<uint8_t>(c));
    }
    fclose(f);
    return out;
}

#endif
