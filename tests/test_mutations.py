"""(b) Every corruption is refused with its own status and leaves the old weights intact.

Each test feeds a damaged stream to the native C++ core and checks three things:
the status is the one the damage calls for, the Python reference applier
(modelota.format.payload.apply_reference, with its own decoder) returns the very
same status, and the weight region is byte-identical to the weights before the
update. Cases are wire format v1 and v2; v2's weight-like cases carry raw, runs,
range-coded and difference chunks, so every encoding meets every damage.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelota import Status
from modelota.format import codec
from modelota.format.payload import (
    CHUNK_HEAD_LEN,
    Chunk,
    Chunk2,
    Header,
    Payload,
    crc32,
)
from modelota.sim.native import Updater
from payloads import FP, OTHER_FP, Case, cases, every_encoding_payload, splits

CHUNK_DAMAGE = {
    Status.ChunkCrc,
    Status.BadSequence,
    Status.BadChunk,
    Status.OutOfBounds,
    Status.LayoutMismatch,
    Status.Truncated,
}
CHUNK_DAMAGE_V2 = CHUNK_DAMAGE - {Status.BadSequence}  # v2 has no sequence numbers
# a v2 chunk out of place: its chained CRC fails, unless its place is impossible first
MISPLACED_V2 = {Status.ChunkCrc, Status.OutOfBounds, Status.LayoutMismatch}


def small_cases() -> st.SearchStrategy[Case]:
    return cases(max_size=4000)


def run(case: Case, stream: bytes, cut: list[int] | None = None, **kw: object) -> Updater:
    dev = case.device(**kw)
    dev.status = dev.apply(stream, cut)  # type: ignore[attr-defined]
    return dev


def check_refused(
    case: Case, stream: bytes, expected: set[Status], cut: list[int] | None = None, **kw: object
) -> Status:
    dev = run(case, stream, cut, **kw)
    status = dev.status  # type: ignore[attr-defined]
    assert status in expected, f"got {status!r}, expected one of {expected}"
    assert case.reference(stream) == status, "C++ and Python disagree"
    assert bytes(dev.weights) == case.old, "weights changed after a refused update"
    assert dev.current_version == case.current_version
    assert dev.weights_intact
    return status


def where(payload: Payload, pos: int) -> str:
    if pos < 4:
        return "magic"
    if pos == 4:
        return "version"
    if pos == 5 and payload.v2:
        return "header_len"
    if pos < payload.header.length:
        return "header"
    return "chunk_v2" if payload.v2 else "chunk"


EXPECTED_FOR_REGION = {
    "magic": {Status.BadMagic},
    "version": {Status.UnsupportedVersion},
    # another length: another CRC (or past the end of a header-only payload)
    "header_len": {Status.BadHeaderCrc, Status.Truncated},
    "header": {Status.BadHeaderCrc},
    "chunk": CHUNK_DAMAGE,
    "chunk_v2": CHUNK_DAMAGE_V2,
}


@given(data=st.data(), case=small_cases())
def test_bit_flip_anywhere(data: st.DataObject, case: Case) -> None:
    payload = case.payload()
    raw = bytearray(payload.encode())
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    cut = data.draw(splits(len(raw)), label="splits")
    check_refused(case, bytes(raw), EXPECTED_FOR_REGION[where(payload, pos)], cut)


@given(data=st.data(), case=small_cases())
def test_truncation_at_any_byte(data: st.DataObject, case: Case) -> None:
    raw = case.payload().encode()
    end = data.draw(st.integers(0, len(raw) - 1), label="end")
    check_refused(case, raw[:end], {Status.Truncated}, data.draw(splits(end), label="splits"))


@given(data=st.data(), case=small_cases(), junk=st.binary(min_size=1, max_size=64))
def test_trailing_garbage(data: st.DataObject, case: Case, junk: bytes) -> None:
    raw = case.payload().encode() + junk
    check_refused(case, raw, {Status.TrailingData}, data.draw(splits(len(raw)), label="splits"))


def chunk_bytes(payload: Payload) -> tuple[bytes, list[bytes]]:
    raw = payload.encode()
    return raw[: payload.chunks_start], [raw[a:b] for a, b in payload.chunk_spans()]


multi_chunk = small_cases().filter(lambda c: c.payload().header.chunk_count >= 2)


def misplaced(case: Case) -> set[Status]:
    """v1 names each chunk's place (seq); v2 chains each chunk's CRC to the one before.
    A v2 chunk with KEEP or PRED out of its place may break their rules (a source
    no longer kept, a chunk too long beside the kept bytes): refused at its head."""
    if case.format_version == 1:
        return {Status.BadSequence}
    refs = any(c.enc & (codec.KEEP | codec.PRED) for c in case.payload().chunks)  # type: ignore[union-attr]
    return MISPLACED_V2 | {Status.BadChunk} if refs else MISPLACED_V2


@given(data=st.data(), case=multi_chunk)
def test_duplicated_chunk(data: st.DataObject, case: Case) -> None:
    head, chunks = chunk_bytes(case.payload())
    i = data.draw(st.integers(0, len(chunks) - 1))
    stream = head + b"".join([*chunks[: i + 1], chunks[i], *chunks[i + 1 :]])
    # a repeat of the last chunk arrives after the payload is complete
    expected = {Status.TrailingData} if i == len(chunks) - 1 else misplaced(case)
    check_refused(case, stream, expected)


@given(data=st.data(), case=multi_chunk)
def test_reordered_chunks(data: st.DataObject, case: Case) -> None:
    head, chunks = chunk_bytes(case.payload())
    i = data.draw(st.integers(0, len(chunks) - 2))
    j = data.draw(st.integers(i + 1, len(chunks) - 1))
    chunks[i], chunks[j] = chunks[j], chunks[i]
    check_refused(case, head + b"".join(chunks), misplaced(case))


@given(data=st.data(), case=multi_chunk)
def test_missing_chunk(data: st.DataObject, case: Case) -> None:
    head, chunks = chunk_bytes(case.payload())
    i = data.draw(st.integers(0, len(chunks) - 1))
    expected = {Status.Truncated} if i == len(chunks) - 1 else misplaced(case)
    check_refused(case, head + b"".join(chunks[:i] + chunks[i + 1 :]), expected)


@given(case=small_cases())
def test_wrong_fingerprint(case: Case) -> None:
    raw = case.payload().encode()
    dev = Updater(
        bytearray(case.old),
        fingerprint=OTHER_FP,
        current_version=case.current_version,
        buffer_len=max(96, case.chunk_size),
    )
    assert dev.apply(raw) == Status.WrongModel
    assert bytes(dev.weights) == case.old


@given(case=small_cases(), extra=st.integers(-50, 50).filter(lambda d: d != 0))
def test_wrong_size(case: Case, extra: int) -> None:
    raw = case.payload().encode()
    size = len(case.old) + extra
    weights = bytearray(random.Random(size).randbytes(max(0, size)))
    if len(weights) == len(case.old):
        return
    before = bytes(weights)
    dev = Updater(
        weights,
        fingerprint=FP,
        current_version=case.current_version,
        buffer_len=max(96, case.chunk_size),
    )
    assert dev.apply(raw) == Status.WrongSize
    assert bytes(dev.weights) == before


@given(case=small_cases(), drop=st.integers(0, 2**32 - 1))
def test_lower_or_equal_version(case: Case, drop: int) -> None:
    case.new_version = case.current_version - drop % (case.current_version + 1)
    expected = (
        Status.AlreadyCurrent if case.new_version == case.current_version else Status.Rollback
    )
    check_refused(case, case.payload().encode(), {expected})


# ---- forged headers: the header CRC is recomputed, so only the semantic checks remain


def reforge(payload: Payload, header: Header, chunks: tuple[Chunk, ...] | None = None) -> bytes:
    return Payload(header, payload.chunks if chunks is None else chunks).encode()


def _replace(h: Header, **kw: object) -> Header:
    from dataclasses import replace

    return replace(h, **kw)  # type: ignore[arg-type]


@given(case=small_cases().filter(lambda c: len(c.new) > 0 and c.old != c.new))
def test_wrong_final_digest_is_caught_after_every_chunk_was_written(case: Case) -> None:
    """The late failure: every chunk is valid and written, then the digest disagrees."""
    p = case.payload()
    bad = struct.pack("<I", crc32(case.new) ^ 0x1) + bytes(28)
    check_refused(case, reforge(p, _replace(p.header, digest=bad)), {Status.DigestMismatch})


@given(case=small_cases().filter(lambda c: c.payload().header.chunk_count > 0))
def test_chunk_larger_than_the_device_buffer(case: Case) -> None:
    p = case.payload()
    raw = p.encode()
    dev = Updater(
        bytearray(case.old), fingerprint=FP, current_version=case.current_version, buffer_len=96
    )
    expected = Status.TooLarge if p.header.max_chunk > 96 else Status.Ok
    assert dev.apply(raw) == expected
    assert bytes(dev.weights) == (case.old if expected != Status.Ok else case.new)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"flags": 0x8000}, Status.Unsupported),
        ({"digest_type": 3}, Status.Unsupported),
        ({"digest_type": 0}, Status.Unsupported),
        ({"flags": 0x0002}, Status.Unsupported),  # SIGNED needs the SHA-256 digest
        ({"reserved": 1}, Status.Unsupported),
        ({"base_version": 5}, Status.Unsupported),
        ({"data_size": 1}, Status.LayoutMismatch),
        ({"segment_count": 9}, Status.LayoutMismatch),
        ({"chunk_count": 1}, Status.LayoutMismatch),
        ({"max_chunk": 1}, Status.LayoutMismatch),
    ],
)
def test_forged_header_fields(change: dict[str, int], expected: Status) -> None:
    rnd = random.Random(11)
    case = Case(rnd.randbytes(2000), rnd.randbytes(2000), 300, False, 4, 5, format_version=1)
    p = case.payload()
    check_refused(case, reforge(p, _replace(p.header, **change)), {expected})


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"flags": 0x80}, Status.Unsupported),
        ({"flags": 0x04}, Status.Unsupported),
        ({"digest_type": 3}, Status.Unsupported),
        ({"digest_type": 0}, Status.Unsupported),
        ({"flags": 0x0002}, Status.Unsupported),  # SIGNED needs the SHA-256 digest
        ({"data_size": 1}, Status.LayoutMismatch),
        ({"chunk_count": 1}, Status.LayoutMismatch),
        ({"max_chunk": 1}, Status.LayoutMismatch),
        ({"data_size": 2001}, Status.TooLarge),
        ({"max_chunk": 1025}, Status.TooLarge),
    ],
)
def test_forged_v2_header_fields(change: dict[str, int], expected: Status) -> None:
    rnd = random.Random(11)
    case = Case(rnd.randbytes(2000), rnd.randbytes(2000), 300, False, 4, 5)
    p = case.payload()
    check_refused(case, reforge(p, _replace(p.header, **change)), {expected})


def v2_header(body: bytes) -> bytes:
    """A v2 header from its fields (fingerprint on): length byte and CRC made right."""
    raw = b"MOTA" + bytes([2, 24 + len(body) + 4, 1, 0]) + FP + body
    return raw + struct.pack("<I", crc32(raw))


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(b"\x85\x00\xd0\x0f\x01\x01\x01" + bytes(4), id="non-minimal-varint"),
        pytest.param(b"\x05\xd0\x0f\x01\x01\x01" + bytes(5), id="a-byte-too-many"),
        pytest.param(b"\x05\xd0\x0f\x01\x01\x01" + bytes(3), id="a-byte-too-few"),
        pytest.param(b"\x05\xff\xff\xff\xff\x1f\x01\x01\x01" + bytes(4), id="above-2**32"),
        pytest.param(b"\x05\xd0\x0f\x01\x01\xff\xff\xff\xff\xff", id="varint-runs-off"),
    ],
)
def test_malformed_v2_header_fields_are_unsupported(fields: bytes) -> None:
    """The fields between the fingerprint and the CRC must be exactly the
    header's varints and fixed fields, each varint well formed."""
    rnd = random.Random(15)
    case = Case(rnd.randbytes(2000), rnd.randbytes(2000), 300, False, 4, 5)
    check_refused(case, v2_header(fields) + bytes(20), {Status.Unsupported})


