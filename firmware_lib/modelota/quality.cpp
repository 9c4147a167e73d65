#include "quality.h"

#include <string.h>

/* The JSON's fixed text lives in flash on AVR, where .rodata would be
 * copied into the 8 KiB of RAM. */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define QUALITY_TEXT(s) PSTR(s)
#define QUALITY_CHAR(p) static_cast<char>(pgm_read_byte(p))
#else
#define QUALITY_TEXT(s) (s)
#define QUALITY_CHAR(p) (*(p))
#endif

static_assert(MODELOTA_QUALITY_MAX_CLASSES >= 1u && MODELOTA_QUALITY_MAX_CLASSES <= 255u,
              "a class index is recorded in 16 bits and reported as one JSON number each");
/* conf_sum adds up to 65535 confidences of at most 10000 basis points */
static_assert(65535ull * 10000ull <= 0xFFFFFFFFull, "conf_sum fits 32 bits");
/* the longest JSON: the fixed text (73 bytes), format (1 digit), version (10),
 * n, conf_bp, labelled and correct (5 each), a count of up to 5 digits and a
 * comma per class (one comma fewer) and the NUL */
static_assert(MODELOTA_QUALITY_JSON_MAX >= 73u + 31u + 6u * MODELOTA_QUALITY_MAX_CLASSES,
              "MODELOTA_QUALITY_JSON_MAX holds the longest summary");

namespace {

const uint32_t kBasisPoints = 10000u;

void clear(modelota_quality_window* w) { memset(w, 0, sizeof(*w)); }

/* A bounded writer into the caller's buffer; `over` once it did not fit. */
struct Text {
    char* out;
    uint32_t cap;
    uint32_t len;
    bool over;
};

/* Appends a RAM string (from_flash false) or a QUALITY_TEXT one. */
void put_any(Text& t, const char* s, bool from_flash) {
    for (uint32_t i = 0; i < 64u; ++i) {
        const char c = from_flash ? QUALITY_CHAR(s + i) : s[i];
        if (c == '\0') {
            return;
        }
        if (t.len + 1u >= t.cap) {
            t.over = true;
            return;
        }
        t.out[t.len++] = c;
    }
}

void put(Text& t, const char* flash_text) { put_any(t, flash_text, true); }

void put_u32(Text& t, uint32_t v) {
    char digits[11];
    uint32_t n = 0;
    do {
        digits[n++] = static_cast<char>('0' + static_cast<char>(v % 10u));
        v /= 10u;
    } while (v != 0u && n < 10u);
    char rev[11];
    for (uint32_t i = 0; i < n; ++i) {
        rev[i] = digits[n - 1u - i];
    }
    rev[n] = '\0';
    put_any(t, rev, false);
}

}  // namespace

extern "C" int modelota_quality_init(modelota_quality* q, uint16_t classes, uint16_t window,
                                     uint32_t version) {
    if (q == nullptr) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    memset(q, 0, sizeof(*q));
    if (classes == 0u || classes > MODELOTA_QUALITY_MAX_CLASSES || window == 0u) {
        return MODELOTA_INVALID_ARGUMENT; /* classes stays 0: record() refuses everything */
    }
    q->classes = classes;
    q->window = window;
    q->version = version;
    return MODELOTA_OK;
}

extern "C" void modelota_quality_reset(modelota_quality* q, uint32_t version) {
    if (q == nullptr) {
        return;
    }
    clear(&q->cur);
    clear(&q->last);
    q->windows = 0;
    q->version = version;
}

extern "C" int modelota_quality_record(modelota_quality* q, uint16_t cls, float confidence,
                                       int32_t label) {
    if (q == nullptr || cls >= q->classes || label < -1 ||
        label >= static_cast<int32_t>(q->classes)) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    /* NaN fails both comparisons */
    if (!(confidence >= 0.0f) || !(confidence <= 1.0f)) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    modelota_quality_window* w = &q->cur;
    w->conf_sum += static_cast<uint32_t>(confidence * static_cast<float>(kBasisPoints) + 0.5f);
    ++w->counts[cls];
    ++w->n;
    if (label >= 0) {
        ++w->labelled;
        if (label == static_cast<int32_t>(cls)) {
            ++w->correct;
        }
    }
    if (w->n < q->window) {
        return 0;
    }
    q->last = q->cur;
    clear(&q->cur);
    ++q->windows;
    return 1;
}

extern "C" int modelota_quality_record_scores(modelota_quality* q, const float* scores,
                                              uint16_t n, int32_t label) {
    if (q == nullptr || scores == nullptr || n != q->classes || n == 0u) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    uint16_t best = 0;
    for (uint16_t i = 0; i < n; ++i) {
        if (scores[i] != scores[i]) {
            return MODELOTA_INVALID_ARGUMENT; /* NaN */
        }
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    return modelota_quality_record(q, best, scores[best], label);
}

extern "C" int modelota_quality_ready(const modelota_quality* q) {
    return q != nullptr && q->windows > 0u ? 1 : 0;
}

extern "C" uint32_t modelota_quality_windows(const modelota_quality* q) {
    return q == nullptr ? 0u : q->windows;
}

extern "C" int32_t modelota_quality_json(const modelota_quality* q, char* out, uint32_t cap) {
    if (q == nullptr || out == nullptr) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    if (q->windows == 0u) {
        return MODELOTA_BAD_STATE;
    }
    const modelota_quality_window* w = &q->last;
    Text t = {out, cap, 0u, cap == 0u};
    put(t, QUALITY_TEXT("{\"format\":"));
    put_u32(t, MODELOTA_QUALITY_FORMAT);
    put(t, QUALITY_TEXT(",\"version\":"));
    put_u32(t, q->version);
    put(t, QUALITY_TEXT(",\"n\":"));
    put_u32(t, w->n);
    put(t, QUALITY_TEXT(",\"counts\":["));
    for (uint16_t i = 0; i < q->classes; ++i) {
        if (i != 0u) {
            put(t, QUALITY_TEXT(","));
        }
        put_u32(t, w->counts[i]);
    }
    put(t, QUALITY_TEXT("],\"conf_bp\":"));
    put_u32(t, (w->conf_sum + w->n / 2u) / w->n); /* n >= 1 in a complete window */
    put(t, QUALITY_TEXT(",\"labelled\":"));
    put_u32(t, w->labelled);
    put(t, QUALITY_TEXT(",\"correct\":"));
    put_u32(t, w->correct);
    put(t, QUALITY_TEXT("}"));
    if (t.over) {
        if (cap != 0u) {
            out[0] = '\0';
        }
        return MODELOTA_TOO_LARGE;
    }
    out[t.len] = '\0';
    return static_cast<int32_t>(t.len);
}
