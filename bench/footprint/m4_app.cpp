/*
 * bench/bench_footprint.py: the same application as Footprint.ino on a bare
 * Cortex-M4 (the sim/boards/m4 startup, linker script and CMSDK UART0),
 * built with -DWITH_MODELOTA=0 and 1. A 1 KiB model runs from RAM, loaded
 * from its const factory copy (memory-mapped flash); each byte received is
 * an inference input; with ModelOTA a byte 'M' starts an update through the
 * core's C API (examples/CApi/model_update.c) and its status name is sent.
 */
#include <stdint.h>
#include <string.h>

#if WITH_MODELOTA
#include "modelota.h"
#endif
#include "Footprint/factory_weights.h"

namespace {

struct Uart {
    volatile uint32_t data;
    volatile uint32_t state; /* bit0 TX full, bit1 RX full */
    volatile uint32_t ctrl;
    volatile uint32_t intstatus;
    volatile uint32_t bauddiv;
};
Uart* const UART0 = reinterpret_cast<Uart*>(0x40004000u);

void put(uint8_t b) {
    while (UART0->state & 1u) {
    }
    UART0->data = b;
}

#if WITH_MODELOTA
void put_text(const char* s) {
    while (*s != '\0') put(static_cast<uint8_t>(*s++));
    put('\n');
}
#endif

void put_number(int32_t v) {
    char text[12];
    int n = 0;
    uint32_t u = v < 0 ? 0u - static_cast<uint32_t>(v) : static_cast<uint32_t>(v);
    do {
        text[n++] = static_cast<char>('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    if (v < 0) put('-');
    while (n > 0) put(static_cast<uint8_t>(text[--n]));
    put('\n');
}

int get() { return (UART0->state & 2u) ? static_cast<int>(UART0->data & 0xFFu) : -1; }

const uint8_t kFactoryWeights[1024] = FACTORY_WEIGHTS_INIT;
uint8_t g_weights[sizeof(kFactoryWeights)];

int32_t infer(uint8_t x) {
    int32_t acc = 0;
    for (uint32_t i = 0; i < sizeof(g_weights); ++i) {
        acc += static_cast<int32_t>(static_cast<int8_t>(g_weights[i])) *
                   static_cast<int32_t>((x + i) % 7u) - 3;
    }
    return acc;
}

#if WITH_MODELOTA
const uint8_t kFingerprint[16] = {0x4c, 0xa0, 0xcd, 0xb5, 0x22, 0x77, 0x17, 0xe0,
                                  0x3b, 0xeb, 0xf4, 0x41, 0x1d, 0x22, 0xd3, 0x94};
uint8_t g_chunk[128];
modelota_config g_cfg;
modelota_updater g_ota;

int update(uint8_t first) {
    uint8_t piece[32];
    modelota_begin(&g_ota);
    modelota_feed(&g_ota, &first, 1);
    while (modelota_bytes_wanted(&g_ota) > 0) {
        uint32_t want = modelota_bytes_wanted(&g_ota);
        uint32_t n = 0;
        for (uint32_t spins = 0; n < want && n < sizeof(piece) && spins < 1000000u; ++spins) {
            int c = get();
            if (c >= 0) piece[n++] = static_cast<uint8_t>(c);
        }
        if (n == 0) {
            modelota_abort(&g_ota, MODELOTA_TIMEOUT);
        } else {
            modelota_feed(&g_ota, piece, n);
        }
    }
    return modelota_finish(&g_ota);
}
#endif

}  // namespace

extern "C" void SysTick_Handler(void) {}

int main(void) {
    UART0->bauddiv = 16u;
    UART0->ctrl = 3u;
#if WITH_MODELOTA
    modelota_config_init(&g_cfg, modelota_target_ram(g_weights),
                         modelota_backup_flash(kFactoryWeights, 1), kFingerprint, g_chunk,
                         sizeof(g_chunk));
    modelota_source_read(&g_cfg.backup, 0, g_weights, sizeof(g_weights));
    modelota_init(&g_ota, &g_cfg);
#else
    memcpy(g_weights, kFactoryWeights, sizeof(g_weights));
#endif
    for (;;) {
        int c = get();
        if (c < 0) continue;
#if WITH_MODELOTA
        if (c == 'M') {
            put_text(modelota_status_str(update(static_cast<uint8_t>(c))));
            continue;
        }
#endif
        put_number(infer(static_cast<uint8_t>(c)));
    }
}
