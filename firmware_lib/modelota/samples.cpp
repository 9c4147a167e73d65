#include "samples.h"

#include <string.h>

#include "crc32.h"

/* The wire carries IEEE 754 binary32 bit patterns; a float of another size
 * or kind cannot be sent by copying its bits. */
static_assert(sizeof(float) == 4, "the frame carries 32-bit floats");
#if defined(__FLT_MANT_DIG__) && __FLT_MANT_DIG__ != 24
#error "the frame carries IEEE 754 binary32 floats"
#endif
static_assert(MODELOTA_SAMPLES_HEAD_LEN == 24u, "head layout (docs/COLLECT.md)");
static_assert(MODELOTA_SAMPLES_MAX_VALUES * 4u + MODELOTA_SAMPLES_MAX_OVERHEAD < 0x7FFFFFFFu,
              "a frame length fits int32_t");
static_assert(MODELOTA_SAMPLES_MAX_SENSORS <= 255u, "sensor_count is one byte");

namespace {

const uint32_t kPiece = 32u; /* bytes per write callback call */

void put_u16(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v & 0xFFu);
    p[1] = static_cast<uint8_t>((v >> 8) & 0xFFu);
}

void put_u32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v & 0xFFu);
    p[1] = static_cast<uint8_t>((v >> 8) & 0xFFu);
    p[2] = static_cast<uint8_t>((v >> 16) & 0xFFu);
    p[3] = static_cast<uint8_t>((v >> 24) & 0xFFu);
}

void put_f32(uint8_t* p, float f) {
    uint32_t bits = 0;
    memcpy(&bits, &f, sizeof(bits));
    put_u32(p, bits);
}

/* Length of a NUL-terminated printable-ASCII string of 1..max bytes, or 0
 * when it is empty, too long or holds another byte. Reads at most max + 1. */
uint32_t label_len(const char* s, uint32_t max) {
    if (s == nullptr) {
        return 0;
    }
    for (uint32_t i = 0; i <= max; ++i) {
        uint8_t ch = static_cast<uint8_t>(s[i]);
        if (ch == 0) {
            return i;
        }
        if (ch < 0x20u || ch > 0x7Eu || i == max) {
            return 0;
        }
    }
    return 0;
}

uint32_t values_len(const modelota_samples* s) {
    return static_cast<uint32_t>(s->c.window) * s->c.sensor_count * 4u;
}

/* Writes and CRCs: one piece through the callback, both running CRCs updated. */
struct Out {
    modelota_samples_write_fn write;
    void* ctx;
    uint32_t crc; /* running CRC of what the CRC covers so far */
    int failed;
};

void emit(Out* o, const uint8_t* data, uint32_t n, bool covered) {
    if (o->failed || n == 0) {
        return;
    }
    if (covered) {
        o->crc = modelota_crc32(o->crc, data, static_cast<size_t>(n)); /* n <= kPiece */
    }
    if (o->write(o->ctx, data, n) != 0) {
        o->failed = 1;
    }
}

struct Sink {
    uint8_t* out;
    uint32_t cap;
    uint32_t len;
};

int sink_write(void* ctx, const uint8_t* data, uint32_t n) {
    Sink* k = static_cast<Sink*>(ctx);
    if (n > k->cap - k->len) {
        return -1;
    }
    memcpy(k->out + k->len, data, static_cast<size_t>(n)); /* n <= kPiece */
    k->len += n;
    return 0;
}

}  // namespace

extern "C" int modelota_samples_init(modelota_samples* s, const modelota_samples_config* c) {
    if (s == nullptr || c == nullptr) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    memset(s, 0, sizeof(*s));
    if (c->sensors == nullptr || c->sensor_count == 0 ||
        c->sensor_count > MODELOTA_SAMPLES_MAX_SENSORS || c->window == 0 ||
        c->hop > c->window || c->buffer == nullptr) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    /* NaN fails both comparisons; infinity fails the second */
    if (!(c->interval_ms > 0.0f) || !(c->interval_ms <= 3.0e38f)) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    uint32_t values = static_cast<uint32_t>(c->window) * c->sensor_count;
    if (values > MODELOTA_SAMPLES_MAX_VALUES || c->buffer_len < values) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    uint32_t table = 0;
    for (uint32_t i = 0; i < c->sensor_count; ++i) {
        uint32_t nl = label_len(c->sensors[i].name, MODELOTA_SAMPLES_MAX_NAME);
        uint32_t ul = label_len(c->sensors[i].units, MODELOTA_SAMPLES_MAX_UNITS);
        if (nl == 0 || ul == 0) {
            return MODELOTA_INVALID_ARGUMENT;
        }
        table += 2u + nl + ul;
    }
    s->c = *c;
    if (s->c.hop == 0) {
        s->c.hop = s->c.window;
    }
    s->table_len = static_cast<uint16_t>(table); /* <= 16 * 50 */
    return MODELOTA_OK;
}

