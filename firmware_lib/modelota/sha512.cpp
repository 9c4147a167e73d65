#include "sha512.h"

#include <string.h>

/* See sha256.cpp: on AVR the 640-byte round constant table stays in flash. */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define MODELOTA_SHA512_ROM PROGMEM
#else
#define MODELOTA_SHA512_ROM
#endif

namespace {

/* First 64 bits of the fractional parts of the cube roots of the first 80
 * primes (FIPS 180-4 section 4.2.3). */
const uint64_t kSha512K[80] MODELOTA_SHA512_ROM = {
    0x428A2F98D728AE22ull, 0x7137449123EF65CDull,
    0xB5C0FBCFEC4D3B2Full, 0xE9B5DBA58189DBBCull,
    0x3956C25BF348B538ull, 0x59F111F1B605D019ull,
    0x923F82A4AF194F9Bull, 0xAB1C5ED5DA6D8118ull,
    0xD807AA98A3030242ull, 0x12835B0145706FBEull,
    0x243185BE4EE4B28Cull, 0x550C7DC3D5FFB4E2ull,
    0x72BE5D74F27B896Full, 0x80DEB1FE3B1696B1ull,
    0x9BDC06A725C71235ull, 0xC19BF174CF692694ull,
    0xE49B69C19EF14AD2ull, 0xEFBE4786384F25E3ull,
    0x0FC19DC68B8CD5B5ull, 0x240CA1CC77AC9C65ull,
    0x2DE92C6F592B0275ull, 0x4A7484AA6EA6E483ull,
    0x5CB0A9DCBD41FBD4ull, 0x76F988DA831153B5ull,
    0x983E5152EE66DFABull, 0xA831C66D2DB43210ull,
    0xB00327C898FB213Full, 0xBF597FC7BEEF0EE4ull,
    0xC6E00BF33DA88FC2ull, 0xD5A79147930AA725ull,
    0x06CA6351E003826Full, 0x142929670A0E6E70ull,
    0x27B70A8546D22FFCull, 0x2E1B21385C26C926ull,
    0x4D2C6DFC5AC42AEDull, 0x53380D139D95B3DFull,
    0x650A73548BAF63DEull, 0x766A0ABB3C77B2A8ull,
    0x81C2C92E47EDAEE6ull, 0x92722C851482353Bull,
    0xA2BFE8A14CF10364ull, 0xA81A664BBC423001ull,
    0xC24B8B70D0F89791ull, 0xC76C51A30654BE30ull,
    0xD192E819D6EF5218ull, 0xD69906245565A910ull,
    0xF40E35855771202Aull, 0x106AA07032BBD1B8ull,
    0x19A4C116B8D2D0C8ull, 0x1E376C085141AB53ull,
    0x2748774CDF8EEB99ull, 0x34B0BCB5E19B48A8ull,
    0x391C0CB3C5C95A63ull, 0x4ED8AA4AE3418ACBull,
    0x5B9CCA4F7763E373ull, 0x682E6FF3D6B2B8A3ull,
    0x748F82EE5DEFB2FCull, 0x78A5636F43172F60ull,
    0x84C87814A1F0AB72ull, 0x8CC702081A6439ECull,
    0x90BEFFFA23631E28ull, 0xA4506CEBDE82BDE9ull,
    0xBEF9A3F7B2C67915ull, 0xC67178F2E372532Bull,
    0xCA273ECEEA26619Cull, 0xD186B8C721C0C207ull,
    0xEADA7DD6CDE0EB1Eull, 0xF57D4F7FEE6ED178ull,
    0x06F067AA72176FBAull, 0x0A637DC5A2C898A6ull,
    0x113F9804BEF90DAEull, 0x1B710B35131C471Bull,
    0x28DB77F523047D84ull, 0x32CAAB7B40C72493ull,
    0x3C9EBE0A15C9BEBCull, 0x431D67C49C100D4Cull,
    0x4CC5D4BECB3E42B6ull, 0x597F299CFC657E2Aull,
    0x5FCB6FAB3AD6FAECull, 0x6C44198C4A475817ull,
};

/* First 64 bits of the fractional parts of the square roots of the first 8
 * primes (FIPS 180-4 section 5.3.5). */
const uint64_t kSha512H0[8] MODELOTA_SHA512_ROM = {
    0x6A09E667F3BCC908ull, 0xBB67AE8584CAA73Bull,
    0x3C6EF372FE94F82Bull, 0xA54FF53A5F1D36F1ull,
    0x510E527FADE682D1ull, 0x9B05688C2B3E6C1Full,
    0x1F83D9ABFB41BD6Bull, 0x5BE0CD19137E2179ull,
};

inline uint64_t sha512_k(unsigned i) {
#if defined(__AVR__)
    uint64_t k;
    memcpy_P(&k, &kSha512K[i], sizeof(k));
    return k;
#else
    return kSha512K[i];
#endif
}

inline uint64_t sha512_rotr(uint64_t x, unsigned n) { return (x >> n) | (x << (64u - n)); }

inline uint64_t sha512_load_be(const uint8_t* p) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 8u; ++i) {
        v = (v << 8) | p[i];
    }
    return v;
}

