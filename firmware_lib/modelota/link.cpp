/*
 * ModelOTA Link: device side of the serial update protocol. See link.h and
 * docs/PROTOCOL.md.
 */
#include "link.h"

#include <string.h>

#include "crc32.h"
#include "format.h"

namespace {

enum RxState { RX_SYNC0 = 0, RX_SYNC1 = 1, RX_FRAME = 2, RX_CRC = 3 };

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

uint32_t now(const modelota_link* l) {
    return l->c.io.now_ms != NULL ? l->c.io.now_ms(l->c.io.ctx) : 0u;
}

/* Frames a body already placed at tx + 5 and sends it. */
int send(modelota_link* l, uint8_t type, uint32_t body_len) {
    uint8_t* t = l->tx;
    t[0] = MODELOTA_LINK_SYNC0;
    t[1] = MODELOTA_LINK_SYNC1;
    t[2] = type;
    put_u16(t + 3, body_len);
    uint32_t crc = modelota_crc32(0u, t + 2, static_cast<size_t>(3u + body_len));
    put_u32(t + 5 + body_len, crc);
    return l->c.io.write(l->c.io.ctx, t, 5u + body_len + 4u) == 0 ? MODELOTA_OK
                                                                  : MODELOTA_STORAGE_IO;
}

int send_ack(modelota_link* l, int status) {
    put_u32(l->tx + 5, l->acked);
    l->tx[9] = static_cast<uint8_t>(static_cast<int8_t>(status));
    return send(l, MODELOTA_LINK_ACK, 5u);
}

int send_nak(modelota_link* l, uint8_t reason) {
    put_u32(l->tx + 5, l->acked);
    l->tx[9] = reason;
    return send(l, MODELOTA_LINK_NAK, 5u);
}

uint32_t weights_crc(const modelota_link* l) {
    return l->c.weights_crc != NULL ? l->c.weights_crc(l->c.app) : 0u;
}

int send_result(modelota_link* l, int status) {
    uint8_t* b = l->tx + 5;
    b[0] = static_cast<uint8_t>(static_cast<int8_t>(status));
    put_u32(b + 1, modelota_current_version(l->c.updater));
    put_u32(b + 5, weights_crc(l));
    return send(l, MODELOTA_LINK_RESULT, 9u);
}

int send_info(modelota_link* l) {
    uint8_t* b = l->tx + 5;
    b[0] = static_cast<uint8_t>(MODELOTA_LINK_PROTO_VERSION);
    b[1] = l->open ? static_cast<uint8_t>(MODELOTA_LINK_RECEIVING)
                   : static_cast<uint8_t>(MODELOTA_LINK_IDLE);
    memcpy(b + 2, l->c.cfg->fingerprint, MODELOTA_FINGERPRINT_LEN);
    put_u32(b + 18, modelota_current_version(l->c.updater));
    put_u32(b + 22, l->c.cfg->target.size);
    put_u16(b + 26, modelota_link_max_data(l));
    b[28] = l->c.window;
    put_u32(b + 29, l->open ? l->transfer_id : 0u);
    put_u32(b + 33, l->open ? l->acked : 0u);
    put_u32(b + 37, weights_crc(l));
    int32_t p = l->c.probe != NULL ? l->c.probe(l->c.app) : 0;
    put_u32(b + 41, static_cast<uint32_t>(p));
    put_u32(b + 45, l->c.resume_timeout_ms);
    return send(l, MODELOTA_LINK_INFO, MODELOTA_LINK_INFO_LEN);
}

/* A frame for the open transfer was lost before `acked`: a frame failed its
 * CRC (reason CRC), or a DATA frame at `offset` past acked arrived (GAP).
 * Answered with NAK{acked} once per go-back-N round of the host: the frames
 * of the round that follow a lost one are dropped silently, and the NAK is
 * repeated only when the host has evidently gone back and lost its resent
 * frame at acked too: a DATA frame past acked at or below the last one seen
 * (the offsets went back: a new round), or more losses since the NAK than
 * one round of `window` frames can hold. Nothing is NAKed once every byte
 * is in. */
int on_loss(modelota_link* l, uint8_t reason, uint32_t offset) {
    if (l->acked == l->total_len) {
        /* everything is in: what was lost is a duplicate or a COMMIT the host
         * will repeat; a NAK could only be mistaken for an answer to COMMIT */
        return MODELOTA_OK;
    }
    bool gap = reason == MODELOTA_NAK_GAP;
    if (l->nak_sent) {
        l->since_nak++; /* reset at each NAK, so never past window (<= 255) */
        bool again = l->since_nak >= l->c.window || (gap && offset <= l->gap_off);
        if (gap) {
            l->gap_off = offset;
        }
        if (!again) {
            return MODELOTA_OK;
        }
    }
    l->nak_sent = 1;
    l->since_nak = 0;
    l->gap_off = gap ? offset : 0u; /* 0: no DATA past acked seen yet */
    return send_nak(l, reason);
}

/* A frame failed its CRC or was cut short: counted, and a loss if a transfer is open. */
int bad_frame(modelota_link* l) {
    l->frames_bad++;
    return l->open ? on_loss(l, MODELOTA_NAK_CRC, 0u) : MODELOTA_OK;
}

/* Drops the frame being gathered when its bytes stopped for GAP_MS (a cut
 * link, or a corrupted length field that has the receiver wait for bytes
 * that never come). A frame that had begun (SYNC seen) is a lost frame:
 * NAKed like a CRC failure, at once rather than after the host's
 * retransmission timeout. */
int drop_stalled(modelota_link* l, uint32_t t) {
    if (l->rx_state == RX_SYNC0 ||
        static_cast<uint32_t>(t - l->last_byte_ms) < static_cast<uint32_t>(MODELOTA_LINK_GAP_MS)) {
        return MODELOTA_OK;
    }
    bool begun = l->rx_state >= RX_FRAME;
    l->rx_state = RX_SYNC0;
    return begun ? bad_frame(l) : MODELOTA_OK;
}

/* Ends the open transfer with `status` (< 0): weights restored, store log dropped. */
int end_failed(modelota_link* l, int status) {
    if (l->c.store != NULL) {
        modelota_store_cancel(l->c.store);
    }
    int st = status;
    if (modelota_state_of(l->c.updater) != MODELOTA_STATE_FAILED) {
        st = modelota_abort(l->c.updater, status);
    }
    l->open = 0;
    l->last_id = l->transfer_id;
    l->last_status = static_cast<int8_t>(st);
    return send_result(l, st);
}

int on_start(modelota_link* l, const uint8_t* body, uint32_t len) {
    if (len < 8u) {
        return send_nak(l, MODELOTA_NAK_MALFORMED);
    }
    uint32_t total = modelota_load_u32le(body);
    uint32_t id = modelota_load_u32le(body + 4);
    if (l->open) {
        if (id == l->transfer_id && total == l->total_len) {
            l->last_rx_ms = now(l);
            l->nak_sent = 0;
            return send_ack(l, MODELOTA_OK); /* resume at the acked offset */
        }
        if (l->c.store != NULL) {
            modelota_store_cancel(l->c.store);
        }
        modelota_abort(l->c.updater, MODELOTA_ABORTED);
        l->open = 0;
    }
    l->transfer_id = id;
    l->total_len = total;
    l->acked = 0;
    l->nak_sent = 0;
    int st = MODELOTA_OK;
    if (l->c.store != NULL) {
        st = modelota_store_begin(l->c.store);
    }
    if (st >= 0) {
        st = modelota_begin(l->c.updater);
        if (st < 0 && l->c.store != NULL) {
            modelota_store_cancel(l->c.store);
        }
    }
    if (st < 0) {
        l->last_id = id;
        l->last_status = static_cast<int8_t>(st);
        return send_result(l, st);
    }
    l->open = 1;
    l->last_rx_ms = now(l);
    return send_ack(l, MODELOTA_OK);
}

int on_data(modelota_link* l, const uint8_t* body, uint32_t len) {
    if (!l->open) {
        return send_nak(l, MODELOTA_NAK_NO_TRANSFER);
    }
    if (len < MODELOTA_LINK_DATA_HEAD) {
        return send_nak(l, MODELOTA_NAK_MALFORMED);
    }
    uint32_t offset = modelota_load_u32le(body);
    uint32_t n = len - MODELOTA_LINK_DATA_HEAD;
    const uint8_t* bytes = body + MODELOTA_LINK_DATA_HEAD;
    if (offset > l->total_len || n > l->total_len - offset) {
        return send_nak(l, MODELOTA_NAK_RANGE);
    }
    l->last_rx_ms = now(l); /* the host is sending this transfer: keep it open */
    if (offset > l->acked) { /* a frame before this one was lost */
        return on_loss(l, MODELOTA_NAK_GAP, offset);
    }
    uint32_t skip = l->acked - offset;
    if (skip >= n) {
        return send_ack(l, MODELOTA_OK); /* duplicate */
    }
    bytes += skip;
    n -= skip;
    int st = MODELOTA_OK;
    if (l->c.store != NULL) {
        st = modelota_store_log(l->c.store, bytes, n);
    }
    if (st >= 0) {
        st = modelota_feed(l->c.updater, bytes, static_cast<size_t>(n));
    }
    if (st < 0) {
        return end_failed(l, st);
    }
    l->acked += n;
    l->nak_sent = 0;
    return send_ack(l, MODELOTA_OK);
}

int on_commit(modelota_link* l) {
    if (!l->open) {
        return send_result(l, l->last_status); /* repeats a RESULT the host lost */
    }
    if (l->acked != l->total_len) {
        return send_nak(l, MODELOTA_NAK_INCOMPLETE);
    }
    int st = modelota_finish(l->c.updater); /* commits through the store when attached */
    if (st < 0) {
        return end_failed(l, st);
    }
    l->open = 0;
    l->last_id = l->transfer_id;
    l->last_status = static_cast<int8_t>(st);
    return send_result(l, st);
}

int dispatch(modelota_link* l) {
    const uint8_t* f = l->c.frame_buf;
    uint8_t type = f[0];
    uint32_t len = modelota_load_u16le(f + 1);
    const uint8_t* body = f + 3;
    switch (type) {
        case MODELOTA_LINK_HELLO:
        case MODELOTA_LINK_STATUS:
            return send_info(l);
        case MODELOTA_LINK_START:
            return on_start(l, body, len);
        case MODELOTA_LINK_DATA:
            return on_data(l, body, len);
        case MODELOTA_LINK_COMMIT:
            return on_commit(l);
        case MODELOTA_LINK_ABORT:
            if (l->open) {
                return end_failed(l, MODELOTA_ABORTED);
            }
            return send_result(l, l->last_status);
        default:
            return send_nak(l, MODELOTA_NAK_MALFORMED);
    }
}

}  // namespace