extern "C" int modelota_samples_push(modelota_samples* s, const float* row, uint32_t n) {
    if (s == nullptr || row == nullptr || s->c.buffer == nullptr || n != s->c.sensor_count) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    uint32_t slot = static_cast<uint32_t>(s->head) * s->c.sensor_count;
    if (s->count == s->c.window) {
        /* the oldest row, index total - window, is overwritten */
        uint32_t oldest = s->total - s->c.window;
        if (static_cast<int32_t>(oldest - s->sent_end) >= 0) {
            s->dropped++;
        }
    } else {
        s->count++;
    }
    memcpy(s->c.buffer + slot, row, static_cast<size_t>(n) * sizeof(float)); /* n <= 16 */
    s->head = static_cast<uint16_t>(s->head + 1u == s->c.window ? 0u : s->head + 1u);
    s->total++;
    if (s->since != 0xFFFFFFFFu) {
        s->since++;
    }
    return modelota_samples_ready(s);
}

extern "C" int modelota_samples_ready(const modelota_samples* s) {
    if (s == nullptr || s->c.window == 0) {
        return 0;
    }
    return (s->count == s->c.window && s->since >= s->c.hop) ? 1 : 0;
}

extern "C" uint32_t modelota_samples_frame_len(const modelota_samples* s) {
    if (s == nullptr || s->c.window == 0) {
        return 0;
    }
    return MODELOTA_SAMPLES_HEAD_LEN + s->table_len + 4u + values_len(s) + 4u;
}

extern "C" int modelota_samples_write(modelota_samples* s, modelota_samples_write_fn write,
                                      void* ctx) {
    if (s == nullptr || write == nullptr) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    if (!modelota_samples_ready(s)) {
        return MODELOTA_BAD_STATE;
    }
    Out o = {write, ctx, 0u, 0};
    uint8_t piece[kPiece];
    static_assert(sizeof(piece) >= MODELOTA_SAMPLES_HEAD_LEN, "the head fits one piece");
    static_assert(sizeof(piece) % 4u == 0, "whole values per piece");

    /* head: magic, version, sensor_count, sample_count, interval_ms, seq,
     * first_sample, table_len, reserved (docs/COLLECT.md) */
    piece[0] = MODELOTA_SAMPLES_MAGIC0;
    piece[1] = MODELOTA_SAMPLES_MAGIC1;
    piece[2] = MODELOTA_SAMPLES_MAGIC2;
    piece[3] = MODELOTA_SAMPLES_MAGIC3;
    piece[4] = static_cast<uint8_t>(MODELOTA_SAMPLES_FORMAT_VERSION);
    piece[5] = s->c.sensor_count;
    put_u16(piece + 6, s->c.window);
    put_f32(piece + 8, s->c.interval_ms);
    put_u32(piece + 12, s->seq);
    put_u32(piece + 16, s->total - s->c.window);
    put_u16(piece + 20, s->table_len);
    put_u16(piece + 22, 0u);
    emit(&o, piece, MODELOTA_SAMPLES_HEAD_LEN, true);

    for (uint32_t i = 0; i < s->c.sensor_count; ++i) {
        const modelota_sensor& sen = s->c.sensors[i];
        uint8_t len = static_cast<uint8_t>(strlen(sen.name)); /* checked by init */
        emit(&o, &len, 1, true);
        emit(&o, reinterpret_cast<const uint8_t*>(sen.name), len, true);
        len = static_cast<uint8_t>(strlen(sen.units));
        emit(&o, &len, 1, true);
        emit(&o, reinterpret_cast<const uint8_t*>(sen.units), len, true);
    }
    uint8_t crc_bytes[4];
    put_u32(crc_bytes, o.crc);
    emit(&o, crc_bytes, 4, false); /* the frame CRC goes on from header_crc */

    /* values, oldest row first: the ring's oldest row is at head */
    uint32_t per_row = s->c.sensor_count;
    uint32_t slot = s->head;
    uint32_t fill = 0;
    for (uint32_t r = 0; r < s->c.window; ++r) {
        const float* row = s->c.buffer + slot * per_row;
        for (uint32_t k = 0; k < per_row; ++k) {
            put_f32(piece + fill, row[k]);
            fill += 4u;
            if (fill == sizeof(piece)) {
                emit(&o, piece, fill, true);
                fill = 0;
            }
        }
        slot = (slot + 1u == s->c.window) ? 0u : slot + 1u;
    }
    emit(&o, piece, fill, true);
    put_u32(crc_bytes, o.crc);
    emit(&o, crc_bytes, 4, false);
    if (o.failed) {
        return MODELOTA_STORAGE_IO;
    }
    s->sent_end = s->total;
    s->seq++;
    s->since = 0;
    return MODELOTA_OK;
}

extern "C" int32_t modelota_samples_encode(modelota_samples* s, uint8_t* out, uint32_t cap) {
    if (s == nullptr || out == nullptr) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    if (!modelota_samples_ready(s)) {
        return MODELOTA_BAD_STATE;
    }
    uint32_t n = modelota_samples_frame_len(s);
    if (cap < n) {
        return MODELOTA_TOO_LARGE;
    }
    Sink k = {out, cap, 0};
    int st = modelota_samples_write(s, sink_write, &k);
    if (st < 0) {
        return st;
    }
    return static_cast<int32_t>(k.len);
}

extern "C" uint32_t modelota_samples_seq(const modelota_samples* s) {
    return s != nullptr ? s->seq : 0u;
}

extern "C" uint32_t modelota_samples_total(const modelota_samples* s) {
    return s != nullptr ? s->total : 0u;
}

extern "C" uint32_t modelota_samples_dropped(const modelota_samples* s) {
    return s != nullptr ? s->dropped : 0u;
}