inline void sha512_store_be(uint8_t* p, uint64_t v) {
    for (unsigned i = 0; i < 8u; ++i) {
        p[7u - i] = static_cast<uint8_t>(v);
        v >>= 8;
    }
}

void sha512_compress(uint64_t state[8], const uint8_t block[128]) {
    uint64_t w[16];
    for (unsigned i = 0; i < 16u; ++i) {
        w[i] = sha512_load_be(block + 8u * i);
    }
    uint64_t v[8];
    memcpy(v, state, sizeof(v));
    for (unsigned t = 0; t < 80u; ++t) {
        if (t >= 16u) {
            const uint64_t w15 = w[(t - 15u) & 15u];
            const uint64_t w2 = w[(t - 2u) & 15u];
            const uint64_t s0 = sha512_rotr(w15, 1) ^ sha512_rotr(w15, 8) ^ (w15 >> 7);
            const uint64_t s1 = sha512_rotr(w2, 19) ^ sha512_rotr(w2, 61) ^ (w2 >> 6);
            w[t & 15u] += s0 + w[(t - 7u) & 15u] + s1;
        }
        const uint64_t e = v[4];
        const uint64_t a = v[0];
        const uint64_t s1 = sha512_rotr(e, 14) ^ sha512_rotr(e, 18) ^ sha512_rotr(e, 41);
        const uint64_t ch = (e & v[5]) ^ (~e & v[6]);
        const uint64_t t1 = v[7] + s1 + ch + sha512_k(t) + w[t & 15u];
        const uint64_t s0 = sha512_rotr(a, 28) ^ sha512_rotr(a, 34) ^ sha512_rotr(a, 39);
        const uint64_t maj = (a & v[1]) ^ (a & v[2]) ^ (v[1] & v[2]);
        /* Rotate the working variables with a loop: a 64-bit variable is
         * eight registers on AVR, and eight named copies bloat the code. */
        for (unsigned i = 7; i > 0; --i) {
            v[i] = v[i - 1u];
        }
        v[4] += t1;
        v[0] = t1 + s0 + maj;
    }
    for (unsigned i = 0; i < 8u; ++i) {
        state[i] += v[i];
    }
}

}  // namespace

extern "C" void modelota_sha512_init(modelota_sha512* c) {
#if defined(__AVR__)
    memcpy_P(c->state, kSha512H0, sizeof(c->state));
#else
    memcpy(c->state, kSha512H0, sizeof(c->state));
#endif
    c->count = 0;
    c->fill = 0;
}

extern "C" void modelota_sha512_update(modelota_sha512* c, const uint8_t* data, size_t n) {
    while (n > 0) {
        const size_t room = 128u - c->fill;
        const size_t take = n < room ? n : room;
        memcpy(c->block + c->fill, data, take);
        c->fill = static_cast<uint8_t>(c->fill + take);
        c->count += take;
        data += take;
        n -= take;
        if (c->fill == 128u) {
            sha512_compress(c->state, c->block);
            c->fill = 0;
        }
    }
}

extern "C" void modelota_sha512_final(modelota_sha512* c, uint8_t out[MODELOTA_SHA512_LEN]) {
    /* 128-bit big-endian bit length in the last 16 bytes. */
    unsigned fill = c->fill;
    c->block[fill++] = 0x80u;
    if (fill > 112u) {
        memset(c->block + fill, 0, 128u - fill);
        sha512_compress(c->state, c->block);
        fill = 0;
    }
    memset(c->block + fill, 0, 112u - fill);
    sha512_store_be(c->block + 112, c->count >> 61);
    sha512_store_be(c->block + 120, c->count << 3);
    sha512_compress(c->state, c->block);
    for (unsigned i = 0; i < 8u; ++i) {
        sha512_store_be(out + 8u * i, c->state[i]);
    }
    c->fill = 0;
}

#undef MODELOTA_SHA512_ROM
