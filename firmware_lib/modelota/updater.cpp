#include "updater.h"

#include <string.h>

#if defined(__AVR__)
#include <avr/pgmspace.h> /* memcpy_PF: backups in program memory */
#endif
#if MODELOTA_SIGNATURES
#include "ed25519.h"
#endif

static_assert(sizeof(modelota_updater) - sizeof(modelota_decoder) <= MODELOTA_MAX_UPDATER_BYTES,
              "Updater state exceeds MODELOTA_MAX_UPDATER_BYTES");
static_assert(MODELOTA_CHUNK_HEAD_LEN <= MODELOTA_V2_MAX_CHUNK_HEAD, "a v1 head fits field[]");
static_assert(MODELOTA_CHUNK_TAIL_LEN <= MODELOTA_CHUNK_HEAD_LEN, "tail reuses field[]");
static_assert(MODELOTA_V2_MAX_HEADER_LEN <= 0xFFu, "header_len fits a byte");
#if MODELOTA_SHA256
static_assert(MODELOTA_SHA256_LEN == MODELOTA_DIGEST_LEN, "a SHA-256 digest fills the field");
#endif
#if MODELOTA_SIGNATURES
static_assert(MODELOTA_ED25519_SIGNATURE_LEN == MODELOTA_SIGNATURE_LEN, "Ed25519 signs");
#endif

