#include "store.h"

#include <string.h>

#include "crc32.h"
#include "decode.h"
#include "format.h"
#include "updater.h"
#if MODELOTA_SHA256
#include "sha256.h"
#endif

static_assert(MODELOTA_RECORD_LEN % 4u == 0u && MODELOTA_ENTRY_LEN % 4u == 0u, "u32 fields");
static_assert(sizeof(modelota_store) <= 96u, "store state stays small");

namespace {

const uint32_t kRecordMagic = 0x524Du; /* "MR", low half of a record's first word */
const uint32_t kCommitted = 1u;       /* high half: the record's state */
const uint32_t kClean = 2u;
/* journal slots that recovery may spoil (one per power cut during an entry
 * write) on top of one slot per touched block */
const uint32_t kJournalSpare = 8u;

/* ---- little helpers ------------------------------------------------------ */

void put_u32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
    p[2] = static_cast<uint8_t>(v >> 16);
    p[3] = static_cast<uint8_t>(v >> 24);
}

uint32_t round_up(uint32_t n, uint32_t unit) { return (n + unit - 1u) / unit * unit; }

/* Lengths here are bounded by a block or the region, both addressable. */
size_t sz(uint32_t n) { return static_cast<size_t>(n); }

const modelota_storage* hal(const modelota_store* st) { return st->cfg->storage; }
uint32_t bsize(const modelota_store* st) { return hal(st)->block_size; }
uint32_t region_blocks(const modelota_store* st) {
    return (st->cfg->region_size + bsize(st) - 1u) / bsize(st);
}

int io(int rc) { return rc == 0 ? MODELOTA_OK : MODELOTA_STORAGE_IO; }

int rd(const modelota_store* st, uint32_t block, uint32_t off, uint8_t* buf, uint32_t n) {
    return io(hal(st)->read(hal(st), block, off, buf, n));
}
int pg(const modelota_store* st, uint32_t block, uint32_t off, const uint8_t* buf, uint32_t n) {
    return io(hal(st)->prog(hal(st), block, off, buf, n));
}
int er(const modelota_store* st, uint32_t block) { return io(hal(st)->erase(hal(st), block)); }
int sync(const modelota_store* st) {
    return hal(st)->sync == NULL ? MODELOTA_OK : io(hal(st)->sync(hal(st)));
}

#define TRY(expr)                  \
    do {                           \
        int try_rc_ = (expr);      \
        if (try_rc_ < 0) {         \
            return try_rc_;        \
        }                          \
    } while (0)

/* Programs `len` bytes (len <= MODELOTA_MAX_PROG_SIZE rounded) padded with
 * the erased value to a whole number of prog units. */
int prog_padded(const modelota_store* st, uint32_t block, uint32_t off, const uint8_t* src,
                uint32_t len) {
    uint8_t unit[MODELOTA_RECORD_LEN > MODELOTA_MAX_PROG_SIZE ? MODELOTA_RECORD_LEN
                                                               : MODELOTA_MAX_PROG_SIZE];
    uint32_t total = round_up(len, hal(st)->prog_size);
    memset(unit, hal(st)->erased_value, sizeof(unit));
    memcpy(unit, src, sz(len));
    return pg(st, block, off, unit, total);
}

/* Reads [pos, pos+n) of an area of consecutive blocks. */
int area_read(const modelota_store* st, uint32_t first, uint32_t pos, uint8_t* dst, uint32_t n) {
    uint32_t bs = bsize(st);
    while (n > 0) {
        uint32_t in_block = pos % bs;
        uint32_t take = bs - in_block < n ? bs - in_block : n;
        TRY(rd(st, first + pos / bs, in_block, dst, take));
        pos += take;
        dst += take;
        n -= take;
    }
    return MODELOTA_OK;
}

/* CRC32 of [0, n) of an area, read through the block buffer. */
int area_crc(const modelota_store* st, uint32_t first, uint32_t n, uint32_t* out) {
    uint32_t crc = 0;
    for (uint32_t pos = 0; pos < n;) {
        uint32_t take = n - pos < bsize(st) ? n - pos : bsize(st);
        TRY(area_read(st, first, pos, st->cfg->block_buf, take));
        crc = modelota_crc32(crc, st->cfg->block_buf, sz(take));
        pos += take;
    }
    *out = crc;
    return MODELOTA_OK;
}

/* ---- commit records -------------------------------------------------------
 * A record is 32 bytes at the start of one of the two meta blocks:
 *   magic | state << 16, seq, version, region_crc, log_len, log_crc,
 *   min_version, crc32(previous 28)
 * The latest valid record (highest seq) is the truth. A new record always
 * goes to the other meta block, so a torn write never spoils the latest one.
 * min_version (the anti-rollback floor) lives in every record, so it moves
 * with the commit that raises it: a cut leaves the old floor with the old
 * weights or the new floor with the new ones. */

struct Record {
    uint32_t seq, state, version, region_crc, log_len, log_crc, min_version;
};

