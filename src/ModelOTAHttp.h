/*
 * ModelOTA fleet pull for Arduino: checks a fleet server (`modelota serve`)
 * or a static tree (`modelota export` behind nginx, S3, a CDN) for a newer
 * model and applies it in place, over any Arduino `Client`: WiFiClient,
 * EthernetClient, WiFiClientSecure (TLS), a GSM modem's client...
 *
 *   #include <ModelOTA.h>
 *   #include <ModelOTAHttp.h>
 *
 *   WiFiClient client;
 *   ModelOTAHttp fleet(client, "fleet.example.com", 8080);
 *   ...
 *   fleet.setDeviceId(WiFi.macAddress().c_str());   // copied
 *   fleet.setSecret("9f3c...64 hex digits");         // from `modelota fleet register`
 *   int st = fleet.pull(ota);                        // a ModelOTA, or any Updater
 *   Serial.println(ModelOTAHttp::statusName(st));    // "Ok", "NoUpdate", "HttpTimeout"...
 *
 * One pull: GET /v1/devices/<id>/manifest.json?fingerprint=..&version=..,
 * then (when it offers a newer version of this model) GET the payload,
 * feeding the Updater as bytes arrive; a dropped connection is resumed with
 * a Range request; finally a report is POSTed (failures ignored). The old
 * weights stay in place on any failure. With a secret every request is
 * signed (HMAC-SHA256; the secret never travels). Protocol: docs/FLEET.md.
 *
 *   if (quality.recordScores(output, 10) == 1) {     // a ModelOTAQuality window is full
 *       int st = fleet.postQuality(quality);         // POST /v1/devices/<id>/quality
 *   }
 *
 * RAM: the object (the pull state, its configuration, the copied device id
 * and secret; sizes in docs/FLEET.md), and MODELOTA_HTTP_READ_BUFFER (64)
 * bytes of stack while pulling, plus about 250 while signing (and
 * MODELOTA_QUALITY_JSON_MAX, 200, in postQuality). No heap, no String.
 * Flash: http.cpp and SHA-256, sizes in docs/FLEET.md.
 */
#ifndef MODELOTA_HTTP_ARDUINO_H
#define MODELOTA_HTTP_ARDUINO_H

#include <Arduino.h>

/* The Arduino `Client` interface. Cores built on ArduinoCore-API keep it in
 * api/Client.h (the top-level Client.h is on the Arduino IDE's include path
 * but not PlatformIO's). The builder compiles this library's every .cpp for
 * every sketch that uses ModelOTA, so a core without either header must not
 * break them: the class is then left out (the portable core stays). */
#if defined(__has_include)
#if __has_include(<Client.h>)
#include <Client.h>
#define MODELOTA_HAVE_CLIENT 1
#elif __has_include(<api/Client.h>)
#include <api/Client.h>
#define MODELOTA_HAVE_CLIENT 1
#endif
#else
#include <Client.h>
#define MODELOTA_HAVE_CLIENT 1
#endif
#ifndef MODELOTA_HAVE_CLIENT
#define MODELOTA_HAVE_CLIENT 0
#endif

#include <string.h>

#include "ModelOTA.h"
#include "../firmware_lib/modelota/http.h"

#if MODELOTA_HAVE_CLIENT
class ModelOTAHttp {
public:
    /* `host` must outlive the object (a string literal is fine); the
     * device id is copied. `basePath` ("" or e.g. "/fleet") prefixes every
     * path when the tree is not at the server's root. */
    ModelOTAHttp(Client& client, const char* host, uint16_t port, const char* deviceId = "",
                 const char* basePath = "");

    /* [A-Za-z0-9._:-]{1,64}, not starting with '.' (a MAC address is fine).
     * Returns MODELOTA_OK or MODELOTA_HTTP_INVALID_ARGUMENT. */
    int setDeviceId(const char* deviceId);
    /* The device's secret, the 64 hex digits `modelota fleet register`
     * printed (copied, 32 bytes). "" or nullptr: unsigned requests (a static
     * tree needs none). Returns MODELOTA_OK or MODELOTA_HTTP_INVALID_ARGUMENT. */
    int setSecret(const char* hex);
    /* Optional: seconds since 1970 (NTP, an RTC; 0 while unknown). Without
     * it the first request after boot learns the server's time (one extra
     * round trip). */
    void setClock(uint32_t (*unixTime)(void* ctx), void* ctx = nullptr) {
        cfg_.unix_time = unixTime;
        cfg_.unix_time_ctx = ctx;
    }
    /* Longest silence tolerated per response (default 10 s). */
    void setTimeout(uint32_t ms) { cfg_.timeout_ms = ms; }
    /* Connections per payload download, resumes included (default 5). */
    void setMaxAttempts(uint8_t n) { cfg_.max_attempts = n; }
    /* Progress while downloading: payload bytes so far of the total. */
    void onProgress(modelota_http_progress_fn fn, void* ctx = nullptr) {
        cfg_.progress = fn;
        cfg_.progress_ctx = ctx;
    }
    /* false: do not POST a report after a download (default true). */
    void setReport(bool on) { cfg_.no_report = on ? 0 : 1; }