namespace {

const uint8_t kMagic[4] = {'M', 'O', 'T', 'A'};

uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* Lengths handed to memcpy/crc are bounded by the region or the lent
 * buffer, both addressable, so they fit size_t even where it is 16 bits. */
size_t sz(uint32_t n) { return static_cast<size_t>(n); }

/* What a call made outside a running update reports. */
int idle_status(const modelota_updater* u) {
    return u->state == MODELOTA_STATE_FAILED ? static_cast<int>(u->status)
                                             : static_cast<int>(MODELOTA_BAD_STATE);
}

bool running(const modelota_updater* u) {
    return (u->state >= MODELOTA_STATE_HEADER && u->state <= MODELOTA_STATE_VERIFIED) ||
           u->state == MODELOTA_STATE_SIGNATURE;
}

/* ---- running digest of the region ---------------------------------------- */

void digest_start(modelota_updater* u) {
#if MODELOTA_SHA256
    if (u->digest_type == MODELOTA_DIGEST_SHA256) {
        modelota_sha256_init(&u->run.sha);
        return;
    }
#endif
    u->run.crc = 0;
}

void digest_add(modelota_updater* u, const uint8_t* p, uint32_t n) {
#if MODELOTA_SHA256
    if (u->digest_type == MODELOTA_DIGEST_SHA256) {
        modelota_sha256_update(&u->run.sha, p, static_cast<size_t>(n));
        return;
    }
#endif
    u->run.crc = modelota_crc32(u->run.crc, p, static_cast<size_t>(n));
}

/* Ends the running digest and compares it with the header's. */
bool digest_matches(modelota_updater* u) {
#if MODELOTA_SHA256
    if (u->digest_type == MODELOTA_DIGEST_SHA256) {
        uint8_t out[MODELOTA_SHA256_LEN];
        modelota_sha256_final(&u->run.sha, out);
        return memcmp(out, u->digest, MODELOTA_SHA256_LEN) == 0;
    }
#endif
    return u->run.crc == modelota_load_u32le(u->digest);
}

/* ---- region and backup access ----------------------------------------- */

int target_write(const modelota_config* c, uint32_t off, const uint8_t* src, uint32_t len) {
    if (c->target.ram != NULL) {
        memcpy(c->target.ram + off, src, sz(len));
        return MODELOTA_OK;
    }
    return c->target.write(c->target.ctx, off, src, len) == 0 ? MODELOTA_OK : MODELOTA_STORAGE_IO;
}

/* Continues *crc over region bytes [lo, hi), read through the lent buffer
 * when the region is not in RAM. */
int region_crc_range(const modelota_config* c, uint32_t lo, uint32_t hi, uint32_t* crc) {
    const modelota_target* t = &c->target;
    if (t->ram != NULL) {
        *crc = modelota_crc32(*crc, t->ram + lo, sz(hi - lo));
        return MODELOTA_OK;
    }
    for (uint32_t off = lo; off < hi;) {
        uint32_t n = min_u32(c->buffer_len, hi - off);
        if (t->read(t->ctx, off, c->buffer, n) != 0) {
            return MODELOTA_STORAGE_IO;
        }
        *crc = modelota_crc32(*crc, c->buffer, sz(n));
        off += n;
    }
    return MODELOTA_OK;
}

int region_crc(const modelota_config* c, uint32_t* out) {
    *out = 0;
    return region_crc_range(c, 0, c->target.size, out);
}

/* Adds region bytes [lo, hi) to the running digest, read through the lent
 * buffer when the region is not in RAM. */
int region_digest_range(modelota_updater* u, uint32_t lo, uint32_t hi) {
    const modelota_config* c = u->cfg;
    const modelota_target* t = &c->target;
    if (t->ram != NULL) {
        digest_add(u, t->ram + lo, hi - lo);
        return MODELOTA_OK;
    }
    /* bytes kept for a PRED sit at the end of the first max_chunk bytes: read
     * around them (a chunk that follows has at least one byte of room) */
    uint32_t room = u->kept_len != 0 ? u->max_chunk - u->kept_len : c->buffer_len;
    for (uint32_t off = lo; off < hi;) {
        uint32_t n = min_u32(room, hi - off);
        if (t->read(t->ctx, off, c->buffer, n) != 0) {
            return MODELOTA_STORAGE_IO;
        }
        digest_add(u, c->buffer, n);
        off += n;
    }
    return MODELOTA_OK;
}

/* The backup's memory-mapped bytes, NULL when it is read through a callback. */
const uint8_t* source_image(const modelota_source* b) {
#if defined(__AVR__)
    return b->ram;
#else
    return b->image;
#endif
}

/* Copies backup bytes [lo, hi) over the region. */
int copy_from_backup(const modelota_config* c, uint32_t lo, uint32_t hi) {
    const modelota_source* b = &c->backup;
    const uint8_t* image = source_image(b);
    if (image != NULL) {
        return target_write(c, lo, image + lo, hi - lo);
    }
    for (uint32_t off = lo; off < hi;) {
        uint32_t n = min_u32(c->buffer_len, hi - off);
        if (c->target.ram != NULL) {
            if (b->read(b->ctx, b->base + off, c->target.ram + off, n) != 0) {
                return MODELOTA_STORAGE_IO;
            }
        } else {
            if (b->read(b->ctx, b->base + off, c->buffer, n) != 0) {
                return MODELOTA_STORAGE_IO;
            }
            int st = target_write(c, off, c->buffer, n);
            if (st < 0) {
                return st;
            }
        }
        off += n;
    }
    return MODELOTA_OK;
}

/* Puts the region back to a complete known model after a failure. When the
 * backup holds the version the region held, only the touched span is copied;
 * otherwise the touched bytes cannot be told apart from the rest, so the
 * whole region is reloaded and the device runs the backup's version. */
void restore(modelota_updater* u) {
    const modelota_config* c = u->cfg;
    if (u->touched_hi <= u->touched_lo) {
        u->restore = MODELOTA_RESTORE_NONE;
        return;
    }
    int st;
    if (c->backup.version == u->current_version) {
        st = copy_from_backup(c, u->touched_lo, u->touched_hi);
        u->restore = MODELOTA_RESTORE_RANGES;
    } else {
        st = copy_from_backup(c, 0, c->target.size);
        u->restore = MODELOTA_RESTORE_FULL;
        if (st == MODELOTA_OK) {
            u->current_version = c->backup.version;
        }
    }
    if (st != MODELOTA_OK) {
        u->restore = MODELOTA_RESTORE_FAILED;
        return;
    }
    u->touched_lo = u->touched_hi = 0;
}

int fail(modelota_updater* u, int status) {
    restore(u);
    u->state = MODELOTA_STATE_FAILED;
    u->status = (int8_t)status;
    return status;
}

/* ---- header ------------------------------------------------------------ */

/* The header is gathered in steps, stopping after the magic (byte 4), the
 * format version (byte 5) and, in v2, the header length (byte 6), so a
 * wrong stream is refused at once (modelota_header_want). */
uint32_t header_want(const modelota_updater* u) {
    return modelota_header_want(u->cfg->buffer, u->pos);
}

bool is_signed(const modelota_updater* u) { return (u->flags & MODELOTA_FLAG_SIGNED) != 0; }

bool is_v2(const modelota_updater* u) { return u->format_version == MODELOTA_FORMAT_V2; }

/* Everything the header bytes can tell on their own, in the order of
 * docs/FORMAT.md. The delta base is checked after the signature block
 * (check_base): no region read before the signature is verified. */
int check_header(modelota_updater* u) {
    const modelota_config* c = u->cfg;
    const uint8_t* h = c->buffer;
    /* magic, format version and (v2) header length were checked as their
     * bytes arrived; u->pos is the header's length */
    uint32_t len = u->pos;
    u->header_len = static_cast<uint8_t>(len);
    u->header_crc = modelota_load_u32le(h + len - 4u);
    if (modelota_crc32(0, h, sz(len - 4u)) != u->header_crc) {
        return MODELOTA_BAD_HEADER_CRC;
    }
    modelota_header_info info;
    int st = modelota_header_parse(h, len, &info);
    if (st < 0) {
        return st;
    }
    bool sig = (info.flags & MODELOTA_FLAG_SIGNED) != 0;
    if (c->verifier.verify != NULL && !sig) {
        return MODELOTA_UNSIGNED;
    }
    u->digest_type = info.digest_type;
    u->format_version = info.format_version;
    u->flags = static_cast<uint8_t>(info.flags);
    if (memcmp(info.fingerprint, c->fingerprint, MODELOTA_FINGERPRINT_LEN) != 0) {
        return MODELOTA_WRONG_MODEL;
    }
    if (info.weights_size != c->target.size) {
        return MODELOTA_WRONG_SIZE;
    }
    u->new_version = info.model_version;
    if (u->new_version < u->current_version || u->new_version < u->min_version) {
        return MODELOTA_ROLLBACK;
    }
    if (u->new_version == u->current_version) {
        return MODELOTA_ALREADY_CURRENT;
    }
    u->data_size = info.data_size;
    u->chunk_count = info.chunk_count;
    u->segment_count = info.segment_count;
    u->max_chunk = info.max_chunk;
    if (u->data_size > c->target.size || u->max_chunk > c->buffer_len) {
        return MODELOTA_TOO_LARGE;
    }
    /* every chunk carries at least one byte and no more than max_chunk;
     * every segment (v1) holds at least one chunk */
    bool empty = u->chunk_count == 0;
    bool v1 = !is_v2(u);
    if (empty != (u->data_size == 0) || (v1 && empty != (u->segment_count == 0)) ||
        empty != (u->max_chunk == 0) || u->chunk_count > u->data_size ||
        (v1 && u->segment_count > u->chunk_count) ||
        (!empty && (u->data_size - 1u) / u->max_chunk >= u->chunk_count)) {
        return MODELOTA_LAYOUT_MISMATCH;
    }
    memset(u->digest, 0, MODELOTA_DIGEST_LEN);
    memcpy(u->digest, info.digest, sz(info.digest_len));
    return MODELOTA_OK;
}

/* DELTA: the region must hold exactly the base the delta was made for. The
 * header is still at the start of the buffer (the signature went after it);
 * this is its last use: reading a region that is not in RAM reuses the buffer. */
int check_base(modelota_updater* u) {
    if ((u->flags & MODELOTA_FLAG_DELTA) == 0) {
        return MODELOTA_OK;
    }
    modelota_header_info info;
    (void)modelota_header_parse(u->cfg->buffer, u->header_len, &info); /* parsed before */
    if (info.base_version != u->current_version) {
        return MODELOTA_WRONG_BASE;
    }
    uint32_t base_crc = info.base_crc32;
    uint32_t crc = 0;
    int st = region_crc(u->cfg, &crc);
    if (st < 0) {
        return st;
    }
    return crc == base_crc ? MODELOTA_OK : MODELOTA_WRONG_BASE;
}

/* ---- writable ranges --------------------------------------------------- */

/* One (offset, length) pair of the table. */
struct Range {
    uint32_t off;
    uint32_t len;
};
static_assert(sizeof(Range) == 2u * sizeof(uint32_t), "a pair is two table words");

/* Pair k of the table, read the way its memory needs (see modelota_writable).
 * The table is addressable, so 2k fits size_t. */
#if defined(__AVR__)
const uint32_t* table_of(const modelota_writable* w) { return w->flash != NULL ? w->flash : w->ram; }
void range_at(const modelota_writable* w, uint32_t k, Range* r) {
    const uint32_t* at = table_of(w) + sz(2u * k);
    if (w->flash != NULL) {
        memcpy_P(r, at, sizeof(*r));
    } else {
        memcpy(r, at, sizeof(*r));
    }
}
#else
const uint32_t* table_of(const modelota_writable* w) { return w->ranges; }
void range_at(const modelota_writable* w, uint32_t k, Range* r) {
    memcpy(r, w->ranges + sz(2u * k), sizeof(*r));
}
#endif

/* 1 when cfg->writable is absent or holds ascending, disjoint pairs inside
 * a region of `size` bytes. */
bool writable_valid(const modelota_writable* w, uint32_t size) {
#if defined(__AVR__)
    if (w->ram != NULL && w->flash != NULL) {
        return false; /* one table, in one memory */
    }
#endif
    if (table_of(w) == NULL) {
        return w->count == 0;
    }
    uint32_t end = 0;
    for (uint32_t i = 0; i < w->count; ++i) {
        Range r;
        range_at(w, i, &r);
        if (r.len == 0 || r.off < end || r.off > size || r.len > size - r.off) {
            return false;
        }
        end = r.off + r.len;
    }
    return true;
}

/* Bytes [lo, hi) of the region, outside every writable range: the chunk in
 * the buffer (chunk_at: its first byte's offset) must repeat them as the
 * region holds them. */
int same_as_region(const modelota_config* c, uint32_t chunk_at, uint32_t lo, uint32_t hi) {
    const uint8_t* want = c->buffer + (lo - chunk_at);
    if (c->target.ram != NULL) {
        return memcmp(c->target.ram + lo, want, sz(hi - lo)) == 0 ? MODELOTA_OK
                                                                  : MODELOTA_WRONG_MODEL;
    }
    uint8_t have[16];
    for (uint32_t off = lo; off < hi;) {
        uint32_t n = min_u32(static_cast<uint32_t>(sizeof(have)), hi - off);
        if (c->target.read(c->target.ctx, off, have, n) != 0) {
            return MODELOTA_STORAGE_IO;
        }
        if (memcmp(have, want + (off - lo), sz(n)) != 0) {
            return MODELOTA_WRONG_MODEL;
        }
        off += n;
    }
    return MODELOTA_OK;
}

/* The chunk in the buffer, for region bytes [off, off + len), changes no
 * byte outside the writable ranges (checked before anything is written). */
int check_writable(const modelota_config* c, uint32_t off, uint32_t len) {
    const modelota_writable* w = &c->writable;
    if (table_of(w) == NULL) {
        return MODELOTA_OK;
    }
    uint32_t end = off + len;
    uint32_t pos = off; /* bytes before pos are checked */
    /* first range that ends after off (ranges are ascending) */
    uint32_t lo = 0;
    uint32_t hi = w->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2u;
        Range r;
        range_at(w, mid, &r);
        if (r.off + r.len <= off) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    for (uint32_t i = lo; i < w->count && pos < end; ++i) {
        Range r;
        range_at(w, i, &r);
        uint32_t r_off = r.off;
        uint32_t r_end = r.off + r.len;
        if (r_off >= end) {
            break;
        }
        if (r_off > pos) {
            int st = same_as_region(c, off, pos, r_off);
            if (st < 0) {
                return st;
            }
        }
        pos = r_end > pos ? r_end : pos;
    }
    return pos < end ? same_as_region(c, off, pos, end) : MODELOTA_OK;
}

/* ---- chunks ------------------------------------------------------------ */

int finalize(modelota_updater* u) {
    if (u->data_seen != u->data_size || (!is_v2(u) && u->segments_seen != u->segment_count)) {
        return MODELOTA_LAYOUT_MISMATCH;
    }
    u->kept_len = 0; /* nothing follows that could use them: the whole buffer reads */
    int st;
    if (u->cfg->verify_only) {
        st = region_digest_range(u, u->digest_pos, u->cfg->target.size);
    } else {
        digest_start(u);
        st = region_digest_range(u, 0, u->cfg->target.size);
    }
    if (st < 0) {
        return st;
    }
    if (!digest_matches(u)) {
        return MODELOTA_DIGEST_MISMATCH;
    }
    u->state = MODELOTA_STATE_VERIFIED;
    return MODELOTA_OK;
}

/* Gathers bytes into dst (or drops them when dst is NULL) until `want` are
 * there. Returns bytes taken. */
uint32_t gather(modelota_updater* u, uint8_t* dst, uint32_t want, const uint8_t* src, size_t n) {
    uint32_t room = want - u->pos;
    uint32_t take = n < room ? (uint32_t)n : room;
    if (dst != NULL) {
        memcpy(dst + u->pos, src, sz(take));
    }
    u->pos += take;
    return take;
}

/* DIFF: the chunk's base bytes go into the buffer first; decoded values are
 * added to them. Chunks ascend and never overlap, so the region still holds
 * the base there. */
int load_base(const modelota_updater* u) {
    const modelota_config* c = u->cfg;
    if (c->target.ram != NULL) {
        memcpy(c->buffer, c->target.ram + u->chunk_offset, sz(u->chunk_len));
        return MODELOTA_OK;
    }
    return c->target.read(c->target.ctx, u->chunk_offset, c->buffer, u->chunk_len) == 0
               ? MODELOTA_OK
               : MODELOTA_STORAGE_IO;
}

/* The head of a chunk passed its checks: prepare the buffer for its data.
 * The chunk CRC starts with the head bytes, seeded with header_crc (v1) or
 * the previous chunk's CRC (v2, kept in header_crc). */
int start_chunk(modelota_updater* u, uint32_t head_len) {
    u->running_crc = modelota_crc32(u->header_crc, u->field, sz(head_len));
    u->pos = 0;
    u->state = MODELOTA_STATE_CHUNK_DATA;
    if (u->cfg->verify_only) {
        /* the current bytes between the previous chunk and this one are part
         * of the final region: hash them now, while the buffer is free */
        int st = region_digest_range(u, u->digest_pos, u->chunk_offset);
        u->digest_pos = u->chunk_offset;
        if (st < 0) {
            return st;
        }
    }
    if (u->enc == MODELOTA_ENC_RAW) {
        return MODELOTA_OK; /* gathered straight into the buffer */
    }
    if ((u->enc & MODELOTA_ENC_DIFF) != 0) {
        int st = load_base(u);
        if (st < 0) {
            return st;
        }
        if ((u->enc & MODELOTA_ENC_PRED) != 0) { /* a residual over the prediction */
            memset(u->cfg->buffer + u->pred_start, 0, sz(4u * u->pred_count));
        }
    }
    modelota_decode_begin(&u->dec, u->enc, u->chunk_offset, u->chunk_len);
    if (u->chunk_size == 0) { /* nothing encoded: decode on zeros */
        modelota_decode(&u->dec, NULL, 0, u->cfg->buffer, 0, u->chunk_len);
        u->state = MODELOTA_STATE_CHUNK_TAIL;
    }
    return MODELOTA_OK;
}

int check_chunk_head(modelota_updater* u) {
    const uint8_t* f = u->field;
    uint32_t seq = modelota_load_u32le(f);
    uint32_t off = modelota_load_u32le(f + 4);
    uint32_t len = modelota_load_u32le(f + 8);
    uint32_t size = u->cfg->target.size;
    if (seq != u->next_seq) {
        return MODELOTA_BAD_SEQUENCE;
    }
    if (len == 0 || len > u->max_chunk) {
        return MODELOTA_BAD_CHUNK;
    }
    if (off < u->write_end || off > size || len > size - off) {
        return MODELOTA_OUT_OF_BOUNDS;
    }
    if (len > u->data_size - u->data_seen) {
        return MODELOTA_LAYOUT_MISMATCH;
    }
    u->chunk_offset = off;
    u->chunk_len = len;
    u->chunk_size = len;
    u->enc = MODELOTA_ENC_RAW;
    return start_chunk(u, MODELOTA_CHUNK_HEAD_LEN);
}

/* v2: one more head byte is in field[]; checks run once the head is whole,
 * in the order of docs/FORMAT.md (Python: format/payload.py _walk_chunks_v2). */
int check_chunk_head_v2(modelota_updater* u) {
    modelota_chunk_head head;
    memset(&head, 0, sizeof(head));
    int r = modelota_chunk_head_parse(u->field, u->pos, (u->flags & MODELOTA_FLAG_DELTA) != 0,
                                      &head);
    if (r <= 0) {
        return r; /* 0: more head bytes; or MODELOTA_BAD_CHUNK */
    }
    uint32_t size = u->cfg->target.size;
    bool coded = (head.enc & MODELOTA_ENC_METHOD) != MODELOTA_ENC_RAW;
    if (head.length == 0 || head.length > u->max_chunk || (coded && head.size >= head.length)) {
        return MODELOTA_BAD_CHUNK;
    }
    if (head.gap > size - u->write_end || head.length > size - u->write_end - head.gap) {
        return MODELOTA_OUT_OF_BOUNDS;
    }
    if (head.length > u->data_size - u->data_seen) {
        return MODELOTA_LAYOUT_MISMATCH;
    }
    int st = modelota_chunk_refs_check(&head, u->write_end + head.gap, u->max_chunk, u->kept_off,
                                       u->kept_len);
    if (st < 0) {
        return st;
    }
    u->keep_start = head.keep_start;
    u->kept_next = head.keep_len;
    u->pred_start = head.pred_start;
    u->pred_count = head.pred_count;
    u->pred_back = head.pred_back;
    u->pred_divisor = head.pred_divisor;
    u->chunk_offset = u->write_end + head.gap;
    u->chunk_len = head.length;
    u->chunk_size = head.size;
    u->enc = head.enc;
    return start_chunk(u, head.head_len);
}

/* CHUNK_DATA: encoded bytes, CRC'd as they pass, decoded into the buffer. */
uint32_t chunk_data(modelota_updater* u, const uint8_t* data, size_t n) {
    const modelota_config* c = u->cfg;
    uint32_t start = u->pos;
    uint32_t took;
    if (u->enc == MODELOTA_ENC_RAW) {
        took = gather(u, c->buffer, u->chunk_size, data, n);
        u->running_crc = modelota_crc32(u->running_crc, c->buffer + start, sz(took));
    } else {
        uint32_t room = u->chunk_size - u->pos;
        took = n < room ? static_cast<uint32_t>(n) : room;
        u->running_crc = modelota_crc32(u->running_crc, data, sz(took));
        modelota_decode(&u->dec, data, took, c->buffer, 0, u->chunk_len);
        u->pos += took;
        if (u->pos == u->chunk_size) { /* input over: the rest decodes from zeros */
            modelota_decode(&u->dec, NULL, 0, c->buffer, 0, u->chunk_len);
        }
    }
    if (u->pos == u->chunk_size) {
        u->pos = 0;
        u->state = MODELOTA_STATE_CHUNK_TAIL;
    }
    return took;
}

int apply_chunk(modelota_updater* u) {
    if (modelota_load_u32le(u->field) != u->running_crc) {
        return MODELOTA_CHUNK_CRC;
    }
    if (is_v2(u)) {
        u->header_crc = u->running_crc; /* v2 chains: the next chunk's CRC seed */
    }
    uint32_t off = u->chunk_offset;
    uint32_t len = u->chunk_len;
    uint8_t* buf = u->cfg->buffer;
    bool from_kept = false;
    if ((u->enc & MODELOTA_ENC_PRED) != 0) { /* sources checked by modelota_chunk_refs_check */
        uint32_t src = off + u->pred_start - u->pred_back;
        from_kept = src < off;
        const uint8_t* from = from_kept ? buf + (u->max_chunk - u->kept_len) + (src - u->kept_off)
                                        : buf + (src - off);
        modelota_predict_add(buf + u->pred_start, from, u->pred_count, u->pred_divisor);
    }
    bool new_segment = u->next_seq == 0 || off != u->write_end;
    int wst = check_writable(u->cfg, off, len);
    if (wst < 0) {
        return wst;
    }
    if (u->cfg->verify_only) {
        digest_add(u, u->cfg->buffer, len);
        u->digest_pos = off + len;
    } else {
        if (u->touched_hi <= u->touched_lo) {
            u->touched_lo = off;
        }
        /* widen the span before writing: a write that fails half way has
         * still changed bytes that must be restored */
        u->touched_hi = off + len;
        int st = target_write(u->cfg, off, u->cfg->buffer, len);
        if (st < 0) {
            return st;
        }
    }
    if (from_kept) {
        u->kept_len = 0; /* a prediction from the kept bytes releases them */
    }
    if ((u->enc & MODELOTA_ENC_KEEP) != 0) { /* to the end of the first max_chunk bytes */
        u->kept_off = off + u->keep_start;
        u->kept_len = u->kept_next;
        memmove(buf + (u->max_chunk - u->kept_len), buf + u->keep_start, sz(u->kept_len));
    }
    if (new_segment) {
        u->segments_seen++;
    }
    u->write_end = off + len;
    u->data_seen += len;
    u->next_seq++;
    if (u->next_seq == u->chunk_count) {
        return finalize(u);
    }
    return MODELOTA_OK;
}

/* The header (and its signature, when signed) passed: check the delta base,
 * then expect chunks. */
int start_chunks(modelota_updater* u) {
    u->pos = 0;
    u->state = MODELOTA_STATE_CHUNK_HEAD;
    int st = check_base(u);
    if (st < 0) {
        return st;
    }
    digest_start(u);
    modelota_decoder_reset(&u->dec); /* v2: the range coder's model lives for the payload */
    return u->chunk_count == 0 ? finalize(u) : MODELOTA_OK;
}

/* The signature block is in: with a verifier, it must sign the header
 * bytes still at the start of the buffer. Nothing has been written yet. */
int check_signature(modelota_updater* u) {
    const modelota_config* c = u->cfg;
    if (c->verifier.verify != NULL &&
        c->verifier.verify(c->verifier.ctx, c->buffer, u->header_len,
                           c->buffer + u->header_len) != 1) {
        return MODELOTA_BAD_SIGNATURE;
    }
    return start_chunks(u);
}

/* One step of the state machine over data[0..n). Returns bytes consumed
 * (at least 1 when n > 0) and sets *st. */
uint32_t step(modelota_updater* u, const uint8_t* data, size_t n, int* st) {
    const modelota_config* c = u->cfg;
    uint32_t took = 0;
    *st = MODELOTA_OK;
    switch (u->state) {
    case MODELOTA_STATE_HEADER: {
        took = gather(u, c->buffer, header_want(u), data, n);
        if (u->pos == 4u && memcmp(c->buffer, kMagic, 4) != 0) {
            *st = MODELOTA_BAD_MAGIC;
        } else if (u->pos == 5u && c->buffer[4] != MODELOTA_FORMAT_V1 &&
                   c->buffer[4] != MODELOTA_FORMAT_V2) {
            *st = MODELOTA_UNSUPPORTED_VERSION;
        } else if (u->pos == 6u && c->buffer[4] == MODELOTA_FORMAT_V2 &&
                   (c->buffer[MODELOTA_V2_LEN_OFFSET] < MODELOTA_V2_MIN_HEADER_LEN ||
                    c->buffer[MODELOTA_V2_LEN_OFFSET] > MODELOTA_V2_MAX_HEADER_LEN)) {
            *st = MODELOTA_BAD_HEADER_CRC; /* no valid header has that length */
        } else if (u->pos > 6u && u->pos == header_want(u)) {
            *st = check_header(u);
            if (*st == MODELOTA_OK && is_signed(u)) {
                u->pos = 0;
                u->state = MODELOTA_STATE_SIGNATURE;
            } else if (*st == MODELOTA_OK) {
                *st = start_chunks(u);
            }
        }
        break;
    }
    case MODELOTA_STATE_SIGNATURE: {
        /* kept after the header only when there is a verifier to check it */
        uint8_t* dst = c->verifier.verify != NULL ? c->buffer + u->header_len : NULL;
        took = gather(u, dst, MODELOTA_SIGNATURE_LEN, data, n);
        if (u->pos == MODELOTA_SIGNATURE_LEN) {
            *st = check_signature(u);
        }
        break;
    }
    case MODELOTA_STATE_CHUNK_HEAD:
        if (is_v2(u)) { /* variable length: one byte at a time */
            took = gather(u, u->field, u->pos + 1u, data, n);
            *st = check_chunk_head_v2(u);
            break;
        }
        took = gather(u, u->field, MODELOTA_CHUNK_HEAD_LEN, data, n);
        if (u->pos == MODELOTA_CHUNK_HEAD_LEN) {
            *st = check_chunk_head(u);
        }
        break;
    case MODELOTA_STATE_CHUNK_DATA:
        took = chunk_data(u, data, n);
        break;
    case MODELOTA_STATE_CHUNK_TAIL:
        took = gather(u, u->field, MODELOTA_CHUNK_TAIL_LEN, data, n);
        if (u->pos == MODELOTA_CHUNK_TAIL_LEN) {
            u->pos = 0;
            u->state = MODELOTA_STATE_CHUNK_HEAD;
            *st = apply_chunk(u);
        }
        break;
    case MODELOTA_STATE_VERIFIED:
        *st = MODELOTA_TRAILING_DATA;
        took = 1;
        break;
    default:
        *st = MODELOTA_BAD_STATE;
        took = (uint32_t)min_u32(1u, (uint32_t)n);
        break;
    }
    return took;
}

}  // namespace

