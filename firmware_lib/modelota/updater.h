/*
 * ModelOTA Updater: a push-style state machine that applies a payload
 * (docs/FORMAT.md) to a model's weight region in place.
 *
 *   modelota_init(&u, &cfg);
 *   modelota_begin(&u);
 *   while (bytes arrive) { st = modelota_feed(&u, bytes, n); if (st < 0) stop; }
 *   st = modelota_finish(&u);            // MODELOTA_OK: new weights committed
 *
 * Reads format v1 and v2 (docs/FORMAT.md). Every chunk's CRC32 is checked
 * before its bytes touch the region (v2: over the encoded bytes, while they
 * are decoded into the lent buffer; decode.h); the digest of the whole
 * region (CRC32 or SHA-256) is checked after the last chunk. A device given a verifier accepts only signed payloads and checks
 * the signature of the header before any chunk is written. On any failure
 * (and on modelota_abort) the bytes written so far are restored from the
 * caller's backup source, so the region ends with exactly the old weights.
 * No heap, no second RAM copy of the model: the only buffer is the chunk
 * buffer the caller lends (it holds a chunk's decoded bytes).
 */
#ifndef MODELOTA_UPDATER_H
#define MODELOTA_UPDATER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "crc32.h"
#include "decode.h"
#include "format.h"
#include "status.h"
#if MODELOTA_SHA256
#include "sha256.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Storage callbacks return 0 on success, any non-zero value on failure
 * (reported as MODELOTA_STORAGE_IO). */
