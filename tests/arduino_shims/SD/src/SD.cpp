/*
 * The SD stand-in's card (see SD.h). On AVR there is none: the answers
 * come from a volatile flag (always 0) rather than constants, so that
 * link-time optimisation cannot prove the sketch's update path dead and
 * drop it: the compile test then compiles and links everything the sketch
 * would run with a card.
 */
#include "SD.h"

#include <string.h>

extern "C" int modelota_standin_power_take(void) __attribute__((weak));

namespace {

#if defined(__AVR__)
const uint8_t kFiles = 1;
const uint32_t kFileBytes = 1;
volatile uint8_t g_card = 0; /* never set: "no card" */
#else
const uint8_t kFiles = 4;
const uint32_t kFileBytes = 64u * 1024u;
volatile uint8_t g_card = 1;
#endif
const uint32_t kBlock = 512;
const uint8_t kHandles = 4;

/* What is on the card. */
struct CardFile {
    bool used;
    char name[13];
    uint32_t size; /* in its directory entry */
    uint8_t data[kFileBytes];
};
CardFile g_files[kFiles];

/* What SdFat holds in RAM. */
struct Handle {
    bool open;
    uint8_t file;
    uint8_t flags;
    uint32_t pos;
    uint32_t size; /* fileSize_: ahead of the directory entry until a sync */
};
Handle g_handles[kHandles];

struct Cache {
    bool valid;
    bool dirty;
    uint8_t file;
    uint32_t block;
    uint8_t data[kBlock];
};
Cache g_cache;

bool power() { return modelota_standin_power_take == nullptr || modelota_standin_power_take(); }

bool write_back() {
    if (!g_cache.valid || !g_cache.dirty) {
        return true;
    }
    if (!power()) {
        return false;
    }
    memcpy(g_files[g_cache.file].data + g_cache.block * kBlock, g_cache.data, kBlock);
    g_cache.dirty = false;
    return true;
}

/* The cache holding block `block` of file `file`. */
bool cache(uint8_t file, uint32_t block) {
    if (g_cache.valid && g_cache.file == file && g_cache.block == block) {
        return true;
    }
    if (!write_back()) {
        return false;
    }
    memcpy(g_cache.data, g_files[file].data + block * kBlock, kBlock);
    g_cache.valid = true;
    g_cache.file = file;
    g_cache.block = block;
    return true;
}

bool sync(Handle& h) {
    if (!write_back()) {
        return false;
    }
    if (g_files[h.file].size != h.size) {
        if (!power()) {
            return false;
        }
        g_files[h.file].size = h.size; /* the directory entry */
    }
    return true;
}

Handle* handle(int8_t i) { return i >= 0 && g_handles[i].open ? &g_handles[i] : nullptr; }

const char* base_name(const char* path) {
    const char* slash = strrchr(path, '/');
    return slash != nullptr ? slash + 1 : path;
}

int find(const char* path) {
    const char* name = base_name(path);
    for (uint8_t i = 0; i < kFiles; ++i) {
        if (g_files[i].used && strcmp(g_files[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

}  // namespace

namespace SDLib {

File::File(void) : handle_(-1) {}

size_t File::write(uint8_t b) { return write(&b, 1); }

size_t File::write(const uint8_t* buf, size_t size) {
    Handle* h = handle(handle_);
    if (!g_card || h == nullptr || (h->flags & O_WRITE) == 0) {
        setWriteError();
        return 0;
    }
    if ((h->flags & O_APPEND) != 0) {
        h->pos = h->size; /* SdFile::write: O_APPEND seeks to the end first */
    }
    if (h->pos + size > kFileBytes) {
        setWriteError();
        return 0; /* the card is full */
    }
    for (size_t i = 0; i < size; ++i, ++h->pos) {
        if (!cache(h->file, h->pos / kBlock)) {
            setWriteError();
            return 0;
        }
        g_cache.data[h->pos % kBlock] = buf[i];
        g_cache.dirty = true;
        if (h->pos + 1 > h->size) {
            h->size = h->pos + 1;
        }
    }
    if ((h->flags & O_SYNC) != 0 && !sync(*h)) {
        setWriteError();
        return 0;
    }
    return size;
}

int File::availableForWrite() { return handle(handle_) != nullptr ? 512 : 0; }

int File::read() {
    uint8_t b;
    return read(&b, 1) == 1 ? b : -1;
}

int File::peek() {
    Handle* h = handle(handle_);
    if (h == nullptr) {
        return -1;
    }
    uint32_t pos = h->pos;
    int c = read();
    h->pos = pos;
    return c;
}

int File::available() {
    Handle* h = handle(handle_);
    uint32_t n = h != nullptr ? h->size - h->pos : 0;
    return n > 0x7FFF ? 0x7FFF : static_cast<int>(n);
}

void File::flush() {
    Handle* h = handle(handle_);
    if (h != nullptr) {
        sync(*h);
    }
}

int File::read(void* buf, uint16_t nbyte) {
    Handle* h = handle(handle_);
    if (!g_card || h == nullptr || (h->flags & O_READ) == 0) {
        return -1;
    }
    uint16_t n = 0;
    uint8_t* out = static_cast<uint8_t*>(buf);
    for (; n < nbyte && h->pos < h->size; ++n, ++h->pos) {
        if (!cache(h->file, h->pos / kBlock)) {
            return -1;
        }
        out[n] = g_cache.data[h->pos % kBlock];
    }
    return n;
}

bool File::seek(uint32_t pos) {
    Handle* h = handle(handle_);
    if (h == nullptr || pos > h->size) {
        return false; /* SdFile::seekSet: not past the end */
    }
    h->pos = pos;
    return true;
}

uint32_t File::position() {
    Handle* h = handle(handle_);
    return h != nullptr ? h->pos : 0;
}

uint32_t File::size() {
    Handle* h = handle(handle_);
    return h != nullptr ? h->size : 0;
}

void File::close() {
    Handle* h = handle(handle_);
    if (h != nullptr) {
        sync(*h);
        h->open = false;
    }
    handle_ = -1;
}

File::operator bool() { return handle(handle_) != nullptr; }

char* File::name() {
    Handle* h = handle(handle_);
    static char none[1] = {0};
    return h != nullptr ? g_files[h->file].name : none;
}

bool File::isDirectory(void) { return false; }
File File::openNextFile(uint8_t) { return File(); }
void File::rewindDirectory(void) {}

bool SDClass::begin(uint8_t) { return g_card != 0; }
bool SDClass::begin(uint32_t, uint8_t) { return g_card != 0; }
void SDClass::end() {}

File SDClass::open(const char* path, uint8_t mode) {
    File f;
    if (!g_card || strlen(base_name(path)) > 12) {
        return f;
    }
    int file = find(path);
    if (file < 0) {
        if ((mode & O_CREAT) == 0 || (mode & O_WRITE) == 0) {
            return f;
        }
        for (uint8_t i = 0; i < kFiles && file < 0; ++i) {
            if (!g_files[i].used) {
                file = i;
            }
        }
        if (file < 0 || !power()) {
            return f;
        }
        CardFile& c = g_files[file];
        c.used = true;
        strcpy(c.name, base_name(path));
        c.size = 0;
    } else if ((mode & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
        return f;
    }
    for (int8_t i = 0; i < static_cast<int8_t>(kHandles); ++i) {
        if (!g_handles[i].open) {
            Handle& h = g_handles[i];
            h.open = true;
            h.file = static_cast<uint8_t>(file);
            h.flags = mode;
            h.size = g_files[file].size;
            h.pos = 0;
            if ((mode & O_TRUNC) != 0 && (mode & O_WRITE) != 0) {
                h.size = 0;
            }
            if ((mode & (O_APPEND | O_WRITE)) == (O_APPEND | O_WRITE)) {
                h.pos = h.size; /* SD.open: FILE_WRITE starts at the end */
            }
            f.handle_ = i;
            return f;
        }
    }
    return f;
}

bool SDClass::exists(const char* path) { return g_card && find(path) >= 0; }
bool SDClass::mkdir(const char*) { return g_card != 0; }

bool SDClass::remove(const char* path) {
    int file = find(path);
    if (!g_card || file < 0 || !power()) {
        return false;
    }
    g_files[file].used = false;
    return true;
}

bool SDClass::rmdir(const char*) { return g_card != 0; }

SDClass SD;

namespace shim {

void power_cycle() {
    g_cache.valid = false; /* SdFat's RAM is gone; the card keeps what it got */
    g_cache.dirty = false;
    for (uint8_t i = 0; i < kHandles; ++i) {
        g_handles[i].open = false;
    }
}

void wipe() {
    power_cycle();
    memset(g_files, 0, sizeof(g_files));
}

}  // namespace shim

}  // namespace SDLib