extern "C" {

int modelota_init(modelota_updater* u, const modelota_config* cfg) {
    if (u == NULL) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    memset(u, 0, sizeof(*u));
    u->cfg = cfg;
    u->state = MODELOTA_STATE_FAILED;
    u->status = MODELOTA_INVALID_ARGUMENT;
    if (cfg == NULL || cfg->fingerprint == NULL || cfg->buffer == NULL ||
        cfg->buffer_len < MODELOTA_HEADER_LEN) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    const modelota_target* t = &cfg->target;
    if (!cfg->verify_only && t->ram == NULL && (t->read == NULL || t->write == NULL)) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    if (!cfg->verify_only && source_image(&cfg->backup) == NULL && cfg->backup.read == NULL) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    if (!cfg->verify_only && cfg->backup.size != 0 && cfg->backup.size < t->size) {
        return MODELOTA_INVALID_ARGUMENT; /* a restore would read past the backup's end */
    }
    if (cfg->verify_only && t->ram == NULL && t->read == NULL) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    if (cfg->verifier.verify != NULL &&
        cfg->buffer_len < MODELOTA_HEADER_LEN + MODELOTA_SIGNATURE_LEN) {
        return MODELOTA_INVALID_ARGUMENT; /* header and signature are checked together */
    }
    if (!writable_valid(&cfg->writable, t->size)) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    u->current_version = cfg->current_version;
    u->min_version = cfg->min_version;
    u->state = MODELOTA_STATE_IDLE;
    u->status = MODELOTA_OK;
    return MODELOTA_OK;
}

int modelota_begin(modelota_updater* u) {
    if (u->cfg == NULL || running(u) ||
        (u->state == MODELOTA_STATE_FAILED && u->status == MODELOTA_INVALID_ARGUMENT)) {
        return MODELOTA_BAD_STATE;
    }
    if (u->restore == MODELOTA_RESTORE_FAILED) {
        /* the region is not a known model: do not stack another update on it */
        return MODELOTA_STORAGE_IO;
    }
    const modelota_config* cfg = u->cfg;
    uint32_t version = u->current_version;
    uint32_t min_version = u->min_version;
    memset(u, 0, sizeof(*u));
    u->cfg = cfg;
    u->current_version = version;
    u->min_version = min_version;
    u->state = MODELOTA_STATE_HEADER;
    return MODELOTA_OK;
}

int modelota_feed(modelota_updater* u, const uint8_t* data, size_t n) {
    if (!running(u)) {
        return idle_status(u);
    }
    if (data == NULL && n > 0) {
        return fail(u, MODELOTA_INVALID_ARGUMENT);
    }
    size_t i = 0;
    while (i < n) {
        int st = MODELOTA_OK;
        uint32_t took = step(u, data + i, n - i, &st);
        i += sz(took);
        u->total_in += took;
        if (st < 0) {
            return fail(u, st);
        }
    }
    return MODELOTA_OK;
}

int modelota_finish(modelota_updater* u) {
    if (u->state == MODELOTA_STATE_VERIFIED) {
        const modelota_target* t = &u->cfg->target;
        if (t->commit != NULL) {
            int st = t->commit(t->ctx, u->new_version);
            if (st != 0) {
                return fail(u, st < 0 && st >= MODELOTA_STATUS_MIN ? st : MODELOTA_STORAGE_IO);
            }
        }
        u->current_version = u->new_version;
        if (u->new_version > u->min_version) {
            u->min_version = u->new_version; /* never go back below a committed model */
        }
        u->touched_lo = u->touched_hi = 0;
        u->state = MODELOTA_STATE_DONE;
        u->status = MODELOTA_OK;
        return MODELOTA_OK;
    }
    if (running(u)) {
        return fail(u, MODELOTA_TRUNCATED);
    }
    return idle_status(u);
}

int modelota_abort(modelota_updater* u, int reason) {
    int status = reason < 0 ? reason : MODELOTA_ABORTED;
    if (!running(u)) {
        return idle_status(u);
    }
    return fail(u, status);
}

int modelota_state_of(const modelota_updater* u) { return u->state; }
int modelota_last_status(const modelota_updater* u) { return u->status; }
int modelota_restore_of(const modelota_updater* u) { return u->restore; }
uint32_t modelota_current_version(const modelota_updater* u) { return u->current_version; }
uint32_t modelota_bytes_in(const modelota_updater* u) { return u->total_in; }
uint32_t modelota_data_applied(const modelota_updater* u) { return u->data_seen; }
uint32_t modelota_data_total(const modelota_updater* u) { return u->data_size; }

uint32_t modelota_bytes_wanted(const modelota_updater* u) {
    switch (u->state) {
    case MODELOTA_STATE_HEADER:
        return header_want(u) - u->pos;
    case MODELOTA_STATE_SIGNATURE: return MODELOTA_SIGNATURE_LEN - u->pos;
    case MODELOTA_STATE_CHUNK_HEAD: return is_v2(u) ? 1u : MODELOTA_CHUNK_HEAD_LEN - u->pos;
    case MODELOTA_STATE_CHUNK_DATA: return u->chunk_size - u->pos;
    case MODELOTA_STATE_CHUNK_TAIL: return MODELOTA_CHUNK_TAIL_LEN - u->pos;
    default: return 0;
    }
}

int modelota_weights_intact(const modelota_updater* u) {
    if (u->restore == MODELOTA_RESTORE_FAILED) {
        return 0;
    }
    /* mid-update the region is a mix; VERIFIED/DONE/IDLE/FAILED are whole */
    return (u->state == MODELOTA_STATE_HEADER || u->touched_hi <= u->touched_lo ||
            u->state == MODELOTA_STATE_VERIFIED || u->state == MODELOTA_STATE_DONE)
               ? 1
               : 0;
}

int modelota_memory_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len) {
    memcpy(dst, static_cast<const uint8_t*>(ctx) + offset, static_cast<size_t>(len));
    return 0;
}

