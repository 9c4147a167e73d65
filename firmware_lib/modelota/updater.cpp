#include "updater.h"

#include <string.h>

#if defined(__AVR__)
#include <avr/pgmspace.h> /* memcpy_PF: backups in program memory */
#endif
#if MODELOTA_SIGNATURES
#include "ed25519.h"
#endif

static_assert(sizeof(modelota_updater) <= MODELOTA_MAX_UPDATER_BYTES,
              "Updater state exceeds MODELOTA_MAX_UPDATER_BYTES");
static_assert(MODELOTA_CHUNK_TAIL_LEN <= MODELOTA_CHUNK_HEAD_LEN, "tail reuses field[]");
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
    for (uint32_t off = lo; off < hi;) {
        uint32_t n = min_u32(c->buffer_len, hi - off);
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

/* The header is gathered in three steps, stopping after the magic (byte 4)
 * and the format version (byte 5) so a wrong stream is refused at once. */
uint32_t header_want(uint32_t pos) {
    return pos < 4u ? 4u : (pos < 5u ? 5u : MODELOTA_HEADER_LEN);
}

bool digest_type_known(uint8_t type) {
#if MODELOTA_SHA256
    if (type == MODELOTA_DIGEST_SHA256) {
        return true;
    }
#endif
    return type == MODELOTA_DIGEST_CRC32;
}

bool is_signed(const modelota_updater* u) {
    return (modelota_load_u16le(u->cfg->buffer + 6) & MODELOTA_FLAG_SIGNED) != 0;
}

/* Everything the 96 header bytes can tell on their own, in the order of
 * docs/FORMAT.md. The delta base is checked after the signature block
 * (check_base): no region read before the signature is verified. */
int check_header(modelota_updater* u) {
    const modelota_config* c = u->cfg;
    const uint8_t* h = c->buffer;
    /* magic and format version were checked as their bytes arrived */
    u->header_crc = modelota_load_u32le(h + MODELOTA_HEADER_CRC_OFFSET);
    if (modelota_crc32(0, h, MODELOTA_HEADER_CRC_OFFSET) != u->header_crc) {
        return MODELOTA_BAD_HEADER_CRC;
    }
    uint8_t digest_type = h[5];
    uint16_t flags = modelota_load_u16le(h + 6);
    uint32_t base_version = modelota_load_u32le(h + 28);
    uint32_t base_crc = modelota_load_u32le(h + 32);
    bool delta = (flags & MODELOTA_FLAG_DELTA) != 0;
    bool sig = (flags & MODELOTA_FLAG_SIGNED) != 0;
    if (!digest_type_known(digest_type) || (flags & ~MODELOTA_KNOWN_FLAGS) != 0 ||
        (sig && digest_type != MODELOTA_DIGEST_SHA256) ||
        (!sig && modelota_load_u32le(h + 88) != 0) ||
        (!delta && (base_version != 0 || base_crc != 0))) {
        return MODELOTA_UNSUPPORTED;
    }
    if (digest_type == MODELOTA_DIGEST_CRC32) {
        for (uint32_t i = 4; i < MODELOTA_DIGEST_LEN; ++i) {
            if (h[56 + i] != 0) { /* CRC32 digest uses the first 4 bytes only */
                return MODELOTA_UNSUPPORTED;
            }
        }
    }
    if (c->verifier.verify != NULL && !sig) {
        return MODELOTA_UNSIGNED;
    }
    u->digest_type = digest_type;
    if (memcmp(h + 8, c->fingerprint, MODELOTA_FINGERPRINT_LEN) != 0) {
        return MODELOTA_WRONG_MODEL;
    }
    if (modelota_load_u32le(h + 36) != c->target.size) {
        return MODELOTA_WRONG_SIZE;
    }
    u->new_version = modelota_load_u32le(h + 24);
    if (u->new_version < u->current_version || u->new_version < u->min_version) {
        return MODELOTA_ROLLBACK;
    }
    if (u->new_version == u->current_version) {
        return MODELOTA_ALREADY_CURRENT;
    }
    u->data_size = modelota_load_u32le(h + 40);
    u->chunk_count = modelota_load_u32le(h + 44);
    u->segment_count = modelota_load_u32le(h + 48);
    u->max_chunk = modelota_load_u32le(h + 52);
    if (u->data_size > c->target.size || u->max_chunk > c->buffer_len) {
        return MODELOTA_TOO_LARGE;
    }
    /* every chunk carries at least one byte and no more than max_chunk;
     * every segment holds at least one chunk */
    bool empty = u->chunk_count == 0;
    if (empty != (u->data_size == 0) || empty != (u->segment_count == 0) ||
        empty != (u->max_chunk == 0) || u->chunk_count > u->data_size ||
        u->segment_count > u->chunk_count ||
        (!empty && (u->data_size - 1u) / u->max_chunk >= u->chunk_count)) {
        return MODELOTA_LAYOUT_MISMATCH;
    }
    memcpy(u->digest, h + 56, MODELOTA_DIGEST_LEN);
    return MODELOTA_OK;
}

/* DELTA: the region must hold exactly the base the delta was made for. The
 * header is still at the start of the buffer (the signature went after it);
 * this is its last use: reading a region that is not in RAM reuses the buffer. */
int check_base(modelota_updater* u) {
    const uint8_t* h = u->cfg->buffer;
    if ((modelota_load_u16le(h + 6) & MODELOTA_FLAG_DELTA) == 0) {
        return MODELOTA_OK;
    }
    if (modelota_load_u32le(h + 28) != u->current_version) {
        return MODELOTA_WRONG_BASE;
    }
    uint32_t base_crc = modelota_load_u32le(h + 32);
    uint32_t crc = 0;
    int st = region_crc(u->cfg, &crc);
    if (st < 0) {
        return st;
    }
    return crc == base_crc ? MODELOTA_OK : MODELOTA_WRONG_BASE;
}

/* ---- writable ranges --------------------------------------------------- */

/* 1 when cfg->writable is absent or holds ascending, disjoint pairs inside
 * a region of `size` bytes. */
bool writable_valid(const modelota_writable* w, uint32_t size) {
    if (w->ranges == NULL) {
        return w->count == 0;
    }
    uint32_t end = 0;
    for (uint32_t i = 0; i < w->count; ++i) {
        uint32_t off = w->ranges[2u * i];
        uint32_t len = w->ranges[2u * i + 1u];
        if (len == 0 || off < end || off > size || len > size - off) {
            return false;
        }
        end = off + len;
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
    if (w->ranges == NULL) {
        return MODELOTA_OK;
    }
    uint32_t end = off + len;
    uint32_t pos = off; /* bytes before pos are checked */
    /* first range that ends after off (ranges are ascending) */
    uint32_t lo = 0;
    uint32_t hi = w->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2u;
        if (w->ranges[2u * mid] + w->ranges[2u * mid + 1u] <= off) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    for (uint32_t i = lo; i < w->count && pos < end; ++i) {
        uint32_t r_off = w->ranges[2u * i];
        uint32_t r_end = r_off + w->ranges[2u * i + 1u];
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
    if (u->data_seen != u->data_size || u->segments_seen != u->segment_count) {
        return MODELOTA_LAYOUT_MISMATCH;
    }
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
    u->running_crc = modelota_crc32(u->header_crc, f, MODELOTA_CHUNK_HEAD_LEN);
    if (u->cfg->verify_only) {
        /* the current bytes between the previous chunk and this one are part
         * of the final region: hash them now, while the buffer is free */
        int st = region_digest_range(u, u->digest_pos, off);
        u->digest_pos = off;
        return st;
    }
    return MODELOTA_OK;
}

int apply_chunk(modelota_updater* u) {
    if (modelota_load_u32le(u->field) != u->running_crc) {
        return MODELOTA_CHUNK_CRC;
    }
    uint32_t off = u->chunk_offset;
    uint32_t len = u->chunk_len;
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
    return u->chunk_count == 0 ? finalize(u) : MODELOTA_OK;
}

/* The signature block is in: with a verifier, it must sign the 96 header
 * bytes still at the start of the buffer. Nothing has been written yet. */
int check_signature(modelota_updater* u) {
    const modelota_config* c = u->cfg;
    if (c->verifier.verify != NULL &&
        c->verifier.verify(c->verifier.ctx, c->buffer, MODELOTA_HEADER_LEN,
                           c->buffer + MODELOTA_HEADER_LEN) != 1) {
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
        took = gather(u, c->buffer, header_want(u->pos), data, n);
        if (u->pos == 4u && memcmp(c->buffer, kMagic, 4) != 0) {
            *st = MODELOTA_BAD_MAGIC;
        } else if (u->pos == 5u && c->buffer[4] != MODELOTA_FORMAT_VERSION) {
            *st = MODELOTA_UNSUPPORTED_VERSION;
        } else if (u->pos == MODELOTA_HEADER_LEN) {
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
        uint8_t* dst = c->verifier.verify != NULL ? c->buffer + MODELOTA_HEADER_LEN : NULL;
        took = gather(u, dst, MODELOTA_SIGNATURE_LEN, data, n);
        if (u->pos == MODELOTA_SIGNATURE_LEN) {
            *st = check_signature(u);
        }
        break;
    }
    case MODELOTA_STATE_CHUNK_HEAD:
        took = gather(u, u->field, MODELOTA_CHUNK_HEAD_LEN, data, n);
        if (u->pos == MODELOTA_CHUNK_HEAD_LEN) {
            *st = check_chunk_head(u);
            u->pos = 0;
            u->state = MODELOTA_STATE_CHUNK_DATA;
        }
        break;
    case MODELOTA_STATE_CHUNK_DATA: {
        uint32_t start = u->pos;
        took = gather(u, c->buffer, u->chunk_len, data, n);
        u->running_crc = modelota_crc32(u->running_crc, c->buffer + start, sz(took));
        if (u->pos == u->chunk_len) {
            u->pos = 0;
            u->state = MODELOTA_STATE_CHUNK_TAIL;
        }
        break;
    }
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
        return header_want(u->pos) - u->pos;
    case MODELOTA_STATE_SIGNATURE: return MODELOTA_SIGNATURE_LEN - u->pos;
    case MODELOTA_STATE_CHUNK_HEAD: return MODELOTA_CHUNK_HEAD_LEN - u->pos;
    case MODELOTA_STATE_CHUNK_DATA: return u->chunk_len - u->pos;
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
