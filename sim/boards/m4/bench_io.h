/*
 * What the Cortex-M4 benchmarks (crypto_bench.cpp, decode_bench.cpp) share:
 * "key=value" lines on UART0, the SysTick clock, exit through semihosting.
 * Under `qemu-system-arm -icount shift=0` one SysTick tick at 25 MHz is 40
 * executed instructions. Included by one translation unit per program.
 */
#ifndef MODELOTA_M4_BENCH_IO_H
#define MODELOTA_M4_BENCH_IO_H

#include <stdint.h>

namespace {

struct BenchUart {
    volatile uint32_t data;
    volatile uint32_t state; /* bit0 TX full */
    volatile uint32_t ctrl;  /* bit0 TX enable */
    volatile uint32_t intstatus;
    volatile uint32_t bauddiv;
};
BenchUart* const BENCH_UART0 = reinterpret_cast<BenchUart*>(0x40004000u);

volatile uint32_t* const BENCH_SYST_CSR = reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t* const BENCH_SYST_RVR = reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t* const BENCH_SYST_CVR = reinterpret_cast<volatile uint32_t*>(0xE000E018u);

void put(char c) {
    while (BENCH_UART0->state & 1u) {
    }
    BENCH_UART0->data = static_cast<uint8_t>(c);
}

#include "../bench_print.h"

/* UART0 on, SysTick counting down from 0xFFFFFF on the core clock. */
void bench_io_start() {
    BENCH_UART0->bauddiv = 16u;
    BENCH_UART0->ctrl = 1u;
    *BENCH_SYST_RVR = 0xFFFFFFu;
    *BENCH_SYST_CVR = 0u;
    *BENCH_SYST_CSR = 5u; /* core clock, no interrupt, enabled */
}

/* One interval must stay below 2^24 ticks (671 M instructions at 40 per tick). */
uint32_t now() { return *BENCH_SYST_CVR; }
uint32_t ticks_since(uint32_t start) { return (start - *BENCH_SYST_CVR) & 0xFFFFFFu; }

void semihost_exit(uint32_t code) {
    register uint32_t r0 __asm__("r0") = 0x18u;    /* SYS_EXIT */
    register uint32_t r1 __asm__("r1") = 0x20026u; /* ADP_Stopped_ApplicationExit */
    (void)code;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
}

}  // namespace

extern "C" void SysTick_Handler(void) {}

#endif /* MODELOTA_M4_BENCH_IO_H */
