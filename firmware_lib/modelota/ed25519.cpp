/*
 * Ed25519 verification: field GF(2^255 - 19) in 16 limbs of 16 bits,
 * extended twisted Edwards coordinates, a joint double-and-add for
 * [S]B + [k](-A) (Straus/Shamir, one doubling chain for both scalars),
 * addition chains for the inversion and the square root.
 *
 * Field elements: value = sum(limb[i] * 2^(16 i)). A limb holds int32: after
 * a multiplication every limb is within a few units of [0, 2^16); a sum or
 * difference of two such elements is within (-2^18, 2^18), and the
 * multiplication accepts that (products < 2^36, times 38, 16 terms < 2^48).
 * Only ed_fe_pack produces the canonical value in [0, p).
 */
#include "ed25519.h"

#include <string.h>

#include "sha512.h"

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define MODELOTA_ED25519_ROM PROGMEM
#else
#define MODELOTA_ED25519_ROM
#endif

namespace {

typedef int32_t ed_fe[16];

struct ed_point {
    ed_fe x, y, z, t; /* x = X/Z, y = Y/Z, x*y = T/Z */
};

/* Curve constants in 16-bit limbs, computed from their definitions in
 * RFC 8032 section 5.1: d = -121665/121666, 2d, sqrt(-1) = 2^((p-1)/4),
 * and the base point B = (x, 4/5) with x even. */
const uint16_t kEdD[16] MODELOTA_ED25519_ROM = {
    0x78a3, 0x1359, 0x4dca, 0x75eb, 0xd8ab, 0x4141, 0x0a4d, 0x0070,
    0xe898, 0x7779, 0x4079, 0x8cc7, 0xfe73, 0x2b6f, 0x6cee, 0x5203};
const uint16_t kEdD2[16] MODELOTA_ED25519_ROM = {
    0xf159, 0x26b2, 0x9b94, 0xebd6, 0xb156, 0x8283, 0x149a, 0x00e0,
    0xd130, 0xeef3, 0x80f2, 0x198e, 0xfce7, 0x56df, 0xd9dc, 0x2406};
const uint16_t kEdSqrtM1[16] MODELOTA_ED25519_ROM = {
    0xa0b0, 0x4a0e, 0x1b27, 0xc4ee, 0xe478, 0xad2f, 0x1806, 0x2f43,
    0xd7a7, 0x3dfb, 0x0099, 0x2b4d, 0xdf0b, 0x4fc1, 0x2480, 0x2b83};
const uint16_t kEdBx[16] MODELOTA_ED25519_ROM = {
    0xd51a, 0x8f25, 0x2d60, 0xc956, 0xa7b2, 0x9525, 0xc760, 0x692c,
    0xdc5c, 0xfdd6, 0xe231, 0xc0a4, 0x53fe, 0xcd6e, 0x36d3, 0x2169};
const uint16_t kEdBy[16] MODELOTA_ED25519_ROM = {
    0x6658, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666,
    0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666, 0x6666};
/* L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const uint8_t kEdL[32] MODELOTA_ED25519_ROM = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
    0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};

inline int32_t ed_l(unsigned i) {
#if defined(__AVR__)
    return static_cast<int32_t>(pgm_read_byte(&kEdL[i]));
#else
    return static_cast<int32_t>(kEdL[i]);
#endif
}

void ed_fe_load(ed_fe o, const uint16_t* rom) {
    for (unsigned i = 0; i < 16u; ++i) {
#if defined(__AVR__)
        o[i] = static_cast<int32_t>(pgm_read_word(&rom[i]));
#else
        o[i] = static_cast<int32_t>(rom[i]);
#endif
    }
}

void ed_fe_set(ed_fe o, int32_t v) {
    memset(o, 0, sizeof(ed_fe));
    o[0] = v;
}

void ed_fe_add(ed_fe o, const ed_fe a, const ed_fe b) {
    for (unsigned i = 0; i < 16u; ++i) {
        o[i] = a[i] + b[i];
    }
}

void ed_fe_sub(ed_fe o, const ed_fe a, const ed_fe b) {
    for (unsigned i = 0; i < 16u; ++i) {
        o[i] = a[i] - b[i];
    }
}

/* One carry pass: limbs 0..15 to [0, 2^16), the carry out of limb 15 comes
 * back into limb 0 times 38 (2^256 = 2 * 2^255 = 2 * 19 mod p). The carry is
 * floor(o / 2^16): the right shift of a negative value is arithmetic on
 * every compiler this code targets (GCC documents it), and with two's
 * complement o & 0xffff is then o - carry * 2^16. */
void ed_carry(int64_t o[16]) {
    for (unsigned i = 0; i < 16u; ++i) {
        const int64_t c = o[i] >> 16;
        o[i] &= 0xffff;
        if (i < 15u) {
            o[i + 1u] += c;
        } else {
            o[0] += 38 * c;
        }
    }
}

/* Product scanning: column k collects a[i] * b[k - i] (position k) and the
 * products at position k + 16, which 2^256 = 38 mod p folds onto k.
 *
 * 32-bit cores: signed 32 x 32 -> 64 multiply-accumulate (one SMLAL on a
 * Cortex-M4), accumulators in registers.
 *
 * AVR (or MODELOTA_ED25519_MUL16, which the host tests use to check this
 * variant): a 64-bit multiply is a slow library call there, so both inputs
 * are first carried to limbs in [0, 2^16) and every product is an unsigned
 * 16 x 16 -> 32 multiply whose halves are summed in 32 bits. */
#if defined(__AVR__) && !defined(MODELOTA_ED25519_MUL16)
#define MODELOTA_ED25519_MUL16 1
#endif

#if defined(MODELOTA_ED25519_MUL16) && MODELOTA_ED25519_MUL16
/* Limbs in [0, 2^16) for inputs whose limbs are within (-2^19, 2^19). The
 * first pass leaves limbs 1..15 in range and limb 0 within 38 * 2^4 of it.
 * In the second pass a carry of +-1 can ripple up to limb 15 only through
 * limbs that were all 0xffff (or all 0), and then limb 0 is far enough from
 * the edge it came from (below 38 * 2^4, or above 2^16 - 38 * 2^4) that
 * adding +-38 keeps it in range. */
void ed_fe_norm16(uint16_t out[16], const ed_fe a) {
    int32_t t[16];
    memcpy(t, a, sizeof(t));
    for (unsigned pass = 0; pass < 2u; ++pass) {
        for (unsigned i = 0; i < 16u; ++i) {
            const int32_t c = t[i] >> 16;
            t[i] &= 0xffff;
            if (i < 15u) {
                t[i + 1u] += c;
            } else {
                t[0] += 38 * c;
            }
        }
    }
    for (unsigned i = 0; i < 16u; ++i) {
        out[i] = static_cast<uint16_t>(t[i]);
    }
}

/* The products x[i] * y[j - i], i in [from, to), summed as two halves:
 * *lo gets the low 16 bits of each, *hi the high 16 bits (both < 2^20, so
 * there is no carry to track, only 16-bit additions). */
__attribute__((noinline)) void ed_column16(const uint16_t* x, const uint16_t* y, unsigned from,
                                          unsigned to, unsigned j, uint32_t* lo, uint32_t* hi) {
    uint32_t l = 0;
    uint32_t h = 0;
    for (unsigned i = from; i < to; ++i) {
        const uint32_t p = static_cast<uint32_t>(x[i]) * y[j - i];
        l += static_cast<uint16_t>(p);
        h += static_cast<uint16_t>(p >> 16);
    }
    *lo = l;
    *hi = h;
}

/* Everything in 32 bits. Column k is (L + 2^16 H) + 38 (L' + 2^16 H'), the
 * primed sums being the products folded down from position k + 16. With the
 * carry c from column k - 1:
 *   limb k = (L + 38 L' + c) mod 2^16
 *   c'     = (L + 38 L' + c) / 2^16 + H + 38 H'
 * L, H, L', H' < 2^20, so c < 2^26 and L + 38 L' + c < 2^27. Column 15 has
 * no folded part, so the carry out of limb 15 is < 2^21; it comes back as
 * 38 c into limb 0 and on into limbs 1 and 2. Limbs end in [0, 2^16]. */
void ed_fe_mul(ed_fe o, const ed_fe a, const ed_fe b) {
    uint16_t x[16], y[16];
    ed_fe_norm16(x, a);
    ed_fe_norm16(y, b);
    uint32_t c = 0;
    for (unsigned k = 0; k < 16u; ++k) {
        uint32_t l, h, lf, hf;
        ed_column16(x, y, 0, k + 1u, k, &l, &h);
        ed_column16(x, y, k + 1u, 16u, k + 16u, &lf, &hf);
        const uint32_t v = l + 38u * lf + c;
        o[k] = static_cast<int32_t>(v & 0xffffu);
        c = (v >> 16) + h + 38u * hf;
    }
    uint32_t v = static_cast<uint32_t>(o[0]) + 38u * c;
    o[0] = static_cast<int32_t>(v & 0xffffu);
    v = static_cast<uint32_t>(o[1]) + (v >> 16);
    o[1] = static_cast<int32_t>(v & 0xffffu);
    o[2] += static_cast<int32_t>(v >> 16);
}
#else
void ed_fe_mul(ed_fe o, const ed_fe a, const ed_fe b) {
    int64_t t[16];
    for (unsigned k = 0; k < 16u; ++k) {
        int64_t lo = 0;
        int64_t hi = 0;
        for (unsigned i = 0; i <= k; ++i) {
            lo += static_cast<int64_t>(a[i]) * b[k - i];
        }
        for (unsigned i = k + 1u; i < 16u; ++i) {
            hi += static_cast<int64_t>(a[i]) * b[k + 16u - i];
        }
        t[k] = lo + 38 * hi;
    }
    ed_carry(t);
    ed_carry(t);
    for (unsigned i = 0; i < 16u; ++i) {
        o[i] = static_cast<int32_t>(t[i]);
    }
}
#endif

void ed_fe_sq(ed_fe o, const ed_fe a) { ed_fe_mul(o, a, a); }

/* o = a^(2^n), n >= 1 */
void ed_fe_sqn(ed_fe o, const ed_fe a, unsigned n) {
    ed_fe_sq(o, a);
    for (unsigned i = 1; i < n; ++i) {
        ed_fe_sq(o, o);
    }
}

/* Canonical little-endian encoding of a in [0, p). */
void ed_fe_pack(uint8_t out[32], const ed_fe a) {
    int64_t t[16];
    for (unsigned i = 0; i < 16u; ++i) {
        t[i] = a[i];
    }
    ed_carry(t);
    ed_carry(t);
    ed_carry(t);
    /* Now 0 <= t < 2^256 = 2p + 38: subtracting p at most twice lands in
     * [0, p). m = t - p with borrows; keep m unless it went negative. */
    for (unsigned round = 0; round < 2u; ++round) {
        int64_t m[16];
        m[0] = t[0] - 0xffed;
        for (unsigned i = 1; i < 16u; ++i) {
            const int64_t borrow = (m[i - 1u] >> 16) & 1;
            m[i - 1u] &= 0xffff;
            m[i] = t[i] - (i == 15u ? 0x7fff : 0xffff) - borrow;
        }
        const int64_t negative = (m[15] >> 16) & 1;
        m[15] &= 0xffff;
        if (!negative) {
            memcpy(t, m, sizeof(t));
        }
    }
    for (unsigned i = 0; i < 16u; ++i) {
        out[2u * i] = static_cast<uint8_t>(t[i] & 0xff);
        out[2u * i + 1u] = static_cast<uint8_t>((t[i] >> 8) & 0xff);
    }
}

/* Reads 255 bits (bit 255, the sign of x in a point encoding, is dropped). */
void ed_fe_unpack(ed_fe o, const uint8_t in[32]) {
    for (unsigned i = 0; i < 16u; ++i) {
        o[i] = static_cast<int32_t>(in[2u * i] | (static_cast<uint32_t>(in[2u * i + 1u]) << 8));
    }
    o[15] &= 0x7fff;
}

int ed_fe_equal(const ed_fe a, const ed_fe b) {
    uint8_t pa[32], pb[32];
    ed_fe_pack(pa, a);
    ed_fe_pack(pb, b);
    return memcmp(pa, pb, 32) == 0;
}

int ed_fe_is_zero(const ed_fe a) {
    ed_fe zero;
    ed_fe_set(zero, 0);
    return ed_fe_equal(a, zero);
}

int ed_fe_parity(const ed_fe a) {
    uint8_t p[32];
    ed_fe_pack(p, a);
    return p[0] & 1;
}

/* z^(2^250 - 1) and z^11, the common part of the inversion and square-root
 * addition chains (254 squarings and 11 multiplications in all, against
 * ~500 operations for plain square-and-multiply). */
void ed_fe_pow_common(ed_fe t250, ed_fe z11, const ed_fe z) {
    ed_fe a, b, t10, t50;
    ed_fe_sq(a, z);           /* z^2 */
    ed_fe_sqn(b, a, 2);       /* z^8 */
    ed_fe_mul(b, b, z);       /* z^9 */
    ed_fe_mul(z11, b, a);     /* z^11 */
    ed_fe_sq(a, z11);         /* z^22 */
    ed_fe_mul(a, a, b);       /* z^(2^5 - 1) */
    ed_fe_sqn(b, a, 5);
    ed_fe_mul(t10, b, a);     /* z^(2^10 - 1) */
    ed_fe_sqn(b, t10, 10);
    ed_fe_mul(a, b, t10);     /* z^(2^20 - 1) */
    ed_fe_sqn(b, a, 20);
    ed_fe_mul(b, b, a);       /* z^(2^40 - 1) */
    ed_fe_sqn(b, b, 10);
    ed_fe_mul(t50, b, t10);   /* z^(2^50 - 1) */
    ed_fe_sqn(b, t50, 50);
    ed_fe_mul(a, b, t50);     /* z^(2^100 - 1) */
    ed_fe_sqn(b, a, 100);
    ed_fe_mul(b, b, a);       /* z^(2^200 - 1) */
    ed_fe_sqn(b, b, 50);
    ed_fe_mul(t250, b, t50);  /* z^(2^250 - 1) */
}

/* o = z^(p - 2) = z^(2^255 - 21) = 1/z */
void ed_fe_invert(ed_fe o, const ed_fe z) {
    ed_fe t, z11;
    ed_fe_pow_common(t, z11, z);
    ed_fe_sqn(t, t, 5);
    ed_fe_mul(o, t, z11);
}

/* o = z^((p - 5) / 8) = z^(2^252 - 3) */
void ed_fe_pow2523(ed_fe o, const ed_fe z) {
    ed_fe t, z11;
    ed_fe_pow_common(t, z11, z);
    ed_fe_sqn(t, t, 2);
    ed_fe_mul(o, t, z);
}

/* p += q (RFC 8032 section 5.1.4, complete on edwards25519). */
void ed_point_add(ed_point* p, const ed_point* q) {
    ed_fe a, b, c, d, e;
    ed_fe_sub(a, p->y, p->x);
    ed_fe_sub(e, q->y, q->x);
    ed_fe_mul(a, a, e);       /* A */
    ed_fe_add(b, p->y, p->x);
    ed_fe_add(e, q->y, q->x);
    ed_fe_mul(b, b, e);       /* B */
    ed_fe_load(e, kEdD2);
    ed_fe_mul(c, p->t, q->t);
    ed_fe_mul(c, c, e);       /* C = T1 * 2d * T2 */
    ed_fe_mul(d, p->z, q->z);
    ed_fe_add(d, d, d);       /* D = Z1 * 2 * Z2 */
    ed_fe_sub(e, b, a);       /* E = B - A */
    ed_fe_add(b, b, a);       /* H = B + A */
    ed_fe_sub(a, d, c);       /* F = D - C */
    ed_fe_add(d, d, c);       /* G = D + C */
    ed_fe_mul(p->x, e, a);    /* E * F */
    ed_fe_mul(p->y, d, b);    /* G * H */
    ed_fe_mul(p->z, a, d);    /* F * G */
    ed_fe_mul(p->t, e, b);    /* E * H */
}

/* p = 2p (RFC 8032 section 5.1.4 doubling: 4 squarings, 4 multiplications;
 * T is not read, only written). */
void ed_point_double(ed_point* p) {
    ed_fe a, b, c, e;
    ed_fe_sq(a, p->x);        /* A = X1^2 */
    ed_fe_sq(b, p->y);        /* B = Y1^2 */
    ed_fe_sq(c, p->z);
    ed_fe_add(c, c, c);       /* C = 2 Z1^2 */
    ed_fe_add(e, p->x, p->y);
    ed_fe_sq(e, e);
    ed_fe_add(p->t, a, b);    /* H = A + B */
    ed_fe_sub(e, p->t, e);    /* E = H - (X1 + Y1)^2 */
    ed_fe_sub(a, a, b);       /* G = A - B */
    ed_fe_add(c, c, a);       /* F = C + G */
    ed_fe_mul(p->x, e, c);    /* E * F */
    ed_fe_mul(p->y, a, p->t); /* G * H */
    ed_fe_mul(p->z, c, a);    /* F * G */
    ed_fe_mul(p->t, e, p->t); /* E * H */
}

void ed_point_identity(ed_point* p) {
    ed_fe_set(p->x, 0);
    ed_fe_set(p->y, 1);
    ed_fe_set(p->z, 1);
    ed_fe_set(p->t, 0);
}

/* Decodes a point encoding (RFC 8032 section 5.1.3) and negates it: the
 * verifier needs -A. 0 when the encoding is not a point. */
int ed_point_decode_neg(ed_point* r, const uint8_t in[32]) {
    uint8_t canon[32];
    ed_fe_unpack(r->y, in);
    ed_fe_pack(canon, r->y);
    canon[31] = static_cast<uint8_t>(canon[31] | (in[31] & 0x80u));
    if (memcmp(canon, in, 32) != 0) {
        return 0; /* y >= p */
    }
    ed_fe u, v, v3, x;
    ed_fe_set(r->z, 1);
    ed_fe_sq(u, r->y);
    ed_fe_load(v, kEdD);
    ed_fe_mul(v, v, u);
    ed_fe_sub(u, u, r->z);    /* u = y^2 - 1 */
    ed_fe_add(v, v, r->z);    /* v = d y^2 + 1 */
    ed_fe_sq(v3, v);
    ed_fe_mul(v3, v3, v);     /* v^3 */
    ed_fe_sq(x, v3);
    ed_fe_mul(x, x, v);
    ed_fe_mul(x, x, u);       /* u v^7 */
    ed_fe_pow2523(x, x);
    ed_fe_mul(x, x, v3);
    ed_fe_mul(x, x, u);       /* candidate x = u v^3 (u v^7)^((p-5)/8) */
    ed_fe_sq(v3, x);
    ed_fe_mul(v3, v3, v);     /* v x^2 */
    if (!ed_fe_equal(v3, u)) {
        ed_fe_add(v3, v3, u);
        if (!ed_fe_is_zero(v3)) {
            return 0; /* u/v is not a square: no point with this y */
        }
        ed_fe_load(v, kEdSqrtM1);
        ed_fe_mul(x, x, v);
    }
    const int sign = in[31] >> 7;
    if (sign && ed_fe_is_zero(x)) {
        return 0; /* "negative zero" */
    }
    if (ed_fe_parity(x) == sign) {
        ed_fe zero;
        ed_fe_set(zero, 0);
        ed_fe_sub(x, zero, x); /* -A has the other sign */
    }
    memcpy(r->x, x, sizeof(ed_fe));
    ed_fe_mul(r->t, r->x, r->y);
    return 1;
}

/* [8]P is the identity exactly when P is one of the 8 torsion points. In
 * the prime-order subgroup (where [8]P lies) only the identity has x = 0. */
int ed_point_small_order(const ed_point* p) {
    ed_point q = *p;
    ed_point_double(&q);
    ed_point_double(&q);
    ed_point_double(&q);
    return ed_fe_is_zero(q.x);
}

void ed_point_encode(uint8_t out[32], const ed_point* p) {
    ed_fe zi, x, y;
    ed_fe_invert(zi, p->z);
    ed_fe_mul(x, p->x, zi);
    ed_fe_mul(y, p->y, zi);
    ed_fe_pack(out, y);
    out[31] = static_cast<uint8_t>(out[31] | (ed_fe_parity(x) << 7));
}

/* 1 when the little-endian s is < L (RFC 8032 section 5.1.7 step 1). */
int ed_scalar_canonical(const uint8_t s[32]) {
    for (unsigned i = 32; i-- > 0;) {
        const int32_t l = ed_l(i);
        if (s[i] != l) {
            return s[i] < l;
        }
    }
    return 0; /* s == L */
}

/* Carries x[0..30] into [0, 256); x[31] keeps the signed rest. */
void ed_scalar_normalize(int32_t x[32]) {
    for (unsigned j = 0; j < 31u; ++j) {
        const int32_t c = x[j] >> 8;
        x[j] -= c * 256;
        x[j + 1u] += c;
    }
}

/* x += sign * L, normalized */
void ed_scalar_add_l(int32_t x[32], int32_t sign) {
    for (unsigned j = 0; j < 32u; ++j) {
        x[j] += sign * ed_l(j);
    }
    ed_scalar_normalize(x);
}

/* out = in mod L, for the 512-bit little-endian SHA-512 output. Byte i >= 32
 * stands for h * 2^(8(i-32)) * 2^256, and 2^256 = 16 * 2^252 = -16 c mod L
 * (L = 2^252 + c, c < 2^125 spans 16 bytes), so it folds into bytes
 * i-32 .. i-17 with a final carry into byte i-16. Every intermediate stays
 * below 2^24 in magnitude, so int32 is enough on every target. */
void ed_scalar_reduce(uint8_t out[32], const uint8_t in[64]) {
    int32_t x[64];
    for (unsigned i = 0; i < 64u; ++i) {
        x[i] = in[i];
    }
    for (unsigned i = 63; i >= 32u; --i) {
        const int32_t h = x[i];
        int32_t carry = 0;
        x[i] = 0;
        for (unsigned k = 0; k < 16u; ++k) {
            int32_t& xj = x[i - 32u + k];
            xj += carry - 16 * h * ed_l(k);
            carry = (xj + 128) >> 8;
            xj -= carry * 256;
        }
        x[i - 16u] += carry;
    }
    /* Now |value| < 2^260; take q = floor(value / 2^252) copies of L off:
     * the rest is within (-L, 2L) because q * c is far below 2^252. */
    ed_scalar_normalize(x);
    const int32_t q = x[31] >> 4;
    for (unsigned j = 0; j < 32u; ++j) {
        x[j] -= q * ed_l(j);
    }
    ed_scalar_normalize(x);
    if (x[31] < 0) {
        ed_scalar_add_l(x, 1);
    } else {
        ed_scalar_add_l(x, -1);
        if (x[31] < 0) {
            ed_scalar_add_l(x, 1);
        }
    }
    for (unsigned j = 0; j < 32u; ++j) {
        out[j] = static_cast<uint8_t>(x[j]);
    }
}

/* k = SHA-512(R || A || M) mod L. Its own frame: the hash context is not on
 * the stack while the points are. */
__attribute__((noinline)) void ed_challenge(uint8_t k[32], const uint8_t r[32],
                                            const uint8_t a[32], const uint8_t* msg, size_t len) {
    modelota_sha512 h;
    uint8_t digest[64];
    modelota_sha512_init(&h);
    modelota_sha512_update(&h, r, 32);
    modelota_sha512_update(&h, a, 32);
    modelota_sha512_update(&h, msg, len);
    modelota_sha512_final(&h, digest);
    ed_scalar_reduce(k, digest);
}

inline unsigned ed_bit(const uint8_t s[32], unsigned i) { return (s[i >> 3] >> (i & 7u)) & 1u; }

/* out = encode([s]B + [k]N) with one shared doubling chain (Straus). Both
 * scalars are < L < 2^253. */
__attribute__((noinline)) void ed_double_scalar(uint8_t out[32], const uint8_t s[32],
                                                const uint8_t k[32], const ed_point* n) {
    ed_point table[3]; /* B, N, B + N: entry (bit_s | bit_k << 1) - 1 */
    ed_fe_load(table[0].x, kEdBx);
    ed_fe_load(table[0].y, kEdBy);
    ed_fe_set(table[0].z, 1);
    ed_fe_mul(table[0].t, table[0].x, table[0].y);
    table[1] = *n;
    table[2] = table[0];
    ed_point_add(&table[2], n);
    ed_point acc;
    ed_point_identity(&acc);
    for (unsigned i = 253; i-- > 0;) {
        ed_point_double(&acc);
        const unsigned sel = ed_bit(s, i) | (ed_bit(k, i) << 1);
        if (sel != 0) {
            ed_point_add(&acc, &table[sel - 1u]);
        }
    }
    ed_point_encode(out, &acc);
}

}  // namespace

extern "C" int modelota_ed25519_verify(const uint8_t signature[64], const uint8_t* msg,
                                       size_t len, const uint8_t public_key[32]) {
    if (signature == NULL || public_key == NULL || (msg == NULL && len > 0)) {
        return 0;
    }
    /* msg == NULL with len == 0 is the empty message: update() reads nothing. */
    const uint8_t* r = signature;
    const uint8_t* s = signature + 32;
    if (!ed_scalar_canonical(s)) {
        return 0;
    }
    ed_point neg_a;
    if (!ed_point_decode_neg(&neg_a, public_key) || ed_point_small_order(&neg_a)) {
        return 0;
    }
    uint8_t k[32];
    ed_challenge(k, r, public_key, msg, len);
    uint8_t check[32];
    ed_double_scalar(check, s, k, &neg_a);
    return memcmp(check, r, 32) == 0;
}

extern "C" int modelota_ed25519_public_key_valid(const uint8_t public_key[32]) {
    if (public_key == NULL) {
        return 0;
    }
    ed_point a;
    return ed_point_decode_neg(&a, public_key) && !ed_point_small_order(&a);
}

#undef MODELOTA_ED25519_ROM
