/*
 * v2 decode benchmark for QEMU mps2-an386 (Cortex-M4), built and run by
 * bench/bench_size.py (not part of the board firmware in main.cpp). The
 * measuring itself is in ../decode_bench.h.
 *
 * Timer: SysTick on the 25 MHz core clock. Under `qemu-system-arm -icount
 * shift=0` QEMU's virtual clock advances 1 ns per executed instruction, so
 * instructions = ticks * 40 (bench_size.py converts). Prints "key=value"
 * lines on UART0, then exits QEMU through semihosting (needs -semihosting).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BENCH_ROM /* the M4 reads its flash like memory */

namespace {

struct BenchUart {
    volatile uint32_t data;
    volatile uint32_t state; /* bit0 TX full */
    volatile uint32_t ctrl;  /* bit0 TX enable */
    volatile uint32_t intstatus;
    volatile uint32_t bauddiv;
};
BenchUart* const kUart0 = reinterpret_cast<BenchUart*>(0x40004000u);
volatile uint32_t* const kSystCsr = reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t* const kSystRvr = reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t* const kSystCvr = reinterpret_cast<volatile uint32_t*>(0xE000E018u);

void put(char c) {
    while (kUart0->state & 1u) {
    }
    kUart0->data = static_cast<uint8_t>(c);
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
    unsigned n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        put(tmp[--n]);
    }
    put('\n');
}

/* SysTick counts down from 0xFFFFFF; one interval stays far below 2^24 ticks. */
uint32_t bench_now() { return *kSystCvr; }
uint32_t bench_elapsed(uint32_t start) { return (start - *kSystCvr) & 0xFFFFFFu; }

void bench_rom_read(void* dst, const void* src, uint32_t n) { memcpy(dst, src, n); }

}  // namespace

#include "../decode_bench.h"

namespace {

void semihost_exit() {
    register uint32_t r0 __asm__("r0") = 0x18u;    /* SYS_EXIT */
    register uint32_t r1 __asm__("r1") = 0x20026u; /* ADP_Stopped_ApplicationExit */
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
}

}  // namespace

extern "C" void SysTick_Handler(void) {}

int main(void) {
    kUart0->bauddiv = 16u;
    kUart0->ctrl = 1u;
    *kSystRvr = 0xFFFFFFu;
    *kSystCvr = 0u;
    *kSystCsr = 5u; /* core clock, no interrupt, enabled */
    uint32_t t = bench_now();
    bench_kv("empty", bench_elapsed(t));
    bench_decoder_cases();
    bench_applies_run();
    put_str("done\n");
    semihost_exit();
    for (;;) {
    }
}