def test_v2_header_length_outside_37_to_96_is_refused_at_the_sixth_byte() -> None:
    rnd = random.Random(16)
    case = Case(rnd.randbytes(100), rnd.randbytes(100), 64, False, 1, 2)
    raw = bytearray(case.payload().encode())
    for bad in (0, 36, 97, 255):
        raw[5] = bad
        dev = run(case, bytes(raw))
        assert dev.status == Status.BadHeaderCrc and dev.bytes_in == 6  # type: ignore[attr-defined]
        assert case.reference(bytes(raw)) == Status.BadHeaderCrc


def test_delta_on_the_wrong_base_is_refused_before_any_write() -> None:
    rnd = random.Random(12)
    base = rnd.randbytes(3000)
    new = bytearray(base)
    new[100:200] = rnd.randbytes(100)
    case = Case(base, bytes(new), 256, True, 7, 8)
    raw = case.payload().encode()
    # same version, different bytes: the base CRC catches it
    other = bytearray(base)
    other[2999] ^= 0xFF
    check_refused(Case(bytes(other), bytes(new), 256, True, 7, 8), raw, {Status.WrongBase})
    # right bytes, other version: the base version catches it
    check_refused(Case(base, bytes(new), 256, True, 6, 8), raw, {Status.WrongBase})


