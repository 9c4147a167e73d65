/*
 * Decode benchmark shared by the Cortex-M4 (m4/decode_bench.cpp) and the
 * ATmega2560 (avr/decode_bench.cpp) builds; bench/bench_size.py generates
 * the vectors, builds, runs and reads the "key=value" lines.
 *
 * 1. The v2 chunk decoder alone, per encoding: a case is a series of chunks
 *    from real weights, decoded in order from a fresh model, the encoded
 *    bytes handed over in BENCH_PIECE-byte pieces as a UART would deliver
 *    them; only the modelota_decode calls are timed. Each chunk's output is
 *    checked against the packer's CRC32.
 * 2. A whole update through the Updater (RAM model), the payload fed in
 *    BENCH_PIECE-byte pieces: header, CRCs, decoding, writes and the final
 *    digest; timed from begin to finish. The region is checked after.
 *
 * The board file provides, before including this header:
 *   bench_now(), bench_elapsed(start) -> timer units (see the board file);
 *   bench_kv(key, value); bench_rom_read(dst, src, n) (copies from where
 *   BENCH_ROM puts the vectors: flash on AVR, plain memory on the M4).
 */
#ifndef MODELOTA_DECODE_BENCH_H
#define MODELOTA_DECODE_BENCH_H

#include <stdint.h>
#include <string.h>

#include "modelota.h"

/* Generated: BENCH_PIECE, BENCH_MAX_CHUNK, BENCH_CASES, bench_chunks[],
 * bench_case_first[], bench_bodies[], bench_bases[], BENCH_APPLIES,
 * bench_applies[], bench_payloads[], bench_regions[], BENCH_REGION_MAX. */
#include DECODE_BENCH_VECTORS

namespace {

modelota_decoder g_dec;
uint8_t g_out[BENCH_MAX_CHUNK];
uint8_t g_in[BENCH_PIECE];
uint8_t g_region[BENCH_REGION_MAX];
uint8_t g_chunk_buf[BENCH_MAX_CHUNK];
modelota_updater g_updater;
uint32_t g_old_region_at; /* the apply's old region in bench_regions (backup reads) */

void bench_decoder_cases() {
    bench_kv("decoder_bytes", static_cast<uint32_t>(sizeof(modelota_decoder)));
    bench_kv("updater_bytes", static_cast<uint32_t>(sizeof(modelota_updater)));
    for (uint32_t c = 0; c < BENCH_CASES; ++c) {
        modelota_decoder_reset(&g_dec);
        uint32_t units = 0;
        uint32_t out_bytes = 0;
        uint32_t in_bytes = 0;
        uint32_t ok = 1;
        for (uint32_t k = bench_case_first[c]; k < bench_case_first[c + 1]; ++k) {
            BenchChunk ch;
            bench_rom_read(&ch, &bench_chunks[k], sizeof(ch));
            if ((ch.enc & MODELOTA_ENC_DIFF) != 0) {
                bench_rom_read(g_out, bench_bases + ch.base_at, ch.length);
            }
            modelota_decode_begin(&g_dec, ch.enc, ch.offset, ch.length);
            for (uint32_t pos = 0; pos < ch.size; pos += BENCH_PIECE) {
                uint32_t n = ch.size - pos < BENCH_PIECE ? ch.size - pos : BENCH_PIECE;
                bench_rom_read(g_in, bench_bodies + ch.body_at + pos, n);
                uint32_t t = bench_now();
                modelota_decode(&g_dec, g_in, n, g_out, 0, ch.length);
                units += bench_elapsed(t);
            }
            uint32_t t = bench_now();
            modelota_decode(&g_dec, NULL, 0, g_out, 0, ch.length);
            units += bench_elapsed(t);
            ok &= modelota_decoded(&g_dec) == ch.length &&
                  modelota_crc32(0, g_out, static_cast<size_t>(ch.length)) == ch.crc;
            out_bytes += ch.length;
            in_bytes += ch.size;
        }
        bench_kv("case", c);
        bench_kv("units", units);
        bench_kv("out", out_bytes);
        bench_kv("in", in_bytes);
        bench_kv("ok", ok);
    }
}

int bench_backup_read(void*, uint32_t offset, uint8_t* dst, uint32_t len) {
    bench_rom_read(dst, bench_regions + g_old_region_at + offset, len);
    return 0;
}

void bench_applies_run() {
    for (uint32_t a = 0; a < BENCH_APPLIES; ++a) {
        BenchApply ap;
        bench_rom_read(&ap, &bench_applies[a], sizeof(ap));
        g_old_region_at = ap.old_at;
        bench_rom_read(g_region, bench_regions + ap.old_at, ap.region);
        modelota_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.target.ram = g_region;
        cfg.target.size = ap.region;
        cfg.backup.read = bench_backup_read;
        cfg.backup.version = 1;
        cfg.fingerprint = bench_fingerprint;
        cfg.current_version = 1;
        cfg.buffer = g_chunk_buf;
        cfg.buffer_len = BENCH_MAX_CHUNK;
        uint32_t units = 0;
        int st = modelota_init(&g_updater, &cfg);
        if (st == MODELOTA_OK) {
            st = modelota_begin(&g_updater);
        }
        for (uint32_t pos = 0; st == MODELOTA_OK && pos < ap.size; pos += BENCH_PIECE) {
            uint32_t n = ap.size - pos < BENCH_PIECE ? ap.size - pos : BENCH_PIECE;
            bench_rom_read(g_in, bench_payloads + ap.payload_at + pos, n);
            uint32_t t = bench_now();
            st = modelota_feed(&g_updater, g_in, static_cast<size_t>(n));
            units += bench_elapsed(t);
        }
        if (st == MODELOTA_OK) {
            uint32_t t = bench_now();
            st = modelota_finish(&g_updater);
            units += bench_elapsed(t);
        }
        bench_kv("apply", a);
        bench_kv("units", units);
        bench_kv("wire", ap.size);
        bench_kv("region", ap.region);
        bench_kv("status", static_cast<uint32_t>(-st));
        bench_kv("ok", st == MODELOTA_OK &&
                             modelota_crc32(0, g_region, static_cast<size_t>(ap.region)) ==
                                 ap.new_crc);
    }
}

}  // namespace

#endif /* MODELOTA_DECODE_BENCH_H */
