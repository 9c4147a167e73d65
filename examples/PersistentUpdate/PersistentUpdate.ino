/*
 * ModelOTA: weights that survive reboot and power loss, kept in EEPROM.
 *
 * The model runs from RAM. A ModelOTA Store in the AVR's EEPROM keeps the
 * last committed weights and their version: at boot the sketch recovers the
 * store (finishing or undoing an update a power cut interrupted), then loads
 * the committed weights, or the factory weights when the store is empty or
 * damaged. Updates arrive on Serial; a payload is committed to EEPROM only
 * after every CRC and the final digest checked out, and a failed update is
 * restored from EEPROM, never from a second RAM copy.
 *
 *   modelota pack new.bin -o v2.mota --version 2 --model eeprom-demo --chunk-size 128
 *
 * EEPROM has no erase: the storage HAL below emulates it (docs/PORTING.md).
 */
#include <EEPROM.h>
#include <ModelOTA.h>

const uint8_t kFactoryWeights[256] PROGMEM = {
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
};
// `modelota fingerprint --model eeprom-demo --size 256`
const uint8_t MODEL_FINGERPRINT[16] = {0xc4, 0xb8, 0x5b, 0xcb, 0x6c, 0x74, 0xa8, 0xa3,
                                       0x86, 0xd0, 0x75, 0xbd, 0xe7, 0x10, 0x89, 0xce};
const uint32_t kFactoryVersion = 1;

// ---- storage HAL over EEPROM: 64-byte blocks, byte programming ----------
const uint32_t kBlock = 64;

static int eeRead(const modelota_storage*, uint32_t b, uint32_t off, uint8_t* buf, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) buf[i] = EEPROM.read((int)(b * kBlock + off + i));
  return 0;
}
static int eeProg(const modelota_storage*, uint32_t b, uint32_t off, const uint8_t* buf,
                  uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) EEPROM.update((int)(b * kBlock + off + i), buf[i]);
  return 0;
}
static int eeErase(const modelota_storage*, uint32_t b) {
  for (uint32_t i = 0; i < kBlock; ++i) EEPROM.update((int)(b * kBlock + i), 0xFF);
  return 0;
}
static const modelota_storage kEeprom = {nullptr, eeRead, eeProg, eeErase, nullptr,
                                         1, kBlock, (E2END + 1) / kBlock, 0xFF};

// ---- where things live in EEPROM (blocks of 64 bytes) --------------------
uint8_t blockBuffer[kBlock];
const modelota_store_config kLayout = {
    &kEeprom,
    0, sizeof(kFactoryWeights),  // region: blocks 0-3, the committed weights
    4,                           // meta: blocks 4-5
    6,                           // backup: block 6
    7, 3,                        // journal: blocks 7-9
    10, 8,                       // log: blocks 10-17, payloads up to 512 bytes
    blockBuffer,
};

uint8_t weights[sizeof(kFactoryWeights)];
uint8_t chunkBuffer[128];
modelota_store store;
modelota_config cfg;
modelota_updater updater;

static void configure(uint32_t version) {
  memset(&cfg, 0, sizeof(cfg));
  modelota_store_attach_ram(&cfg, &store, weights);
  cfg.fingerprint = MODEL_FINGERPRINT;
  cfg.current_version = version;
  cfg.buffer = chunkBuffer;
  cfg.buffer_len = sizeof(chunkBuffer);
  modelota_init(&updater, &cfg);
}

static void report(const __FlashStringHelper* what, int st) {
  Serial.print(what);
  Serial.print(modelota_status_str(st));
  Serial.print(F(", version "));
  Serial.print(modelota_current_version(&updater));
  Serial.print(F(", weights crc32 0x"));
  Serial.println(modelota_crc32(0, weights, sizeof(weights)), HEX);
}

void setup() {
  Serial.begin(115200);
  int st = modelota_store_init(&store, &kLayout);
  if (st == MODELOTA_OK) st = modelota_store_recover(&store);
  uint32_t version = kFactoryVersion;
  if (st == MODELOTA_OK && modelota_store_state_of(&store) == MODELOTA_STORE_CLEAN &&
      modelota_store_load(&store, weights, sizeof(weights)) == MODELOTA_OK) {
    version = modelota_store_version(&store);
    Serial.println(F("booted the committed weights from EEPROM"));
  } else {
    memcpy_P(weights, kFactoryWeights, sizeof(weights));
    st = modelota_store_format(&store, weights, kFactoryVersion);
    Serial.print(F("booted the factory weights; store formatted: "));
    Serial.println(modelota_status_str(st));
  }
  configure(version);
  report(F("ready: "), MODELOTA_OK);
}

void loop() {
  if (Serial.available() == 0) return;
  ModelOTAPull opt;
  opt.timeout_ms = 3000;
  opt.store = &store;
  int st = modelota_pull(&updater, Serial, opt);
  configure(modelota_current_version(&updater));  // backup now follows the store
  report(F("update: "), st);
}
