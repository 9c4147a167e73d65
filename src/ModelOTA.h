/*
 * ModelOTA for Arduino: the one header a sketch includes.
 *
 *   #include <ModelOTA.h>
 *
 * It brings in the portable core (firmware_lib/modelota.h: the Updater, the
 * wire format, CRC32, status codes, the Store) and adds the Arduino glue:
 *
 *   - class ModelOTA: one object holding the whole configuration, for the
 *     common case of a model whose weights are a RAM array restored from
 *     factory weights in flash (examples/Quickstart);
 *   - modelota_pull(): reads a raw payload from any Stream (Serial, an SD
 *     File, a network client) into an Updater, with an inactivity timeout.
 *
 * Which serial sketch: ModelOTA::update(Serial) / modelota_pull() read a raw
 * payload (`cat v2.mota > /dev/ttyACM0`); `modelota push` speaks the link
 * protocol (docs/PROTOCOL.md) and needs examples/SerialUpdate. A raw sketch
 * that receives push's first frame answers it with a RESULT frame saying
 * BadMagic, so push stops at once and says which to use.
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

/* Default of ModelOTAPull::quiet_ms: the silence that ends a refused payload. */
#ifndef MODELOTA_PULL_QUIET_MS
#define MODELOTA_PULL_QUIET_MS 200u
#endif

/* Most bytes modelota_pull() drops after a refused payload (see
 * ModelOTAPull::quiet_ms), for a stream that never falls silent. */
#ifndef MODELOTA_PULL_DRAIN_MAX_BYTES
#define MODELOTA_PULL_DRAIN_MAX_BYTES 1048576u
#endif

/* How modelota_pull() reads a payload. */
struct ModelOTAPull {
    /* Longest silence tolerated between two bytes; after it the update is
     * aborted with MODELOTA_TIMEOUT. Silence is counted in 100 us busy-waits
     * (delayMicroseconds), not with millis(): it also runs where millis()
     * stands still, and never disables interrupts. 0 means "do not wait":
     * for a File or a buffer, whose available() is 0 only at its end;
     * running out of bytes then ends the update as MODELOTA_TRUNCATED. */
    uint32_t timeout_ms = 5000;
    /* After a refused payload (ChunkCrc, WrongModel...), the bytes still
     * arriving are the rest of it: they are read and dropped until the
     * stream has been silent this long, so one bad payload gives one
     * error, not one per 4 bytes read as a new payload. Leave at least this
     * much silence between two payloads. 0: leave them on the stream. Not
     * done when timeout_ms is 0 (a File: just close it). Counted like
     * timeout_ms. */
    uint32_t quiet_ms = MODELOTA_PULL_QUIET_MS;
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
 * A good payload is read to its last byte and no further: whatever follows
 * it on the stream stays there for the sketch. A refused one is drained
 * (ModelOTAPull::quiet_ms). A stream that starts with the link protocol's
 * sync bytes (`modelota push`) is refused as BadMagic and answered with a
 * link RESULT frame {BadMagic, version, 0}, written to `in`.
 */
int modelota_pull(modelota_updater* u, Stream& in, const ModelOTAPull& opt);
int modelota_pull(modelota_updater* u, Stream& in, uint32_t timeout_ms,
                  modelota_progress_fn progress = nullptr, void* progress_ctx = nullptr);

/*
 * A model whose weights are a RAM array, restored from factory weights in
 * flash (examples/Quickstart):
 *
 *   const uint8_t factory[1024] MODELOTA_FLASH = {...};  // PROGMEM on AVR
 *   const uint8_t fingerprint[16] = {...};               // `modelota fingerprint`
 *   uint8_t weights[sizeof(factory)];                    // what the model reads
 *   uint8_t chunkBuffer[256];           // >= 96 and >= the payload's chunks
 *   ModelOTA ota(weights, fingerprint, modelota_backup_flash(factory, 1), chunkBuffer);
 *
 *   ota.restoreFactory();                  // at boot: weights = factory, version 1
 *   int st = ota.update(Serial, 5000);     // MODELOTA_OK: new weights in place
 *   Serial.println(ModelOTA::statusName(st));
 *
 * The factory argument says where the last good weights are, and so how to
 * read them: modelota_backup_flash (an array declared MODELOTA_FLASH or
 * PROGMEM), modelota_backup_ram, modelota_backup_callback (EEPROM, a file).
 * Its version is the version the array holds at boot. The fingerprint must
 * be in RAM (16 bytes), not PROGMEM. A .tflite model also gets its writable
 * ranges, so no payload can change its structure (examples/TfliteModel):
 *
 *   ota.setWritableRanges(modelota_writable_flash(MODEL_WRITABLE_RANGES));
 *
 * The object must not be copied: the Updater points at the configuration
 * inside it.
 */
class ModelOTA {
public:
    ModelOTA(uint8_t* weights, uint32_t size, const uint8_t* fingerprint,
             const modelota_source& factory, uint8_t* buffer, uint32_t buffer_len);
    template <size_t N, size_t M>
    ModelOTA(uint8_t (&weights)[N], const uint8_t* fingerprint, const modelota_source& factory,
             uint8_t (&buffer)[M])
        : ModelOTA(weights, static_cast<uint32_t>(N), fingerprint, factory, buffer,
                   static_cast<uint32_t>(M)) {}

