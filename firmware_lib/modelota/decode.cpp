#include "decode.h"

#include <stddef.h>
#include <string.h>

#include "status.h"

static_assert(MODELOTA_RC_LIT_NODES == 256u, "tree A covers all eight bits of a byte");
static_assert(MODELOTA_RC_LANE_NODES == 128u, "tree B covers bits 7..1 of a lane byte");
static_assert(MODELOTA_V2_MAX_CHUNK_HEAD <= 48u, "a v2 chunk head fits the Updater's field");
static_assert(MODELOTA_RC_PROB_BITS == 16u, "16-bit probabilities: bound = (range >> 16) * p");

namespace {

const uint16_t kProbInit = 0x8000u; /* one half */

/* RUNS token phases */
const uint8_t kToken = 0;
const uint8_t kRunByte = 1;
const uint8_t kLiteral = 2;
const uint8_t kRepeat = 3;

bool digest_type_known(uint8_t type) {
#if MODELOTA_SHA256
    if (type == MODELOTA_DIGEST_SHA256) {
        return true;
    }
#endif
    return type == MODELOTA_DIGEST_CRC32;
}

/* Unsigned LEB128 at p (avail bytes there): 1 and *value, *used when read;
 * 0 when more bytes are needed; -1 when malformed: more than 5 bytes, a value
 * above 2^32-1, or a non-minimal last byte 0x00. */
int read_varint(const uint8_t* p, uint32_t avail, uint32_t* value, uint32_t* used) {
    uint32_t v = 0;
    for (uint32_t i = 0; i < MODELOTA_VARINT_MAX; ++i) {
        if (i >= avail) {
            return 0;
        }
        uint8_t b = p[i];
        if (i == MODELOTA_VARINT_MAX - 1u && (b & 0xF0u) != 0) {
            return -1; /* a continuation on byte 5, or bits above 2^32 */
        }
        v |= static_cast<uint32_t>(b & 0x7Fu) << (7u * i);
        if ((b & 0x80u) == 0) {
            if (i > 0 && b == 0) {
                return -1;
            }
            *value = v;
            *used = i + 1u;
            return 1;
        }
    }
    return -1;
}

int parse_v1(const uint8_t* h, modelota_header_info* info) {
    uint8_t digest_type = h[5];
    uint16_t flags = modelota_load_u16le(h + 6);
    bool delta = (flags & MODELOTA_FLAG_DELTA) != 0;
    bool sig = (flags & MODELOTA_FLAG_SIGNED) != 0;
    info->base_version = modelota_load_u32le(h + 28);
    info->base_crc32 = modelota_load_u32le(h + 32);
    if (!digest_type_known(digest_type) || (flags & ~MODELOTA_KNOWN_FLAGS) != 0 ||
        (sig && digest_type != MODELOTA_DIGEST_SHA256) ||
        (!sig && modelota_load_u32le(h + 88) != 0) ||
        (!delta && (info->base_version != 0 || info->base_crc32 != 0))) {
        return MODELOTA_UNSUPPORTED;
    }
    info->digest_len = digest_type == MODELOTA_DIGEST_CRC32 ? 4u : MODELOTA_DIGEST_LEN;
    for (uint32_t i = info->digest_len; i < MODELOTA_DIGEST_LEN; ++i) {
        if (h[56 + i] != 0) { /* CRC32 digest uses the first 4 bytes only */
            return MODELOTA_UNSUPPORTED;
        }
    }
    info->header_len = MODELOTA_HEADER_LEN;
    info->model_version = modelota_load_u32le(h + 24);
    info->weights_size = modelota_load_u32le(h + 36);
    info->data_size = modelota_load_u32le(h + 40);
    info->chunk_count = modelota_load_u32le(h + 44);
    info->segment_count = modelota_load_u32le(h + 48);
    info->max_chunk = modelota_load_u32le(h + 52);
    info->digest = h + 56;
    info->flags = flags;
    info->digest_type = digest_type;
    return MODELOTA_OK;
}

int parse_v2(const uint8_t* h, uint32_t len, modelota_header_info* info) {
    uint8_t digest_type = h[MODELOTA_V2_DIGEST_TYPE_OFFSET];
    uint8_t flags = h[MODELOTA_V2_FLAGS_OFFSET];
    bool delta = (flags & MODELOTA_FLAG_DELTA) != 0;
    bool sig = (flags & MODELOTA_FLAG_SIGNED) != 0;
    if (!digest_type_known(digest_type) || (flags & ~MODELOTA_KNOWN_FLAGS) != 0 ||
        (sig && digest_type != MODELOTA_DIGEST_SHA256)) {
        return MODELOTA_UNSUPPORTED;
    }
    /* the fields between the fingerprint and the header CRC, exactly */
    uint32_t end = len - 4u;
    uint32_t pos = MODELOTA_V2_FIXED_LEN;
    uint32_t v[6] = {0, 0, 0, 0, 0, 0};
    uint32_t count = delta ? 6u : 5u;
    for (uint32_t i = 0; i < count; ++i) {
        uint32_t used = 0;
        if (read_varint(h + pos, end - pos, &v[i], &used) != 1) {
            return MODELOTA_UNSUPPORTED;
        }
        pos += used;
    }
    info->digest_len = digest_type == MODELOTA_DIGEST_CRC32 ? 4u : MODELOTA_DIGEST_LEN;
    uint32_t rest = (delta ? 4u : 0u) + info->digest_len + (sig ? 4u : 0u);
    if (end - pos != rest) {
        return MODELOTA_UNSUPPORTED;
    }
    info->base_version = v[5];
    info->base_crc32 = 0;
    if (delta) {
        info->base_crc32 = modelota_load_u32le(h + pos);
        pos += 4u;
    }
    info->digest = h + pos;
    info->header_len = len;
    info->model_version = v[0];
    info->weights_size = v[1];
    info->data_size = v[2];
    info->chunk_count = v[3];
    info->segment_count = 0;
    info->max_chunk = v[4];
    info->flags = flags;
    info->digest_type = digest_type;
    return MODELOTA_OK;
}

/* Writes decoded value v as the chunk's next byte. */
inline void put(modelota_decoder* d, uint8_t* out, uint32_t from, uint8_t v) {
    uint8_t* p = out + (d->out - from);
    *p = (d->enc & MODELOTA_ENC_DIFF) != 0 ? static_cast<uint8_t>(*p + v) : v;
    d->out++;
}

uint32_t decode_raw(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                    uint32_t from, uint32_t to) {
    uint32_t take = to - d->out;
    if (in != NULL && n < take) {
        take = n;
    }
    for (uint32_t i = 0; i < take; ++i) {
        put(d, out, from, in != NULL ? in[i] : 0u);
    }
    return in != NULL ? take : 0u;
}

uint32_t decode_runs(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                     uint32_t from, uint32_t to) {
    uint32_t used = 0;
    /* each pass takes an input byte or writes an output byte */
    while (d->out < to) {
        if (d->phase == kRepeat) {
            put(d, out, from, d->run);
            if (--d->count == 0) {
                d->phase = kToken;
            }
            continue;
        }
        uint8_t b = 0;
        if (in != NULL) {
            if (used == n) {
                break;
            }
            b = in[used++];
        }
        if (d->phase == kToken) {
            d->count |= static_cast<uint32_t>(b & 0x7Fu) << (7u * d->shift);
            d->shift++;
            if ((b & 0x80u) == 0 || d->shift == MODELOTA_RUNS_TOKEN_MAX) {
                uint32_t t = d->count;
                uint32_t left = d->length - d->out;
                d->count = (t >> 1) + 1u;
                if (d->count > left) {
                    d->count = left;
                }
                d->phase = (t & 1u) != 0 ? kRunByte : kLiteral;
                d->shift = 0;
            }
        } else if (d->phase == kRunByte) {
            d->run = b;
            d->phase = kRepeat;
        } else { /* kLiteral */
            put(d, out, from, b);
            if (--d->count == 0) {
                d->phase = kToken;
            }
        }
    }
    return used;
}

/* The range coder (docs/FORMAT.md, "RC"). Per bit, with prob = tree[nb]
 * and bound = (range >> 16) * prob: bit 0 when code < bound (range = bound,
 * prob += (65536 - prob) >> 5), else bit 1 (code -= bound, range -= bound,
 * prob -= prob >> 5); nb = (nb << 1) | bit. Before each bit, range < 2^24
 * takes one more input byte (twice after a bit of probability below 1/256,
 * which left less than 2^16); that is the only place that reads input, so
 * the only place that can run out of it and stop, to resume there. Bits 7..1
 * of a lane byte use tree B (lane), everything else tree A (lit).
 *
 * Portable C++ everywhere. On an AVR with a hardware multiplier the loop is
 * one asm block: avr-gcc 5 at -Os keeps range and code on the stack around a
 * 32 x 16 multiply and spends ~90 cycles a bit, too slow for a whole update
 * to keep up with 115200 baud (bench/bench_size.py, table 4b); the block
 * spends 59 (a 0) or 64 (a 1). bench_size.py runs it in simavr and checks
 * every decoded byte and every whole update against the packer; the tests
 * compare the portable build with the Python reference. */
#if defined(__AVR__) && defined(__AVR_HAVE_MUL__)
/* What the asm loop reads and writes in memory (offsets fixed below). */
struct RcIo {
    const uint8_t* src;     /* 0: next input byte */
    const uint8_t* src_end; /* 2 */
    uint8_t* dst;           /* 4: next output byte */
    uint8_t* dst_end;       /* 6 */
    uint16_t* lit;          /* 8: tree A */
    uint16_t* lane;         /* 10: tree B, or tree A without LANES */
    uint8_t lane_pos;       /* 12: (offset of the byte at dst) & 3 */
    uint8_t diff;           /* 13: add to the byte at dst */
    uint8_t zeros;          /* 14: no input: read zeros */
};
static_assert(sizeof(void*) == 2u && offsetof(RcIo, lane_pos) == 12u &&
                  offsetof(RcIo, zeros) == 14u,
              "RcIo offsets used by the asm below");

/* t >>= 5 in the asm below: swap gives >> 4 on both bytes, one shift more */
#define RC_T_SHR5                                                                          \
    "swap %B[t]\n\t"                                                                        \
    "swap %A[t]\n\t"                                                                        \
    "andi %A[t], 0x0F\n\t"                                                                  \
    "eor  %A[t], %B[t]\n\t"                                                                 \
    "andi %B[t], 0x0F\n\t"                                                                  \
    "eor  %A[t], %B[t]\n\t"                                                                 \
    "lsr  %B[t]\n\t"                                                                        \
    "ror  %A[t]\n\t"

/* Decodes from node nb with tree (the tree of that node) until io->dst
 * reaches io->dst_end (nb is then 1) or the input runs out (nb is the node
 * to resume at). range, code and nb stay in registers; io is read per
 * byte and per input byte only. */
inline void rc_run(uint32_t& range, uint32_t& code, uint8_t& nb, uint16_t* tree, RcIo* io) {
    uint16_t prob;
    uint32_t bound;
    uint16_t t;
    uint16_t* p;
    __asm__(
        "rjmp 1f\n"
        /* 20: range < 2^24: the next input byte, or 0 with no input, or stop */
        "20:\n\t"
        "movw %A[p], %A[io]\n\t"
        "ld   %A[t], %a[p]\n\t"
        "ldd  %B[t], %a[p]+1\n\t"
        "ldd  %A[bound], %a[p]+2\n\t"
        "ldd  %B[bound], %a[p]+3\n\t"
        "cp   %A[t], %A[bound]\n\t"
        "cpc  %B[t], %B[bound]\n\t"
        "brne 21f\n\t"
        "ldd  %A[prob], %a[p]+14\n\t"
        "tst  %A[prob]\n\t"
        "brne 22f\n\t"
        "rjmp 99f\n"
        "22:\n\t"
        "clr  %A[prob]\n\t"
        "rjmp 23f\n"
        "21:\n\t"
        "movw %A[p], %A[t]\n\t"
        "ld   %A[prob], %a[p]+\n\t"
        "movw %A[t], %A[p]\n\t"
        "movw %A[p], %A[io]\n\t"
        "st   %a[p], %A[t]\n\t"
        "std  %a[p]+1, %B[t]\n"
        "23:\n\t"
        "mov  %D[range], %C[range]\n\t"
        "mov  %C[range], %B[range]\n\t"
        "mov  %B[range], %A[range]\n\t"
        "clr  %A[range]\n\t"
        "mov  %D[code], %C[code]\n\t"
        "mov  %C[code], %B[code]\n\t"
        "mov  %B[code], %A[code]\n\t"
        "mov  %A[code], %A[prob]\n"
        /* 1: a bit. p = tree + nb (r1 is zero), prob = *p; bound =
         * hi16(range) * prob in four 8 x 8 products (r1 zeroed after the
         * last); compare; t = 65536 - prob or prob, shifted right by 5
         * (swap: >> 4 on both bytes, then one more); *p updated; nb shifted
         * with the bit, the carry out of it is the old bit 7: byte done */
        "1:\n\t"
        "tst  %D[range]\n\t"
        "breq 20b\n\t"
        "movw %A[p], %A[tree]\n\t"
        "add  %A[p], %[nb]\n\t"
        "adc  %B[p], r1\n\t"
        "add  %A[p], %[nb]\n\t"
        "adc  %B[p], r1\n\t"
        "ld   %A[prob], %a[p]\n\t"
        "ldd  %B[prob], %a[p]+1\n\t"
        "mul  %C[range], %A[prob]\n\t"
        "movw %A[bound], r0\n\t"
        "mul  %D[range], %B[prob]\n\t"
        "movw %C[bound], r0\n\t"
        "mul  %C[range], %B[prob]\n\t"
        "add  %B[bound], r0\n\t"
        "adc  %C[bound], r1\n\t"
        "clr  r1\n\t"
        "adc  %D[bound], r1\n\t"
        "mul  %D[range], %A[prob]\n\t"
        "add  %B[bound], r0\n\t"
        "adc  %C[bound], r1\n\t"
        "clr  r1\n\t"
        "adc  %D[bound], r1\n\t"
        "cp   %A[code], %A[bound]\n\t"
        "cpc  %B[code], %B[bound]\n\t"
        "cpc  %C[code], %C[bound]\n\t"
        "cpc  %D[code], %D[bound]\n\t"
        "brsh 3f\n\t"
        "movw %A[range], %A[bound]\n\t"
        "movw %C[range], %C[bound]\n\t"
        "clr  %A[t]\n\t"
        "clr  %B[t]\n\t"
        "sub  %A[t], %A[prob]\n\t"
        "sbc  %B[t], %B[prob]\n\t"
        RC_T_SHR5
        "add  %A[prob], %A[t]\n\t"
        "adc  %B[prob], %B[t]\n\t"
        "st   %a[p], %A[prob]\n\t"
        "std  %a[p]+1, %B[prob]\n\t"
        "lsl  %[nb]\n\t"
        "brcs 7f\n\t"
        "sbrs %[nb], 7\n\t"
        "rjmp 1b\n\t"
        "rjmp 6f\n"
        "3:\n\t"
        "sub  %A[code], %A[bound]\n\t"
        "sbc  %B[code], %B[bound]\n\t"
        "sbc  %C[code], %C[bound]\n\t"
        "sbc  %D[code], %D[bound]\n\t"
        "sub  %A[range], %A[bound]\n\t"
        "sbc  %B[range], %B[bound]\n\t"
        "sbc  %C[range], %C[bound]\n\t"
        "sbc  %D[range], %D[bound]\n\t"
        "movw %A[t], %A[prob]\n\t"
        RC_T_SHR5
        "sub  %A[prob], %A[t]\n\t"
        "sbc  %B[prob], %B[t]\n\t"
        "st   %a[p], %A[prob]\n\t"
        "std  %a[p]+1, %B[prob]\n\t"
        "sec\n\t"
        "rol  %[nb]\n"
        "brcs 7f\n\t"
        "sbrs %[nb], 7\n\t"
        "rjmp 1b\n"
        "6:\n\t"
        "movw %A[p], %A[io]\n\t" /* bit 0 of the byte is next: tree A */
        "ldd  %A[tree], %a[p]+8\n\t"
        "ldd  %B[tree], %a[p]+9\n\t"
        "rjmp 1b\n"
        /* 7: nb is the byte: store it (added to the base with DIFF), stop
         * at dst_end, else the next byte's tree and node 1 */
        "7:\n\t"
        "movw %A[p], %A[io]\n\t"
        "ldd  %A[t], %a[p]+4\n\t"
        "ldd  %B[t], %a[p]+5\n\t"
        "ldd  %A[bound], %a[p]+6\n\t"
        "ldd  %B[bound], %a[p]+7\n\t"
        "ldd  %C[bound], %a[p]+13\n\t"
        "ldd  %D[bound], %a[p]+12\n\t"
        "movw %A[p], %A[t]\n\t"
        "tst  %C[bound]\n\t"
        "breq 8f\n\t"
        "ld   %A[prob], %a[p]\n\t"
        "add  %[nb], %A[prob]\n"
        "8:\n\t"
        "st   %a[p]+, %[nb]\n\t"
        "movw %A[t], %A[p]\n\t"
        "movw %A[p], %A[io]\n\t"
        "std  %a[p]+4, %A[t]\n\t"
        "std  %a[p]+5, %B[t]\n\t"
        "clr  %[nb]\n\t"
        "inc  %[nb]\n\t"
        "cp   %A[t], %A[bound]\n\t"
        "cpc  %B[t], %B[bound]\n\t"
        "breq 99f\n\t"
        "mov  %A[t], %D[bound]\n\t"
        "inc  %A[t]\n\t"
        "andi %A[t], 3\n\t"
        "std  %a[p]+12, %A[t]\n\t"
        "ldd  %A[tree], %a[p]+8\n\t"
        "ldd  %B[tree], %a[p]+9\n\t"
        "cpi  %A[t], 3\n\t"
        "breq 9f\n\t"
        "rjmp 1b\n"
        "9:\n\t"
        "ldd  %A[tree], %a[p]+10\n\t"
        "ldd  %B[tree], %a[p]+11\n\t"
        "rjmp 1b\n"
        "99:"
        : [range] "+r"(range), [code] "+r"(code), [nb] "+r"(nb), [tree] "+r"(tree),
          [prob] "=&r"(prob), [bound] "=&r"(bound), [t] "=&d"(t), [p] "=&z"(p)
        : [io] "r"(io)
        : "memory");
}
#undef RC_T_SHR5
#else
/* One bit from *p, range normalized. */
inline uint_fast8_t rc_bit(uint32_t& range, uint32_t& code, uint16_t* p) {
    const uint16_t prob = *p;
    const uint32_t bound = static_cast<uint32_t>(static_cast<uint16_t>(range >> 16)) * prob;
    if (code < bound) {
        range = bound;
        /* 0 - prob is 65536 - prob in 16 bits (prob > 0) */
        *p = static_cast<uint16_t>(prob +
                                   (static_cast<uint16_t>(0u - prob) >> MODELOTA_RC_MOVE_BITS));
        return 0;
    }
    code -= bound;
    range -= bound;
    *p = static_cast<uint16_t>(prob - (prob >> MODELOTA_RC_MOVE_BITS));
    return 1;
}
#endif
static_assert(MODELOTA_RC_MOVE_BITS == 5u, "the AVR loop moves a probability by 1/32");

/* The portable loop is kept free of 32-bit work that an 8-bit CPU would pay
 * per bit: the node is a byte (1..255), the tree is picked per byte and
 * switched to tree A before bit 0, output and input are walked with
 * pointers, the normalization tests one byte. */
uint32_t decode_rc(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                   uint32_t from, uint32_t to) {
    const uint8_t* src = in;
    const uint8_t* const src_end = in != NULL ? in + n : NULL;
    while (d->phase > 0) { /* the first four bytes of a chunk fill `code` */
        uint8_t b = 0;
        if (in != NULL) {
            if (src == src_end) {
                return static_cast<uint32_t>(src - in);
            }
            b = *src++;
        }
        d->code = (d->code << 8) | b;
        d->phase--;
    }
    uint32_t range = d->range;
    uint32_t code = d->code;
    uint16_t* const lit = d->lit;
    uint16_t* const lane = (d->enc & MODELOTA_ENC_LANES) != 0 ? d->lane : lit;
    uint8_t* dst = out + (d->out - from);
    uint8_t* const dst_end = out + (to - from);
    uint8_t lane_pos = static_cast<uint8_t>((d->offset + d->out) & 3u);
#if defined(__AVR__) && defined(__AVR_HAVE_MUL__)
    uint8_t nb = static_cast<uint8_t>(d->node);
    uint16_t* const tree = nb < MODELOTA_RC_LANE_NODES && lane_pos == 3u ? lane : lit;
    RcIo io;
    io.src = src;
    io.src_end = src_end;
    io.dst = dst;
    io.dst_end = dst_end;
    io.lit = lit;
    io.lane = lane;
    io.lane_pos = lane_pos;
    io.diff = (d->enc & MODELOTA_ENC_DIFF) != 0 ? 1u : 0u;
    io.zeros = in == NULL ? 1u : 0u;
    rc_run(range, code, nb, tree, &io);
    src = io.src;
    dst = io.dst;
#else
    const bool diff = (d->enc & MODELOTA_ENC_DIFF) != 0;
    uint_fast8_t nb = static_cast<uint_fast8_t>(d->node);
    /* eight bits per output byte; each takes at most two input bytes. The
     * tree node fits a byte until the last bit (1..255): 8-bit work on an
     * 8-bit CPU (uint_fast8_t: a register on a 32-bit one); the last bit
     * makes the output byte instead of a node */
    while (dst != dst_end) {
        uint16_t* const tree_b = lane_pos == 3u ? lane : lit;
        uint8_t v;
        for (;;) {
            uint16_t* p = (nb < MODELOTA_RC_LANE_NODES ? tree_b : lit) + nb;
            while (static_cast<uint8_t>(range >> 24) == 0) {
                uint8_t b = 0;
                if (in != NULL) {
                    if (src == src_end) { /* resume here with the next input */
                        d->range = range;
                        d->code = code;
                        d->node = static_cast<uint16_t>(nb);
                        d->out = static_cast<uint32_t>(dst - out) + from;
                        return n;
                    }
                    b = *src++;
                }
                range <<= 8;
                code = (code << 8) | b;
            }
            const uint_fast8_t bit = rc_bit(range, code, p);
            if (nb >= MODELOTA_RC_LANE_NODES) { /* bit 0 of the byte */
                v = static_cast<uint8_t>((nb << 1) | bit);
                break;
            }
            nb = static_cast<uint_fast8_t>((nb << 1) | bit);
        }
        *dst = diff ? static_cast<uint8_t>(*dst + v) : v;
        ++dst;
        lane_pos = static_cast<uint8_t>((lane_pos + 1u) & 3u);
        nb = 1;
    }
#endif
    d->range = range;
    d->code = code;
    d->node = static_cast<uint16_t>(nb);
    d->out = static_cast<uint32_t>(dst - out) + from;
    return static_cast<uint32_t>(src - in);
}

}  // namespace

