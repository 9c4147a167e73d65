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

/* 1: modelota_status_str() returns short names ("ChunkCrc"...).
 * 0: it returns "" and the name table is not linked, saving flash. */
#ifndef MODELOTA_STATUS_STRINGS
#define MODELOTA_STATUS_STRINGS 1
#endif

/* CRC32 implementation:
 *   0 = bitwise, no table (smallest, slowest)
 *   1 = 16-entry nibble table (64 bytes)
 *   2 = 256-entry byte table (1 KiB)
 * AVR defaults to the nibble table: a const table lives in RAM there unless
 * placed in PROGMEM, and 1 KiB of a Mega's 8 KiB is too much to spend. */
#ifndef MODELOTA_CRC32_TABLE
#if defined(__AVR__)
#define MODELOTA_CRC32_TABLE 1
#else
#define MODELOTA_CRC32_TABLE 2
#endif
#endif

/* Hard cap on the Updater's own state, checked with static_assert. The
 * caller lends the chunk buffer separately. */
#ifndef MODELOTA_MAX_UPDATER_BYTES
#define MODELOTA_MAX_UPDATER_BYTES 256
#endif

#endif /* MODELOTA_CONFIG_H */
