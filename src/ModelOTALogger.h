/*
 * ModelOTALogger: field data for the next model, over any Print (Serial, a
 * network client, an SD File). Arduino glue over the portable sample logger
 * (firmware_lib/modelota/samples.h; frame format in docs/COLLECT.md).
 *
 *   static const modelota_sensor sensors[] = {{"accX", "m/s2"}, {"accY", "m/s2"}};
 *   static float ring[2 * 32];                      // sensors x window floats
 *   ModelOTALogger logger(sensors, 2, 10.0f, ring, 64, 32);   // 10 ms, 32 rows
 *
 *   float row[2] = {ax, ay};
 *   if (logger.push(row, 2) == 1) logger.writeTo(Serial);     // a window is ready
 *
 * Host: `modelota collect --port PORT OUTDIR` writes each window as an Edge
 * Impulse data acquisition file. No heap: the ring is yours; writeTo()
 * streams the frame in pieces of at most 32 bytes (stack) straight from it.
 * The interval is declared, not measured: push rows at that pace.
 */
#ifndef MODELOTA_LOGGER_ARDUINO_H
#define MODELOTA_LOGGER_ARDUINO_H

#include <Arduino.h>

#include "../firmware_lib/modelota/samples.h"

class ModelOTALogger {
public:
    /* `window` rows per window; `hop` rows between window starts (0 or
     * window: tumbling, each row sent once; less: sliding, overlapping).
     * `ring` holds sensor_count * window floats. status() tells whether the
     * configuration was accepted (MODELOTA_OK) or not (MODELOTA_INVALID_ARGUMENT). */
    ModelOTALogger(const modelota_sensor* sensors, uint8_t sensor_count, float interval_ms,
                   float* ring, uint32_t ring_len, uint16_t window, uint16_t hop = 0);

    /* Adds one row of n == sensor_count values: 1 when a window is ready
     * now, 0 when not, negative (MODELOTA_INVALID_ARGUMENT) on a bad row. */
    int push(const float* row, uint32_t n) { return modelota_samples_push(&s_, row, n); }
    bool ready() const { return modelota_samples_ready(&s_) != 0; }

    /* Streams the ready window to `out` as one frame: MODELOTA_OK,
     * MODELOTA_BAD_STATE (no window ready) or MODELOTA_STORAGE_IO (`out`
     * took fewer bytes than given; the window stays ready). */
    int writeTo(Print& out);

    /* The ready window as one frame in buf (for an HTTP POST body): its
     * length, or a negative status (MODELOTA_TOO_LARGE: buf is short). */
    int32_t encode(uint8_t* buf, uint32_t cap) { return modelota_samples_encode(&s_, buf, cap); }

    int status() const { return status_; }
    uint32_t frameLength() const { return modelota_samples_frame_len(&s_); }
    uint32_t windowsWritten() const { return modelota_samples_seq(&s_); }
    uint32_t rowsDropped() const { return modelota_samples_dropped(&s_); }
    static const char* statusName(int status) { return modelota_status_str(status); }
    modelota_samples* core() { return &s_; }

private:
    ModelOTALogger(const ModelOTALogger&); /* not copyable: s_ keeps the config */
    ModelOTALogger& operator=(const ModelOTALogger&);

    modelota_samples s_;
    int status_;
};

#endif /* MODELOTA_LOGGER_ARDUINO_H */
