/*
 * libFuzzer target: the Updater (and the Store behind it) fed arbitrary bytes.
 *
 *   clang++ -std=c++11 -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -fno-sanitize-recover=all -Ifirmware_lib -Isim sim/fuzz/fuzz_updater.cpp \
 *       firmware_lib/modelota/{crc32,status,decode,updater,store,sha256,sha512,ed25519}.cpp \
 *       sim/sim_flash.cpp -o build/fuzz_updater
 *   python sim/fuzz/make_corpus.py build/fuzz-corpus     # valid seeds from the packer
 *   build/fuzz_updater build/fuzz-corpus -max_total_time=3600
 *
 * (tests/test_fuzz.py builds and runs it bounded; docs/SECURITY.md has the
 * long run.) An input is 4 control bytes, then the payload stream:
 *
 *   c[0] bits 0-1  device: 0 RAM model, 1 region behind read/write callbacks,
 *                  2 flash-resident model behind the Store (verify-only, commit
 *                  rewrites the flash), 3 RAM model persisted by the Store
 *        bit 2     the device holds the fuzz public key (signed payloads only)
 *        bit 3     the backup is read through a callback (modes 0 and 1)
 *        bits 4-5  chunk buffer: 160, 256, 600 or 1024 bytes
 *   c[1]           seed of the feed split (1..64-byte pieces, or one piece)
 *   c[2]           anti-rollback floor: c[2] % 4
 *   c[3]  bit 7    the bytes go straight to the v2 chunk decoder instead
 *                  (fuzz_decoder below): no header, no CRC in the way
 *         bit 6    v2: the harness recomputes the header CRC (unsigned
 *                  payloads) and every chunk CRC before feeding (fix_crcs),
 *                  so a mutated chunk head (KEEP, PRED, lengths) gets past
 *                  its CRC to the checks and the code behind them
 *
 * Invariants checked after every input (any violation aborts, so libFuzzer
 * keeps the input as a crash):
 *   - no access outside the region, the buffers or the flash (ASan; the
 *     callbacks bound-check too), no undefined behaviour (UBSan);
 *   - refused: the region is byte-identical to the old weights, the version
 *     and the floor did not move, weights_intact() holds, and for the Store
 *     the records still say CLEAN at version 1 after a simulated reboot;
 *   - accepted: the region's CRC32/SHA-256 is the header's digest, the
 *     version is the header's and is above the old one and at or above the
 *     floor; a device with a key accepted only a header whose signature
 *     verifies; the Store commits it and a reboot finds exactly it;
 *   - decoder (c[3] bit 7): every chunk decodes to exactly its length,
 *     writes stay inside the output window, and decoding in random pieces
 *     and windows gives the same bytes and the same model as in one go;
 *     a chunk with PRED in its enc byte: its decoded bytes are float32
 *     pairs (a, d) and modelota_fdiv(a, d) is this machine's IEEE float
 *     division wherever it is not 0, and not 0 wherever both operands and
 *     the quotient are normal (the smallest normal aside: a quotient rounded
 *     up to it from below is a subnormal for fdiv); modelota_predict_add
 *     adds exactly those quotients.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelota.h"
#include "modelota/ed25519.h"
#include "modelota/sha256.h"
#include "sim_flash.h"

namespace {

const uint32_t kRegion = 600;  /* not a whole number of flash blocks on purpose */
const uint32_t kBlock = 128;
const uint32_t kProg = 4;
const uint32_t kVersion = 1;
const uint8_t kFingerprint[16] = {'m', 'o', 'd', 'e', 'l', 'o', 't', 'a',
                                  '-', 'f', 'u', 'z', 'z', '-', 'f', 'p'};
/* public half of SHA-256("modelota fuzz key") as an Ed25519 seed (make_corpus.py) */
const uint8_t kPublicKey[32] = {0xf9, 0xb6, 0x97, 0xad, 0x88, 0x8f, 0x0d, 0xd8,
                                0x6a, 0x62, 0xbd, 0x6a, 0xe5, 0x8d, 0x2c, 0x5c,
                                0x2a, 0xb9, 0x94, 0x43, 0x35, 0x05, 0x6f, 0x6d,
                                0x2c, 0x40, 0x26, 0x5f, 0x62, 0xc0, 0x5d, 0x15};
const uint32_t kBuffers[4] = {160, 256, 600, 1024};

uint8_t factory[kRegion];

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_updater: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                           \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* A region behind callbacks, bound-checked like a flash driver would be. */
struct Region {
    uint8_t* bytes;
    uint32_t size;
};