typedef int (*modelota_read_fn)(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
typedef int (*modelota_write_fn)(void* ctx, uint32_t offset, const uint8_t* src, uint32_t len);

/* Where the live weights are. A RAM model sets `ram`; anything else sets
 * `read` and `write` (and leaves `ram` NULL). */
typedef struct modelota_target {
    uint8_t* ram;
    modelota_read_fn read;
    modelota_write_fn write;
    void* ctx;
    uint32_t size; /* bytes in the weight region */
    /* Optional: makes a verified update durable (e.g. modelota_store_commit_hook).
     * finish() calls it before reporting success; a failure fails the update. */
    int (*commit)(void* ctx, uint32_t version);
} modelota_target;

/* Where the last good weights can be read back from. Build it with the
 * constructor that names the kind of memory those bytes are in (below);
 * the fields are theirs to fill.
 *
 * On AVR, flash is not in the data address space: a PROGMEM array read
 * through a plain pointer gives other bytes, with no error. So there the
 * memory-mapped kind does not exist (no `image` field, no
 * modelota_backup_image): a factory array in flash is
 * modelota_backup_flash(), an array in RAM modelota_backup_ram(), and
 * code written for the old `backup.image` field stops at compile time. */
typedef struct modelota_source {
#if defined(__AVR__)
    const uint8_t* ram;   /* bytes in RAM (modelota_backup_ram) */
#else
    const uint8_t* image; /* memory-mapped bytes: RAM or flash (XIP) */
#endif
    modelota_read_fn read; /* otherwise read through this, at offset base + i */
    void* ctx;
    uint32_t version; /* the model version those bytes are */
    uint32_t base;    /* added to every offset passed to `read` */
    uint32_t size;    /* bytes the source holds (>= target.size); 0: not said */
} modelota_source;

/* Keeps a const array in flash: PROGMEM on AVR (where a plain const array
 * is copied into RAM at boot), nothing elsewhere (const data stays in
 * flash). Declare factory weights with it and pass them to
 * modelota_backup_flash():
 *   const uint8_t factory[1024] MODELOTA_FLASH = {...}; */
#ifndef MODELOTA_FLASH
#if defined(__AVR__)
#define MODELOTA_FLASH __attribute__((__progmem__))
#else
#define MODELOTA_FLASH
#endif
#endif

/* Factory weights declared MODELOTA_FLASH (or PROGMEM): on AVR read from
 * program memory (memcpy_PF, any address the 16-bit pointer can hold);
 * elsewhere a memory-mapped image. `version`: the model version they are. */
modelota_source modelota_backup_flash(const uint8_t* weights, uint32_t len, uint32_t version);

/* Bytes in RAM (a copy kept by the application). */
modelota_source modelota_backup_ram(const uint8_t* weights, uint32_t len, uint32_t version);

#if defined(__AVR__)
/* AVR flash above 64 KiB, where a 16-bit pointer cannot reach:
 *   modelota_backup_flash_far(pgm_get_far_address(factory), sizeof(factory), 1) */
modelota_source modelota_backup_flash_far(uint32_t address, uint32_t len, uint32_t version);
#else
/* Memory-mapped bytes: RAM, or a const array in flash the CPU reads in
 * place (Cortex-M, ESP32, RISC-V). Not on AVR: see modelota_backup_flash. */
modelota_source modelota_backup_image(const uint8_t* weights, uint32_t len, uint32_t version);
#endif

/* Anything else (EEPROM, an SD file, a flash partition, a Store): `read`
 * fetches bytes [offset, offset + len) of the backup. */
modelota_source modelota_backup_callback(modelota_read_fn read, void* ctx, uint32_t len,
                                         uint32_t version);

/* Reads bytes [offset, offset + len) of a backup source, whatever its kind:
 * MODELOTA_OK, MODELOTA_STORAGE_IO when its callback failed,
 * MODELOTA_INVALID_ARGUMENT when it has no way to be read or the bytes pass
 * the end of a source whose size is stated (size 0: not stated, unchecked). */
int modelota_source_read(const modelota_source* src, uint32_t offset, uint8_t* dst, uint32_t len);

/* Signature check of a signed payload (docs/FORMAT.md, "Signature block"):
 * returns 1 when sig (MODELOTA_SIGNATURE_LEN bytes) is a valid signature of
 * msg[0..len) (the 96 header bytes), anything else when it is not. ctx is
 * the verifier's (for the built-in Ed25519 one: the 32-byte public key). A
 * port with crypto hardware or a vetted library plugs it in here. */
typedef int (*modelota_verify_fn)(void* ctx, const uint8_t* msg, uint32_t len,
                                  const uint8_t* sig);

typedef struct modelota_verifier {
    modelota_verify_fn verify; /* NULL: signatures are not checked */
    void* ctx;
} modelota_verifier;

/* Which bytes of the region a payload may change: `count` (offset, length)
 * pairs, ascending and not overlapping, as `modelota fingerprint
 * model.tflite` and `modelota prepare-ei` print them next to the
 * fingerprint (docs/FORMAT.md, "Writable ranges"). A chunk that would change
 * a byte outside them is refused with MODELOTA_WRONG_MODEL before it is
 * written (bytes it repeats unchanged are fine). The device cannot
 * recompute a fingerprint; this is how it refuses a payload that rewrites a
 * model's structure (a Reshape shape, a Pad's paddings...) under the right
 * fingerprint. No table (every pointer NULL, count 0): every byte is
 * writable.
 *
 * Build it with the constructor that names the memory the table is in,
 * modelota_writable_flash() (declared MODELOTA_FLASH, as `modelota
 * fingerprint` prints it) or modelota_writable_ram(). The Updater reads the
 * table at every chunk, so it must outlive the Updater. As with backups, on
 * AVR a table in flash read through a plain pointer gives other numbers: there
 * the fields name the memory (`ram`, `flash`; no `ranges`), so code written
 * for the memory-mapped field stops at compile time, and a table holds at
 * most 65535 pairs (more does not fit the Mega's memory anyway). */
typedef struct modelota_writable {
#if defined(__AVR__)
    const uint32_t* ram;   /* 2 * count values in RAM (modelota_writable_ram) */
    const uint32_t* flash; /* ... or in program memory (modelota_writable_flash) */
    uint16_t count;
#else
    const uint32_t* ranges; /* 2 * count memory-mapped values: RAM or flash */
    uint32_t count;
#endif
} modelota_writable;

/* A table declared MODELOTA_FLASH (or PROGMEM): on AVR read from program
 * memory (pgm_read_dword, any address the 16-bit pointer can hold);
 * elsewhere memory-mapped. `count` is the number of (offset, length) pairs.
 * On AVR a count above 65535 gives a table modelota_init refuses. */
modelota_writable modelota_writable_flash(const uint32_t* ranges, uint32_t count);

/* A table in RAM (built at run time, or a plain const array on AVR, which
 * the C runtime copies into RAM at boot). */
modelota_writable modelota_writable_ram(const uint32_t* ranges, uint32_t count);

typedef struct modelota_config {
    modelota_target target;
    modelota_source backup;
    const uint8_t* fingerprint; /* MODELOTA_FINGERPRINT_LEN bytes of this build's model */
    uint32_t current_version;   /* version the target holds at init */
    uint8_t* buffer;            /* chunk buffer lent by the caller */
    uint32_t buffer_len;        /* >= MODELOTA_HEADER_LEN; chunks up to this size */
    /* 1: check everything, write nothing. The final digest is computed over
     * the region as it would be (current bytes with the chunks laid over),
     * in one ascending pass. A flash model uses this while the store logs
     * the payload; then target.commit applies it. No backup is needed. */
    uint8_t verify_only;
    /* Anti-rollback floor: payloads below it are refused (MODELOTA_ROLLBACK)
     * even when the region fell back to older weights. Persist it across
     * reboots (modelota_store_attach_* sets it from the Store). 0: none. */
    uint32_t min_version;
    /* With verifier.verify set, only signed payloads are accepted
     * (MODELOTA_UNSIGNED, MODELOTA_BAD_SIGNATURE otherwise) and buffer_len
     * must be at least MODELOTA_HEADER_LEN + MODELOTA_SIGNATURE_LEN. Without
     * it, a signed payload's signature block is skipped unchecked. */
    modelota_verifier verifier;
    /* Optional: the only bytes a payload may change (see modelota_writable). */
    modelota_writable writable;
} modelota_config;

/* A weight region in RAM. */
modelota_target modelota_target_ram(uint8_t* weights, uint32_t size);
/* A weight region reached through callbacks (flash, external memory). */
modelota_target modelota_target_callbacks(modelota_read_fn read, modelota_write_fn write,
                                          void* ctx, uint32_t size);

/* The usual configuration in one call, every other field zero (no
 * signatures, no rollback floor, no commit hook; set them afterwards):
 *
 *   modelota_config_init(&cfg, modelota_target_ram(weights, sizeof(weights)),
 *                        modelota_backup_flash(factory, sizeof(factory), 1),
 *                        fingerprint, chunk_buf, sizeof(chunk_buf));
 *
 * current_version is the backup's version: the region holds those bytes
 * at boot (copy them in with modelota_source_read). */
void modelota_config_init(modelota_config* cfg, modelota_target target, modelota_source backup,
                          const uint8_t* fingerprint, uint8_t* buffer, uint32_t buffer_len);

typedef enum modelota_state {
    MODELOTA_STATE_IDLE = 0,      /* initialised, not started */
    MODELOTA_STATE_HEADER = 1,    /* gathering the 96-byte header */
    MODELOTA_STATE_CHUNK_HEAD = 2,
    MODELOTA_STATE_CHUNK_DATA = 3,
    MODELOTA_STATE_CHUNK_TAIL = 4,
    MODELOTA_STATE_VERIFIED = 5,  /* every chunk applied, digest good: finish() commits */
    MODELOTA_STATE_DONE = 6,      /* committed */
    MODELOTA_STATE_FAILED = 7,    /* failed; touched bytes restored (see weights_intact) */
    MODELOTA_STATE_SIGNATURE = 8  /* gathering the signature block after the header */
} modelota_state;

/* What the last failure did to the weight region. */
typedef enum modelota_restore {
    MODELOTA_RESTORE_NONE = 0,      /* nothing had been written */
    MODELOTA_RESTORE_RANGES = 1,    /* touched bytes copied back from the backup */
    MODELOTA_RESTORE_FULL = 2,      /* backup held another version: whole region reloaded */
    MODELOTA_RESTORE_FAILED = 3     /* backup unreadable: region is NOT intact */
} modelota_restore;

/* All fields are private; the struct is public only so it can live on the
 * stack or in a static without heap. */
typedef struct modelota_updater {
    const modelota_config* cfg;
    uint32_t current_version; /* version the region holds now */
    uint32_t new_version;
    uint32_t data_size;
    uint32_t chunk_count;
    uint32_t segment_count;
    uint32_t max_chunk;
    uint32_t header_crc; /* seeds every chunk CRC: binds chunks to this header */
    uint32_t running_crc;
    uint32_t next_seq;
    uint32_t write_end;  /* end offset of the last applied chunk */
    uint32_t touched_lo;
    uint32_t touched_hi; /* [lo, hi) covers every byte written; lo == hi: none */
    uint32_t data_seen;
    uint32_t segments_seen;
    uint32_t chunk_offset;
    uint32_t chunk_len;  /* decoded bytes of the current chunk */
    uint32_t chunk_size; /* its encoded bytes (v1 and RAW: chunk_len) */
    uint32_t pos;        /* bytes gathered in the current field */
    uint32_t total_in;   /* payload bytes consumed since begin */
    uint32_t min_version;/* anti-rollback floor: cfg->min_version, raised by each commit */
    uint32_t digest_pos; /* verify_only: region bytes covered by the running digest */
    uint32_t kept_off;   /* v2 KEEP: region offset of the bytes kept at the end of */
    uint32_t kept_len;   /* the buffer's first max_chunk bytes (0: none kept) */
    uint32_t keep_start; /* the current chunk's KEEP and PRED fields (decode.h) */
    uint32_t kept_next;
    uint32_t pred_start;
    uint32_t pred_count;
    uint32_t pred_back;
    uint32_t pred_divisor;
    union {              /* running digest of the region (one pass, ascending) */
        uint32_t crc;
#if MODELOTA_SHA256
        modelota_sha256 sha;
#endif
    } run;
    uint8_t digest[MODELOTA_DIGEST_LEN];
    uint8_t field[MODELOTA_V2_MAX_CHUNK_HEAD]; /* chunk head, then chunk CRC */
    uint8_t state;       /* modelota_state */
    uint8_t restore;     /* modelota_restore of the last failure */
    int8_t status;       /* last result */
    uint8_t digest_type; /* MODELOTA_DIGEST_* of the payload */
    uint8_t format_version;
    uint8_t header_len;  /* 96 (v1) or 37..96 (v2) */
    uint8_t flags;       /* MODELOTA_FLAG_* of the payload */
    uint8_t enc;         /* MODELOTA_ENC_* of the current chunk (v1: RAW) */
    modelota_decoder dec; /* v2 chunk decoder: the range coder's probabilities */
} modelota_updater;

/* Checks the configuration; MODELOTA_INVALID_ARGUMENT if a pointer is
 * missing, the buffer is shorter than the header, the target or backup
 * has no way to be read or written, or the writable ranges are not
 * ascending, disjoint and inside the region. */
int modelota_init(modelota_updater* u, const modelota_config* cfg);

/* Starts a new payload. Allowed in IDLE, DONE and FAILED. */
int modelota_begin(modelota_updater* u);

/* Consumes n bytes of payload. MODELOTA_OK while the payload is good so
 * far (including after the last chunk); a negative status when it is not,
 * after which the region has been restored and further feeds return that
 * same status. */
int modelota_feed(modelota_updater* u, const uint8_t* data, size_t n);

/* The stream has ended. MODELOTA_OK and the new version is current when
 * every chunk arrived and the digest matched; otherwise MODELOTA_TRUNCATED
 * (or the earlier failure) with the region restored. */
int modelota_finish(modelota_updater* u);

/* Stops an update in progress and restores the region. `reason` is the
 * status to record (MODELOTA_ABORTED, MODELOTA_TIMEOUT...); a non-negative
 * reason records MODELOTA_ABORTED. Returns the recorded status. */
int modelota_abort(modelota_updater* u, int reason);

int modelota_state_of(const modelota_updater* u);
int modelota_last_status(const modelota_updater* u);
int modelota_restore_of(const modelota_updater* u);
uint32_t modelota_current_version(const modelota_updater* u);
uint32_t modelota_bytes_in(const modelota_updater* u);     /* payload bytes consumed */
uint32_t modelota_data_applied(const modelota_updater* u); /* weight bytes written */
uint32_t modelota_data_total(const modelota_updater* u);   /* weight bytes announced */

/* Bytes the Updater needs to complete the field it is gathering (at least
 * 1 while an update runs, 0 otherwise). A pull loop that reads at most this
 * many bytes never reads past the end of the payload, so whatever follows
 * it on the stream stays there for the application. */
uint32_t modelota_bytes_wanted(const modelota_updater* u);

/* 1 when the region holds a complete, known model (old or new). */
int modelota_weights_intact(const modelota_updater* u);

/* Read callback over a directly addressable image, for modelota_source.read
 * when the caller has a pointer but wants the callback form. */
int modelota_memory_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);

