/*
 * ModelOTA HTTP pull: the device side of the fleet protocol (docs/FLEET.md)
 * over any byte transport (plain TCP, TLS, a modem's socket...).
 *
 *   modelota_http_config c = {...};          // transport callbacks, host, id
 *   modelota_http h;
 *   modelota_http_init(&h, &c);
 *   int st = modelota_http_pull(&h, &updater, store_or_NULL);
 *   // MODELOTA_OK: new weights in place; MODELOTA_HTTP_NO_UPDATE: nothing to do;
 *   // < 0: modelota_http_status_str(st), old weights in place
 *
 * One pull is: GET the device's manifest (with its fingerprint and version
 * as query), decide, GET the payload feeding the Updater as bytes arrive,
 * and on a lost connection reconnect and continue with
 * `Range: bytes=<bytes fed>-` + `If-Range: <ETag>` (a 200 instead of a 206
 * starts the payload over), then finish and POST a report.
 * modelota_http_post_quality() sends the model-quality summary the same way.
 *
 * With a device secret (`modelota fleet register` prints it) every request
 * is signed: `Authorization: MOTA id=.., ts=.., nonce=.., [hash=..,] mac=..`,
 * HMAC-SHA256 over method, path, id, time, nonce and the body's SHA-256
 * (docs/FLEET.md, "Device authentication"). A device without a clock learns
 * the server's from a signed 401 answer and sends the request again.
 *
 * No heap. The parser, the manifest reader and the request writer are
 * streaming state machines with fixed buffers (sizes below); everything is
 * bounded: header bytes, manifest bytes, connections, and every wait.
 * Status codes are MODELOTA_HTTP_* (from -100 down, never colliding with
 * modelota_status); a failing Updater's own status is passed through.
 */
#ifndef MODELOTA_HTTP_H
#define MODELOTA_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "format.h"
#include "sha256.h"
#include "status.h"
#include "store.h"
#include "updater.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest header line kept (longer lines are cut; a cut ETag is dropped).
 * The same buffer stages outgoing requests. */
#ifndef MODELOTA_HTTP_LINE_MAX
#define MODELOTA_HTTP_LINE_MAX 128u
#endif
/* Total bytes of status line + headers (and chunked framing) accepted per
 * response: bounds the work garbage can cause. */
#ifndef MODELOTA_HTTP_HEAD_MAX
#define MODELOTA_HTTP_HEAD_MAX 4096u
#endif
/* ETag kept for If-Range, quotes included ("<64 hex>" is 66 chars). */
#ifndef MODELOTA_HTTP_ETAG_MAX
#define MODELOTA_HTTP_ETAG_MAX 72u
#endif
/* Manifest limits (docs/FLEET.md: at most 512 bytes). */
#define MODELOTA_MANIFEST_MAX 512u
#ifndef MODELOTA_HTTP_URL_MAX
#define MODELOTA_HTTP_URL_MAX 96u /* "/v1/payloads/<64 hex>.mota" is 82 */
#endif
#ifndef MODELOTA_HTTP_NAME_MAX
#define MODELOTA_HTTP_NAME_MAX 33u /* model line name kept (cut beyond 32) */
#endif
/* Bytes read from the transport per call, on the stack. */
#ifndef MODELOTA_HTTP_READ_BUFFER
#define MODELOTA_HTTP_READ_BUFFER 64u
#endif
#define MODELOTA_HTTP_ID_MAX 64u
/* Longest body modelota_http_post_quality sends (the fleet server's limit). */
#define MODELOTA_HTTP_BODY_MAX 4096u
#define MODELOTA_HTTP_VERSION_STRING "0.1"
#define MODELOTA_HTTP_NONCE_LEN 16u /* hex digits */
#define MODELOTA_HTTP_TSM_KEPT 16u /* bytes of a server time's HMAC compared (128 bits) */

