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

namespace {

volatile uint16_t g_overflows = 0;

void put(char c) {
    while (!(UCSR0A & (1u << UDRE0))) {
    }
    UDR0 = static_cast<uint8_t>(c);
}

void put_str(const char* s) {
    while (*s != 0) {
        put(*s++);
    }
}

void bench_kv(const char* key, uint32_t v) {
    put_str(key);
    put('=');
    char tmp[11];
    uint8_t n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + static_cast<uint8_t>(v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        put(tmp[--n]);
    }
    put('\n');
}

uint32_t bench_now() {
    uint8_t s = SREG;
    cli();
    uint16_t t = TCNT1;
    uint16_t o = g_overflows;
    if ((TIFR1 & (1u << TOV1)) && t < 0x8000u) {
        ++o; /* overflowed between the reads, ISR not run yet */
    }
    SREG = s;
    return (static_cast<uint32_t>(o) << 16) | t;
}

uint32_t bench_elapsed(uint32_t start) { return bench_now() - start; }

void bench_rom_read(void* dst, const void* src, uint32_t n) {
    memcpy_P(dst, src, static_cast<size_t>(n));
}

}  // namespace

#include "../decode_bench.h"

ISR(TIMER1_OVF_vect) { g_overflows = static_cast<uint16_t>(g_overflows + 1u); }

int main(void) {
    UBRR0 = 8u;
    UCSR0B = (1u << TXEN0);
    TCCR1A = 0;
    TCCR1B = (1u << CS10); /* clk / 1 */
    TIMSK1 = (1u << TOIE1);
    sei();
    uint32_t t = bench_now();
    bench_kv("empty", bench_elapsed(t));
    bench_decoder_cases();
    bench_applies_run();
    put_str("done\n");
    while (!(UCSR0A & (1u << TXC0))) {
    }
    cli();
    sleep_cpu();
    for (;;) {
    }
}