bool decode_record(const uint8_t* b, Record* r) {
    uint32_t head = modelota_load_u32le(b);
    if ((head & 0xFFFFu) != kRecordMagic ||
        modelota_crc32(0, b, MODELOTA_RECORD_LEN - 4u) != modelota_load_u32le(b + 28)) {
        return false;
    }
    r->state = head >> 16;
    r->seq = modelota_load_u32le(b + 4);
    r->version = modelota_load_u32le(b + 8);
    r->region_crc = modelota_load_u32le(b + 12);
    r->log_len = modelota_load_u32le(b + 16);
    r->log_crc = modelota_load_u32le(b + 20);
    r->min_version = modelota_load_u32le(b + 24);
    return r->state == kCommitted || r->state == kClean;
}

int read_records(modelota_store* st) {
    uint8_t raw[MODELOTA_RECORD_LEN];
    bool found = false;
    Record best = Record();
    for (uint32_t i = 0; i < 2u; ++i) {
        TRY(rd(st, st->cfg->meta_block + i, 0, raw, MODELOTA_RECORD_LEN));
        Record r;
        if (decode_record(raw, &r) && (!found || r.seq > best.seq)) {
            best = r;
            found = true;
            st->latest_meta = i;
        }
    }
    if (!found) {
        st->state = MODELOTA_STORE_EMPTY;
        st->seq = 0;
        st->min_version = 0;
        st->latest_meta = 1u; /* the first record goes to meta block 0 */
        return MODELOTA_OK;
    }
    st->seq = best.seq;
    st->version = best.version;
    st->region_crc = best.region_crc;
    st->log_len = best.log_len;
    st->log_crc = best.log_crc;
    st->min_version = best.min_version;
    st->state = best.state == kCommitted ? MODELOTA_STORE_PENDING : MODELOTA_STORE_CLEAN;
    return MODELOTA_OK;
}

uint32_t max_u32(uint32_t a, uint32_t b) { return a > b ? a : b; }

/* Writes the next record. The floor it carries is the current one raised to
 * `floor` and to `version`: a store never holds a model below its floor. */
int write_record(modelota_store* st, uint32_t state, uint32_t version, uint32_t region_crc,
                 uint32_t log_len, uint32_t log_crc, uint32_t floor = 0u) {
    uint8_t raw[MODELOTA_RECORD_LEN];
    uint32_t seq = st->seq + 1u;
    uint32_t min_version = max_u32(max_u32(st->min_version, floor), version);
    put_u32(raw, kRecordMagic | (state << 16));
    put_u32(raw + 4, seq);
    put_u32(raw + 8, version);
    put_u32(raw + 12, region_crc);
    put_u32(raw + 16, log_len);
    put_u32(raw + 20, log_crc);
    put_u32(raw + 24, min_version);
    put_u32(raw + 28, modelota_crc32(0, raw, MODELOTA_RECORD_LEN - 4u));
    uint32_t target = 1u - st->latest_meta;
    TRY(er(st, st->cfg->meta_block + target));
    TRY(prog_padded(st, st->cfg->meta_block + target, 0, raw, MODELOTA_RECORD_LEN));
    TRY(sync(st));
    st->seq = seq;
    st->latest_meta = target;
    st->version = version;
    st->region_crc = region_crc;
    st->log_len = log_len;
    st->log_crc = log_crc;
    st->min_version = min_version;
    st->state = state == kCommitted ? MODELOTA_STORE_PENDING : MODELOTA_STORE_CLEAN;
    return MODELOTA_OK;
}

/* ---- journal --------------------------------------------------------------
 * Append-only entries, one per region block the apply rewrites, written
 * before the block is touched: {block, crc of old contents, crc of new
 * contents, crc32 of those 12 bytes seeded with the COMMITTED record's seq}.
 * Blocks named by entries before the last valid one are done; the block of
 * the last one may be anywhere in its rewrite, which its two CRCs tell. */

struct Entry {
    uint32_t block, old_crc, new_crc;
};

uint32_t slot_size(const modelota_store* st) {
    return round_up(MODELOTA_ENTRY_LEN, hal(st)->prog_size);
}
uint32_t journal_capacity(const modelota_store* st) {
    return (bsize(st) / slot_size(st)) * st->cfg->journal_blocks;
}

void slot_addr(const modelota_store* st, uint32_t slot, uint32_t* block, uint32_t* off) {
    uint32_t per_block = bsize(st) / slot_size(st);
    *block = st->cfg->journal_block + slot / per_block;
    *off = (slot % per_block) * slot_size(st);
}

/* Finds the first erased slot and the last valid entry before it. Slots
 * spoilt by a torn write are skipped. */