typedef enum modelota_http_status {
    MODELOTA_HTTP_NO_UPDATE = 1,          /* nothing newer for this model: not an error */
    MODELOTA_HTTP_CONNECT = -100,         /* transport connect() failed */
    MODELOTA_HTTP_SEND = -101,            /* transport write() failed */
    MODELOTA_HTTP_TIMEOUT = -102,         /* no byte for timeout_ms */
    MODELOTA_HTTP_CLOSED = -103,          /* connection ended before the response did */
    MODELOTA_HTTP_BAD_RESPONSE = -104,    /* status line, header or chunk framing malformed */
    MODELOTA_HTTP_HEAD_TOO_LARGE = -105,  /* headers longer than MODELOTA_HTTP_HEAD_MAX */
    MODELOTA_HTTP_UNSUPPORTED = -106,     /* a transfer or content coding other than chunked */
    MODELOTA_HTTP_STATUS = -107,          /* unexpected HTTP status: modelota_http_code() */
    MODELOTA_HTTP_BAD_MANIFEST = -108,    /* not a flat manifest with the required keys */
    MODELOTA_HTTP_BAD_RANGE = -109,       /* 206 for other bytes than asked, or 416 */
    MODELOTA_HTTP_WRONG_PAYLOAD = -110,   /* length or ETag differs from the manifest */
    MODELOTA_HTTP_INVALID_ARGUMENT = -111, /* config: missing callback, bad id, path too long */
    MODELOTA_HTTP_UNAUTHORIZED = -112     /* 401: unknown device, wrong secret, or none */
} modelota_http_status;

#define MODELOTA_HTTP_STATUS_MIN (-112)

/* Short name of any status a pull returns: the HTTP ones ("Timeout" is the
 * Updater's; this one is "HttpTimeout"), "NoUpdate", and modelota_status
 * names for the rest. Never NULL. */
const char* modelota_http_status_str(int status);

/* ---- transport ---------------------------------------------------------- */

typedef struct modelota_http_transport {
    void* ctx;
    /* Opens a connection; 0 on success. */
    int (*connect)(void* ctx, const char* host, uint16_t port);
    /* Sends all n bytes; 0 on success. */
    int (*write)(void* ctx, const uint8_t* data, uint32_t n);
    /* Reads up to cap bytes, waiting at most wait_ms for the first: returns
     * the count (> 0), 0 when nothing arrived in time, -1 when the peer
     * closed the connection (after its last byte was read) or it failed. */
    int32_t (*read)(void* ctx, uint8_t* dst, uint32_t cap, uint32_t wait_ms);
    /* Closes the connection (also called when already closed). */
    void (*close)(void* ctx);
    /* Milliseconds from any origin; may wrap. */
    uint32_t (*now_ms)(void* ctx);
} modelota_http_transport;

/* ---- response parser ---------------------------------------------------- */

typedef enum modelota_http_event {
    MODELOTA_HTTP_EV_NEED = 0,    /* every byte consumed: feed more */
    MODELOTA_HTTP_EV_HEADERS = 1, /* status line and headers complete */
    MODELOTA_HTTP_EV_BODY = 2,    /* *body, *body_len: decoded body bytes (a slice of data) */
    MODELOTA_HTTP_EV_DONE = 3     /* the response is complete */
} modelota_http_event;

#define MODELOTA_HTTP_F_LENGTH 0x01u    /* Content-Length present */
#define MODELOTA_HTTP_F_CHUNKED 0x02u   /* Transfer-Encoding: chunked (decoded) */
#define MODELOTA_HTTP_F_RANGE 0x04u     /* Content-Range present */
#define MODELOTA_HTTP_F_CLOSE 0x08u     /* Connection: close */
#define MODELOTA_HTTP_F_ETAG_CUT 0x10u  /* an ETag longer than the buffer was dropped */
#define MODELOTA_HTTP_F_TOTAL_KNOWN 0x20u /* Content-Range total is not "*" */
#define MODELOTA_HTTP_F_AUTH_TIME 0x40u /* WWW-Authenticate: MOTA ts=.., tsm=.. (auth_ts, auth_tsm) */

/* Fields are valid after MODELOTA_HTTP_EV_HEADERS. Private otherwise. */
typedef struct modelota_http_parser {
    uint32_t content_length;
    uint32_t range_start; /* Content-Range: bytes start-end/total */
    uint32_t range_end;
    uint32_t range_total;
    uint32_t left;        /* body bytes left: of Content-Length, or of the current chunk */
    uint32_t body_seen;   /* decoded body bytes delivered */
    uint16_t head_bytes;  /* header and framing bytes seen (bounded) */
    uint16_t code;        /* HTTP status code */
    uint16_t line_len;
    uint8_t state;
    uint8_t flags;        /* MODELOTA_HTTP_F_* */
    uint8_t cut;          /* the current line overflowed line[] */
    uint8_t hex_digits;   /* chunk-size digits so far */
    int16_t error;        /* sticky error, 0 if none */
    uint32_t auth_ts;     /* a 401's server time (F_AUTH_TIME) */
    uint8_t auth_tsm[MODELOTA_HTTP_TSM_KEPT]; /* its HMAC's first bytes (the pull checks them) */
    char etag[MODELOTA_HTTP_ETAG_MAX]; /* NUL-terminated, "" if none */
    char line[MODELOTA_HTTP_LINE_MAX];
} modelota_http_parser;

