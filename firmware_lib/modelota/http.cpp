/*
 * ModelOTA HTTP pull: response parser, manifest reader, request writer and
 * the pull loop. See http.h and docs/FLEET.md.
 */
#include "http.h"

#include <string.h>

static_assert(MODELOTA_HTTP_LINE_MAX >= 64u && MODELOTA_HTTP_LINE_MAX <= 1024u,
              "line buffer holds a status line and stages requests");
static_assert(MODELOTA_HTTP_HEAD_MAX <= 0xFFFFu, "head_bytes is 16 bits");
static_assert(MODELOTA_HTTP_ETAG_MAX >= 67u, "a quoted SHA-256 ETag fits");
static_assert(MODELOTA_HTTP_URL_MAX >= 83u, "/v1/payloads/<sha256>.mota fits");
static_assert(MODELOTA_MANIFEST_MAX <= 0xFFFFu, "manifest total is 16 bits");
static_assert(MODELOTA_HTTP_NAME_MAX >= 2u && MODELOTA_HTTP_NAME_MAX <= 255u, "vlen bound");
static_assert(MODELOTA_HTTP_READ_BUFFER >= 1u && MODELOTA_HTTP_READ_BUFFER <= 4096u,
              "stack read buffer");
static_assert(MODELOTA_HTTP_STATUS_MIN < MODELOTA_STATUS_MIN - 50,
              "HTTP statuses never collide with modelota_status");

/* Constant strings (header names, request text, manifest keys) stay in
 * flash on AVR, where .rodata would be copied into the 8 KiB of RAM. */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define MODELOTA_P(s) PSTR(s)
#define MODELOTA_PROGMEM PROGMEM
#else
#define MODELOTA_P(s) (s)
#define MODELOTA_PROGMEM
#endif

namespace {

/* ------------------------------------------------------------------------
 * small helpers
 * ---------------------------------------------------------------------- */

/* A character of a MODELOTA_P / MODELOTA_PROGMEM string. */
char pgm_char(const char* p) {
#if defined(__AVR__)
    return static_cast<char>(pgm_read_byte(p));
#else
    return *p;
#endif
}

/* s starts with the MODELOTA_P string prefix. */
bool starts_with_p(const char* s, const char* prefix) {
    for (char c = pgm_char(prefix); c != '\0'; c = pgm_char(++prefix)) {
        if (*s++ != c) {
            return false;
        }
    }
    return true;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

/* Case-insensitive equality of a (len bytes) and the MODELOTA_P string b. */
bool ieq(const char* a, size_t len, const char* b) {
    size_t i = 0;
    for (; i < len; ++i) {
        char c = pgm_char(b + i);
        if (c == '\0' || lower(a[i]) != lower(c)) {
            return false;
        }
    }
    return pgm_char(b + i) == '\0';
}

int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decimal u32 from s[0..len), digits only; false on anything else or overflow. */
bool parse_u32(const char* s, size_t len, uint32_t* out) {
    if (len == 0 || len > 10) {
        return false;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        uint32_t d = static_cast<uint32_t>(s[i] - '0');
        if (v > (0xFFFFFFFFu - d) / 10u) {
            return false;
        }
        v = v * 10u + d;
    }
    *out = v;
    return true;
}

/* ------------------------------------------------------------------------
 * response parser
 * ---------------------------------------------------------------------- */

enum ParseState {
    P_STATUS = 0,
    P_HEADER = 1,
    P_BODY_LEN = 2,
    P_BODY_CLOSE = 3,
    P_CHUNK_SIZE = 4,
    P_CHUNK_EXT = 5,
    P_CHUNK_SIZE_LF = 6,
    P_CHUNK_DATA = 7,
    P_CHUNK_DATA_CR = 8,
    P_CHUNK_DATA_LF = 9,
    P_TRAILER = 10,
    P_DONE = 11
};

int fail(modelota_http_parser* p, int status) {
    p->error = static_cast<int16_t>(status);
    return status;
}

int sticky(const modelota_http_parser* p) { return p->error; }

/* "HTTP/1.x NNN[ reason]" */
int on_status_line(modelota_http_parser* p) {
    const char* s = p->line;
    if (p->line_len < 12 || !starts_with_p(s, MODELOTA_P("HTTP/1.")) || s[7] < '0' || s[7] > '9' ||
        s[8] != ' ' || (p->line_len > 12 && s[12] != ' ')) {
        return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
    }
    uint32_t code = 0;
    if (!parse_u32(s + 9, 3, &code) || code < 100u || code > 599u) {
        return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
    }
    p->code = static_cast<uint16_t>(code);
    p->state = P_HEADER;
    return MODELOTA_OK;
}

/* Content-Range value: "bytes S-E/T", with T or S-E possibly "*" */
bool parse_content_range(modelota_http_parser* p, const char* v, size_t len) {
    if (len < 7 || !ieq(v, 6, MODELOTA_P("bytes "))) {
        return false;
    }
    v += 6;
    len -= 6;
    size_t slash = 0;
    while (slash < len && v[slash] != '/') {
        ++slash;
    }
    if (slash == len) {
        return false;
    }
    const char* total = v + slash + 1;
    size_t total_len = len - slash - 1;
    if (total_len == 1 && total[0] == '*') {
        p->range_total = 0;
    } else if (parse_u32(total, total_len, &p->range_total)) {
        p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_TOTAL_KNOWN);
    } else {
        return false;
    }
    if (slash == 1 && v[0] == '*') { /* unsatisfied range (416) */
        p->range_start = 0;
        p->range_end = 0;
        return true;
    }
    size_t dash = 0;
    while (dash < slash && v[dash] != '-') {
        ++dash;
    }
    if (dash == slash || !parse_u32(v, dash, &p->range_start) ||
        !parse_u32(v + dash + 1, slash - dash - 1, &p->range_end) ||
        p->range_end < p->range_start) {
        return false;
    }
    p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_RANGE);
    return true;
}

/* WWW-Authenticate value of a fleet server's signed time (docs/FLEET.md):
 * exactly `MOTA ts="<decimal>", tsm="<64 hex>"`; anything else is ignored. */
void parse_auth_time(modelota_http_parser* p, const char* v, size_t len) {
    if (len < 17u || !starts_with_p(v, MODELOTA_P("MOTA ts=\""))) {
        return;
    }
    size_t i = 9;
    size_t digits = 0;
    while (i + digits < len && v[i + digits] >= '0' && v[i + digits] <= '9') {
        ++digits;
    }
    uint32_t ts = 0;
    if (!parse_u32(v + i, digits, &ts)) {
        return;
    }
    i += digits;
    if (len != i + 8u + 64u + 1u || !starts_with_p(v + i, MODELOTA_P("\", tsm=\"")) ||
        v[len - 1] != '"') {
        return;
    }
    i += 8u;
    for (size_t k = 0; k < MODELOTA_SHA256_LEN; ++k) {
        int hi = hexval(v[i + 2 * k]);
        int lo = hexval(v[i + 2 * k + 1]);
        if (hi < 0 || lo < 0) {
            return;
        }
        if (k < MODELOTA_HTTP_TSM_KEPT) {
            p->auth_tsm[k] = static_cast<uint8_t>((hi << 4) | lo);
        }
    }
    p->auth_ts = ts;
    p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_AUTH_TIME);
}