/* The anti-rollback floor now in force (cfg->min_version raised by commits). */
uint32_t modelota_min_version(const modelota_updater* u);

#if MODELOTA_SIGNATURES
/* Built-in Ed25519 verifier (ed25519.h, RFC 8032): ctx is the 32-byte
 * public key, which must outlive the Updater (a const array in flash). */
int modelota_ed25519_verify_cb(void* ctx, const uint8_t* msg, uint32_t len, const uint8_t* sig);
/* { modelota_ed25519_verify_cb, public_key } for modelota_config.verifier. */
modelota_verifier modelota_ed25519_verifier(const uint8_t* public_key);
#endif

#ifdef __cplusplus
} /* extern "C" */

/* The same constructors taking the array itself, so its length cannot be
 * given wrong:  modelota_backup_flash(factory, 1) */
template <size_t N>
modelota_source modelota_backup_flash(const uint8_t (&weights)[N], uint32_t version) {
    return modelota_backup_flash(weights, static_cast<uint32_t>(N), version);
}
template <size_t N>
modelota_source modelota_backup_ram(const uint8_t (&weights)[N], uint32_t version) {
    return modelota_backup_ram(weights, static_cast<uint32_t>(N), version);
}
#if !defined(__AVR__)
template <size_t N>
modelota_source modelota_backup_image(const uint8_t (&weights)[N], uint32_t version) {
    return modelota_backup_image(weights, static_cast<uint32_t>(N), version);
}
#endif
/* The writable-range constructors taking the array itself: the count of
 * (offset, length) pairs comes from its type.
 *   cfg.writable = modelota_writable_flash(MODEL_WRITABLE_RANGES); */
