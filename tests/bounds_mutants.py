"""Mutation proof of the bounds tests (tests/test_bounds.py).

Every bounds check of the Updater, the Store and the link (and the Python
mirror of the Updater's, format/payload.py) is moved by one, in each
direction where that changes anything, and the named test that guards the
edge must then fail. ``MUTANTS`` is the table; docs/DESIGN.md ("Bounds checks
and their tests") is the same table for readers.

C++ mutants are compiled into ONE native module: each checked expression
``old`` becomes ``(modelota_mutant == k ? (new) : (old))``, and the global
``modelota_mutant`` picks the mutant at run time (0: none, the core as it
is). One build (~15 s) serves them all, so the whole proof takes a minute.
Python mutants are the mirror's source with ``old`` replaced, loaded as a
separate module that the tests call instead of the real one.

    python tests/bounds_mutants.py              # every mutant
    python tests/bounds_mutants.py updater.chunk-end+1 ...

Prints one line per mutant and exits 1 if any survives (its tests all
pass), if a listed ``old`` text is no longer in the source once (the table
must follow the code), or if the unmutated instrumented core fails a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T = "tests/test_bounds.py::"


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # under firmware_lib/, or host_tools/... for the Python mirror
    old: str  # the checked expression (or a statement, with its ;), exactly once in the file
    new: str  # the same check moved by one
    tests: tuple[str, ...]  # node ids (under tests/test_bounds.py) that must fail

    @property
    def python(self) -> bool:
        return self.file.endswith(".py")


def m(id_: str, file: str, old: str, new: str, *tests: str) -> Mutant:
    return Mutant(id_, file, old, new, tuple(T + t for t in tests))


UPD = "modelota/updater.cpp"
STO = "modelota/store.cpp"
LNK = "modelota/link.cpp"
DEC = "modelota/decode.cpp"  # the header parsers (v1 and v2) since format v2
PAY = "host_tools/modelota/format/payload.py"
# drop_stalled: a frame being gathered is kept while its bytes are under GAP_MS apart
GAP_KEPT = (
    "static_cast<uint32_t>(t - l->last_byte_ms) < static_cast<uint32_t>(MODELOTA_LINK_GAP_MS)"
)
V1_MAX = (
    "length > h.max_chunk:\n"
    '            raise _Fail(Status.BadChunk, f"chunk {seq} length {length} (max {h.max_chunk})")\n'
    "        if off < write_end"
)
V1_REMAINING = (
    "length > h.data_size - data_seen:\n"
    "            raise _Fail(Status.LayoutMismatch,"
    ' f"chunk {seq} exceeds the announced data size")\n'
    "        end = pos + CHUNK_HEAD_LEN"
)
BUF_MIN = "cfg->buffer == NULL ||\n        cfg->buffer_len < MODELOTA_HEADER_LEN"
SILENCE = "static_cast<uint32_t>(t - l->last_rx_ms)"
CHUNK_LEN = "len == 0 || len > u->max_chunk"
CHUNK = "off < u->write_end || off > size || len > size - off"
WVALID = "r.len == 0 || r.off < end || r.off > size || r.len > size - r.off"
V2_LEN = "head.length == 0 || head.length > u->max_chunk || (coded && head.size >= head.length)"
V2_REGION = "head.gap > size - u->write_end || head.length > size - u->write_end - head.gap"
V2_REMAINING = "head.length > u->data_size - u->data_seen"
V5 = "i == MODELOTA_VARINT_MAX - 1u && (b & 0xF0u) != 0"
PY_V2_REGION = "gap > limit - write_end or length > limit - write_end - gap"
# KEEP and PRED (decode.cpp modelota_chunk_refs_check, modelota_fdiv, the head)
R_KEEP = "h->keep_len == 0 || h->keep_start > len || h->keep_len > len - h->keep_start"
R_LIVE = "kept_len > max_chunk || len > max_chunk - kept_len"
R_COUNT = "n == 0 || h->pred_start > len || n > (len - h->pred_start) / 4u"
R_BACK = "h->pred_back < 4u * n || h->pred_back > target"
FDIV_IN = "ea == 0 || ea == 0xFFu || ed == 0 || ed == 0xFFu"
FDIV_OUT = "e <= 0 || e >= 0xFF"
ROOM = "u->kept_len != 0 ? u->max_chunk - u->kept_len : c->buffer_len"
RELEASE = "u->kept_len = 0; /* a prediction from the kept bytes releases them */"
WALK_REFS = (
    "modelota_chunk_refs_check(&ch, write_end + ch.gap, lh.max_chunk, kept_off,\n"
    "                                          kept_len) != MODELOTA_OK"
)
PRED_END = "src->pred_at + 4u * src->pred_count"
PY_KEEP = "kl == 0 or ks > hd.length or kl > hd.length - ks"
PY_COUNT = "q.count == 0 or q.start > hd.length or q.count > (hd.length - q.start) // 4"
KP = "test_v2_pred_source_outside_the_kept_range_is_refused"
QE = "test_v2_pred_quotient_edges"

MUTANTS: tuple[Mutant, ...] = (
    # ---- Updater: chunk against the region (check_chunk_head)
    m("updater.chunk-end+1", UPD, CHUNK, "off < u->write_end || off > size || len > size + 1 - off",
      "test_updater_chunk_ending_one_past_region_end_is_refused"),
    m("updater.chunk-end-1", UPD, CHUNK, "off < u->write_end || off > size || len >= size - off",
      "test_updater_chunk_ending_exactly_at_region_end_is_applied"),
    m("updater.chunk-offset+1", UPD, CHUNK,
      "off < u->write_end || off > size + 1 || len > size - off",
      "test_updater_chunk_starting_past_region_end_is_refused[size+1]"),
    m("updater.chunk-overlap+1", UPD, CHUNK,
      "off + 1 < u->write_end || off > size || len > size - off",
      "test_updater_chunk_overlapping_previous_by_one_byte_is_refused"),
    m("updater.chunk-overlap-1", UPD, CHUNK,
      "off <= u->write_end || off > size || len > size - off",
      "test_updater_chunk_starting_at_previous_chunk_end_is_applied"),
    # ---- Updater: chunk length
    m("updater.chunk-len-0", UPD, CHUNK_LEN, "len > u->max_chunk",
      "test_updater_zero_length_chunk_is_refused"),
    m("updater.max-chunk+1", UPD, CHUNK_LEN, "len == 0 || len > u->max_chunk + 1",
      "test_updater_chunk_one_byte_over_max_chunk_is_refused"),
    m("updater.max-chunk-1", UPD, CHUNK_LEN, "len == 0 || len >= u->max_chunk",
      "test_updater_chunk_of_max_chunk_bytes_is_applied"),
    m("updater.remaining+1", UPD, "len > u->data_size - u->data_seen",
      "len > u->data_size + 1 - u->data_seen",
      "test_updater_chunk_carrying_one_byte_more_than_announced_is_refused"),
    m("updater.remaining-1", UPD, "len > u->data_size - u->data_seen",
      "len >= u->data_size - u->data_seen",
      "test_updater_chunk_carrying_exactly_the_remaining_data_is_applied"),
    # ---- Updater: header sizes and layout (check_header)
    m("updater.data-size+1", UPD, "u->data_size > c->target.size",
      "u->data_size > c->target.size + 1",
      "test_updater_data_size_over_region_is_refused[size+1]"),
    m("updater.data-size-1", UPD, "u->data_size > c->target.size",
      "u->data_size >= c->target.size", "test_updater_data_size_equal_to_region_is_applied"),
    m("updater.buffer+1", UPD, "u->max_chunk > c->buffer_len", "u->max_chunk > c->buffer_len + 1",
      "test_updater_max_chunk_over_buffer_is_refused[buffer+1]"),
    m("updater.buffer-1", UPD, "u->max_chunk > c->buffer_len", "u->max_chunk >= c->buffer_len",
      "test_updater_max_chunk_equal_to_buffer_is_applied"),
    m("updater.chunks-per-byte+1", UPD, "u->chunk_count > u->data_size",
      "u->chunk_count > u->data_size + 1", "test_updater_more_chunks_than_data_bytes_is_refused"),
    m("updater.chunks-per-byte-1", UPD, "u->chunk_count > u->data_size",
      "u->chunk_count >= u->data_size",
      "test_updater_one_byte_chunks_as_many_as_data_bytes_are_applied"),
    m("updater.segments+1", UPD, "u->segment_count > u->chunk_count",
      "u->segment_count > u->chunk_count + 1",
      "test_updater_more_segments_than_chunks_is_refused"),
    m("updater.segments-1", UPD, "u->segment_count > u->chunk_count",
      "u->segment_count >= u->chunk_count",
      "test_updater_one_byte_chunks_as_many_as_data_bytes_are_applied"),
    m("updater.fewest-chunks+1", UPD, "(u->data_size - 1u) / u->max_chunk >= u->chunk_count",
      "(u->data_size - 1u) / u->max_chunk > u->chunk_count",
      "test_updater_one_chunk_fewer_than_max_chunk_allows_is_refused"),
    m("updater.fewest-chunks-1", UPD, "(u->data_size - 1u) / u->max_chunk >= u->chunk_count",
      "(u->data_size - 1u) / u->max_chunk + 1u >= u->chunk_count",
      "test_updater_fewest_chunks_max_chunk_allows_are_applied"),
    m("updater.buffer-min+1", UPD, BUF_MIN,
      "cfg->buffer == NULL || cfg->buffer_len < MODELOTA_HEADER_LEN - 1u",
      "test_updater_buffer_of_header_size_is_accepted_one_less_refused"),
    m("updater.buffer-min-1", UPD, BUF_MIN,
      "cfg->buffer == NULL || cfg->buffer_len <= MODELOTA_HEADER_LEN",
      "test_updater_buffer_of_header_size_is_accepted_one_less_refused"),
    m("updater.padding-first", DEC, "h[56 + i] != 0", "i > 4 && h[56 + i] != 0",
      "test_updater_crc32_digest_padding_byte_set_is_refused[first]"),
    m("updater.padding-last", DEC, "i < MODELOTA_DIGEST_LEN", "i < MODELOTA_DIGEST_LEN - 1u",
      "test_updater_crc32_digest_padding_byte_set_is_refused[last]"),
    # ---- Updater, format v2: chunk heads (check_chunk_head_v2)
    m("updater.v2-len-0", UPD, V2_LEN, V2_LEN.replace("head.length == 0 || ", ""),
      "test_v2_zero_length_chunk_is_refused"),
    m("updater.v2-max-chunk+1", UPD, V2_LEN, V2_LEN.replace("u->max_chunk", "u->max_chunk + 1u"),
      "test_v2_chunk_one_byte_over_max_chunk_is_refused"),
    m("updater.v2-max-chunk-1", UPD, V2_LEN, V2_LEN.replace("> u->max_chunk", ">= u->max_chunk"),
      "test_v2_chunk_of_max_chunk_bytes_is_applied"),
    m("updater.v2-coded-size+1", UPD, V2_LEN, V2_LEN.replace("size >= head", "size > head"),
      "test_v2_coded_chunk_as_large_as_its_length_is_refused"),
    m("updater.v2-coded-size-1", UPD, V2_LEN, V2_LEN.replace("size >= head", "size + 1u >= head"),
      "test_v2_coded_chunk_one_byte_smaller_than_its_length_is_applied"),
    m("updater.v2-gap+1", UPD, V2_REGION,
      V2_REGION.replace("head.gap > size - u->write_end", "head.gap > size + 1u - u->write_end"),
      "test_v2_gap_past_region_end_is_refused[size+1]"),
    # No "gap - 1" mutant: `gap >= size - write_end` refuses only chunks that
    # start at the region's end, which the length test refuses anyway (length >= 1).
    m("updater.v2-end+1", UPD, V2_REGION,
      V2_REGION.replace("head.length > size - u", "head.length > size + 1u - u"),
      "test_v2_chunk_ending_one_past_region_end_is_refused"),
    m("updater.v2-end-1", UPD, V2_REGION,
      V2_REGION.replace("head.length > size - u", "head.length >= size - u"),
      "test_v2_chunk_ending_exactly_at_region_end_is_applied"),
    m("updater.v2-remaining+1", UPD, V2_REMAINING,
      "head.length > u->data_size + 1u - u->data_seen",
      "test_v2_chunk_carrying_one_byte_more_than_announced_is_refused"),
    m("updater.v2-remaining-1", UPD, V2_REMAINING,
      "head.length >= u->data_size - u->data_seen",
      "test_v2_chunk_carrying_exactly_the_remaining_data_is_applied"),
    # ---- varints (decode.cpp read_varint): five bytes, 32 bits, shortest form
    m("varint.fifth-byte+1", DEC, V5, V5.replace("MAX - 1u", "MAX"),
      "test_v2_varint_of_value_2_32_is_refused"),
    m("varint.fifth-byte-bits+1", DEC, V5, V5.replace("0xF0u", "0xE0u"),
      "test_v2_varint_of_value_2_32_is_refused"),
    m("varint.fifth-byte-bits-1", DEC, V5, V5.replace("0xF0u", "0xF8u"),
      "test_v2_varint_of_five_bytes_up_to_u32_max_is_read"),
    m("varint.minimal+1", DEC, "i > 0 && b == 0", "i > 1u && b == 0",
      "test_v2_varint_not_in_its_shortest_form_is_refused"),
    # ---- KEEP and PRED: modelota_chunk_refs_check (Updater and Store walk)
    m("refs.keep-len-0", DEC, R_KEEP, R_KEEP.replace("h->keep_len == 0 || ", ""),
      "test_v2_keep_of_zero_bytes_is_refused"),
    m("refs.keep-end+1", DEC, R_KEEP,
      R_KEEP.replace("len - h->keep_start", "len + 1u - h->keep_start"),
      "test_v2_keep_ending_one_past_the_chunk_end_is_refused"),
    m("refs.keep-end-1", DEC, R_KEEP, R_KEEP.replace("h->keep_len > len", "h->keep_len >= len"),
      "test_v2_keep_ending_at_the_chunk_end_is_applied"),
    m("refs.keep-start+1", DEC, R_KEEP, R_KEEP.replace("keep_start > len", "keep_start > len + 1u"),
      "test_v2_keep_starting_past_the_chunk_end_is_refused[len+1]"),
    # No "keep-start-1" (`keep_start >= len`): keep_len >= 1 does not fit the
    # 0 bytes left at keep_start == len either way.
    m("refs.kept-max+1", DEC, R_LIVE,
      R_LIVE.replace("kept_len > max_chunk", "kept_len > max_chunk + 1u"),
      "test_store_log_v2_kept_range_longer_than_max_chunk_is_refused"),
    # No "kept-max-1": kept_len == max_chunk leaves room 0, refused by the next test.
    m("refs.kept-room+1", DEC, R_LIVE,
      R_LIVE.replace("max_chunk - kept_len", "max_chunk + 1u - kept_len"),
      "test_v2_chunk_one_byte_over_max_chunk_with_the_kept_ones_is_refused"),
    m("refs.kept-room-1", DEC, R_LIVE, R_LIVE.replace("len > max_chunk -", "len >= max_chunk -"),
      "test_v2_chunk_of_max_chunk_bytes_with_the_kept_ones_is_applied"),
    m("refs.pred-count-0", DEC, R_COUNT, R_COUNT.replace("n == 0 || ", ""),
      "test_v2_pred_of_zero_values_is_refused"),
    m("refs.pred-start+1", DEC, R_COUNT,
      R_COUNT.replace("pred_start > len", "pred_start > len + 1u"),
      "test_v2_pred_starting_past_the_chunk_end_is_refused[len+1]"),
    # No "pred-start-1" (`pred_start >= len`): no value fits at the chunk's end.
    m("refs.pred-end+1", DEC, R_COUNT,
      R_COUNT.replace("(len - h->pred_start)", "(len + 1u - h->pred_start)"),
      "test_v2_pred_past_the_chunk_end_is_refused[start+1]"),
    m("refs.pred-end-1", DEC, R_COUNT, R_COUNT.replace("n > (len", "n >= (len"),
      "test_v2_pred_ending_at_the_chunk_end_is_applied"),
    m("refs.back-overlap+1", DEC, R_BACK, R_BACK.replace("pred_back < 4u", "pred_back + 1u < 4u"),
      "test_v2_pred_source_overlapping_its_target_is_refused"),
    m("refs.back-overlap-1", DEC, R_BACK, R_BACK.replace("pred_back < 4u", "pred_back <= 4u"),
      "test_v2_pred_source_right_before_its_target_is_applied"),
    m("refs.back-region+1", DEC, R_BACK, R_BACK.replace("> target", "> target + 1u"),
      "test_v2_pred_source_before_the_region_is_refused"),
    m("refs.back-region-1", DEC, R_BACK, R_BACK.replace("> target", ">= target"),
      "test_v2_pred_source_at_region_offset_0_is_applied"),
    m("refs.in-chunk+1", DEC, "src >= offset", "src + 1u >= offset",
      "test_v2_pred_source_one_byte_before_the_chunk_is_refused"),
    m("refs.in-chunk-1", DEC, "src >= offset", "src > offset",
      "test_v2_pred_source_at_the_chunk_start_is_applied"),
    m("refs.kept-start-1", DEC, "src >= kept_off", "src > kept_off",
      "test_v2_pred_source_at_either_end_of_the_kept_range_is_applied[start]"),
    # No "kept-start+1" (`src + 1 >= kept_off`): a source before kept_off
    # makes `src - kept_off` wrap above kept_len, refused by the next test,
    # which alone would do; nor `src - kept_off < kept_len`: a source starting
    # at the kept range's end has no room for 4 n >= 4 bytes.
    m("refs.kept-after-end+1", DEC, "src - kept_off <= kept_len", "src - kept_off <= kept_len + 1u",
      KP + "[after-end]"),
    m("refs.kept-end+1", DEC, "4u * n <= kept_len - (src - kept_off)",
      "4u * n <= kept_len + 1u - (src - kept_off)", KP + "[past-end]"),
    m("refs.kept-end-1", DEC, "4u * n <= kept_len - (src - kept_off)",
      "4u * n < kept_len - (src - kept_off)",
      "test_v2_pred_source_at_either_end_of_the_kept_range_is_applied[end]"),
    # ---- the head's divisor: `n - pos < 4u` (modelota_chunk_head_parse)
    m("head.divisor+1", DEC, "n - pos < 4u", "n - pos < 5u",
      "test_v2_pred_ending_at_the_chunk_end_is_applied"),
    m("head.divisor-1", DEC, "n - pos < 4u", "n - pos < 3u",
      "test_v2_pred_ending_at_the_chunk_end_is_applied"),
    # ---- modelota_fdiv: operands and quotient normal, rounding
    m("fdiv.dividend-low+1", DEC, FDIV_IN, FDIV_IN.replace("ea == 0 ", "ea <= 1u "),
      QE + "[dividend-exp-1]"),
    m("fdiv.dividend-low-1", DEC, FDIV_IN, FDIV_IN.replace("ea == 0 || ", ""),
      QE + "[dividend-subnormal]"),
    m("fdiv.dividend-high-1", DEC, FDIV_IN, FDIV_IN.replace("ea == 0xFFu", "ea >= 0xFEu"),
      QE + "[dividend-exp-254]"),
    m("fdiv.dividend-high+1", DEC, FDIV_IN, FDIV_IN.replace("ea == 0xFFu || ", ""),
      QE + "[dividend-inf]"),
    m("fdiv.divisor-low+1", DEC, FDIV_IN, FDIV_IN.replace("ed == 0 ", "ed <= 1u "),
      QE + "[divisor-exp-1]"),
    m("fdiv.divisor-low-1", DEC, FDIV_IN, FDIV_IN.replace("ed == 0 || ", ""),
      QE + "[divisor-subnormal]"),
    m("fdiv.divisor-high-1", DEC, FDIV_IN, FDIV_IN.replace("ed == 0xFFu", "ed >= 0xFEu"),
      QE + "[divisor-exp-254]"),
    m("fdiv.divisor-high+1", DEC, FDIV_IN, FDIV_IN.replace(" || ed == 0xFFu", ""),
      QE + "[divisor-inf]"),
    m("fdiv.quotient-low+1", DEC, FDIV_OUT, FDIV_OUT.replace("e <= 0", "e <= 1"),
      QE + "[quotient-exp-1]"),
    m("fdiv.quotient-low-1", DEC, FDIV_OUT, FDIV_OUT.replace("e <= 0", "e < 0"),
      QE + "[quotient-exp-0]"),
    m("fdiv.quotient-high-1", DEC, FDIV_OUT, FDIV_OUT.replace("e >= 0xFF", "e >= 0xFE"),
      QE + "[quotient-exp-254]"),
    m("fdiv.quotient-high+1", DEC, FDIV_OUT, FDIV_OUT.replace("e >= 0xFF", "e > 0xFF"),
      QE + "[quotient-exp-255]"),
    m("fdiv.round+1", DEC, "r > md", "r > md + 1u", QE + "[rounds-up-just-above-half]"),
    # No "round-1" (`r >= md`): r is twice the remainder and never equals md
    # (an exact quotient of two 24-bit significands is never half way).
    # ---- Updater: the kept range in the buffer (region_digest_range, apply_chunk)
    m("updater.digest-room+1", UPD, ROOM, ROOM.replace("- u->kept_len :", "- u->kept_len + 1u :"),
      "test_store_receive_hashes_gaps_around_the_kept_bytes"),
    m("updater.digest-room-kept", UPD, ROOM, "c->buffer_len",
      "test_store_receive_hashes_gaps_around_the_kept_bytes"),
    # No "digest-room-1": the same bytes in more passes, and with kept_len ==
    # max_chunk - 1 (a 1-byte chunk follows) a room of 0 that never ends.
    m("updater.release-1", UPD, "src < off", "src <= off",
      "test_v2_pred_from_its_own_chunk_leaves_the_range_kept",
      "test_v2_pred_from_its_own_chunk_leaves_no_room_for_max_chunk"),
    m("updater.release-never", UPD, RELEASE, "(void)0;",
      "test_v2_pred_from_the_kept_range_releases_it"),
    # No "release+1" (`src + 1 < off`): a source before the chunk lies in the
    # kept range, which ends at the chunk's offset or before, so src <= off - 4.
    # ---- Store: KEEP and PRED in the log (walk_log, apply_piece, add_prediction)
    m("store.walk-refs", STO, WALK_REFS, "false",
      "test_store_log_v2_pred_source_outside_the_kept_range_is_refused",
      "test_store_log_v2_kept_range_longer_than_max_chunk_is_refused"),
    m("store.walk-release-1", STO, "src.pred_src < off", "src.pred_src <= off",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.walk-release-never", STO, "src.pred_src < off", "false",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.pred-end+1", STO, PRED_END, PRED_END + " + 1u",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.pred-end-1", STO, PRED_END, PRED_END + " - 1u",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.pred-piece-start+1", STO, "at >= lo && at < hi", "at > lo && at < hi",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.pred-piece-end+1", STO, "at >= lo && at < hi", "at >= lo && at <= hi",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.pred-first-value+1", STO, "(lo - s->pred_at) / 4u", "(lo - s->pred_at) / 4u + 1u",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    m("store.pred-last-value-1", STO, "k <= (hi - 1u - s->pred_at) / 4u",
      "k < (hi - 1u - s->pred_at) / 4u",
      "test_store_log_v2_keep_and_pred_commit_the_reference_weights"),
    # ---- backup sources: modelota_source_read
    m("updater.source-end+1", UPD, "len > src->size - offset", "len > src->size + 1u - offset",
      "test_source_read_past_its_end_is_refused[len size+1]",
      "test_source_read_past_its_end_is_refused[end size+1]"),
    m("updater.source-end-1", UPD, "len > src->size - offset", "len >= src->size - offset",
      "test_source_read_edges"),
    m("updater.source-offset+1", UPD, "offset > src->size", "offset > src->size + 1u",
      "test_source_read_past_its_end_is_refused[offset size+1]"),
    # ---- Updater: versions
    m("updater.rollback+1", UPD, "u->new_version < u->current_version",
      "u->new_version + 1u < u->current_version",
      "test_updater_version_edges[current-1]"),
    m("updater.floor-1", UPD, "u->new_version < u->min_version", "u->new_version <= u->min_version",
      "test_updater_version_edges[at-floor]"),
    m("updater.floor+1", UPD, "u->new_version < u->min_version",
      "u->new_version + 1u < u->min_version", "test_updater_version_edges[floor-1]"),
    m("updater.current+1", UPD, "u->new_version == u->current_version",
      "u->new_version == u->current_version + 1u",
      "test_updater_version_edges[current+1]", "test_updater_version_edges[current]"),
    # ---- Updater: writable ranges (writable_valid, check_writable)
    m("updater.writable-end+1", UPD, WVALID,
      "r.len == 0 || r.off < end || r.off > size || r.len > size + 1 - r.off",
      "test_updater_writable_range_ending_one_past_region_end_is_refused"),
    m("updater.writable-end-1", UPD, WVALID,
      "r.len == 0 || r.off < end || r.off > size || r.len >= size - r.off",
      "test_updater_writable_range_ending_at_region_end_is_accepted"),
    m("updater.writable-offset+1", UPD, WVALID,
      "r.len == 0 || r.off < end || r.off > size + 1 || r.len > size - r.off",
      "test_updater_writable_range_starting_past_region_end_is_refused[size+1]"),
    m("updater.writable-overlap+1", UPD, WVALID,
      "r.len == 0 || r.off + 1 < end || r.off > size || r.len > size - r.off",
      "test_updater_writable_ranges_overlapping_by_one_byte_are_refused"),
    m("updater.writable-overlap-1", UPD, WVALID,
      "r.len == 0 || r.off <= end || r.off > size || r.len > size - r.off",
      "test_updater_writable_ranges_adjacent_are_accepted"),
    m("updater.writable-len-0", UPD, WVALID, "r.off < end || r.off > size || r.len > size - r.off",
      "test_updater_empty_writable_range_is_refused"),
    m("updater.writable-search+1", UPD, "r.off + r.len <= off", "r.off + r.len <= off + 1u",
      "test_updater_chunk_starting_at_the_last_byte_of_a_writable_range_is_applied"),
    m("updater.writable-next+1", UPD, "r_off >= end", "r_off + 1u >= end",
      "test_updater_chunk_ending_at_the_first_byte_of_a_writable_range_is_applied"),
    m("updater.writable-gap+1", UPD, "r_off > pos", "r_off > pos + 1u",
      "test_updater_chunk_changing_the_byte_between_two_writable_ranges_is_refused"),
    m("updater.writable-tail+1", UPD, "pos < end ? same_as_region(c, off, pos, end) : MODELOTA_OK",
      "pos + 1u < end ? same_as_region(c, off, pos, end) : MODELOTA_OK",
      "test_updater_chunk_changing_the_byte_after_the_last_writable_range_is_refused"),
    # ---- Store: log and journal capacity
    m("store.log+1", STO, "n > capacity - st->log_len - st->tail_len",
      "n > capacity + 1 - st->log_len - st->tail_len",
      "test_store_log_one_byte_over_is_refused"),
    m("store.log-1", STO, "n > capacity - st->log_len - st->tail_len",
      "n >= capacity - st->log_len - st->tail_len", "test_store_log_exactly_full_is_accepted"),
    m("store.journal+1", STO, "k.blocks + kJournalSpare > journal_capacity(st)",
      "k.blocks + kJournalSpare > journal_capacity(st) + 1u",
      "test_store_journal_one_entry_over_is_refused"),
    m("store.journal-1", STO, "k.blocks + kJournalSpare > journal_capacity(st)",
      "k.blocks + kJournalSpare >= journal_capacity(st)",
      "test_store_journal_exactly_full_commits"),
    m("store.journal-slot+1", STO, "slot >= journal_capacity(st)",
      "slot > journal_capacity(st)",
      "test_store_recovery_one_entry_past_the_journal_stops_before_writing_it"),
    m("store.journal-slot-1", STO, "slot >= journal_capacity(st)",
      "slot + 1u >= journal_capacity(st)",
      "test_store_recovery_with_its_last_entry_in_the_last_journal_slot_completes"),
    # ---- Store: the log's chunks (walk_log)
    m("store.walk-head+tail-1", STO,
      "st->log_len - pos < MODELOTA_CHUNK_HEAD_LEN + MODELOTA_CHUNK_TAIL_LEN",
      "st->log_len - pos <= MODELOTA_CHUNK_HEAD_LEN + MODELOTA_CHUNK_TAIL_LEN",
      "test_store_log_holding_exactly_a_chunk_head_and_tail_commits"),
    # No "head + tail - 1" mutant: since format v2 the walk checks `size + tail`
    # after reading the head, which refuses the same logs, so moving this
    # check down by one changes nothing a test (or a device) can see.
    m("store.walk-tail", STO, "st->log_len - pos - size < MODELOTA_CHUNK_TAIL_LEN",
      "st->log_len - pos - size + 1u < MODELOTA_CHUNK_TAIL_LEN",  # a tail one byte short
      "test_store_log_chunk_tail_one_byte_past_the_log_is_refused"),
    m("store.walk-tail-1", STO, "st->log_len - pos - size < MODELOTA_CHUNK_TAIL_LEN",
      "st->log_len - pos - size <= MODELOTA_CHUNK_TAIL_LEN",
      "test_store_log_chunk_ending_at_region_end_commits"),
    # v2 heads: the gap since the previous chunk. Moved by one it changes nothing
    # (the offset test below refuses a chunk past the end); without it, a gap
    # that wraps the 32-bit offset lands the chunk back at the start.
    m("store.walk-v2-gap", STO, "ch.gap > c->region_size - write_end", "false",
      "test_store_log_v2_gap_past_region_end_is_refused[wraps to 0]"),
    m("store.walk-offset+1", STO, "off > c->region_size", "off > c->region_size + 1u",
      "test_store_log_chunk_starting_past_region_end_is_refused"),
    m("store.walk-end+1", STO, "len > c->region_size - off", "len > c->region_size + 1u - off",
      "test_store_log_chunk_ending_one_past_region_end_is_refused"),
    m("store.walk-end-1", STO, "len > c->region_size - off", "len >= c->region_size - off",
      "test_store_log_chunk_ending_at_region_end_commits"),
    # ---- Store: region reads
    m("store.read-offset+1", STO, "offset > st->cfg->region_size",
      "offset > st->cfg->region_size + 1u",
      "test_store_region_read_past_region_is_refused[offset size+1]"),
    m("store.read-end+1", STO, "len > st->cfg->region_size - offset",
      "len > st->cfg->region_size + 1u - offset",
      "test_store_region_read_past_region_is_refused[end size+1]",
      "test_store_region_read_past_region_is_refused[len size+1]"),
    m("store.read-end-1", STO, "len > st->cfg->region_size - offset",
      "len >= st->cfg->region_size - offset", "test_store_region_read_edges"),
    # ---- Store: layout (modelota_store_init)
    m("store.area-end+1", STO, "count[i] > s->block_count - first[i]",
      "count[i] > s->block_count + 1u - first[i]",
      "test_store_area_ending_at_the_last_block_is_accepted_one_past_refused"),
    m("store.area-end-1", STO, "count[i] > s->block_count - first[i]",
      "count[i] >= s->block_count - first[i]",
      "test_store_area_ending_at_the_last_block_is_accepted_one_past_refused"),
    m("store.overlap-start+1", STO, "first[i] < first[j] + count[j]",
      "first[i] + 1u < first[j] + count[j]",
      "test_store_adjacent_areas_are_accepted_overlapping_by_one_block_refused"),
    m("store.overlap-start-1", STO, "first[i] < first[j] + count[j]",
      "first[i] <= first[j] + count[j]",
      "test_store_adjacent_areas_are_accepted_overlapping_by_one_block_refused"),
    m("store.overlap-end+1", STO, "first[j] < first[i] + count[i]",
      "first[j] + 1u < first[i] + count[i]",
      "test_store_adjacent_areas_are_accepted_overlapping_by_one_block_refused"),
    m("store.overlap-end-1", STO, "first[j] < first[i] + count[i]",
      "first[j] <= first[i] + count[i]",
      "test_store_adjacent_areas_are_accepted_overlapping_by_one_block_refused"),
    m("store.prog+1", STO, "s->prog_size > MODELOTA_MAX_PROG_SIZE",
      "s->prog_size > MODELOTA_MAX_PROG_SIZE + 1u",
      "test_store_prog_size_at_the_maximum_is_accepted_one_over_refused"),
    m("store.prog-1", STO, "s->prog_size > MODELOTA_MAX_PROG_SIZE",
      "s->prog_size >= MODELOTA_MAX_PROG_SIZE",
      "test_store_prog_size_at_the_maximum_is_accepted_one_over_refused"),
    m("store.block+1", STO, "s->block_size < 2u * MODELOTA_RECORD_LEN",
      "s->block_size < 2u * MODELOTA_RECORD_LEN - 1u",
      "test_store_block_of_two_records_is_accepted_one_byte_less_refused"),
    m("store.block-1", STO, "s->block_size < 2u * MODELOTA_RECORD_LEN",
      "s->block_size <= 2u * MODELOTA_RECORD_LEN",
      "test_store_block_of_two_records_is_accepted_one_byte_less_refused"),
    # ---- link
    m("link.body+1", LNK, "len > max_body", "len > max_body + 1u",
      "test_link_frame_one_byte_over_max_body_is_dropped"),
    m("link.body-1", LNK, "len > max_body", "len >= max_body",
      "test_link_data_frame_of_max_data_bytes_is_acked"),
    m("link.body-cap+1", LNK, "body > 0xFFFFu", "body > 0x10000u",
      "test_link_max_data_is_capped_at_a_16_bit_body"),
    m("link.frame-buf+1", LNK, "c->frame_buf_len < MODELOTA_LINK_MIN_FRAME_BUF",
      "c->frame_buf_len < MODELOTA_LINK_MIN_FRAME_BUF - 1u",
      "test_link_smallest_frame_buffer_is_accepted_one_less_refused"),
    m("link.frame-buf-1", LNK, "c->frame_buf_len < MODELOTA_LINK_MIN_FRAME_BUF",
      "c->frame_buf_len <= MODELOTA_LINK_MIN_FRAME_BUF",
      "test_link_smallest_frame_buffer_is_accepted_one_less_refused"),
    m("link.start+1", LNK, "len < 8u", "len < 7u",
      "test_link_start_of_eight_bytes_is_acked_seven_refused"),
    m("link.start-1", LNK, "len < 8u", "len <= 8u",
      "test_link_start_of_eight_bytes_is_acked_seven_refused"),
    m("link.data-head+1", LNK, "len < MODELOTA_LINK_DATA_HEAD",
      "len < MODELOTA_LINK_DATA_HEAD - 1u",
      "test_link_data_of_offset_only_is_acked_shorter_refused"),
    m("link.data-head-1", LNK, "len < MODELOTA_LINK_DATA_HEAD", "len <= MODELOTA_LINK_DATA_HEAD",
      "test_link_data_of_offset_only_is_acked_shorter_refused"),
    m("link.gap+1", LNK, "offset > l->acked", "offset > l->acked + 1u",
      "test_link_data_at_the_acked_offset_is_taken_one_past_is_a_gap"),
    m("link.gap-1", LNK, "offset > l->acked", "offset >= l->acked",
      "test_link_data_at_the_acked_offset_is_taken_one_past_is_a_gap"),
    m("link.range+1", LNK, "n > l->total_len - offset", "n > l->total_len + 1u - offset",
      "test_link_data_ending_at_the_total_is_taken_one_past_is_out_of_range"),
    m("link.range-1", LNK, "n > l->total_len - offset", "n >= l->total_len - offset",
      "test_link_data_ending_at_the_total_is_taken_one_past_is_out_of_range"),
    m("link.duplicate+1", LNK, "skip >= n", "skip + 1u >= n",
      "test_link_duplicate_ending_at_acked_is_ignored_one_more_byte_is_fed"),
    m("link.commit-1", LNK, "l->acked != l->total_len", "l->acked + 1u < l->total_len",
      "test_link_commit_after_every_byte_succeeds_one_short_is_incomplete"),
    m("link.gap-ms+1", LNK, GAP_KEPT, GAP_KEPT.replace(") < static_cast", ") <= static_cast"),
      "test_link_frame_resumed_just_before_the_gap_completes_at_the_gap_is_forgotten"),
    m("link.gap-ms-1", LNK, GAP_KEPT,
      GAP_KEPT.replace("last_byte_ms) < ", "last_byte_ms) + 1u < "),
      "test_link_frame_resumed_just_before_the_gap_completes_at_the_gap_is_forgotten"),
    m("link.timeout+1", LNK, f"{SILENCE} >= l->c.resume_timeout_ms",
      f"{SILENCE} > l->c.resume_timeout_ms",
      "test_link_transfer_open_until_the_resume_timeout_ends_at_it"),
    m("link.timeout-1", LNK, f"{SILENCE} >= l->c.resume_timeout_ms",
      f"{SILENCE} + 1u >= l->c.resume_timeout_ms",
      "test_link_transfer_open_until_the_resume_timeout_ends_at_it"),
    # ---- the Python mirror (format/payload.py _walk, _check_header, _layout_problem)
    m("python.chunk-end+1", PAY, "length > limit - off", "length > limit + 1 - off",
      "test_updater_chunk_ending_one_past_region_end_is_refused"),
    m("python.chunk-end-1", PAY, "length > limit - off", "length >= limit - off",
      "test_updater_chunk_ending_exactly_at_region_end_is_applied"),
    m("python.overlap+1", PAY, "off < write_end", "off + 1 < write_end",
      "test_updater_chunk_overlapping_previous_by_one_byte_is_refused"),
    # the v1 walk (test_bounds.py packs v1 by hand); the v2 walk repeats these lines
    m("python.max-chunk+1", PAY, V1_MAX, V1_MAX.replace("h.max_chunk:", "h.max_chunk + 1:", 1),
      "test_updater_chunk_one_byte_over_max_chunk_is_refused"),
    m("python.remaining+1", PAY, V1_REMAINING,
      V1_REMAINING.replace("h.data_size - data_seen", "h.data_size + 1 - data_seen", 1),
      "test_updater_chunk_carrying_one_byte_more_than_announced_is_refused"),
    m("python.data-size+1", PAY, "h.data_size > size_limit", "h.data_size > size_limit + 1",
      "test_updater_data_size_over_region_is_refused[size+1]"),
    m("python.buffer+1", PAY, "h.max_chunk > dev.buffer_len", "h.max_chunk > dev.buffer_len + 1",
      "test_updater_max_chunk_over_buffer_is_refused[buffer+1]"),
    m("python.v2-coded-size+1", PAY, "size >= length", "size > length",
      "test_v2_coded_chunk_as_large_as_its_length_is_refused"),
    # No "python.v2-gap+1": Python integers do not wrap, so the length test
    # alone refuses a gap past the end (as with the v1 walk's `off > limit`).
    m("python.v2-end+1", PAY, PY_V2_REGION,
      PY_V2_REGION.replace("length > limit - write_end", "length > limit + 1 - write_end"),
      "test_v2_chunk_ending_one_past_region_end_is_refused"),
    m("python.fewest-chunks+1", PAY, "(h.data_size - 1) // h.max_chunk >= h.chunk_count",
      "(h.data_size - 1) // h.max_chunk > h.chunk_count",
      "test_updater_one_chunk_fewer_than_max_chunk_allows_is_refused"),
    # KEEP and PRED (_refs_problem, _chunk_head_v2, the release in _walk_chunks_v2).
    # No Python "keep-start", "pred-start" or "back-region" mutant: integers
    # do not wrap, so the length and source tests alone refuse those heads.
    m("python.keep-len-0", PAY, PY_KEEP, PY_KEEP.replace("kl == 0 or ", ""),
      "test_v2_keep_of_zero_bytes_is_refused"),
    m("python.keep-end+1", PAY, PY_KEEP, PY_KEEP.replace("hd.length - ks", "hd.length + 1 - ks"),
      "test_v2_keep_ending_one_past_the_chunk_end_is_refused"),
    m("python.kept-room+1", PAY, "hd.length > max_chunk - kept[1]",
      "hd.length > max_chunk + 1 - kept[1]",
      "test_v2_chunk_one_byte_over_max_chunk_with_the_kept_ones_is_refused"),
    m("python.pred-count-0", PAY, PY_COUNT, PY_COUNT.replace("q.count == 0 or ", ""),
      "test_v2_pred_of_zero_values_is_refused"),
    m("python.pred-end+1", PAY, PY_COUNT,
      PY_COUNT.replace("(hd.length - q.start)", "(hd.length + 1 - q.start)"),
      "test_v2_pred_past_the_chunk_end_is_refused[start+1]"),
    m("python.back-overlap+1", PAY, "q.back < 4 * q.count", "q.back + 1 < 4 * q.count",
      "test_v2_pred_source_overlapping_its_target_is_refused"),
    m("python.in-chunk+1", PAY, "src < off and not in_kept", "src + 1 < off and not in_kept",
      "test_v2_pred_source_one_byte_before_the_chunk_is_refused"),
    m("python.kept-start+1", PAY, "kept[0] <= src", "kept[0] <= src + 1", KP + "[before-start]"),
    m("python.kept-end+1", PAY, "src + 4 * q.count <= kept[0] + kept[1]",
      "src + 4 * q.count <= kept[0] + kept[1] + 1", KP + "[past-end]"),
    m("python.release-1", PAY, "pred.back > pred.start",
      "pred.back >= pred.start",
      "test_v2_pred_from_its_own_chunk_leaves_the_range_kept"),
    m("python.divisor-1", PAY, "p + 4 > n", "p + 3 > n",
      "test_v2_stream_ending_inside_the_divisor_is_truncated[3]"),
)  # fmt: skip

# The default suite's sample: the off-by-one that once survived everything.
DEFAULT = ("updater.chunk-end+1",)

PRELUDE = (
    "\n/* bounds_mutants.py: each check below picks its mutant at run time */\n"
    'extern "C" int modelota_mutant;\n'
    "#define MODELOTA_MUT(k, mutated, original) "
    "(modelota_mutant == (k) ? (mutated) : (original))\n"
)


def _number(mutant: Mutant) -> int:
    return MUTANTS.index(mutant) + 1


def instrumented_sources() -> dict[str, str]:
    """firmware_lib files with every C++ mutant site switchable. Raises
    LookupError when a site's text is not in its file exactly once."""
    texts: dict[str, str] = {}
    sites: dict[tuple[str, str], list[Mutant]] = {}
    for mu in MUTANTS:
        if not mu.python:
            sites.setdefault((mu.file, mu.old), []).append(mu)
    for (file, old), group in sites.items():
        text = texts.get(file) or (ROOT / "firmware_lib" / file).read_text()
        if text.count(old) != 1:
            raise LookupError(f"firmware_lib/{file}: {old!r} occurs {text.count(old)} times")
        if ";" in old:  # a statement: `if (mutant == k) { new } else { old }`
            site = old
            for mu in group:
                site = f"if (modelota_mutant == {_number(mu)}) {{ {mu.new} }} else {{ {site} }}"
        else:
            site = f"({old})"
            for mu in group:
                site = f"MODELOTA_MUT({_number(mu)}, ({mu.new}), {site})"
        texts[file] = text.replace(old, site)
    for file, text in texts.items():
        first = text.index("#include")
        end = text.index("\n", first) + 1
        texts[file] = text[:end] + PRELUDE + text[end:]
    texts[UPD] += '\nextern "C" {\nint modelota_mutant = 0;\n}\n'
    header = (ROOT / "firmware_lib" / "modelota.h").read_text()
    texts["modelota.h"] = header + '\n#ifdef __cplusplus\nextern "C" int modelota_mutant;\n#endif\n'
    return texts


