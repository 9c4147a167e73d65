/*
 * Host program for tests/test_http_pull.py: the real firmware_lib HTTP pull
 * and Updater (and optionally the Store on a RAM-backed storage) over a
 * POSIX socket.
 *
 *   pull_main pull --host H --port P --id ID --weights FILE --fingerprint HEX
 *             --version N [--base PATH] [--out FILE] [--buffer N] [--attempts N]
 *             [--timeout MS] [--no-report] [--repeat K] [--store]
 *             [--secret HEX] [--clock UNIX_SECONDS]
 *   pull_main quality --host H --port P --id ID [--secret HEX] [--clock UNIX_SECONDS]
 *             [--timeout MS] (--infer CLS:CONF:LABEL,... --classes C --version V | --json TEXT)
 *   pull_main fuzz ITERATIONS SEED      (parser + manifest reader on garbage)
 *   pull_main sizes                     (sizeof of the public structs)
 *
 * `pull` prints one `result ...` line per run and writes the weights (as the
 * device holds them after the run) to --out. `quality` records the
 * inferences in the real accumulator (one window of all of them; LABEL -1:
 * unlabelled), POSTs its summary (or --json's bytes as they are) with
 * modelota_http_post_quality and prints one `result ...` line and the JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "modelota/http.h"
#include "modelota/quality.h"
#include "modelota/store.h"
#include "modelota/updater.h"
#include "posix_transport.h"
#include "probe.h"

namespace {

struct Progress {
    uint32_t calls;
    uint32_t bytes;
    uint32_t total;
    uint32_t backwards; /* bytes went down: only after a restart (200 to a Range) */
};

void on_progress(void* ctx, uint32_t bytes, uint32_t total) {
    Progress* p = static_cast<Progress*>(ctx);
    if (bytes < p->bytes) {
        ++p->backwards;
    }
    ++p->calls;
    p->bytes = bytes;
    p->total = total;
}

bool read_file(const char* path, std::vector<uint8_t>* out) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    uint8_t buf[4096];
    size_t n = 0;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        out->insert(out->end(), buf, buf + n);
    }
    fclose(f);
    return true;
}

bool parse_hex(const char* s, uint8_t* out, size_t n) {
    if (strlen(s) != 2 * n) {
        return false;
    }
    for (size_t i = 0; i < n; ++i) {
        unsigned v = 0;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            return false;
        }
        out[i] = static_cast<uint8_t>(v);
    }
    return true;
}

/* ---- RAM-backed NOR storage for --store ---- */

const uint32_t kBlock = 256;

struct RamFlash {
    std::vector<uint8_t> bytes;
};

int ram_read(const modelota_storage* s, uint32_t block, uint32_t off, uint8_t* buf,
             uint32_t size) {
    RamFlash* f = static_cast<RamFlash*>(s->context);
    memcpy(buf, &f->bytes[block * kBlock + off], size);
    return 0;
}

int ram_prog(const modelota_storage* s, uint32_t block, uint32_t off, const uint8_t* buf,
             uint32_t size) {
    RamFlash* f = static_cast<RamFlash*>(s->context);
    for (uint32_t i = 0; i < size; ++i) {
        f->bytes[block * kBlock + off + i] &= buf[i]; /* NOR: bits only go to 0 */
    }
    return 0;
}

int ram_erase(const modelota_storage* s, uint32_t block) {
    RamFlash* f = static_cast<RamFlash*>(s->context);
    memset(&f->bytes[block * kBlock], 0xFF, kBlock);
    return 0;
}

uint32_t fixed_clock(void* ctx) { return *static_cast<const uint32_t*>(ctx); }

const char* arg(int argc, char** argv, const char* name, const char* dflt) {
    for (int i = 2; i + 1 < argc; ++i) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return dflt;
}

