/*
 * QualityReport: what the running model predicts, summarised for the fleet
 * server's rollout gate (docs/FLEET.md "Model quality").
 *
 * A tiny classifier (4 classes, 4 inputs, weights updatable over Serial with
 * `modelota push`) runs on readings of the analog pins. After each
 * inference the output probabilities go to a ModelOTAQuality; every 50
 * inferences a summary is printed as the JSON line a device POSTs to
 * /v1/devices/<id>/quality (a network sketch sends it, signed, with
 * ModelOTAHttp::postQuality(quality): examples/WiFiPull):
 *
 *   {"format":1,"version":1,"n":50,"counts":[12,13,11,14],"conf_bp":4123,...}
 *
 * The summary follows the model: after an update the counts start again for
 * the new version. RAM: the weights (80 bytes), the accumulator (96 bytes
 * with the default 16 classes; fewer with -DMODELOTA_QUALITY_MAX_CLASSES=N
 * for the whole build, library included: a #define in the sketch would give
 * the library and the sketch two layouts) and the JSON buffer while printing.
 */
#include <ModelOTA.h>

#define CLASSES 4
#define INPUTS 4
#define WINDOW 50

/* float32 weights [CLASSES][INPUTS] and biases [CLASSES]: 80 bytes */
static const uint8_t factory[(CLASSES * INPUTS + CLASSES) * 4] MODELOTA_FLASH = {
    0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3F,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t fingerprint[16] = {'Q', 'u', 'a', 'l', 'i', 't', 'y', 'R',
                                        'e', 'p', 'o', 'r', 't', '-', 'f', 'p'};

static uint8_t weights[sizeof(factory)];
static uint8_t chunkBuffer[128];
static ModelOTA ota(weights, fingerprint, modelota_backup_flash(factory, 1), chunkBuffer);
static ModelOTAQuality quality(ota, CLASSES, WINDOW);

static float weight(uint8_t i) {
    float w;
    memcpy(&w, weights + 4u * i, sizeof(w));
    return w;
}

/* softmax(W x + b) over the four analog inputs scaled to [0, 1] */
static void infer(float* probs) {
    float x[INPUTS];
    for (uint8_t i = 0; i < INPUTS; ++i) {
        x[i] = static_cast<float>(analogRead(A0 + i)) / 1023.0f;
    }
    float top = -1e30f;
    for (uint8_t c = 0; c < CLASSES; ++c) {
        float z = weight(static_cast<uint8_t>(CLASSES * INPUTS + c));
        for (uint8_t i = 0; i < INPUTS; ++i) {
            z += weight(static_cast<uint8_t>(c * INPUTS + i)) * x[i];
        }
        probs[c] = z;
        top = z > top ? z : top;
    }
    float sum = 0.0f;
    for (uint8_t c = 0; c < CLASSES; ++c) {
        probs[c] = expf(probs[c] - top);
        sum += probs[c];
    }
    for (uint8_t c = 0; c < CLASSES; ++c) {
        probs[c] /= sum;
    }
}

void setup() {
    Serial.begin(115200);
    ota.restoreFactory();
    Serial.print(F("quality accumulator: "));
    Serial.println(ModelOTA::statusName(quality.status()));
}

void loop() {
    if (Serial.available() > 0) { /* a raw payload: apply it, counts restart */
        int st = ota.update(Serial, 2000);
        Serial.print(F("update: "));
        Serial.println(ModelOTA::statusName(st));
    }
    float probs[CLASSES];
    infer(probs);
    if (quality.recordScores(probs, CLASSES) == 1) {
        quality.printTo(Serial); /* one JSON line per 50 inferences */
    }
    delay(20);
}