    /* Check and, when there is something newer for this model, update.
     * MODELOTA_OK: new weights in place; MODELOTA_HTTP_NO_UPDATE (1):
     * nothing to do; < 0: see statusName(), the old weights are in place.
     * `store`: the Store the Updater's config is attached to, or nullptr. */
    int pull(modelota_updater* updater, modelota_store* store = nullptr);
    int pull(ModelOTA& ota) { return pull(ota.updater()); }

    /* Only the check: MODELOTA_OK when manifest() offers an update. */
    int check(const modelota_updater* updater);
    int check(ModelOTA& ota) { return check(ota.updater()); }

    /* Sends the model-quality summary of the last complete window (the
     * JSON quality.json() writes, built in a MODELOTA_QUALITY_JSON_MAX-byte
     * buffer on the stack) to POST /v1/devices/<id>/quality, signed like
     * pull()'s requests. One connection (two after a 401 that taught the
     * device the server's time), no retry: call it again later.
     * MODELOTA_OK: the server took it; MODELOTA_BAD_STATE: no window is
     * complete yet (nothing sent); MODELOTA_HTTP_UNAUTHORIZED;
     * MODELOTA_HTTP_STATUS for any other answer (httpCode(): 400, 404,
     * 429, 503...); a network status (HttpConnect, HttpClosed...). */
    int postQuality(const ModelOTAQuality& quality) { return postQuality(quality.core()); }
    /* The same for the portable accumulator (firmware_lib/modelota/quality.h). */
    int postQuality(const modelota_quality* quality);

    int lastStatus() const { return last_; }
    /* HTTP status of the last response (200, 204, 404...), 0 if none. */
    int httpCode() const { return modelota_http_code(&h_); }
    /* The last manifest read (version, size, line...). */
    const modelota_manifest& manifest() const { return *modelota_http_manifest(&h_); }
    /* Payload bytes fed by the last download, and its connections. */
    uint32_t bytesIn() const { return h_.fed; }
    uint8_t attempts() const { return h_.attempts; }
    static const char* statusName(int status) { return modelota_http_status_str(status); }

    /* The core state, for what this wrapper does not cover. */
    modelota_http* core() { return &h_; }

private:
    ModelOTAHttp(const ModelOTAHttp&); /* not copyable: h_ points at cfg_ */
    ModelOTAHttp& operator=(const ModelOTAHttp&);

    static int connectCb(void* ctx, const char* host, uint16_t port);
    static int writeCb(void* ctx, const uint8_t* data, uint32_t n);
    static int32_t readCb(void* ctx, uint8_t* dst, uint32_t cap, uint32_t wait_ms);
    static void closeCb(void* ctx);
    static uint32_t nowCb(void* ctx);

    Client& client_;
    modelota_http_config cfg_;
    modelota_http h_;
    int init_;
    int last_;
    char id_[MODELOTA_HTTP_ID_MAX + 1];
    uint8_t secret_[32];
};

/* Defined here, inline, rather than in ModelOTAHttp.cpp: Arduino builds
 * compile every .cpp of a library for every sketch that uses it, and the
 * AVR core's Client.h brings IPAddress.h, whose INADDR_NONE global (with a
 * constructor the linker cannot drop) would cost every ModelOTA sketch
 * 358 bytes of flash and 12 of RAM. Only sketches that include this header
 * pay for it (and they have a network library's Client anyway). */

inline ModelOTAHttp::ModelOTAHttp(Client& client, const char* host, uint16_t port,
                                  const char* deviceId, const char* basePath)
    : client_(client), init_(MODELOTA_HTTP_INVALID_ARGUMENT), last_(MODELOTA_OK) {
    memset(&cfg_, 0, sizeof(cfg_));
    memset(&h_, 0, sizeof(h_));
    id_[0] = '\0';
    cfg_.io.ctx = this;
    cfg_.io.connect = connectCb;
    cfg_.io.write = writeCb;
    cfg_.io.read = readCb;
    cfg_.io.close = closeCb;
    cfg_.io.now_ms = nowCb;
    cfg_.host = host;
    cfg_.port = port;
    cfg_.base_path = basePath;
    cfg_.device_id = id_;
    if (deviceId != nullptr && deviceId[0] != '\0') {
        setDeviceId(deviceId);
    }
}

