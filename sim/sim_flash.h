/*
 * A simulated NOR flash behind the storage HAL (modelota_storage), with the
 * semantics real parts have and power-loss injection, for host tests.
 *
 *   - erase(block) sets the whole block to erased_value;
 *   - prog can only move bits away from the erased value: with 0xFF erased,
 *     new = old & data; with 0x00 erased, new = old | data. In strict mode
 *     (the default) programming any byte that is not erased is refused, which
 *     catches code that programs without erasing first;
 *   - prog needs off and size to be multiples of prog_size, size > 0 and the
 *     range inside one block; read may use any alignment and size (0 too)
 *     inside one block; a NULL buffer or a bad block is refused.
 * A refused call returns a negative SIM_FLASH_E* code and changes nothing.
 *
 * Power loss. `ops` numbers the operations that change the medium: every prog
 * and every erase that passes the checks above (0-based). Syncs and reads are
 * not counted: on NOR flash a sync changes nothing, so cutting power "during"
 * it leaves the same memory as cutting before the next prog or erase, and
 * counting only state changes makes a sweep over 0..ops-1 visit each reachable
 * state once. When the operation about to run is number `cut_at`, power is
 * lost during it:
 *   - with `tear` set the operation is torn: for prog, a random subset of the
 *     bits that would change is programmed; for erase, a random subset of the
 *     block's bits moves to the erased value. The bits come from a xorshift32
 *     generator whose state is `seed` (a seed of 0 is taken as 1);
 *   - without `tear` the operation has no effect;
 * either way it returns SIM_FLASH_ECUT and the flash is `dead`: every later
 * read, prog, erase and sync returns SIM_FLASH_EDEAD and changes nothing, until
 * sim_flash_reboot() (power back: dead and the cut cleared, memory kept).
 *
 * Read faults. `fail_read_at` (>= 0) fails the read with that number (0-based
 * over `reads`) once, with SIM_FLASH_EREAD, leaving the buffer untouched.
 * `bad_read` (NULL = off) points at block_count flags; a read in a block whose
 * flag is nonzero always fails with SIM_FLASH_EREAD.
 *
 * Counters count calls that reach the medium (passed the checks, flash
 * alive), including the one that is cut or fails a read on purpose: reads,
 * progs, erases, syncs, ops (= progs + erases). bytes_programmed adds the size
 * of each prog that completed. errors counts every call that returned an
 * error, whatever the reason. `erase_counts` (NULL = off) points at
 * block_count counters of erases per block (torn erases included): wear.
 *
 * No heap: the memory (block_size * block_count bytes) and the optional
 * arrays belong to the caller. Fields may be set directly between calls.
 */
#ifndef MODELOTA_SIM_FLASH_H
#define MODELOTA_SIM_FLASH_H

#include <stdint.h>

#include "modelota/storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_FLASH_OK 0
#define SIM_FLASH_EINVAL (-1)     /* out of range, misaligned, size 0, NULL buffer */
#define SIM_FLASH_ENOTERASED (-2) /* strict mode: prog over bytes that are not erased */
#define SIM_FLASH_ECUT (-3)       /* power was lost during this operation */
#define SIM_FLASH_EDEAD (-4)      /* power is off since a cut: reboot first */
#define SIM_FLASH_EREAD (-5)      /* injected read error */

typedef struct sim_flash {
    /* geometry and medium (set by sim_flash_init) */
    uint8_t* mem; /* block_size * block_count bytes, caller-owned */
    uint32_t block_size;
    uint32_t block_count;
    uint32_t prog_size;
    uint8_t erased_value;
    /* behaviour */
    uint8_t strict; /* refuse prog over non-erased bytes (default 1) */
    uint8_t tear;   /* the cut operation is torn rather than lost */
    uint8_t dead;   /* power is off */
    uint32_t seed;  /* xorshift32 state for torn operations */
    int64_t cut_at; /* op number during which power is lost, -1 = never */
    int64_t fail_read_at;   /* read number that fails once, -1 = never */
    const uint8_t* bad_read;  /* block_count flags, NULL = off */
    uint32_t* erase_counts;   /* block_count counters, NULL = off */
    /* counters */
    uint64_t ops;
    uint64_t reads;
    uint64_t progs;
    uint64_t erases;
    uint64_t syncs;
    uint64_t errors;
    uint64_t bytes_programmed;
} sim_flash;

/* Sets the geometry, fills mem with erased_value (a new chip), zeroes the
 * counters and sets the defaults: strict, no cut, no read faults, no bad
 * blocks, no erase counts. SIM_FLASH_EINVAL if mem is NULL, a size is 0,
 * block_size is not a multiple of prog_size or erased_value is neither 0xFF
 * nor 0x00 (f is then left zeroed, and every call on it is refused). */
int sim_flash_init(sim_flash* f, uint8_t* mem, uint32_t block_size, uint32_t block_count,
                   uint32_t prog_size, uint8_t erased_value);

/* Fills *out with f's geometry and callbacks working on f (context = f). */
void sim_flash_storage(sim_flash* f, modelota_storage* out);

/* Arms a power cut during op number `at` (-1 disarms). */
void sim_flash_cut_power(sim_flash* f, int64_t at, int tear, uint32_t seed);

/* Power comes back: clears dead and disarms the cut; memory, counters and
 * read-fault settings are kept. */
void sim_flash_reboot(sim_flash* f);

/* The callbacks sim_flash_storage installs; s->context must be a sim_flash. */
int sim_flash_read(const modelota_storage* s, uint32_t block, uint32_t off, uint8_t* buf,
                   uint32_t size);
int sim_flash_prog(const modelota_storage* s, uint32_t block, uint32_t off, const uint8_t* buf,
                   uint32_t size);
int sim_flash_erase(const modelota_storage* s, uint32_t block);
int sim_flash_sync(const modelota_storage* s);

#ifdef __cplusplus
}
#endif

#endif