void modelota_http_parser_init(modelota_http_parser* p);

/* Consumes bytes from data[0..n) until an event; *used says how many.
 * Returns a modelota_http_event, or a negative MODELOTA_HTTP_* status (then
 * every later call returns it too). Call again with the rest after an event.
 * A call with n == 0 returns EV_DONE when the response is complete (right
 * after the HEADERS of a 204, a 304 or a Content-Length: 0 answer), else
 * EV_NEED. After EV_DONE it consumes nothing and returns EV_DONE again. */
int modelota_http_parse(modelota_http_parser* p, const uint8_t* data, size_t n, size_t* used,
                        const uint8_t** body, size_t* body_len);

/* The connection ended: MODELOTA_HTTP_EV_DONE when that completes the
 * response (a body delimited by the close), else MODELOTA_HTTP_CLOSED or
 * the parser's error. */
int modelota_http_parse_eof(modelota_http_parser* p);

/* ---- manifest reader ---------------------------------------------------- */

#define MODELOTA_MANIFEST_VERSION 0x01u
#define MODELOTA_MANIFEST_BASE_VERSION 0x02u
#define MODELOTA_MANIFEST_SIZE 0x04u
#define MODELOTA_MANIFEST_FINGERPRINT 0x08u
#define MODELOTA_MANIFEST_SHA256 0x10u
#define MODELOTA_MANIFEST_URL 0x20u
#define MODELOTA_MANIFEST_LINE 0x40u
/* Keys a manifest must have. */
#define MODELOTA_MANIFEST_REQUIRED                                                            \
    (MODELOTA_MANIFEST_VERSION | MODELOTA_MANIFEST_SIZE | MODELOTA_MANIFEST_FINGERPRINT |    \
     MODELOTA_MANIFEST_URL)

typedef struct modelota_manifest {
    uint32_t version;
    uint32_t base_version;
    uint32_t size;
    uint32_t num;        /* private: number being read */
    uint16_t total;      /* private: bytes consumed */
    uint16_t vlen;       /* private: value characters so far */
    uint8_t seen;        /* MODELOTA_MANIFEST_* keys present */
    uint8_t state;       /* private */
    uint8_t key;         /* private: key being read (bit) or 0 */
    uint8_t key_len;     /* private */
    uint8_t error;       /* private */
    uint8_t fingerprint[MODELOTA_FINGERPRINT_LEN];
    uint8_t sha256[32];
    char key_buf[13];    /* private: longest known key is "base_version" */
    char url[MODELOTA_HTTP_URL_MAX];   /* NUL-terminated */
    char line[MODELOTA_HTTP_NAME_MAX]; /* NUL-terminated, cut to fit */
} modelota_manifest;

void modelota_manifest_init(modelota_manifest* m);
/* Streams manifest bytes in; MODELOTA_OK so far, or MODELOTA_HTTP_BAD_MANIFEST. */
int modelota_manifest_feed(modelota_manifest* m, const uint8_t* data, size_t n);
/* End of input: MODELOTA_OK when one complete object with every required
 * key (and well-formed values) was read. */
int modelota_manifest_end(modelota_manifest* m);

/* ---- pull --------------------------------------------------------------- */

/* Progress after every piece fed: payload bytes so far of `total`. */
typedef void (*modelota_http_progress_fn)(void* ctx, uint32_t bytes, uint32_t total);

typedef struct modelota_http_config {
    modelota_http_transport io;
    const char* host;      /* server name for connect() and the Host header */
    uint16_t port;         /* 80, 443 with a TLS transport, ... */
    const char* base_path; /* prefix of every path, "" or NULL for the server root */
    const char* device_id; /* [A-Za-z0-9._:-]{1,64}, not starting with '.' */
    uint32_t timeout_ms;   /* longest silence per response; 0: 10000 */
    uint8_t max_attempts;  /* connections per payload download; 0: 5 */
    uint8_t no_report;     /* 1: do not POST a report after a download */
    modelota_http_progress_fn progress;
    void* progress_ctx;
    /* The device's secret from `modelota fleet register` (32 bytes; the 64
     * hex digits it prints, decoded), kept by the caller. NULL: requests
     * go unsigned (a static tree; the fleet server answers 401). */
    const uint8_t* secret;
    uint8_t secret_len;    /* 1..64 */
    /* Optional: seconds since 1970 from an RTC or NTP (0: not known yet).
     * Without it the device takes the server's time from a signed 401. */
    uint32_t (*unix_time)(void* ctx);
    void* unix_time_ctx;
} modelota_http_config;

