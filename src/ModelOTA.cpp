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
 * them (off on AVR by default; docs/SECURITY.md). The fleet pull's signed
 * requests (ModelOTAHttp) need SHA-256 too; a sketch that does not pull
 * links none of it. */
#if MODELOTA_SHA256 || MODELOTA_HTTP_AUTH
#include "../firmware_lib/modelota/sha256.cpp"
#endif
#if MODELOTA_SIGNATURES
#include "../firmware_lib/modelota/sha512.cpp"
#include "../firmware_lib/modelota/ed25519.cpp"
#endif

#include "ModelOTA.h"

#include <string.h>

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

void put_u32(uint8_t* p, uint32_t v) {
    for (uint8_t i = 0; i < 4u; ++i) {
        p[i] = static_cast<uint8_t>(v >> (8u * i));
    }
}

/* `modelota push` sent its first frame to a sketch that reads raw payloads:
 * answer in the link's own terms (docs/PROTOCOL.md), RESULT{status, version,
 * weights_crc 0}, so the host stops asking at once and says what to do. */
void answer_link(Stream& in, int status, uint32_t version) {
    uint8_t f[MODELOTA_LINK_OVERHEAD + 9u];
    f[0] = MODELOTA_LINK_SYNC0;
    f[1] = MODELOTA_LINK_SYNC1;
    f[2] = MODELOTA_LINK_RESULT;
    f[3] = 9u; /* body length, little-endian */
    f[4] = 0u;
    f[5] = static_cast<uint8_t>(static_cast<int8_t>(status));
    put_u32(f + 6, version);
    put_u32(f + 10, 0u);
    put_u32(f + 14, modelota_crc32(0, f + 2, 12u));
    in.write(f, sizeof(f));
}

/* Silence is counted in 100 us busy-waits, not with millis(): the count
 * also runs where millis() stands still (qemu-system-avr 7.2 has no
 * Timer0), and it never disables interrupts (millis() does, and under
 * qemu-system-avr an RX interrupt arriving then is lost for good). On a
 * board the waits are a little longer than counted (the ISRs run too). */
class Silence {
public:
    Silence() : ms_(0), steps_(0) {}
    void heard() { ms_ = 0; steps_ = 0; }
    /* Waits 100 us; lets cores with background work (WiFi) run. */
    void wait() {
        delayMicroseconds(100);
        yield();
        if (++steps_ == 10u) {
            steps_ = 0;
            ++ms_;
        }
    }
    uint32_t ms() const { return ms_; }

private:
    uint32_t ms_;
    uint8_t steps_;
};

/* Reads and drops what is left of a refused payload until the stream has
 * been silent for quiet_ms, or MODELOTA_PULL_DRAIN_MAX_BYTES were dropped
 * (a stream that never falls silent). */
void drain(Stream& in, uint32_t quiet_ms) {
    Silence silence;
    for (uint32_t dropped = 0; silence.ms() < quiet_ms && dropped < MODELOTA_PULL_DRAIN_MAX_BYTES;) {
        if (in.available() > 0 && in.read() >= 0) {
            silence.heard();
            ++dropped;
        } else {
            silence.wait();
        }
    }
}

/* The payload was refused (`status`): answer a link frame, drop the rest. */
int refused(modelota_updater* u, Stream& in, uint32_t timeout_ms, uint32_t quiet_ms,
            const uint8_t* head, uint32_t head_n, int status) {
    if (status == MODELOTA_BAD_MAGIC && head_n == 2u && head[0] == MODELOTA_LINK_SYNC0 &&
        head[1] == MODELOTA_LINK_SYNC1) {
        answer_link(in, status, modelota_current_version(u));
    }
    if (timeout_ms != 0 && quiet_ms != 0 && status != MODELOTA_TIMEOUT) {
        drain(in, quiet_ms);
    }
    return status;
}

/* modelota_pull() with ModelOTAPull's fields as arguments: the class's
 * update() passes constants, so an optimiser drops what it does not use
 * (the Store) and builds no ModelOTAPull in RAM. */
int pull(modelota_updater* u, Stream& in, uint32_t timeout_ms, uint32_t quiet_ms,
         modelota_store* store, modelota_progress_fn progress, void* progress_ctx) {
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
    uint8_t head[2]; /* the stream's first bytes: the link's sync? */
    uint32_t head_n = 0;
    Silence silence;
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
            if (timeout_ms == 0) {
                return pull_finish(u, store); /* a finite stream ended early */
            }
            if (silence.ms() >= timeout_ms) {
                return pull_fail(u, store, MODELOTA_TIMEOUT);
            }
            silence.wait();
            continue;
        }
        silence.heard();
        for (uint32_t i = 0; i < n && head_n < sizeof(head); ++i) {
            head[head_n++] = piece[i];
        }
        if (store != nullptr) {
            st = modelota_store_log(store, piece, n);
            if (st < 0) {
                return refused(u, in, timeout_ms, quiet_ms, head, head_n, pull_fail(u, store, st));
            }
        }
        st = modelota_feed(u, piece, n);
        if (st < 0) { /* the core has already restored the weights */
            if (store != nullptr) {
                modelota_store_cancel(store);
            }
            return refused(u, in, timeout_ms, quiet_ms, head, head_n, st);
        }
        if (progress != nullptr) {
            progress(progress_ctx, modelota_bytes_in(u), modelota_data_applied(u),
                     modelota_data_total(u));
        }
    }
}

}  // namespace

int modelota_pull(modelota_updater* u, Stream& in, const ModelOTAPull& opt) {
    return pull(u, in, opt.timeout_ms, opt.quiet_ms, opt.store, opt.progress, opt.progress_ctx);
}

int modelota_pull(modelota_updater* u, Stream& in, uint32_t timeout_ms,
                  modelota_progress_fn progress, void* progress_ctx) {
    return pull(u, in, timeout_ms, MODELOTA_PULL_QUIET_MS, nullptr, progress, progress_ctx);
}

ModelOTA::ModelOTA(uint8_t* weights, uint32_t size, const uint8_t* fingerprint,
                   const modelota_source& factory, uint8_t* buffer, uint32_t buffer_len)
    : last_(MODELOTA_OK) {
    modelota_config_init(&cfg_, modelota_target_ram(weights, size), factory, fingerprint, buffer,
                         buffer_len);
    last_ = modelota_init(&u_, &cfg_);
}

int ModelOTA::restoreFactory() {
    /* Not gated on last_: a refused setting must not leave the model without
     * its factory weights. The read checks the backup's kind and size. */
    if (cfg_.target.ram == nullptr || cfg_.target.size == 0u) {
        last_ = MODELOTA_INVALID_ARGUMENT;
        return last_;
    }
    int rc = modelota_source_read(&cfg_.backup, 0, cfg_.target.ram, cfg_.target.size);
    if (rc != MODELOTA_OK) {
        last_ = rc;
        return last_;
    }
    cfg_.current_version = cfg_.backup.version;
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

int ModelOTA::setWritableRanges(const modelota_writable& ranges) {
    cfg_.writable = ranges;
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
