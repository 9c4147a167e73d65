/*
 * ModelOTA for Arduino: the one header a sketch includes.
 *
 *   #include <ModelOTA.h>
 *
 * It brings in the portable core (firmware_lib/modelota.h: the Updater, the
 * wire format, CRC32, status codes, the Store) and adds the Arduino glue:
 *
 *   - modelota_pull(): reads a payload from any Stream (Serial, an SD File,
 *     a network client) into an Updater, with an inactivity timeout;
 *   - modelota_progmem_read() (AVR): factory weights kept in flash with
 *     PROGMEM serve as the restore source;
 *   - class ModelOTA: one object holding the whole configuration, for the
 *     common case of a model whose weights are a RAM array restored from
 *     factory weights in flash.
 *
 * No heap, no String, no exceptions. RAM: the ModelOTA object (the Updater
 * state plus its configuration) and, while a payload is being pulled,
 * MODELOTA_PULL_BUFFER bytes on the stack. The chunk buffer is yours.
 */
#ifndef MODELOTA_ARDUINO_H
#define MODELOTA_ARDUINO_H

#include <Arduino.h>

#include "../firmware_lib/modelota.h"
#include "ModelOTALogger.h" /* field data: sample windows (docs/COLLECT.md) */

/* Bytes read from the Stream per feed, on the stack. */
#ifndef MODELOTA_PULL_BUFFER
#define MODELOTA_PULL_BUFFER 32
#endif

/* Progress report after every piece fed: `bytes_in` payload bytes read so
 * far, `applied` of `total` weight bytes written and checked (total is 0
 * until the header has been accepted). Keep it short or throttle it: the
 * sender keeps sending while it runs. */
typedef void (*modelota_progress_fn)(void* ctx, uint32_t bytes_in, uint32_t applied,
                                     uint32_t total);

/* How modelota_pull() reads a payload. */
struct ModelOTAPull {
    /* Longest silence tolerated between two bytes; after it the update is
     * aborted with MODELOTA_TIMEOUT. 0 means "do not wait": for a File or a
     * buffer, whose available() is 0 only at its end; running out of bytes
     * then ends the update as MODELOTA_TRUNCATED. */
    uint32_t timeout_ms = 5000;
    /* Optional Store (firmware_lib/modelota/store.h) the config was attached
     * to with modelota_store_attach_ram/_flash: the payload is logged to it
     * as it arrives and committed by finish(); cancelled on any failure. */
    modelota_store* store = nullptr;
    modelota_progress_fn progress = nullptr;
    void* progress_ctx = nullptr;
};

/*
 * Starts a payload on `u` (modelota_begin) and feeds it from `in` until the
 * Updater has checked every chunk and the digest, then commits it
 * (modelota_finish). Returns MODELOTA_OK when the new weights are in place;
 * otherwise a negative status, with the old weights back in place (see
 * modelota_weights_intact). Every wait is bounded by timeout_ms.
 *
 * Never reads past the end of the payload: whatever follows it on the
 * stream stays there for the sketch.
 */
int modelota_pull(modelota_updater* u, Stream& in, const ModelOTAPull& opt);
int modelota_pull(modelota_updater* u, Stream& in, uint32_t timeout_ms,
                  modelota_progress_fn progress = nullptr, void* progress_ctx = nullptr);

#if defined(__AVR__)
/* modelota_source.read over weights kept in program memory with PROGMEM;
 * ctx is the PROGMEM array. memcpy_P takes a 16-bit address, so the array
 * must lie in the low 64 KiB of flash, where avr-gcc places PROGMEM data
 * (first, right after the interrupt vectors). */
int modelota_progmem_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
#endif

/* A restore source over factory weights compiled into the firmware: on AVR
 * a PROGMEM array (read with memcpy_P), elsewhere a const array, which is
 * memory-mapped flash and is used directly as `image`. `version` is the
 * model version of those bytes. */
