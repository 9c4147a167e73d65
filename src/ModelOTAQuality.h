/*
 * ModelOTAQuality: what the running model predicts, summarised for the fleet
 * server's rollout gate (docs/FLEET.md "Model quality"). Arduino glue over
 * the portable accumulator (firmware_lib/modelota/quality.h).
 *
 *   ModelOTA ota(...);
 *   ModelOTAQuality quality(ota, 10, 100);   // 10 classes, summaries of 100 inferences
 *
 *   // after each inference: the model's output probabilities
 *   if (quality.recordScores(output, 10) == 1) {   // a window of 100 is complete
 *       int st = fleet.postQuality(quality);      // a ModelOTAHttp (ModelOTAHttp.h):
 *   }                                             // signed POST /v1/devices/<id>/quality
 *
 * quality.json(buf, sizeof(buf)) writes the same summary as text, for a
 * transport of your own. examples/WiFiPull sends it; examples/QualityReport
 * prints it.
 *
 * The summary is for the version the ModelOTA object runs: after an update
 * (or a factory restore to another version) the counts start again, so a
 * summary never mixes two models. No heap; about 2 * (10 + 2 * classes)
 * bytes plus the reference.
 */
#ifndef MODELOTA_QUALITY_ARDUINO_H
#define MODELOTA_QUALITY_ARDUINO_H

#include "ModelOTA.h"
#include "../firmware_lib/modelota/quality.h"

class ModelOTAQuality {
public:
    /* classes: 1..MODELOTA_QUALITY_MAX_CLASSES (16 unless the whole build
     * defines it: -D, not a #define in the sketch, which the library's own
     * compilation would not see); window: inferences per summary, >= 1. status() says
     * whether they were accepted (MODELOTA_OK, else INVALID_ARGUMENT and
     * nothing is recorded). */
    ModelOTAQuality(const ModelOTA& ota, uint16_t classes, uint16_t window);

    /* One inference: top-1 class, its confidence in [0, 1], the true class
     * or -1. 1 when a window completed, 0 when not, negative when refused. */
    int record(uint16_t cls, float confidence, int32_t label = -1);
    /* The same from the output probabilities (n == classes). */
    int recordScores(const float* scores, uint16_t n, int32_t label = -1);

    bool ready() const { return modelota_quality_ready(&q_) != 0; }
    uint32_t windows() const { return modelota_quality_windows(&q_); }
    uint32_t version() const { return q_.version; }
    /* The last complete window as JSON (NUL-terminated): its length, or a
     * negative status (BAD_STATE: none yet; TOO_LARGE: cap is short). */
    int32_t json(char* out, uint32_t cap) const { return modelota_quality_json(&q_, out, cap); }
    /* Prints the JSON and a newline; MODELOTA_OK or the json() status. */
    int printTo(Print& out) const;

    int status() const { return status_; }
    modelota_quality* core() { return &q_; }
    const modelota_quality* core() const { return &q_; }

private:
    ModelOTAQuality(const ModelOTAQuality&); /* not copyable */
    ModelOTAQuality& operator=(const ModelOTAQuality&);

    void follow(); /* a new model version: start the counts again */

    const ModelOTA& ota_;
    modelota_quality q_;
    int status_;
};

#endif /* MODELOTA_QUALITY_ARDUINO_H */