typedef struct modelota_http {
    const modelota_http_config* cfg;
    modelota_http_parser p;
    modelota_manifest m;
    uint32_t fed;         /* payload bytes fed to the Updater */
    uint16_t code;        /* HTTP status of the last response read */
    uint8_t attempts;     /* connections used by the last download */
    uint8_t restarts;     /* 200 answers to a Range request in the last download */
    uint8_t resumes;      /* 206 answers to a Range request in the last download */
    uint8_t etag_kind;    /* private: whose ETag etag[] holds */
    uint8_t synced;       /* the last response carried a server time that verified */
    uint32_t clock_unix;  /* server time learnt (0: none), at clock_ms on now_ms() */
    uint32_t clock_ms;
    uint32_t counter;     /* requests signed since init: the nonce is hex(counter) hex(nonce_ms) */
    uint32_t nonce_ms;    /* now_ms() when the last request was signed */
    /* The payload's ETag during a download (for If-Range); after a check
     * that declined the manifest, the manifest's (for If-None-Match). */
    char etag[MODELOTA_HTTP_ETAG_MAX];
} modelota_http;

/* Checks the configuration: MODELOTA_OK or MODELOTA_HTTP_INVALID_ARGUMENT. */
int modelota_http_init(modelota_http* h, const modelota_http_config* cfg);

/*
 * One full check-and-update. `u` is an initialised Updater (modelota_init);
 * its fingerprint and current version are what the device reports and
 * compares. `store` is NULL, or the Store the Updater's config was attached
 * to (modelota_store_attach_ram/_flash): the payload is logged as it arrives
 * and committed by finish().
 *
 * Returns MODELOTA_OK (new weights in place and committed),
 * MODELOTA_HTTP_NO_UPDATE, a negative MODELOTA_HTTP_* status, or the
 * Updater's own status when it refused the payload. On any failure the old
 * weights are in place (see modelota_weights_intact). MODELOTA_BAD_STATE,
 * with nothing sent and nothing touched, while the Updater is in the middle
 * of another transfer (a serial link's, say).
 */
int modelota_http_pull(modelota_http* h, modelota_updater* u, modelota_store* store);

/* Only the check: fills the manifest (modelota_http_manifest) and returns
 * MODELOTA_OK when it offers an update for `u`, MODELOTA_HTTP_NO_UPDATE, or
 * a negative status. */
int modelota_http_check(modelota_http* h, const modelota_updater* u);

/*
 * Sends a model-quality summary (docs/FLEET.md, "Model quality"): `len`
 * bytes of JSON, as modelota_quality_json() writes them, POSTed to
 * <base>/v1/devices/<id>/quality, signed like every other request (the
 * body's SHA-256 in the signature); a 401 carrying a server time that
 * verifies sets the device's clock and the request is sent once more,
 * with a fresh nonce. One connection otherwise: no retry on a network
 * error (send the summary again later; the server keeps the latest per
 * device and version). Does not touch the Updater or the pull's state.
 *
 * Returns MODELOTA_OK when the server took it (2xx),
 * MODELOTA_HTTP_UNAUTHORIZED (401), MODELOTA_HTTP_STATUS for any other
 * answer (modelota_http_code(): 400 BadQuality, 404 unknown device or a
 * static tree, 429, 5xx...), a network status (HttpConnect, HttpSend,
 * HttpTimeout, HttpClosed...), or MODELOTA_HTTP_INVALID_ARGUMENT (nothing
 * sent) for a NULL or empty body or one over MODELOTA_HTTP_BODY_MAX bytes.
 */
int modelota_http_post_quality(modelota_http* h, const char* json, uint32_t len);

/* HTTP status code of the last check, download or quality summary response
 * (0 if none was read); the report's answer is not kept. */
int modelota_http_code(const modelota_http* h);
const modelota_manifest* modelota_http_manifest(const modelota_http* h);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_HTTP_H */