template <size_t N>
modelota_writable modelota_writable_flash(const uint32_t (&ranges)[N]) {
    static_assert(N % 2u == 0u, "a writable-range table holds (offset, length) pairs");
    return modelota_writable_flash(ranges, static_cast<uint32_t>(N / 2u));
}
template <size_t N>
modelota_writable modelota_writable_ram(const uint32_t (&ranges)[N]) {
    static_assert(N % 2u == 0u, "a writable-range table holds (offset, length) pairs");
    return modelota_writable_ram(ranges, static_cast<uint32_t>(N / 2u));
}
template <size_t N>
modelota_target modelota_target_ram(uint8_t (&weights)[N]) {
    return modelota_target_ram(weights, static_cast<uint32_t>(N));
}

namespace modelota {

/* Thin C++ face of the same state machine, for sketches. Holds its own
 * copy of the configuration, so it may outlive the config it was given. */
class Updater {
public:
    explicit Updater(const modelota_config& cfg) : cfg_(cfg) { init_ = modelota_init(&u_, &cfg_); }
    int begin() { return init_ < 0 ? init_ : modelota_begin(&u_); }
    int feed(const uint8_t* data, size_t n) { return modelota_feed(&u_, data, n); }
    int finish() { return modelota_finish(&u_); }
    int abort(int reason = MODELOTA_ABORTED) { return modelota_abort(&u_, reason); }
    int state() const { return modelota_state_of(&u_); }
    bool complete() const { return modelota_state_of(&u_) == MODELOTA_STATE_VERIFIED; }
    int lastStatus() const { return init_ < 0 ? init_ : modelota_last_status(&u_); }
    uint32_t currentVersion() const { return modelota_current_version(&u_); }
    uint32_t bytesIn() const { return modelota_bytes_in(&u_); }
    uint32_t dataApplied() const { return modelota_data_applied(&u_); }
    uint32_t dataTotal() const { return modelota_data_total(&u_); }
    uint32_t bytesWanted() const { return modelota_bytes_wanted(&u_); }
    bool weightsIntact() const { return modelota_weights_intact(&u_) != 0; }

private:
    Updater(const Updater&);            /* not copyable: u_ points at cfg_ */
    Updater& operator=(const Updater&);
    modelota_config cfg_;
    modelota_updater u_;
    int init_;
};

}  // namespace modelota
#endif

#endif /* MODELOTA_UPDATER_H */
