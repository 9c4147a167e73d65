"""Every bounds check of the Updater, the Store and the link at its edge.

Each check gets a pair of named tests: the last value it lets through and
the first it refuses (a chunk ending exactly at the region's end and one
byte past it, ``offset == size``, lengths 0, the maximum and u32 max, a log
or journal exactly full and one over). So moving any check by one fails a
test with the check's name in it: tests/test_bounds_mutants.py builds the
native core with each check moved by one and proves it (docs/DESIGN.md,
"Bounds checks and their tests", lists them).

Payloads are packed by hand here (the packer refuses to build a chunk
outside the region). The Updater tests run the native C++ core and the
Python mirror (``format.payload.apply_reference``) on the same bytes and
require the same status, the old weights back after a refusal, and the
refusal at the expected byte of the stream.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, replace

import pytest

from modelota.format import codec
from modelota.format.constants import FLAG_DELTA, FORMAT_V2
from modelota.format.payload import (
    HEADER_LEN,
    Device,
    Header,
    Pred,
    apply_reference,
    crc32,
    final_weights,
    parse,
)
from modelota.link.push import (
    ACK,
    COMMIT,
    DATA,
    HELLO,
    INFO,
    NAK,
    RESULT,
    START,
    FrameReader,
    Info,
    frame,
)
from modelota.sim.board import SimBoard, demo_model
from modelota.sim.device import FlashModelDevice, Layout, _StoreHandle
from modelota.sim.flash import SimFlash
from modelota.sim.native import Updater, load
from modelota.status import ModelOTAError, Status
from payloads import fdiv_ieee

U32_MAX = 0xFFFF_FFFF
SIZE = 1000  # weight region of the Updater tests
OLD = random.Random(1).randbytes(SIZE)
FP = b"bounds-test-fp!!"
V_OLD, V_NEW = 3, 4
CHUNK_HEAD, CHUNK_TAIL = 12, 4

# ---------------------------------------------------------------- Updater


def raw_chunk(hcrc: int, seq: int, off: int, data: bytes, length: int | None = None) -> bytes:
    """One chunk as the wire carries it; ``length`` may lie about len(data)."""
    head = struct.pack("<III", seq, off, len(data) if length is None else length)
    return head + data + struct.pack("<I", crc32(data, crc32(head, hcrc)))


def segments(chunks: list[tuple[int, bytes]]) -> int:
    n, end = 0, -1
    for off, data in chunks:
        n += off != end
        end = off + len(data)
    return n


def stream(
    chunks: list[tuple[int, bytes]], *, lengths: dict[int, int] | None = None, **fields: object
) -> bytes:
    """A payload of ``chunks`` ((offset, bytes) in order) over OLD, header
    fields derived from them unless given; the digest is of OLD with the
    chunks laid over, clipped to the region."""
    final = bytearray(OLD)
    for off, data in chunks:
        end = min(off + len(data), SIZE)
        if off < end:
            final[off:end] = data[: end - off]
    h = Header(
        fingerprint=FP,
        model_version=V_NEW,
        weights_size=SIZE,
        data_size=sum(len(d) for _, d in chunks),
        chunk_count=len(chunks),
        segment_count=segments(chunks),
        max_chunk=max((len(d) for _, d in chunks), default=0),
        digest=struct.pack("<I", crc32(bytes(final))) + bytes(28),
    )
    h = replace(h, **fields)  # type: ignore[arg-type]
    hcrc = h.crc
    lengths = lengths or {}
    body = b"".join(raw_chunk(hcrc, i, o, d, lengths.get(i)) for i, (o, d) in enumerate(chunks))
    return h.encode() + body


def at_chunk(chunks: list[tuple[int, bytes]], i: int, part: str = "head") -> int:
    """Stream position just after chunk i's head (or its tail)."""
    pos = HEADER_LEN + sum(CHUNK_HEAD + len(d) + CHUNK_TAIL for _, d in chunks[:i])
    return pos + CHUNK_HEAD + (len(chunks[i][1]) + CHUNK_TAIL if part == "tail" else 0)


@dataclass
class Outcome:
    status: Status
    consumed: int  # bytes the C++ Updater took, up to and including the refused field
    weights: bytes


def run(
    payload: bytes,
    *,
    buffer_len: int = 1024,
    current: int = V_OLD,
    min_version: int = 0,
) -> Outcome:
    """The native Updater and the Python mirror on the same stream: same
    status, and after a refusal both hold the old weights."""
    dev = Updater(bytearray(OLD), fingerprint=FP, current_version=current,
                  buffer_len=buffer_len, min_version=min_version)  # fmt: skip
    assert dev.init_status == Status.Ok
    st = dev.apply(payload)
    ref = Device(FP, current, bytearray(OLD), buffer_len, min_version=min_version)
    walk = apply_reference(payload, ref)
    assert walk.status == st, f"C++ says {st.name}, the Python mirror {walk.status.name}"
    assert walk.consumed == dev.bytes_in, "C++ and the Python mirror stop at different bytes"
    if st != Status.Ok:
        assert bytes(dev.weights) == OLD and bytes(ref.weights) == OLD
        assert dev.weights_intact
    else:
        assert bytes(dev.weights) == bytes(ref.weights)
    return Outcome(st, dev.bytes_in, bytes(dev.weights))


def applied(chunks: list[tuple[int, bytes]], **kw: object) -> None:
    out = run(stream(chunks), **kw)  # type: ignore[arg-type]
    final = bytearray(OLD)
    for off, data in chunks:
        final[off : off + len(data)] = data
    assert out.status == Status.Ok and out.weights == bytes(final)


def new_bytes(n: int, seed: int = 2) -> bytes:
    return random.Random(seed).randbytes(n)


# chunk offset and length against the region: updater.cpp check_chunk_head
# `off < u->write_end || off > size || len > size - off`


def test_updater_chunk_ending_exactly_at_region_end_is_applied() -> None:
    applied([(SIZE - 10, new_bytes(10))])


def test_updater_chunk_ending_one_past_region_end_is_refused() -> None:
    chunks = [(SIZE - 10, new_bytes(11))]
    out = run(stream(chunks))
    assert (out.status, out.consumed) == (Status.OutOfBounds, at_chunk(chunks, 0))


def test_updater_chunk_starting_at_region_end_is_refused() -> None:
    chunks = [(SIZE, new_bytes(1))]
    out = run(stream(chunks))
    assert (out.status, out.consumed) == (Status.OutOfBounds, at_chunk(chunks, 0))


@pytest.mark.parametrize("off", [SIZE + 1, U32_MAX], ids=["size+1", "u32max"])
def test_updater_chunk_starting_past_region_end_is_refused(off: int) -> None:
    chunks = [(off, new_bytes(1))]
    out = run(stream(chunks))
    assert (out.status, out.consumed) == (Status.OutOfBounds, at_chunk(chunks, 0))


def test_updater_chunk_starting_at_previous_chunk_end_is_applied() -> None:
    applied([(100, new_bytes(50)), (150, new_bytes(50, 3))])


def test_updater_chunk_overlapping_previous_by_one_byte_is_refused() -> None:
    chunks = [(100, new_bytes(50)), (149, new_bytes(50, 3))]
    out = run(stream(chunks))
    assert (out.status, out.consumed) == (Status.OutOfBounds, at_chunk(chunks, 1))


# chunk length: `len == 0 || len > u->max_chunk`


def test_updater_zero_length_chunk_is_refused() -> None:
    chunks = [(0, new_bytes(10)), (10, b"")]
    out = run(stream(chunks, chunk_count=2, max_chunk=10))
    assert (out.status, out.consumed) == (Status.BadChunk, at_chunk(chunks, 1))


def test_updater_chunk_of_max_chunk_bytes_is_applied() -> None:
    applied([(0, new_bytes(100)), (100, new_bytes(1, 3))])


def test_updater_chunk_one_byte_over_max_chunk_is_refused() -> None:
    chunks = [(0, new_bytes(101)), (101, new_bytes(1, 3))]
    out = run(stream(chunks, max_chunk=100))  # 102 bytes in 2 chunks of <= 100: a valid header
    assert (out.status, out.consumed) == (Status.BadChunk, at_chunk(chunks, 0))


def test_updater_chunk_length_u32_max_is_refused() -> None:
    chunks = [(0, new_bytes(10))]
    out = run(stream(chunks, lengths={0: U32_MAX}))
    assert (out.status, out.consumed) == (Status.BadChunk, at_chunk(chunks, 0))


# chunk length against the data the header announced: `len > data_size - data_seen`


