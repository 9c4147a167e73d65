#include "sim_flash.h"

#include <string.h>

namespace {

sim_flash* flash_of(const modelota_storage* s) {
    return s == NULL ? NULL : static_cast<sim_flash*>(s->context);
}

uint8_t* at(const sim_flash* f, uint32_t block, uint32_t off) {
    return f->mem + static_cast<uint64_t>(block) * f->block_size + off;
}

/* [off, off + size) inside one existing block of a usable flash */
bool in_block(const sim_flash* f, uint32_t block, uint32_t off, uint32_t size) {
    return f->mem != NULL && block < f->block_count && off <= f->block_size &&
           size <= f->block_size - off;
}

uint32_t next_random(sim_flash* f) {
    uint32_t x = f->seed == 0 ? 1u : f->seed;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    f->seed = x;
    return x;
}

uint8_t random_byte(sim_flash* f) { return static_cast<uint8_t>(next_random(f) >> 24); }

int fail(sim_flash* f, int code) {
    f->errors++;
    return code;
}

/* Counts an operation that changes the medium; true when power is lost during it. */
bool power_lost_now(sim_flash* f) {
    const uint64_t n = f->ops++;
    return f->cut_at >= 0 && static_cast<uint64_t>(f->cut_at) == n;
}

/* The value a cell holds after programming `data` over `old`. */
uint8_t programmed(const sim_flash* f, uint8_t old, uint8_t data) {
    return f->erased_value == 0 ? static_cast<uint8_t>(old | data)
                                : static_cast<uint8_t>(old & data);
}

}  // namespace

extern "C" int sim_flash_init(sim_flash* f, uint8_t* mem, uint32_t block_size,
                              uint32_t block_count, uint32_t prog_size, uint8_t erased_value) {
    if (f == NULL) {
        return SIM_FLASH_EINVAL;
    }
    memset(f, 0, sizeof(*f));
    if (mem == NULL || block_size == 0 || block_count == 0 || prog_size == 0 ||
        block_size % prog_size != 0 || (erased_value != 0x00 && erased_value != 0xFF)) {
        return SIM_FLASH_EINVAL;
    }
    f->mem = mem;
    f->block_size = block_size;
    f->block_count = block_count;
    f->prog_size = prog_size;
    f->erased_value = erased_value;
    f->strict = 1;
    f->seed = 1;
    f->cut_at = -1;
    f->fail_read_at = -1;
    memset(mem, erased_value, static_cast<size_t>(block_size) * block_count);
    return SIM_FLASH_OK;
}

extern "C" void sim_flash_storage(sim_flash* f, modelota_storage* out) {
    memset(out, 0, sizeof(*out));
    out->context = f;
    out->read = sim_flash_read;
    out->prog = sim_flash_prog;
    out->erase = sim_flash_erase;
    out->sync = sim_flash_sync;
    out->prog_size = f->prog_size;
    out->block_size = f->block_size;
    out->block_count = f->block_count;
    out->erased_value = f->erased_value;
}

extern "C" void sim_flash_cut_power(sim_flash* f, int64_t at_op, int tear, uint32_t seed) {
    f->cut_at = at_op < 0 ? -1 : at_op;
    f->tear = tear ? 1 : 0;
    f->seed = seed;
}

extern "C" void sim_flash_reboot(sim_flash* f) {
    f->dead = 0;
    f->cut_at = -1;
}

extern "C" int sim_flash_read(const modelota_storage* s, uint32_t block, uint32_t off,
                              uint8_t* buf, uint32_t size) {
    sim_flash* f = flash_of(s);
    if (f == NULL) {
        return SIM_FLASH_EINVAL;
    }
    if (f->dead) {
        return fail(f, SIM_FLASH_EDEAD);
    }
    if (buf == NULL || !in_block(f, block, off, size)) {
        return fail(f, SIM_FLASH_EINVAL);
    }
    const uint64_t n = f->reads++;
    if ((f->fail_read_at >= 0 && static_cast<uint64_t>(f->fail_read_at) == n) ||
        (f->bad_read != NULL && f->bad_read[block] != 0)) {
        return fail(f, SIM_FLASH_EREAD);
    }
    memcpy(buf, at(f, block, off), size);
    return SIM_FLASH_OK;
}

extern "C" int sim_flash_prog(const modelota_storage* s, uint32_t block, uint32_t off,
                              const uint8_t* buf, uint32_t size) {
    sim_flash* f = flash_of(s);
    if (f == NULL) {
        return SIM_FLASH_EINVAL;
    }
    if (f->dead) {
        return fail(f, SIM_FLASH_EDEAD);
    }
    if (buf == NULL || size == 0 || !in_block(f, block, off, size) || off % f->prog_size != 0 ||
        size % f->prog_size != 0) {
        return fail(f, SIM_FLASH_EINVAL);
    }
    uint8_t* cell = at(f, block, off);
    if (f->strict) {
        for (uint32_t i = 0; i < size; i++) {
            if (cell[i] != f->erased_value) {
                return fail(f, SIM_FLASH_ENOTERASED);
            }
        }
    }
    f->progs++;
    if (power_lost_now(f)) {
        if (f->tear) {
            for (uint32_t i = 0; i < size; i++) {
                /* the bits that would change, then a random subset of them */
                const uint8_t change = static_cast<uint8_t>(cell[i] ^ programmed(f, cell[i], buf[i]));
                cell[i] = static_cast<uint8_t>(cell[i] ^ (change & random_byte(f)));
            }
        }
        f->dead = 1;
        return fail(f, SIM_FLASH_ECUT);
    }
    for (uint32_t i = 0; i < size; i++) {
        cell[i] = programmed(f, cell[i], buf[i]);
    }
    f->bytes_programmed += size;
    return SIM_FLASH_OK;
}

extern "C" int sim_flash_erase(const modelota_storage* s, uint32_t block) {
    sim_flash* f = flash_of(s);
    if (f == NULL) {
        return SIM_FLASH_EINVAL;
    }
    if (f->dead) {
        return fail(f, SIM_FLASH_EDEAD);
    }
    if (!in_block(f, block, 0, 0)) {
        return fail(f, SIM_FLASH_EINVAL);
    }
    uint8_t* cell = at(f, block, 0);
    f->erases++;
    if (f->erase_counts != NULL) {
        f->erase_counts[block]++;
    }
    if (power_lost_now(f)) {
        if (f->tear) {
            for (uint32_t i = 0; i < f->block_size; i++) {
                /* a random subset of the bits that differ from the erased value */
                const uint8_t change = static_cast<uint8_t>(cell[i] ^ f->erased_value);
                cell[i] = static_cast<uint8_t>(cell[i] ^ (change & random_byte(f)));
            }
        }
        f->dead = 1;
        return fail(f, SIM_FLASH_ECUT);
    }
    memset(cell, f->erased_value, f->block_size);
    return SIM_FLASH_OK;
}

extern "C" int sim_flash_sync(const modelota_storage* s) {
    sim_flash* f = flash_of(s);
    if (f == NULL) {
        return SIM_FLASH_EINVAL;
    }
    if (f->dead) {
        return fail(f, SIM_FLASH_EDEAD);
    }
    f->syncs++;
    return SIM_FLASH_OK;
}