int journal_scan(const modelota_store* st, uint32_t* next_free, Entry* last, bool* have_last) {
    uint8_t raw[MODELOTA_ENTRY_LEN];
    uint32_t cap = journal_capacity(st);
    *have_last = false;
    for (uint32_t i = 0; i < cap; ++i) {
        uint32_t block, off;
        slot_addr(st, i, &block, &off);
        TRY(rd(st, block, off, raw, MODELOTA_ENTRY_LEN));
        bool erased = true;
        for (uint32_t k = 0; k < MODELOTA_ENTRY_LEN; ++k) {
            erased = erased && raw[k] == hal(st)->erased_value;
        }
        if (erased) {
            *next_free = i;
            return MODELOTA_OK;
        }
        if (modelota_crc32(st->seq, raw, 12) == modelota_load_u32le(raw + 12)) {
            last->block = modelota_load_u32le(raw);
            last->old_crc = modelota_load_u32le(raw + 4);
            last->new_crc = modelota_load_u32le(raw + 8);
            *have_last = true;
        }
    }
    *next_free = cap;
    return MODELOTA_OK;
}

int journal_append(const modelota_store* st, uint32_t slot, const Entry& e) {
    if (slot >= journal_capacity(st)) {
        return MODELOTA_STORAGE_IO;
    }
    uint8_t raw[MODELOTA_ENTRY_LEN];
    put_u32(raw, e.block);
    put_u32(raw + 4, e.old_crc);
    put_u32(raw + 8, e.new_crc);
    put_u32(raw + 12, modelota_crc32(st->seq, raw, 12));
    uint32_t block, off;
    slot_addr(st, slot, &block, &off);
    TRY(prog_padded(st, block, off, raw, MODELOTA_ENTRY_LEN));
    return sync(st);
}

/* ---- applying the log to the region --------------------------------------- */

struct Apply {
    modelota_store* st;
    uint32_t next_free; /* journal slot for the next entry */
    Entry last;         /* last valid journal entry before this run */
    bool have_last;
    bool active;        /* a block is loaded in block_buf */
    bool skip;          /* that block is already done */
    bool has_entry;     /* that block already has its journal entry */
    uint32_t block;     /* region-relative block in block_buf */
    uint32_t old_crc;
};

/* Loads region block b into block_buf as the base for new data, making sure
 * its old contents are in the backup block before anything changes it. */
int start_block(Apply* a, uint32_t b) {
    modelota_store* st = a->st;
    const modelota_store_config* c = st->cfg;
    uint32_t bs = bsize(st);
    a->active = true;
    a->block = b;
    a->skip = a->have_last && b < a->last.block;
    a->has_entry = a->have_last && b == a->last.block;
    if (a->skip) {
        return MODELOTA_OK;
    }
    TRY(rd(st, c->region_block + b, 0, c->block_buf, bs));
    uint32_t crc = modelota_crc32(0, c->block_buf, sz(bs));
    if (a->has_entry) {
        if (crc == a->last.new_crc) {
            a->skip = true; /* rewritten before the cut */
            return MODELOTA_OK;
        }
        if (crc != a->last.old_crc) {
            /* cut while the block was being rewritten: the backup has it */
            TRY(rd(st, c->backup_block, 0, c->block_buf, bs));
            if (modelota_crc32(0, c->block_buf, sz(bs)) != a->last.old_crc) {
                return MODELOTA_STORAGE_IO;
            }
        }
        a->old_crc = a->last.old_crc;
        return MODELOTA_OK;
    }
    a->old_crc = crc;
    TRY(er(st, c->backup_block));
    TRY(pg(st, c->backup_block, 0, c->block_buf, bs));
    return sync(st);
}

int flush_block(Apply* a) {
    modelota_store* st = a->st;
    const modelota_store_config* c = st->cfg;
    uint32_t bs = bsize(st);
    a->active = false;
    if (a->skip) {
        return MODELOTA_OK;
    }
    uint32_t new_crc = modelota_crc32(0, c->block_buf, sz(bs));
    if (!a->has_entry) {
        Entry e = {a->block, a->old_crc, new_crc};
        TRY(journal_append(st, a->next_free, e));
        a->next_free++;
    }
    TRY(er(st, c->region_block + a->block));
    TRY(pg(st, c->region_block + a->block, 0, c->block_buf, bs));
    TRY(sync(st));
    TRY(rd(st, c->region_block + a->block, 0, c->block_buf, bs));
    return modelota_crc32(0, c->block_buf, sz(bs)) == new_crc ? MODELOTA_OK : MODELOTA_STORAGE_IO;
}

/* What finishing a logged payload needs from its header (v1 or v2). */
struct LogHeader {
    uint32_t chunk_count;
    uint32_t max_chunk;
    uint32_t chunks_start; /* after the header and a signature block */
    uint32_t digest_len;
    uint8_t format_version;
    uint8_t flags;
    uint8_t digest_type;
    uint8_t digest[MODELOTA_DIGEST_LEN];
};

