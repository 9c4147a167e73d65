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

#include "bench_io.h"

namespace {

void bench_kv(const char* key, uint32_t v) { put_kv(key, v); }
uint32_t bench_now() { return now(); }
uint32_t bench_elapsed(uint32_t start) { return ticks_since(start); }
void bench_rom_read(void* dst, const void* src, uint32_t n) { memcpy(dst, src, n); }

}  // namespace

#include "../decode_bench.h"

int main(void) {
    bench_io_start();
    uint32_t t = bench_now();
    bench_kv("empty", bench_elapsed(t));
    bench_decoder_cases();
    bench_applies_run();
    put_str("done\n");
    semihost_exit(0u);
    for (;;) {
    }
}