bool flag(int argc, char** argv, const char* name) {
    for (int i = 2; i < argc; ++i) {
        if (strcmp(argv[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* The HTTP configuration both modes share: transport, host, id, and
 * --secret: the device key `modelota fleet register` printed (signed
 * requests); --clock: a fixed "RTC" reading (0: none, the server's time is
 * learnt). */
bool http_config(int argc, char** argv, modelota_http_config* hc, posix_conn* conn,
                 uint8_t* secret, size_t secret_cap) {
    memset(hc, 0, sizeof(*hc));
    posix_transport(&hc->io, conn);
    hc->host = arg(argc, argv, "--host", "127.0.0.1");
    hc->port = static_cast<uint16_t>(atoi(arg(argc, argv, "--port", "80")));
    hc->base_path = arg(argc, argv, "--base", "");
    hc->device_id = arg(argc, argv, "--id", "dev-1");
    hc->timeout_ms = static_cast<uint32_t>(atoi(arg(argc, argv, "--timeout", "3000")));
    hc->max_attempts = static_cast<uint8_t>(atoi(arg(argc, argv, "--attempts", "5")));
    hc->no_report = flag(argc, argv, "--no-report") ? 1 : 0;
    const char* secret_hex = arg(argc, argv, "--secret", NULL);
    if (secret_hex != NULL) {
        size_t n = strlen(secret_hex) / 2;
        if (n == 0 || n > secret_cap || !parse_hex(secret_hex, secret, n)) {
            fprintf(stderr, "--secret takes 2..128 hex digits\n");
            return false;
        }
        hc->secret = secret;
        hc->secret_len = static_cast<uint8_t>(n);
    }
    static uint32_t clock_value = 0;
    clock_value = static_cast<uint32_t>(strtoul(arg(argc, argv, "--clock", "0"), 0, 10));
    if (flag(argc, argv, "--clock")) {
        hc->unix_time = fixed_clock;
        hc->unix_time_ctx = &clock_value;
    }
    return true;
}

int run_pull(int argc, char** argv) {
    const char* weights_path = arg(argc, argv, "--weights", NULL);
    const char* fp_hex = arg(argc, argv, "--fingerprint", NULL);
    const char* out_path = arg(argc, argv, "--out", NULL);
    std::vector<uint8_t> weights;
    uint8_t fingerprint[MODELOTA_FINGERPRINT_LEN];
    if (weights_path == NULL || !read_file(weights_path, &weights) || weights.empty() ||
        fp_hex == NULL || !parse_hex(fp_hex, fingerprint, sizeof(fingerprint))) {
        fprintf(stderr, "pull: --weights FILE and --fingerprint HEX (32 digits) are required\n");
        return 2;
    }
    const std::vector<uint8_t> factory = weights; /* the restore source */
    std::vector<uint8_t> chunk(static_cast<size_t>(atoi(arg(argc, argv, "--buffer", "1024"))));

    posix_conn conn;
    modelota_http_config hc;
    static uint8_t secret[64];
    if (!http_config(argc, argv, &hc, &conn, secret, sizeof(secret))) {
        return 2;
    }
    Progress prog;
    memset(&prog, 0, sizeof(prog));
    hc.progress = on_progress;
    hc.progress_ctx = &prog;

    modelota_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.target.ram = weights.data();
    cfg.target.size = static_cast<uint32_t>(weights.size());
    cfg.backup.image = factory.data();
    cfg.fingerprint = fingerprint;
    cfg.current_version = static_cast<uint32_t>(strtoul(arg(argc, argv, "--version", "1"), 0, 10));
    cfg.backup.version = cfg.current_version;
    cfg.buffer = chunk.data();
    cfg.buffer_len = static_cast<uint32_t>(chunk.size());

    /* --store: the weights live in RAM, the last good ones in a Store on flash */
    const bool use_store = flag(argc, argv, "--store");
    const uint32_t region_blocks = static_cast<uint32_t>((weights.size() + kBlock - 1) / kBlock);
    RamFlash flash;
    modelota_storage storage;
    memset(&storage, 0, sizeof(storage));
    modelota_store_config sc;
    memset(&sc, 0, sizeof(sc));
    modelota_store store;
    std::vector<uint8_t> block_buf(kBlock);
    if (use_store) {
        sc.region_block = 0;
        sc.region_size = static_cast<uint32_t>(weights.size());
        sc.meta_block = region_blocks;
        sc.backup_block = region_blocks + 2;
        sc.journal_block = region_blocks + 3;
        sc.journal_blocks = region_blocks + 2;
        sc.log_block = sc.journal_block + sc.journal_blocks;
        sc.log_blocks = 2 * region_blocks + 8;
        const uint32_t blocks = sc.log_block + sc.log_blocks;
        flash.bytes.assign(static_cast<size_t>(blocks) * kBlock, 0xFF);
        storage.context = &flash;
        storage.read = ram_read;
        storage.prog = ram_prog;
        storage.erase = ram_erase;
        storage.prog_size = 4;
        storage.block_size = kBlock;
        storage.block_count = blocks;
        storage.erased_value = 0xFF;
        sc.storage = &storage;
        sc.block_buf = block_buf.data();
        int st = modelota_store_init(&store, &sc);
        if (st == MODELOTA_OK) {
            st = modelota_store_format(&store, factory.data(), cfg.current_version);
        }
        if (st != MODELOTA_OK) {
            fprintf(stderr, "store setup failed: %s\n", modelota_status_str(st));
            return 2;
        }
        modelota_store_attach_ram(&cfg, &store, weights.data());
    }

    modelota_updater u;
    int st = modelota_init(&u, &cfg);
    if (st != MODELOTA_OK) {
        fprintf(stderr, "modelota_init: %s\n", modelota_status_str(st));
        return 2;
    }
    if (flag(argc, argv, "--busy")) { /* another transfer is half-way through a header */
        static const uint8_t kMagic[4] = {'M', 'O', 'T', 'A'};
        modelota_begin(&u);
        modelota_feed(&u, kMagic, sizeof(kMagic));
    }
    modelota_http h;
    st = modelota_http_init(&h, &hc);
    int repeat = atoi(arg(argc, argv, "--repeat", "1"));
    if (st != MODELOTA_OK) {
        printf("result status=%d name=%s\n", st, modelota_http_status_str(st));
        repeat = 0;
    }
    for (int r = 0; r < repeat; ++r) {
        const uint32_t connects_before = conn.connects;
        st = modelota_http_pull(&h, &u, use_store ? &store : NULL);
        if (use_store && st == MODELOTA_OK) {
            modelota_store_attach_ram(&cfg, &store, weights.data()); /* backup follows the store */
        }
        printf("result status=%d name=%s code=%d version=%lu fed=%lu attempts=%u resumes=%u "
               "restarts=%u connects=%lu intact=%d progress=%lu/%lu backwards=%lu "
               "updater=%s state=%d clock=%lu signed=%lu",
               st, modelota_http_status_str(st), modelota_http_code(&h),
               static_cast<unsigned long>(modelota_current_version(&u)),
               static_cast<unsigned long>(h.fed), h.attempts, h.resumes, h.restarts,
               static_cast<unsigned long>(conn.connects - connects_before),
               modelota_weights_intact(&u), static_cast<unsigned long>(prog.bytes),
               static_cast<unsigned long>(prog.total), static_cast<unsigned long>(prog.backwards),
               modelota_status_str(modelota_last_status(&u)), modelota_state_of(&u),
               static_cast<unsigned long>(h.clock_unix), static_cast<unsigned long>(h.counter));
        if (use_store) {
            std::vector<uint8_t> loaded(weights.size());
            int ls = modelota_store_load(&store, loaded.data(), static_cast<uint32_t>(loaded.size()));
            printf(" store_version=%lu store_load=%s store_matches=%d",
                   static_cast<unsigned long>(modelota_store_version(&store)),
                   modelota_status_str(ls), loaded == weights ? 1 : 0);
        }
        printf("\n");
        fflush(stdout);
    }
    if (out_path != NULL) {
        FILE* f = fopen(out_path, "wb");
        if (f == NULL || fwrite(weights.data(), 1, weights.size(), f) != weights.size()) {
            fprintf(stderr, "cannot write %s\n", out_path);
            return 2;
        }
        fclose(f);
    }
    return 0;
}

/* ---- quality: one summary from the accumulator, POSTed ---- */

int run_quality(int argc, char** argv) {
    posix_conn conn;
    modelota_http_config hc;
    static uint8_t secret[64];
    if (!http_config(argc, argv, &hc, &conn, secret, sizeof(secret))) {
        return 2;
    }
    static char json[MODELOTA_HTTP_BODY_MAX + 2];
    int32_t len = 0;
    const char* raw = arg(argc, argv, "--json", NULL);
    if (raw != NULL) { /* bytes as they are (a body the server must refuse) */
        len = static_cast<int32_t>(strlen(raw) < sizeof(json) ? strlen(raw) : sizeof(json) - 1);
        memcpy(json, raw, static_cast<size_t>(len));
    } else {
        /* --infer CLS:CONF:LABEL,...: one window of exactly these inferences */
        const char* spec = arg(argc, argv, "--infer", "");
        std::vector<char> buf(spec, spec + strlen(spec) + 1);
        uint16_t window = 0;
        for (const char* c = spec; *c != '\0'; ++c) {
            window = static_cast<uint16_t>(window + (*c == ',' ? 1 : 0));
        }
        window = static_cast<uint16_t>(window + (spec[0] != '\0' ? 1 : 0));
        modelota_quality q;
        int st = modelota_quality_init(
            &q, static_cast<uint16_t>(atoi(arg(argc, argv, "--classes", "4"))), window,
            static_cast<uint32_t>(strtoul(arg(argc, argv, "--version", "1"), 0, 10)));
        if (st != MODELOTA_OK) {
            fprintf(stderr, "quality_init: %s\n", modelota_status_str(st));
            return 2;
        }
        for (char* item = strtok(buf.data(), ","); item != NULL; item = strtok(NULL, ",")) {
            unsigned cls = 0;
            float conf = 0.0f;
            int label = -1;
            if (sscanf(item, "%u:%f:%d", &cls, &conf, &label) != 3 ||
                modelota_quality_record(&q, static_cast<uint16_t>(cls), conf, label) < 0) {
                fprintf(stderr, "bad inference %s\n", item);
                return 2;
            }
        }
        len = modelota_quality_json(&q, json, sizeof(json));
        if (len < 0) {
            fprintf(stderr, "quality_json: %s\n", modelota_status_str(static_cast<int>(len)));
            return 2;
        }
    }
    modelota_http h;
    int st = modelota_http_init(&h, &hc);
    if (st == MODELOTA_OK) {
        st = modelota_http_post_quality(&h, json, static_cast<uint32_t>(len));
    }
    printf("result status=%d name=%s code=%d len=%ld connects=%lu clock=%lu signed=%lu\n", st,
           modelota_http_status_str(st), modelota_http_code(&h), static_cast<long>(len),
           static_cast<unsigned long>(conn.connects), static_cast<unsigned long>(h.clock_unix),
           static_cast<unsigned long>(h.counter));
    printf("json %s\n", json);
    return 0;
}

/* ---- fuzz: garbage and mutations through the parser and manifest reader ---- */

uint32_t rng_state = 1;
uint32_t rnd() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

int run_fuzz(int argc, char** argv) {
    const long iterations = argc > 2 ? atol(argv[2]) : 1000;
    rng_state = argc > 3 ? static_cast<uint32_t>(strtoul(argv[3], 0, 10)) | 1u : 1u;
    static const char kValid[] =
        "HTTP/1.1 206 Partial Content\r\nServer: x\r\nContent-Length: 5\r\n"
        "Content-Range: bytes 3-7/20\r\nETag: \"abc\"\r\nConnection: close\r\n\r\nhello";
    static const char kChunked[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n5\r\npedia\r\n"
        "0\r\nTrailer: t\r\n\r\n";
    static const char kManifest[] =
        "{\"version\": 7, \"base_version\": 0, \"size\": 11264, \"fingerprint\": "
        "\"000102030405060708090a0b0c0d0e0f\", \"sha256\": "
        "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\", "
        "\"url\": \"/v1/payloads/x.mota\", \"line\": \"digits\"}";
    std::vector<uint8_t> data;
    std::vector<uint32_t> cuts;
    std::vector<char> text(1 << 16);
    long garbage_negative = 0;
    long garbage = 0;
    for (long it = 0; it < iterations; ++it) {
        const uint32_t kind = rnd() % 4;
        data.clear();
        if (kind == 0) { /* pure garbage */
            const uint32_t n = rnd() % 700;
            for (uint32_t i = 0; i < n; ++i) {
                data.push_back(static_cast<uint8_t>(rnd()));
            }
        } else {
            const char* base = kind == 1 ? kValid : kind == 2 ? kChunked : kManifest;
            data.assign(base, base + strlen(base));
            const uint32_t edits = 1 + rnd() % 6;
            for (uint32_t e = 0; e < edits && !data.empty(); ++e) {
                const uint32_t at = rnd() % static_cast<uint32_t>(data.size());
                switch (rnd() % 3) {
                case 0: data[at] = static_cast<uint8_t>(rnd()); break;
                case 1: data.erase(data.begin() + at); break;
                default: data.insert(data.begin() + at, static_cast<uint8_t>(rnd())); break;
                }
            }
        }
        cuts.clear();
        const uint32_t ncuts = data.empty() ? 0 : rnd() % 8;
        for (uint32_t i = 0; i < ncuts; ++i) {
            cuts.push_back(rnd() % static_cast<uint32_t>(data.size() + 1));
        }
        std::sort(cuts.begin(), cuts.end());
        int r = http_probe(data.data(), data.size(), cuts.data(), cuts.size(), 1, text.data(),
                           text.size());
        if (r <= -1000) {
            fprintf(stderr, "contract violation: %s\n", text.data());
            return 1;
        }
        if (kind == 0 && !(data.size() >= 7 && memcmp(data.data(), "HTTP/1.", 7) == 0)) {
            ++garbage;
            if (r < 0) {
                ++garbage_negative;
            } else {
                fprintf(stderr, "garbage parsed as a response: %s\n", text.data());
                return 1;
            }
        }
        manifest_probe(data.data(), data.size(), cuts.data(), cuts.size(), text.data(),
                       text.size());
    }
    printf("fuzz ok iterations=%ld garbage=%ld garbage_negative=%ld\n", iterations, garbage,
           garbage_negative);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && strcmp(argv[1], "pull") == 0) {
        return run_pull(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "quality") == 0) {
        return run_quality(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "fuzz") == 0) {
        return run_fuzz(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "sizes") == 0) {
        printf("modelota_http=%lu parser=%lu manifest=%lu config=%lu updater=%lu\n",
               static_cast<unsigned long>(http_probe_sizeof(0)),
               static_cast<unsigned long>(http_probe_sizeof(1)),
               static_cast<unsigned long>(http_probe_sizeof(2)),
               static_cast<unsigned long>(http_probe_sizeof(3)),
               static_cast<unsigned long>(sizeof(modelota_updater)));
        return 0;
    }
    fprintf(stderr, "usage: pull_main pull|quality|fuzz|sizes ...\n");
    return 2;
}
