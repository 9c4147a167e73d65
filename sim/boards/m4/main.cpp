/*
 * ModelOTA on an emulated Cortex-M4 board (QEMU mps2-an386).
 *
 * A 512-byte RAM model restored from its const factory copy (memory-mapped
 * flash) is updated over CMSDK UART0 with the serial update protocol of
 * firmware_lib/modelota/link.h. HELLO/STATUS answer INFO with the version,
 * a CRC32 of the weights and the probe inference (board_model.h).
 *
 * Clock: SysTick at the 25 MHz core clock QEMU gives the MPS2 boards, one
 * interrupt per millisecond. QEMU runs SysTick from its virtual clock, which
 * follows host time, so the link's resume timeout is in real milliseconds.
 */
#include <stdint.h>
#include <string.h>

#include "../board_model.h"
#include "modelota/crc32.h"
#include "modelota/link.h"
#include "modelota/updater.h"

namespace {

/* CMSDK APB UART0 */
struct Uart {
    volatile uint32_t data;
    volatile uint32_t state; /* bit0 TX full, bit1 RX full */
    volatile uint32_t ctrl;  /* bit0 TX enable, bit1 RX enable */
    volatile uint32_t intstatus;
    volatile uint32_t bauddiv;
};
Uart* const UART0 = reinterpret_cast<Uart*>(0x40004000u);

/* SysTick */
volatile uint32_t* const SYST_CSR = reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t* const SYST_RVR = reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t* const SYST_CVR = reinterpret_cast<volatile uint32_t*>(0xE000E018u);
const uint32_t CORE_HZ = 25000000u;

volatile uint32_t g_ms = 0;

void uart_init() {
    UART0->bauddiv = 16u;
    UART0->ctrl = 3u;
}

void uart_put(uint8_t b) {
    while (UART0->state & 1u) {
    }
    UART0->data = b;
}

int uart_get() {
    if (UART0->state & 2u) {
        return static_cast<int>(UART0->data & 0xFFu);
    }
    return -1;
}

const uint8_t FACTORY[BOARD_MODEL_SIZE] = BOARD_FACTORY_INIT;
const uint8_t FINGERPRINT[16] = BOARD_FINGERPRINT_INIT;

uint8_t g_weights[BOARD_MODEL_SIZE];
uint8_t g_chunk[512];
uint8_t g_frame[512];
modelota_config g_cfg;
modelota_updater g_updater;
modelota_link g_link;

int io_write(void*, const uint8_t* data, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
        uart_put(data[i]);
    }
    return 0;
}

uint32_t io_now(void*) { return g_ms; }

uint32_t weights_crc(void*) { return modelota_crc32(0u, g_weights, sizeof(g_weights)); }

int32_t probe(void*) { return board_probe(g_weights, sizeof(g_weights)); }

}  // namespace

extern "C" void SysTick_Handler(void) { g_ms = g_ms + 1u; }

int main(void) {
    *SYST_RVR = CORE_HZ / 1000u - 1u;
    *SYST_CVR = 0u;
    *SYST_CSR = 7u; /* core clock, interrupt, enable */
    uart_init();

    memcpy(g_weights, FACTORY, sizeof(g_weights));
    memset(&g_cfg, 0, sizeof(g_cfg));
    g_cfg.target.ram = g_weights;
    g_cfg.target.size = sizeof(g_weights);
    g_cfg.backup.image = FACTORY;
    g_cfg.backup.version = BOARD_MODEL_VERSION;
    g_cfg.fingerprint = FINGERPRINT;
    g_cfg.current_version = BOARD_MODEL_VERSION;
    g_cfg.buffer = g_chunk;
    g_cfg.buffer_len = sizeof(g_chunk);

    modelota_link_config lc;
    memset(&lc, 0, sizeof(lc));
    lc.updater = &g_updater;
    lc.cfg = &g_cfg;
    lc.store = NULL;
    lc.io.write = io_write;
    lc.io.now_ms = io_now;
    lc.frame_buf = g_frame;
    lc.frame_buf_len = sizeof(g_frame);
    lc.resume_timeout_ms = 10000u;
    lc.window = 4u;
    lc.weights_crc = weights_crc;
    lc.probe = probe;
    if (modelota_init(&g_updater, &g_cfg) < 0 || modelota_link_init(&g_link, &lc) < 0) {
        for (;;) {
        }
    }

    for (;;) {
        int c = uart_get();
        if (c >= 0) {
            uint8_t b = static_cast<uint8_t>(c);
            modelota_link_rx(&g_link, &b, 1u);
        } else {
            modelota_link_poll(&g_link);
        }
    }
}
