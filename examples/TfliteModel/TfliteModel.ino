/*
 * TfliteModel: a .tflite model whose learned weights are replaced over
 * Serial, and whose structure no payload can change.
 *
 * The interpreter reads the model from RAM (`model`), loaded at boot from
 * its factory copy in flash. A payload is checked chunk by chunk as in
 * examples/Quickstart; on top of that the writable ranges say which bytes of
 * the file are learned constants (weights, biases, quantization scales). A
 * payload that would change any other byte (a RESHAPE shape, an operator,
 * the flatbuffer's tables) is refused with "WrongModel" before that chunk is
 * written, and the model is put back as it was, even when the payload
 * carries the right fingerprint and CRCs.
 *
 * 1. Your model in model_data.h (kModelFactory), and on the host:
 *      modelota fingerprint model.tflite | tail -n +2 > model_fingerprint.h
 *    (MODEL_FINGERPRINT, and MODEL_WRITABLE_RANGES declared MODELOTA_FLASH:
 *    the table stays in flash, PROGMEM on AVR, and is read from there).
 * 2. Upload. The sketch prints the version and the CRC32 of the model.
 * 3. On the host, pack the retrained model against the deployed one and
 *    send it as raw bytes:
 *      modelota pack --base model.tflite retrained.tflite -o v2.mota \
 *          --version 2 --chunk-size 64
 *      stty -F /dev/ttyACM0 115200 raw -hupcl && cat v2.mota > /dev/ttyACM0
 *    It prints "update: Ok" and the new CRC32; a payload for a model of
 *    another architecture, or one that changes the model's structure,
 *    prints "update: WrongModel" and the model is what it was.
 */
#include <ModelOTA.h>

#include "model_data.h"         // kModelFactory: the .tflite, MODELOTA_FLASH
#include "model_fingerprint.h"  // `modelota fingerprint model.tflite | tail -n +2`

uint8_t model[sizeof(kModelFactory)];  // the copy the interpreter runs from, in RAM
uint8_t chunkBuffer[128];              // >= 96 and >= the payload's --chunk-size

ModelOTA ota(model, MODEL_FINGERPRINT, modelota_backup_flash(kModelFactory, 1), chunkBuffer);

static void printModel() {
  Serial.print(F("version "));
  Serial.print(ota.version());
  Serial.print(F(", weights crc32 "));
  Serial.println(modelota_crc32(0, model, sizeof(model)), HEX);
}

void setup() {
  Serial.begin(115200);
  ota.restoreFactory();  // model = the factory .tflite, version 1
  // Only the learned bytes may change. The table is read where it is, in
  // flash. InvalidArgument: it does not fit this model (a range overlaps
  // another or passes its end), and every update is refused.
  int st = ota.setWritableRanges(modelota_writable_flash(MODEL_WRITABLE_RANGES));
  Serial.print(F("writable ranges: "));
  Serial.println(ModelOTA::statusName(st));
  printModel();
}

void loop() {
  if (Serial.available() > 0) {
    int st = ota.update(Serial, 5000);  // gives up after 5 s of silence
    Serial.print(F("update: "));
    Serial.println(ModelOTA::statusName(st));
    printModel();
  }
  // run the interpreter on `model` here (tflite::GetModel(model))
}
