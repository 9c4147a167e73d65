/*
 * Runs src/ModelOTA.cpp's pull loop on the host (tests/test_arduino_glue.py).
 *
 *   glue_driver FACTORY PAYLOAD MODE TIMEOUT_MS AT [store|sketch|writable|overlapping]
 *
 * FACTORY: the weights at boot (also the restore source); PAYLOAD: what the
 * stream carries. MODE says how the stream misbehaves from byte AT on:
 *   full     delivers everything (AT ignored)
 *   stall    available() is 0 from byte AT on (a link that went silent)
 *   eof      same, for a finite stream (use TIMEOUT_MS 0)
 *   badread  available() says 1 but read() returns -1 from byte AT on
 *   trickle  one byte per available(), and 5 fake ms between bytes
 *   pause    like full, with 1000 fake ms of silence before byte AT
 * The clock is fake: it advances 1 ms per 64 reads and per 1000 us of
 * delayMicroseconds() (what the pull counts silence in); yield() is counted.
 * Without a last argument the ModelOTA class runs one update (factory
 * weights as the backup); with `sketch` it runs updates the way a sketch's
 * loop() does, while the stream has bytes, printing each status (line=...);
 * with `store`, modelota_pull() runs it with ModelOTAPull.store set, on a
 * Store (RAM-backed storage, 64-byte blocks) formatted with FACTORY and
 * attached with modelota_store_attach_ram. With `writable`, the class gets
 * kWritable (bytes 512-639 of a 1 KiB model may not change) through
 * setWritableRanges(modelota_writable_flash(...)) before its one update;
 * with `overlapping`, a table whose ranges overlap; with `overlapping-first`,
 * that table is set before restoreFactory. Prints key=value lines;
 * written= is what the glue wrote back to the stream, in hex.
 */
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "ModelOTA.h"
#include "slurp.h"

namespace {

unsigned long g_now = 0;
unsigned long g_yields = 0;
unsigned long g_us = 0; /* delayMicroseconds not yet worth a whole fake ms */

void fake_delay(unsigned int us) {
    g_us += us;
    g_now += g_us / 1000u;
    g_us %= 1000u;
}

const uint8_t kFingerprint[16] = {'m', 'o', 'd', 'e', 'l', 'o', 't', 'a',
                                  '-', 't', 'e', 's', 't', '-', 'f', 'p'};

class ScriptedStream : public Stream {
public:
    ScriptedStream(const std::vector<uint8_t>& data, const char* mode, size_t at)
        : data_(data), pos_(0), at_(at), reads_(0), next_byte_at_(0), last_byte_at_(g_now) {
        stall_ = strcmp(mode, "stall") == 0 || strcmp(mode, "eof") == 0;
        badread_ = strcmp(mode, "badread") == 0;
        trickle_ = strcmp(mode, "trickle") == 0;
        pause_ = strcmp(mode, "pause") == 0;
        resume_at_ = 0;
    }
    int available() override {
        if ((stall_ || badread_) && pos_ >= at_) {
            return badread_ ? 1 : 0;
        }
        if (pause_ && pos_ == at_) {
            if (resume_at_ == 0) {
                resume_at_ = g_now + 1000u; /* silent for 1 s from now */
            }
            if (g_now < resume_at_) {
                return 0;
            }
        }
        if (trickle_) {
            return pos_ < data_.size() && g_now >= next_byte_at_ ? 1 : 0;
        }
        return static_cast<int>(data_.size() - pos_);
    }
    int read() override {
        if (++reads_ % 64 == 0) {
            ++g_now;
        }
        if (available() <= 0 || (badread_ && pos_ >= at_)) {
            return -1;
        }
        next_byte_at_ = g_now + 5;
        last_byte_at_ = g_now;
        return data_[pos_++];
    }
    int peek() override { return available() > 0 ? data_[pos_] : -1; }
    size_t write(uint8_t b) override {
        written_.push_back(b);
        return 1;
    }
    const std::vector<uint8_t>& written() const { return written_; }
    size_t consumed() const { return pos_; }
    size_t left() const { return data_.size() - pos_; }
    unsigned long last_byte_at() const { return last_byte_at_; }

private:
    const std::vector<uint8_t>& data_;
    size_t pos_;
    size_t at_;
    unsigned long reads_;
    unsigned long next_byte_at_;
    unsigned long last_byte_at_;
    bool stall_;
    bool badread_;
    bool trickle_;
    bool pause_;
    unsigned long resume_at_;
    std::vector<uint8_t> written_;
};

struct Progress {
    unsigned long calls;
    uint32_t bytes_in;
    uint32_t applied;
    uint32_t total;
    bool monotonic;
};

void on_progress(void* ctx, uint32_t bytes_in, uint32_t applied, uint32_t total) {
    Progress* p = static_cast<Progress*>(ctx);
    if (bytes_in < p->bytes_in || applied < p->applied) {
        p->monotonic = false;
    }
    p->calls++;
    p->bytes_in = bytes_in;
    p->applied = applied;
    p->total = total;
}

/* Bytes 0-511 and 640-1023 may change; 512-639 (one 128-byte chunk) may
 * not. In flash where flash is not RAM, as `modelota fingerprint` declares it. */
const uint32_t kWritable[4] MODELOTA_FLASH = {0u, 512u, 640u, 384u};
const uint32_t kOverlapping[4] = {0u, 600u, 512u, 128u};

/* ---- a Store on RAM "EEPROM": 64-byte blocks, byte programming --------- */
const uint32_t kBlock = 64;
const uint32_t kBlocks = 64;
uint8_t g_storage[kBlock * kBlocks];

int ram_read(const modelota_storage*, uint32_t b, uint32_t off, uint8_t* buf, uint32_t n) {
    memcpy(buf, g_storage + b * kBlock + off, n);
    return 0;
}
int ram_prog(const modelota_storage*, uint32_t b, uint32_t off, const uint8_t* buf, uint32_t n) {
    memcpy(g_storage + b * kBlock + off, buf, n);
    return 0;
}
int ram_erase(const modelota_storage*, uint32_t b) {
    memset(g_storage + b * kBlock, 0xFF, kBlock);
    return 0;
}
const modelota_storage kStorage = {NULL, ram_read, ram_prog, ram_erase, NULL, 1, kBlock, kBlocks,
                                   0xFF};
uint8_t g_block_buf[kBlock];

/* region 0-15 (1 KiB), meta 16-17, backup 18, journal 19-26, log 27-63 */
modelota_store_config store_layout(uint32_t region_size) {
    modelota_store_config c;
    memset(&c, 0, sizeof(c));
    c.storage = &kStorage;
    c.region_block = 0;
    c.region_size = region_size;
    c.meta_block = 16;
    c.backup_block = 18;
    c.journal_block = 19;
    c.journal_blocks = 8;
    c.log_block = 27;
    c.log_blocks = kBlocks - 27;
    c.block_buf = g_block_buf;
    return c;
}

}  // namespace