int read_log_header(const modelota_store* st, LogHeader* out) {
    uint8_t h[MODELOTA_HEADER_LEN];
    if (st->log_len < 6u) {
        return MODELOTA_STORAGE_IO;
    }
    TRY(area_read(st, st->cfg->log_block, 0, h, 6u));
    uint32_t len = h[4] == MODELOTA_FORMAT_V2 ? h[MODELOTA_V2_LEN_OFFSET] : MODELOTA_HEADER_LEN;
    if (len < MODELOTA_V2_MIN_HEADER_LEN || len > MODELOTA_HEADER_LEN || len > st->log_len) {
        return MODELOTA_STORAGE_IO;
    }
    TRY(area_read(st, st->cfg->log_block, 0, h, len));
    modelota_header_info info;
    if (modelota_header_parse(h, len, &info) < 0) {
        return MODELOTA_STORAGE_IO;
    }
    out->chunk_count = info.chunk_count;
    out->max_chunk = info.max_chunk;
    bool signed_payload = (info.flags & MODELOTA_FLAG_SIGNED) != 0;
    out->chunks_start = len + (signed_payload ? MODELOTA_SIGNATURE_LEN : 0u);
    out->format_version = info.format_version;
    out->flags = static_cast<uint8_t>(info.flags);
    out->digest_type = info.digest_type;
    out->digest_len = info.digest_len;
    memcpy(out->digest, info.digest, sz(info.digest_len));
    return MODELOTA_OK;
}

/* Produces a chunk's new bytes piece by piece: copied from the log (RAW) or
 * decoded from its encoded bytes there (v2 RUNS, RC, DIFF), in order. */
struct Source {
    const modelota_store* st;
    modelota_decoder* dec;
    uint32_t pos;  /* next encoded byte in the log */
    uint32_t end;  /* end of the chunk's encoded bytes */
    uint32_t done; /* decoded bytes of the chunk delivered so far */
    uint8_t enc;
    /* PRED: region offsets of the predicted values and of their source */
    uint32_t pred_at;
    uint32_t pred_src;
    uint32_t pred_count;
    uint32_t pred_divisor;
};

/* The chunk's next `len` bytes into dst (DIFF: dst holds the base bytes).
 * `skip`: the bytes are not needed (a block already rewritten), but a coded
 * chunk is still decoded: the range coder's model carries on. */
int source_fill(Source* s, uint8_t* dst, uint32_t len, bool skip) {
    const uint32_t log = s->st->cfg->log_block;
    if (s->enc == MODELOTA_ENC_RAW) {
        if (!skip) {
            TRY(area_read(s->st, log, s->pos, dst, len));
        }
        s->pos += len;
        s->done += len;
        return MODELOTA_OK;
    }
    uint8_t in[16];
    const uint32_t from = s->done;
    const uint32_t to = s->done + len;
    /* each pass consumes input or completes the piece: at most one per byte */
    for (uint32_t left = s->end - s->pos + 1u; left > 0 && modelota_decoded(s->dec) < to; --left) {
        if (s->pos == s->end) {
            modelota_decode(s->dec, NULL, 0, dst, from, to); /* zeros past the end */
            break;
        }
        uint32_t k = s->end - s->pos < sizeof(in) ? s->end - s->pos : sizeof(in);
        TRY(area_read(s->st, log, s->pos, in, k));
        s->pos += modelota_decode(s->dec, in, k, dst, from, to);
    }
    s->done = to;
    return modelota_decoded(s->dec) == to ? MODELOTA_OK : MODELOTA_STORAGE_IO;
}

/* Walks the chunks of the logged payload (already verified) and calls
 * `visit(ctx, offset, len, source)` for each piece that falls in one region
 * block, in ascending order. `dec` (NULL when no piece is filled) decodes
 * v2 chunks. */
typedef int (*piece_fn)(void* ctx, uint32_t offset, uint32_t len, Source* src);

