/*
 * v2 decode benchmark for the ATmega2560 at 16 MHz in simavr (cycle
 * accurate), built and run by bench/bench_size.py (plain avr-libc, no
 * Arduino core). The measuring itself is in ../decode_bench.h.
 *
 * Timer: Timer1 at the CPU clock (no prescaler) plus an overflow count:
 * bench_elapsed() is in CPU cycles. The vectors sit in flash (PROGMEM) and
 * are copied out with memcpy_P, as a sketch would read a payload it holds
 * there. Prints "key=value" lines on USART0 and ends with "done"; simavr
 * stops when the CPU sleeps with interrupts off.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BENCH_ROM PROGMEM

#include "bench_io.h"

namespace {

void bench_kv(const char* key, uint32_t v) { put_kv(key, v); }
uint32_t bench_now() { return now(); }
uint32_t bench_elapsed(uint32_t start) { return now() - start; }
void bench_rom_read(void* dst, const void* src, uint32_t n) {
    memcpy_P(dst, src, static_cast<size_t>(n));
}

}  // namespace

#include "../decode_bench.h"

int main(void) {
    bench_io_start(1u << CS10); /* Timer1 at the CPU clock: cycles */
    uint32_t t = bench_now();
    bench_kv("empty", bench_elapsed(t));
    bench_decoder_cases();
    bench_applies_run();
    bench_io_stop();
    for (;;) {
    }
}
