/*
 * ModelOTA fleet pull for Arduino: firmware_lib/modelota/http.cpp (compiled
 * here, no copy) and a transport over any Arduino Client.
 */
#include "../firmware_lib/modelota/http.cpp"

#include "ModelOTAHttp.h"

#include <string.h>

#if MODELOTA_HAVE_CLIENT

ModelOTAHttp::ModelOTAHttp(Client& client, const char* host, uint16_t port, const char* deviceId,
                           const char* basePath)
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

int ModelOTAHttp::setDeviceId(const char* deviceId) {
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

int ModelOTAHttp::pull(modelota_updater* updater, modelota_store* store) {
    last_ = init_ < 0 ? init_ : modelota_http_pull(&h_, updater, store);
    return last_;
}

int ModelOTAHttp::check(const modelota_updater* updater) {
    last_ = init_ < 0 ? init_ : modelota_http_check(&h_, updater);
    return last_;
}

int ModelOTAHttp::connectCb(void* ctx, const char* host, uint16_t port) {
    ModelOTAHttp* self = static_cast<ModelOTAHttp*>(ctx);
    self->client_.stop(); /* a client left open by anything else */
    return self->client_.connect(host, port) > 0 ? 0 : -1;
}

int ModelOTAHttp::writeCb(void* ctx, const uint8_t* data, uint32_t n) {
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

int32_t ModelOTAHttp::readCb(void* ctx, uint8_t* dst, uint32_t cap, uint32_t wait_ms) {
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

void ModelOTAHttp::closeCb(void* ctx) { static_cast<ModelOTAHttp*>(ctx)->client_.stop(); }

uint32_t ModelOTAHttp::nowCb(void*) { return static_cast<uint32_t>(millis()); }

#endif /* MODELOTA_HAVE_CLIENT */