int walk_log(modelota_store* st, piece_fn visit, void* ctx, modelota_decoder* dec) {
    const modelota_store_config* c = st->cfg;
    LogHeader lh;
    TRY(read_log_header(st, &lh));
    const bool v2 = lh.format_version == MODELOTA_FORMAT_V2;
    if (dec != NULL) {
        modelota_decoder_reset(dec);
    }
    uint32_t pos = lh.chunks_start;
    uint32_t write_end = 0;
    uint32_t kept_off = 0; /* KEEP and PRED as the Updater checked them */
    uint32_t kept_len = 0;
    uint32_t bs = bsize(st);
    for (uint32_t i = 0; i < lh.chunk_count; ++i) {
        uint8_t head[MODELOTA_V2_MAX_CHUNK_HEAD];
        uint32_t off, len, size, head_len;
        uint8_t enc = MODELOTA_ENC_RAW;
        modelota_chunk_head ch;
        memset(&ch, 0, sizeof(ch));
        if (pos > st->log_len || st->log_len - pos < MODELOTA_CHUNK_TAIL_LEN + 1u) {
            return MODELOTA_STORAGE_IO;
        }
        if (v2) {
            uint32_t k = st->log_len - pos < sizeof(head) ? st->log_len - pos : sizeof(head);
            TRY(area_read(st, c->log_block, pos, head, k));
            if (modelota_chunk_head_parse(head, k, (lh.flags & MODELOTA_FLAG_DELTA) != 0, &ch) !=
                    1 ||
                ch.gap > c->region_size - write_end || ch.length > c->region_size - write_end - ch.gap ||
                modelota_chunk_refs_check(&ch, write_end + ch.gap, lh.max_chunk, kept_off,
                                          kept_len) != MODELOTA_OK) {
                return MODELOTA_STORAGE_IO;
            }
            off = write_end + ch.gap;
            len = ch.length;
            size = ch.size;
            enc = ch.enc;
            head_len = ch.head_len;
        } else {
            if (st->log_len - pos < MODELOTA_CHUNK_HEAD_LEN + MODELOTA_CHUNK_TAIL_LEN) {
                return MODELOTA_STORAGE_IO;
            }
            TRY(area_read(st, c->log_block, pos, head, MODELOTA_CHUNK_HEAD_LEN));
            off = modelota_load_u32le(head + 4);
            len = modelota_load_u32le(head + 8);
            size = len;
            head_len = MODELOTA_CHUNK_HEAD_LEN;
        }
        pos += head_len;
        if (size > st->log_len - pos || st->log_len - pos - size < MODELOTA_CHUNK_TAIL_LEN ||
            off > c->region_size || len > c->region_size - off) {
            return MODELOTA_STORAGE_IO;
        }
        Source src = {st, dec, pos, pos + size, 0, enc, 0, 0, 0, 0};
        if ((enc & MODELOTA_ENC_PRED) != 0) {
            src.pred_at = off + ch.pred_start;
            src.pred_src = src.pred_at - ch.pred_back;
            src.pred_count = ch.pred_count;
            src.pred_divisor = ch.pred_divisor;
            if (src.pred_src < off) {
                kept_len = 0; /* released */
            }
        }
        if ((enc & MODELOTA_ENC_KEEP) != 0) {
            kept_off = off + ch.keep_start;
            kept_len = ch.keep_len;
        }
        if (enc != MODELOTA_ENC_RAW) {
            if (dec == NULL) {
                src.enc = MODELOTA_ENC_RAW; /* counting: nothing is filled */
            } else {
                modelota_decode_begin(dec, enc, off, len);
            }
        }
        write_end = off + len;
        while (len > 0) {
            uint32_t take = bs - off % bs < len ? bs - off % bs : len;
            TRY(visit(ctx, off, take, &src));
            off += take;
            len -= take;
        }
        pos += size + MODELOTA_CHUNK_TAIL_LEN;
    }
    return MODELOTA_OK;
}

/* A new byte of the region, before the block in block_buf: from flash (those
 * blocks are rewritten) or from block_buf. */
int new_byte(const Apply* a, uint32_t off, uint8_t* out) {
    const modelota_store_config* c = a->st->cfg;
    uint32_t bs = bsize(a->st);
    if (off / bs == a->block) {
        *out = c->block_buf[off % bs];
        return MODELOTA_OK;
    }
    return rd(a->st, c->region_block + off / bs, off % bs, out, 1);
}

/* PRED: adds the prediction to region bytes [lo, hi) of block_buf, a part of
 * the predicted values; their source precedes them and is already new. */
int add_prediction(const Apply* a, const Source* s, uint32_t lo, uint32_t hi) {
    uint32_t bs = bsize(a->st);
    uint8_t* buf = a->st->cfg->block_buf;
    for (uint32_t k = (lo - s->pred_at) / 4u; k <= (hi - 1u - s->pred_at) / 4u; ++k) {
        uint8_t v[4];
        for (uint32_t j = 0; j < 4u; ++j) {
            TRY(new_byte(a, s->pred_src + 4u * k + j, &v[j]));
        }
        uint32_t q = modelota_fdiv(modelota_load_u32le(v), s->pred_divisor);
        for (uint32_t j = 0; j < 4u; ++j) {
            uint32_t at = s->pred_at + 4u * k + j;
            if (at >= lo && at < hi) {
                buf[at % bs] = static_cast<uint8_t>(buf[at % bs] + (q >> (8u * j)));
            }
        }
    }
    return MODELOTA_OK;
}

int apply_piece(void* ctx, uint32_t offset, uint32_t len, Source* src) {
    Apply* a = static_cast<Apply*>(ctx);
    uint32_t bs = bsize(a->st);
    uint32_t b = offset / bs;
    if (!a->active || b != a->block) {
        if (a->active) {
            TRY(flush_block(a));
        }
        TRY(start_block(a, b));
    }
    uint8_t* dst = a->st->cfg->block_buf + offset % bs;
    uint32_t lo = 0;
    uint32_t hi = 0;
    if ((src->enc & MODELOTA_ENC_PRED) != 0) { /* the part of the piece that is predicted */
        uint32_t end = src->pred_at + 4u * src->pred_count;
        lo = offset > src->pred_at ? offset : src->pred_at;
        hi = offset + len < end ? offset + len : end;
        if (lo < hi && (src->enc & MODELOTA_ENC_DIFF) != 0) {
            memset(dst + (lo - offset), 0, sz(hi - lo)); /* a residual, not a difference */
        }
    }
    TRY(source_fill(src, dst, len, a->skip));
    return lo < hi && !a->skip ? add_prediction(a, src, lo, hi) : MODELOTA_OK;
}