/* ---- backup sources and the usual configuration ------------------------ */

#if defined(__AVR__)
/* Reads AVR program memory at byte address offset (base + i): ELPM, so any
 * of the Mega's 256 KiB; a near PROGMEM pointer is the same address. */
static int flash_read(void*, uint32_t offset, uint8_t* dst, uint32_t len) {
    memcpy_PF(dst, static_cast<uint_farptr_t>(offset), static_cast<size_t>(len));
    return 0;
}

modelota_source modelota_backup_flash_far(uint32_t address, uint32_t len, uint32_t version) {
    modelota_source s = modelota_backup_callback(flash_read, NULL, len, version);
    s.base = address;
    return s;
}

modelota_source modelota_backup_flash(const uint8_t* weights, uint32_t len, uint32_t version) {
    return modelota_backup_flash_far(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(weights)),
                                     len, version);
}

modelota_source modelota_backup_ram(const uint8_t* weights, uint32_t len, uint32_t version) {
    modelota_source s;
    memset(&s, 0, sizeof(s));
    s.ram = weights;
    s.size = len;
    s.version = version;
    return s;
}
#else
modelota_source modelota_backup_image(const uint8_t* weights, uint32_t len, uint32_t version) {
    modelota_source s;
    memset(&s, 0, sizeof(s));
    s.image = weights;
    s.size = len;
    s.version = version;
    return s;
}

