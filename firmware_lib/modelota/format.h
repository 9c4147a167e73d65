/*
 * Wire format constants (v1 and v2). docs/FORMAT.md is the specification;
 * this file and host_tools/modelota/format/ mirror it field for field, and
 * the static_asserts below pin every fixed offset.
 */
#ifndef MODELOTA_FORMAT_H
#define MODELOTA_FORMAT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MODELOTA_FORMAT_V1 1u
#define MODELOTA_FORMAT_V2 2u
#define MODELOTA_FORMAT_VERSION 2u /* the newest version this build reads */
#define MODELOTA_FINGERPRINT_LEN 16u
#define MODELOTA_DIGEST_LEN 32u

/* Digest types (header byte 5). */
#define MODELOTA_DIGEST_CRC32 1u
#define MODELOTA_DIGEST_SHA256 2u /* all 32 digest bytes */

/* Header flags (header bytes 6..7). */
#define MODELOTA_FLAG_DELTA 0x0001u /* base_version and base_crc32 must match */
#define MODELOTA_FLAG_SIGNED 0x0002u /* a signature block follows the header */
#define MODELOTA_KNOWN_FLAGS (MODELOTA_FLAG_DELTA | MODELOTA_FLAG_SIGNED)

/* Signature block of a signed payload: Ed25519 signature (64 bytes) of the
 * 96 header bytes, between the header and chunk 0. The header's `reserved`
 * field then carries the signer's key id (first 4 bytes of SHA-256 of the
 * public key), for readers; the device relies on the signature alone. */
#define MODELOTA_SIGNATURE_LEN 64u

/* The fixed header, little-endian. This struct documents the layout and is
 * checked against the offsets below; the parser never casts bytes to it
 * (no alignment or endianness assumptions). */
typedef struct modelota_header_layout {
    uint8_t magic[4];      /*  0 "MOTA" */
    uint8_t format_version; /* 4 1 */
    uint8_t digest_type;   /*  5 MODELOTA_DIGEST_* */
    uint8_t flags[2];      /*  6 MODELOTA_FLAG_* */
    uint8_t fingerprint[MODELOTA_FINGERPRINT_LEN]; /* 8 */
    uint8_t model_version[4]; /* 24 */
    uint8_t base_version[4];  /* 28 delta only, else 0 */
    uint8_t base_crc32[4];    /* 32 delta only, else 0 */
    uint8_t weights_size[4];  /* 36 size of the whole weight region */
    uint8_t data_size[4];     /* 40 sum of chunk lengths */
    uint8_t chunk_count[4];   /* 44 */
    uint8_t segment_count[4]; /* 48 runs of contiguous chunks */
    uint8_t max_chunk[4];     /* 52 largest chunk length */
    uint8_t digest[MODELOTA_DIGEST_LEN]; /* 56 digest of the final region */
    uint8_t reserved[4];      /* 88 0; signed payloads: key id */
    uint8_t header_crc[4];    /* 92 CRC32 of bytes 0..91 */
} modelota_header_layout;

#define MODELOTA_HEADER_LEN 96u
#define MODELOTA_HEADER_CRC_OFFSET 92u

/* v1 chunk framing: seq, offset, length (u32 each), data, CRC32. */
#define MODELOTA_CHUNK_HEAD_LEN 12u
#define MODELOTA_CHUNK_TAIL_LEN 4u

/* ---- format v2 ----------------------------------------------------------
 * Header: magic, version 2, header_len, digest_type, flags (one byte), the
 * fingerprint at the same offset as v1, then varints and the optional
 * fields (docs/FORMAT.md, "Header (v2)"); header_crc is its last 4 bytes. */
