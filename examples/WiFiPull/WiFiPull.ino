/*
 * ModelOTA example: an ESP32 that pulls model updates from a fleet server.
 *
 * Every POLL_MINUTES the board asks the server whether a newer version of
 * its model is assigned to it (docs/FLEET.md). When there is one, it is
 * downloaded and applied in place as the bytes arrive: every chunk's CRC32
 * is checked before it is written, the final weights against the payload's
 * digest, and a dropped connection is resumed where it stopped (an HTTP
 * Range request). On any failure the weights go back to what they were.
 * There is never a second copy of the model in RAM.
 *
 * After each inference the model's output goes to a ModelOTAQuality; every
 * QUALITY_WINDOW inferences the board POSTs the summary (per-class counts,
 * mean top-1 confidence) for the version it runs, signed like its other
 * requests: the server's rollouts compare it with the previous version's
 * and pause a worse model by themselves (docs/FLEET.md "Model quality").
 *
 * On the host (the device id is the board's MAC address, printed at boot):
 *   modelota fingerprint --model sketch-demo --size 1024     # the array below
 *   modelota serve --data fleet-data --host 0.0.0.0 --port 8080 --token T
 *   export MODELOTA_SERVER=http://127.0.0.1:8080 MODELOTA_TOKEN=T
 *   modelota pack new_weights.bin -o v2.mota --version 2 --model sketch-demo
 *   modelota fleet upload demo v2.mota
 *   modelota fleet register 24:6F:28:AA:01:02        # prints its secret: FLEET_SECRET
 *   modelota fleet assign --device 24:6F:28:AA:01:02 demo
 *   modelota fleet devices                           # its last check, version, report
 *   # http://127.0.0.1:8080/dashboard plots the quality summaries per version
 *
 * Or serve a static tree (no server process): `modelota export www/` and
 * point nginx, S3 or a CDN at www/; the board reads the same paths (a
 * static tree is public: FLEET_SECRET may stay empty).
 *
 * The transport is any Arduino Client: WiFiClientSecure for TLS (port 443),
 * EthernetClient on a wired board. Only the first lines below change.
 */
#include <WiFi.h>

#include <ModelOTA.h>
#include <ModelOTAHttp.h>

#ifndef WIFI_SSID
#define WIFI_SSID "your-network"
#endif
#ifndef WIFI_PASSWORD
#define WIFI_PASSWORD "your-password"
#endif
#ifndef FLEET_HOST
#define FLEET_HOST "192.168.1.10"  // the machine running `modelota serve`
#endif
#ifndef FLEET_PORT
#define FLEET_PORT 8080
#endif
#ifndef FLEET_SECRET
#define FLEET_SECRET ""  // the 64 hex digits `modelota fleet register` printed
#endif
#ifndef POLL_MINUTES
#define POLL_MINUTES 10
#endif
#ifndef QUALITY_WINDOW
#define QUALITY_WINDOW 100  // inferences per quality summary
#endif
#ifndef INFER_MS
#define INFER_MS 1000       // one inference a second (a sensor reading)
#endif
#define CLASSES 4           // the model's output classes

// The factory weights, as the firmware was built (here: a placeholder).
// On an ESP32 a const array stays in flash; MODELOTA_FLASH (PROGMEM on AVR)
// keeps it there on every board.
const uint8_t kFactoryWeights[1024] MODELOTA_FLASH = {
    0x3c, 0x12, 0x7f, 0x80, 0x01, 0xfe, 0x44, 0x21, 0x09, 0x90, 0x55, 0xaa, 0x10, 0x20, 0x30, 0x40,
};
const uint32_t kFactoryVersion = 1;

// `modelota fingerprint --model sketch-demo --size 1024` printed this line.
const uint8_t MODEL_FINGERPRINT[16] = {0x41, 0x2e, 0x2c, 0x31, 0x06, 0x81, 0x8f, 0x1a,
                                       0xeb, 0x47, 0x6d, 0xb0, 0x9c, 0x26, 0x99, 0xf5};

const size_t kChunkBuffer = 1024;  // >= 96 and >= the payload's --chunk-size

uint8_t weights[sizeof(kFactoryWeights)];  // what the model reads
uint8_t chunkBuffer[kChunkBuffer];