struct Count {
    uint32_t blocks;
    uint32_t last;
    uint32_t bs;
};

int count_piece(void* ctx, uint32_t offset, uint32_t, Source*) {
    Count* k = static_cast<Count*>(ctx);
    uint32_t b = offset / k->bs;
    if (k->blocks == 0 || b != k->last) {
        k->blocks++;
        k->last = b;
    }
    return MODELOTA_OK;
}

/* Checks the rewritten region against the logged payload's digest (CRC32 or
 * SHA-256, in one pass) and gives its CRC32 for the CLEAN record. */
int check_region_digest(modelota_store* st, uint32_t* region_crc) {
    const modelota_store_config* c = st->cfg;
    LogHeader lh;
    TRY(read_log_header(st, &lh));
    const uint8_t type = lh.digest_type;
    const uint8_t* digest = lh.digest;
#if MODELOTA_SHA256
    modelota_sha256 sha;
    modelota_sha256_init(&sha);
#endif
    uint32_t crc = 0;
    for (uint32_t pos = 0; pos < c->region_size;) {
        uint32_t take = c->region_size - pos < bsize(st) ? c->region_size - pos : bsize(st);
        TRY(area_read(st, c->region_block, pos, c->block_buf, take));
        crc = modelota_crc32(crc, c->block_buf, sz(take));
#if MODELOTA_SHA256
        if (type == MODELOTA_DIGEST_SHA256) {
            modelota_sha256_update(&sha, c->block_buf, sz(take));
        }
#endif
        pos += take;
    }
    *region_crc = crc;
    if (type == MODELOTA_DIGEST_CRC32) {
        return crc == modelota_load_u32le(digest) ? MODELOTA_OK : MODELOTA_STORAGE_IO;
    }
#if MODELOTA_SHA256
    if (type == MODELOTA_DIGEST_SHA256) {
        uint8_t out[MODELOTA_SHA256_LEN];
        modelota_sha256_final(&sha, out);
        return memcmp(out, digest, MODELOTA_SHA256_LEN) == 0 ? MODELOTA_OK : MODELOTA_STORAGE_IO;
    }
#endif
    return MODELOTA_STORAGE_IO; /* the Updater never lets another type reach a commit */
}

/* Applies a COMMITTED log: every region block it names is rewritten, then a
 * CLEAN record closes the transaction. Idempotent: recovery runs it again
 * after a cut and it picks up where the journal says. */
int finish_pending(modelota_store* st) {
    const modelota_store_config* c = st->cfg;
    uint32_t crc = 0;
    TRY(area_crc(st, c->log_block, st->log_len, &crc));
    if (crc != st->log_crc) {
        return MODELOTA_STORAGE_IO; /* the log itself decayed: nothing safe to do */
    }
    Apply a;
    memset(&a, 0, sizeof(a));
    a.st = st;
    TRY(journal_scan(st, &a.next_free, &a.last, &a.have_last));
    modelota_decoder dec; /* v2 chunks are decoded from the log as the blocks are rebuilt */
    TRY(walk_log(st, apply_piece, &a, &dec));
    if (a.active) {
        TRY(flush_block(&a));
    }
    uint32_t region_crc = 0;
    TRY(check_region_digest(st, &region_crc));
    return write_record(st, kClean, st->version, region_crc, 0, 0);
}

/* ---- log appends ------------------------------------------------------------ */

/* Programs `n` bytes (a multiple of prog_size, inside one block) at log
 * position log_len, erasing each log block when the log first enters it. */
int log_prog(modelota_store* st, const uint8_t* src, uint32_t n) {
    const modelota_store_config* c = st->cfg;
    uint32_t bs = bsize(st);
    uint32_t block = c->log_block + st->log_len / bs;
    uint32_t off = st->log_len % bs;
    if (off == 0) {
        TRY(er(st, block));
    }
    TRY(pg(st, block, off, src, n));
    st->log_len += n;
    return MODELOTA_OK;
}

}  // namespace