def build() -> Path:
    sys.path.insert(0, str(HERE))
    from native_variants import build_patched

    return build_patched("_modelota_mutants", instrumented_sources(),
                         "\nextern int modelota_mutant;\n")  # fmt: skip


def _python_mirror(mutant: Mutant) -> types.ModuleType:
    path = ROOT / mutant.file
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise LookupError(f"{mutant.file}: {mutant.old!r} occurs {text.count(mutant.old)} times")
    mod = types.ModuleType("modelota.format._payload_mutant")
    mod.__package__ = "modelota.format"
    mod.__file__ = str(path)
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(text.replace(mutant.old, mutant.new), str(path), "exec"), mod.__dict__)
    return mod


class _Failures:
    """pytest plugin: node ids that failed (setup or call)."""

    def __init__(self) -> None:
        self.failed: set[str] = set()
        self.passed: set[str] = set()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.add(report.nodeid)


def _pytest(nodeids: list[str]) -> _Failures:
    import pytest

    plugin = _Failures()
    args = ["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", *nodeids]
    with open(os.devnull, "w") as null:
        saved = sys.stdout
        sys.stdout = null
        try:
            pytest.main(args, plugins=[plugin])
        finally:
            sys.stdout = saved
    return plugin


def run_in_process(ids: list[str]) -> int:
    """Runs the mutants (this process has MODELOTA_NATIVE set to the
    instrumented module). Returns the number of problems."""
    os.chdir(ROOT)
    sys.path.insert(0, str(HERE))
    import test_bounds

    from modelota.sim.native import load

    lib = load().lib
    problems = 0
    lib.modelota_mutant = 0
    sane = _pytest(["tests/test_bounds.py"])
    if sane.failed or not sane.passed:
        print(f"unmutated instrumented core: {len(sane.failed)} tests fail: {sorted(sane.failed)}")
        return 1
    print(f"unmutated instrumented core: {len(sane.passed)} bounds tests pass")
    chosen = [mu for mu in MUTANTS if not ids or mu.id in ids]
    for mu in chosen:
        real = test_bounds.apply_reference
        try:
            if mu.python:
                test_bounds.apply_reference = _python_mirror(mu).apply_reference  # type: ignore[attr-defined]
            else:
                lib.modelota_mutant = _number(mu)
            got = _pytest(list(mu.tests))
        except LookupError as e:
            print(f"STALE     {mu.id}: {e}")
            problems += 1
            continue
        finally:
            lib.modelota_mutant = 0
            test_bounds.apply_reference = real
        missing = [t for t in mu.tests if not any(f == t or f.startswith(t + "[")
                                                  for f in got.failed)]  # fmt: skip
        verdict = "killed" if not missing else "SURVIVED"
        problems += bool(missing)
        where = f"{mu.file}: {' '.join(mu.old.split())}  ->  {mu.new}"
        print(f"{verdict:9} {mu.id:28} {where}")
        for t in missing:
            print(f"          passed: {t}")
    print(f"{len(chosen)} mutants, {problems} survived or stale")
    return problems


def main(argv: list[str]) -> int:
    if os.environ.get("MODELOTA_MUTANT"):
        return 1 if run_in_process(argv) else 0
    known = {mu.id for mu in MUTANTS}
    unknown = [a for a in argv if a not in known]
    if unknown:
        print(f"unknown mutants: {unknown}", file=sys.stderr)
        return 2
    try:
        module = build()
    except LookupError as e:
        print(f"STALE: {e}")
        return 1
    env = dict(os.environ, MODELOTA_NATIVE=str(module), MODELOTA_MUTANT="1")
    return subprocess.run([sys.executable, __file__, *argv], env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