modelota_source modelota_backup_flash(const uint8_t* weights, uint32_t len, uint32_t version) {
    return modelota_backup_image(weights, len, version); /* const data is memory-mapped */
}

modelota_source modelota_backup_ram(const uint8_t* weights, uint32_t len, uint32_t version) {
    return modelota_backup_image(weights, len, version);
}
#endif

modelota_writable modelota_writable_flash(const uint32_t* ranges, uint32_t count) {
    modelota_writable w;
    memset(&w, 0, sizeof(w));
#if defined(__AVR__)
    if (count <= 0xFFFFu) {
        w.flash = ranges;
        w.count = static_cast<uint16_t>(count);
    } else {
        w.count = 1u; /* more pairs than the field holds: a table modelota_init
                         refuses (no pointer, count 1), never a shorter one */
    }
#else
    w.ranges = ranges;
    w.count = count;
#endif
    return w;
}

modelota_writable modelota_writable_ram(const uint32_t* ranges, uint32_t count) {
#if defined(__AVR__)
    modelota_writable w = modelota_writable_flash(ranges, count);
    w.ram = w.flash;
    w.flash = NULL;
    return w;
#else
    return modelota_writable_flash(ranges, count); /* one address space */
#endif
}

modelota_source modelota_backup_callback(modelota_read_fn read, void* ctx, uint32_t len,
                                         uint32_t version) {
    modelota_source s;
    memset(&s, 0, sizeof(s));
    s.read = read;
    s.ctx = ctx;
    s.size = len;
    s.version = version;
    return s;
}