def test_chunks_of_another_payload_are_refused() -> None:
    """Mix and match: same layout, valid CRCs of their own, other header."""
    rnd = random.Random(13)
    old = rnd.randbytes(2048)
    for fmt in (1, 2):
        a = Case(old, rnd.randbytes(2048), 512, False, 1, 2, fmt).payload()
        b = Case(old, rnd.randbytes(2048), 512, False, 1, 2, fmt).payload()
        mixed = a.header.encode() + b.encode()[b.chunks_start :]
        device = Case(old, old, 512, False, 1, 2, fmt)  # only the old weights and versions matter
        check_refused(device, mixed, {Status.ChunkCrc})


def test_chunk_moved_outside_the_region_is_refused() -> None:
    rnd = random.Random(14)
    case = Case(rnd.randbytes(1000), rnd.randbytes(1000), 400, False, 1, 2, format_version=1)
    p = case.payload()
    last = p.chunks[-1]
    assert isinstance(last, Chunk)
    moved = (*p.chunks[:-1], Chunk(last.seq, 900, last.data))
    stream = reforge(p, p.header, moved)
    assert CHUNK_HEAD_LEN == 12
    check_refused(case, stream, {Status.OutOfBounds})
    # v2: a gap that takes the chunk past the end
    case.format_version = 2
    p = case.payload()
    last2 = p.chunks[-1]
    assert isinstance(last2, Chunk2)
    moved2 = (*p.chunks[:-1], Chunk2(last2.offset + 100, last2.length, last2.enc, last2.body,
                                     last2.gap + 100))  # fmt: skip
    check_refused(case, reforge(p, p.header, moved2), {Status.OutOfBounds})


