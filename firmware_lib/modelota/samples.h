/*
 * ModelOTA sample logger: field data for the next model (docs/COLLECT.md).
 *
 * The application pushes rows of float sensor values (one float per sensor)
 * at a fixed, declared interval; the logger keeps the latest `window` rows in
 * a ring buffer the caller lends (no heap) and, once a window is ready,
 * streams it as one frame through a write callback:
 *
 *   head (24 B) | sensor table | header CRC32 | float32 values, row-major | frame CRC32
 *
 * The encoder never holds the frame: it writes the head, the table and the
 * values straight from the ring, so a window of any size needs no buffer
 * beyond the ring itself. `modelota collect` (host_tools/modelota/collect.py)
 * turns frames into Edge Impulse data acquisition files.
 *
 * Windows: `hop` rows separate the starts of two windows. hop == window is a
 * tumbling window (every row is sent once); hop < window a sliding one (the
 * last window - hop rows of a window open the next). A window is ready once
 * the ring holds `window` rows and `hop` rows came since the last window was
 * written. Pushing while a window waits keeps the ring a ring: the oldest
 * row is overwritten, the waiting window slides forward, and rows that leave
 * the ring without ever being written are counted (modelota_samples_dropped);
 * the frame's `first_sample` shows the host where the gap is.
 *
 * Timestamps are not measured: the host derives them from `interval_ms` and
 * `first_sample` (a board's millis() may not even run, as under
 * qemu-system-avr 7.2).
 */
#ifndef MODELOTA_SAMPLES_H
#define MODELOTA_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MODELOTA_SAMPLES_FORMAT_VERSION 1u
#define MODELOTA_SAMPLES_HEAD_LEN 24u   /* fixed part before the sensor table */
#define MODELOTA_SAMPLES_MAX_SENSORS 16u
#define MODELOTA_SAMPLES_MAX_NAME 32u   /* bytes of a sensor name, 1..32 */
#define MODELOTA_SAMPLES_MAX_UNITS 16u  /* bytes of a unit, 1..16 */
#define MODELOTA_SAMPLES_MAX_VALUES 65536u /* sensors x rows in one frame */
/* head + largest table + header CRC + frame CRC, without the values */
#define MODELOTA_SAMPLES_MAX_OVERHEAD (24u + 16u * (2u + 32u + 16u) + 8u)

/* "MOTW" (ModelOTA Window), distinct from the payload magic "MOTA". */
#define MODELOTA_SAMPLES_MAGIC0 0x4Du
#define MODELOTA_SAMPLES_MAGIC1 0x4Fu
#define MODELOTA_SAMPLES_MAGIC2 0x54u
#define MODELOTA_SAMPLES_MAGIC3 0x57u

/* One sensor axis: a name ("accX") and its unit ("m/s2"), printable ASCII
 * (0x20..0x7E), NUL-terminated, 1..MAX_NAME and 1..MAX_UNITS bytes. The
 * strings must outlive the logger (string literals are the usual case). */
typedef struct modelota_sensor {
    const char* name;
    const char* units;
} modelota_sensor;

/* Sends n bytes; returns 0 on success, anything else on failure. */
typedef int (*modelota_samples_write_fn)(void* ctx, const uint8_t* data, uint32_t n);

typedef struct modelota_samples_config {
    const modelota_sensor* sensors; /* sensor_count entries, copied by pointer */
    uint8_t sensor_count;           /* 1..MODELOTA_SAMPLES_MAX_SENSORS */
    uint16_t window;                /* rows per window, >= 1 */
    uint16_t hop;                   /* rows between window starts: 1..window (0: = window) */
    float interval_ms;              /* declared sampling interval, finite and > 0 */
    float* buffer;                  /* the ring: window * sensor_count floats */
    uint32_t buffer_len;            /* floats in buffer */
} modelota_samples_config;

/* Private fields; public so it can be static or on the stack. */
typedef struct modelota_samples {
    modelota_samples_config c;
    uint32_t total;     /* rows pushed since init (wraps mod 2^32) */
    uint32_t sent_end;  /* row index just past the last written window */
    uint32_t seq;       /* windows written */
    uint32_t dropped;   /* rows overwritten without ever being written */
    uint32_t since;     /* rows since the last written window (saturates) */
    uint16_t head;      /* ring slot of the next row */
    uint16_t count;     /* rows in the ring, up to window */
    uint16_t table_len; /* bytes of the sensor table */
} modelota_samples;

/* Checks the configuration (pointers, counts, string lengths and bytes,
 * interval, ring size, window * sensors <= MAX_VALUES) and empties the
 * ring. MODELOTA_OK or MODELOTA_INVALID_ARGUMENT. */
int modelota_samples_init(modelota_samples* s, const modelota_samples_config* c);

/* Appends one row of n == sensor_count values. Returns 1 when a window is
 * ready after this row, 0 when not, MODELOTA_INVALID_ARGUMENT on a null
 * row or a wrong n. Constant time, no callback. */
int modelota_samples_push(modelota_samples* s, const float* row, uint32_t n);

/* 1 when a window is ready to be written, else 0. */
int modelota_samples_ready(const modelota_samples* s);

/* Bytes of one frame of this logger (the same for every window). */
uint32_t modelota_samples_frame_len(const modelota_samples* s);

/* Frame CRCs: header_crc = CRC32 of head + table; frame_crc = CRC32 of
 * head + table + values (the values' CRC seeded with header_crc), which
 * binds the values to their header. */

/* Streams the ready window as one frame through write(ctx, ...), in pieces
 * of at most 32 bytes, and marks it written. MODELOTA_BAD_STATE when no
 * window is ready; MODELOTA_STORAGE_IO when write failed (the window stays
 * ready: the caller may retry; the host drops the cut frame by its CRC). */
int modelota_samples_write(modelota_samples* s, modelota_samples_write_fn write, void* ctx);

/* The ready window as one frame in out[0..cap): returns the frame length,
 * MODELOTA_TOO_LARGE when cap is smaller (nothing is marked written), or
 * MODELOTA_BAD_STATE when no window is ready. For an HTTP POST body. */
int32_t modelota_samples_encode(modelota_samples* s, uint8_t* out, uint32_t cap);

/* Windows written since init (the next frame carries this as seq). */
uint32_t modelota_samples_seq(const modelota_samples* s);
/* Rows pushed since init (wraps). */
uint32_t modelota_samples_total(const modelota_samples* s);
/* Rows that left the ring without being written (writer too slow). */
uint32_t modelota_samples_dropped(const modelota_samples* s);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_SAMPLES_H */