unsigned long millis(void) { return g_now; }
void yield(void) { ++g_yields; }

int main(int argc, char** argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: glue_driver FACTORY PAYLOAD MODE TIMEOUT_MS AT [store|sketch|...]\n");
        return 2;
    }
    std::vector<uint8_t> factory = slurp(argv[1]);
    std::vector<uint8_t> payload = slurp(argv[2]);
    uint32_t timeout_ms = static_cast<uint32_t>(strtoul(argv[4], NULL, 10));
    size_t at = static_cast<size_t>(strtoul(argv[5], NULL, 10));

    bool with_store = argc == 7 && strcmp(argv[6], "store") == 0;
    bool as_sketch = argc == 7 && strcmp(argv[6], "sketch") == 0;
    bool writable = argc == 7 && strcmp(argv[6], "writable") == 0;
    bool overlapping = argc == 7 && strcmp(argv[6], "overlapping") == 0;
    bool overlapping_first = argc == 7 && strcmp(argv[6], "overlapping-first") == 0;
    arduino_host_delay_hook() = fake_delay;

    std::vector<uint8_t> weights(factory.size(), 0xA5);
    static uint8_t chunk_buffer[512];
    ModelOTA ota(weights.data(), static_cast<uint32_t>(weights.size()), kFingerprint,
                 modelota_backup_ram(factory.data(), static_cast<uint32_t>(factory.size()), 1),
                 chunk_buffer, sizeof(chunk_buffer));
    int st = MODELOTA_OK;
    if (overlapping_first) {
        st = ota.setWritableRanges(modelota_writable_ram(kOverlapping));
        printf("set_writable=%s\n", ModelOTA::statusName(st));
    }
    st = ota.restoreFactory();
    printf("restore_factory=%s\n", ModelOTA::statusName(st));
    printf("boot_crc=%08x\n", static_cast<unsigned>(modelota_crc32(0, weights.data(),
                                                                     weights.size())));
    if (writable || overlapping) {
        st = writable ? ota.setWritableRanges(modelota_writable_flash(kWritable))
                      : ota.setWritableRanges(modelota_writable_ram(kOverlapping));
        printf("set_writable=%s\n", ModelOTA::statusName(st));
    }

    modelota_store_config layout = store_layout(static_cast<uint32_t>(factory.size()));
    modelota_store store;
    modelota_config cfg;
    modelota_updater u;
    if (with_store) {
        memset(g_storage, 0xFF, sizeof(g_storage));
        st = modelota_store_init(&store, &layout);
        if (st == MODELOTA_OK) {
            st = modelota_store_format(&store, factory.data(), 1);
        }
        printf("store_format=%s\n", modelota_status_str(st));
        memset(&cfg, 0, sizeof(cfg));
        modelota_store_attach_ram(&cfg, &store, weights.data());
        cfg.fingerprint = kFingerprint;
        cfg.current_version = 1;
        cfg.buffer = chunk_buffer;
        cfg.buffer_len = sizeof(chunk_buffer);
        st = modelota_init(&u, &cfg);
        printf("init=%s\n", modelota_status_str(st));
    }

    ScriptedStream in(payload, argv[3], at);
    Progress progress = {0, 0, 0, 0, true};
    unsigned long start = g_now;
    modelota_updater* up = ota.updater();
    if (with_store) {
        ModelOTAPull opt;
        opt.timeout_ms = timeout_ms;
        opt.store = &store;
        opt.progress = on_progress;
        opt.progress_ctx = &progress;
        st = modelota_pull(&u, in, opt);
        up = &u;
    } else if (as_sketch) {
        /* loop() { if (Serial.available()) { st = ota.update(Serial, t); println(...); } } */
        unsigned long lines = 0;
        for (unsigned long spins = 0; in.left() > 0 && lines < 100000 && spins < 100000; ++spins) {
            if (in.available() == 0) {
                delayMicroseconds(1000); /* loop() runs the model meanwhile */
                continue;
            }
            st = ota.update(in, timeout_ms, on_progress, &progress);
            printf("line=%s\n", ModelOTA::statusName(st));
            ++lines;
        }
        printf("lines=%lu\n", lines);
    } else {
        st = ota.update(in, timeout_ms, on_progress, &progress);
        printf("error=%s\n", ota.error());
    }

    printf("status=%s\n", ModelOTA::statusName(st));
    printf("version=%u\n",
           static_cast<unsigned>(with_store ? modelota_current_version(up) : ota.version()));
    printf("intact=%d\n", modelota_weights_intact(up));
    printf("crc=%08x\n", static_cast<unsigned>(modelota_crc32(0, weights.data(), weights.size())));
    printf("consumed=%u\n", static_cast<unsigned>(in.consumed()));
    printf("left=%u\n", static_cast<unsigned>(in.left()));
    printf("bytes_in=%u\n", static_cast<unsigned>(modelota_bytes_in(up)));
    printf("elapsed_ms=%lu\n", g_now - start);
    printf("silence_ms=%lu\n", g_now - in.last_byte_at()); /* since the last byte read */
    printf("yields=%lu\n", g_yields);
    printf("progress_calls=%lu\n", progress.calls);
    printf("progress_last=%u,%u,%u\n", static_cast<unsigned>(progress.bytes_in),
           static_cast<unsigned>(progress.applied), static_cast<unsigned>(progress.total));
    printf("progress_monotonic=%d\n", progress.monotonic ? 1 : 0);
    printf("written=");
    for (size_t i = 0; i < in.written().size(); ++i) {
        printf("%02x", static_cast<unsigned>(in.written()[i]));
    }
    printf("\n");
    if (with_store) {
        printf("store_state=%d\n", modelota_store_state_of(&store)); /* 1: CLEAN */
        /* what a reboot finds: a fresh store over the same storage */
        modelota_store after;
        st = modelota_store_init(&after, &layout);
        if (st == MODELOTA_OK) {
            st = modelota_store_recover(&after);
        }
        std::vector<uint8_t> loaded(factory.size(), 0);
        if (st == MODELOTA_OK) {
            st = modelota_store_load(&after, loaded.data(), static_cast<uint32_t>(loaded.size()));
        }
        printf("reboot_load=%s\n", modelota_status_str(st));
        printf("reboot_version=%u\n", static_cast<unsigned>(modelota_store_version(&after)));
        printf("reboot_crc=%08x\n",
               static_cast<unsigned>(modelota_crc32(0, loaded.data(), loaded.size())));
    }
    return 0;
}
