#include "sha256.h"

#include <string.h>

/* The round constants are read-only data. On AVR const data is copied to
 * RAM at start-up unless placed in PROGMEM, so there the table lives in
 * flash and is read with pgm_read_dword (256 bytes of RAM saved). */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define MODELOTA_SHA256_ROM PROGMEM
#define MODELOTA_SHA256_K(i) pgm_read_dword(&kSha256K[(i)])
#else
#define MODELOTA_SHA256_ROM
#define MODELOTA_SHA256_K(i) (kSha256K[(i)])
#endif

namespace {

/* First 32 bits of the fractional parts of the cube roots of the first 64
 * primes (FIPS 180-4 section 4.2.2). */
const uint32_t kSha256K[64] MODELOTA_SHA256_ROM = {
    0x428A2F98u, 0x71374491u, 0xB5C0FBCFu, 0xE9B5DBA5u,
    0x3956C25Bu, 0x59F111F1u, 0x923F82A4u, 0xAB1C5ED5u,
    0xD807AA98u, 0x12835B01u, 0x243185BEu, 0x550C7DC3u,
    0x72BE5D74u, 0x80DEB1FEu, 0x9BDC06A7u, 0xC19BF174u,
    0xE49B69C1u, 0xEFBE4786u, 0x0FC19DC6u, 0x240CA1CCu,
    0x2DE92C6Fu, 0x4A7484AAu, 0x5CB0A9DCu, 0x76F988DAu,
    0x983E5152u, 0xA831C66Du, 0xB00327C8u, 0xBF597FC7u,
    0xC6E00BF3u, 0xD5A79147u, 0x06CA6351u, 0x14292967u,
    0x27B70A85u, 0x2E1B2138u, 0x4D2C6DFCu, 0x53380D13u,
    0x650A7354u, 0x766A0ABBu, 0x81C2C92Eu, 0x92722C85u,
    0xA2BFE8A1u, 0xA81A664Bu, 0xC24B8B70u, 0xC76C51A3u,
    0xD192E819u, 0xD6990624u, 0xF40E3585u, 0x106AA070u,
    0x19A4C116u, 0x1E376C08u, 0x2748774Cu, 0x34B0BCB5u,
    0x391C0CB3u, 0x4ED8AA4Au, 0x5B9CCA4Fu, 0x682E6FF3u,
    0x748F82EEu, 0x78A5636Fu, 0x84C87814u, 0x8CC70208u,
    0x90BEFFFAu, 0xA4506CEBu, 0xBEF9A3F7u, 0xC67178F2u,
};

/* First 32 bits of the fractional parts of the square roots of the first 8
 * primes (FIPS 180-4 section 5.3.3). */
const uint32_t kSha256H0[8] MODELOTA_SHA256_ROM = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

#if defined(__AVR__) || defined(MODELOTA_SHA256_BYTE_ROTATE)
/* An 8-bit core shifts one bit per instruction per byte: rotate by whole
 * bytes first (register moves), then by at most 4 single bits, left or right. */
__attribute__((always_inline)) inline uint32_t sha256_rotr(uint32_t x, unsigned n) {
    unsigned bytes = n >> 3;
    unsigned bits = n & 7u;
    const bool left = bits > 4u;
    if (left) {
        bytes += 1u;
        bits = 8u - bits;
    }
    if (bytes == 1u) {
        x = (x >> 8) | (x << 24);
    } else if (bytes == 2u) {
        x = (x >> 16) | (x << 16);
    } else if (bytes == 3u) {
        x = (x >> 24) | (x << 8);
    }
    for (unsigned i = 0; i < bits; ++i) {
        x = left ? ((x << 1) | (x >> 31)) : ((x >> 1) | (x << 31));
    }
    return x;
}
#else
inline uint32_t sha256_rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }
#endif