int modelota_source_read(const modelota_source* src, uint32_t offset, uint8_t* dst,
                         uint32_t len) {
    if (src->size != 0 && (offset > src->size || len > src->size - offset)) {
        return MODELOTA_INVALID_ARGUMENT; /* past the end of a source of stated size */
    }
    const uint8_t* image = source_image(src);
    if (image != NULL) {
        memcpy(dst, image + offset, sz(len));
        return MODELOTA_OK;
    }
    if (src->read == NULL) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    return src->read(src->ctx, src->base + offset, dst, len) == 0 ? MODELOTA_OK
                                                                  : MODELOTA_STORAGE_IO;
}

modelota_target modelota_target_ram(uint8_t* weights, uint32_t size) {
    modelota_target t;
    memset(&t, 0, sizeof(t));
    t.ram = weights;
    t.size = size;
    return t;
}

modelota_target modelota_target_callbacks(modelota_read_fn read, modelota_write_fn write,
                                          void* ctx, uint32_t size) {
    modelota_target t;
    memset(&t, 0, sizeof(t));
    t.read = read;
    t.write = write;
    t.ctx = ctx;
    t.size = size;
    return t;
}

void modelota_config_init(modelota_config* cfg, modelota_target target, modelota_source backup,
                          const uint8_t* fingerprint, uint8_t* buffer, uint32_t buffer_len) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->target = target;
    cfg->backup = backup;
    cfg->fingerprint = fingerprint;
    cfg->current_version = backup.version;
    cfg->buffer = buffer;
    cfg->buffer_len = buffer_len;
}

uint32_t modelota_min_version(const modelota_updater* u) { return u->min_version; }

#if MODELOTA_SIGNATURES
int modelota_ed25519_verify_cb(void* ctx, const uint8_t* msg, uint32_t len, const uint8_t* sig) {
    return modelota_ed25519_verify(sig, msg, static_cast<size_t>(len),
                                   static_cast<const uint8_t*>(ctx));
}

modelota_verifier modelota_ed25519_verifier(const uint8_t* public_key) {
    modelota_verifier v;
    v.verify = modelota_ed25519_verify_cb;
    v.ctx = const_cast<uint8_t*>(public_key);
    return v;
}
#endif

}  // extern "C"