    /* The constructor of ModelOTA 0.2 took the factory array as a bare
     * pointer and guessed its memory (PROGMEM on AVR): a RAM array there
     * restored other bytes. Say where it is (docs/PORTING.md, "Migrating"). */
    template <typename Factory>
    ModelOTA(uint8_t*, uint32_t, const uint8_t*, uint32_t, const Factory*, uint8_t*, uint32_t) {
        static_assert(sizeof(Factory) == 0,
                      "ModelOTA(weights, size, fingerprint, version, factory, buffer, len) is gone:"
                      " write ModelOTA(weights, size, fingerprint,"
                      " modelota_backup_flash(factory, sizeof(factory), version), buffer, len)"
                      " for a MODELOTA_FLASH/PROGMEM array (docs/PORTING.md, Migrating)");
    }

    /* Copies the factory weights into the array and makes their version
     * current again. For boot (before the model runs) or a factory reset.
     * The weights are copied even after a refused setting (a malformed
     * writable table, say): it then returns that InvalidArgument, and
     * updates stay refused, but the model runs its known-good weights. */
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
    /* Only the model's writable ranges may change (docs/FORMAT.md, "Writable
     * ranges"): a payload that would change any other byte (a Reshape
     * shape, the .tflite's structure) is refused with "WrongModel" before
     * that chunk is written, and the weights are put back as they were.
     *   ota.setWritableRanges(modelota_writable_flash(MODEL_WRITABLE_RANGES));
     * (the table `modelota fingerprint model.tflite` prints, declared
     * MODELOTA_FLASH: PROGMEM on AVR, read from there; for a table in RAM,
     * modelota_writable_ram). It is read at every chunk: keep it for the
     * object's lifetime. "InvalidArgument" (and every update refused until
     * a good table is set) when the pairs are not ascending, disjoint and
     * inside the weights. Call before update(). */
    int setWritableRanges(const modelota_writable& ranges);
    /* A bare table does not say which memory it is in (on AVR a PROGMEM one
     * read as RAM gives other numbers): name it, as for the factory weights. */
    template <size_t N>
    int setWritableRanges(const uint32_t (&)[N]) {
        static_assert(N == 0, "say where the table is: setWritableRanges("
                              "modelota_writable_flash(table)) for a MODELOTA_FLASH/PROGMEM"
                              " array, modelota_writable_ram(table) for one in RAM");
        return MODELOTA_INVALID_ARGUMENT;
    }
    template <typename Word>
    int setWritableRanges(const Word*, uint32_t) {
        static_assert(sizeof(Word) == 0, "say where the table is: setWritableRanges("
                                         "modelota_writable_flash(table, pairs)) for a"
                                         " MODELOTA_FLASH/PROGMEM array,"
                                         " modelota_writable_ram(table, pairs) for one in RAM");
        return MODELOTA_INVALID_ARGUMENT;
    }

    /* Result of the last update (or of the configuration check). */
    int lastStatus() const { return last_; }
    /* Short name of lastStatus(): "Ok", "ChunkCrc", "Timeout"... On AVR
     * the names stay in flash and are copied into one static buffer, valid
     * until the next call (modelota_status_name copies into yours). */
    const char* error() const { return statusName(last_); }
    static const char* statusName(int status) { return modelota_status_str(status); }

    /* Version of the weights in the array now (also after a setting the
     * Updater refused: the version it had reached is kept in the config). */
    uint32_t version() const {
        return last_ == MODELOTA_INVALID_ARGUMENT ? cfg_.current_version
                                                  : modelota_current_version(&u_);
    }
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
