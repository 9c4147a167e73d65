/*
 * "key=value" lines for the board benchmarks, on whatever put(char) the
 * board's bench_io.h defined before including this (inside its anonymous
 * namespace).
 */
#ifndef MODELOTA_BENCH_PRINT_H
#define MODELOTA_BENCH_PRINT_H

void put_str(const char* s) {
    while (*s != 0) {
        put(*s++);
    }
}

void put_u32(uint32_t v) {
    char tmp[11];
    uint8_t n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + static_cast<uint8_t>(v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        put(tmp[--n]);
    }
}

void put_kv(const char* key, uint32_t v) {
    put_str(key);
    put('=');
    put_u32(v);
    put('\n');
}

#endif /* MODELOTA_BENCH_PRINT_H */