#define MODELOTA_V2_LEN_OFFSET 5u
#define MODELOTA_V2_DIGEST_TYPE_OFFSET 6u
#define MODELOTA_V2_FLAGS_OFFSET 7u
#define MODELOTA_V2_FIXED_LEN 24u      /* up to and including the fingerprint */
#define MODELOTA_V2_MIN_HEADER_LEN 37u /* 1-byte varints, CRC32 digest */
#define MODELOTA_V2_MAX_HEADER_LEN MODELOTA_HEADER_LEN
#define MODELOTA_VARINT_MAX 5u
/* v2 chunk: enc byte, gap, length, [size], [KEEP: start, length], [PRED:
 * start, count, back varints and the divisor's 4 bytes], encoded bytes,
 * CRC32 of all of them seeded with the previous chunk's CRC (chunk 0:
 * header_crc). */
#define MODELOTA_V2_MAX_CHUNK_HEAD (1u + 8u * MODELOTA_VARINT_MAX + 4u)
/* Chunk encodings: method in bits 0-1, flags above. */
#define MODELOTA_ENC_RAW 0u
#define MODELOTA_ENC_RUNS 1u
#define MODELOTA_ENC_RC 2u
#define MODELOTA_ENC_METHOD 0x03u
#define MODELOTA_ENC_DIFF 0x04u  /* decoded bytes are added to the base bytes */
#define MODELOTA_ENC_LANES 0x08u /* RC: bytes at offsets 3 mod 4 start in tree B */
#define MODELOTA_ENC_KEEP 0x10u  /* a range of the chunk is kept for a later PRED */
#define MODELOTA_ENC_PRED 0x20u  /* float32 values predicted from earlier new bytes */
#define MODELOTA_ENC_KNOWN 0x3Fu
#define MODELOTA_RUNS_TOKEN_MAX 3u /* RUNS token varint bytes */
/* RC: LZMA's literal coder with 16-bit probabilities of a 0 bit, moved
 * 1/32 per bit; bound = (range >> 16) * p (one 16 x 16-bit multiply). */
#define MODELOTA_RC_PROB_BITS 16u
#define MODELOTA_RC_MOVE_BITS 5u
#define MODELOTA_RC_TOP 0x01000000u
#define MODELOTA_RC_LIT_NODES 256u  /* tree A: nodes 1..255 */
#define MODELOTA_RC_LANE_NODES 128u /* tree B: nodes 1..127 */

static inline uint32_t modelota_load_u32le(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint16_t modelota_load_u16le(const uint8_t* p) {
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

#ifdef __cplusplus
} /* extern "C" */

#include <stddef.h>
static_assert(sizeof(modelota_header_layout) == MODELOTA_HEADER_LEN, "header is 96 bytes");
static_assert(offsetof(modelota_header_layout, fingerprint) == 8, "fingerprint at 8");
static_assert(offsetof(modelota_header_layout, model_version) == 24, "model_version at 24");
static_assert(offsetof(modelota_header_layout, base_version) == 28, "base_version at 28");
static_assert(offsetof(modelota_header_layout, base_crc32) == 32, "base_crc32 at 32");
static_assert(offsetof(modelota_header_layout, weights_size) == 36, "weights_size at 36");
static_assert(offsetof(modelota_header_layout, data_size) == 40, "data_size at 40");
static_assert(offsetof(modelota_header_layout, chunk_count) == 44, "chunk_count at 44");
static_assert(offsetof(modelota_header_layout, segment_count) == 48, "segment_count at 48");
static_assert(offsetof(modelota_header_layout, max_chunk) == 52, "max_chunk at 52");
static_assert(offsetof(modelota_header_layout, digest) == 56, "digest at 56");
static_assert(offsetof(modelota_header_layout, reserved) == 88, "reserved at 88");
static_assert(offsetof(modelota_header_layout, header_crc) == MODELOTA_HEADER_CRC_OFFSET,
              "header_crc at 92");
static_assert(MODELOTA_V2_FIXED_LEN == offsetof(modelota_header_layout, fingerprint) +
                                           MODELOTA_FINGERPRINT_LEN,
              "v2 keeps the fingerprint at offset 8");
static_assert(MODELOTA_V2_MIN_HEADER_LEN == MODELOTA_V2_FIXED_LEN + 5u + 4u + 4u,
              "five 1-byte varints, a CRC32 digest and the header CRC");
#endif

#endif /* MODELOTA_FORMAT_H */
