/*
 * ModelOTA Store: power-loss-safe persistence of model weights on a storage
 * HAL (storage.h), for two kinds of model:
 *
 *  - a RAM model: the store keeps the last committed weights and version;
 *    at boot the device loads them (or its factory weights when the store is
 *    empty or invalid), and the store is the Updater's restore source;
 *  - a flash-resident (XIP) model: the region in flash *is* the model, and it
 *    is rewritten in place, block by block, at a fixed address.
 *
 * Both use one transaction: the payload bytes are appended to a log while
 * the Updater checks them; when every CRC and the digest are good, a
 * COMMITTED record is written, the log is applied to the region block by
 * block behind a journal and one backup block, and a CLEAN record closes the
 * transaction. A power cut at any moment leaves, after modelota_store_recover()
 * at boot, exactly the old or exactly the new weights: before the COMMITTED
 * record the old weights were never touched; after it the log holds all new
 * data and the backup block holds the old contents of the one block being
 * rewritten, so recovery finishes the job. See docs/DESIGN.md for why a
 * stream that cannot be replayed needs the log, and docs/PORTING.md for the
 * layout.
 *
 * RAM: the caller lends one block-sized buffer; the store's own state is a
 * few dozen bytes. No heap. Applying a logged format-v2 payload decodes its
 * chunks again from the log, with a modelota_decoder (decode.h, about 800
 * bytes) on the stack of modelota_store_commit / modelota_store_recover.
 */
#ifndef MODELOTA_STORE_H
#define MODELOTA_STORE_H

#include <stdint.h>

#include "config.h"
#include "status.h"
#include "storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef MODELOTA_MAX_PROG_SIZE
#define MODELOTA_MAX_PROG_SIZE 32u /* largest prog_size a store supports */
#endif

#define MODELOTA_RECORD_LEN 32u
#define MODELOTA_ENTRY_LEN 16u

/* Where everything lives, in blocks of the storage. Areas must not overlap. */
typedef struct modelota_store_config {
    const modelota_storage* storage;
    uint32_t region_block;   /* first block of the weights (model or its copy) */
    uint32_t region_size;    /* bytes of weights; the region owns whole blocks */
    uint32_t meta_block;     /* two blocks: alternating commit records */
    uint32_t backup_block;   /* one block: old contents of the block being rewritten */
    uint32_t journal_block;  /* first block of the journal */
    uint32_t journal_blocks;
    uint32_t log_block;      /* first block of the payload log */
    uint32_t log_blocks;
    uint8_t* block_buf;      /* block_size bytes of RAM lent by the caller */
} modelota_store_config;

typedef enum modelota_store_state {
    MODELOTA_STORE_EMPTY = 0,   /* no valid record: region content unknown */
    MODELOTA_STORE_CLEAN = 1,   /* region holds `version`, CRC `region_crc` */
    MODELOTA_STORE_PENDING = 2, /* a committed update still has to be applied: recover() */
    MODELOTA_STORE_LOGGING = 3  /* an update is being received into the log */
} modelota_store_state;

/* Private fields; public so it can be static or on the stack. */
typedef struct modelota_store {
    const modelota_store_config* cfg;
    uint32_t seq;        /* sequence number of the latest valid record */
    uint32_t version;
    uint32_t region_crc;
    uint32_t log_len;    /* committed: payload bytes in the log; logging: bytes so far */
    uint32_t log_crc;
    uint32_t latest_meta;/* 0 or 1: which meta block holds the latest record */
    uint32_t min_version;/* anti-rollback floor, persisted in every record */
    uint8_t state;       /* modelota_store_state */
    uint8_t tail_len;    /* log bytes waiting for a full prog unit */
    uint8_t tail[MODELOTA_MAX_PROG_SIZE];
} modelota_store;

/* Checks the layout against the storage geometry and reads the records.
 * Does not write. MODELOTA_INVALID_ARGUMENT on a bad layout. */
int modelota_store_init(modelota_store* st, const modelota_store_config* cfg);

/* At boot: finishes a committed update interrupted by a power cut (or drops
 * an uncommitted one), so the region holds exactly one version. Safe to call
 * again if power fails during recovery. */
int modelota_store_recover(modelota_store* st);

/* Writes a first CLEAN record. With `weights` NULL the region already holds
 * the model (a flash-resident factory image); otherwise `weights` (region_size
 * bytes, e.g. the factory array) are written into the region first. A power
 * cut leaves the store EMPTY, never half-valid. */
int modelota_store_format(modelota_store* st, const uint8_t* weights, uint32_t version);

/* Copies the committed weights into RAM after checking their CRC.
 * MODELOTA_STORAGE_IO if the store is not CLEAN or the CRC does not match:
 * the caller then uses its factory weights. */
int modelota_store_load(modelota_store* st, uint8_t* ram, uint32_t size);

int modelota_store_state_of(const modelota_store* st);
uint32_t modelota_store_version(const modelota_store* st);

/* Anti-rollback floor: the highest version ever committed or formatted, or
 * raised explicitly. It is kept in the commit records (so it survives reboot
 * and power cuts with the commit that raised it) and never goes down, also
 * when the device falls back to its factory weights. modelota_store_attach_*
 * copies it into modelota_config.min_version: the Updater refuses a payload
 * below it with MODELOTA_ROLLBACK. Lost only if both meta blocks are lost. */
uint32_t modelota_store_min_version(const modelota_store* st);

/* Raises the floor, e.g. to revoke a bad release: payloads below
 * `min_version` are refused from now on, even re-signed old ones. A value
 * at or below the current floor changes nothing. Writes one record; the
 * store must be CLEAN. A power cut leaves the old or the new floor. */
int modelota_store_raise_min_version(modelota_store* st, uint32_t min_version);

/* Transaction, normally driven through modelota_store_attach() below. */
int modelota_store_begin(modelota_store* st);
int modelota_store_log(modelota_store* st, const uint8_t* data, uint32_t n);
int modelota_store_commit(modelota_store* st, uint32_t version);
void modelota_store_cancel(modelota_store* st);

/* Wires an Updater configuration to a store:
 *  - RAM model: the weights are updated in place in `ram`, restored from the
 *    store's region on failure, and the payload is committed to the store by
 *    finish();
 *  - flash model: nothing is written while the payload streams (verify_only);
 *    finish() commits it, rewriting the region in place.
 * The other fields (fingerprint, current_version, buffer) stay the caller's.
 * Call again after each committed update so backup.version follows the store.
 * Both set cfg->min_version from the store's anti-rollback floor. */
struct modelota_config;
void modelota_store_attach_ram(struct modelota_config* cfg, modelota_store* st, uint8_t* ram);
void modelota_store_attach_flash(struct modelota_config* cfg, modelota_store* st);

/* Region access for the Updater: a read callback over the committed region
 * (restore source for a RAM model, read view for a flash model). ctx is the
 * modelota_store*. */
int modelota_store_region_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
/* Commit hook for modelota_target.commit: commits the logged payload. */
int modelota_store_commit_hook(void* ctx, uint32_t version);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_STORE_H */