extern "C" {

uint32_t modelota_header_want(const uint8_t* h, uint32_t have) {
    if (have < 4u) {
        return 4u;
    }
    if (have < 5u) {
        return 5u;
    }
    if (h[4] != MODELOTA_FORMAT_V2) {
        return MODELOTA_HEADER_LEN;
    }
    if (have < 6u) {
        return 6u;
    }
    return h[MODELOTA_V2_LEN_OFFSET];
}

int modelota_header_parse(const uint8_t* h, uint32_t len, modelota_header_info* info) {
    memset(info, 0, sizeof(*info));
    info->format_version = h[4];
    info->fingerprint = h + 8;
    if (h[4] == MODELOTA_FORMAT_V2) {
        return parse_v2(h, len, info);
    }
    return parse_v1(h, info);
}

int modelota_chunk_head_parse(const uint8_t* f, uint32_t n, int delta, modelota_chunk_head* out) {
    if (n == 0) {
        return 0;
    }
    uint8_t enc = f[0];
    uint8_t method = static_cast<uint8_t>(enc & MODELOTA_ENC_METHOD);
    if ((enc & ~MODELOTA_ENC_KNOWN) != 0 || method > MODELOTA_ENC_RC ||
        ((enc & MODELOTA_ENC_DIFF) != 0 && !delta) ||
        ((enc & MODELOTA_ENC_LANES) != 0 && method != MODELOTA_ENC_RC)) {
        return MODELOTA_BAD_CHUNK;
    }
    /* gap, length, [size], [keep start, keep length], [pred start, count, back] */
    uint32_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const uint32_t base = method == MODELOTA_ENC_RAW ? 2u : 3u;
    const uint32_t keep = (enc & MODELOTA_ENC_KEEP) != 0 ? 2u : 0u;
    const bool pred = (enc & MODELOTA_ENC_PRED) != 0;
    const uint32_t count = base + keep + (pred ? 3u : 0u);
    uint32_t pos = 1;
    for (uint32_t i = 0; i < count; ++i) {
        uint32_t used = 0;
        int r = read_varint(f + pos, n - pos, &v[i], &used);
        if (r < 0) {
            return MODELOTA_BAD_CHUNK;
        }
        if (r == 0) {
            return 0;
        }
        pos += used;
    }
    memset(out, 0, sizeof(*out));
    if (pred) {
        if (n - pos < 4u) {
            return 0; /* the divisor's bytes */
        }
        out->pred_start = v[base + keep];
        out->pred_count = v[base + keep + 1u];
        out->pred_back = v[base + keep + 2u];
        out->pred_divisor = modelota_load_u32le(f + pos);
        pos += 4u;
    }
    if (keep != 0) {
        out->keep_start = v[base];
        out->keep_len = v[base + 1u];
    }
    out->enc = enc;
    out->gap = v[0];
    out->length = v[1];
    out->size = method == MODELOTA_ENC_RAW ? v[1] : v[2];
    out->head_len = pos;
    return 1;
}

int modelota_chunk_refs_check(const modelota_chunk_head* h, uint32_t offset, uint32_t max_chunk,
                              uint32_t kept_off, uint32_t kept_len) {
    const uint32_t len = h->length;
    if ((h->enc & MODELOTA_ENC_KEEP) != 0 &&
        (h->keep_len == 0 || h->keep_start > len || h->keep_len > len - h->keep_start)) {
        return MODELOTA_BAD_CHUNK;
    }
    if (kept_len != 0 && (kept_len > max_chunk || len > max_chunk - kept_len)) {
        return MODELOTA_BAD_CHUNK; /* the kept bytes share the buffer with this chunk */
    }
    if ((h->enc & MODELOTA_ENC_PRED) == 0) {
        return MODELOTA_OK;
    }
    const uint32_t n = h->pred_count;
    if (n == 0 || h->pred_start > len || n > (len - h->pred_start) / 4u) {
        return MODELOTA_BAD_CHUNK;
    }
    const uint32_t target = offset + h->pred_start; /* offset + len fits: checked before */
    if (h->pred_back < 4u * n || h->pred_back > target) {
        return MODELOTA_BAD_CHUNK; /* source overlapping the target, or before the region */
    }
    const uint32_t src = target - h->pred_back;
    if (src >= offset) {
        return MODELOTA_OK; /* earlier in this chunk */
    }
    if (kept_len != 0 && src >= kept_off && src - kept_off <= kept_len &&
        4u * n <= kept_len - (src - kept_off)) {
        return MODELOTA_OK; /* in the kept range */
    }
    return MODELOTA_BAD_CHUNK;
}

uint32_t modelota_fdiv(uint32_t a, uint32_t d) {
    const uint32_t ea = (a >> 23) & 0xFFu;
    const uint32_t ed = (d >> 23) & 0xFFu;
    if (ea == 0 || ea == 0xFFu || ed == 0 || ed == 0xFFu) {
        return 0;
    }
    uint32_t ma = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t md = (d & 0x7FFFFFu) | 0x800000u;
    int32_t e = static_cast<int32_t>(ea) - static_cast<int32_t>(ed) + 127;
    if (ma < md) {
        ma <<= 1;
        e -= 1;
    }
    uint32_t q = 0;
    uint32_t r = ma; /* below 2 * md < 2^25 throughout */
    for (uint8_t i = 0; i < 24u; ++i) {
        q <<= 1;
        if (r >= md) {
            r -= md;
            q |= 1u;
        }
        r <<= 1;
    }
    /* round to nearest: r is twice the remainder. Never a tie (md * (2q + 1)
     * == ma * 2^24 would need 24 factors of 2 in md, which is below 2^24), and
     * never up to 2^24 (ma <= 2 md - 1: the quotient is below 2^24 - 1/2) */
    if (r > md) {
        q += 1u;
    }
    if (e <= 0 || e >= 0xFF) {
        return 0;
    }
    return ((a ^ d) & 0x80000000u) | (static_cast<uint32_t>(e) << 23) | (q & 0x7FFFFFu);
}

void modelota_predict_add(uint8_t* out, const uint8_t* src, uint32_t count, uint32_t divisor) {
    for (uint32_t k = 0; k < count; ++k) {
        uint32_t q = modelota_fdiv(modelota_load_u32le(src + 4u * k), divisor);
        for (uint8_t j = 0; j < 4u; ++j) {
            out[4u * k + j] = static_cast<uint8_t>(out[4u * k + j] + (q >> (8u * j)));
        }
    }
}

void modelota_decoder_reset(modelota_decoder* d) {
    for (uint32_t i = 0; i < MODELOTA_RC_LIT_NODES; ++i) {
        d->lit[i] = kProbInit;
    }
    for (uint32_t i = 0; i < MODELOTA_RC_LANE_NODES; ++i) {
        d->lane[i] = kProbInit;
    }
}

void modelota_decode_begin(modelota_decoder* d, uint8_t enc, uint32_t offset, uint32_t length) {
    d->enc = enc;
    d->offset = offset;
    d->length = length;
    d->out = 0;
    d->count = 0;
    d->shift = 0;
    d->run = 0;
    d->range = 0xFFFFFFFFu;
    d->code = 0;
    d->node = 1;
    d->phase = (enc & MODELOTA_ENC_METHOD) == MODELOTA_ENC_RC ? 4u : kToken;
}

uint32_t modelota_decode(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                         uint32_t from, uint32_t to) {
    if (to > d->length) {
        to = d->length;
    }
    if (d->out >= to) {
        return 0;
    }
    switch (d->enc & MODELOTA_ENC_METHOD) {
    case MODELOTA_ENC_RUNS: return decode_runs(d, in, n, out, from, to);
    case MODELOTA_ENC_RC: return decode_rc(d, in, n, out, from, to);
    default: return decode_raw(d, in, n, out, from, to);
    }
}

uint32_t modelota_decoded(const modelota_decoder* d) { return d->out; }

}  // extern "C"
