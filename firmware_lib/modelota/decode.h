/*
 * Payload decoding shared by the Updater and the Store (docs/FORMAT.md):
 *
 *  - header fields of format v1 and v2 (modelota_header_parse), once the
 *    header CRC has been checked;
 *  - v2 chunk heads (modelota_chunk_head_parse), fed byte by byte;
 *  - v2 chunk encodings (modelota_decode): RAW, RUNS and RC (an adaptive
 *    binary range coder over byte values, LZMA's literal coder), each
 *    optionally added to the base bytes (DIFF).
 *
 * The decoder is push style and resumable at any input byte: it takes the
 * encoded bytes as they arrive and writes decoded bytes into a window of the
 * caller's buffer. It never fails: input past a chunk's encoded bytes reads
 * as 0 and input left once the chunk is complete is ignored; the chunk CRC
 * over the encoded bytes is what refuses a damaged chunk, before the caller
 * writes anything. No heap; its state is one modelota_decoder (about 800
 * bytes: the range coder's 384 probabilities are most of it). Every loop is
 * bounded by the input or the output window.
 */
#ifndef MODELOTA_DECODE_H
#define MODELOTA_DECODE_H

#include <stdint.h>

#include "config.h"
#include "format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything a header says, for both format versions. Pointers point into
 * the header bytes given to modelota_header_parse. */
typedef struct modelota_header_info {
    const uint8_t* fingerprint;
    const uint8_t* digest;   /* digest_len bytes */
    uint32_t header_len;     /* 96 (v1) or 37..96 (v2) */
    uint32_t model_version;
    uint32_t base_version;   /* DELTA only */
    uint32_t base_crc32;     /* DELTA only */
    uint32_t weights_size;
    uint32_t data_size;
    uint32_t chunk_count;
    uint32_t segment_count;  /* v1 only (v2: 0) */
    uint32_t max_chunk;
    uint32_t digest_len;     /* 4 (CRC32) or 32 (SHA-256) */
    uint16_t flags;
    uint8_t digest_type;
    uint8_t format_version;
} modelota_header_info;

/* Bytes of header to gather once `have` bytes are in h[] (at least 1 more
 * than `have` while the length is unknown): 4 (magic), 5 (version), then 96
 * for v1; 6 (length byte) then that length for v2. */
uint32_t modelota_header_want(const uint8_t* h, uint32_t have);

/* Reads the fields of a header whose magic, version, length and CRC were
 * checked. MODELOTA_UNSUPPORTED (docs/FORMAT.md, check 3.2): unknown digest
 * type (or SHA-256 on a build without it), unknown flags, SIGNED without
 * SHA-256; v1: reserved set on an unsigned payload, base fields on a full
 * one, CRC32 digest padding; v2: fields that do not fill the header exactly. */
int modelota_header_parse(const uint8_t* h, uint32_t len, modelota_header_info* info);

/* v2 chunk head: encoding byte, gap, length and (RUNS, RC) size varints. */
typedef struct modelota_chunk_head {
    uint32_t gap;    /* offset - end of the previous chunk */
    uint32_t length; /* decoded bytes */
    uint32_t size;   /* encoded bytes (RAW: length) */
    uint32_t head_len;
    uint32_t keep_start;   /* KEEP: bytes of the chunk kept, from this one */
    uint32_t keep_len;
    uint32_t pred_start;   /* PRED: first predicted byte in the chunk */
    uint32_t pred_count;   /* float32 values predicted */
    uint32_t pred_back;    /* their source starts this many bytes before them */
    uint32_t pred_divisor; /* float32 bits the source values are divided by */
    uint8_t enc;
} modelota_chunk_head;

/* Parses the first n bytes of a chunk head: 1 when complete (out filled),
 * 0 when more bytes are needed, MODELOTA_BAD_CHUNK on an unknown encoding,
 * DIFF outside a delta, LANES without RC or a malformed varint. */
int modelota_chunk_head_parse(const uint8_t* f, uint32_t n, int delta, modelota_chunk_head* out);
/* The KEEP and PRED rules of a whole head for a chunk at region `offset`,
 * with `kept_len` bytes from region offset `kept_off` still kept (0: none):
 * MODELOTA_OK or MODELOTA_BAD_CHUNK (docs/FORMAT.md, "KEEP and PRED"). */
int modelota_chunk_refs_check(const modelota_chunk_head* h, uint32_t offset, uint32_t max_chunk,
                              uint32_t kept_off, uint32_t kept_len);
/* float32 a / d on bit patterns, rounded to nearest even, in integer
 * arithmetic: 0 unless a, d and the quotient are normal finite numbers. */
uint32_t modelota_fdiv(uint32_t a, uint32_t d);
/* PRED: adds to out[0..4*count) the prediction of `count` little-endian
 * float32 values: each of src[] divided by `divisor`, little-endian. */
void modelota_predict_add(uint8_t* out, const uint8_t* src, uint32_t count, uint32_t divisor);

/* Chunk decoder state. The probabilities live for a whole payload
 * (modelota_decoder_reset at its start); the rest is per chunk. */
typedef struct modelota_decoder {
    uint16_t lit[MODELOTA_RC_LIT_NODES];   /* tree A, nodes 1..255 */
    uint16_t lane[MODELOTA_RC_LANE_NODES]; /* tree B, nodes 1..127 */
    uint32_t range;
    uint32_t code;
    uint32_t offset; /* region offset of the chunk's first byte */
    uint32_t length; /* decoded bytes of the chunk */
    uint32_t out;    /* decoded bytes produced so far */
    uint32_t count;  /* RUNS: token value, then bytes left in it */
    uint16_t node;   /* RC: bit-tree position in the byte being decoded */
    uint8_t enc;
    uint8_t phase;   /* RC: code bytes still to read; RUNS: token phase */
    uint8_t shift;   /* RUNS: token bytes read */
    uint8_t run;     /* RUNS: the repeated byte */
} modelota_decoder;

/* A new payload: every probability back to one half. */
void modelota_decoder_reset(modelota_decoder* d);

/* A new chunk of `length` decoded bytes for region offset `offset`. */
void modelota_decode_begin(modelota_decoder* d, uint8_t enc, uint32_t offset, uint32_t length);

/* Decodes encoded bytes in[0..n) into out[], where out[0] stands for the
 * chunk's decoded byte `from`, until the input is used up or `to` bytes of
 * the chunk are out (from <= decoded so far <= to <= length). in == NULL:
 * the chunk's encoded bytes are over; zeros are decoded until `to`. With
 * DIFF, out[] must hold the base bytes: decoded values are added to them.
 * Returns the input bytes consumed. */
uint32_t modelota_decode(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                         uint32_t from, uint32_t to);

/* Decoded bytes of the current chunk produced so far. */
uint32_t modelota_decoded(const modelota_decoder* d);

#ifdef __cplusplus
} /* extern "C" */
static_assert(sizeof(modelota_decoder) <= MODELOTA_MAX_DECODER_BYTES,
              "decoder state exceeds MODELOTA_MAX_DECODER_BYTES");
#endif

#endif /* MODELOTA_DECODE_H */
