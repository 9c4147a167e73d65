/*
 * ModelOTA status codes: 0 is success, every failure is negative.
 * The numeric values are part of the public contract (docs/FORMAT.md,
 * host_tools/modelota/status.py): never renumber, only append.
 */
#ifndef MODELOTA_STATUS_H
#define MODELOTA_STATUS_H

#include <stddef.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum modelota_status {
    MODELOTA_OK = 0,
    MODELOTA_BAD_MAGIC = -1,           /* stream does not start with "MOTA" */
    MODELOTA_UNSUPPORTED_VERSION = -2, /* format version this build cannot read */
    MODELOTA_BAD_HEADER_CRC = -3,      /* header bytes corrupted */
    MODELOTA_UNSUPPORTED = -4,         /* unknown flag, digest type or non-zero reserved field */
    MODELOTA_WRONG_MODEL = -5,         /* fingerprint differs from this device's model */
    MODELOTA_WRONG_SIZE = -6,          /* weight region size differs from this device's */
    MODELOTA_ROLLBACK = -7,            /* payload version lower than the current one */
    MODELOTA_ALREADY_CURRENT = -8,     /* payload version equal to the current one */
    MODELOTA_WRONG_BASE = -9,          /* delta built for other base weights */
    MODELOTA_TOO_LARGE = -10,          /* chunk larger than the lent buffer, or sizes overflow */
    MODELOTA_BAD_CHUNK = -11,          /* chunk header malformed (zero or oversized length) */
    MODELOTA_BAD_SEQUENCE = -12,       /* chunk duplicated, reordered or missing */
    MODELOTA_OUT_OF_BOUNDS = -13,      /* chunk overlaps an earlier one or leaves the region */
    MODELOTA_CHUNK_CRC = -14,          /* chunk CRC32 mismatch */
    MODELOTA_LAYOUT_MISMATCH = -15,    /* chunk/segment/byte totals differ from the header */
    MODELOTA_DIGEST_MISMATCH = -16,    /* final weights digest differs from the header */
    MODELOTA_TRUNCATED = -17,          /* stream ended before the last chunk */
    MODELOTA_TRAILING_DATA = -18,      /* bytes after the last chunk */
    MODELOTA_ABORTED = -19,            /* caller aborted */
    MODELOTA_TIMEOUT = -20,            /* transport stopped delivering bytes */
    MODELOTA_STORAGE_IO = -21,         /* a target or backup callback failed */
    MODELOTA_BAD_STATE = -22,          /* API called in the wrong state */
    MODELOTA_INVALID_ARGUMENT = -23,   /* bad configuration (null pointer, buffer too small) */
    MODELOTA_BAD_SIGNATURE = -24,      /* signature does not verify under the device's key */
    MODELOTA_UNSIGNED = -25            /* unsigned payload on a device that requires signatures */
} modelota_status;

#define MODELOTA_STATUS_MIN (-25)

/* Bytes a status name needs, with its terminating NUL. */
#define MODELOTA_STATUS_NAME_MAX 20

/* Short name of a status ("ChunkCrc"), or "" when MODELOTA_STATUS_STRINGS
 * is 0. Unknown values give "Unknown". Never returns NULL.
 * On AVR the names stay in flash (not copied into RAM at boot): the name
 * is copied into one static buffer, valid until the next call. Use
 * modelota_status_name() to keep two at once. */
const char* modelota_status_str(int status);

/* Copies the name of `status` into dst (at most len - 1 characters and a
 * NUL); returns its length. MODELOTA_STATUS_NAME_MAX bytes always fit. */
size_t modelota_status_name(int status, char* dst, size_t len);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_STATUS_H */