def test_updater_chunk_carrying_exactly_the_remaining_data_is_applied() -> None:
    applied([(0, new_bytes(30)), (500, new_bytes(20, 3))])


def test_updater_chunk_carrying_one_byte_more_than_announced_is_refused() -> None:
    chunks = [(0, new_bytes(30)), (500, new_bytes(21, 3))]
    out = run(stream(chunks, data_size=50))
    assert (out.status, out.consumed) == (Status.LayoutMismatch, at_chunk(chunks, 1))


# header sizes: check_header `data_size > target.size || max_chunk > buffer_len`


def test_updater_data_size_equal_to_region_is_applied() -> None:
    applied([(0, new_bytes(SIZE // 2)), (SIZE // 2, new_bytes(SIZE // 2, 3))])


@pytest.mark.parametrize("data_size", [SIZE + 1, U32_MAX], ids=["size+1", "u32max"])
def test_updater_data_size_over_region_is_refused(data_size: int) -> None:
    out = run(stream([(0, new_bytes(SIZE))], data_size=data_size))
    assert (out.status, out.consumed) == (Status.TooLarge, HEADER_LEN)


def test_updater_max_chunk_equal_to_buffer_is_applied() -> None:
    applied([(0, new_bytes(128)), (128, new_bytes(5, 3))], buffer_len=128)


@pytest.mark.parametrize("max_chunk", [129, U32_MAX], ids=["buffer+1", "u32max"])
def test_updater_max_chunk_over_buffer_is_refused(max_chunk: int) -> None:
    out = run(stream([(0, new_bytes(129))], max_chunk=max_chunk), buffer_len=128)
    assert (out.status, out.consumed) == (Status.TooLarge, HEADER_LEN)


def test_updater_buffer_of_header_size_is_accepted_one_less_refused() -> None:
    for buffer_len, expected in ((HEADER_LEN, Status.Ok), (HEADER_LEN - 1, Status.InvalidArgument)):
        dev = Updater(bytearray(OLD), fingerprint=FP, current_version=V_OLD, buffer_len=buffer_len)
        assert dev.init_status == expected, buffer_len


# header layout: chunk_count <= data_size, segment_count <= chunk_count,
# chunk_count >= ceil(data_size / max_chunk)


def test_updater_one_byte_chunks_as_many_as_data_bytes_are_applied() -> None:
    applied([(i, new_bytes(1, i)) for i in range(0, 20, 2)])  # 10 chunks, 10 segments


def test_updater_more_chunks_than_data_bytes_is_refused() -> None:
    chunks = [(i, new_bytes(1, i)) for i in range(10)]
    out = run(stream(chunks, chunk_count=11, data_size=10))
    assert (out.status, out.consumed) == (Status.LayoutMismatch, HEADER_LEN)


def test_updater_more_segments_than_chunks_is_refused() -> None:
    chunks = [(i, new_bytes(1, i)) for i in range(0, 20, 2)]
    out = run(stream(chunks, segment_count=11))
    assert (out.status, out.consumed) == (Status.LayoutMismatch, HEADER_LEN)


def test_updater_fewest_chunks_max_chunk_allows_are_applied() -> None:
    applied([(0, new_bytes(100)), (100, new_bytes(100, 3)), (200, new_bytes(1, 4))])


def test_updater_one_chunk_fewer_than_max_chunk_allows_is_refused() -> None:
    chunks = [(0, new_bytes(100)), (100, new_bytes(101, 3))]
    out = run(stream(chunks, max_chunk=100))  # 201 bytes cannot come in 2 chunks of 100
    assert (out.status, out.consumed) == (Status.LayoutMismatch, HEADER_LEN)


# CRC32 digest padding: `for (i = 4; i < MODELOTA_DIGEST_LEN; ++i) h[56 + i] != 0`


@pytest.mark.parametrize("index", [4, 31], ids=["first", "last"])
def test_updater_crc32_digest_padding_byte_set_is_refused(index: int) -> None:
    chunks = [(0, new_bytes(10))]
    digest = bytearray(Header.decode(stream(chunks)[:HEADER_LEN])[0].digest)
    digest[index] = 1
    out = run(stream(chunks, digest=bytes(digest)))
    assert (out.status, out.consumed) == (Status.Unsupported, HEADER_LEN)


# versions: `new < current || new < min_version` Rollback, `new == current` AlreadyCurrent


@pytest.mark.parametrize(
    ("version", "current", "floor", "expected"),
    [
        (V_OLD + 1, V_OLD, 0, Status.Ok),
        (V_OLD, V_OLD, 0, Status.AlreadyCurrent),
        (V_OLD - 1, V_OLD, 0, Status.Rollback),
        (10, V_OLD, 10, Status.Ok),
        (9, V_OLD, 10, Status.Rollback),
        (U32_MAX, U32_MAX - 1, 0, Status.Ok),
    ],
    ids=["current+1", "current", "current-1", "at-floor", "floor-1", "u32max"],
)
def test_updater_version_edges(version: int, current: int, floor: int, expected: Status) -> None:
    out = run(stream([(0, new_bytes(10))], model_version=version), current=current,
              min_version=floor)  # fmt: skip
    assert out.status == expected
    if expected != Status.Ok:
        assert out.consumed == HEADER_LEN


def test_updater_one_byte_after_the_last_chunk_is_refused() -> None:
    pl = stream([(0, new_bytes(10))])
    assert run(pl).status == Status.Ok
    out = run(pl + b"\0")
    assert (out.status, out.consumed) == (Status.TrailingData, len(pl) + 1)


# writable ranges (cfg.writable; native only, the Python mirror has none):
# writable_valid `len == 0 || off < end || off > size || len > size - off`,
# check_writable: the bytes of a chunk outside the ranges repeat the region's

WRITABLE = [(100, 10), (111, 9)]  # [100, 110) and [111, 120): byte 110 between them


def writable_status(ranges: list[tuple[int, int]]) -> Status:
    return Updater(bytearray(OLD), fingerprint=FP, current_version=V_OLD,
                   writable=ranges).init_status  # fmt: skip


def test_updater_writable_range_ending_at_region_end_is_accepted() -> None:
    assert writable_status([(SIZE - 10, 10)]) == Status.Ok


def test_updater_writable_range_ending_one_past_region_end_is_refused() -> None:
    assert writable_status([(SIZE - 10, 11)]) == Status.InvalidArgument


@pytest.mark.parametrize("off", [SIZE + 1, U32_MAX], ids=["size+1", "u32max"])
def test_updater_writable_range_starting_past_region_end_is_refused(off: int) -> None:
    assert writable_status([(off, 1)]) == Status.InvalidArgument


def test_updater_writable_ranges_adjacent_are_accepted() -> None:
    assert writable_status([(0, 10), (10, 5)]) == Status.Ok


def test_updater_writable_ranges_overlapping_by_one_byte_are_refused() -> None:
    assert writable_status([(0, 10), (9, 5)]) == Status.InvalidArgument


def test_updater_empty_writable_range_is_refused() -> None:
    assert writable_status([(5, 0)]) == Status.InvalidArgument


def writable_run(off: int, end: int, changed: list[int]) -> Status:
    """A chunk over [off, end) that repeats OLD except at ``changed``,
    applied by a device with WRITABLE; on refusal nothing was written."""
    data = bytearray(OLD[off:end])
    for i in changed:
        data[i - off] ^= 0xFF
    dev = Updater(bytearray(OLD), fingerprint=FP, current_version=V_OLD, writable=WRITABLE)
    st = dev.apply(stream([(off, bytes(data))]))
    if st != Status.Ok:
        assert bytes(dev.weights) == OLD
    return st


def test_updater_chunk_changing_every_writable_byte_is_applied() -> None:
    writable_bytes = [*range(100, 110), *range(111, 120)]
    assert writable_run(90, 130, writable_bytes) == Status.Ok


def test_updater_chunk_changing_the_byte_before_a_writable_range_is_refused() -> None:
    assert writable_run(90, 130, [99]) == Status.WrongModel


def test_updater_chunk_changing_the_byte_between_two_writable_ranges_is_refused() -> None:
    assert writable_run(90, 130, [110]) == Status.WrongModel


def test_updater_chunk_changing_the_byte_after_the_last_writable_range_is_refused() -> None:
    assert writable_run(90, 130, [120]) == Status.WrongModel
    assert writable_run(90, 121, [120]) == Status.WrongModel  # the chunk's last byte


def test_updater_chunk_ending_at_the_first_byte_of_a_writable_range_is_applied() -> None:
    assert writable_run(90, 101, [100]) == Status.Ok


def test_updater_chunk_starting_at_the_last_byte_of_a_writable_range_is_applied() -> None:
    assert writable_run(109, 111, [109]) == Status.Ok


# ---------------------------------------------------------------- Updater, format v2
# updater.cpp check_chunk_head_v2 and decode.cpp read_varint: v2 chunk heads
# carry the gap since the previous chunk's end, the decoded length and (coded
# chunks) the encoded size as varints.


@dataclass
class Chunk2Spec:
    enc: int  # codec.RAW or codec.RUNS (a RUNS body decodes to one repeated byte), | DIFF
    gap: int
    length: int
    body: bytes
    size: int | None = None  # what the head says (None: len(body)); RAW has no size field
    raw_head: bytes | None = None  # the head's bytes as given (a malformed varint)
    keep: tuple[int, int] | None = None  # KEEP (start, length): the head gets flag and fields
    pred: Pred | None = None  # PRED: likewise


def runs_body(length: int, value: int, size: int) -> bytes:
    """A RUNS body of ``size`` bytes that decodes to ``length`` copies of
    ``value``: one repeat token, then padding the decoder ignores."""
    body = codec.varint(((length - 1) << 1) | 1) + bytes([value])
    assert len(body) <= size
    return body + bytes(size - len(body))


def stream2(specs: list[Chunk2Spec], **fields: object) -> tuple[bytes, bytes, list[int]]:
    """A v2 payload of ``specs`` over OLD: (payload, final weights, the stream
    position just after each chunk's head). Header fields derive from the
    chunks unless given; the digest is of the final region (clipped)."""
    final = final2(OLD, specs)
    h = Header(fingerprint=FP, model_version=V_NEW, weights_size=SIZE,
               data_size=sum(c.length for c in specs), chunk_count=len(specs), segment_count=0,
               max_chunk=max((c.length for c in specs), default=0),
               digest=struct.pack("<I", crc32(bytes(final))) + bytes(28),
               format_version=FORMAT_V2)  # fmt: skip
    payload, heads = encode2(replace(h, **fields), specs)  # type: ignore[arg-type]
    return payload, bytes(final), heads


def encode2(h: Header, specs: list[Chunk2Spec]) -> tuple[bytes, list[int]]:
    """Header and chunks on the wire, each chunk's CRC chained from the one
    before (chunk 0: the header CRC), and the position after each head."""
    out = bytearray(h.encode())
    seed = h.crc
    heads = []
    for c in specs:
        head = c.raw_head if c.raw_head is not None else head2(c)
        out += head
        heads.append(len(out))
        seed = crc32(c.body, crc32(head, seed))
        out += c.body + struct.pack("<I", seed)
    return bytes(out), heads


def head2(c: Chunk2Spec) -> bytes:
    """The head of ``c`` (docs/FORMAT.md, "Chunk (v2)"): flags KEEP and PRED
    set and their fields sent when ``c`` has them."""
    v = codec.varint
    raw = c.enc & codec.METHOD_MASK == codec.RAW
    size = b"" if raw else v(len(c.body) if c.size is None else c.size)
    enc = c.enc | (codec.KEEP if c.keep else 0) | (codec.PRED if c.pred else 0)
    head = bytes([enc]) + v(c.gap) + v(c.length) + size
    if c.keep is not None:
        head += v(c.keep[0]) + v(c.keep[1])
    if c.pred is not None:
        q = c.pred
        head += v(q.start) + v(q.count) + v(q.back) + struct.pack("<I", q.divisor)
    return head


def final2(old: bytes, specs: list[Chunk2Spec]) -> bytes:
    """``old`` with the chunks of ``specs`` laid over (clipped to the region),
    computed here from FORMAT.md: DIFF adds to the base, PRED adds
    fdiv_ieee(source, divisor) to the decoded residual, the source read from
    the bytes as the payload has made them. Only RAW and RUNS (no range
    coder model to carry). Refs outside chunk or region are left out: such
    payloads are refused at the head, before their digest matters."""
    final = bytearray(old)
    end = 0
    for c in specs:
        off = end + c.gap
        end = off + c.length
        data = codec.decode(c.enc, c.body, c.length, off, codec.Model())
        q = c.pred
        if c.enc & codec.DIFF:
            base = bytearray(final[off:end].ljust(c.length, b"\0"))
            if q is not None:  # a residual over the prediction, not over the base
                span = slice(q.start, q.start + 4 * q.count)
                base[span] = bytes(len(base[span]))
            data = bytearray((x + y) & 0xFF for x, y in zip(data, base, strict=True))
        lo, hi = min(off, len(final)), min(end, len(final))
        final[lo:hi] = data[: hi - lo]
        if q is None:
            continue
        for k in range(q.count):
            t = off + q.start + 4 * k
            s = t - q.back
            if s < 0 or t + 4 > hi:
                break
            p = fdiv_ieee(struct.unpack_from("<I", final, s)[0], q.divisor)
            for j in range(4):
                final[t + j] = (final[t + j] + (p >> (8 * j))) & 0xFF
    return bytes(final)


def applied2(specs: list[Chunk2Spec], **fields: object) -> None:
    payload, final, _ = stream2(specs, **fields)
    out = run(payload)
    assert out.status == Status.Ok and out.weights == final


def refused2(
    specs: list[Chunk2Spec], status: Status, chunk: int, back: int = 0, cut: bool = False,
    **fields: object,
) -> None:
    """Refused with ``status`` right after chunk ``chunk``'s head (``back``
    bytes before its end: a malformed varint is refused at its last byte).
    ``cut``: the stream ends right after that head, so that a mutant letting
    the head through stops at Truncated instead of applying a head whose
    refs point outside the buffer."""
    payload, _, heads = stream2(specs, **fields)
    out = run(payload[: heads[chunk]] if cut else payload)
    assert (out.status, out.consumed) == (status, heads[chunk] - back)


def raw2(gap: int, n: int, seed: int = 2) -> Chunk2Spec:
    return Chunk2Spec(codec.RAW, gap, n, new_bytes(n, seed))


# chunk length: `head.length == 0 || head.length > u->max_chunk`


def test_v2_zero_length_chunk_is_refused() -> None:
    refused2([raw2(0, 10), raw2(0, 0)], Status.BadChunk, 1, chunk_count=2, max_chunk=10)


def test_v2_chunk_of_max_chunk_bytes_is_applied() -> None:
    applied2([raw2(0, 100), raw2(0, 1, 3)])


def test_v2_chunk_one_byte_over_max_chunk_is_refused() -> None:
    refused2([raw2(0, 101), raw2(0, 1, 3)], Status.BadChunk, 0, max_chunk=100)


# a coded chunk is smaller than what it decodes to: `coded && head.size >= head.length`


def test_v2_coded_chunk_one_byte_smaller_than_its_length_is_applied() -> None:
    applied2([Chunk2Spec(codec.RUNS, 40, 20, runs_body(20, 0x5A, 19))])


def test_v2_coded_chunk_as_large_as_its_length_is_refused() -> None:
    refused2([Chunk2Spec(codec.RUNS, 40, 20, runs_body(20, 0x5A, 20))], Status.BadChunk, 0)


# the chunk inside the region:
# `head.gap > size - u->write_end || head.length > size - u->write_end - head.gap`


def test_v2_chunk_ending_exactly_at_region_end_is_applied() -> None:
    applied2([raw2(100, 50), raw2(SIZE - 160, 10, 3)])


def test_v2_chunk_ending_one_past_region_end_is_refused() -> None:
    refused2([raw2(100, 50), raw2(SIZE - 160, 11, 3)], Status.OutOfBounds, 1)


@pytest.mark.parametrize("past", [1, 2], ids=["size+1", "size+2"])
def test_v2_gap_past_region_end_is_refused(past: int) -> None:
    # a gap beyond the end would make `size - write_end - gap` wrap: the first
    # test stops it before the second one is reached
    refused2([raw2(100, 50), raw2(SIZE - 150 + past, 1, 3)], Status.OutOfBounds, 1)


# the data the header announced: `head.length > u->data_size - u->data_seen`


def test_v2_chunk_carrying_exactly_the_remaining_data_is_applied() -> None:
    applied2([raw2(0, 30), raw2(470, 20, 3)], data_size=50)


def test_v2_chunk_carrying_one_byte_more_than_announced_is_refused() -> None:
    refused2([raw2(0, 30), raw2(470, 21, 3)], Status.LayoutMismatch, 1, data_size=50)


# varints (decode.cpp read_varint): at most 5 bytes, at most 2^32-1, minimal


def test_v2_varint_of_five_bytes_up_to_u32_max_is_read() -> None:
    # gap 2^32-1 is read (and then refused for what it says: outside the region)
    head = bytes([codec.RAW]) + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + codec.varint(1)
    refused2([Chunk2Spec(codec.RAW, 0, 1, b"\x01", raw_head=head)], Status.OutOfBounds, 0)


def test_v2_varint_of_value_2_32_is_refused() -> None:
    head = bytes([codec.RAW]) + bytes([0x80, 0x80, 0x80, 0x80, 0x10]) + codec.varint(1)
    refused2([Chunk2Spec(codec.RAW, 0, 1, b"\x01", raw_head=head)], Status.BadChunk, 0, back=1)


def test_v2_varint_not_in_its_shortest_form_is_refused() -> None:
    # gap 0 as two bytes 0x80 0x00: malformed; one byte 0x00 is the only form
    head = bytes([codec.RAW, 0x80, 0x00]) + codec.varint(1)
    refused2([Chunk2Spec(codec.RAW, 0, 1, b"\x01", raw_head=head)], Status.BadChunk, 0, back=1)


# ---------------------------------------------------------------- Updater, KEEP and PRED
# decode.cpp modelota_chunk_refs_check (payload.py _refs_problem), in the
# order of docs/FORMAT.md "KEEP and PRED"; the head parse (the divisor's 4
# bytes); modelota_fdiv's limits; updater.cpp apply_chunk's release of the
# kept range. Chunks carry float32 values so that every prediction is a
# nonzero number: one read from the wrong bytes changes the final digest.

DIV = struct.unpack("<I", struct.pack("<f", 0.7))[0]


def floats(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = b"".join(struct.pack("<f", rng.choice((-1, 1)) * rng.uniform(0.01, 100.0))
                   for _ in range(n // 4))  # fmt: skip
    return out + bytes(n % 4)


def fl2(gap: int, n: int, seed: int = 2, keep: tuple[int, int] | None = None,
        pred: Pred | None = None) -> Chunk2Spec:  # fmt: skip
    """A RAW chunk of ``n`` bytes of float32 values."""
    return Chunk2Spec(codec.RAW, gap, n, floats(n, seed), keep=keep, pred=pred)


def pr(start: int, count: int, back: int, divisor: int = DIV) -> Pred:
    return Pred(start, count, back, divisor)


# KEEP: `keep_len == 0 || keep_start > len || keep_len > len - keep_start`


def test_v2_keep_of_zero_bytes_is_refused() -> None:
    refused2([fl2(0, 40, keep=(10, 0))], Status.BadChunk, 0)


def test_v2_keep_ending_at_the_chunk_end_is_applied() -> None:
    # the next chunk predicts from the last 8 kept bytes, [32, 40)
    applied2([fl2(0, 40, keep=(30, 10)), fl2(10, 20, 3, pred=pr(0, 2, 18))])


def test_v2_keep_ending_one_past_the_chunk_end_is_refused() -> None:
    refused2([fl2(0, 40, keep=(31, 10)), fl2(10, 20, 3)], Status.BadChunk, 0)


@pytest.mark.parametrize("start", [41, U32_MAX], ids=["len+1", "u32max"])
def test_v2_keep_starting_past_the_chunk_end_is_refused(start: int) -> None:
    # `len - keep_start` would wrap: the start is checked first
    refused2([fl2(0, 40, keep=(start, 1))], Status.BadChunk, 0)


# a range is kept: `kept_len > max_chunk || len > max_chunk - kept_len`
# (the first is defence for the Store's walk of a log: the Updater never
# keeps more than max_chunk bytes; test_store_log_v2_kept_range_longer_...)


def test_v2_chunk_of_max_chunk_bytes_with_the_kept_ones_is_applied() -> None:
    # 70 + 30 kept = max_chunk; it predicts from the kept [22, 30), which
    # sit in the buffer right after its 70 bytes
    applied2([fl2(0, 40, keep=(0, 30)), fl2(10, 70, 3, pred=pr(62, 2, 90))], max_chunk=100)


def test_v2_chunk_one_byte_over_max_chunk_with_the_kept_ones_is_refused() -> None:
    refused2([fl2(0, 40, keep=(0, 30)), fl2(10, 71, 3, pred=pr(62, 2, 90))], Status.BadChunk, 1,
             max_chunk=100)  # fmt: skip


# the release (apply_chunk `from_kept = src < off`): a PRED from the kept
# range ends it; one from its own chunk, even from the chunk's first byte, does not


def test_v2_pred_from_the_kept_range_releases_it() -> None:
    applied2([fl2(0, 40, keep=(30, 10)), fl2(0, 20, 3, pred=pr(0, 2, 10)), fl2(0, 100, 4)],
             max_chunk=100)  # fmt: skip


def test_v2_pred_from_its_own_chunk_leaves_the_range_kept() -> None:
    # chunk 1 predicts from its first byte; chunk 2 (90 + 10 kept) from the kept range
    applied2([fl2(0, 40, keep=(30, 10)), fl2(0, 20, 3, pred=pr(8, 2, 8)),
              fl2(0, 90, 4, pred=pr(0, 2, 30))], max_chunk=100)  # fmt: skip


def test_v2_pred_from_its_own_chunk_leaves_no_room_for_max_chunk() -> None:
    refused2([fl2(0, 40, keep=(30, 10)), fl2(0, 20, 3, pred=pr(8, 2, 8)), fl2(0, 100, 4)],
             Status.BadChunk, 2, max_chunk=100)  # fmt: skip


# PRED: `n == 0 || pred_start > len || n > (len - pred_start) / 4`


def test_v2_pred_of_zero_values_is_refused() -> None:
    refused2([fl2(100, 40, pred=pr(8, 0, 4))], Status.BadChunk, 0)


def test_v2_pred_ending_at_the_chunk_end_is_applied() -> None:
    applied2([fl2(100, 40, pred=pr(32, 2, 32))])


@pytest.mark.parametrize(("start", "count"), [(33, 2), (32, 3)], ids=["start+1", "count+1"])
def test_v2_pred_past_the_chunk_end_is_refused(start: int, count: int) -> None:
    refused2([fl2(100, 40, pred=pr(start, count, start))], Status.BadChunk, 0)


@pytest.mark.parametrize("start", [41, U32_MAX], ids=["len+1", "u32max"])
def test_v2_pred_starting_past_the_chunk_end_is_refused(start: int) -> None:
    refused2([fl2(100, 40, pred=pr(start, 1, 4))], Status.BadChunk, 0)


# PRED: `pred_back < 4 n || pred_back > T` (T = offset + pred_start)


def test_v2_pred_source_right_before_its_target_is_applied() -> None:
    applied2([fl2(100, 40, pred=pr(16, 2, 8))])


def test_v2_pred_source_overlapping_its_target_is_refused() -> None:
    refused2([fl2(100, 40, pred=pr(16, 2, 7))], Status.BadChunk, 0)


def test_v2_pred_source_at_region_offset_0_is_applied() -> None:
    # T = 48: the source is [0, 8), kept by chunk 0
    applied2([fl2(0, 40, keep=(0, 8)), fl2(0, 20, 3, pred=pr(8, 2, 48))])


def test_v2_pred_source_before_the_region_is_refused() -> None:
    # T - pred_back would wrap to 2^32 - 1, "after" the chunk's offset
    refused2([fl2(0, 40, keep=(0, 8)), fl2(0, 20, 3, pred=pr(8, 2, 49))], Status.BadChunk, 1,
             cut=True)  # fmt: skip


# PRED: the source in this chunk (`src >= offset`) or in the kept range
# (`src >= kept_off && src - kept_off <= kept_len && 4 n <= kept_len - (src - kept_off)`)


def test_v2_pred_source_at_the_chunk_start_is_applied() -> None:
    applied2([fl2(100, 40, pred=pr(16, 2, 16))])


def test_v2_pred_source_one_byte_before_the_chunk_is_refused() -> None:
    refused2([fl2(100, 40, pred=pr(16, 2, 17))], Status.BadChunk, 0)


KEPT_AT = [fl2(100, 40, keep=(10, 20))]  # kept: [110, 130); the next chunk at 160 predicts


@pytest.mark.parametrize("src", [110, 122], ids=["start", "end"])
def test_v2_pred_source_at_either_end_of_the_kept_range_is_applied(src: int) -> None:
    applied2([*KEPT_AT, fl2(20, 20, 3, pred=pr(0, 2, 160 - src))])


@pytest.mark.parametrize("src", [109, 123, 131], ids=["before-start", "past-end", "after-end"])
def test_v2_pred_source_outside_the_kept_range_is_refused(src: int) -> None:
    refused2([*KEPT_AT, fl2(20, 20, 3, pred=pr(0, 2, 160 - src))], Status.BadChunk, 1)


# the head: the divisor's 4 bytes after the varints (`n - pos < 4`), the
# KEEP and PRED varints as well formed as the others


@pytest.mark.parametrize("have", [0, 1, 2, 3])
def test_v2_stream_ending_inside_the_divisor_is_truncated(have: int) -> None:
    payload, _, heads = stream2([fl2(100, 40, pred=pr(32, 2, 32))])
    cut = payload[: heads[0] - 4 + have]
    out = run(cut)
    assert (out.status, out.consumed) == (Status.Truncated, len(cut))


@pytest.mark.parametrize("field", range(5),
                         ids=["keep_start", "keep_len", "pred_start", "pred_count", "pred_back"])
def test_v2_malformed_varint_in_a_keep_or_pred_field_is_refused(field: int) -> None:
    # the field as 0x80 0x00 (zero, not in its shortest form), refused at the 0x00
    values = [4, 8, 16, 2, 16]
    enc = codec.RAW | (codec.KEEP if field < 2 else codec.PRED)
    fields = values[:2] if field < 2 else values[2:]
    i = field if field < 2 else field - 2
    rest = b"".join(codec.varint(v) for v in fields[i + 1 :])
    rest += b"" if field < 2 else struct.pack("<I", DIV)
    head = (bytes([enc]) + codec.varint(0) + codec.varint(40)
            + b"".join(codec.varint(v) for v in fields[:i]) + b"\x80\x00" + rest)  # fmt: skip
    refused2([Chunk2Spec(codec.RAW, 0, 40, floats(40, 2), raw_head=head)], Status.BadChunk, 0,
             back=len(rest))  # fmt: skip


# modelota_fdiv's limits: operands and quotient normal (`ea, ed` not 0 or
# 255, `e <= 0 || e >= 255` gives 0), and the rounding (`r > md`: r is twice
# the remainder). Each case: one value divided, the FPU's quotient expected.


def f32(mantissa: float, exp: int) -> int:
    """Bits of the float32 mantissa * 2^exp (mantissa in [1, 2))."""
    return (exp + 127) << 23 | int((mantissa - 1) * (1 << 23))


FDIV_CASES = {  # id: (a, d, the quotient's exponent field, 0 when no quotient)
    "quotient-exp-1": (f32(1.5, -100), f32(1.25, 26), 1),
    "quotient-exp-0": (f32(1.25, -100), f32(1.5, 26), 0),
    "quotient-exp-254": (f32(1.5, 100), f32(1.25, -27), 254),
    "quotient-exp-255": (f32(1.5, 100), f32(1.25, -28), 0),
    # 2 * remainder == md + 1: the smallest remainder that rounds up
    "rounds-up-just-above-half": (0x3FC00001, 0x3F800001, 127),
    "dividend-exp-1": (f32(1.5, -126), f32(1.0, -20), 21),
    "dividend-exp-254": (f32(1.5, 127), f32(1.0, 20), 234),
    "divisor-exp-1": (f32(1.5, -100), f32(1.25, -126), 153),
    "divisor-exp-254": (f32(1.5, 100), f32(1.25, 127), 100),
    "dividend-subnormal": (0x00400000, f32(1.0, -20), 0),
    "dividend-inf": (0x7F800000, f32(1.0, 20), 0),
    "divisor-subnormal": (f32(1.0, -20), 0x00400000, 0),
    "divisor-inf": (f32(1.0, 20), 0x7F800000, 0),
}


@pytest.mark.parametrize("case", list(FDIV_CASES))
def test_v2_pred_quotient_edges(case: str) -> None:
    a, d, exp = FDIV_CASES[case]
    q = fdiv_ieee(a, d)
    assert (q >> 23) & 0xFF == exp and (q != 0) == (exp != 0), hex(q)  # the edge it names
    if case == "rounds-up-just-above-half":
        ma, md = a & 0x7FFFFF | 0x800000, d & 0x7FFFFF | 0x800000
        assert md % 2 == 1 and 2 * (ma * 2**23 % md) == md + 1
    # a chunk of the value and the residual (zeros) of its prediction
    applied2([Chunk2Spec(codec.RAW, 0, 8, struct.pack("<I", a) + bytes(4), pred=pr(4, 1, 4, d))])


# ---------------------------------------------------------------- Store

BS = 256  # block size of the Store tests


def store_for(layout: Layout, prog: int = 4, bs: int = BS) -> tuple[SimFlash, _StoreHandle]:
    flash = SimFlash(bs, layout.block_count, prog)
    st = _StoreHandle(flash, layout)
    assert st.init_status == Status.Ok
    assert st.recover() == Status.Ok
    return flash, st


def log(st: _StoreHandle, data: bytes) -> Status:
    n = load()
    return Status(n.lib.modelota_store_log(st.st, n.ffi.from_buffer(data), len(data)))


def begin(st: _StoreHandle) -> Status:
    return Status(load().lib.modelota_store_begin(st.st))


def commit(st: _StoreHandle, version: int) -> Status:
    return Status(load().lib.modelota_store_commit(st.st, version))


def region_read(st: _StoreHandle, off: int, n: int) -> Status:
    lib = load().lib
    buf = load().ffi.new("uint8_t[]", max(n, 1))
    return Status(lib.modelota_store_region_read(st.st, off, buf, n))


# log capacity: modelota_store_log `n > capacity - log_len - tail_len`


def logging_store(first: int) -> tuple[_StoreHandle, int]:
    """A store logging, ``first`` bytes in; returns it and the bytes left."""
    layout = Layout.plan(BS, 4, 512, 2 * BS)
    _, st = store_for(layout)
    assert st.format(None, 1) == Status.Ok and begin(st) == Status.Ok
    assert log(st, bytes(first)) == Status.Ok
    return st, layout.log_blocks * BS - first


@pytest.mark.parametrize("first", [0, 1, 4], ids=["empty", "tail", "prog-unit"])
def test_store_log_exactly_full_is_accepted(first: int) -> None:
    st, left = logging_store(first)
    assert log(st, bytes(left)) == Status.Ok


@pytest.mark.parametrize("first", [0, 1, 4], ids=["empty", "tail", "prog-unit"])
def test_store_log_one_byte_over_is_refused(first: int) -> None:
    st, left = logging_store(first)
    assert log(st, bytes(left + 1)) == Status.TooLarge
    assert log(st, bytes(left)) == Status.Ok  # the refused call wrote nothing


def test_store_log_u32_max_is_refused() -> None:
    st, _ = logging_store(0)
    n = load()
    one = n.ffi.new("uint8_t[1]")  # never read: the length is refused first
    assert Status(n.lib.modelota_store_log(st.st, one, U32_MAX)) == Status.TooLarge


# journal capacity: modelota_store_commit `blocks + kJournalSpare > journal_capacity`
# (prog 16: one 16-byte slot per prog unit, 16 slots in a block; 8 spare)


JOURNAL_SLOTS, JOURNAL_SPARE = 16, 8


def journal_setup(touched_blocks: int) -> tuple[SimFlash, Layout, _StoreHandle, bytes, bytes]:
    """A store whose journal is one block of 16 slots, logging (not yet
    committed) a payload that rewrites ``touched_blocks`` region blocks."""
    region = 12 * BS
    layout = replace(Layout.plan(BS, 16, region, region + 2048), journal_blocks=1)
    flash, st = store_for(layout, prog=16)
    old = random.Random(5).randbytes(region)
    assert st.format(old, 1) == Status.Ok
    new = bytearray(old)
    chunks = []
    for b in range(touched_blocks):
        data = random.Random(b).randbytes(8)
        new[b * BS : b * BS + 8] = data
        chunks.append((b * BS, data))
    h = Header(FP, 2, region, 8 * touched_blocks, touched_blocks, touched_blocks, 8,
               struct.pack("<I", crc32(bytes(new))) + bytes(28))  # fmt: skip
    payload = h.encode() + b"".join(raw_chunk(h.crc, i, o, d) for i, (o, d) in enumerate(chunks))
    assert begin(st) == Status.Ok and log(st, payload) == Status.Ok
    return flash, layout, st, old, bytes(new)


def journal_case(touched_blocks: int) -> tuple[_StoreHandle, bytes, bytes, Status]:
    _, _, st, old, new = journal_setup(touched_blocks)
    return st, old, new, commit(st, 2)


def test_store_journal_exactly_full_commits() -> None:
    st, _, new, status = journal_case(JOURNAL_SLOTS - JOURNAL_SPARE)
    assert status == Status.Ok
    assert st.read_region() == new and st.version == 2


def test_store_journal_one_entry_over_is_refused() -> None:
    st, old, _, status = journal_case(JOURNAL_SLOTS - JOURNAL_SPARE + 1)
    assert status == Status.TooLarge
    assert st.read_region() == old and st.version == 1


# journal slots during recovery: journal_append `slot >= journal_capacity`.
# Each power cut during an entry write may spoil a slot; past the spare
# slots the last entry would land outside the journal (on the log).


def recovery_after_spoilt_slots(spoilt: int, touched: int = 8) -> tuple[Status, bool, bytes]:
    """Commits, cut by a power loss right after the COMMITTED record (nothing
    of the region rewritten yet); ``spoilt`` journal slots then hold torn
    entries; recovery runs. Returns its status, whether the region holds the
    new weights, and the log area afterwards."""
    for at in range(16):
        flash, layout, st, _, new = journal_setup(touched)
        flash.strict = False  # NOR semantics: programming over data ANDs bits
        flash.cut_power(flash.ops + at, tear=False)
        assert commit(st, 2) != Status.Ok
        flash.reboot()
        again = _StoreHandle(flash, layout)
        if again.state == load().lib.MODELOTA_STORE_PENDING:
            break
    else:
        raise AssertionError("no cut left the commit record alone")
    first = layout.journal_block * BS
    assert flash.data[first : first + BS] == b"\xff" * BS  # no entry written yet
    flash.load(first, bytes(range(16 * spoilt)))  # torn entries: CRCs do not match
    log_area = slice(layout.log_block * BS, (layout.log_block + layout.log_blocks) * BS)
    before = flash.data[log_area]
    status = again.recover()
    region = flash.data[: len(new)]
    assert flash.data[log_area] == before or status == Status.Ok, "an entry went onto the log"
    return status, region == new, before


def test_store_recovery_with_its_last_entry_in_the_last_journal_slot_completes() -> None:
    status, is_new, _ = recovery_after_spoilt_slots(JOURNAL_SLOTS - 8, touched=8)
    assert status == Status.Ok and is_new


def test_store_recovery_one_entry_past_the_journal_stops_before_writing_it() -> None:
    status, is_new, _ = recovery_after_spoilt_slots(JOURNAL_SLOTS - 8 + 1, touched=8)
    assert status == Status.StorageIo and not is_new


# the log's chunks against the region and the log: walk_log (commit and recovery)
# `log_len - pos < head + tail`, `len + tail > log_len - pos`,
# `off > region_size || len > region_size - off`


def store_log_case(
    chunks: list[tuple[int, bytes]], *, cut: int = 0, count: int | None = None
) -> tuple[_StoreHandle, bytes, Status]:
    """Logs a hand-made payload (the Store trusts the Updater for CRCs, not
    for bounds) of ``chunks``, ``cut`` bytes short, and commits it."""
    region = 4 * BS
    _, st = store_for(Layout.plan(BS, 4, region, 2048))
    old = random.Random(6).randbytes(region)
    assert st.format(old, 1) == Status.Ok
    final = bytearray(old)
    for off, data in chunks:
        end = min(off + len(data), region)
        final[off:end] = data[: max(0, end - off)]
    digest = struct.pack("<I", crc32(bytes(final))) + bytes(28)
    h = Header(FP, 2, region, sum(len(d) for _, d in chunks),
               len(chunks) if count is None else count, segments(chunks),
               max(len(d) for _, d in chunks), digest)  # fmt: skip
    payload = h.encode() + b"".join(raw_chunk(h.crc, i, o, d) for i, (o, d) in enumerate(chunks))
    assert begin(st) == Status.Ok and log(st, payload[: len(payload) - cut]) == Status.Ok
    return st, old, commit(st, 2)


def test_store_log_chunk_ending_at_region_end_commits() -> None:
    st, _, status = store_log_case([(4 * BS - 8, bytes(range(8)))])
    assert status == Status.Ok and st.read_region()[-8:] == bytes(range(8))


def test_store_log_chunk_ending_one_past_region_end_is_refused() -> None:
    st, old, status = store_log_case([(4 * BS - 8, bytes(range(9)))])
    assert status == Status.StorageIo
    assert st.read_region() == old and st.version == 1


def test_store_log_chunk_starting_past_region_end_is_refused() -> None:
    st, old, status = store_log_case([(4 * BS + 1, b"\1")])
    assert status == Status.StorageIo and st.read_region() == old


def test_store_log_chunk_tail_one_byte_past_the_log_is_refused() -> None:
    """The last chunk's data fits the log, its CRC does not: the log ends
    inside the chunk. (A chunk's data must leave room for its tail.)"""
    st, old, status = store_log_case([(0, bytes(range(16))), (100, bytes(range(20)))], cut=1)
    assert status == Status.StorageIo and st.read_region() == old


def test_store_log_ending_inside_a_chunk_head_is_refused() -> None:
    st, old, status = store_log_case([(0, bytes(range(16)))], count=2)
    assert status == Status.StorageIo and st.read_region() == old


def test_store_log_holding_exactly_a_chunk_head_and_tail_commits() -> None:
    """The last chunk carries no data: its head and CRC end the log exactly."""
    st, _, status = store_log_case([(0, bytes(range(16))), (100, b"")])
    assert status == Status.Ok and st.read_region()[:16] == bytes(range(16))


def test_store_log_one_byte_short_of_a_chunk_head_and_tail_is_refused() -> None:
    st, old, status = store_log_case([(0, bytes(range(16))), (100, bytes(range(20)))],
                                     cut=20 + 1)  # fmt: skip
    assert status == Status.StorageIo and st.read_region() == old


def store_log_case_v2(
    specs: list[Chunk2Spec],
) -> tuple[_StoreHandle, bytes, Status]:
    """store_log_case for a v2 payload: chunk heads as ``specs`` give them."""
    region = 4 * BS
    _, st = store_for(Layout.plan(BS, 4, region, 2048))
    old = random.Random(6).randbytes(region)
    assert st.format(old, 1) == Status.Ok
    h = Header(fingerprint=FP, model_version=2, weights_size=region,
               data_size=sum(c.length for c in specs), chunk_count=len(specs), segment_count=0,
               max_chunk=max(c.length for c in specs), digest=bytes(32),
               format_version=FORMAT_V2)  # fmt: skip
    payload, _ = encode2(h, specs)
    assert begin(st) == Status.Ok and log(st, payload) == Status.Ok
    return st, old, commit(st, 2)


def test_store_log_v2_chunk_ending_one_past_region_end_is_refused() -> None:
    st, old, status = store_log_case_v2([raw2(4 * BS - 8, 9)])
    assert status == Status.StorageIo and st.read_region() == old and st.version == 1


@pytest.mark.parametrize("gap", [4 * BS - 15, U32_MAX - 15], ids=["size+1", "wraps to 0"])
def test_store_log_v2_gap_past_region_end_is_refused(gap: int) -> None:
    # after a 16-byte chunk, a gap that ends past the region, or wraps the
    # offset round to the start (where it would overlap the first chunk)
    st, old, status = store_log_case_v2([raw2(0, 16), raw2(gap, 16, 3)])
    assert status == Status.StorageIo and st.read_region() == old and st.version == 1


# KEEP and PRED in the log: walk_log checks each head again
# (modelota_chunk_refs_check, its own kept range and release), apply_piece
# and add_prediction rebuild the predicted bytes block by block, reading
# the source from flash or from the block being rebuilt.

STORE_MAX = 64
# Region offsets: chunk 0 [20, 68) keeps [36, 60); chunk 1 [80, 120) (RUNS,
# DIFF, no data: its new bytes are the base but for [88, 96), predicted
# from its own first bytes: the range stays kept); chunk 2 [240, 280) (DIFF)
# predicts [246, 270) from the whole kept range, across the block boundary
# at 256 (the value at 254), and releases it; chunk 3 [300, 364), max_chunk
# long, predicts [318, 334) from [302, 318) (across 320 for 64-byte blocks).
PRED_LOG = [
    fl2(20, 48, 2, keep=(16, 24)),
    Chunk2Spec(codec.RUNS | codec.DIFF, 12, 40, b"", pred=pr(8, 2, 8)),
    Chunk2Spec(codec.RAW | codec.DIFF, 120, 40, floats(40, 4), pred=pr(6, 6, 210)),
    fl2(20, STORE_MAX, 5, pred=pr(18, 4, 16)),
]


def pred_header(old: bytes, specs: list[Chunk2Spec], **fields: object) -> Header:
    """A delta header for ``specs`` over ``old``, digest of final2."""
    h = Header(fingerprint=FP, model_version=2, weights_size=len(old),
               data_size=sum(c.length for c in specs), chunk_count=len(specs), segment_count=0,
               max_chunk=STORE_MAX, digest=struct.pack("<I", crc32(final2(old, specs))) + bytes(28),
               flags=FLAG_DELTA, base_version=1, base_crc32=crc32(old),
               format_version=FORMAT_V2)  # fmt: skip
    return replace(h, **fields)  # type: ignore[arg-type]


def store_log_pred(specs: list[Chunk2Spec], bs: int = BS,
                   **fields: object) -> tuple[_StoreHandle, bytes, bytes, Status]:  # fmt: skip
    """A store of ``bs``-byte blocks, 1024-byte region, committing a log of
    the delta ``specs`` (written as is, no Updater): the store, the old
    region, the log and the commit's status."""
    region = 1024
    _, st = store_for(Layout.plan(bs, 4, region, 2048), bs=bs)
    old = random.Random(7).randbytes(region)
    assert st.format(old, 1) == Status.Ok
    payload, _ = encode2(pred_header(old, specs, **fields), specs)
    assert begin(st) == Status.Ok and log(st, payload) == Status.Ok
    return st, old, payload, commit(st, 2)


@pytest.mark.parametrize("bs", [256, 64])
def test_store_log_v2_keep_and_pred_commit_the_reference_weights(bs: int) -> None:
    st, old, payload, status = store_log_pred(PRED_LOG, bs)
    assert status == Status.Ok and st.version == 2
    ref = final_weights(parse(payload), old)  # the Python reference, checks included
    assert st.read_region() == ref == final2(old, PRED_LOG)


def test_store_log_v2_pred_source_outside_the_kept_range_is_refused() -> None:
    # chunk 1 predicts [53, 61): one byte past the kept [36, 60)
    specs = [fl2(20, 48, 2, keep=(16, 24)), fl2(12, 40, 3, pred=pr(0, 2, 80 - 53))]
    st, old, payload, status = store_log_pred(specs)
    assert status == Status.StorageIo and st.read_region() == old and st.version == 1
    with pytest.raises(ModelOTAError, match="neither in this chunk nor kept"):
        parse(payload)


def test_store_log_v2_kept_range_longer_than_max_chunk_is_refused() -> None:
    """A log the Updater would never pass (a chunk and its kept range longer
    than max_chunk): `kept_len > max_chunk` keeps `max_chunk - kept_len`
    from wrapping round to room for any chunk."""
    specs = [fl2(0, STORE_MAX + 1, 2, keep=(0, STORE_MAX + 1)), fl2(0, 4, 3)]
    st, old, _, status = store_log_pred(specs)
    assert status == Status.StorageIo and st.read_region() == old and st.version == 1


@pytest.mark.parametrize("bs", [256, 64])
def test_store_receive_hashes_gaps_around_the_kept_bytes(bs: int) -> None:
    """The Store's receive path (the Updater verify-only, the region read
    through the chunk buffer; 96 bytes, the least it takes, max_chunk 64):
    between chunks 1 and 2 the 120 unchanged bytes are hashed in passes of
    max_chunk - kept_len = 40 bytes (region_digest_range's room), which
    must leave the kept bytes [40, 64) of the buffer alone for chunk 2's
    prediction. Then the commit rebuilds the blocks from the log."""
    region = 1024
    layout = Layout.plan(bs, 4, region, 2048)
    flash = SimFlash(bs, layout.block_count, 4)
    old = random.Random(7).randbytes(region)
    flash.load(0, old)
    dev = FlashModelDevice(flash, layout, FP, 1, buffer_len=HEADER_LEN)
    assert dev.boot() == Status.Ok
    payload, _ = encode2(pred_header(old, PRED_LOG), PRED_LOG)
    ref = Device(FP, 1, bytearray(old), HEADER_LEN)
    assert apply_reference(payload, ref).status == Status.Ok
    assert dev.update(payload, piece=7) == Status.Ok
    assert dev.version == 2 and dev.weights() == bytes(ref.weights) == final2(old, PRED_LOG)


# region reads: modelota_store_region_read `offset > region_size || len > region_size - offset`


def test_store_region_read_edges() -> None:
    _, st = store_for(Layout.plan(BS, 4, 1000, 2048))
    assert st.format(None, 1) == Status.Ok
    assert region_read(st, 0, 1000) == Status.Ok
    assert region_read(st, 990, 10) == Status.Ok
    assert region_read(st, 1000, 0) == Status.Ok


@pytest.mark.parametrize(
    ("off", "n"), [(0, 1001), (991, 10), (1001, 0), (U32_MAX, 1), (1, U32_MAX)],
    ids=["len size+1", "end size+1", "offset size+1", "offset u32max", "len u32max"],
)  # fmt: skip
def test_store_region_read_past_region_is_refused(off: int, n: int) -> None:
    _, st = store_for(Layout.plan(BS, 4, 1000, 2048))
    assert st.format(None, 1) == Status.Ok
    lib, ffi = load().lib, load().ffi
    buf = ffi.new("uint8_t[]", 2048)  # room enough that a wrong check would not crash
    assert Status(lib.modelota_store_region_read(st.st, off, buf, n)) == Status.StorageIo


# backup sources: modelota_source_read `offset > size || len > size - offset`
# (size 0: not stated, unchecked)


def source_read(size: int, off: int, n: int, stated: bool = True) -> Status:
    lib, ffi = load().lib, load().ffi
    image = ffi.new("uint8_t[]", bytes(range(256)) * 8)  # 2048 bytes: a wrong check cannot crash
    src = lib.modelota_backup_ram(image, size if stated else 0, 1)
    out = ffi.new("uint8_t[]", 2048)
    return Status(lib.modelota_source_read(ffi.new("modelota_source*", src), off, out, n))


def test_source_read_edges() -> None:
    assert source_read(1000, 0, 1000) == Status.Ok
    assert source_read(1000, 990, 10) == Status.Ok
    assert source_read(1000, 1000, 0) == Status.Ok
    assert source_read(1000, 0, 1001, stated=False) == Status.Ok  # no size: the caller's word


@pytest.mark.parametrize(
    ("off", "n"), [(0, 1001), (991, 10), (1001, 0), (U32_MAX, 1), (1, U32_MAX)],
    ids=["len size+1", "end size+1", "offset size+1", "offset u32max", "len u32max"],
)  # fmt: skip
def test_source_read_past_its_end_is_refused(off: int, n: int) -> None:
    assert source_read(1000, off, n) == Status.InvalidArgument


# areas against the storage: modelota_store_init
# `first > block_count || count > block_count - first`, overlaps, prog/block sizes


def init_status(layout: Layout, block_count: int, prog: int = 4, bs: int = BS) -> Status:
    return _StoreHandle(SimFlash(bs, block_count, prog), layout).init_status


def test_store_area_ending_at_the_last_block_is_accepted_one_past_refused() -> None:
    layout = Layout.plan(BS, 4, 1000, 2048)
    assert init_status(layout, layout.block_count) == Status.Ok
    assert init_status(layout, layout.block_count - 1) == Status.InvalidArgument


def test_store_adjacent_areas_are_accepted_overlapping_by_one_block_refused() -> None:
    layout = Layout.plan(BS, 4, 1000, 2048)
    spread = replace(layout, log_block=layout.log_block + 1)  # a free block before the log
    assert init_status(spread, spread.block_count) == Status.Ok
    # an area that starts one block before another ends, or ends one block
    # after another starts (the region moved to the end to make room before it)
    moved = replace(layout, region_block=40, meta_block=0, backup_block=39, journal_block=2,
                    log_block=2 + layout.journal_blocks)  # fmt: skip
    assert init_status(moved, 44) == Status.Ok
    for base, name, value in (
        (layout, "log_block", layout.journal_block + layout.journal_blocks - 1),
        (layout, "journal_blocks", layout.journal_blocks + 1),
        (layout, "backup_block", layout.meta_block + 1),
        (layout, "meta_block", layout.region_block + 3),  # the region's last block (1000 B)
        (moved, "backup_block", 40),  # the region's first block
    ):
        bad = replace(base, **{name: value})
        assert init_status(bad, 64) == Status.InvalidArgument, name


def test_store_prog_size_at_the_maximum_is_accepted_one_over_refused() -> None:
    max_prog = int(load().lib.MODELOTA_MAX_PROG_SIZE)
    layout = Layout.plan(BS, max_prog, 1000, 2048)
    assert init_status(layout, layout.block_count, prog=max_prog) == Status.Ok
    # the simulated flash needs prog to divide the block: 256 is not a multiple of 33
    big = Layout.plan(33 * 8, max_prog + 1, 1000, 2048)
    assert init_status(big, big.block_count, prog=max_prog + 1, bs=33 * 8) == Status.InvalidArgument


def test_store_block_of_two_records_is_accepted_one_byte_less_refused() -> None:
    record = int(load().lib.MODELOTA_RECORD_LEN)
    for bs, expected in ((2 * record, Status.Ok), (2 * record - 1, Status.InvalidArgument)):
        layout = Layout.plan(bs, 1, 200, 300)
        assert init_status(layout, layout.block_count, prog=1, bs=bs) == expected, bs


# ---------------------------------------------------------------- link

LINK_SIZE = 600
FRAME_DATA = 64  # DATA bytes a frame of the test board carries


class Link:
    """The native link (link.cpp) driven frame by frame, on a hand clock."""

    def __init__(self, frame_data: int = FRAME_DATA, timeout_ms: int = 2000) -> None:
        self.weights, self.fp = demo_model(LINK_SIZE, seed=3)
        self.board = SimBoard(self.weights, fingerprint=self.fp, version=1,
                              frame_data=frame_data, resume_timeout_ms=timeout_ms)  # fmt: skip
        self.board.record = True
        self.board.fake_ms = 1000
        self.reader = FrameReader()
        new = bytes((b + 1) % 256 for b in self.weights)
        from modelota import pack

        self.payload = pack(new, fingerprint=self.fp, version=2, chunk_size=100).encode()
        self.new = new

    def raw(self, data: bytes) -> list[tuple[int, bytes]]:
        self.board.sent.clear()
        self.board.rx(data)
        return self.reader.feed(bytes(self.board.sent))

    def send(self, ftype: int, body: bytes = b"") -> list[tuple[int, bytes]]:
        return self.raw(frame(ftype, body))

    def start(self, total: int | None = None) -> None:
        total = len(self.payload) if total is None else total
        assert self.send(START, struct.pack("<II", total, 77)) == [ack(0)]

    def data(self, off: int, n: int) -> list[tuple[int, bytes]]:
        return self.send(DATA, struct.pack("<I", off) + self.payload[off : off + n])

    def feed_to(self, end: int) -> None:
        for off in range(0, end, FRAME_DATA):
            n = min(FRAME_DATA, end - off)
            assert self.data(off, n) == [ack(off + n)]


def ack(off: int) -> tuple[int, bytes]:
    return (ACK, struct.pack("<Ib", off, 0))


def nak(off: int, reason: int) -> tuple[int, bytes]:
    return (NAK, struct.pack("<IB", off, reason))


NAK_CRC, NAK_GAP, NAK_RANGE, NAK_INCOMPLETE, NAK_MALFORMED = 1, 2, 4, 5, 6


# frame length: modelota_link_rx `len > max_body` (max_body = max data + 4)


def test_link_data_frame_of_max_data_bytes_is_acked() -> None:
    d = Link()
    d.start()
    assert d.data(0, FRAME_DATA) == [ack(FRAME_DATA)]


def test_link_frame_one_byte_over_max_body_is_dropped() -> None:
    d = Link()
    d.start()
    over = frame(DATA, struct.pack("<I", 0) + d.payload[: FRAME_DATA + 1])
    # a corrupt length is a lost frame: NAKed like a CRC failure (protocol 2)
    assert d.raw(over) == [nak(0, NAK_CRC)] and d.board.frames_bad == 1 and d.board.acked == 0
    assert d.data(0, FRAME_DATA) == [ack(FRAME_DATA)]  # the receiver hunted on


def test_link_max_data_is_capped_at_a_16_bit_body() -> None:
    """A frame buffer larger than 3 + 0xFFFF bytes still announces bodies of
    at most 0xFFFF bytes (the length field is 16 bits)."""
    for frame_data, max_data in ((0xFFFF - 4, 0xFFFF - 4), (0xFFFF - 3, 0xFFFF - 4)):
        d = Link(frame_data=frame_data)
        [(kind, body)] = d.send(HELLO)
        assert kind == INFO and Info.decode(body).max_data == max_data, frame_data


def test_link_smallest_frame_buffer_is_accepted_one_less_refused() -> None:
    least = int(load().lib.MODELOTA_LINK_MIN_FRAME_BUF) - 7  # SimBoard adds 7 to frame_data
    Link(frame_data=least)
    with pytest.raises(ValueError, match="modelota_link_init"):
        Link(frame_data=least - 1)


# body lengths: on_start `len < 8`, on_data `len < MODELOTA_LINK_DATA_HEAD`


def test_link_start_of_eight_bytes_is_acked_seven_refused() -> None:
    d = Link()
    assert d.send(START, bytes(7)) == [nak(0, NAK_MALFORMED)]
    assert d.send(START, struct.pack("<II", len(d.payload), 5)) == [ack(0)]


def test_link_data_of_offset_only_is_acked_shorter_refused() -> None:
    d = Link()
    d.start()
    assert d.send(DATA, bytes(3)) == [nak(0, NAK_MALFORMED)]
    assert d.send(DATA, bytes(4)) == [ack(0)]  # no bytes: nothing new, acked as is


# DATA offsets: on_data `offset > acked` (gap), `n > total - offset` (range),
# `skip >= n` (duplicate)


def test_link_data_at_the_acked_offset_is_taken_one_past_is_a_gap() -> None:
    d = Link()
    d.start()
    d.feed_to(128)
    assert d.data(129, 10) == [nak(128, NAK_GAP)]
    assert d.data(128, 10) == [ack(138)]


def test_link_data_ending_at_the_total_is_taken_one_past_is_out_of_range() -> None:
    d = Link()
    total = len(d.payload)
    d.start()
    d.feed_to(total - 10)
    over = d.send(DATA, struct.pack("<I", total - 10) + d.payload[total - 10 :] + b"\0")
    assert over == [nak(total - 10, NAK_RANGE)]
    assert d.data(total - 10, 10) == [ack(total)]


def test_link_duplicate_ending_at_acked_is_ignored_one_more_byte_is_fed() -> None:
    d = Link()
    d.start()
    d.feed_to(128)
    assert d.data(100, 28) == [ack(128)] and d.board.acked == 128  # all old: nothing fed
    assert d.data(100, 29) == [ack(129)] and d.board.acked == 129  # one new byte


# COMMIT: on_commit `acked != total_len`


def test_link_commit_after_every_byte_succeeds_one_short_is_incomplete() -> None:
    d = Link()
    total = len(d.payload)
    d.start()
    d.feed_to(total - 1)
    assert d.send(COMMIT) == [nak(total - 1, NAK_INCOMPLETE)]
    assert d.data(total - 1, 1) == [ack(total)]
    [(kind, body)] = d.send(COMMIT)
    assert kind == RESULT and struct.unpack_from("<bII", body) == (0, 2, zlib.crc32(d.new))


# clocks: modelota_link_rx `t - last_byte_ms >= MODELOTA_LINK_GAP_MS` (a cut
# frame is forgotten), modelota_link_poll `now - last_rx_ms >= resume_timeout_ms`


def test_link_frame_resumed_just_before_the_gap_completes_at_the_gap_is_forgotten() -> None:
    gap = int(load().lib.MODELOTA_LINK_GAP_MS)
    for wait, answered in ((gap - 1, True), (gap, False)):
        d = Link()
        hello = frame(HELLO)
        assert d.raw(hello[:3]) == []
        d.board.fake_ms += wait
        got = d.raw(hello[3:])
        assert (got != []) == answered, wait
        if not answered:
            assert d.board.frames_bad == 1


def test_link_transfer_open_until_the_resume_timeout_ends_at_it() -> None:
    d = Link(timeout_ms=2000)
    d.start()
    d.feed_to(64)
    d.board.fake_ms += 1999
    d.board.sent.clear()
    d.board.poll()
    assert d.board.busy and d.board.sent == b""
    d.board.fake_ms += 1
    d.board.poll()
    [(kind, body)] = d.reader.feed(bytes(d.board.sent))
    assert kind == RESULT and body[0] == 256 + Status.Timeout and not d.board.busy
    assert bytes(d.board.weights) == d.weights
