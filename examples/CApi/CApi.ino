/*
 * CApi: the portable core's C API (model_update.c) on an Arduino, fed from
 * Serial. Same behaviour as examples/Quickstart, which uses the ModelOTA
 * class instead:
 *
 *   modelota pack new_weights.bin -o v2.mota --version 2 --model capi --chunk-size 64
 *   stty -F /dev/ttyACM0 115200 raw -hupcl && cat v2.mota > /dev/ttyACM0
 *
 * prints "update: Ok" (or the refusal) and the version and CRC32 of the
 * weights. Silence is counted in 1 ms busy-waits (delayMicroseconds), so
 * the sketch also runs where millis() stands still (qemu-system-avr).
 */
#include <modelota_core.h>

#include "model_update.h"

#ifndef MODELOTA_PULL_QUIET_MS
#define MODELOTA_PULL_QUIET_MS 200u  // the silence that ends a refused payload
#endif

static uint32_t silenceLimitMs = 3000;  // a payload that stops this long is abandoned

// Up to `max` bytes from Serial; 0 after silenceLimitMs without any. Polls
// every 10 us: the 64-byte receive buffer must not fill up meanwhile.
static uint32_t readSerial(uint8_t* buf, uint32_t max) {
  for (uint32_t quiet = 0; Serial.available() == 0; ++quiet) {
    if (quiet >= silenceLimitMs * 100) return 0;
    delayMicroseconds(10);
  }
  uint32_t n = 0;
  while (n < max && Serial.available() > 0) buf[n++] = (uint8_t)Serial.read();
  return n;
}

static void printModel() {
  Serial.print(F("version "));
  Serial.print(model_version());
  Serial.print(F(", weights crc32 "));
  Serial.println(modelota_crc32(0, model_weights, sizeof(model_weights)), HEX);
}

void setup() {
  Serial.begin(115200);
  int st = model_setup();
  if (st != MODELOTA_OK) {
    Serial.print(F("setup: "));
    Serial.println(modelota_status_str(st));
  }
  printModel();
}

void loop() {
  if (Serial.available() == 0) return;  // run the model on model_weights here
  int st = model_update(readSerial);
  if (st != MODELOTA_OK) {
    // the rest of a refused payload is still arriving: drop it until the
    // line has been quiet for 200 ms, so it is not read as a new payload
    uint8_t junk[16];
    silenceLimitMs = MODELOTA_PULL_QUIET_MS;
    while (readSerial(junk, sizeof(junk)) > 0) {
    }
    silenceLimitMs = 3000;
  }
  Serial.print(F("update: "));
  Serial.println(modelota_status_str(st));
  printModel();
}
