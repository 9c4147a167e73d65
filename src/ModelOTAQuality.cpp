/*
 * The model-quality accumulator for Arduino: compiles
 * firmware_lib/modelota/quality.cpp into the library (no copy) and the
 * glue of ModelOTAQuality.h.
 */
#include "../firmware_lib/modelota/quality.cpp"

#include "ModelOTAQuality.h"

ModelOTAQuality::ModelOTAQuality(const ModelOTA& ota, uint16_t classes, uint16_t window)
    : ota_(ota) {
    status_ = modelota_quality_init(&q_, classes, window, ota.version());
}

void ModelOTAQuality::follow() {
    if (ota_.version() != q_.version) {
        modelota_quality_reset(&q_, ota_.version());
    }
}

int ModelOTAQuality::record(uint16_t cls, float confidence, int32_t label) {
    follow();
    return modelota_quality_record(&q_, cls, confidence, label);
}

int ModelOTAQuality::recordScores(const float* scores, uint16_t n, int32_t label) {
    follow();
    return modelota_quality_record_scores(&q_, scores, n, label);
}

int ModelOTAQuality::printTo(Print& out) const {
    char buf[MODELOTA_QUALITY_JSON_MAX];
    int32_t n = json(buf, sizeof(buf));
    if (n < 0) {
        return static_cast<int>(n);
    }
    for (int32_t i = 0; i < n; ++i) {
        out.write(static_cast<uint8_t>(buf[i]));
    }
    out.write(static_cast<uint8_t>('\n'));
    return MODELOTA_OK;
}