modelota_source modelota_factory_source(const uint8_t* factory, uint32_t version);

/*
 * A model whose weights are a RAM array, restored from factory weights in
 * flash (PROGMEM on AVR, a plain const array elsewhere):
 *
 *   uint8_t weights[1024];                        // what the interpreter reads
 *   const uint8_t factory[1024] PROGMEM = {...};  // the same bytes, in flash
 *   const uint8_t fingerprint[16] = {...};        // `modelota fingerprint`
 *   uint8_t chunkBuffer[256];                     // >= 96 and >= the payload's chunks
 *   ModelOTA ota(weights, sizeof(weights), fingerprint, 1, factory,
 *                chunkBuffer, sizeof(chunkBuffer));
 *
 *   ota.restoreFactory();                  // at boot: weights = factory, version 1
 *   int st = ota.update(Serial, 5000);     // MODELOTA_OK: new weights in place
 *   Serial.println(ModelOTA::statusName(st));
 *
 * `version` is the version of the factory weights, which the array holds at
 * boot. The fingerprint must be in RAM (16 bytes), not PROGMEM. The object
 * must not be copied: the Updater points at the configuration inside it.
 */
class ModelOTA {
public:
    ModelOTA(uint8_t* weights, uint32_t size, const uint8_t* fingerprint, uint32_t version,
             const uint8_t* factory, uint8_t* buffer, uint32_t buffer_len);

    /* Copies the factory weights into the array and makes their version
     * current again. For boot (before the model runs) or a factory reset. */
    int restoreFactory();

    /* Pulls one payload from `in` and applies it (see modelota_pull). */
    int update(Stream& in, uint32_t timeout_ms, modelota_progress_fn progress = nullptr,
               void* progress_ctx = nullptr);

    /* Accept only payloads signed for this device (docs/SECURITY.md): the
     * verifier checks each payload's signature before anything is written;
     * unsigned ones fail with "Unsigned", bad ones with "BadSignature".
     *   ota.requireSignature(modelota_ed25519_verifier(MODELOTA_PUBLIC_KEY));
     * (the key array from `modelota keygen`; built-in verifier where
     * MODELOTA_SIGNATURES is on, i.e. not on AVR by default). The chunk
     * buffer must hold at least 160 bytes. Call before update(). */
    int requireSignature(const modelota_verifier& verifier);
    /* Anti-rollback floor: payloads older than `min_version` are refused
     * with "Rollback", also after a factory restore. Keep it across reboots
     * yourself (EEPROM...); the Store does it for modelota_pull users. */
    int setMinVersion(uint32_t min_version);

    /* Result of the last update (or of the configuration check). */
    int lastStatus() const { return last_; }
    /* Short name of lastStatus(): "Ok", "ChunkCrc", "Timeout"... */
    const char* error() const { return statusName(last_); }
    static const char* statusName(int status) { return modelota_status_str(status); }

    /* Version of the weights in the array now. */
    uint32_t version() const { return modelota_current_version(&u_); }
    /* Payload bytes read by the last update. */
    uint32_t bytesIn() const { return modelota_bytes_in(&u_); }
    /* false only when a failed update could not put the old weights back
     * (the backup could not be read): do not run the model then. */
    bool weightsIntact() const { return modelota_weights_intact(&u_) != 0; }

    /* The core objects, for what this wrapper does not cover. */
    modelota_updater* updater() { return &u_; }
    const modelota_config& config() const { return cfg_; }

private:
    ModelOTA(const ModelOTA&);            /* not copyable: u_ points at cfg_ */
    ModelOTA& operator=(const ModelOTA&);

    int reconfigure();

    modelota_config cfg_;
    modelota_updater u_;
    int last_;
};

/* Model-quality summaries for the fleet's rollout gate (docs/FLEET.md). */
#include "ModelOTAQuality.h"

#endif /* MODELOTA_ARDUINO_H */