ModelOTA ota(weights, MODEL_FINGERPRINT, modelota_backup_flash(kFactoryWeights, kFactoryVersion),
             chunkBuffer);

WiFiClient client;
ModelOTAHttp fleet(client, FLEET_HOST, FLEET_PORT);
ModelOTAQuality quality(ota, CLASSES, QUALITY_WINDOW);  // restarts its counts after an update

uint32_t lastPoll = 0;
bool polledOnce = false;
const uint32_t kInferMs = INFER_MS;
uint32_t lastInference = 0;

static void printProgress(void* ctx, uint32_t bytes, uint32_t total) {
  uint32_t* lastLine = static_cast<uint32_t*>(ctx);
  if (bytes / 4096 != *lastLine / 4096 || bytes == total) {
    *lastLine = bytes;
    Serial.print(F("  downloaded "));
    Serial.print(bytes);
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

static bool connectWiFi() {
  if (WiFi.status() == WL_CONNECTED) {
    return true;
  }
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  uint32_t start = millis();
  while (WiFi.status() != WL_CONNECTED && millis() - start < 20000) {
    delay(250);
  }
  return WiFi.status() == WL_CONNECTED;
}

// Stands in for your model (a TFLite Micro interpreter, an Edge Impulse
// classifier...): fills the output probabilities of the CLASSES classes.
// Here a toy that reads the weights, so the sketch runs as it is.
static void infer(float* probs) {
  static uint32_t step = 0;
  uint8_t x = weights[step++ % sizeof(weights)];
  float sum = 0.0f;
  for (uint8_t c = 0; c < CLASSES; ++c) {
    probs[c] = 1.0f + static_cast<float>((x >> (2 * c)) & 3u);
    sum += probs[c];
  }
  for (uint8_t c = 0; c < CLASSES; ++c) {
    probs[c] /= sum;
  }
}

static void sendQuality() {
  if (!connectWiFi()) {
    return;  // the next window's summary goes out instead
  }
  int st = fleet.postQuality(quality);  // signed POST /v1/devices/<id>/quality
  Serial.print(F("quality summary: "));
  Serial.print(ModelOTAHttp::statusName(st));  // "Ok", "HttpUnauthorized", "HttpStatus"...
  Serial.print(F(" (HTTP "));
  Serial.print(fleet.httpCode());
  Serial.print(F(") "));
  quality.printTo(Serial);  // the JSON it sent
}

static void poll() {
  if (!connectWiFi()) {
    Serial.println(F("no WiFi, next try at the next poll"));
    return;
  }
  uint32_t lastLine = 0;
  fleet.onProgress(printProgress, &lastLine);
  int st = fleet.pull(ota);
  Serial.print(F("fleet pull: "));
  Serial.print(ModelOTAHttp::statusName(st));  // "Ok", "NoUpdate", "ChunkCrc", "HttpTimeout"...
  Serial.print(F(" (HTTP "));
  Serial.print(fleet.httpCode());
  Serial.println(')');
  if (!ota.weightsIntact()) {
    // only when the backup itself could not be read: do not run the model
    Serial.println(F("weights damaged: reloading the factory weights"));
    ota.restoreFactory();
  }
  if (st == MODELOTA_OK) {
    printModel();
  }
}

void setup() {
  Serial.begin(115200);
  ota.restoreFactory();  // weights = factory copy, version kFactoryVersion
  printModel();
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  String mac = WiFi.macAddress();  // "24:6F:28:AA:01:02": the device id
  fleet.setDeviceId(mac.c_str());  // copied
  if (fleet.setSecret(FLEET_SECRET) != MODELOTA_OK) {  // copied; signs every request
    Serial.println(F("FLEET_SECRET is not 64 hex digits"));
  }
  Serial.print(F("device id "));
  Serial.println(mac);
}

void loop() {
  if (millis() - lastInference >= kInferMs) {
    lastInference = millis();
    float probs[CLASSES];
    infer(probs);  // your model, reading `weights`
    if (quality.recordScores(probs, CLASSES) == 1) {  // a window is complete
      sendQuality();
    }
  }
  if (!polledOnce || millis() - lastPoll >= POLL_MINUTES * 60000UL) {
    polledOnce = true;
    lastPoll = millis();
    poll();
  }
}