inline int ModelOTAHttp::setDeviceId(const char* deviceId) {
    size_t n = deviceId != nullptr ? strlen(deviceId) : 0;
    if (n == 0 || n > MODELOTA_HTTP_ID_MAX) {
        id_[0] = '\0';
        init_ = MODELOTA_HTTP_INVALID_ARGUMENT;
        return init_;
    }
    memcpy(id_, deviceId, n + 1);
    init_ = modelota_http_init(&h_, &cfg_);
    return init_;
}

inline int ModelOTAHttp::setSecret(const char* hex) {
    size_t n = hex != nullptr ? strlen(hex) : 0;
    cfg_.secret = nullptr;
    cfg_.secret_len = 0;
    if (n != 0) {
        if (n != 2 * sizeof(secret_)) {
            init_ = MODELOTA_HTTP_INVALID_ARGUMENT;
            return init_;
        }
        for (size_t i = 0; i < n; ++i) {
            char c = hex[i];
            int v = (c >= '0' && c <= '9') ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (v < 0) {
                init_ = MODELOTA_HTTP_INVALID_ARGUMENT;
                return init_;
            }
            secret_[i / 2] = static_cast<uint8_t>((i % 2 == 0) ? (v << 4) : (secret_[i / 2] | v));
        }
        cfg_.secret = secret_;
        cfg_.secret_len = sizeof(secret_);
    }
    init_ = id_[0] != '\0' ? modelota_http_init(&h_, &cfg_) : MODELOTA_HTTP_INVALID_ARGUMENT;
    return id_[0] != '\0' ? init_ : MODELOTA_OK;
}

inline int ModelOTAHttp::pull(modelota_updater* updater, modelota_store* store) {
    last_ = init_ < 0 ? init_ : modelota_http_pull(&h_, updater, store);
    return last_;
}

inline int ModelOTAHttp::check(const modelota_updater* updater) {
    last_ = init_ < 0 ? init_ : modelota_http_check(&h_, updater);
    return last_;
}

inline int ModelOTAHttp::postQuality(const modelota_quality* quality) {
    char json[MODELOTA_QUALITY_JSON_MAX];
    int32_t n = modelota_quality_json(quality, json, sizeof(json)); /* refuses a nullptr */
    if (init_ < 0) {
        last_ = init_;
    } else if (n < 0) {
        last_ = static_cast<int>(n); /* BAD_STATE: no complete window yet */
    } else {
        last_ = modelota_http_post_quality(&h_, json, static_cast<uint32_t>(n));
    }
    return last_;
}

inline int ModelOTAHttp::connectCb(void* ctx, const char* host, uint16_t port) {
    ModelOTAHttp* self = static_cast<ModelOTAHttp*>(ctx);
    self->client_.stop(); /* a client left open by anything else */
    return self->client_.connect(host, port) > 0 ? 0 : -1;
}

inline int ModelOTAHttp::writeCb(void* ctx, const uint8_t* data, uint32_t n) {
    Client& c = static_cast<ModelOTAHttp*>(ctx)->client_;
    while (n > 0) {
        size_t w = c.write(data, static_cast<size_t>(n));
        if (w == 0 || w > n) {
            return -1; /* the connection is gone (a full buffer blocks inside write) */
        }
        data += w;
        n -= static_cast<uint32_t>(w);
    }
    return 0;
}

inline int32_t ModelOTAHttp::readCb(void* ctx, uint8_t* dst, uint32_t cap, uint32_t wait_ms) {
    Client& c = static_cast<ModelOTAHttp*>(ctx)->client_;
    const uint32_t start = static_cast<uint32_t>(millis());
    for (;;) {
        int avail = c.available();
        if (avail > 0) {
            size_t want = static_cast<uint32_t>(avail) < cap ? static_cast<size_t>(avail)
                                                             : static_cast<size_t>(cap);
            int got = c.read(dst, want);
            if (got > 0) {
                return static_cast<int32_t>(got);
            }
        } else if (!c.connected()) {
            return -1; /* closed, and every byte it sent has been read */
        }
        if (static_cast<uint32_t>(millis()) - start >= wait_ms) {
            return 0;
        }
        delay(1); /* lets the network stack run (and yields on ESP cores) */
    }
}

inline void ModelOTAHttp::closeCb(void* ctx) { static_cast<ModelOTAHttp*>(ctx)->client_.stop(); }

inline uint32_t ModelOTAHttp::nowCb(void*) { return static_cast<uint32_t>(millis()); }
#endif /* MODELOTA_HAVE_CLIENT */

#endif /* MODELOTA_HTTP_ARDUINO_H */
