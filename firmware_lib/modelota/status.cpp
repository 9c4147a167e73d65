#include "status.h"

#include <string.h>

#if defined(__AVR__)
#include <avr/pgmspace.h>
#endif

#if MODELOTA_STATUS_STRINGS

/* One name per status, in the order 0, -1, -2, ... (a new status appends
 * its name here; the static_assert below counts them). */
#define MODELOTA_STATUS_NAMES                                                                 \
    "Ok\0"                                                                                    \
    "BadMagic\0"                                                                              \
    "UnsupportedVersion\0"                                                                    \
    "BadHeaderCrc\0"                                                                          \
    "Unsupported\0"                                                                           \
    "WrongModel\0"                                                                            \
    "WrongSize\0"                                                                             \
    "Rollback\0"                                                                              \
    "AlreadyCurrent\0"                                                                        \
    "WrongBase\0"                                                                             \
    "TooLarge\0"                                                                              \
    "BadChunk\0"                                                                              \
    "BadSequence\0"                                                                           \
    "OutOfBounds\0"                                                                           \
    "ChunkCrc\0"                                                                              \
    "LayoutMismatch\0"                                                                        \
    "DigestMismatch\0"                                                                        \
    "Truncated\0"                                                                             \
    "TrailingData\0"                                                                          \
    "Aborted\0"                                                                               \
    "Timeout\0"                                                                               \
    "StorageIo\0"                                                                             \
    "BadState\0"                                                                              \
    "InvalidArgument\0"                                                                       \
    "BadSignature\0"                                                                          \
    "Unsigned\0"

namespace {

/* Names in s[i, n), counted at compile time: each ends with a '\0'. */
constexpr int count_names(const char* s, unsigned i, unsigned n) {
    return i >= n ? 0 : (s[i] == '\0' ? 1 : 0) + count_names(s, i + 1u, n);
}

/* Length of the longest name in s[i, n) (run: the current one so far). */
constexpr unsigned longest_name(const char* s, unsigned i, unsigned n, unsigned run,
                                unsigned best) {
    return i >= n ? best
                  : (s[i] == '\0' ? longest_name(s, i + 1u, n, 0u, run > best ? run : best)
                                  : longest_name(s, i + 1u, n, run + 1u, best));
}

static_assert(count_names(MODELOTA_STATUS_NAMES, 0u, sizeof(MODELOTA_STATUS_NAMES) - 1u) ==
                  1 - MODELOTA_STATUS_MIN,
              "one name per status, 0 down to MODELOTA_STATUS_MIN");
static_assert(longest_name(MODELOTA_STATUS_NAMES, 0u, sizeof(MODELOTA_STATUS_NAMES) - 1u, 0u, 0u) <
                  MODELOTA_STATUS_NAME_MAX,
              "a status name does not fit MODELOTA_STATUS_NAME_MAX");

/* In flash on AVR, where .rodata is copied into RAM at boot. */
#if defined(__AVR__)
const char kNames[] __attribute__((__progmem__)) = MODELOTA_STATUS_NAMES;
const char kUnknown[] __attribute__((__progmem__)) = "Unknown";
#else
const char kNames[] = MODELOTA_STATUS_NAMES;
const char kUnknown[] = "Unknown";
#endif

char name_char(const char* p) {
#if defined(__AVR__)
    return static_cast<char>(pgm_read_byte(p));
#else
    return *p;
#endif
}

/* The name of `status` inside kNames (or kUnknown): at most 1 - STATUS_MIN
 * names are skipped. */
const char* find_name(int status) {
    if (status > 0 || status < MODELOTA_STATUS_MIN) {
        return kUnknown;
    }
    const char* p = kNames;
    for (int i = 0; i < -status; ++i) {
        while (name_char(p) != '\0') {
            ++p;
        }
        ++p;
    }
    return p;
}

}  // namespace

#endif /* MODELOTA_STATUS_STRINGS */

extern "C" size_t modelota_status_name(int status, char* dst, size_t len) {
    if (dst == NULL || len == 0) {
        return 0;
    }
#if MODELOTA_STATUS_STRINGS
    const char* p = find_name(status);
    size_t n = 0;
    for (char c = name_char(p); c != '\0' && n + 1 < len; c = name_char(++p)) {
        dst[n++] = c;
    }
    dst[n] = '\0';
    return n;
#else
    (void)status;
    dst[0] = '\0';
    return 0;
#endif
}

extern "C" const char* modelota_status_str(int status) {
#if MODELOTA_STATUS_STRINGS && defined(__AVR__)
    static char name[MODELOTA_STATUS_NAME_MAX]; /* the names stay in flash */
    modelota_status_name(status, name, sizeof(name));
    return name;
#elif MODELOTA_STATUS_STRINGS
    return find_name(status);
#else
    (void)status;
    return "";
#endif
}
