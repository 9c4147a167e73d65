/*
 * bench/bench_footprint.py: one sketch, built with -DWITH_MODELOTA=0 and 1
 * for the Mega, to measure what ModelOTA adds. A 1 KiB model runs from RAM,
 * loaded from its factory copy in flash; every byte received is an input to
 * a small fixed inference whose result is printed. With ModelOTA a byte 'M'
 * (the start of "MOTA") starts an update from Serial instead, as in
 * examples/Quickstart.
 */
#ifndef WITH_MODELOTA
#define WITH_MODELOTA 1
#endif
#if WITH_MODELOTA
#include <ModelOTA.h>
#endif
#include <avr/pgmspace.h>

#include "factory_weights.h"

const uint8_t kFactoryWeights[1024] PROGMEM = FACTORY_WEIGHTS_INIT;
uint8_t weights[sizeof(kFactoryWeights)];

#if WITH_MODELOTA
const uint8_t kFingerprint[16] = {0x4c, 0xa0, 0xcd, 0xb5, 0x22, 0x77, 0x17, 0xe0,
                                  0x3b, 0xeb, 0xf4, 0x41, 0x1d, 0x22, 0xd3, 0x94};
uint8_t chunkBuffer[128];
ModelOTA ota(weights, kFingerprint, modelota_backup_flash(kFactoryWeights, 1), chunkBuffer);
#endif

static int32_t infer(uint8_t x) {
  int32_t acc = 0;
  for (uint16_t i = 0; i < sizeof(weights); ++i) {
    acc += (int32_t)(int8_t)weights[i] * (int32_t)((x + i) % 7u) - 3;
  }
  return acc;
}

void setup() {
  Serial.begin(115200);
#if WITH_MODELOTA
  ota.restoreFactory();
#else
  memcpy_P(weights, kFactoryWeights, sizeof(weights));
#endif
}

void loop() {
  if (Serial.available() == 0) return;
#if WITH_MODELOTA
  if (Serial.peek() == 'M') {
    int st = ota.update(Serial, 5000);
    Serial.print(F("update: "));
    Serial.println(ModelOTA::statusName(st));
    return;
  }
#endif
  Serial.println(infer((uint8_t)Serial.read()));
}
