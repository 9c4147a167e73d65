/*
 * SHA-512 (FIPS 180-4), streaming, as Ed25519 needs it (RFC 8032 hashes
 * R || A || M with SHA-512). Same shape as sha256.h: init, updates of any
 * length, final. No heap; the context is 209 bytes and the compression
 * function keeps a 16-word rolling schedule (128 bytes of stack).
 *
 * Messages up to 2^64 - 1 bytes.
 */
#ifndef MODELOTA_SHA512_H
#define MODELOTA_SHA512_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MODELOTA_SHA512_LEN 64u

typedef struct modelota_sha512 {
    uint64_t state[8];
    uint64_t count;     /* bytes hashed so far */
    uint8_t block[128]; /* partial block */
    uint8_t fill;       /* bytes used in block, 0..127 */
} modelota_sha512;

void modelota_sha512_init(modelota_sha512* c);
void modelota_sha512_update(modelota_sha512* c, const uint8_t* data, size_t n);
void modelota_sha512_final(modelota_sha512* c, uint8_t out[MODELOTA_SHA512_LEN]);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_SHA512_H */