extern "C" {

int modelota_link_init(modelota_link* l, const modelota_link_config* c) {
    if (l == NULL || c == NULL || c->updater == NULL || c->cfg == NULL ||
        c->cfg->fingerprint == NULL || c->io.write == NULL || c->frame_buf == NULL ||
        c->frame_buf_len < MODELOTA_LINK_MIN_FRAME_BUF) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    memset(l, 0, sizeof(*l));
    l->c = *c;
    if (l->c.window == 0) {
        l->c.window = static_cast<uint8_t>(MODELOTA_LINK_DEFAULT_WINDOW);
    }
    l->rx_state = RX_SYNC0;
    l->last_status = MODELOTA_OK;
    return MODELOTA_OK;
}

uint32_t modelota_link_max_data(const modelota_link* l) {
    uint32_t body = l->c.frame_buf_len - 3u;
    if (body > 0xFFFFu) {
        body = 0xFFFFu;
    }
    return body - MODELOTA_LINK_DATA_HEAD;
}

int modelota_link_rx(modelota_link* l, const uint8_t* data, uint32_t n) {
    if (l == NULL || (data == NULL && n > 0)) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    int result = MODELOTA_OK;
    if (n == 0u) {
        return result;
    }
    uint32_t t = now(l);
    result = drop_stalled(l, t); /* a frame cut short: forget it */
    l->last_byte_ms = t;
    uint8_t* f = l->c.frame_buf;
    uint32_t max_body = modelota_link_max_data(l) + MODELOTA_LINK_DATA_HEAD;
    for (uint32_t i = 0; i < n; ++i) {
        uint8_t b = data[i];
        switch (l->rx_state) {
            case RX_SYNC0:
                if (b == MODELOTA_LINK_SYNC0) {
                    l->rx_state = RX_SYNC1;
                }
                break;
            case RX_SYNC1:
                if (b == MODELOTA_LINK_SYNC1) {
                    l->rx_state = RX_FRAME;
                    l->rx_pos = 0;
                    l->rx_need = 3;
                } else if (b != MODELOTA_LINK_SYNC0) {
                    l->rx_state = RX_SYNC0;
                }
                break;
            case RX_FRAME:
                f[l->rx_pos++] = b;
                if (l->rx_pos == 3u && l->rx_need == 3u) {
                    uint32_t len = modelota_load_u16le(f + 1);
                    if (len > max_body) { /* corrupt length: hunt for the next SYNC */
                        l->rx_state = RX_SYNC0;
                        int st = bad_frame(l);
                        if (st < 0) {
                            result = st;
                        }
                        break;
                    }
                    l->rx_need = 3u + len;
                }
                if (l->rx_pos == l->rx_need) {
                    l->rx_state = RX_CRC;
                    l->rx_pos = 0;
                }
                break;
            default: { /* RX_CRC */
                l->crc_bytes[l->rx_pos++] = b;
                if (l->rx_pos < 4u) {
                    break;
                }
                l->rx_state = RX_SYNC0;
                uint32_t crc = modelota_crc32(0u, f, static_cast<size_t>(l->rx_need));
                int st;
                if (crc != modelota_load_u32le(l->crc_bytes)) {
                    st = bad_frame(l);
                } else {
                    l->frames_ok++;
                    st = dispatch(l);
                }
                if (st < 0) {
                    result = st;
                }
                break;
            }
        }
    }
    return result;
}

int modelota_link_poll(modelota_link* l) {
    if (l == NULL) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    uint32_t t = now(l);
    int st = drop_stalled(l, t); /* NAKed now, not when the next byte comes */
    if (st < 0) {
        return st;
    }
    if (l->open && l->c.resume_timeout_ms > 0u &&
        static_cast<uint32_t>(t - l->last_rx_ms) >= l->c.resume_timeout_ms) {
        end_failed(l, MODELOTA_TIMEOUT);
        return MODELOTA_TIMEOUT;
    }
    return MODELOTA_OK;
}

int modelota_link_busy(const modelota_link* l) { return l->open ? 1 : 0; }
int modelota_link_last_result(const modelota_link* l) { return l->last_status; }
uint32_t modelota_link_acked(const modelota_link* l) { return l->acked; }
uint32_t modelota_link_frames_bad(const modelota_link* l) { return l->frames_bad; }

}  /* extern "C" */
