#include "decode.h"

#include <string.h>

#include "status.h"

static_assert(MODELOTA_RC_LIT_NODES == 256u, "tree A covers all eight bits of a byte");
static_assert(MODELOTA_RC_LANE_NODES == 128u, "tree B covers bits 7..1 of a lane byte");
static_assert(MODELOTA_V2_MAX_CHUNK_HEAD <= 16u, "a v2 chunk head fits the Updater's field");
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

/* The two arithmetic steps of every bit, (range >> 16) * prob and
 * prob >> 5. Portable C++ everywhere; on an AVR with a hardware multiplier
 * the same values in a few instructions: avr-gcc at -Os calls a 32 x 16
 * library multiply and shifts in a five-step loop, which made the range
 * coder too slow to keep up with 115200 baud (bench/bench_size.py, table 4).
 * bench_size.py runs the AVR build in simavr and checks every decoded byte. */
#if defined(__AVR__) && defined(__AVR_HAVE_MUL__)
inline uint32_t rc_bound(uint32_t range, uint16_t prob) {
    const uint16_t hi = static_cast<uint16_t>(range >> 16);
    uint32_t r;
    __asm__("mul  %A1, %A2\n\t"
            "movw %A0, r0\n\t"
            "mul  %B1, %B2\n\t"
            "movw %C0, r0\n\t"
            "mul  %A1, %B2\n\t"
            "add  %B0, r0\n\t"
            "adc  %C0, r1\n\t"
            "clr  r1\n\t"
            "adc  %D0, r1\n\t"
            "mul  %B1, %A2\n\t"
            "add  %B0, r0\n\t"
            "adc  %C0, r1\n\t"
            "clr  r1\n\t"
            "adc  %D0, r1\n\t"
            : "=&r"(r)
            : "r"(hi), "r"(prob));
    return r;
}

inline uint16_t shr5(uint16_t x) {
    __asm__("swap %B0\n\t"
            "swap %A0\n\t"
            "andi %A0, 0x0F\n\t"
            "eor  %A0, %B0\n\t"
            "andi %B0, 0x0F\n\t"
            "eor  %A0, %B0\n\t"
            "lsr  %B0\n\t"
            "ror  %A0\n\t"
            : "+d"(x));
    return x;
}
#else
inline uint32_t rc_bound(uint32_t range, uint16_t prob) {
    return static_cast<uint32_t>(static_cast<uint16_t>(range >> 16)) * prob;
}

inline uint16_t shr5(uint16_t x) { return static_cast<uint16_t>(x >> MODELOTA_RC_MOVE_BITS); }
#endif
static_assert(MODELOTA_RC_MOVE_BITS == 5u, "shr5 moves a probability by 1/32");

/* The RC inner loop, kept free of 32-bit work that an 8-bit CPU would pay
 * per bit: node is 16 bits, output and input are walked with pointers, the
 * lane is tracked per byte, the normalization tests one byte. */
uint32_t decode_rc(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                   uint32_t from, uint32_t to) {
    const uint8_t* src = in;
    const uint8_t* src_end = in != NULL ? in + n : NULL;
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
    uint16_t node = d->node;
    const bool diff = (d->enc & MODELOTA_ENC_DIFF) != 0;
    const bool lanes = (d->enc & MODELOTA_ENC_LANES) != 0;
    uint8_t* dst = out + (d->out - from);
    uint8_t* const dst_end = out + (to - from);
    uint8_t lane_pos = static_cast<uint8_t>((d->offset + d->out) & 3u);
    /* eight bits per output byte; each takes at most two input bytes */
    while (dst != dst_end) {
        uint16_t* const tree_b = lanes && lane_pos == 3u ? d->lane : d->lit;
        while (node < MODELOTA_RC_LIT_NODES) {
            uint16_t* p = (node < MODELOTA_RC_LANE_NODES ? tree_b : d->lit) + node;
            /* range < 2^24: one more input byte; twice after a bit of
             * probability below 1/256, which left less than 2^16 */
            while (static_cast<uint8_t>(range >> 24) == 0) {
                uint8_t b = 0;
                if (in != NULL) {
                    if (src == src_end) { /* resume here with the next input */
                        d->range = range;
                        d->code = code;
                        d->node = node;
                        d->out = static_cast<uint32_t>(dst - out) + from;
                        return n;
                    }
                    b = *src++;
                }
                range <<= 8;
                code = (code << 8) | b;
            }
            const uint16_t prob = *p;
            const uint32_t bound = rc_bound(range, prob);
            if (code < bound) {
                range = bound;
                /* 0 - prob is 65536 - prob in 16 bits (prob > 0) */
                *p = static_cast<uint16_t>(prob + shr5(static_cast<uint16_t>(0u - prob)));
                node = static_cast<uint16_t>(node << 1);
            } else {
                code -= bound;
                range -= bound;
                *p = static_cast<uint16_t>(prob - shr5(prob));
                node = static_cast<uint16_t>((node << 1) | 1u);
            }
        }
        const uint8_t v = static_cast<uint8_t>(node);
        *dst = diff ? static_cast<uint8_t>(*dst + v) : v;
        ++dst;
        lane_pos = static_cast<uint8_t>((lane_pos + 1u) & 3u);
        node = 1;
    }
    d->range = range;
    d->code = code;
    d->node = node;
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
    uint32_t v[3] = {0, 0, 0};
    uint32_t count = method == MODELOTA_ENC_RAW ? 2u : 3u;
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
    out->enc = enc;
    out->gap = v[0];
    out->length = v[1];
    out->size = method == MODELOTA_ENC_RAW ? v[1] : v[2];
    out->head_len = pos;
    return 1;
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
