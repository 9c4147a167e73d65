/* A file on an SD card as ModelOTA storage (Arduino SD library), in
 * 512-byte blocks. Opened O_READ | O_WRITE | O_CREAT, not FILE_WRITE:
 * FILE_WRITE includes O_APPEND, which sends every write to the end of the
 * file whatever seek() said. The file is sized once (seek() cannot go past
 * its end); erase writes the erased value; sync flushes. */
#include <SD.h>
#include <ModelOTA.h>

static File g_file;

static int sd_read(const modelota_storage*, uint32_t b, uint32_t off, uint8_t* buf, uint32_t n) {
    return g_file.seek(b * 512 + off) && g_file.read(buf, (uint16_t)n) == (int)n ? 0 : -1;
}
static int sd_prog(const modelota_storage*, uint32_t b, uint32_t off, const uint8_t* buf,
                   uint32_t n) {
    return g_file.seek(b * 512 + off) && g_file.write(buf, n) == n ? 0 : -1;
}
static int sd_erase(const modelota_storage* s, uint32_t b) {
    uint8_t ff[32];
    memset(ff, 0xFF, sizeof ff);
    for (uint32_t i = 0; i < 512; i += 32) {
        if (sd_prog(s, b, i, ff, 32) != 0) return -1;
    }
    return 0;
}
static int sd_sync(const modelota_storage*) {
    g_file.flush();
    return 0;
}

static modelota_storage g_sd = {nullptr, sd_read, sd_prog, sd_erase, sd_sync, 1, 512, 0, 0xFF};

/* Opens (creating it if needed) `path` as `blocks` blocks of storage; call
 * after SD.begin(). nullptr when the card refuses. */
static const modelota_storage* sd_storage(const char* path, uint32_t blocks) {
    g_file = SD.open(path, O_READ | O_WRITE | O_CREAT);
    if (!g_file) return nullptr;
    uint8_t ff[32];
    memset(ff, 0xFF, sizeof ff);
    while (g_file.size() < blocks * 512) {  // a new file: grow it to size, erased
        uint32_t n = blocks * 512 - g_file.size();
        if (!g_file.seek(g_file.size()) || g_file.write(ff, n < 32 ? n : 32) == 0) return nullptr;
    }
    g_file.flush();
    g_sd.block_count = blocks;
    return &g_sd;
}