def test_v2_chunk_encodings_a_device_cannot_take_are_bad_chunks() -> None:
    """Unknown encoding bits, method 3, DIFF outside a delta, LANES without RC,
    a coded chunk not smaller than its data: refused at the chunk head."""
    rnd = random.Random(17)
    case = Case(rnd.randbytes(600), rnd.randbytes(600), 200, False, 1, 2)
    p = case.payload()
    first = p.chunks[0]
    assert isinstance(first, Chunk2)
    for enc, body in ((0x40, first.body), (0x80, first.body), (0x03, first.body),
                      (codec.RAW | codec.DIFF, first.body), (codec.RUNS | codec.LANES, b"\x00"),
                      (codec.RUNS, first.body)):  # fmt: skip
        bad = Chunk2(first.offset, first.length, enc, body, first.gap)
        check_refused(case, reforge(p, p.header, (bad, *p.chunks[1:])), {Status.BadChunk})


def test_every_bit_flip_position_of_a_payload_in_every_encoding() -> None:
    """Exhaustive over the bytes of a v2 delta with one chunk in each encoding
    (one bit per byte, the bit cycling): the C++ core and the Python reference
    give the same status, one the damage calls for, and the weights never
    change."""
    old, new, payload = every_encoding_payload(11)
    raw = payload.encode()
    case = Case(old, new, 256, True, 1, 2)
    for pos in range(len(raw)):
        bad = bytearray(raw)
        bad[pos] ^= 1 << (pos % 8)
        check_refused(case, bytes(bad), EXPECTED_FOR_REGION[where(payload, pos)])
