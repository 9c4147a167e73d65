/*
 * SHA-256 (FIPS 180-4), streaming: init, any number of updates of any
 * length (including 0), final. No heap; the context is 108 bytes and the
 * compression function uses a 16-word rolling message schedule (64 bytes of
 * stack) instead of the 64-word array of the textbook description.
 *
 * Messages up to 2^64 - 1 bytes (count_lo/count_hi count bytes, not bits).
 */
#ifndef MODELOTA_SHA256_H
#define MODELOTA_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MODELOTA_SHA256_LEN 32u

typedef struct modelota_sha256 {
    uint32_t state[8];
    uint32_t count_lo; /* bytes hashed so far, low 32 bits */
    uint32_t count_hi; /* high 32 bits */
    uint8_t block[64]; /* partial block */
    uint8_t fill;      /* bytes used in block, 0..63 */
} modelota_sha256;

void modelota_sha256_init(modelota_sha256* c);
void modelota_sha256_update(modelota_sha256* c, const uint8_t* data, size_t n);
/* Writes the digest and leaves the context ready for reuse only after a
 * fresh modelota_sha256_init(). */
void modelota_sha256_final(modelota_sha256* c, uint8_t out[MODELOTA_SHA256_LEN]);

/* HMAC-SHA256 (RFC 2104), streaming, keys of 1..64 bytes (the fleet's
 * device keys are 32). The key is not copied: it must stay valid until
 * final(). The context is the SHA-256 one plus the key pointer. */
#define MODELOTA_HMAC_KEY_MAX 64u

typedef struct modelota_hmac_sha256 {
    modelota_sha256 sha;
    const uint8_t* key;
    uint8_t key_len;
} modelota_hmac_sha256;

/* 0, or -1 (nothing done) for a key length outside 1..64. */
int modelota_hmac_sha256_init(modelota_hmac_sha256* c, const uint8_t* key, size_t key_len);
void modelota_hmac_sha256_update(modelota_hmac_sha256* c, const uint8_t* data, size_t n);
void modelota_hmac_sha256_final(modelota_hmac_sha256* c, uint8_t out[MODELOTA_SHA256_LEN]);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_SHA256_H */
