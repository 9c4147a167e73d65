/*
 * The sample logger for Arduino: compiles firmware_lib/modelota/samples.cpp
 * into the library (no copy) and the Print glue of ModelOTALogger.h.
 */
#include "../firmware_lib/modelota/samples.cpp"

#include "ModelOTALogger.h"

#include <string.h>

namespace {

int printWrite(void* ctx, const uint8_t* data, uint32_t n) {
    Print* out = static_cast<Print*>(ctx);
    size_t want = static_cast<size_t>(n); /* n <= 32: one piece */
    return out->write(data, want) == want ? 0 : -1;
}

}  // namespace

ModelOTALogger::ModelOTALogger(const modelota_sensor* sensors, uint8_t sensor_count,
                               float interval_ms, float* ring, uint32_t ring_len,
                               uint16_t window, uint16_t hop) {
    modelota_samples_config c;
    memset(&c, 0, sizeof(c));
    c.sensors = sensors;
    c.sensor_count = sensor_count;
    c.window = window;
    c.hop = hop;
    c.interval_ms = interval_ms;
    c.buffer = ring;
    c.buffer_len = ring_len;
    status_ = modelota_samples_init(&s_, &c);
}

int ModelOTALogger::writeTo(Print& out) {
    return modelota_samples_write(&s_, printWrite, &out);
}
