/*
 * ModelOTA Link: the device side of the serial update protocol
 * (docs/PROTOCOL.md). Transport-agnostic: the application hands it the
 * bytes it receives (modelota_link_rx), gives it a write callback and a
 * millisecond clock, and calls modelota_link_poll() often so an abandoned
 * transfer times out. No heap: the caller lends the frame buffer.
 *
 *   frame := 0xA5 0x5A | type u8 | len u16 LE | body[len] | CRC32(type..body) LE
 *
 * DATA frames must arrive in order; a gap is answered with NAK(acked), a
 * duplicate with ACK(acked). Every byte accepted goes to modelota_feed (and
 * to modelota_store_log first when a store is attached). A START carrying the
 * transfer_id of the open transfer resumes it at the acked offset.
 *
 * Protocol version 2 (a noisy line): every DATA frame of the open transfer,
 * in order or not, keeps it alive (resume timer), and a lost frame is NAKed
 * once per go-back-N round of the host, not once per gap; INFO also carries
 * the resume timeout. Version 1 hosts work unchanged.
 */
#ifndef MODELOTA_LINK_H
#define MODELOTA_LINK_H

#include <stdint.h>

#include "status.h"
#include "store.h"
#include "updater.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MODELOTA_LINK_PROTO_VERSION 2u
#define MODELOTA_LINK_SYNC0 0xA5u
#define MODELOTA_LINK_SYNC1 0x5Au
#define MODELOTA_LINK_OVERHEAD 9u  /* sync 2 + type 1 + len 2 + crc 4 */
#define MODELOTA_LINK_DATA_HEAD 4u /* offset u32 before the bytes of a DATA frame */
/* frame_buf holds type, len and body of one incoming frame: 3 + body bytes. */
#define MODELOTA_LINK_MIN_FRAME_BUF 32u
#define MODELOTA_LINK_DEFAULT_WINDOW 4u
#define MODELOTA_LINK_INFO_LEN 49u /* 45 in protocol version 1 */
#define MODELOTA_LINK_TX_LEN 64u
/* A frame whose bytes stop for this long is dropped and the receiver hunts
 * for SYNC again: a host that lost the link mid-frame and reconnects is
 * heard at once, not after its first frames were swallowed as the tail of
 * the cut one. */
#ifndef MODELOTA_LINK_GAP_MS
#define MODELOTA_LINK_GAP_MS 50u
#endif

/* Frame types, host -> device */
#define MODELOTA_LINK_HELLO 0x01u
#define MODELOTA_LINK_START 0x02u
#define MODELOTA_LINK_DATA 0x03u
#define MODELOTA_LINK_COMMIT 0x04u
#define MODELOTA_LINK_ABORT 0x05u
#define MODELOTA_LINK_STATUS 0x06u
/* Frame types, device -> host */
#define MODELOTA_LINK_INFO 0x81u
#define MODELOTA_LINK_ACK 0x82u
#define MODELOTA_LINK_NAK 0x83u
#define MODELOTA_LINK_RESULT 0x84u

/* NAK reasons */
#define MODELOTA_NAK_CRC 1u         /* a frame failed its CRC (or was cut) */
#define MODELOTA_NAK_GAP 2u         /* DATA beyond the acked offset: one was lost */
#define MODELOTA_NAK_NO_TRANSFER 3u /* DATA or COMMIT with no open transfer */
#define MODELOTA_NAK_RANGE 4u       /* DATA past total_len */
#define MODELOTA_NAK_INCOMPLETE 5u  /* COMMIT before every byte was acked */
#define MODELOTA_NAK_MALFORMED 6u   /* body too short for its type, unknown type */

/* INFO state byte */
#define MODELOTA_LINK_IDLE 0u      /* no open transfer */
#define MODELOTA_LINK_RECEIVING 1u /* a transfer is open (resumable) */

typedef struct modelota_link_io {
    void* ctx;
    /* Sends n bytes; returns 0 on success. */
    int (*write)(void* ctx, const uint8_t* data, uint32_t n);
    /* Milliseconds from any origin; may wrap. */
    uint32_t (*now_ms)(void* ctx);
} modelota_link_io;

typedef struct modelota_link_config {
    modelota_updater* updater; /* initialised with modelota_init(updater, cfg) */
    const modelota_config* cfg;
    modelota_store* store; /* may be NULL; else cfg was attached to it */
    modelota_link_io io;
    uint8_t* frame_buf;
    uint32_t frame_buf_len;     /* >= MODELOTA_LINK_MIN_FRAME_BUF; DATA carries up to len-7 bytes */
    uint32_t resume_timeout_ms; /* open transfer with no START/DATA for this long: aborted */
    uint8_t window;             /* frames the host may have in flight (0: default 4) */
    uint32_t (*weights_crc)(void* app); /* optional: CRC32 of the live weights */
    int32_t (*probe)(void* app);        /* optional: a fixed inference output */
    void* app;
} modelota_link_config;

/* Private fields; public so it can be static or on the stack. */
typedef struct modelota_link {
    modelota_link_config c;
    uint32_t total_len;
    uint32_t transfer_id;
    uint32_t acked;
    uint32_t last_rx_ms;
    uint32_t last_byte_ms;
    uint32_t rx_pos;  /* bytes of type/len/body gathered */
    uint32_t rx_need; /* 3 + len once the header is in */
    uint32_t last_id; /* transfer_id of the last finished transfer */
    uint32_t frames_ok;
    uint32_t frames_bad;
    uint32_t gap_off; /* offset of the last DATA past acked since the last NAK */
    uint8_t rx_state;
    uint8_t open;
    uint8_t nak_sent;  /* a NAK is outstanding for acked: repeat it once per host round */
    uint8_t since_nak; /* frames lost since that NAK (at most window) */
    int8_t last_status;
    uint8_t crc_bytes[4];
    uint8_t tx[MODELOTA_LINK_TX_LEN];
} modelota_link;

/* MODELOTA_INVALID_ARGUMENT on a missing pointer or a short frame buffer. */
int modelota_link_init(modelota_link* l, const modelota_link_config* c);
/* Bytes from the host, any split. Returns MODELOTA_OK, or MODELOTA_STORAGE_IO
 * when io.write failed. Transfer outcomes are reported to the host (RESULT)
 * and by modelota_link_last_result(). */
int modelota_link_rx(modelota_link* l, const uint8_t* data, uint32_t n);
/* Aborts an open transfer silent for resume_timeout_ms (MODELOTA_TIMEOUT,
 * weights restored), and drops (and NAKs, a transfer being open) a frame whose
 * bytes stopped for MODELOTA_LINK_GAP_MS. Returns MODELOTA_OK, the timeout
 * status it recorded, or MODELOTA_STORAGE_IO when io.write failed. */
int modelota_link_poll(modelota_link* l);

int modelota_link_busy(const modelota_link* l);        /* 1: a transfer is open */
int modelota_link_last_result(const modelota_link* l); /* status of the last finished transfer */
uint32_t modelota_link_acked(const modelota_link* l);
uint32_t modelota_link_max_data(const modelota_link* l); /* DATA bytes per frame */
uint32_t modelota_link_frames_bad(const modelota_link* l);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MODELOTA_LINK_H */
