/* A whole file as bytes, for the host drivers (exits 2 when unreadable). */
#ifndef MODELOTA_HOST_SLURP_H
#define MODELOTA_HOST_SLURP_H

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
