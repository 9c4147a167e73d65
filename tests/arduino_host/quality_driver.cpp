/*
 * Runs src/ModelOTAQuality.{h,cpp} on the host (tests/test_quality.py):
 *
 *   quality_driver FACTORY PAYLOAD
 *
 * A ModelOTA over FACTORY (version 1) and a ModelOTAQuality of 4 classes,
 * windows of 5 inferences. Records a window, prints its JSON, applies
 * PAYLOAD through ota.update(), records again and prints what follows.
 * Prints key=value lines.
 */
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "ModelOTA.h"
#include "slurp.h"

namespace {

const uint8_t kFingerprint[16] = {'m', 'o', 'd', 'e', 'l', 'o', 't', 'a',
                                  '-', 't', 'e', 's', 't', '-', 'f', 'p'};
unsigned long g_now = 0;

class MemStream : public Stream {
public:
    explicit MemStream(const std::vector<uint8_t>& d) : d_(d), pos_(0) {}
    int available() override { return static_cast<int>(d_.size() - pos_); }
    int read() override { return pos_ < d_.size() ? d_[pos_++] : -1; }
    int peek() override { return pos_ < d_.size() ? d_[pos_] : -1; }
    size_t write(uint8_t) override { return 0; }

private:
    const std::vector<uint8_t>& d_;
    size_t pos_;
};

class StdoutPrint : public Print {
public:
    size_t write(uint8_t c) override { return fputc(c, stdout) == EOF ? 0u : 1u; }
};

}  // namespace

unsigned long millis(void) { return ++g_now; }
void yield(void) {}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: quality_driver FACTORY PAYLOAD\n");
        return 2;
    }
    std::vector<uint8_t> factory = slurp(argv[1]);
    std::vector<uint8_t> payload = slurp(argv[2]);
    std::vector<uint8_t> weights(factory.size());
    static uint8_t chunk[512];
    ModelOTA ota(weights.data(), static_cast<uint32_t>(weights.size()), kFingerprint,
                 modelota_backup_ram(factory.data(), static_cast<uint32_t>(factory.size()), 1),
                 chunk, sizeof(chunk));
    ota.restoreFactory();
    ModelOTAQuality quality(ota, 4, 5);
    ModelOTAQuality bad(ota, 0, 5);
    printf("status=%d\nbad_status=%d\nbad_record=%d\n", quality.status(), bad.status(),
           bad.record(0, 0.5f));
    char buf[MODELOTA_QUALITY_JSON_MAX];
    printf("before=%d\n", static_cast<int>(quality.json(buf, sizeof(buf))));
    const float scores[4] = {0.1f, 0.2f, 0.6f, 0.1f};
    int done = 0;
    done += quality.record(0, 0.9f);
    done += quality.record(1, 0.8f, 1);
    done += quality.record(1, 0.7f, 0);
    done += quality.record(3, 1.0f);
    printf("refused=%d\n", quality.record(4, 0.5f));
    done += quality.recordScores(scores, 4, 2);
    printf("completed=%d\nready=%d\n", done, quality.ready() ? 1 : 0);
    StdoutPrint out;
    printf("json1=");
    fflush(stdout);
    quality.printTo(out);
    MemStream in(payload);
    int st = ota.update(in, 100);
    printf("update=%s\nversion=%u\n", ModelOTA::statusName(st), static_cast<unsigned>(ota.version()));
    printf("kept_version=%u\n", static_cast<unsigned>(quality.version()));
    quality.record(2, 0.25f);
    printf("after_one_ready=%d\nafter_one_version=%u\n", quality.ready() ? 1 : 0,
           static_cast<unsigned>(quality.version()));
    for (int i = 0; i < 4; ++i) {
        quality.record(2, 0.25f);
    }
    printf("json2=");
    fflush(stdout);
    quality.printTo(out);
    printf("short=%d\n", static_cast<int>(quality.json(buf, 10)));
    return 0;
}