inline uint32_t sha256_load_be(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

inline void sha256_store_be(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

void sha256_compress(uint32_t state[8], const uint8_t block[64]) {
    uint32_t w[16];
    for (unsigned i = 0; i < 16u; ++i) {
        w[i] = sha256_load_be(block + 4u * i);
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (unsigned t = 0; t < 64u; ++t) {
        if (t >= 16u) {
            /* w[t & 15] still holds W[t-16]; replace it with W[t]. */
            const uint32_t w15 = w[(t - 15u) & 15u];
            const uint32_t w2 = w[(t - 2u) & 15u];
            const uint32_t s0 = sha256_rotr(w15, 7) ^ sha256_rotr(w15, 18) ^ (w15 >> 3);
            const uint32_t s1 = sha256_rotr(w2, 17) ^ sha256_rotr(w2, 19) ^ (w2 >> 10);
            w[t & 15u] += s0 + w[(t - 7u) & 15u] + s1;
        }
        const uint32_t s1 = sha256_rotr(e, 6) ^ sha256_rotr(e, 11) ^ sha256_rotr(e, 25);
        const uint32_t ch = (e & f) ^ (~e & g);
        const uint32_t t1 = h + s1 + ch + MODELOTA_SHA256_K(t) + w[t & 15u];
        const uint32_t s0 = sha256_rotr(a, 2) ^ sha256_rotr(a, 13) ^ sha256_rotr(a, 22);
        const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        const uint32_t t2 = s0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

}  // namespace

extern "C" void modelota_sha256_init(modelota_sha256* c) {
#if defined(__AVR__)
    memcpy_P(c->state, kSha256H0, sizeof(c->state));
#else
    memcpy(c->state, kSha256H0, sizeof(c->state));
#endif
    c->count_lo = 0;
    c->count_hi = 0;
    c->fill = 0;
}

extern "C" void modelota_sha256_update(modelota_sha256* c, const uint8_t* data, size_t n) {
    while (n > 0) {
        const size_t room = 64u - c->fill;
        const size_t take = n < room ? n : room;
        memcpy(c->block + c->fill, data, take);
        c->fill = static_cast<uint8_t>(c->fill + take);
        data += take;
        n -= take;
        const uint32_t before = c->count_lo;
        c->count_lo += static_cast<uint32_t>(take);
        if (c->count_lo < before) {
            ++c->count_hi;
        }
        if (c->fill == 64u) {
            sha256_compress(c->state, c->block);
            c->fill = 0;
        }
    }
}

extern "C" void modelota_sha256_final(modelota_sha256* c, uint8_t out[MODELOTA_SHA256_LEN]) {
    /* Message length in bits, big-endian, in the last 8 bytes. */
    const uint32_t bits_hi = (c->count_hi << 3) | (c->count_lo >> 29);
    const uint32_t bits_lo = c->count_lo << 3;
    unsigned fill = c->fill;
    c->block[fill++] = 0x80u;
    if (fill > 56u) {
        memset(c->block + fill, 0, 64u - fill);
        sha256_compress(c->state, c->block);
        fill = 0;
    }
    memset(c->block + fill, 0, 56u - fill);
    sha256_store_be(c->block + 56, bits_hi);
    sha256_store_be(c->block + 60, bits_lo);
    sha256_compress(c->state, c->block);
    for (unsigned i = 0; i < 8u; ++i) {
        sha256_store_be(out + 4u * i, c->state[i]);
    }
    c->fill = 0;
}

namespace {

/* Feeds the key, zero-padded to one block, XORed with `pad` (0x36 inner,
 * 0x5C outer): no 64-byte copy of the padded key is kept. */
void hmac_pad(modelota_sha256* s, const uint8_t* key, uint8_t key_len, uint8_t pad) {
    for (unsigned i = 0; i < 64u; ++i) {
        const uint8_t b = static_cast<uint8_t>((i < key_len ? key[i] : 0u) ^ pad);
        modelota_sha256_update(s, &b, 1);
    }
}

}  // namespace

extern "C" int modelota_hmac_sha256_init(modelota_hmac_sha256* c, const uint8_t* key,
                                         size_t key_len) {
    if (key == NULL || key_len == 0 || key_len > MODELOTA_HMAC_KEY_MAX) {
        return -1;
    }
    c->key = key;
    c->key_len = static_cast<uint8_t>(key_len);
    modelota_sha256_init(&c->sha);
    hmac_pad(&c->sha, key, c->key_len, 0x36u);
    return 0;
}

extern "C" void modelota_hmac_sha256_update(modelota_hmac_sha256* c, const uint8_t* data,
                                            size_t n) {
    modelota_sha256_update(&c->sha, data, n);
}

extern "C" void modelota_hmac_sha256_final(modelota_hmac_sha256* c,
                                           uint8_t out[MODELOTA_SHA256_LEN]) {
    uint8_t inner[MODELOTA_SHA256_LEN];
    modelota_sha256_final(&c->sha, inner);
    modelota_sha256_init(&c->sha);
    hmac_pad(&c->sha, c->key, c->key_len, 0x5Cu);
    modelota_sha256_update(&c->sha, inner, sizeof(inner));
    modelota_sha256_final(&c->sha, out);
}

#undef MODELOTA_SHA256_ROM
#undef MODELOTA_SHA256_K
