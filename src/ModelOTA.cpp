/*
 * ModelOTA for Arduino: the portable core and the Arduino glue.
 *
 * The Arduino builder compiles only src/, so this unit #includes the real
 * firmware_lib sources (no copies). store.cpp is compiled by its own unit,
 * modelota_store.cpp: its file-local helpers share names with updater.cpp's.
 */
#include "../firmware_lib/modelota/crc32.cpp"
#include "../firmware_lib/modelota/status.cpp"
#include "../firmware_lib/modelota/decode.cpp"
#include "../firmware_lib/modelota/updater.cpp"
/* SHA-256 digests and the built-in Ed25519 verifier, as config.h switches
 * them (off on AVR by default; docs/SECURITY.md) */
#if MODELOTA_SHA256
#include "../firmware_lib/modelota/sha256.cpp"
#endif
#if MODELOTA_SIGNATURES
#include "../firmware_lib/modelota/sha512.cpp"
#include "../firmware_lib/modelota/ed25519.cpp"
#endif

#include "ModelOTA.h"

#include <string.h>

#if defined(__AVR__)
#include <avr/pgmspace.h>

int modelota_progmem_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len) {
    const uint8_t* base = static_cast<const uint8_t*>(ctx);
    memcpy_P(dst, base + offset, static_cast<size_t>(len));
    return 0;
}
#endif

modelota_source modelota_factory_source(const uint8_t* factory, uint32_t version) {
    modelota_source src;
    memset(&src, 0, sizeof(src));
#if defined(__AVR__)
    src.read = modelota_progmem_read; /* PROGMEM is not in the data address space */
    src.ctx = const_cast<uint8_t*>(factory);
#else
    src.image = factory; /* const arrays are memory-mapped */
#endif
    src.version = version;
    return src;
}

namespace {

int pull_fail(modelota_updater* u, modelota_store* store, int status) {
    if (store != nullptr) {
        modelota_store_cancel(store);
    }
    return modelota_abort(u, status);
}

/* The stream is done (timeout_ms == 0 and nothing left, or a payload
 * complete): finish() commits a verified payload, reports a short one as
 * MODELOTA_TRUNCATED. */
int pull_finish(modelota_updater* u, modelota_store* store) {
    int st = modelota_finish(u); /* commits through the Store when attached */
    if (st < 0 && store != nullptr) {
        modelota_store_cancel(store);
    }
    return st;
}

}  // namespace

int modelota_pull(modelota_updater* u, Stream& in, const ModelOTAPull& opt) {
    modelota_store* store = opt.store;
    if (store != nullptr) {
        int st = modelota_store_begin(store);
        if (st < 0) {
            return st;
        }
    }
    int st = modelota_begin(u);
    if (st < 0) {
        if (store != nullptr) {
            modelota_store_cancel(store);
        }
        return st;
    }
    uint8_t piece[MODELOTA_PULL_BUFFER];
    uint32_t last_byte = millis();
    for (;;) {
        uint32_t want = modelota_bytes_wanted(u); /* 0 once every chunk checked out */
        if (want == 0) {
            return pull_finish(u, store);
        }
        if (want > sizeof(piece)) {
            want = sizeof(piece);
        }
        uint32_t n = 0;
        while (n < want && in.available() > 0) {
            int c = in.read();
            if (c < 0) {
                break;
            }
            piece[n++] = static_cast<uint8_t>(c);
        }
        if (n == 0) {
            if (opt.timeout_ms == 0) {
                return pull_finish(u, store); /* a finite stream ended early */
            }
            if (static_cast<uint32_t>(millis() - last_byte) >= opt.timeout_ms) {
                return pull_fail(u, store, MODELOTA_TIMEOUT);
            }
            yield(); /* lets cores with background work (WiFi) run */
            continue;
        }
        last_byte = millis();
        if (store != nullptr) {
            st = modelota_store_log(store, piece, n);
            if (st < 0) {
                return pull_fail(u, store, st);
            }
        }
        st = modelota_feed(u, piece, n);
        if (st < 0) { /* the core has already restored the weights */
            if (store != nullptr) {
                modelota_store_cancel(store);
            }
            return st;
        }
        if (opt.progress != nullptr) {
            opt.progress(opt.progress_ctx, modelota_bytes_in(u), modelota_data_applied(u),
                         modelota_data_total(u));
        }
    }
}

int modelota_pull(modelota_updater* u, Stream& in, uint32_t timeout_ms,
                  modelota_progress_fn progress, void* progress_ctx) {
    ModelOTAPull opt;
    opt.timeout_ms = timeout_ms;
    opt.progress = progress;
    opt.progress_ctx = progress_ctx;
    return modelota_pull(u, in, opt);
}

ModelOTA::ModelOTA(uint8_t* weights, uint32_t size, const uint8_t* fingerprint, uint32_t version,
                   const uint8_t* factory, uint8_t* buffer, uint32_t buffer_len)
    : last_(MODELOTA_OK) {
    memset(&cfg_, 0, sizeof(cfg_));
    cfg_.target.ram = weights;
    cfg_.target.size = size;
    if (factory != nullptr) {
        cfg_.backup = modelota_factory_source(factory, version);
    }
    cfg_.fingerprint = fingerprint;
    cfg_.current_version = version;
    cfg_.buffer = buffer;
    cfg_.buffer_len = buffer_len;
    last_ = modelota_init(&u_, &cfg_);
}

int ModelOTA::restoreFactory() {
    if (last_ == MODELOTA_INVALID_ARGUMENT) {
        return last_;
    }
    const modelota_source& b = cfg_.backup;
    int rc = b.image != nullptr
                 ? modelota_memory_read(const_cast<uint8_t*>(b.image), 0, cfg_.target.ram,
                                        cfg_.target.size)
                 : b.read(b.ctx, 0, cfg_.target.ram, cfg_.target.size);
    if (rc != 0) {
        last_ = MODELOTA_STORAGE_IO;
        return last_;
    }
    cfg_.current_version = b.version;
    const uint32_t raised = modelota_min_version(&u_);
    if (raised > cfg_.min_version) {
        cfg_.min_version = raised; /* never below a model it committed */
    }
    last_ = modelota_init(&u_, &cfg_); /* the Updater starts over at that version */
    return last_;
}

int ModelOTA::reconfigure() {
    if (last_ != MODELOTA_INVALID_ARGUMENT) {
        /* keep what the Updater reached: its version and its raised floor */
        cfg_.current_version = modelota_current_version(&u_);
        const uint32_t raised = modelota_min_version(&u_);
        if (raised > cfg_.min_version) {
            cfg_.min_version = raised;
        }
    }
    last_ = modelota_init(&u_, &cfg_);
    return last_;
}

int ModelOTA::requireSignature(const modelota_verifier& verifier) {
    cfg_.verifier = verifier;
    return reconfigure();
}

int ModelOTA::setMinVersion(uint32_t min_version) {
    cfg_.min_version = min_version;
    return reconfigure();
}

int ModelOTA::update(Stream& in, uint32_t timeout_ms, modelota_progress_fn progress,
                     void* progress_ctx) {
    if (last_ == MODELOTA_INVALID_ARGUMENT) {
        return last_;
    }
    last_ = modelota_pull(&u_, in, timeout_ms, progress, progress_ctx);
    return last_;
}
