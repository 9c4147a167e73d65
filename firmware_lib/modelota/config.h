/*
 * ModelOTA compile-time configuration.
 *
 * Every knob has a default here; a port overrides it with -D on the compiler
 * line or by defining MODELOTA_USER_CONFIG to the name of a header that sets
 * the macros before this file sets the defaults (littlefs's LFS_CONFIG style).
 */
#ifndef MODELOTA_CONFIG_H
#define MODELOTA_CONFIG_H

#ifdef MODELOTA_USER_CONFIG
#include MODELOTA_USER_CONFIG
#endif

/* 1: modelota_status_str() returns short names ("ChunkCrc"...); on AVR the
 * names stay in flash (PROGMEM) and are copied into a 20-byte buffer.
 * 0: it returns "" and the name table is not linked, saving flash. */
#ifndef MODELOTA_STATUS_STRINGS
#define MODELOTA_STATUS_STRINGS 1
#endif

/* CRC32 implementation:
 *   0 = bitwise, no table (smallest, slowest)
 *   1 = two 16-entry nibble tables (128 bytes), a byte per step
 *   2 = 256-entry byte table (1 KiB)
 * The tables are in flash everywhere (PROGMEM on AVR). AVR defaults to the
 * nibble tables, 856 bytes less flash than the byte table (speed on an
 * ATmega2560: bench/bench_size.py, table 4b). */
#ifndef MODELOTA_CRC32_TABLE
#if defined(__AVR__)
#define MODELOTA_CRC32_TABLE 1
#else
#define MODELOTA_CRC32_TABLE 2
#endif
#endif

/* SHA-256 digests (digest type 2, docs/FORMAT.md): 1 compiles them in.
 * Costs one SHA-256 context (108 bytes) inside modelota_updater and the
 * SHA-256 code (its round-constant table sits in PROGMEM on AVR). 0 refuses
 * SHA-256 payloads with MODELOTA_UNSUPPORTED. Signed payloads need it.
 * Default: on, except on AVR where it follows MODELOTA_SIGNATURES (off), to
 * keep the Updater's state at 134 bytes of a Mega's 8 KiB (the whole
 * ModelOTA object is 195; bench/bench_footprint.py measures a sketch). */
#ifndef MODELOTA_SHA256
#if defined(__AVR__) && !(defined(MODELOTA_SIGNATURES) && MODELOTA_SIGNATURES)
#define MODELOTA_SHA256 0
#else
#define MODELOTA_SHA256 1
#endif
#endif

/* Built-in Ed25519 verifier (modelota_ed25519_verifier, ed25519.h): 1 links
 * the verifier (code size: bench/bench_security.py). Independent of it, any
 * port may plug its platform's crypto in through modelota_config.verifier.
 * Default: on, except on AVR (a verify takes seconds there and the code
 * would be the largest part of the library). */
#ifndef MODELOTA_SIGNATURES
#if defined(__AVR__)
#define MODELOTA_SIGNATURES 0
#else
#define MODELOTA_SIGNATURES 1
#endif
#endif

#if MODELOTA_SIGNATURES && !MODELOTA_SHA256
#error "MODELOTA_SIGNATURES needs MODELOTA_SHA256: a signed payload's digest is SHA-256"
#endif

/* Signed fleet requests (http.h, docs/FLEET.md "Device authentication"):
 * 1 compiles HMAC-SHA256 request signing into the HTTP pull (it needs the
 * SHA-256 code, not MODELOTA_SHA256's context in the Updater). 0 leaves it
 * out: such a device can only pull from a static tree. */
#ifndef MODELOTA_HTTP_AUTH
#define MODELOTA_HTTP_AUTH 1
#endif

/* Hard cap on the Updater's own state without its v2 chunk decoder (which
 * MODELOTA_MAX_DECODER_BYTES caps), checked with static_assert. The caller
 * lends the chunk buffer separately. */
#ifndef MODELOTA_MAX_UPDATER_BYTES
#define MODELOTA_MAX_UPDATER_BYTES 320
#endif

/* Hard cap on the v2 chunk decoder's state (modelota_decoder, inside the
 * Updater and on the Store's stack while it applies a logged payload). */
#ifndef MODELOTA_MAX_DECODER_BYTES
#define MODELOTA_MAX_DECODER_BYTES 1024
#endif

#endif /* MODELOTA_CONFIG_H */