int on_header_line(modelota_http_parser* p) {
    const char* s = p->line;
    size_t len = p->line_len;
    if (s[0] == ' ' || s[0] == '\t') {
        return fail(p, MODELOTA_HTTP_BAD_RESPONSE); /* obsolete line folding */
    }
    size_t colon = 0;
    while (colon < len && s[colon] != ':') {
        if (s[colon] == ' ' || s[colon] == '\t') {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        ++colon;
    }
    if (colon == 0 || colon == len) {
        return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
    }
    const char* v = s + colon + 1;
    size_t vlen = len - colon - 1;
    while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
        ++v;
        --vlen;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
        --vlen;
    }
    const bool cut = p->cut != 0;
    if (ieq(s, colon, MODELOTA_P("content-length"))) {
        uint32_t n = 0;
        if (cut || !parse_u32(v, vlen, &n) ||
            ((p->flags & MODELOTA_HTTP_F_LENGTH) != 0 && n != p->content_length)) {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        p->content_length = n;
        p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_LENGTH);
    } else if (ieq(s, colon, MODELOTA_P("transfer-encoding"))) {
        if (cut) {
            return fail(p, MODELOTA_HTTP_UNSUPPORTED);
        }
        if (ieq(v, vlen, MODELOTA_P("chunked"))) {
            p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_CHUNKED);
        } else if (!ieq(v, vlen, MODELOTA_P("identity"))) {
            return fail(p, MODELOTA_HTTP_UNSUPPORTED); /* gzip, or a list of codings */
        }
    } else if (ieq(s, colon, MODELOTA_P("content-encoding"))) {
        if (cut || !ieq(v, vlen, MODELOTA_P("identity"))) {
            return fail(p, MODELOTA_HTTP_UNSUPPORTED);
        }
    } else if (ieq(s, colon, MODELOTA_P("content-range"))) {
        if (cut || !parse_content_range(p, v, vlen)) {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
    } else if (ieq(s, colon, MODELOTA_P("etag"))) {
        if (cut || vlen >= sizeof(p->etag)) {
            p->etag[0] = '\0';
            p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_ETAG_CUT);
        } else {
            memcpy(p->etag, v, vlen);
            p->etag[vlen] = '\0';
        }
    } else if (ieq(s, colon, MODELOTA_P("connection"))) {
        if (ieq(v, vlen, MODELOTA_P("close"))) {
            p->flags = static_cast<uint8_t>(p->flags | MODELOTA_HTTP_F_CLOSE);
        }
    } else if (ieq(s, colon, MODELOTA_P("www-authenticate"))) {
        if (!cut) {
            parse_auth_time(p, v, vlen);
        }
    }
    return MODELOTA_OK;
}

/* The empty line after the headers: picks how the body is delimited.
 * Returns 1 when the HEADERS event is due, 0 to keep reading (1xx). */
int on_headers_end(modelota_http_parser* p) {
    if (p->code < 200) { /* 100 Continue and friends: the real answer follows */
        p->state = P_STATUS;
        p->flags = 0;
        p->etag[0] = '\0';
        p->content_length = 0;
        return 0;
    }
    if (p->code == 204 || p->code == 304) {
        p->state = P_DONE;
    } else if ((p->flags & MODELOTA_HTTP_F_CHUNKED) != 0) {
        p->flags = static_cast<uint8_t>(p->flags & ~MODELOTA_HTTP_F_LENGTH); /* RFC 9112 6.3 */
        p->content_length = 0;
        p->left = 0;
        p->hex_digits = 0;
        p->state = P_CHUNK_SIZE;
    } else if ((p->flags & MODELOTA_HTTP_F_LENGTH) != 0) {
        p->left = p->content_length;
        p->state = p->left == 0 ? static_cast<uint8_t>(P_DONE) : static_cast<uint8_t>(P_BODY_LEN);
    } else {
        p->state = P_BODY_CLOSE;
    }
    return 1;
}

/* Gathers one line (status, header, trailer). Returns 1 when line[] holds a
 * complete line, 0 when more bytes are needed, < 0 on error. */
int line_byte(modelota_http_parser* p, uint8_t c) {
    if (++p->head_bytes > MODELOTA_HTTP_HEAD_MAX) {
        return fail(p, MODELOTA_HTTP_HEAD_TOO_LARGE);
    }
    if (c == '\n') {
        if (p->line_len > 0 && p->line[p->line_len - 1] == '\r') {
            --p->line_len;
        }
        p->line[p->line_len] = '\0';
        return 1;
    }
    if (c == '\0') {
        return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
    }
    if (p->line_len < MODELOTA_HTTP_LINE_MAX - 1u) {
        p->line[p->line_len++] = static_cast<char>(c);
    } else {
        p->cut = 1;
    }
    return 0;
}

void next_line(modelota_http_parser* p) {
    p->line_len = 0;
    p->cut = 0;
}

/* A chunk-size line is complete: data, or the trailer after the last chunk. */
void chunk_started(modelota_http_parser* p) {
    p->hex_digits = 0;
    p->line_len = 0;
    if (p->left == 0) {
        next_line(p);
        p->state = P_TRAILER;
    } else {
        p->state = P_CHUNK_DATA;
    }
}