extern "C" {

int modelota_store_init(modelota_store* st, const modelota_store_config* cfg) {
    if (st == NULL || cfg == NULL || cfg->storage == NULL || cfg->block_buf == NULL) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    memset(st, 0, sizeof(*st));
    const modelota_storage* s = cfg->storage;
    if (s->read == NULL || s->prog == NULL || s->erase == NULL || s->prog_size == 0 ||
        s->prog_size > MODELOTA_MAX_PROG_SIZE || s->block_size < 2u * MODELOTA_RECORD_LEN ||
        s->block_size % s->prog_size != 0 || cfg->journal_blocks == 0 || cfg->log_blocks == 0 ||
        cfg->region_size == 0) {
        return MODELOTA_INVALID_ARGUMENT;
    }
    /* every area inside the storage and none overlapping another */
    const uint32_t first[5] = {cfg->region_block, cfg->meta_block, cfg->backup_block,
                               cfg->journal_block, cfg->log_block};
    const uint32_t count[5] = {(cfg->region_size + s->block_size - 1u) / s->block_size, 2u, 1u,
                               cfg->journal_blocks, cfg->log_blocks};
    for (int i = 0; i < 5; ++i) {
        if (first[i] > s->block_count || count[i] > s->block_count - first[i]) {
            return MODELOTA_INVALID_ARGUMENT;
        }
        for (int j = 0; j < i; ++j) {
            if (first[i] < first[j] + count[j] && first[j] < first[i] + count[i]) {
                return MODELOTA_INVALID_ARGUMENT;
            }
        }
    }
    st->cfg = cfg;
    return read_records(st);
}

int modelota_store_recover(modelota_store* st) {
    if (st->cfg == NULL) {
        return MODELOTA_BAD_STATE;
    }
    TRY(read_records(st));
    if (st->state == MODELOTA_STORE_PENDING) {
        /* finish_pending checks the rewritten region against the payload's
         * digest before it writes the CLEAN record: no second pass needed */
        return finish_pending(st);
    }
    if (st->state == MODELOTA_STORE_CLEAN) {
        uint32_t crc = 0;
        TRY(area_crc(st, st->cfg->region_block, st->cfg->region_size, &crc));
        if (crc != st->region_crc) {
            return MODELOTA_STORAGE_IO; /* the region decayed since its record */
        }
    }
    return MODELOTA_OK;
}

int modelota_store_format(modelota_store* st, const uint8_t* weights, uint32_t version) {
    if (st->cfg == NULL || st->state == MODELOTA_STORE_PENDING ||
        st->state == MODELOTA_STORE_LOGGING) {
        return MODELOTA_BAD_STATE;
    }
    const modelota_store_config* c = st->cfg;
    uint32_t bs = bsize(st);
    if (weights != NULL) {
        for (uint32_t b = 0; b < region_blocks(st); ++b) {
            uint32_t lo = b * bs;
            uint32_t n = c->region_size - lo < bs ? c->region_size - lo : bs;
            /* bytes of the last block past the region keep their contents */
            TRY(rd(st, c->region_block + b, 0, c->block_buf, bs));
            memcpy(c->block_buf, weights + lo, sz(n));
            TRY(er(st, c->region_block + b));
            TRY(pg(st, c->region_block + b, 0, c->block_buf, bs));
        }
        TRY(sync(st));
    }
    uint32_t crc = 0;
    TRY(area_crc(st, c->region_block, c->region_size, &crc));
    return write_record(st, kClean, version, crc, 0, 0);
}

int modelota_store_load(modelota_store* st, uint8_t* ram, uint32_t size) {
    if (st->cfg == NULL || st->state != MODELOTA_STORE_CLEAN || size != st->cfg->region_size) {
        return MODELOTA_STORAGE_IO;
    }
    TRY(area_read(st, st->cfg->region_block, 0, ram, size));
    return modelota_crc32(0, ram, sz(size)) == st->region_crc ? MODELOTA_OK : MODELOTA_STORAGE_IO;
}

int modelota_store_state_of(const modelota_store* st) { return st->state; }
uint32_t modelota_store_version(const modelota_store* st) { return st->version; }
uint32_t modelota_store_min_version(const modelota_store* st) { return st->min_version; }

int modelota_store_raise_min_version(modelota_store* st, uint32_t min_version) {
    if (st->cfg == NULL || st->state != MODELOTA_STORE_CLEAN) {
        return MODELOTA_BAD_STATE;
    }
    if (min_version <= st->min_version) {
        return MODELOTA_OK; /* the floor only rises */
    }
    return write_record(st, kClean, st->version, st->region_crc, 0, 0, min_version);
}

int modelota_store_begin(modelota_store* st) {
    if (st->cfg == NULL || st->state == MODELOTA_STORE_PENDING) {
        return MODELOTA_BAD_STATE; /* recover() first */
    }
    if (st->state == MODELOTA_STORE_LOGGING) {
        modelota_store_cancel(st);
    }
    if (st->state != MODELOTA_STORE_CLEAN) {
        return MODELOTA_BAD_STATE; /* format() first: the region must hold a known model */
    }
    for (uint32_t i = 0; i < st->cfg->journal_blocks; ++i) {
        TRY(er(st, st->cfg->journal_block + i));
    }
    st->log_len = 0;
    st->tail_len = 0;
    st->state = MODELOTA_STORE_LOGGING;
    return MODELOTA_OK;
}

int modelota_store_log(modelota_store* st, const uint8_t* data, uint32_t n) {
    if (st->state != MODELOTA_STORE_LOGGING) {
        return MODELOTA_BAD_STATE;
    }
    const uint32_t ps = hal(st)->prog_size;
    const uint32_t bs = bsize(st);
    const uint32_t capacity = st->cfg->log_blocks * bs;
    if (n > capacity - st->log_len - st->tail_len) {
        return MODELOTA_TOO_LARGE;
    }
    while (n > 0) {
        if (st->tail_len > 0 || n < ps) {
            uint32_t take = ps - st->tail_len < n ? ps - st->tail_len : n;
            memcpy(st->tail + st->tail_len, data, sz(take));
            st->tail_len = static_cast<uint8_t>(st->tail_len + take);
            data += take;
            n -= take;
            if (st->tail_len == ps) {
                TRY(log_prog(st, st->tail, ps));
                st->tail_len = 0;
            }
            continue;
        }
        /* whole prog units straight from the caller's bytes, within one block */
        uint32_t room = bs - st->log_len % bs;
        uint32_t take = (n < room ? n : room) / ps * ps;
        TRY(log_prog(st, data, take));
        data += take;
        n -= take;
    }
    return MODELOTA_OK;
}

int modelota_store_commit(modelota_store* st, uint32_t version) {
    if (st->state != MODELOTA_STORE_LOGGING) {
        return MODELOTA_BAD_STATE;
    }
    const modelota_store_config* c = st->cfg;
    uint32_t payload_len = st->log_len + st->tail_len;
    if (st->tail_len > 0) {
        uint8_t pad[MODELOTA_MAX_PROG_SIZE];
        memset(pad, hal(st)->erased_value, sizeof(pad));
        memcpy(pad, st->tail, st->tail_len);
        TRY(log_prog(st, pad, hal(st)->prog_size));
        st->tail_len = 0;
    }
    TRY(sync(st));
    st->log_len = payload_len;
    if (payload_len < MODELOTA_V2_MIN_HEADER_LEN) {
        modelota_store_cancel(st);
        return MODELOTA_TRUNCATED;
    }
    /* the journal must hold one entry per block this update rewrites */
    Count k = {0, 0, bsize(st)};
    int rc = walk_log(st, count_piece, &k, NULL);
    if (rc < 0 || k.blocks + kJournalSpare > journal_capacity(st)) {
        modelota_store_cancel(st);
        return rc < 0 ? rc : MODELOTA_TOO_LARGE;
    }
    uint32_t log_crc = 0;
    TRY(area_crc(st, c->log_block, payload_len, &log_crc));
    TRY(write_record(st, kCommitted, version, 0, payload_len, log_crc));
    return finish_pending(st);
}

void modelota_store_cancel(modelota_store* st) {
    if (st->state == MODELOTA_STORE_LOGGING) {
        st->state = MODELOTA_STORE_CLEAN; /* nothing but the log was written */
        st->log_len = 0;
        st->tail_len = 0;
    }
}

int modelota_store_region_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len) {
    modelota_store* st = static_cast<modelota_store*>(ctx);
    if (st->state != MODELOTA_STORE_CLEAN && st->state != MODELOTA_STORE_LOGGING) {
        return MODELOTA_STORAGE_IO; /* never serve a half-applied region */
    }
    if (offset > st->cfg->region_size || len > st->cfg->region_size - offset) {
        return MODELOTA_STORAGE_IO;
    }
    return area_read(st, st->cfg->region_block, offset, dst, len);
}

