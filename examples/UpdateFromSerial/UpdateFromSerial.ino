/*
 * ModelOTA example: update a model's weights from the serial port.
 *
 * The model runs from `weights`, an array in RAM, loaded at boot from the
 * factory copy compiled into flash. Send a ModelOTA payload over Serial and
 * the sketch applies it in place: every chunk's CRC32 is checked before its
 * bytes are written, the final weights are checked against the payload's
 * digest, and on any failure (corruption, wrong model, older version, link
 * dropped for 3 s) the touched bytes are put back from the factory copy.
 * There is never a second copy of the model in RAM.
 *
 * On the host:
 *   modelota fingerprint --model sketch-demo --size 1024    # the array below
 *   modelota pack new_weights.bin -o v2.mota --version 2 \
 *       --model sketch-demo --chunk-size 256                # <= kChunkBuffer
 *   # keep the port open so the board does not reset when it opens:
 *   stty -F /dev/ttyACM0 115200 raw -hupcl && cat v2.mota > /dev/ttyACM0
 *
 * This sketch reads raw payloads (leave 200 ms between two). For
 * `modelota push` (framed, resumable: docs/PROTOCOL.md) use SerialUpdate.
 *
 * To use it with your model, replace:
 *   - kFactoryWeights with your model's weights (the array your converter
 *     wrote, e.g. the .cc file of a TFLite Micro model, or just its weights);
 *   - MODEL_FINGERPRINT with what `modelota fingerprint` prints for it;
 *   - kFactoryVersion with the version you give it;
 * and point your interpreter at `weights` instead of the const array.
 */
#include <ModelOTA.h>

// The factory weights, as the firmware was built (here: a placeholder),
// in flash: MODELOTA_FLASH is PROGMEM on AVR, nothing elsewhere.
const uint8_t kFactoryWeights[1024] MODELOTA_FLASH = {
    0x3c, 0x12, 0x7f, 0x80, 0x01, 0xfe, 0x44, 0x21, 0x09, 0x90, 0x55, 0xaa, 0x10, 0x20, 0x30, 0x40,
};
const uint32_t kFactoryVersion = 1;

// `modelota fingerprint --model sketch-demo --size 1024` printed this line.
// It ties payloads to this model: a payload for another model is refused.
const uint8_t MODEL_FINGERPRINT[16] = {0x41, 0x2e, 0x2c, 0x31, 0x06, 0x81, 0x8f, 0x1a,
                                       0xeb, 0x47, 0x6d, 0xb0, 0x9c, 0x26, 0x99, 0xf5};

const uint32_t kTimeoutMs = 3000;  // give up when the link is silent this long
const size_t kChunkBuffer = 256;   // >= 96 and >= the payload's --chunk-size

uint8_t weights[sizeof(kFactoryWeights)];  // what the model reads
uint8_t chunkBuffer[kChunkBuffer];

ModelOTA ota(weights, MODEL_FINGERPRINT, modelota_backup_flash(kFactoryWeights, kFactoryVersion),
             chunkBuffer);

// Called after every piece read; prints a line per 256 weight bytes applied.
static void printProgress(void* ctx, uint32_t bytesIn, uint32_t applied, uint32_t total) {
  uint32_t* lastLine = static_cast<uint32_t*>(ctx);
  (void)bytesIn;
  if (total > 0 && applied / 256 != *lastLine / 256) {
    *lastLine = applied;
    Serial.print(F("  applied "));
    Serial.print(applied);
    Serial.print('/');
    Serial.println(total);
  }
}

static void printModel() {
  Serial.print(F("model version "));
  Serial.print(ota.version());
  Serial.print(F(", weights crc32 0x"));
  Serial.println(modelota_crc32(0, weights, sizeof(weights)), HEX);
}

void setup() {
  Serial.begin(115200);
  while (!Serial) {
    // boards with native USB: wait for the port
  }
  ota.restoreFactory();  // weights = factory copy, version kFactoryVersion
  printModel();
  Serial.println(F("send a .mota payload"));
}

void loop() {
  if (Serial.available() == 0) {
    // run inference with `weights` here
    return;
  }
  uint32_t lastLine = 0;
  int st = ota.update(Serial, kTimeoutMs, printProgress, &lastLine);
  Serial.print(F("update: "));
  Serial.println(ModelOTA::statusName(st));  // "Ok", "ChunkCrc", "Timeout"...
  if (!ota.weightsIntact()) {
    // only when the backup itself could not be read: do not run the model
    Serial.println(F("weights damaged: reloading the factory weights"));
    ota.restoreFactory();
  }
  printModel();  // a refused payload was read to its end and dropped: one line each
}
