#include "probe.h"

#include <stdio.h>
#include <string.h>

#include "modelota/http.h"

namespace {

struct Text {
    char* out;
    size_t cap;
    size_t len;
};

void put(Text& t, const char* s) {
    for (; *s != '\0'; ++s) {
        if (t.len + 1 < t.cap) {
            t.out[t.len++] = *s;
        }
    }
    if (t.cap > 0) {
        t.out[t.len < t.cap ? t.len : t.cap - 1] = '\0';
    }
}

void put_hex(Text& t, const uint8_t* b, size_t n) {
    char two[3];
    for (size_t i = 0; i < n; ++i) {
        snprintf(two, sizeof(two), "%02x", b[i]);
        put(t, two);
    }
}

/* Piece k of data cut at cuts[] (ascending, each <= n). */
void piece(size_t n, const uint32_t* cuts, size_t ncuts, size_t k, size_t* lo, size_t* hi) {
    *lo = k == 0 ? 0 : cuts[k - 1];
    *hi = k == ncuts ? n : cuts[k];
    if (*lo > n) {
        *lo = n;
    }
    if (*hi > n) {
        *hi = n;
    }
    if (*hi < *lo) {
        *hi = *lo;
    }
}

}  // namespace

extern "C" int http_probe(const uint8_t* data, size_t n, const uint32_t* cuts, size_t ncuts,
                          int eof, char* out, size_t cap) {
    Text t = {out, cap, 0};
    put(t, "");
    modelota_http_parser p;
    modelota_http_parser_init(&p);
    int result = MODELOTA_HTTP_EV_NEED;
    char num[192];
    uint32_t headers = 0;
    bool body_started = false;
    for (size_t k = 0; k <= ncuts && result >= 0 && result != MODELOTA_HTTP_EV_DONE; ++k) {
        size_t lo = 0;
        size_t hi = 0;
        piece(n, cuts, ncuts, k, &lo, &hi);
        size_t off = lo;
        for (;;) {
            size_t used = 0;
            const uint8_t* body = NULL;
            size_t body_len = 0;
            result = modelota_http_parse(&p, data + off, hi - off, &used, &body, &body_len);
            if (used > hi - off || (body != NULL && (body < data + off || body + body_len >
                                                     data + off + used))) {
                put(t, " CONTRACT-VIOLATION");
                return -1000;
            }
            off += used;
            if (result < 0 || result == MODELOTA_HTTP_EV_DONE || result == MODELOTA_HTTP_EV_NEED) {
                break;
            }
            if (result == MODELOTA_HTTP_EV_HEADERS) {
                ++headers;
                snprintf(num, sizeof(num),
                         "code=%u flags=%u len=%lu range=%lu-%lu/%lu etag=[%s] body=",
                         static_cast<unsigned>(p.code), static_cast<unsigned>(p.flags),
                         static_cast<unsigned long>(p.content_length),
                         static_cast<unsigned long>(p.range_start),
                         static_cast<unsigned long>(p.range_end),
                         static_cast<unsigned long>(p.range_total), p.etag);
                put(t, num);
                if ((p.flags & MODELOTA_HTTP_F_AUTH_TIME) != 0) {
                    snprintf(num, sizeof(num), "[auth=%lu:", static_cast<unsigned long>(p.auth_ts));
                    put(t, num);
                    put_hex(t, p.auth_tsm, sizeof(p.auth_tsm));
                    put(t, "]");
                }
                body_started = true;
            } else if (result == MODELOTA_HTTP_EV_BODY) {
                if (!body_started || body_len == 0) {
                    put(t, " BODY-BEFORE-HEADERS-OR-EMPTY");
                    return -1001;
                }
                put_hex(t, body, body_len);
            }
        }
    }
    if (result >= 0 && result != MODELOTA_HTTP_EV_DONE && eof != 0) {
        result = modelota_http_parse_eof(&p);
    }
    snprintf(num, sizeof(num), " headers=%lu result=%d", static_cast<unsigned long>(headers),
             result);
    put(t, num);
    return result;
}

extern "C" int manifest_probe(const uint8_t* data, size_t n, const uint32_t* cuts, size_t ncuts,
                              char* out, size_t cap) {
    Text t = {out, cap, 0};
    put(t, "");
    modelota_manifest m;
    modelota_manifest_init(&m);
    int st = MODELOTA_OK;
    for (size_t k = 0; k <= ncuts && st == MODELOTA_OK; ++k) {
        size_t lo = 0;
        size_t hi = 0;
        piece(n, cuts, ncuts, k, &lo, &hi);
        st = modelota_manifest_feed(&m, data + lo, hi - lo);
    }
    if (st == MODELOTA_OK) {
        st = modelota_manifest_end(&m);
    }
    char num[96];
    snprintf(num, sizeof(num), "status=%d seen=%u version=%lu base=%lu size=%lu fp=", st,
             static_cast<unsigned>(m.seen), static_cast<unsigned long>(m.version),
             static_cast<unsigned long>(m.base_version), static_cast<unsigned long>(m.size));
    put(t, num);
    put_hex(t, m.fingerprint, sizeof(m.fingerprint));
    put(t, " sha=");
    put_hex(t, m.sha256, sizeof(m.sha256));
    put(t, " url=[");
    put(t, m.url);
    put(t, "] line=[");
    put(t, m.line);
    put(t, "]");
    return st;
}

extern "C" int hmac_probe(const uint8_t* key, size_t key_len, const uint8_t* msg, size_t n,
                          const uint32_t* cuts, size_t ncuts, uint8_t out[32]) {
    modelota_hmac_sha256 c;
    if (modelota_hmac_sha256_init(&c, key, key_len) != 0) {
        return -1;
    }
    for (size_t k = 0; k <= ncuts; ++k) {
        size_t lo = 0;
        size_t hi = 0;
        piece(n, cuts, ncuts, k, &lo, &hi);
        modelota_hmac_sha256_update(&c, msg + lo, hi - lo);
    }
    modelota_hmac_sha256_final(&c, out);
    return 0;
}

extern "C" size_t http_probe_sizeof(int which) {
    switch (which) {
    case 0: return sizeof(modelota_http);
    case 1: return sizeof(modelota_http_parser);
    case 2: return sizeof(modelota_manifest);
    case 3: return sizeof(modelota_http_config);
    default: return 0;
    }
}