/* One byte of chunked framing. 0 to go on, < 0 on error. */
int chunk_byte(modelota_http_parser* p, uint8_t c) {
    switch (p->state) {
    case P_CHUNK_SIZE: {
        int v = hexval(static_cast<char>(c));
        if (v >= 0) {
            if (++p->hex_digits > 8u) {
                return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
            }
            p->left = (p->left << 4) | static_cast<uint32_t>(v);
            return 0;
        }
        if (p->hex_digits == 0) {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        if (c == ';' || c == ' ' || c == '\t') {
            p->line_len = 0; /* counts extension bytes */
            p->state = P_CHUNK_EXT;
        } else if (c == '\r') {
            p->state = P_CHUNK_SIZE_LF;
        } else if (c == '\n') {
            chunk_started(p);
        } else {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        return 0;
    }
    case P_CHUNK_EXT:
        if (c == '\n') {
            chunk_started(p);
        } else if (++p->line_len >= MODELOTA_HTTP_LINE_MAX) {
            return fail(p, MODELOTA_HTTP_HEAD_TOO_LARGE);
        }
        return 0;
    case P_CHUNK_SIZE_LF:
        if (c != '\n') {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        chunk_started(p);
        return 0;
    case P_CHUNK_DATA_CR:
        if (c == '\r') {
            p->state = P_CHUNK_DATA_LF;
            return 0;
        }
        if (c != '\n') {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        p->state = P_CHUNK_SIZE;
        return 0;
    case P_CHUNK_DATA_LF:
        if (c != '\n') {
            return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
        }
        p->state = P_CHUNK_SIZE;
        return 0;
    default:
        return fail(p, MODELOTA_HTTP_BAD_RESPONSE);
    }
}

}  // namespace

extern "C" void modelota_http_parser_init(modelota_http_parser* p) {
    memset(p, 0, sizeof(*p));
    p->state = P_STATUS;
}

extern "C" int modelota_http_parse(modelota_http_parser* p, const uint8_t* data, size_t n,
                                   size_t* used, const uint8_t** body, size_t* body_len) {
    *used = 0;
    *body = NULL;
    *body_len = 0;
    if (sticky(p) < 0) {
        return sticky(p);
    }
    size_t i = 0;
    while (i < n) {
        switch (p->state) {
        case P_STATUS:
        case P_HEADER:
        case P_TRAILER: {
            int r = line_byte(p, data[i++]);
            if (r < 0) {
                *used = i;
                return r;
            }
            if (r == 0) {
                break;
            }
            int event = 0;
            if (p->state == P_STATUS) {
                r = p->line_len == 0 && p->code == 0 ? 0 : on_status_line(p); /* tolerate CRLF */
            } else if (p->state == P_TRAILER) {
                if (p->line_len == 0) {
                    p->state = P_DONE;
                    event = MODELOTA_HTTP_EV_DONE;
                }
            } else if (p->line_len == 0) {
                event = on_headers_end(p) != 0 ? MODELOTA_HTTP_EV_HEADERS : 0;
            } else {
                r = on_header_line(p);
            }
            next_line(p);
            if (r < 0) {
                *used = i;
                return r;
            }
            if (event != 0) {
                *used = i;
                return event;
            }
            break;
        }
        case P_BODY_LEN:
        case P_CHUNK_DATA:
        case P_BODY_CLOSE: {
            size_t take = n - i;
            if (p->state != P_BODY_CLOSE && take > p->left) {
                take = static_cast<size_t>(p->left); /* smaller than a size_t here */
            }
            *body = data + i;
            *body_len = take;
            i += take;
            p->body_seen += static_cast<uint32_t>(take);
            if (p->state != P_BODY_CLOSE) {
                p->left -= static_cast<uint32_t>(take);
                if (p->left == 0) {
                    p->state = p->state == P_BODY_LEN ? static_cast<uint8_t>(P_DONE)
                                                      : static_cast<uint8_t>(P_CHUNK_DATA_CR);
                }
            }
            *used = i;
            return MODELOTA_HTTP_EV_BODY;
        }
        case P_DONE:
            *used = i;
            return MODELOTA_HTTP_EV_DONE;
        default: {
            int r = chunk_byte(p, data[i++]);
            if (r < 0) {
                *used = i;
                return r;
            }
            break;
        }
        }
    }
    *used = i;
    return p->state == P_DONE ? MODELOTA_HTTP_EV_DONE : MODELOTA_HTTP_EV_NEED;
}

extern "C" int modelota_http_parse_eof(modelota_http_parser* p) {
    if (sticky(p) < 0) {
        return sticky(p);
    }
    if (p->state == P_BODY_CLOSE || p->state == P_DONE) {
        p->state = P_DONE;
        return MODELOTA_HTTP_EV_DONE;
    }
    return fail(p, MODELOTA_HTTP_CLOSED);
}

/* ------------------------------------------------------------------------
 * manifest reader: one flat JSON object, streamed
 * ---------------------------------------------------------------------- */

namespace {

enum ManState {
    M_START = 0,     /* before '{' */
    M_FIRST_KEY = 1, /* after '{': '"' or '}' */
    M_KEY_START = 2, /* after ',': '"' */
    M_KEY = 3,
    M_KEY_ESC = 4,
    M_COLON = 5,
    M_VALUE = 6,
    M_STR = 7,
    M_STR_ESC = 8,
    M_NUM = 9,
    M_LIT = 10,
    M_AFTER = 11,    /* after a value: ',' or '}' */
    M_END = 12       /* after '}': whitespace only */
};

struct KeyName {
    const char* name; /* MODELOTA_PROGMEM */
    uint8_t bit;
};

const char kKeyVersion[] MODELOTA_PROGMEM = "version";
const char kKeyBaseVersion[] MODELOTA_PROGMEM = "base_version";
const char kKeySize[] MODELOTA_PROGMEM = "size";
const char kKeyFingerprint[] MODELOTA_PROGMEM = "fingerprint";
const char kKeySha256[] MODELOTA_PROGMEM = "sha256";
const char kKeyUrl[] MODELOTA_PROGMEM = "url";
const char kKeyLine[] MODELOTA_PROGMEM = "line";

const KeyName kKeys[] = {
    {kKeyVersion, MODELOTA_MANIFEST_VERSION},
    {kKeyBaseVersion, MODELOTA_MANIFEST_BASE_VERSION},
    {kKeySize, MODELOTA_MANIFEST_SIZE},
    {kKeyFingerprint, MODELOTA_MANIFEST_FINGERPRINT},
    {kKeySha256, MODELOTA_MANIFEST_SHA256},
    {kKeyUrl, MODELOTA_MANIFEST_URL},
    {kKeyLine, MODELOTA_MANIFEST_LINE},
};

bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool numeric_key(uint8_t key) {
    return key == MODELOTA_MANIFEST_VERSION || key == MODELOTA_MANIFEST_BASE_VERSION ||
           key == MODELOTA_MANIFEST_SIZE;
}

int man_fail(modelota_manifest* m) {
    m->error = 1;
    return MODELOTA_HTTP_BAD_MANIFEST;
}

void key_done(modelota_manifest* m) {
    m->key = 0;
    if (m->key_len < sizeof(m->key_buf)) {
        for (size_t k = 0; k < sizeof(kKeys) / sizeof(kKeys[0]); ++k) {
            const char* name = kKeys[k].name;
            size_t i = 0;
            while (i < m->key_len && pgm_char(name + i) == m->key_buf[i]) {
                ++i;
            }
            if (i == m->key_len && pgm_char(name + i) == '\0') {
                m->key = kKeys[k].bit;
            }
        }
    }
}

/* A number or string value for a known key is complete. */
int value_done(modelota_manifest* m) {
    uint8_t key = m->key;
    if (key == 0) {
        return MODELOTA_OK;
    }
    if ((m->seen & key) != 0) {
        return man_fail(m); /* duplicated key */
    }
    if (key == MODELOTA_MANIFEST_FINGERPRINT && m->vlen != 2u * MODELOTA_FINGERPRINT_LEN) {
        return man_fail(m);
    }
    if (key == MODELOTA_MANIFEST_SHA256 && m->vlen != 2u * sizeof(m->sha256)) {
        return man_fail(m);
    }
    if (key == MODELOTA_MANIFEST_VERSION) {
        m->version = m->num;
    } else if (key == MODELOTA_MANIFEST_BASE_VERSION) {
        m->base_version = m->num;
    } else if (key == MODELOTA_MANIFEST_SIZE) {
        m->size = m->num;
    }
    m->seen = static_cast<uint8_t>(m->seen | key);
    return MODELOTA_OK;
}

/* One character of a string value for the current key. */
int str_char(modelota_manifest* m, char c) {
    uint8_t key = m->key;
    if (key == MODELOTA_MANIFEST_FINGERPRINT || key == MODELOTA_MANIFEST_SHA256) {
        uint8_t* dst = key == MODELOTA_MANIFEST_SHA256 ? m->sha256 : m->fingerprint;
        size_t cap = key == MODELOTA_MANIFEST_SHA256 ? sizeof(m->sha256) : MODELOTA_FINGERPRINT_LEN;
        int v = hexval(c);
        if (v < 0 || m->vlen >= 2u * cap) {
            return man_fail(m);
        }
        uint8_t nib = static_cast<uint8_t>(v);
        if ((m->vlen & 1u) == 0) {
            dst[m->vlen / 2u] = static_cast<uint8_t>(nib << 4);
        } else {
            dst[m->vlen / 2u] = static_cast<uint8_t>(dst[m->vlen / 2u] | nib);
        }
    } else if (key == MODELOTA_MANIFEST_URL) {
        if (m->vlen >= MODELOTA_HTTP_URL_MAX - 1u || static_cast<uint8_t>(c) <= ' ' ||
            static_cast<uint8_t>(c) >= 0x7Fu) {
            return man_fail(m); /* a URL is never cut, and goes on a request line */
        }
        m->url[m->vlen] = c;
        m->url[m->vlen + 1u] = '\0';
    } else if (key == MODELOTA_MANIFEST_LINE) {
        if (m->vlen < MODELOTA_HTTP_NAME_MAX - 1u) {
            m->line[m->vlen] = c;
            m->line[m->vlen + 1u] = '\0';
        }
    } else if (key != 0) {
        return man_fail(m); /* a string where a number belongs */
    }
    if (m->vlen < 0xFFFFu) {
        ++m->vlen;
    }
    return MODELOTA_OK;
}

/* Returns 1 when c must be looked at again in the new state. */
int man_byte(modelota_manifest* m, uint8_t c, int* status) {
    *status = MODELOTA_OK;
    switch (m->state) {
    case M_START:
        if (c == '{') {
            m->state = M_FIRST_KEY;
        } else if (!is_ws(c)) {
            *status = man_fail(m);
        }
        return 0;
    case M_FIRST_KEY:
    case M_KEY_START:
        if (c == '"') {
            m->key_len = 0;
            m->state = M_KEY;
        } else if (c == '}' && m->state == M_FIRST_KEY) {
            m->state = M_END;
        } else if (!is_ws(c)) {
            *status = man_fail(m);
        }
        return 0;
    case M_KEY:
    case M_KEY_ESC:
        if (m->state == M_KEY && c == '"') {
            key_done(m);
            m->state = M_COLON;
            return 0;
        }
        if (m->state == M_KEY && c == '\\') {
            m->state = M_KEY_ESC;
            m->key_len = 0xFF; /* an escaped key is never one of ours */
            return 0;
        }
        m->state = M_KEY;
        if (c < 0x20u) {
            *status = man_fail(m);
        } else if (m->key_len < sizeof(m->key_buf)) {
            m->key_buf[m->key_len++] = static_cast<char>(c);
        }
        return 0;
    case M_COLON:
        if (c == ':') {
            m->state = M_VALUE;
        } else if (!is_ws(c)) {
            *status = man_fail(m);
        }
        return 0;
    case M_VALUE:
        m->vlen = 0;
        m->num = 0;
        if (is_ws(c)) {
            return 0;
        }
        if (c == '"') {
            if (numeric_key(m->key)) {
                *status = man_fail(m);
            }
            m->state = M_STR;
            return 0;
        }
        if ((c >= '0' && c <= '9') || c == '-') {
            m->state = M_NUM;
            return 1;
        }
        if (c >= 'a' && c <= 'z' && m->key == 0) {
            m->state = M_LIT; /* true, false, null for keys we skip */
            return 1;
        }
        *status = man_fail(m); /* nested object or array, or a literal for our key */
        return 0;
    case M_STR:
        if (c == '"') {
            *status = value_done(m);
            m->state = M_AFTER;
        } else if (c == '\\') {
            m->state = M_STR_ESC;
        } else if (c < 0x20u) {
            *status = man_fail(m);
        } else {
            *status = str_char(m, static_cast<char>(c));
        }
        return 0;
    case M_STR_ESC:
        m->state = M_STR;
        if (c == '"' || c == '\\' || c == '/') {
            *status = str_char(m, static_cast<char>(c));
        } else if (m->key == MODELOTA_MANIFEST_LINE) {
            *status = str_char(m, '?'); /* the line name is informative only */
        } else if (m->key != 0) {
            *status = man_fail(m);
        }
        return 0;
    case M_NUM:
        if (c >= '0' && c <= '9') {
            uint32_t d = static_cast<uint32_t>(c - '0');
            if (m->num > (0xFFFFFFFFu - d) / 10u || (m->vlen > 0 && m->num == 0)) {
                if (m->key != 0) {
                    *status = man_fail(m); /* overflow or leading zero */
                    return 0;
                }
            }
            m->num = m->num * 10u + d;
            ++m->vlen;
            return 0;
        }
        if (c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
            if (m->key != 0) {
                *status = man_fail(m); /* our numbers are unsigned integers */
            }
            ++m->vlen;
            return 0;
        }
        if (m->vlen == 0 && m->key != 0) {
            *status = man_fail(m);
            return 0;
        }
        *status = value_done(m);
        m->state = M_AFTER;
        return *status < 0 ? 0 : 1;
    case M_LIT:
        if (c >= 'a' && c <= 'z') {
            return 0;
        }
        m->state = M_AFTER;
        return 1;
    case M_AFTER:
        if (c == ',') {
            m->state = M_KEY_START;
        } else if (c == '}') {
            m->state = M_END;
        } else if (!is_ws(c)) {
            *status = man_fail(m);
        }
        return 0;
    default: /* M_END */
        if (!is_ws(c)) {
            *status = man_fail(m);
        }
        return 0;
    }
}

}  // namespace

extern "C" void modelota_manifest_init(modelota_manifest* m) {
    memset(m, 0, sizeof(*m));
    m->state = M_START;
}

extern "C" int modelota_manifest_feed(modelota_manifest* m, const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (m->error != 0 || ++m->total > MODELOTA_MANIFEST_MAX) {
            return man_fail(m);
        }
        int status = MODELOTA_OK;
        /* a character is looked at at most twice: the second state never asks again */
        if (man_byte(m, data[i], &status) != 0 && status == MODELOTA_OK) {
            man_byte(m, data[i], &status);
        }
        if (status < 0) {
            return status;
        }
    }
    return m->error != 0 ? static_cast<int>(MODELOTA_HTTP_BAD_MANIFEST) : MODELOTA_OK;
}

extern "C" int modelota_manifest_end(modelota_manifest* m) {
    if (m->error != 0 || m->state != M_END ||
        (m->seen & MODELOTA_MANIFEST_REQUIRED) != MODELOTA_MANIFEST_REQUIRED) {
        return man_fail(m);
    }
    return MODELOTA_OK;
}

/* ------------------------------------------------------------------------
 * request writer: stages bytes in the parser's line buffer (idle while a
 * request is written) and sends them in pieces of MODELOTA_HTTP_LINE_MAX
 * ---------------------------------------------------------------------- */

namespace {

struct Out {
    modelota_http* h;
    uint32_t len;    /* bytes staged */
    uint32_t total;  /* bytes written or counted */
    bool count_only; /* measure a body for Content-Length (or hash it) */
    bool failed;
#if MODELOTA_HTTP_AUTH
    modelota_sha256* sha; /* count_only: hash the bytes too (a MAC, a body digest) */
#endif
};

void out_flush(Out& o) {
    if (o.count_only || o.len == 0 || o.failed) {
        o.len = 0;
        return;
    }
    const modelota_http_transport& io = o.h->cfg->io;
    if (io.write(io.ctx, reinterpret_cast<const uint8_t*>(o.h->p.line), o.len) != 0) {
        o.failed = true;
    }
    o.len = 0;
}

void out_bytes(Out& o, const char* s, size_t n) {
    o.total += static_cast<uint32_t>(n);
    if (o.count_only) {
#if MODELOTA_HTTP_AUTH
        if (o.sha != NULL) {
            modelota_sha256_update(o.sha, reinterpret_cast<const uint8_t*>(s), n);
        }
#endif
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        if (o.len == MODELOTA_HTTP_LINE_MAX) {
            out_flush(o);
        }
        o.h->p.line[o.len++] = s[i];
    }
}

void out_str(Out& o, const char* s) { out_bytes(o, s, strlen(s)); }

/* A MODELOTA_P string. */
void out_p(Out& o, const char* p) {
    for (char c = pgm_char(p); c != '\0'; c = pgm_char(++p)) {
        out_bytes(o, &c, 1);
    }
}

void out_u32(Out& o, uint32_t v) {
    char digits[10];
    size_t n = 0;
    do {
        digits[sizeof(digits) - 1u - n] = static_cast<char>('0' + v % 10u);
        v /= 10u;
        ++n;
    } while (v != 0 && n < sizeof(digits));
    out_bytes(o, digits + sizeof(digits) - n, n);
}

void out_i32(Out& o, int v) {
    if (v < 0) {
        out_p(o, MODELOTA_P("-"));
        out_u32(o, static_cast<uint32_t>(-(static_cast<int32_t>(v) + 1)) + 1u);
    } else {
        out_u32(o, static_cast<uint32_t>(v));
    }
}

const char kHexDigits[] MODELOTA_PROGMEM = "0123456789abcdef";

void out_hex(Out& o, const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        char two[2] = {pgm_char(kHexDigits + (b[i] >> 4)), pgm_char(kHexDigits + (b[i] & 0x0Fu))};
        out_bytes(o, two, 2);
    }
}

/* base_path without trailing slashes */
void out_base(Out& o) {
    const char* base = o.h->cfg->base_path;
    if (base == NULL) {
        return;
    }
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        --n;
    }
    out_bytes(o, base, n);
}

/* tail: a MODELOTA_P string (the path as signed: from /v1/ on) */
void out_device_path(Out& o, const char* tail) {
    out_p(o, MODELOTA_P("/v1/devices/"));
    out_str(o, o.h->cfg->device_id);
    out_p(o, tail);
}

/* Headers every request carries, up to and including Connection: close. */
void out_common(Out& o) {
    const modelota_http_config* c = o.h->cfg;
    out_p(o, MODELOTA_P(" HTTP/1.1\r\nHost: "));
    out_str(o, c->host);
    if (c->port != 80) {
        out_p(o, MODELOTA_P(":"));
        out_u32(o, c->port);
    }
    out_p(o, MODELOTA_P("\r\nUser-Agent: ModelOTA/" MODELOTA_HTTP_VERSION_STRING
                        "\r\nAccept-Encoding: identity\r\nConnection: close\r\n"));
}

int out_end(Out& o) {
    out_flush(o);
    return o.failed ? static_cast<int>(MODELOTA_HTTP_SEND) : MODELOTA_OK;
}

Out out_begin(modelota_http* h, bool count_only) {
    Out o;
    o.h = h;
    o.len = 0;
    o.total = 0;
    o.count_only = count_only;
    o.failed = false;
#if MODELOTA_HTTP_AUTH
    o.sha = NULL;
#endif
    return o;
}

/* ------------------------------------------------------------------------
 * request signatures (docs/FLEET.md, "Device authentication")
 * ---------------------------------------------------------------------- */

/* A request's path as signed and sent after base_path: one of these. */
struct Target {
    const char* tail;                /* MODELOTA_P: /v1/devices/<id><tail>, or NULL */
    const char* url;                 /* the manifest's url (tail == NULL) */
    const modelota_updater* check;   /* a check: its query */
};

/* the device paths' tails, MODELOTA_P strings (a PSTR cannot sit in an
 * aggregate initialiser: avr-gcc 5's LTO crashes on it) */
const char kCheckTail[] MODELOTA_PROGMEM = "/manifest.json?fingerprint=";
const char kReportTail[] MODELOTA_PROGMEM = "/reports";
const char kQualityTail[] MODELOTA_PROGMEM = "/quality";

void out_target(Out& o, const Target& t) {
    if (t.tail == NULL) {
        out_str(o, t.url);
        return;
    }
    out_device_path(o, t.tail);
    if (t.check != NULL) {
        out_hex(o, t.check->cfg->fingerprint, MODELOTA_FINGERPRINT_LEN);
        out_p(o, MODELOTA_P("&version="));
        out_u32(o, modelota_current_version(t.check));
    }
}

#if MODELOTA_HTTP_AUTH

uint32_t now(const modelota_http* h);

/* Seconds since 1970 as the device knows them: its own clock, else the
 * server's learnt from a signed 401 plus the time since, else 0 (the
 * server then answers with its time). */
uint32_t unix_now(const modelota_http* h) {
    const modelota_http_config* c = h->cfg;
    if (c->unix_time != NULL) {
        uint32_t t = c->unix_time(c->unix_time_ctx);
        if (t != 0) {
            return t;
        }
    }
    if (h->clock_unix == 0) {
        return 0;
    }
    return h->clock_unix + static_cast<uint32_t>(now(h) - h->clock_ms) / 1000u;
}

void hex8(char* dst, uint32_t v) {
    for (int i = 7; i >= 0; --i) {
        dst[i] = pgm_char(kHexDigits + (v & 0x0Fu));
        v >>= 4;
    }
}

/* The nonce of the last signed request (MODELOTA_HTTP_NONCE_LEN + 1 bytes). */
void nonce_of(const modelota_http* h, char* out) {
    hex8(out, h->counter);
    hex8(out + 8, h->nonce_ms);
    out[MODELOTA_HTTP_NONCE_LEN] = '\0';
}

/* Writes `Authorization: MOTA id="..", ts="..", nonce="..", [hash="..", ]mac=".."`
 * (CRLF included) for a request with this method (MODELOTA_P), target and
 * body digest (NULL: no body). The nonce is the request counter and the
 * millisecond clock: unique for the device at any one ts. */
void out_auth(Out& o, const char* method, const Target& t, const uint8_t* body_sha) {
    modelota_http* h = o.h;
    const modelota_http_config* c = h->cfg;
    const uint32_t ts = unix_now(h);
    ++h->counter;
    h->nonce_ms = now(h);
    char nonce[MODELOTA_HTTP_NONCE_LEN + 1];
    nonce_of(h, nonce);
    modelota_hmac_sha256 mac;
    modelota_hmac_sha256_init(&mac, c->secret, c->secret_len); /* length checked by init */
    Out m = out_begin(h, true);
    m.sha = &mac.sha; /* the HMAC's inner hash: the string to sign goes in */
    out_p(m, MODELOTA_P("MOTA1\n"));
    out_p(m, method);
    out_p(m, MODELOTA_P("\n"));
    out_target(m, t);
    out_p(m, MODELOTA_P("\n"));
    out_str(m, c->device_id);
    out_p(m, MODELOTA_P("\n"));
    out_u32(m, ts);
    out_p(m, MODELOTA_P("\n"));
    out_str(m, nonce);
    out_p(m, MODELOTA_P("\n"));
    if (body_sha != NULL) {
        out_hex(m, body_sha, MODELOTA_SHA256_LEN);
    }
    out_p(m, MODELOTA_P("\n"));
    uint8_t digest[MODELOTA_SHA256_LEN];
    modelota_hmac_sha256_final(&mac, digest);
    out_p(o, MODELOTA_P("Authorization: MOTA id=\""));
    out_str(o, c->device_id);
    out_p(o, MODELOTA_P("\", ts=\""));
    out_u32(o, ts);
    out_p(o, MODELOTA_P("\", nonce=\""));
    out_str(o, nonce);
    if (body_sha != NULL) {
        out_p(o, MODELOTA_P("\", hash=\""));
        out_hex(o, body_sha, MODELOTA_SHA256_LEN);
    }
    out_p(o, MODELOTA_P("\", mac=\""));
    out_hex(o, digest, MODELOTA_SHA256_LEN);
    out_p(o, MODELOTA_P("\"\r\n"));
}

/* After a 401: its server time, when its tsm is the HMAC the device's key
 * gives for that time and the nonce just sent, becomes the device's clock. */
bool take_server_time(modelota_http* h) {
    const modelota_http_config* c = h->cfg;
    if ((h->p.flags & MODELOTA_HTTP_F_AUTH_TIME) == 0 || c->secret == NULL || h->counter == 0) {
        return false;
    }
    char nonce[MODELOTA_HTTP_NONCE_LEN + 1];
    nonce_of(h, nonce);
    modelota_hmac_sha256 mac;
    modelota_hmac_sha256_init(&mac, c->secret, c->secret_len);
    Out m = out_begin(h, true);
    m.sha = &mac.sha;
    out_p(m, MODELOTA_P("MOTA1-time\n"));
    out_u32(m, h->p.auth_ts);
    out_p(m, MODELOTA_P("\n"));
    out_str(m, nonce);
    out_p(m, MODELOTA_P("\n"));
    uint8_t digest[MODELOTA_SHA256_LEN];
    modelota_hmac_sha256_final(&mac, digest);
    uint8_t diff = 0;
    for (size_t i = 0; i < MODELOTA_HTTP_TSM_KEPT; ++i) {
        diff = static_cast<uint8_t>(diff | (digest[i] ^ h->p.auth_tsm[i]));
    }
    if (diff != 0) {
        return false;
    }
    h->clock_unix = h->p.auth_ts;
    h->clock_ms = now(h);
    return true;
}

#endif /* MODELOTA_HTTP_AUTH */

/* The request line and the headers every request carries: method (a
 * MODELOTA_P string), base path + target, Host, User-Agent, Connection,
 * and the signature when the device has a secret. */
void out_request(Out& o, const char* method, const Target& t, const uint8_t* body_sha) {
    out_p(o, method);
    out_p(o, MODELOTA_P(" "));
    out_base(o);
    out_target(o, t);
    out_common(o);
#if MODELOTA_HTTP_AUTH
    if (o.h->cfg->secret != NULL) {
        out_auth(o, method, t, body_sha);
    }
#else
    (void)body_sha;
#endif
}


/* ------------------------------------------------------------------------
 * pull
 * ---------------------------------------------------------------------- */

enum EtagKind { ETAG_NONE = 0, ETAG_MANIFEST = 1, ETAG_PAYLOAD = 2 };

/* Called after the headers: 0 reads the body, 1 stops (body not wanted),
 * < 0 fails. */
typedef int (*HeadFn)(modelota_http* h, void* ctx);
/* Body bytes: 0 goes on, 1 stops (everything needed is in), < 0 fails. */
typedef int (*BodyFn)(modelota_http* h, void* ctx, const uint8_t* data, size_t n);

/* Whether a failure is the network's (worth another connection). */
bool transient(int st) {
    return st == MODELOTA_HTTP_CONNECT || st == MODELOTA_HTTP_SEND ||
           st == MODELOTA_HTTP_TIMEOUT || st == MODELOTA_HTTP_CLOSED;
}

uint32_t now(const modelota_http* h) { return h->cfg->io.now_ms(h->cfg->io.ctx); }

uint32_t timeout_of(const modelota_http* h) {
    return h->cfg->timeout_ms != 0 ? h->cfg->timeout_ms : 10000u;
}

/* Reads one response on the open connection. 0: complete, 1: a callback
 * stopped early, < 0: failure. Every wait is bounded by timeout_ms of
 * silence; the amount read is bounded by the callbacks (they stop or fail
 * past what they can use) and the parser's header limit. */
int read_response(modelota_http* h, HeadFn head, BodyFn body_fn, void* ctx) {
    const modelota_http_transport& io = h->cfg->io;
    const uint32_t timeout = timeout_of(h);
    modelota_http_parser_init(&h->p);
    h->code = 0;
    h->synced = 0;
    uint8_t buf[MODELOTA_HTTP_READ_BUFFER];
    const uint32_t start = now(h);
    uint32_t last = start;
    for (;;) {
        /* silence is bounded by timeout_ms; so is the whole head (status
         * line and headers), so a server dripping header bytes cannot hold
         * the device for MODELOTA_HTTP_HEAD_MAX timeouts */
        uint32_t t = now(h);
        uint32_t waited = static_cast<uint32_t>(t - last);
        if (waited >= timeout || (h->code == 0 && static_cast<uint32_t>(t - start) >= timeout)) {
            return MODELOTA_HTTP_TIMEOUT;
        }
        int32_t got = io.read(io.ctx, buf, sizeof(buf), timeout - waited);
        if (got == 0) {
            continue;
        }
        if (got < 0 || static_cast<uint32_t>(got) > sizeof(buf)) {
            int ev = modelota_http_parse_eof(&h->p);
            return ev == MODELOTA_HTTP_EV_DONE ? 0 : ev;
        }
        last = now(h);
        size_t off = 0;
        const size_t n = static_cast<size_t>(got);
        /* Every event but NEED consumes bytes or ends the response; a call
         * with nothing left says DONE when the headers ended a body-less answer. */
        for (;;) {
            size_t used = 0;
            const uint8_t* body = NULL;
            size_t body_len = 0;
            int ev = modelota_http_parse(&h->p, buf + off, n - off, &used, &body, &body_len);
            off += used;
            int r = 0;
            if (ev < 0) {
                return ev;
            }
            if (ev == MODELOTA_HTTP_EV_NEED) {
                break;
            }
            if (ev == MODELOTA_HTTP_EV_HEADERS) {
                h->code = h->p.code;
#if MODELOTA_HTTP_AUTH
                h->synced = (h->code == 401 && take_server_time(h)) ? 1u : 0u;
#endif
                r = head(h, ctx);
            } else if (ev == MODELOTA_HTTP_EV_BODY) {
                r = body_fn != NULL ? body_fn(h, ctx, body, body_len) : 0;
            } else if (ev == MODELOTA_HTTP_EV_DONE) {
                return 0;
            }
            if (r != 0) {
                return r;
            }
        }
    }
}

int connect_to(modelota_http* h) {
    const modelota_http_transport& io = h->cfg->io;
    if (io.connect(io.ctx, h->cfg->host, h->cfg->port) != 0) {
        return MODELOTA_HTTP_CONNECT;
    }
    return MODELOTA_OK;
}

void disconnect(modelota_http* h) { h->cfg->io.close(h->cfg->io.ctx); }

/* --- check --- */

int check_head(modelota_http* h, void*) { return h->code == 200 ? 0 : 1; }

int check_body(modelota_http* h, void*, const uint8_t* data, size_t n) {
    int st = modelota_manifest_feed(&h->m, data, n);
    return st < 0 ? st : 0;
}

int send_check(modelota_http* h, const modelota_updater* u) {
    Out o = out_begin(h, false);
    Target t = {kCheckTail, NULL, u};
    out_request(o, MODELOTA_P("GET"), t, NULL);
    if (h->etag[0] != '\0' && h->etag_kind == ETAG_MANIFEST) {
        out_p(o, MODELOTA_P("If-None-Match: "));
        out_str(o, h->etag);
        out_p(o, MODELOTA_P("\r\n"));
    }
    out_p(o, MODELOTA_P("Accept: application/json\r\n\r\n"));
    return out_end(o);
}

/* The manifest offers this device an update it can apply. */
bool wanted(const modelota_manifest* m, const modelota_updater* u) {
    uint32_t current = modelota_current_version(u);
    return memcmp(m->fingerprint, u->cfg->fingerprint, MODELOTA_FINGERPRINT_LEN) == 0 &&
           m->version > current && (m->base_version == 0 || m->base_version == current);
}

/* --- download --- */

struct Download {
    modelota_updater* u;
    modelota_store* store;
};

/* The payload's ETag, when it is the quoted SHA-256 the fleet server sends,
 * must be the manifest's (a static server's own ETags are not compared). */
bool etag_contradicts(const modelota_http* h, const char* etag) {
    if ((h->m.seen & MODELOTA_MANIFEST_SHA256) == 0 || strlen(etag) != 66u || etag[0] != '"' ||
        etag[65] != '"') {
        return false;
    }
    for (size_t i = 0; i < 32u; ++i) {
        int hi = hexval(etag[1 + 2 * i]);
        int lo = hexval(etag[2 + 2 * i]);
        if (hi < 0 || lo < 0) {
            return false; /* not a SHA-256 */
        }
        if (static_cast<uint8_t>((hi << 4) | lo) != h->m.sha256[i]) {
            return true;
        }
    }
    return false;
}

int restart_payload(modelota_http* h, Download* d) {
    modelota_abort(d->u, MODELOTA_ABORTED); /* restores what was written */
    if (d->store != NULL) {
        modelota_store_cancel(d->store);
        int st = modelota_store_begin(d->store);
        if (st < 0) {
            return st;
        }
    }
    h->fed = 0;
    if (h->restarts < 0xFFu) {
        ++h->restarts;
    }
    return modelota_begin(d->u);
}

int download_head(modelota_http* h, void* ctx) {
    Download* d = static_cast<Download*>(ctx);
    const modelota_http_parser& p = h->p;
    if (h->code == 206) {
        if ((p.flags & MODELOTA_HTTP_F_RANGE) == 0 || p.range_start != h->fed ||
            ((p.flags & MODELOTA_HTTP_F_TOTAL_KNOWN) != 0 && p.range_total != h->m.size)) {
            return MODELOTA_HTTP_BAD_RANGE;
        }
        if (h->fed > 0 && h->resumes < 0xFFu) {
            ++h->resumes;
        }
    } else if (h->code == 200) {
        if (h->fed > 0) { /* the server sent the whole payload: start over */
            int st = restart_payload(h, d);
            if (st < 0) {
                return st;
            }
        }
        if ((p.flags & MODELOTA_HTTP_F_LENGTH) != 0 && p.content_length != h->m.size) {
            return MODELOTA_HTTP_WRONG_PAYLOAD;
        }
    } else if (h->code == 416) {
        return MODELOTA_HTTP_BAD_RANGE;
    } else if (h->code == 401) {
        /* the clock was corrected: worth another connection; else the key is wrong */
        return h->synced != 0 ? MODELOTA_HTTP_CLOSED : MODELOTA_HTTP_UNAUTHORIZED;
    } else {
        return MODELOTA_HTTP_STATUS;
    }
    if (p.etag[0] != '\0') {
        if (etag_contradicts(h, p.etag)) {
            return MODELOTA_HTTP_WRONG_PAYLOAD;
        }
        if (h->fed == 0) {
            memcpy(h->etag, p.etag, sizeof(h->etag));
        }
    } else if (h->fed == 0) {
        h->etag[0] = '\0';
    }
    return 0;
}

int download_body(modelota_http* h, void* ctx, const uint8_t* data, size_t n) {
    Download* d = static_cast<Download*>(ctx);
    const modelota_http_config* c = h->cfg;
    while (n > 0) {
        uint32_t want = modelota_bytes_wanted(d->u);
        if (want == 0) {
            return 1; /* every chunk and the digest checked out */
        }
        size_t take = n < want ? n : static_cast<size_t>(want);
        if (take > h->m.size - h->fed) {
            return MODELOTA_HTTP_WRONG_PAYLOAD; /* longer than the manifest said */
        }
        if (d->store != NULL) {
            int st = modelota_store_log(d->store, data, static_cast<uint32_t>(take));
            if (st < 0) {
                return modelota_abort(d->u, st);
            }
        }
        int st = modelota_feed(d->u, data, take);
        if (st < 0) {
            return st; /* the Updater has restored the weights */
        }
        h->fed += static_cast<uint32_t>(take);
        data += take;
        n -= take;
        if (c->progress != NULL) {
            c->progress(c->progress_ctx, h->fed, h->m.size);
        }
    }
    return modelota_bytes_wanted(d->u) == 0 ? 1 : 0;
}

int send_download(modelota_http* h) {
    Out o = out_begin(h, false);
    Target t = {NULL, h->m.url, NULL};
    out_request(o, MODELOTA_P("GET"), t, NULL);
    if (h->fed > 0) {
        out_p(o, MODELOTA_P("Range: bytes="));
        out_u32(o, h->fed);
        out_p(o, MODELOTA_P("-\r\n"));
        if (h->etag[0] != '\0') {
            out_p(o, MODELOTA_P("If-Range: "));
            out_str(o, h->etag);
            out_p(o, MODELOTA_P("\r\n"));
        }
    }
    out_p(o, MODELOTA_P("\r\n"));
    return out_end(o);
}

/* Ends a failed download: the Updater restored the weights (or is made
 * to), the store's log is dropped. Returns st. */
int download_failed(Download* d, int st) {
    if (modelota_state_of(d->u) != MODELOTA_STATE_FAILED) {
        int reason = MODELOTA_ABORTED;
        if (st >= MODELOTA_STATUS_MIN && st < 0) {
            reason = st; /* the Store's own failure */
        } else if (transient(st)) {
            reason = MODELOTA_TIMEOUT; /* the Updater's name for "the bytes stopped" */
        }
        modelota_abort(d->u, reason);
    }
    if (d->store != NULL) {
        modelota_store_cancel(d->store);
    }
    return st;
}

int download(modelota_http* h, Download* d) {
    if (d->store != NULL) {
        int st = modelota_store_begin(d->store);
        if (st < 0) {
            return st;
        }
    }
    int st = modelota_begin(d->u);
    if (st < 0) {
        return download_failed(d, st);
    }
    h->fed = 0;
    h->etag[0] = '\0';
    h->etag_kind = ETAG_PAYLOAD;
    h->attempts = 0;
    h->restarts = 0;
    h->resumes = 0;
    const uint8_t max = h->cfg->max_attempts != 0 ? h->cfg->max_attempts : 5u;
    for (;;) {
        ++h->attempts;
        st = connect_to(h);
        if (st == MODELOTA_OK) {
            st = send_download(h);
        }
        if (st == MODELOTA_OK) {
            st = read_response(h, download_head, download_body, d);
        }
        disconnect(h);
        if (modelota_state_of(d->u) == MODELOTA_STATE_FAILED) {
            return download_failed(d, st < 0 ? st : modelota_last_status(d->u));
        }
        if (modelota_bytes_wanted(d->u) == 0) {
            break; /* complete, even if the connection failed after the last byte */
        }
        if (st == 0 && h->code == 206 && h->fed < h->m.size) {
            st = MODELOTA_HTTP_CLOSED; /* a shorter range than asked: ask for the rest */
        }
        if (st == 0) {
            break; /* the payload ended early: finish() says Truncated */
        }
        if (!transient(st)) {
            return download_failed(d, st);
        }
        if (h->attempts >= max) {
            return download_failed(d, st);
        }
    }
    st = modelota_finish(d->u); /* commits through the store's hook when attached */
    if (st < 0 && d->store != NULL) {
        modelota_store_cancel(d->store);
    }
    return st;
}

/* --- signed JSON POSTs: reports, quality summaries --- */

/* Writes a request body into o (called twice: once counting and hashing,
 * once sending, so both see the same bytes). */
typedef void (*WriteFn)(Out& o, const void* ctx);

int stop_head(modelota_http*, void*) { return 1; }

/* POSTs the JSON body `write` produces to <base>/v1/devices/<id><tail> (a
 * MODELOTA_P string), signed with the body's SHA-256 when the device has a
 * secret; a 401 that taught the device the server's time earns one more
 * try (with a fresh nonce and the corrected time). The answer's body is
 * not read. Returns a negative status when no answer's headers arrived,
 * else >= 0 with the answer's status in h->code. */
int post_json(modelota_http* h, const char* tail, WriteFn write, const void* ctx) {
    Out count = out_begin(h, true);
    const uint8_t* body_sha = NULL;
#if MODELOTA_HTTP_AUTH
    modelota_sha256 sha;
    uint8_t digest[MODELOTA_SHA256_LEN];
    if (h->cfg->secret != NULL) {
        modelota_sha256_init(&sha);
        count.sha = &sha;
    }
#endif
    write(count, ctx);
#if MODELOTA_HTTP_AUTH
    if (count.sha != NULL) {
        modelota_sha256_final(&sha, digest);
        body_sha = digest;
    }
#endif
    h->code = 0;
    int st = MODELOTA_OK;
    for (int tries = 0; tries < 2; ++tries) {
        st = connect_to(h);
        if (st == MODELOTA_OK) {
            Out o = out_begin(h, false);
            Target t = {tail, NULL, NULL};
            out_request(o, MODELOTA_P("POST"), t, body_sha);
            out_p(o, MODELOTA_P("Content-Type: application/json\r\nContent-Length: "));
            out_u32(o, count.total);
            out_p(o, MODELOTA_P("\r\n\r\n"));
            write(o, ctx);
            st = out_end(o);
        }
        if (st == MODELOTA_OK) {
            st = read_response(h, stop_head, NULL, NULL);
        }
        disconnect(h);
        if (st < 0 || h->code != 401 || h->synced == 0) {
            break;
        }
    }
    return st;
}

/* --- report --- */

struct ReportBody {
    const modelota_http* h;
    const char* event; /* MODELOTA_P */
    int status;
    uint32_t version;
};

/* `version` is the one the device runs after the event (the server records
 * it as the device's version): the new one after Ok, the old one otherwise. */
void report_body(Out& o, const void* ctx) {
    const ReportBody& r = *static_cast<const ReportBody*>(ctx);
    out_p(o, MODELOTA_P("{\"event\":\""));
    out_p(o, r.event);
    out_p(o, MODELOTA_P("\",\"version\":"));
    out_u32(o, r.version);
    out_p(o, MODELOTA_P(",\"status\":"));
    out_i32(o, r.status);
    out_p(o, MODELOTA_P(",\"status_name\":\""));
    out_str(o, modelota_http_status_str(r.status));
    out_p(o, MODELOTA_P("\",\"bytes\":"));
    out_u32(o, r.h->fed);
    out_p(o, MODELOTA_P("}"));
}

/* Best effort: the answer is read and ignored, but a 401 that corrected
 * the clock earns one more try (a report is the device's only news). */
void report(modelota_http* h, const char* event, int status, uint32_t version) {
    const uint16_t code = h->code; /* the download's, not the report's, is kept */
    ReportBody r = {h, event, status, version};
    post_json(h, kReportTail, report_body, &r);
    h->code = code;
}

/* --- quality summary --- */

struct Bytes {
    const char* data;
    uint32_t len;
};

void bytes_body(Out& o, const void* ctx) {
    const Bytes& b = *static_cast<const Bytes*>(ctx);
    out_bytes(o, b.data, static_cast<size_t>(b.len)); /* <= MODELOTA_HTTP_BODY_MAX */
}

bool valid_id(const char* id) {
    size_t n = strlen(id);
    if (n == 0 || n > MODELOTA_HTTP_ID_MAX || id[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; ++i) {
        char c = id[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* No space or control character may reach a request line or header. */
bool printable(const char* s, size_t max) {
    size_t n = 0;
    for (; s[n] != '\0'; ++n) {
        if (n >= max || static_cast<uint8_t>(s[n]) <= ' ' || static_cast<uint8_t>(s[n]) >= 0x7Fu) {
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" int modelota_http_init(modelota_http* h, const modelota_http_config* cfg) {
    if (h == NULL) {
        return MODELOTA_HTTP_INVALID_ARGUMENT;
    }
    memset(h, 0, sizeof(*h));
    if (cfg == NULL || cfg->io.connect == NULL || cfg->io.write == NULL || cfg->io.read == NULL ||
        cfg->io.close == NULL || cfg->io.now_ms == NULL || cfg->host == NULL ||
        cfg->host[0] == '\0' || !printable(cfg->host, 253) || cfg->device_id == NULL ||
        !valid_id(cfg->device_id) ||
        (cfg->base_path != NULL && cfg->base_path[0] != '\0' &&
         (cfg->base_path[0] != '/' || !printable(cfg->base_path, 128))) ||
        (cfg->secret != NULL && (cfg->secret_len == 0 || cfg->secret_len > MODELOTA_HMAC_KEY_MAX))) {
        return MODELOTA_HTTP_INVALID_ARGUMENT;
    }
#if !MODELOTA_HTTP_AUTH
    if (cfg->secret != NULL) {
        return MODELOTA_HTTP_INVALID_ARGUMENT; /* built without signatures */
    }
#endif
    h->cfg = cfg;
    modelota_http_parser_init(&h->p);
    modelota_manifest_init(&h->m);
    return MODELOTA_OK;
}

extern "C" int modelota_http_check(modelota_http* h, const modelota_updater* u) {
    if (h == NULL || h->cfg == NULL || u == NULL || u->cfg == NULL) {
        return MODELOTA_HTTP_INVALID_ARGUMENT;
    }
    int st = MODELOTA_OK;
    /* a second try only after a 401 that taught the device the server's time */
    for (int tries = 0; tries < 2; ++tries) {
        st = connect_to(h);
        if (st == MODELOTA_OK) {
            st = send_check(h, u);
        }
        modelota_manifest_init(&h->m);
        if (st == MODELOTA_OK) {
            st = read_response(h, check_head, check_body, NULL);
        }
        disconnect(h);
        if (st < 0 || h->code != 401 || h->synced == 0) {
            break;
        }
    }
    if (st < 0) {
        return st;
    }
    if (h->code == 401) {
        return MODELOTA_HTTP_UNAUTHORIZED;
    }
    if (h->code == 204 || h->code == 304) {
        return MODELOTA_HTTP_NO_UPDATE;
    }
    if (h->code != 200) {
        return MODELOTA_HTTP_STATUS;
    }
    st = modelota_manifest_end(&h->m);
    if (st < 0) {
        return st;
    }
    if (h->m.url[0] != '/' || h->m.size < MODELOTA_V2_MIN_HEADER_LEN) { /* shortest payload */
        return MODELOTA_HTTP_BAD_MANIFEST; /* only server-relative URLs are followed */
    }
    if (!wanted(&h->m, u)) {
        /* the same manifest will be refused again: let the server say 304 */
        memcpy(h->etag, h->p.etag, sizeof(h->etag));
        h->etag_kind = ETAG_MANIFEST;
        return MODELOTA_HTTP_NO_UPDATE;
    }
    return MODELOTA_OK;
}

extern "C" int modelota_http_pull(modelota_http* h, modelota_updater* u, modelota_store* store) {
    if (u == NULL) {
        return MODELOTA_HTTP_INVALID_ARGUMENT;
    }
    const int state = modelota_state_of(u);
    if (state != MODELOTA_STATE_IDLE && state != MODELOTA_STATE_DONE &&
        state != MODELOTA_STATE_FAILED) {
        return MODELOTA_BAD_STATE; /* another transfer (serial link...) owns the Updater */
    }
    int st = modelota_http_check(h, u);
    if (st != MODELOTA_OK) {
        return st;
    }
    Download d;
    d.u = u;
    d.store = store;
    st = download(h, &d);
    if (h->cfg->no_report == 0) {
        bool applied = st == MODELOTA_OK || (st < 0 && st >= MODELOTA_STATUS_MIN);
        report(h, applied ? MODELOTA_P("apply") : MODELOTA_P("download"), st,
               modelota_current_version(u));
    }
    h->etag[0] = '\0'; /* the next check starts without If-None-Match */
    h->etag_kind = ETAG_NONE;
    return st;
}

extern "C" int modelota_http_post_quality(modelota_http* h, const char* json, uint32_t len) {
    if (h == NULL || h->cfg == NULL || json == NULL || len == 0 || len > MODELOTA_HTTP_BODY_MAX) {
        return MODELOTA_HTTP_INVALID_ARGUMENT;
    }
    Bytes body = {json, len};
    int st = post_json(h, kQualityTail, bytes_body, &body);
    if (st < 0) {
        return st;
    }
    if (h->code == 401) {
        return MODELOTA_HTTP_UNAUTHORIZED;
    }
    if (h->code < 200 || h->code > 299) {
        return MODELOTA_HTTP_STATUS;
    }
    return MODELOTA_OK;
}

extern "C" int modelota_http_code(const modelota_http* h) { return h->code; }

extern "C" const modelota_manifest* modelota_http_manifest(const modelota_http* h) {
    return &h->m;
}

extern "C" const char* modelota_http_status_str(int status) {
#if MODELOTA_STATUS_STRINGS
    switch (status) {
    case MODELOTA_HTTP_NO_UPDATE: return "NoUpdate";
    case MODELOTA_HTTP_CONNECT: return "HttpConnect";
    case MODELOTA_HTTP_SEND: return "HttpSend";
    case MODELOTA_HTTP_TIMEOUT: return "HttpTimeout";
    case MODELOTA_HTTP_CLOSED: return "HttpClosed";
    case MODELOTA_HTTP_BAD_RESPONSE: return "HttpBadResponse";
    case MODELOTA_HTTP_HEAD_TOO_LARGE: return "HttpHeadTooLarge";
    case MODELOTA_HTTP_UNSUPPORTED: return "HttpUnsupported";
    case MODELOTA_HTTP_STATUS: return "HttpStatus";
    case MODELOTA_HTTP_BAD_MANIFEST: return "BadManifest";
    case MODELOTA_HTTP_BAD_RANGE: return "BadRange";
    case MODELOTA_HTTP_WRONG_PAYLOAD: return "WrongPayload";
    case MODELOTA_HTTP_INVALID_ARGUMENT: return "HttpInvalidArgument";
    case MODELOTA_HTTP_UNAUTHORIZED: return "HttpUnauthorized";
    default: return modelota_status_str(status);
    }
#else
    (void)status;
    return "";
#endif
}
