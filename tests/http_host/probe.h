/*
 * Drives the firmware_lib HTTP response parser and manifest reader over a
 * byte string cut into pieces, and writes what they found as one line of
 * text. tests/test_http_pull.py loads it through ctypes (libhttpprobe.so)
 * and compares the lines of different cuts; pull_main's `fuzz` mode runs it
 * under ASan/UBSan.
 */
#ifndef MODELOTA_HTTP_PROBE_H
#define MODELOTA_HTTP_PROBE_H

#include <stddef.h>
#include <stdint.h>

extern "C" {
/* Returns the final status: MODELOTA_HTTP_EV_DONE (3) or a negative status.
 * `eof`: the connection closes after the last byte. */
int http_probe(const uint8_t* data, size_t n, const uint32_t* cuts, size_t ncuts, int eof,
               char* out, size_t cap);
/* Returns MODELOTA_OK or MODELOTA_HTTP_BAD_MANIFEST. */
int manifest_probe(const uint8_t* data, size_t n, const uint32_t* cuts, size_t ncuts, char* out,
                   size_t cap);
/* HMAC-SHA256 of msg fed in the pieces `cuts` says; -1 for a refused key. */
int hmac_probe(const uint8_t* key, size_t key_len, const uint8_t* msg, size_t n,
               const uint32_t* cuts, size_t ncuts, uint8_t out[32]);
/* sizeof of the public structs, for the RAM table in docs/FLEET.md. */
size_t http_probe_sizeof(int which);
}

#endif