int region_read(void* ctx, uint32_t off, uint8_t* dst, uint32_t len) {
    Region* r = static_cast<Region*>(ctx);
    CHECK(off <= r->size && len <= r->size - off);
    memcpy(dst, r->bytes + off, len);
    return 0;
}

int region_write(void* ctx, uint32_t off, const uint8_t* src, uint32_t len) {
    Region* r = static_cast<Region*>(ctx);
    CHECK(off <= r->size && len <= r->size - off);
    memcpy(r->bytes + off, src, len);
    return 0;
}

/* The accepted region must carry the header's digest. */
void check_digest(const modelota_header_info& info, const uint8_t* region) {
    if (info.digest_type == MODELOTA_DIGEST_CRC32) {
        CHECK(modelota_crc32(0, region, kRegion) == modelota_load_u32le(info.digest));
        return;
    }
    CHECK(info.digest_type == MODELOTA_DIGEST_SHA256);
    modelota_sha256 sha;
    uint8_t out[32];
    modelota_sha256_init(&sha);
    modelota_sha256_update(&sha, region, kRegion);
    modelota_sha256_final(&sha, out);
    CHECK(memcmp(out, info.digest, 32) == 0);
}

struct Split {
    uint32_t state;
    bool whole;
    size_t next(size_t left) {
        if (whole) {
            return left;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        size_t n = 1u + state % 64u;
        return n < left ? n : left;
    }
};

/* Feeds the stream in pieces (to the store log first when there is one, as
 * the Arduino glue and the link do); returns the final status. */
int run(modelota_updater* u, modelota_store* st, const uint8_t* p, size_t n, Split* split) {
    int rc = st != NULL ? modelota_store_begin(st) : MODELOTA_OK;
    CHECK(rc == MODELOTA_OK);
    CHECK(modelota_begin(u) == MODELOTA_OK);
    size_t pos = 0;
    while (pos < n) {
        size_t take = split->next(n - pos);
        if (st != NULL) {
            rc = modelota_store_log(st, p + pos, static_cast<uint32_t>(take));
            if (rc < 0) {
                modelota_store_cancel(st);
                return modelota_abort(u, rc);
            }
        }
        rc = modelota_feed(u, p + pos, take);
        if (rc < 0) {
            if (st != NULL) {
                modelota_store_cancel(st);
            }
            return rc;
        }
        pos += take;
    }
    rc = modelota_finish(u);
    if (rc < 0 && st != NULL) {
        modelota_store_cancel(st);
    }
    return rc;
}

void check_verdict(int rc, const modelota_updater* u, const uint8_t* p, size_t n,
                   const uint8_t* region, bool keyed, uint32_t floor) {
    CHECK(modelota_bytes_in(u) <= n);
#ifdef FUZZ_PLANTED_BUG
    /* self-test of the harness (tests/test_fuzz.py): pretend a refused
     * payload whose chunk CRC failed left one byte unrestored */
    if (rc == MODELOTA_CHUNK_CRC && modelota_data_applied(u) > 0) {
        const_cast<uint8_t*>(region)[0] ^= 1u;
    }
#endif
    if (rc < 0) {
        CHECK(memcmp(region, factory, kRegion) == 0);
        CHECK(modelota_weights_intact(u) == 1);
        CHECK(modelota_current_version(u) == kVersion);
        CHECK(modelota_min_version(u) == floor);
        return;
    }
    CHECK(rc == MODELOTA_OK && n >= 6);
    uint32_t hlen = p[4] == MODELOTA_FORMAT_V2 ? p[MODELOTA_V2_LEN_OFFSET] : MODELOTA_HEADER_LEN;
    CHECK(n >= hlen);
    modelota_header_info info;
    CHECK(modelota_header_parse(p, hlen, &info) == MODELOTA_OK);
    uint32_t version = info.model_version;
    CHECK(version > kVersion && version >= floor);
    CHECK(modelota_current_version(u) == version && modelota_min_version(u) == version);
    check_digest(info, region);
    bool is_signed = (info.flags & MODELOTA_FLAG_SIGNED) != 0;
    if (keyed) {
        CHECK(is_signed && n >= hlen + MODELOTA_SIGNATURE_LEN);
        CHECK(modelota_ed25519_verify(p + hlen, p, hlen, kPublicKey) == 1);
    }
}

void fuzz_memory(const uint8_t* c, const uint8_t* p, size_t n) {
    uint8_t* region = static_cast<uint8_t*>(malloc(kRegion)); /* exact size: ASan bounds */
    uint32_t buf_len = kBuffers[(c[0] >> 4) & 3u];
    uint8_t* buffer = static_cast<uint8_t*>(malloc(buf_len));
    uint8_t* backup = static_cast<uint8_t*>(malloc(kRegion));
    memcpy(region, factory, kRegion);
    memcpy(backup, factory, kRegion);
    Region target = {region, kRegion};
    Region source = {backup, kRegion};
    bool keyed = (c[0] & 4u) != 0;
    uint32_t floor = c[2] % 4u;

    modelota_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    if ((c[0] & 3u) == 0) {
        cfg.target.ram = region;
    } else {
        cfg.target.read = region_read;
        cfg.target.write = region_write;
        cfg.target.ctx = &target;
    }
    cfg.target.size = kRegion;
    if ((c[0] & 8u) != 0) {
        cfg.backup.read = region_read;
        cfg.backup.ctx = &source;
    } else {
        cfg.backup.image = backup;
    }
    cfg.backup.version = kVersion;
    cfg.fingerprint = kFingerprint;
    cfg.current_version = kVersion;
    cfg.buffer = buffer;
    cfg.buffer_len = buf_len;
    cfg.min_version = floor;
    if (keyed) {
        cfg.verifier = modelota_ed25519_verifier(kPublicKey);
    }
    modelota_updater u;
    CHECK(modelota_init(&u, &cfg) == MODELOTA_OK);
    Split split = {0x9E3779B9u ^ c[1], c[1] == 0};
    int rc = run(&u, NULL, p, n, &split);
    check_verdict(rc, &u, p, n, region, keyed, floor);
    CHECK(memcmp(backup, factory, kRegion) == 0); /* the backup is never written */
    free(region);
    free(buffer);
    free(backup);
}

/* Store layout on a 40-block flash: region 0-4, meta 5-6, backup 7,
 * journal 8-9, log 10-39 (3840 bytes: longer payloads are refused TooLarge). */
void fuzz_store(const uint8_t* c, const uint8_t* p, size_t n) {
    const uint32_t blocks = 40;
    static uint8_t mem[40 * kBlock];
    sim_flash flash;
    CHECK(sim_flash_init(&flash, mem, kBlock, blocks, kProg, 0xFF) == SIM_FLASH_OK);
    modelota_storage storage;
    sim_flash_storage(&flash, &storage);
    uint8_t* block_buf = static_cast<uint8_t*>(malloc(kBlock));
    modelota_store_config sc;
    memset(&sc, 0, sizeof(sc));
    sc.storage = &storage;
    sc.region_block = 0;
    sc.region_size = kRegion;
    sc.meta_block = 5;
    sc.backup_block = 7;
    sc.journal_block = 8;
    sc.journal_blocks = 2;
    sc.log_block = 10;
    sc.log_blocks = blocks - 10;
    sc.block_buf = block_buf;
    modelota_store st;
    CHECK(modelota_store_init(&st, &sc) == MODELOTA_OK);
    bool flash_model = (c[0] & 3u) == 2u;
    uint8_t* ram = static_cast<uint8_t*>(malloc(kRegion));
    memcpy(ram, factory, kRegion);
    CHECK(modelota_store_format(&st, factory, kVersion) == MODELOTA_OK);
    uint32_t floor = c[2] % 4u;
    if (floor > kVersion) {
        CHECK(modelota_store_raise_min_version(&st, floor) == MODELOTA_OK);
    }
    uint32_t expect_floor = floor > kVersion ? floor : kVersion;

    uint32_t buf_len = kBuffers[(c[0] >> 4) & 3u];
    uint8_t* buffer = static_cast<uint8_t*>(malloc(buf_len));
    bool keyed = (c[0] & 4u) != 0;
    modelota_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    if (flash_model) {
        modelota_store_attach_flash(&cfg, &st);
    } else {
        modelota_store_attach_ram(&cfg, &st, ram);
    }
    CHECK(cfg.min_version == expect_floor);
    cfg.fingerprint = kFingerprint;
    cfg.current_version = kVersion;
    cfg.buffer = buffer;
    cfg.buffer_len = buf_len;
    if (keyed) {
        cfg.verifier = modelota_ed25519_verifier(kPublicKey);
    }
    modelota_updater u;
    CHECK(modelota_init(&u, &cfg) == MODELOTA_OK);
    Split split = {0x85EBCA6Bu ^ c[1], c[1] == 0};
    int rc = run(&u, &st, p, n, &split);

    /* what the device runs: the flash region, or RAM for a RAM model */
    const uint8_t* live = flash_model ? mem : ram;
    check_verdict(rc, &u, p, n, live, keyed, expect_floor);
    if (!flash_model) {
        /* the persisted copy equals RAM whether the update went or not */
        CHECK(memcmp(mem, ram, kRegion) == 0);
    }
    /* reboot: the records tell the same story */
    modelota_store again;
    CHECK(modelota_store_init(&again, &sc) == MODELOTA_OK);
    CHECK(modelota_store_recover(&again) == MODELOTA_OK);
    CHECK(modelota_store_state_of(&again) == MODELOTA_STORE_CLEAN);
    CHECK(modelota_store_version(&again) == modelota_current_version(&u));
    CHECK(modelota_store_min_version(&again) == modelota_min_version(&u));
    CHECK(memcmp(mem, live, kRegion) == 0);
    free(block_buf);
    free(ram);
    free(buffer);
}

uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

bool normal_bits(uint32_t u) {
    uint32_t e = (u >> 23) & 0xFFu;
    return e != 0 && e != 0xFFu;
}

/* PRED: out[0..len) read as float32 pairs (a, d); fdiv against the FPU. */
void check_fdiv(const uint8_t* out, uint32_t len) {
    uint32_t pairs = len / 8u;
    if (pairs == 0) {
        return;
    }
    uint32_t d0 = modelota_load_u32le(out + 4);
    uint8_t* sum = static_cast<uint8_t*>(malloc(4u * pairs));
    uint8_t* src = static_cast<uint8_t*>(malloc(4u * pairs));
    for (uint32_t k = 0; k < pairs; ++k) {
        uint32_t a = modelota_load_u32le(out + 8u * k);
        uint32_t d = modelota_load_u32le(out + 8u * k + 4u);
        uint32_t q = modelota_fdiv(a, d);
        if (normal_bits(a) && normal_bits(d)) {
            uint32_t hw = float_bits(bits_float(a) / bits_float(d));
            float mag = fabsf(bits_float(hw));
            if (q != 0) {
                CHECK(q == hw);
            } else {
                CHECK(!normal_bits(hw) || mag == FLT_MIN);
            }
        } else {
            CHECK(q == 0);
        }
        memcpy(src + 4u * k, out + 8u * k, 4);
        for (uint32_t j = 0; j < 4u; ++j) {
            sum[4u * k + j] = static_cast<uint8_t>(k + j);
        }
    }
    modelota_predict_add(sum, src, pairs, d0); /* byte by byte, mod 256: no carries */
    for (uint32_t k = 0; k < pairs; ++k) {
        uint32_t q = modelota_fdiv(modelota_load_u32le(src + 4u * k), d0);
        for (uint32_t j = 0; j < 4u; ++j) {
            CHECK(sum[4u * k + j] == static_cast<uint8_t>(k + j + (q >> (8u * j))));
        }
    }
    free(sum);
    free(src);
}

/* The v2 chunk decoder alone: p = a sequence of chunks, each
 * enc u8, length u8 (1..256), offset u8, body length u8, body. Decoded once
 * in one call and once in random input pieces and output windows, from the
 * same model: same bytes, same model, exactly `length` bytes each time. */
void fuzz_decoder(const uint8_t* c, const uint8_t* p, size_t n) {
    static modelota_decoder one, split;
    modelota_decoder_reset(&one);
    modelota_decoder_reset(&split);
    Split rnd = {0x2545F491u ^ c[1], false};
    size_t pos = 0;
    for (int chunk = 0; chunk < 64 && n - pos >= 4; ++chunk) {
        uint8_t enc = static_cast<uint8_t>(p[pos] & MODELOTA_ENC_KNOWN);
        if ((enc & MODELOTA_ENC_METHOD) > MODELOTA_ENC_RC) {
            enc = static_cast<uint8_t>(enc & ~MODELOTA_ENC_METHOD);
        }
        uint32_t length = p[pos + 1] + 1u;
        uint32_t offset = p[pos + 2];
        size_t body_len = p[pos + 3];
        pos += 4;
        if (body_len > n - pos) {
            body_len = n - pos;
        }
        const uint8_t* body = p + pos;
        pos += body_len;
        /* exact-size buffers: ASan sees any write outside */
        uint8_t* a = static_cast<uint8_t*>(malloc(length));
        uint8_t* b = static_cast<uint8_t*>(malloc(length));
        for (uint32_t i = 0; i < length; ++i) {
            a[i] = b[i] = static_cast<uint8_t>(i * 7u); /* the "base" for DIFF */
        }
        uint32_t in_len = static_cast<uint32_t>(body_len);
        modelota_decode_begin(&one, enc, offset, length);
        uint32_t used = modelota_decode(&one, body, in_len, a, 0, length);
        CHECK(used <= in_len);
        modelota_decode(&one, NULL, 0, a, 0, length);
        CHECK(modelota_decoded(&one) == length);
        /* pieces: random input slices, random output windows (a window is
         * written through a pointer to its own first byte) */
        modelota_decode_begin(&split, enc, offset, length);
        uint32_t at = 0;
        for (uint32_t guard = 0; guard < 4u * (in_len + length) + 8u; ++guard) {
            uint32_t done = modelota_decoded(&split);
            if (done == length) {
                break;
            }
            uint32_t to = done + 1u + static_cast<uint32_t>(rnd.next(length - done) - 1u);
            if (at == in_len) {
                modelota_decode(&split, NULL, 0, b + done, done, to);
                continue;
            }
            uint32_t k = static_cast<uint32_t>(rnd.next(in_len - at));
            at += modelota_decode(&split, body + at, k, b + done, done, to);
        }
        CHECK(modelota_decoded(&split) == length);
        CHECK(memcmp(a, b, length) == 0);
        CHECK(memcmp(&one.lit, &split.lit, sizeof(one.lit)) == 0);
        CHECK(memcmp(&one.lane, &split.lane, sizeof(one.lane)) == 0);
        if ((enc & MODELOTA_ENC_PRED) != 0) {
            check_fdiv(a, length);
        }
        free(a);
        free(b);
    }
}

void put_u32le(uint8_t* p, uint32_t v) {
    for (uint32_t i = 0; i < 4u; ++i) {
        p[i] = static_cast<uint8_t>(v >> (8u * i));
    }
}

/* c[3] bit 6: the CRCs a v2 payload's header and chunks would need, written
 * into p (the header's only when unsigned: a signed header stays as signed).
 * Chunks are framed with the device's own head parser; stops at the first
 * head it refuses or that the bytes do not hold. */
void fix_crcs(uint8_t* p, size_t n) {
    if (n < 6u || p[4] != MODELOTA_FORMAT_V2) {
        return;
    }
    uint32_t hlen = p[MODELOTA_V2_LEN_OFFSET];
    if (hlen < MODELOTA_V2_MIN_HEADER_LEN || hlen > MODELOTA_V2_MAX_HEADER_LEN || hlen > n) {
        return;
    }
    const uint8_t flags = p[7];
    const bool is_signed = (flags & MODELOTA_FLAG_SIGNED) != 0;
    if (!is_signed) {
        put_u32le(p + hlen - 4u, modelota_crc32(0, p, hlen - 4u));
    }
    uint32_t seed = modelota_load_u32le(p + hlen - 4u);
    size_t pos = hlen + (is_signed ? MODELOTA_SIGNATURE_LEN : 0u);
    for (int i = 0; i < 64 && pos < n; ++i) {
        modelota_chunk_head h;
        size_t avail = n - pos < MODELOTA_V2_MAX_CHUNK_HEAD ? n - pos : MODELOTA_V2_MAX_CHUNK_HEAD;
        if (modelota_chunk_head_parse(p + pos, static_cast<uint32_t>(avail),
                                      (flags & MODELOTA_FLAG_DELTA) != 0, &h) != 1 ||
            h.size > n - pos - h.head_len || n - pos - h.head_len - h.size < 4u) {
            return;
        }
        size_t body = h.head_len + h.size;
        seed = modelota_crc32(seed, p + pos, body);
        put_u32le(p + pos + body, seed);
        pos += body + 4u;
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    for (uint32_t i = 0; i < kRegion; ++i) {
        factory[i] = static_cast<uint8_t>(i * 31u + 7u);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) {
        return 0;
    }
    const uint8_t* c = data;
    if ((c[3] & 0x80u) != 0) {
        fuzz_decoder(c, data + 4, size - 4);
        return 0;
    }
    const uint8_t* p = data + 4;
    uint8_t* fixed = NULL;
    if ((c[3] & 0x40u) != 0) {
        fixed = static_cast<uint8_t*>(malloc(size - 4 + 1)); /* +1: never malloc(0) */
        memcpy(fixed, p, size - 4);
        fix_crcs(fixed, size - 4);
        p = fixed;
    }
    if ((c[0] & 3u) < 2u) {
        fuzz_memory(c, p, size - 4);
    } else {
        fuzz_store(c, p, size - 4);
    }
    free(fixed);
    return 0;
}
