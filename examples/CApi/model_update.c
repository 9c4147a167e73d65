/*
 * ModelOTA's core API from C (or C++), without the Arduino glue: what any
 * firmware needs to apply a payload from any byte source. CApi.ino feeds it
 * Serial; outside Arduino, put firmware_lib/ on the include path and
 * #include "modelota.h" instead of <modelota_core.h>.
 */
#include <modelota_core.h>

#include "model_data.h" /* factory_weights[] (MODELOTA_FLASH), model_fingerprint[16] */
#include "model_update.h"

uint8_t model_weights[sizeof factory_weights]; /* what the model reads, in RAM */
static uint8_t chunk_buf[128];                 /* >= 96 and >= the payload's chunks */
static modelota_config cfg;
static modelota_updater ota;

int model_setup(void) {
    /* the weights live in RAM; the last good ones are the factory array in
     * flash (modelota_backup_flash reads it with memcpy_P on AVR), version 1 */
    modelota_config_init(&cfg, modelota_target_ram(model_weights, sizeof model_weights),
                         modelota_backup_flash(factory_weights, sizeof factory_weights, 1),
                         model_fingerprint, chunk_buf, sizeof chunk_buf);
    int st = modelota_source_read(&cfg.backup, 0, model_weights, sizeof model_weights);
    return st == MODELOTA_OK ? modelota_init(&ota, &cfg) : st;
}

int model_update(model_read_fn read_some) {
    uint8_t piece[32];
    modelota_begin(&ota);
    while (modelota_bytes_wanted(&ota) > 0) { /* 0 once all checked out, or refused */
        uint32_t want = modelota_bytes_wanted(&ota);
        uint32_t n = read_some(piece, want < sizeof piece ? want : (uint32_t)sizeof piece);
        if (n == 0) {
            modelota_abort(&ota, MODELOTA_TIMEOUT); /* the source went silent */
        } else {
            modelota_feed(&ota, piece, n); /* < 0: refused, the old weights are back */
        }
    }
    return modelota_finish(&ota); /* MODELOTA_OK: the new weights are in place */
}

uint32_t model_version(void) { return modelota_current_version(&ota); }
