/*
 * What the ATmega2560 benchmarks (crypto_bench.cpp, decode_bench.cpp) share
 * under simavr at 16 MHz: "key=value" lines on USART0, Timer1 with an
 * overflow count as the clock, and the stop (simavr ends when the CPU
 * sleeps with interrupts off). Included by one translation unit per program.
 */
#ifndef MODELOTA_AVR_BENCH_IO_H
#define MODELOTA_AVR_BENCH_IO_H

#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <stdint.h>

namespace {

volatile uint16_t g_overflows = 0;

void put(char c) {
    while (!(UCSR0A & (1u << UDRE0))) {
    }
    UDR0 = static_cast<uint8_t>(c);
}

#include "../bench_print.h"

/* USART0 at 115200, Timer1 with TCCR1B = tccr1b (the clock select) and its
 * overflow interrupt on. */
void bench_io_start(uint8_t tccr1b) {
    UBRR0 = 8u;
    UCSR0B = (1u << TXEN0);
    TCCR1A = 0;
    TCCR1B = tccr1b;
    TIMSK1 = (1u << TOIE1);
    sei();
}

/* Timer1 ticks since start, 32 bits with the overflow count. */
uint32_t now() {
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

/* "done", then stop simavr. */
void bench_io_stop() {
    put_str("done\n");
    while (!(UCSR0A & (1u << TXC0))) {
    }
    cli();
    sleep_cpu(); /* simavr stops on sleep with interrupts off */
}

}  // namespace

ISR(TIMER1_OVF_vect) { g_overflows = static_cast<uint16_t>(g_overflows + 1u); }

#endif /* MODELOTA_AVR_BENCH_IO_H */
