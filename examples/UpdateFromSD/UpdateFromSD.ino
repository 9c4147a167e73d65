/*
 * ModelOTA example: update a model's weights from a payload file on an SD
 * card, at boot.
 *
 * Copy a payload to the card as /model.mota:
 *   modelota pack new_weights.bin -o model.mota --version 2 \
 *       --model sketch-demo --chunk-size 256        # <= kChunkBuffer
 * At boot the sketch loads the factory weights, then applies /model.mota if
 * it is for this model and newer than the running version. A damaged or
 * truncated file is refused (ChunkCrc, Truncated, ...) and the factory
 * weights stay; an old file is refused as AlreadyCurrent or Rollback.
 *
 * The version applied is not remembered across reboots here (the weights
 * live in RAM), so the file is applied again at every boot: that is what
 * makes the card the model's home. examples/PersistentUpdate keeps the
 * committed weights in EEPROM instead.
 *
 * Wiring: an SD card module on the SPI pins (on a Mega: 50 MISO, 51 MOSI,
 * 52 SCK) with its chip select on kChipSelect.
 *
 * To use it with your model, replace kFactoryWeights, MODEL_FINGERPRINT
 * (`modelota fingerprint`) and kFactoryVersion, and point your interpreter
 * at `weights`.
 */
#include <SPI.h>
#include <SD.h>
#include <ModelOTA.h>

const uint8_t kChipSelect = 4;  // your SD module's CS pin (4 on the Ethernet shield)
const char kPayloadPath[] = "/model.mota";

// The factory weights, as the firmware was built (here: a placeholder),
// in flash: MODELOTA_FLASH is PROGMEM on AVR, nothing elsewhere.
const uint8_t kFactoryWeights[1024] MODELOTA_FLASH = {
    0x3c, 0x12, 0x7f, 0x80, 0x01, 0xfe, 0x44, 0x21, 0x09, 0x90, 0x55, 0xaa, 0x10, 0x20, 0x30, 0x40,
};
const uint32_t kFactoryVersion = 1;

// `modelota fingerprint --model sketch-demo --size 1024`
const uint8_t MODEL_FINGERPRINT[16] = {0x41, 0x2e, 0x2c, 0x31, 0x06, 0x81, 0x8f, 0x1a,
                                       0xeb, 0x47, 0x6d, 0xb0, 0x9c, 0x26, 0x99, 0xf5};

const size_t kChunkBuffer = 256;  // >= 96 and >= the payload's --chunk-size

uint8_t weights[sizeof(kFactoryWeights)];  // what the model reads
uint8_t chunkBuffer[kChunkBuffer];

ModelOTA ota(weights, MODEL_FINGERPRINT, modelota_backup_flash(kFactoryWeights, kFactoryVersion),
             chunkBuffer);

static void printModel() {
  Serial.print(F("model version "));
  Serial.print(ota.version());
  Serial.print(F(", weights crc32 0x"));
  Serial.println(modelota_crc32(0, weights, sizeof(weights)), HEX);
}

static void updateFromCard() {
  if (!SD.begin(kChipSelect)) {
    Serial.println(F("no SD card: running the factory model"));
    return;
  }
  if (!SD.exists(kPayloadPath)) {
    Serial.print(F("no "));
    Serial.print(kPayloadPath);
    Serial.println(F(" on the card: running the factory model"));
    return;
  }
  File payload = SD.open(kPayloadPath, FILE_READ);
  if (!payload) {
    Serial.println(F("cannot open the payload"));
    return;
  }
  Serial.print(F("applying "));
  Serial.print(kPayloadPath);
  Serial.print(F(", "));
  Serial.print(payload.size());
  Serial.println(F(" bytes"));
  // A File is a Stream. Timeout 0: a file never has to be waited for, so
  // running out of bytes means the file is short (Truncated).
  int st = ota.update(payload, 0);
  payload.close();
  Serial.print(F("update: "));
  Serial.println(ModelOTA::statusName(st));  // "Ok", "ChunkCrc", "Truncated"...
}

void setup() {
  Serial.begin(115200);
  while (!Serial) {
    // boards with native USB: wait for the port
  }
  ota.restoreFactory();  // weights = factory copy, version kFactoryVersion
  updateFromCard();
  printModel();
}

void loop() {
  // run inference with `weights` here
}
