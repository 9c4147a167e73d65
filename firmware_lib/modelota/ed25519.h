/*
 * Ed25519 signature verification (RFC 8032 section 5.1.7, pure Ed25519:
 * no context, no pre-hash). Devices only verify; signing happens on the
 * host (host_tools) with a standard library.
 *
 * Rules, strictest first (each makes the function return 0):
 *   - S (the second half of the signature) must be < L, the group order
 *     (rejects the S + L malleability of RFC 8032 section 8.4);
 *   - the public key must decode to a curve point (y < p, x exists, no
 *     "negative zero" x) and must not be of small order (the 8 torsion
 *     points, including the all-zero key): with such a key [k]A takes at
 *     most 8 values and anyone could forge. RFC 8032 does not demand this
 *     check; libsodium makes it too. A real key never has small order.
 *   - the check is cofactorless, by encoding: encode([S]B - [k]A) == R with
 *     k = SHA-512(R || A || M) mod L, as ref10 and TweetNaCl do. An R that
 *     does not decode (non-canonical y, not on the curve, negative zero)
 *     can never equal an encoding, so it is rejected without decoding it.
 *
 * Not constant time (every input is public); no data-dependent memory
 * index except 0..2 into a local table. No heap. Stack: see
 * docs/SECURITY.md ("Primitives") for measured figures per target.
 */
#ifndef MODELOTA_ED25519_H
#define MODELOTA_ED25519_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MODELOTA_ED25519_PUBLIC_KEY_LEN 32u
#define MODELOTA_ED25519_SIGNATURE_LEN 64u

/* 1 when `signature` is a valid Ed25519 (RFC 8032, pure Ed25519, no context)
 * signature of msg[0..len) under public_key; 0 otherwise (also for NULL
 * signature or key, or NULL msg with len > 0). */
int modelota_ed25519_verify(const uint8_t signature[64], const uint8_t* msg, size_t len,
                            const uint8_t public_key[32]);

/* 1 when public_key is usable by modelota_ed25519_verify (a canonical
 * encoding of a curve point that is not of small order), 0 otherwise. Lets
 * a device refuse a bad provisioned key (e.g. an all-zero slot) at start-up
 * instead of at the first update. */
int modelota_ed25519_public_key_valid(const uint8_t public_key[32]);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_ED25519_H */
