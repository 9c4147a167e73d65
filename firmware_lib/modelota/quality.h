/*
 * ModelOTA model-quality summary: what the running model predicts, counted
 * on the device, for the fleet server's rollout gate (docs/FLEET.md,
 * "Model quality").
 *
 * After each inference the application records the top-1 class and its
 * confidence (and, for a labelled input, the true class). The accumulator
 * counts them in windows of `window` inferences: when a window is full it
 * becomes the summary ("the last N inferences") and the next one starts.
 * The summary is written as one small flat JSON object the device POSTs to
 * /v1/devices/<id>/quality:
 *
 *   {"format":1,"version":7,"n":200,"counts":[21,19,...],"conf_bp":9412,
 *    "labelled":40,"correct":37}
 *
 * counts[i] = inferences whose top-1 class was i (they add up to n);
 * conf_bp = mean top-1 confidence in basis points (1/10000), rounded;
 * labelled/correct = inferences with a known true class, and of them the
 * ones predicted right. Integers only: no printf, no float formatting.
 *
 * No heap; the struct holds everything (about 2 * (10 + 2 * classes) bytes
 * with MODELOTA_QUALITY_MAX_CLASSES classes); every call is bounded by the
 * class count. The summary is for one model version: reset it (or let
 * ModelOTAQuality do it) when the weights change.
 */
#ifndef MODELOTA_QUALITY_H
#define MODELOTA_QUALITY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A build-wide setting (-D...): every unit must see the same value. */
#ifndef MODELOTA_QUALITY_MAX_CLASSES
#define MODELOTA_QUALITY_MAX_CLASSES 16u
#endif
#define MODELOTA_QUALITY_FORMAT 1u
/* Longest summary JSON including its terminating NUL. */
#define MODELOTA_QUALITY_JSON_MAX (104u + 6u * MODELOTA_QUALITY_MAX_CLASSES)

/* One window's counts. Private fields. */
typedef struct modelota_quality_window {
    uint32_t conf_sum; /* confidences in basis points, added up */
    uint16_t n;        /* inferences */
    uint16_t labelled; /* of them, with a known true class */
    uint16_t correct;  /* of those, predicted right */
    uint16_t counts[MODELOTA_QUALITY_MAX_CLASSES];
} modelota_quality_window;

/* Private fields; public so it can be static or on the stack. */
typedef struct modelota_quality {
    uint32_t version;             /* model version the counts are for */
    uint32_t windows;             /* windows completed since the last reset */
    uint16_t classes;             /* 1..MODELOTA_QUALITY_MAX_CLASSES */
    uint16_t window;              /* inferences per window, >= 1 */
    modelota_quality_window cur;  /* the window being filled */
    modelota_quality_window last; /* the last complete window: the summary */
} modelota_quality;

/* classes in 1..MODELOTA_QUALITY_MAX_CLASSES, window >= 1: MODELOTA_OK, else
 * MODELOTA_INVALID_ARGUMENT (and the accumulator records nothing). */
int modelota_quality_init(modelota_quality* q, uint16_t classes, uint16_t window,
                          uint32_t version);

/* Forgets every count: the model changed to `version`. */
void modelota_quality_reset(modelota_quality* q, uint32_t version);

/* One inference: top-1 class `cls`, its confidence in [0, 1], and the true
 * class or -1 when unknown. Returns 1 when it completed a window (a new
 * summary is ready), 0 otherwise, MODELOTA_INVALID_ARGUMENT for a class or
 * label out of range or a confidence that is NaN or outside [0, 1]
 * (nothing is counted then). */
int modelota_quality_record(modelota_quality* q, uint16_t cls, float confidence, int32_t label);

/* The same from the model's output scores (probabilities, e.g. softmax):
 * the top-1 class is the first highest score, its score the confidence.
 * n must equal the class count. */
int modelota_quality_record_scores(modelota_quality* q, const float* scores, uint16_t n,
                                   int32_t label);

/* 1 once a window is complete (there is a summary to send), else 0. */
int modelota_quality_ready(const modelota_quality* q);

/* Windows completed since the last reset. */
uint32_t modelota_quality_windows(const modelota_quality* q);

/* The summary as JSON in out[0..cap) with a terminating NUL: returns its
 * length without the NUL, MODELOTA_BAD_STATE when no window is complete,
 * MODELOTA_TOO_LARGE when cap is short (cap >= MODELOTA_QUALITY_JSON_MAX is
 * always enough), MODELOTA_INVALID_ARGUMENT for a null pointer. */
int32_t modelota_quality_json(const modelota_quality* q, char* out, uint32_t cap);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_QUALITY_H */