void modelota_store_attach_ram(modelota_config* cfg, modelota_store* st, uint8_t* ram) {
    cfg->target.ram = ram;
    cfg->target.read = NULL;
    cfg->target.write = NULL;
    cfg->target.ctx = st;
    cfg->target.size = st->cfg->region_size;
    cfg->target.commit = modelota_store_commit_hook;
    cfg->backup = modelota_backup_callback(modelota_store_region_read, st,
                                           st->cfg->region_size, st->version);
    cfg->verify_only = 0;
    cfg->min_version = st->min_version;
}

void modelota_store_attach_flash(modelota_config* cfg, modelota_store* st) {
    cfg->target.ram = NULL;
    cfg->target.read = modelota_store_region_read;
    cfg->target.write = NULL;
    cfg->target.ctx = st;
    cfg->target.size = st->cfg->region_size;
    cfg->target.commit = modelota_store_commit_hook;
    memset(&cfg->backup, 0, sizeof(cfg->backup)); /* verify_only: no restore */
    cfg->verify_only = 1;
    cfg->min_version = st->min_version;
}

int modelota_store_commit_hook(void* ctx, uint32_t version) {
    modelota_store* st = static_cast<modelota_store*>(ctx);
    int rc = modelota_store_commit(st, version);
    if (rc < 0 && st->state == MODELOTA_STORE_PENDING) {
        rc = finish_pending(st); /* one retry for a transient storage error */
    }
    return rc;
}

}  // extern "C"

#undef TRY
