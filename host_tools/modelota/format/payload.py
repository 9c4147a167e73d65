"""Wire formats v1 and v2: the Python mirror of docs/FORMAT.md and firmware_lib/modelota.

Three jobs live here, all following the specification field for field:

* :func:`pack` builds a payload (full or delta) from weight bytes; v2 (the
  default) chooses each chunk's encoding (raw, runs, range coder; for a
  delta, the difference with the base) by measured size;
* :func:`parse` reads a payload without a device and checks everything that can
  be checked without one (used by ``modelota inspect``);
* :func:`apply_reference` applies a payload to a weight buffer exactly as the
  C++ Updater does, returning the same status for every input. Tests hold the
  two implementations against each other.

Signed payloads (``FLAG_SIGNED``) carry a 64-byte Ed25519 signature of the
header bytes right after the header; they need the SHA-256 digest type. The
signing and checking itself lives in :mod:`modelota.format.signing`; the v2
chunk encodings in :mod:`modelota.format.codec`.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ..status import ModelOTAError, Status
from . import codec
from .constants import (
    CHUNK_HEAD_LEN,
    CHUNK_OVERHEAD,
    CHUNK_TAIL_LEN,
    DIGEST_CRC32,
    DIGEST_LEN,
    DIGEST_NAMES,
    DIGEST_SHA256,
    FINGERPRINT_LEN,
    FLAG_DELTA,
    FLAG_SIGNED,
    FORMAT_V1,
    FORMAT_V2,
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    HEADER_CRC_OFFSET,
    HEADER_LEN,
    KNOWN_FLAGS,
    MAGIC,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    U32_MAX,
    V2_FIXED_LEN,
    V2_MAX_HEADER_LEN,
    V2_MIN_HEADER_LEN,
)

# magic, format_version, digest_type, flags, fingerprint, model_version,
# base_version, base_crc32, weights_size, data_size, chunk_count,
# segment_count, max_chunk, digest, reserved  (header_crc follows)
_HEADER = struct.Struct("<4sBBH16sIIIIIIII32sI")
_CHUNK_HEAD = struct.Struct("<III")
_U32 = struct.Struct("<I")
assert _HEADER.size == HEADER_CRC_OFFSET
assert HEADER_CRC_OFFSET + 4 == HEADER_LEN

# what the v2 packer may use besides raw: the RUNS and RC methods, the DIFF
# flag (deltas) and the LANES flag (RC)
ENCODINGS = ("raw", "runs", "rc", "diff", "lanes", "pred")


def crc32(data: bytes, start: int = 0) -> int:
    """CRC-32/IEEE, the same function as the device's ``modelota_crc32``."""
    return zlib.crc32(data, start) & U32_MAX


def _digest_len(digest_type: int) -> int:
    """Bytes of the v2 ``digest`` field: 4 for CRC32, 32 for anything else."""
    return 4 if digest_type == DIGEST_CRC32 else DIGEST_LEN


@dataclass(frozen=True)
class Header:
    """The header (docs/FORMAT.md, "Header"): 96 fixed bytes in v1, 37..96 in v2.

    The digest is kept as 32 bytes (CRC32: 4 bytes, then zeros) in both
    versions; ``segment_count`` is v1 only (v2 has no such field: 0), and
    ``reserved`` carries the key id of a signed payload (v2: present only then).
    """

    fingerprint: bytes
    model_version: int
    weights_size: int
    data_size: int
    chunk_count: int
    segment_count: int
    max_chunk: int
    digest: bytes
    digest_type: int = DIGEST_CRC32
    flags: int = 0
    base_version: int = 0
    base_crc32: int = 0
    format_version: int = FORMAT_V1
    reserved: int = 0
    magic: bytes = MAGIC

    @property
    def is_delta(self) -> bool:
        return bool(self.flags & FLAG_DELTA)

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)

    @property
    def key_id(self) -> bytes:
        """Signed payloads: the signer's key id (the ``reserved`` field's 4 bytes)."""
        return _U32.pack(self.reserved)

    def body(self) -> bytes:
        """The header bytes covered by the header CRC (all but the last 4)."""
        if self.format_version == FORMAT_V2:
            return self._body_v2()
        return _HEADER.pack(
            self.magic,
            self.format_version,
            self.digest_type,
            self.flags,
            self.fingerprint,
            self.model_version,
            self.base_version,
            self.base_crc32,
            self.weights_size,
            self.data_size,
            self.chunk_count,
            self.segment_count,
            self.max_chunk,
            self.digest,
            self.reserved,
        )

    def _body_v2(self) -> bytes:
        v = codec.varint
        fields = (
            v(self.model_version)
            + v(self.weights_size)
            + v(self.data_size)
            + v(self.chunk_count)
            + v(self.max_chunk)
        )
        if self.is_delta:
            fields += v(self.base_version) + _U32.pack(self.base_crc32)
        fields += self.digest[: _digest_len(self.digest_type)]
        if self.is_signed:
            fields += _U32.pack(self.reserved)
        length = V2_FIXED_LEN + len(fields) + 4
        fixed = self.magic + bytes([self.format_version, length & 0xFF, self.digest_type])
        return fixed + bytes([self.flags & 0xFF]) + self.fingerprint + fields

    @property
    def crc(self) -> int:
        return crc32(self.body())

    @property
    def length(self) -> int:
        """Encoded size of the header in bytes."""
        return len(self.body()) + 4

    def encode(self) -> bytes:
        body = self.body()
        return body + _U32.pack(crc32(body))

    @classmethod
    def decode(cls, raw: bytes) -> tuple[Header, int]:
        """Splits 96 bytes of a v1 header into fields and the stored CRC; validates nothing."""
        if len(raw) != HEADER_LEN:
            raise ValueError(f"header is {HEADER_LEN} bytes, got {len(raw)}")
        f = _HEADER.unpack(raw[:HEADER_CRC_OFFSET])
        (stored,) = _U32.unpack(raw[HEADER_CRC_OFFSET:])
        header = cls(
            magic=f[0],
            format_version=f[1],
            digest_type=f[2],
            flags=f[3],
            fingerprint=f[4],
            model_version=f[5],
            base_version=f[6],
            base_crc32=f[7],
            weights_size=f[8],
            data_size=f[9],
            chunk_count=f[10],
            segment_count=f[11],
            max_chunk=f[12],
            digest=f[13],
            reserved=f[14],
        )
        return header, stored

    @classmethod
    def decode_v2(cls, raw: bytes) -> Header | None:
        """The fields of a v2 header (``raw``: all of it, CRC included), or None
        when they do not fill it exactly (the device's ``Unsupported``)."""
        digest_type, flags = raw[6], raw[7]
        pos = V2_FIXED_LEN
        end = len(raw) - 4
        values = []
        for _ in range(5 + (1 if flags & FLAG_DELTA else 0)):
            value, pos, ok = codec.read_varint(raw[:end], pos)
            if value is None or not ok:
                return None
            values.append(value)
        base_crc = 0
        if flags & FLAG_DELTA:
            if end - pos < 4:
                return None
            (base_crc,) = _U32.unpack_from(raw, pos)
            pos += 4
        dlen = _digest_len(digest_type)
        if end - pos < dlen:
            return None
        digest = raw[pos : pos + dlen] + bytes(DIGEST_LEN - dlen)
        pos += dlen
        key = 0
        if flags & FLAG_SIGNED:
            if end - pos < 4:
                return None
            (key,) = _U32.unpack_from(raw, pos)
            pos += 4
        if pos != end:
            return None
        return cls(
            magic=raw[:4],
            format_version=raw[4],
            digest_type=digest_type,
            flags=flags,
            fingerprint=raw[8:24],
            model_version=values[0],
            weights_size=values[1],
            data_size=values[2],
            chunk_count=values[3],
            segment_count=0,
            max_chunk=values[4],
            base_version=values[5] if flags & FLAG_DELTA else 0,
            base_crc32=base_crc,
            digest=digest,
            reserved=key,
        )

    def digest_crc32(self) -> int:
        return int(_U32.unpack(self.digest[:4])[0])


@dataclass(frozen=True)
class Chunk:
    """A v1 chunk: sequence number, destination offset, the new bytes."""

    seq: int
    offset: int
    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)

    def head(self) -> bytes:
        return _CHUNK_HEAD.pack(self.seq, self.offset, len(self.data))

    def crc(self, header_crc: int) -> int:
        return crc32(self.data, crc32(self.head(), header_crc))

    def encode(self, header_crc: int) -> bytes:
        return self.head() + self.data + _U32.pack(self.crc(header_crc))

    @property
    def wire_size(self) -> int:
        return CHUNK_OVERHEAD + len(self.data)


@dataclass(frozen=True)
class Pred:
    """A PRED chunk's prediction: ``count`` float32 values at ``start`` (bytes
    into the chunk) are the earlier new values ``back`` bytes before them,
    each divided by the float32 ``divisor`` (bits), plus the decoded residual."""

    start: int
    count: int
    back: int
    divisor: int


@dataclass(frozen=True)
class Chunk2:
    """A v2 chunk: ``length`` decoded bytes for ``offset``, as ``body`` in
    encoding ``enc`` (method | DIFF | LANES | KEEP | PRED). ``gap`` is the
    distance from the end of the previous chunk. ``data``, the new weight
    bytes, is known to the packer and after applying; :func:`parse` leaves it
    None (a DIFF chunk's bytes depend on the base, and decoding needs every
    earlier chunk). ``keep`` (start, length): KEEP's range of this chunk's
    new bytes; ``pred``: PRED's prediction."""

    offset: int
    length: int
    enc: int
    body: bytes
    gap: int
    data: bytes | None = field(default=None, compare=False)
    keep: tuple[int, int] | None = None
    pred: Pred | None = None

    def __post_init__(self) -> None:
        if bool(self.enc & codec.KEEP) != (self.keep is not None):
            raise ValueError("a chunk has a kept range exactly when its encoding has KEEP")
        if bool(self.enc & codec.PRED) != (self.pred is not None):
            raise ValueError("a chunk has a prediction exactly when its encoding has PRED")

    @property
    def method(self) -> int:
        return self.enc & codec.METHOD_MASK

    @property
    def encoding(self) -> str:
        """E.g. "rc+diff+lanes"."""
        name = codec.METHODS.get(self.method, f"method{self.method}")
        for flag, word in ((codec.DIFF, "diff"), (codec.LANES, "lanes"), (codec.KEEP, "keep"),
                           (codec.PRED, "pred")):  # fmt: skip
            if self.enc & flag:
                name += "+" + word
        return name

    def head(self) -> bytes:
        v = codec.varint
        size = v(len(self.body)) if self.method != codec.RAW else b""
        out = bytes([self.enc]) + v(self.gap) + v(self.length) + size
        if self.keep is not None:
            out += v(self.keep[0]) + v(self.keep[1])
        if self.pred is not None:
            q = self.pred
            out += v(q.start) + v(q.count) + v(q.back) + _U32.pack(q.divisor)
        return out

    def crc(self, seed: int) -> int:
        """CRC32 of head and body, seeded with the previous chunk's CRC (chunk 0: header CRC)."""
        return crc32(self.body, crc32(self.head(), seed))

    def encode(self, seed: int) -> bytes:
        return self.head() + self.body + _U32.pack(self.crc(seed))

    @property
    def wire_size(self) -> int:
        return len(self.head()) + len(self.body) + CHUNK_TAIL_LEN


AnyChunk = Chunk | Chunk2


@dataclass(frozen=True)
class Payload:
    header: Header
    chunks: tuple[AnyChunk, ...]
    signature: bytes = b""  # SIGNATURE_LEN bytes when the header has FLAG_SIGNED

    @property
    def v2(self) -> bool:
        return self.header.format_version == FORMAT_V2

    def encode(self) -> bytes:
        seed = self.header.crc
        parts = [self.header.encode(), self.signature]
        for c in self.chunks:
            parts.append(c.encode(seed))
            if isinstance(c, Chunk2):
                seed = c.crc(seed)  # v2 chains each chunk to the one before
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.encode()

    def save(self, path: str | os.PathLike[str]) -> int:
        """Writes the encoded payload to ``path``; returns its size in bytes."""
        data = self.encode()
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    @property
    def chunks_start(self) -> int:
        """Position of chunk 0 in the encoded payload (after the signature block)."""
        return self.header.length + len(self.signature)

    def chunk_spans(self) -> list[tuple[int, int]]:
        """(start, end) byte positions of each chunk inside the encoded payload."""
        spans = []
        pos = self.chunks_start
        for c in self.chunks:
            end = pos + c.wire_size
            spans.append((pos, end))
            pos = end
        return spans

    @property
    def segments(self) -> list[tuple[int, int]]:
        return segments_of(self.chunks)

    def encoding_stats(self) -> dict[str, tuple[int, int, int]]:
        """Bytes over the air per chunk encoding: name -> (chunks, bytes on the
        wire, weight bytes they carry). "header" counts the header and the
        signature block; a chunk's framing counts with its encoding (v1
        chunks are all "raw")."""
        out = {"header": (0, self.header.length + len(self.signature), 0)}
        for c in self.chunks:
            name = c.encoding if isinstance(c, Chunk2) else "raw"
            n, wire, data = out.get(name, (0, 0, 0))
            out[name] = (n + 1, wire + c.wire_size, data + c.length)
        return out


def segments_of(chunks: Sequence[AnyChunk]) -> list[tuple[int, int]]:
    """Maximal runs of contiguous chunks as (offset, length)."""
    segs: list[tuple[int, int]] = []
    for c in chunks:
        if segs and segs[-1][0] + segs[-1][1] == c.offset:
            segs[-1] = (segs[-1][0], segs[-1][1] + c.length)
        else:
            segs.append((c.offset, c.length))
    return segs


# ---------------------------------------------------------------- packing


def diff_ranges(old: bytes, new: bytes, merge_gap: int = CHUNK_OVERHEAD) -> list[tuple[int, int]]:
    """Changed byte ranges of ``new`` against ``old`` (same length) as (offset, length).

    Two changed runs separated by at most ``merge_gap`` equal bytes are merged:
    starting a new chunk costs framing bytes, so shipping a short gap is
    cheaper than splitting around it.
    """
    if len(old) != len(new):
        raise ValueError(f"old and new differ in size ({len(old)} vs {len(new)} bytes)")
    import numpy as np

    a = np.frombuffer(old, dtype=np.uint8)
    b = np.frombuffer(new, dtype=np.uint8)
    changed = np.flatnonzero(a != b)
    if changed.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(changed) > merge_gap + 1)
    starts = np.concatenate(([changed[0]], changed[breaks + 1]))
    ends = np.concatenate((changed[breaks], [changed[-1]])) + 1
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def split_chunks(new: bytes, segments: list[tuple[int, int]], chunk_size: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for off, length in segments:
        for start in range(off, off + length, chunk_size):
            end = min(start + chunk_size, off + length)
            chunks.append(Chunk(len(chunks), start, bytes(new[start:end])))
    return chunks


def _pieces(segments: list[tuple[int, int]], chunk_size: int) -> list[tuple[int, int]]:
    return [
        (start, min(start + chunk_size, off + length) - start)
        for off, length in segments
        for start in range(off, off + length, chunk_size)
    ]


def _entropy(data: bytes, corrected: bool = False) -> float:
    """Order-0 entropy of ``data`` in bytes (what an adaptive coder approaches).
    ``corrected``: plus the Miller-Madow term (a sample underestimates it)."""
    import numpy as np

    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    nz = counts[counts > 0]
    p = nz / len(data)
    bits = float(-(p * np.log2(p)).sum() * len(data))
    if corrected:
        bits += (len(nz) - 1) / (2 * np.log(2))
    return bits / 8


def _lane_entropy(data: bytes, offset: int) -> float:
    """Entropy with bytes at offsets 3 mod 4 counted apart (the LANES model),
    each part with the Miller-Madow term: splitting a sample always lowers its
    plain entropy, the term charges the extra statistics a second tree learns."""
    k = (3 - offset) % 4
    rest = b"".join(data[j::4] for j in range(4) if j != k)
    return _entropy(data[k::4], corrected=True) + _entropy(rest, corrected=True)


class _Encoder:
    """Chooses each v2 chunk's encoding by measured size, carrying the range
    coder's probabilities from chunk to chunk as the device does."""

    def __init__(self, allowed: Collection[str]) -> None:
        unknown = set(allowed) - set(ENCODINGS)
        if unknown:
            raise ValueError(f"unknown encodings {sorted(unknown)}; choose from {ENCODINGS}")
        self.allowed = set(allowed)
        self.model = codec.Model()

    def encode(self, offset: int, new: bytes, base: bytes | None, gap: int,
               keep: tuple[int, int] | None = None, pred: Pred | None = None,
               prediction: bytes = b"") -> Chunk2:  # fmt: skip
        """``prediction``: with ``pred``, the predicted bytes of its range
        (the residual over them replaces the new bytes or their difference)."""
        n = len(new)
        flags = (codec.KEEP if keep is not None else 0) | (codec.PRED if pred is not None else 0)

        def residual(stream: bytes) -> bytes:
            if pred is None:
                return stream
            span = slice(pred.start, pred.start + 4 * pred.count)
            out = bytearray(stream)
            out[span] = codec.sub_base(new[span], prediction)
            return bytes(out)

        plain = residual(new)
        best = (codec.RAW, plain)
        streams = [(0, plain)]
        if base is not None and "diff" in self.allowed:
            streams.append((codec.DIFF, residual(codec.sub_base(new, base))))
        if "runs" in self.allowed and not any(streams[-1][1]):
            # all zeros (an exact prediction, an unchanged DIFF range): RUNS with
            # no bytes decodes to zeros and leaves the range coder's model alone
            return Chunk2(offset, n, codec.RUNS | streams[-1][0] | flags, b"", gap, bytes(new),
                          keep, pred)  # fmt: skip
        if "runs" in self.allowed:
            for flag, stream in streams:
                body = codec.runs_encode(stream)
                if len(body) < len(best[1]):
                    best = (codec.RUNS | flag, body)
        model = None
        flag, stream = min(streams, key=lambda s: _entropy(s[1]))
        # bytes this close to noise never range-code below raw (the adaptive coder
        # does worse than the entropy of a sample): skip the trial. Trained int8
        # weights from scratch sit at 0.95-0.98 and still gain 2-3% (bench_size)
        noise = n >= 64 and _entropy(stream, corrected=True) > 0.99 * n
        if "rc" in self.allowed and not noise:
            # one trial encoding: the stream and lane split with the lower entropy
            split = _lane_entropy(stream, offset) if n >= 16 else float("inf")
            lanes = "lanes" in self.allowed and split < 0.98 * _entropy(stream, corrected=True)
            enc = codec.RC | flag | (codec.LANES if lanes else 0)
            trial = self.model.copy()
            body = codec.rc_encode(stream, offset, lanes, trial)
            if len(body) < len(best[1]):
                best, model = (enc, body), trial
        if model is not None:
            self.model = model
        return Chunk2(offset, n, best[0] | flags, bytes(best[1]), gap, bytes(new), keep, pred)


# A prediction the packer may use (pack's ``predictions``): ``count`` float32
# values at region offset ``target`` equal, or nearly, the ones at ``source``
# (earlier) divided by the float32 ``divisor`` (bits).
Prediction = tuple[int, int, int, int]  # (target, count, source, divisor)


@dataclass
class _Plan:
    """Chunk pieces and, per piece, its KEEP range and PRED."""

    pieces: list[tuple[int, int]]
    keep: dict[int, tuple[int, int]]
    pred: dict[int, tuple[Pred, int]]  # piece -> (Pred, source region offset)


def _plan(segments: list[tuple[int, int]], chunk_size: int,
          predictions: Sequence[Prediction]) -> _Plan:  # fmt: skip
    """Chunks for ``segments`` that let the device use the predictions: a
    prediction and its source in one chunk when the span fits, else the
    source kept (one kept range at a time) and the chunks until the target
    small enough to leave room for it (docs/FORMAT.md, "KEEP and PRED").
    Predictions that do not fit are dropped."""

    def touches(a: int, b: int) -> bool:
        return any(o < b and a < o + n for o, n in segments)

    # a vector the delta changes travels whole, also its unchanged bytes
    extra = [(a, 4 * c) for t, c, src, _ in predictions
             if touches(t, t + 4 * c) and touches(src, src + 4 * c) for a in (t, src)]  # fmt: skip
    if extra:
        merged: list[tuple[int, int]] = []
        for o, n in sorted(segments + extra):
            if merged and o <= merged[-1][0] + merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], o + n - last[0]))
            else:
                merged.append((o, n))
        segments = merged

    def within(a: int, b: int) -> bool:
        return any(o <= a and b <= o + n for o, n in segments)

    chosen: list[tuple[int, int, int, int, bool]] = []  # target, count, source, divisor, in chunk
    last_end = -1
    for t, cnt, src, div in sorted(predictions):
        n = 4 * cnt
        if cnt < 1 or src + n > t or not within(t, t + n) or not within(src, src + n):
            continue
        if t + n - src <= chunk_size and within(src, t + n):
            chosen.append((t, cnt, src, div, True))
        elif n < chunk_size and src >= last_end:
            chosen.append((t, cnt, src, div, False))
            last_end = t + n
    for _ in range(len(chosen) + 1):
        plan = _split(segments, chunk_size, chosen)
        bad = _plan_check(plan, chosen, chunk_size)
        if bad is None:
            return plan
        chosen.remove(bad)
    raise AssertionError("no chunk plan without predictions")  # _plan_check accepts none


def _split(segments: list[tuple[int, int]], chunk_size: int,
           chosen: list[tuple[int, int, int, int, bool]]) -> _Plan:  # fmt: skip
    atomic = []
    windows = []  # (first offset a chunk may start at, last, kept bytes)
    for t, cnt, src, _, in_chunk in chosen:
        if in_chunk:
            atomic.append((src, t + 4 * cnt))
        else:
            atomic += [(src, src + 4 * cnt), (t, t + 4 * cnt)]
            windows.append((src + 4 * cnt, t, 4 * cnt))
    pieces = []
    for off, length in segments:
        p, end = off, off + length
        while p < end:
            limit = chunk_size - max([k for a, b, k in windows if a <= p <= b], default=0)
            e = min(p + max(limit, 1), end)
            moved = True
            while moved:  # back to the start of any range it would cut (they may overlap)
                moved = False
                for a, b in atomic:
                    if p < a < e < b:
                        e, moved = a, True
            pieces.append((p, e - p))
            p = e
    plan = _Plan(pieces, {}, {})
    starts = [o for o, _ in pieces]
    for t, cnt, src, div, in_chunk in chosen:
        i = bisect.bisect_right(starts, t) - 1
        j = bisect.bisect_right(starts, src) - 1
        off = pieces[i][0]
        plan.pred[i] = (Pred(t - off, cnt, t - src, div), src)
        if not in_chunk and j != i:
            plan.keep[j] = (src - pieces[j][0], 4 * cnt)
    return plan


def _kept_after(off: int, keep: tuple[int, int] | None, pred: Pred | None,
                kept: tuple[int, int] | None) -> tuple[int, int] | None:  # fmt: skip
    """The range kept (region offset, length) once a chunk at ``off`` with
    these KEEP and PRED fields is applied, ``kept`` before it: a prediction
    from the kept range releases it, a KEEP replaces it."""
    if pred is not None and pred.back > pred.start:  # the source was before the chunk
        kept = None
    return (off + keep[0], keep[1]) if keep is not None else kept


def buffer_needed(chunks: Sequence[AnyChunk]) -> int:
    """The header's ``max_chunk``: the largest decoded chunk, or chunk and the
    bytes kept beside it (KEEP), whichever is larger: the chunk buffer a
    device needs for the payload."""
    need = 0
    kept: tuple[int, int] | None = None
    for c in chunks:
        need = max(need, c.length + (kept[1] if kept is not None else 0))
        if isinstance(c, Chunk2):
            kept = _kept_after(c.offset, c.keep, c.pred, kept)
    return need


def _plan_check(plan: _Plan, chosen: list[tuple[int, int, int, int, bool]], max_chunk: int
                ) -> tuple[int, int, int, int, bool] | None:  # fmt: skip
    """The first chosen prediction the device would refuse in this plan
    (the rules of _refs_problem, with the header's max_chunk at most
    ``max_chunk``), or None."""
    kept: tuple[int, int] | None = None
    by_target = {c[0]: c for c in chosen}
    for i, (off, length) in enumerate(plan.pieces):
        entry = plan.pred.get(i)
        if kept is not None and length > max_chunk - kept[1]:
            return next(c for c in chosen if c[2] == kept[0])
        if entry is not None:
            q, src = entry
            c = by_target[off + q.start]
            if q.start + 4 * q.count > length:
                return c
            if src < off and kept != (src, 4 * q.count):
                return c
        k = plan.keep.get(i)
        if k is not None and k[0] + k[1] > length:
            return next(c for c in chosen if c[2] == off + k[0])
        kept = _kept_after(off, k, entry[0] if entry is not None else None, kept)
    if kept is not None:  # a kept range nothing used: its prediction fell out
        return next(c for c in chosen if c[2] == kept[0])
    return None


def pack(
    new: bytes,
    *,
    fingerprint: bytes,
    version: int,
    chunk_size: int = 1024,
    base: bytes | None = None,
    base_version: int | None = None,
    segments: list[tuple[int, int]] | None = None,
    digest: str = "crc32",
    sign_key: bytes | None = None,
    format_version: int = FORMAT_VERSION,
    encodings: Collection[str] = ENCODINGS,
    merge_gap: int | None = None,
    predictions: Sequence[Prediction] = (),
) -> Payload:
    """Builds a payload that turns a device's weights into ``new``.

    Without ``base`` the payload rewrites the whole region. With ``base`` (the
    weights the device holds, at ``base_version``) it is a delta: only changed
    ranges are shipped, and the device refuses it unless its weights are
    exactly ``base``. ``segments`` overrides the ranges to ship.

    ``digest`` is "crc32" or "sha256" (the digest of the final weights).
    ``sign_key`` (a 32-byte Ed25519 private seed, :mod:`modelota.format.signing`) signs
    the header and implies "sha256": a CRC32 digest could be forged.

    ``format_version`` 2 (default) or 1 (devices built before v2).
    ``chunk_size`` is the largest chunk (decoded bytes): the device's chunk
    buffer must hold it. v2 only: ``encodings`` is what the packer may use
    besides raw: methods "runs" and "rc", flags "diff" (a delta's chunks may
    carry the difference with the base) and "lanes" (float32 sign-and-exponent
    bytes apart); each chunk gets the smallest of its candidates. ``merge_gap``:
    unchanged bytes between two changed ranges shipped rather than split
    around (default: 16 in v1; in v2 chosen from the data). ``predictions``
    (v2, encoding "pred"): float32 vectors the device can predict from earlier
    new bytes (:data:`Prediction`; the TFLite packer finds them); the packer
    uses those whose ranges it ships and that fit its chunks.
    """
    if digest not in ("crc32", "sha256"):
        raise ValueError(f"digest must be crc32 or sha256, got {digest!r}")
    if format_version not in FORMAT_VERSIONS:
        raise ValueError(f"format version must be 1 or 2, got {format_version}")
    if sign_key is not None:
        digest = "sha256"
    if len(fingerprint) != FINGERPRINT_LEN:
        raise ValueError(f"fingerprint must be {FINGERPRINT_LEN} bytes, got {len(fingerprint)}")
    if not 0 <= version <= U32_MAX:
        raise ValueError(f"version must fit in 32 bits, got {version}")
    if not 1 <= chunk_size <= U32_MAX:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    if len(new) > U32_MAX:
        raise ValueError("weight region larger than 4 GiB")
    v2 = format_version == FORMAT_V2
    flags = 0
    base_crc = 0
    if base is not None:
        if base_version is None:
            raise ValueError("a delta needs the base version")
        if len(base) != len(new):
            raise ValueError(
                f"base and new weights differ in size ({len(base)} vs {len(new)} bytes):"
                " not the same model"
            )
        flags |= FLAG_DELTA
        base_crc = crc32(base)
        if segments is None:
            gap = merge_gap
            if gap is None:
                diff_ok = "diff" in encodings and ("rc" in encodings or "runs" in encodings)
                gap = _v2_merge_gap(base, new) if v2 and diff_ok else _V2_GAP_PLAIN
            segments = diff_ranges(base, new, gap)
    elif segments is None:
        segments = [(0, len(new))] if new else []
    chunks: list[AnyChunk]
    if v2:
        enc = _Encoder(encodings)
        chunks = []
        end = 0
        plan = _plan(segments, chunk_size, predictions if "pred" in encodings else ())
        for i, (off, n) in enumerate(plan.pieces):
            piece = bytes(new[off : off + n])
            old = bytes(base[off : off + n]) if base is not None else None
            q, guess = None, b""
            if i in plan.pred:
                q, src = plan.pred[i]
                guess = codec.predict(new[src : src + 4 * q.count], q.divisor)
            chunks.append(enc.encode(off, piece, old, off - end, plan.keep.get(i), q, guess))
            end = off + n
    else:
        chunks = list(split_chunks(new, segments, chunk_size))
    if digest == "sha256":
        digest_type = DIGEST_SHA256
        digest_bytes = hashlib.sha256(new).digest()
    else:
        digest_type = DIGEST_CRC32
        digest_bytes = _U32.pack(crc32(new)) + bytes(DIGEST_LEN - 4)
    reserved = 0
    if sign_key is not None:
        flags |= FLAG_SIGNED
        reserved = _key_id_field(sign_key)
    header = Header(
        fingerprint=bytes(fingerprint),
        model_version=version,
        weights_size=len(new),
        data_size=sum(c.length for c in chunks),
        chunk_count=len(chunks),
        segment_count=0 if v2 else len(segments_of(chunks)),
        max_chunk=buffer_needed(chunks),
        digest=digest_bytes,
        digest_type=digest_type,
        flags=flags,
        base_version=base_version if base is not None and base_version is not None else 0,
        base_crc32=base_crc,
        reserved=reserved,
        format_version=format_version,
    )
    if header.length > V2_MAX_HEADER_LEN:
        raise ValueError(f"the v2 header would be {header.length} bytes (at most 96): use v1")
    signature = b"" if sign_key is None else _sign(sign_key, header.encode())
    return Payload(header, tuple(chunks), signature)


# A new v2 chunk costs about 12 bytes (head, CRC, range coder flush): merge
# changed ranges closer than what shipping the gap costs. When the changes are
# small differences (a fine-tune), unchanged bytes are zero differences and
# cost a fraction of a bit each; when they are unrelated values, a byte each.
_V2_GAP_DIFF = 256
_V2_GAP_PLAIN = 16


def _v2_merge_gap(base: bytes, new: bytes) -> int:
    import numpy as np

    a = np.frombuffer(base, dtype=np.uint8)
    b = np.frombuffer(new, dtype=np.uint8)
    changed = np.flatnonzero(a != b)
    if changed.size == 0:
        return _V2_GAP_PLAIN
    sample = changed[:: max(1, changed.size // 65536)]
    plain = _entropy(b[sample].tobytes())
    diff = _entropy((b[sample] - a[sample]).astype(np.uint8).tobytes())
    return _V2_GAP_DIFF if diff < plain else _V2_GAP_PLAIN


def _key_id_field(seed: bytes) -> int:
    """The ``reserved`` field of a payload signed with ``seed``: the key id."""
    from . import signing as keys  # cryptography is needed only to sign

    (value,) = _U32.unpack(keys.key_id(keys.public_from_private(seed)))
    return int(value)


def _sign(seed: bytes, message: bytes) -> bytes:
    from . import signing as keys

    return keys.sign(seed, message)


def final_weights(payload: Payload, region: bytes) -> bytes:
    """``region`` (the weights before the update) with every chunk applied."""
    final = bytearray(region)
    model = codec.Model()
    for c in payload.chunks:
        if isinstance(c, Chunk):
            final[c.offset : c.offset + c.length] = c.data
            continue
        final[c.offset : c.offset + c.length] = _decode_chunk(c, final, model)
    return bytes(final)


def _decode_chunk(c: Chunk2, region: bytes | bytearray, model: codec.Model) -> bytes:
    """The new bytes of v2 chunk ``c`` over ``region``: its base where the
    chunk goes, the new bytes of every earlier chunk before it."""
    out = codec.decode(c.enc, c.body, c.length, c.offset, model)
    q = c.pred
    if c.enc & codec.DIFF:
        base = bytearray(region[c.offset : c.offset + c.length])
        if q is not None:  # a PRED range is a residual over its prediction, not the base
            base[q.start : q.start + 4 * q.count] = bytes(4 * q.count)
        out = bytearray(codec.apply_diff(out, base))
    if q is not None:
        src = c.offset + q.start - q.back
        n = 4 * q.count
        if src >= c.offset:  # earlier in this chunk
            source = bytes(out[src - c.offset : src - c.offset + n])
        else:  # an earlier chunk's (kept) new bytes
            source = bytes(region[src : src + n])
        span = slice(q.start, q.start + n)
        out[span] = codec.apply_diff(out[span], codec.predict(source, q.divisor))
    return bytes(out)


def seal(
    payload: Payload, region: bytes, *, digest: str = "sha256", sign_key: bytes | None = None
) -> Payload:
    """The same update with another digest and/or a signature.

    ``region`` is the weight region the payload applies to (the device's
    weights before the update; for a full payload covering every byte, any
    bytes of the right size): the new digest is computed over it with the
    chunks laid over. Used for packers that build CRC32 payloads themselves.
    """
    if digest not in ("crc32", "sha256"):
        raise ValueError(f"digest must be crc32 or sha256, got {digest!r}")
    h = payload.header
    if len(region) != h.weights_size:
        raise ValueError(f"region is {len(region)} bytes, the payload's {h.weights_size}")
    final = final_weights(payload, region)
    if sign_key is not None:
        digest = "sha256"
    digest_type = DIGEST_SHA256 if digest == "sha256" else DIGEST_CRC32
    flags = h.flags & ~FLAG_SIGNED
    reserved = 0
    if sign_key is not None:
        flags |= FLAG_SIGNED
        reserved = _key_id_field(sign_key)
    header = Header(
        **{
            **h.__dict__,
            "digest_type": digest_type,
            "digest": final_digest(digest_type, final),
            "flags": flags,
            "reserved": reserved,
        }
    )
    signature = b"" if sign_key is None else _sign(sign_key, header.encode())
    return Payload(header, payload.chunks, signature)


def final_digest(digest_type: int, weights: bytes) -> bytes:
    """The 32-byte ``digest`` field for final weights ``weights``."""
    if digest_type == DIGEST_SHA256:
        return hashlib.sha256(weights).digest()
    return _U32.pack(crc32(weights)) + bytes(DIGEST_LEN - 4)


# ---------------------------------------------------------------- reading


@dataclass
class Device:
    """What a device knows when a payload arrives (mirror of modelota_config)."""

    fingerprint: bytes
    current_version: int
    weights: bytearray
    buffer_len: int = 1024
    backup: bytes | None = None
    backup_version: int | None = None
    # a device with a public key refuses unsigned and badly signed payloads
    public_key: bytes | None = None
    # anti-rollback floor (modelota_config.min_version, the Store's min_version)
    min_version: int = 0


@dataclass
class Walk:
    """The result of walking a payload: how far it got and what it found."""

    status: Status
    message: str = ""
    header: Header | None = None
    header_crc_stored: int = 0
    chunks: list[AnyChunk] = field(default_factory=list)
    consumed: int = 0
    verified: bool = False
    signature: bytes = b""
    signature_checked: bool = False  # a key was given and the signature is valid


class _Fail(Exception):
    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _layout_problem(h: Header) -> str | None:
    empty = h.chunk_count == 0
    v1 = h.format_version == FORMAT_V1
    if (
        empty != (h.data_size == 0)
        or (v1 and empty != (h.segment_count == 0))
        or empty != (h.max_chunk == 0)
        or h.chunk_count > h.data_size
        or (v1 and h.segment_count > h.chunk_count)
        or (not empty and (h.data_size - 1) // h.max_chunk >= h.chunk_count)
    ):
        segs = f", {h.segment_count} segments" if v1 else ""
        return (
            f"counts disagree: {h.chunk_count} chunks{segs},"
            f" {h.data_size} bytes, max chunk {h.max_chunk}"
        )
    return None


def _header_problem(h: Header, v1: bool) -> str | None:
    """What makes a CRC-valid header ``Unsupported`` (device order)."""
    if h.digest_type not in DIGEST_NAMES:
        return f"digest type {h.digest_type} not supported"
    if h.flags & ~KNOWN_FLAGS:
        return f"unknown flags 0x{h.flags:04x}"
    if h.is_signed and h.digest_type != DIGEST_SHA256:
        return "a signed payload needs the SHA-256 digest"
    if v1 and h.reserved != 0 and not h.is_signed:
        return "reserved field is not zero"
    if v1 and not h.is_delta and (h.base_version or h.base_crc32):
        return "base fields set on a full (non-delta) payload"
    if v1 and h.digest_type == DIGEST_CRC32 and any(h.digest[4:]):
        return "CRC32 digest has non-zero padding"
    return None


def _check_header(raw: bytes, dev: Device | None, key: bytes | None) -> tuple[Header, int]:
    """Header checks in the device's order (firmware_lib check_header), up to
    the layout; the delta base is checked after the signature block."""
    v1 = raw[4] == FORMAT_V1
    stored = int(_U32.unpack_from(raw, len(raw) - 4)[0])
    computed = crc32(raw[:-4])
    if computed != stored:
        raise _Fail(
            Status.BadHeaderCrc, f"header CRC stored 0x{stored:08x}, computed 0x{computed:08x}"
        )
    if v1:
        h, _ = Header.decode(raw)
        problem = _header_problem(h, True)
    else:
        # digest type and flags sit at fixed offsets: refused before the fields are read
        probe = Header(raw[8:24], 0, 0, 0, 0, 0, 0, bytes(32), raw[6], raw[7], format_version=2)
        problem = _header_problem(probe, False)
        parsed = Header.decode_v2(raw) if problem is None else None
        if problem is None and parsed is None:
            problem = "header fields do not fill the header exactly (bad varint or length)"
        h = parsed or probe
    if problem:
        raise _Fail(Status.Unsupported, problem)
    if key is not None and not h.is_signed:
        raise _Fail(Status.Unsigned, "payload is not signed; a signature is required")
    if dev is not None:
        if h.fingerprint != dev.fingerprint:
            raise _Fail(
                Status.WrongModel,
                f"payload is for model {h.fingerprint.hex()}, device runs {dev.fingerprint.hex()}",
            )
        if h.weights_size != len(dev.weights):
            raise _Fail(
                Status.WrongSize,
                f"payload has {h.weights_size} weight bytes, device has {len(dev.weights)}",
            )
        if h.model_version < dev.current_version:
            raise _Fail(
                Status.Rollback,
                f"version {h.model_version} is older than current {dev.current_version}",
            )
        if h.model_version < dev.min_version:
            raise _Fail(
                Status.Rollback,
                f"version {h.model_version} is below the device's minimum {dev.min_version}",
            )
        if h.model_version == dev.current_version:
            raise _Fail(Status.AlreadyCurrent, f"device already runs version {h.model_version}")
    size_limit = len(dev.weights) if dev is not None else h.weights_size
    if h.data_size > size_limit or (dev is not None and h.max_chunk > dev.buffer_len):
        raise _Fail(
            Status.TooLarge,
            f"{h.data_size} data bytes in chunks of up to {h.max_chunk} exceed the device",
        )
    problem = _layout_problem(h)
    if problem:
        raise _Fail(Status.LayoutMismatch, problem)
    return h, stored


def _check_base(h: Header, dev: Device) -> None:
    if h.base_version != dev.current_version:
        raise _Fail(
            Status.WrongBase,
            f"delta is for version {h.base_version}, device runs {dev.current_version}",
        )
    if crc32(bytes(dev.weights)) != h.base_crc32:
        raise _Fail(Status.WrongBase, "device weights differ from the delta's base")


def _check_signature(raw_header: bytes, h: Header, signature: bytes, key: bytes) -> None:
    from . import signing as keys

    if not keys.verify(key, raw_header, signature):
        other = h.key_id != keys.key_id(key)
        why = (
            f"signed by key id {h.key_id.hex()}, not by {keys.key_id(key).hex()}"
            if other
            else "signature does not match the header"
        )
        raise _Fail(Status.BadSignature, why)


def _header_len(stream: bytes, n: int, w: Walk) -> int:
    """Bytes of the header, checking magic, version and (v2) the length byte
    as the device does, one field at a time."""
    if n >= 4 and stream[:4] != MAGIC:
        w.consumed = 4
        raise _Fail(Status.BadMagic, f"magic is {stream[:4]!r}, expected {MAGIC!r}")
    if n >= 5 and stream[4] not in FORMAT_VERSIONS:
        w.consumed = 5
        raise _Fail(Status.UnsupportedVersion, f"format version {stream[4]} (this reads 1 and 2)")
    if n >= 6 and stream[4] == FORMAT_V2:
        length = stream[5]
        if not V2_MIN_HEADER_LEN <= length <= V2_MAX_HEADER_LEN:
            w.consumed = 6
            raise _Fail(
                Status.BadHeaderCrc,
                f"header length {length} outside {V2_MIN_HEADER_LEN}..{V2_MAX_HEADER_LEN}",
            )
        want = length
    else:
        want = HEADER_LEN if n >= 5 else 6
    if n < want:
        w.consumed = n
        raise _Fail(Status.Truncated, f"stream ends inside the header ({n} bytes)")
    return want


def _walk(stream: bytes, dev: Device | None, public_key: bytes | None = None) -> Walk:
    """Walks ``stream`` in the order the device consumes it.

    With a device, chunks are written into ``dev.weights`` as they pass (the
    caller restores on failure); without one, only self-contained checks run
    (and the signature, when ``public_key`` is given).
    """
    key = dev.public_key if dev is not None else public_key
    w = Walk(Status.Ok)
    n = len(stream)
    try:
        hlen = _header_len(stream, n, w)
        w.consumed = hlen
        h, w.header_crc_stored = _check_header(stream[:hlen], dev, key)
        w.header = h
        pos = hlen
        if h.is_signed:
            if n - pos < SIGNATURE_LEN:
                w.consumed = n
                raise _Fail(Status.Truncated, "stream ends inside the signature block")
            w.signature = stream[pos : pos + SIGNATURE_LEN]
            pos += SIGNATURE_LEN
            w.consumed = pos
            if key is not None:
                _check_signature(stream[:hlen], h, w.signature, key)
                w.signature_checked = True
        if dev is not None and h.is_delta:
            _check_base(h, dev)
        walk_chunks = _walk_chunks_v2 if h.format_version == FORMAT_V2 else _walk_chunks_v1
        pos = walk_chunks(stream, pos, h, dev, w)
        if dev is not None:
            got = final_digest(h.digest_type, bytes(dev.weights))
            if got != h.digest:
                name = DIGEST_NAMES[h.digest_type]
                raise _Fail(
                    Status.DigestMismatch,
                    f"final weights {name} {got.hex()}, header says {h.digest.hex()}",
                )
        w.verified = True
        if pos < n:
            w.consumed = pos + 1
            raise _Fail(Status.TrailingData, f"{n - pos} bytes after the last chunk")
    except _Fail as f:
        w.status = f.status
        w.message = f.message
    return w


def _walk_chunks_v1(stream: bytes, pos: int, h: Header, dev: Device | None, w: Walk) -> int:
    n = len(stream)
    write_end = 0
    data_seen = 0
    limit = len(dev.weights) if dev is not None else h.weights_size
    chunks: list[Chunk] = []
    for seq in range(h.chunk_count):
        if n - pos < CHUNK_HEAD_LEN:
            w.consumed = n
            raise _Fail(Status.Truncated, f"stream ends inside chunk {seq}")
        got_seq, off, length = _CHUNK_HEAD.unpack_from(stream, pos)
        w.consumed = pos + CHUNK_HEAD_LEN
        if got_seq != seq:
            raise _Fail(Status.BadSequence, f"chunk {seq} carries sequence number {got_seq}")
        if length == 0 or length > h.max_chunk:
            raise _Fail(Status.BadChunk, f"chunk {seq} length {length} (max {h.max_chunk})")
        if off < write_end or off > limit or length > limit - off:
            raise _Fail(
                Status.OutOfBounds,
                f"chunk {seq} [{off}, {off + length}) overlaps earlier data or leaves"
                f" the {limit}-byte region",
            )
        if length > h.data_size - data_seen:
            raise _Fail(Status.LayoutMismatch, f"chunk {seq} exceeds the announced data size")
        end = pos + CHUNK_HEAD_LEN + length + CHUNK_TAIL_LEN
        if end > n:
            w.consumed = n
            raise _Fail(Status.Truncated, f"stream ends inside chunk {seq}")
        w.consumed = end
        data = stream[pos + CHUNK_HEAD_LEN : end - CHUNK_TAIL_LEN]
        chunk = Chunk(seq, off, data)
        (stored,) = _U32.unpack_from(stream, end - CHUNK_TAIL_LEN)
        computed = chunk.crc(w.header_crc_stored)
        if stored != computed:
            raise _Fail(
                Status.ChunkCrc,
                f"chunk {seq} CRC stored 0x{stored:08x}, computed 0x{computed:08x}",
            )
        if dev is not None:
            dev.weights[off : off + length] = data
        w.chunks.append(chunk)
        chunks.append(chunk)
        write_end = off + length
        data_seen += length
        pos = end
    if data_seen != h.data_size or len(segments_of(chunks)) != h.segment_count:
        raise _Fail(
            Status.LayoutMismatch,
            f"chunks carry {data_seen} bytes in {len(segments_of(chunks))} segments,"
            f" header says {h.data_size} in {h.segment_count}",
        )
    return pos


@dataclass
class _Head:
    enc: int
    gap: int
    length: int
    size: int
    end: int
    keep: tuple[int, int] | None
    pred: Pred | None


def _chunk_head_v2(stream: bytes, pos: int, seq: int, h: Header, w: Walk) -> _Head:
    """Reads a v2 chunk head at ``pos`` byte by byte, refusing as the device
    does at the byte that shows the problem."""
    n = len(stream)
    if pos >= n:
        w.consumed = n
        raise _Fail(Status.Truncated, f"stream ends inside chunk {seq}")
    enc = stream[pos]
    w.consumed = pos + 1
    method = enc & codec.METHOD_MASK
    if (
        enc & ~codec.KNOWN_ENC
        or method not in codec.METHODS
        or (enc & codec.DIFF and not h.is_delta)
        or (enc & codec.LANES and method != codec.RC)
    ):
        raise _Fail(Status.BadChunk, f"chunk {seq} has encoding 0x{enc:02x}")
    count = (2 if method == codec.RAW else 3) + (2 if enc & codec.KEEP else 0)
    count += 3 if enc & codec.PRED else 0
    values = []
    p = pos + 1
    for _ in range(count):
        value, nxt, ok = codec.read_varint(stream, p)
        if not ok:
            w.consumed = nxt
            raise _Fail(Status.BadChunk, f"chunk {seq} head has a malformed varint")
        if value is None:
            w.consumed = n
            raise _Fail(Status.Truncated, f"stream ends inside chunk {seq}")
        values.append(value)
        p = nxt
    pred = None
    if enc & codec.PRED:
        if p + 4 > n:
            w.consumed = n
            raise _Fail(Status.Truncated, f"stream ends inside chunk {seq}")
        (divisor,) = _U32.unpack_from(stream, p)
        p += 4
        pred = Pred(*values[-3:], divisor)
    w.consumed = p
    gap, length = values[0], values[1]
    size = values[2] if method != codec.RAW else length
    k = 2 if method == codec.RAW else 3
    keep = (values[k], values[k + 1]) if enc & codec.KEEP else None
    return _Head(enc, gap, length, size, p, keep, pred)


def _refs_problem(hd: _Head, off: int, max_chunk: int, kept: tuple[int, int] | None) -> str | None:
    """What is wrong with a head's KEEP and PRED fields and the kept range
    ``kept`` (region offset, length) still live, in the device's order."""
    if hd.keep is not None:
        ks, kl = hd.keep
        if kl == 0 or ks > hd.length or kl > hd.length - ks:
            return f"kept range [{ks}, {ks + kl}) outside the {hd.length}-byte chunk"
    if kept is not None and hd.length > max_chunk - kept[1]:
        return f"length {hd.length} with {kept[1]} bytes kept exceeds max_chunk {max_chunk}"
    q = hd.pred
    if q is not None:
        if q.count == 0 or q.start > hd.length or q.count > (hd.length - q.start) // 4:
            return f"{q.count} predicted values at {q.start} outside the {hd.length}-byte chunk"
        target = off + q.start
        if q.back < 4 * q.count or q.back > target:
            return f"prediction source {q.back} bytes back overlaps or precedes the region"
        src = target - q.back
        in_kept = kept is not None and kept[0] <= src and src + 4 * q.count <= kept[0] + kept[1]
        if src < off and not in_kept:
            return f"prediction source at {src} is neither in this chunk nor kept"
    return None


def _walk_chunks_v2(stream: bytes, pos: int, h: Header, dev: Device | None, w: Walk) -> int:
    n = len(stream)
    write_end = 0
    data_seen = 0
    limit = len(dev.weights) if dev is not None else h.weights_size
    seed = w.header_crc_stored
    model = codec.Model()
    kept: tuple[int, int] | None = None  # (region offset, length) of the live KEEP range
    for seq in range(h.chunk_count):
        hd = _chunk_head_v2(stream, pos, seq, h, w)
        enc, gap, length, size, p = hd.enc, hd.gap, hd.length, hd.size, hd.end
        if length == 0 or length > h.max_chunk:
            raise _Fail(Status.BadChunk, f"chunk {seq} length {length} (max {h.max_chunk})")
        if enc & codec.METHOD_MASK != codec.RAW and size >= length:
            raise _Fail(Status.BadChunk, f"chunk {seq}: {size} encoded bytes for {length}")
        if gap > limit - write_end or length > limit - write_end - gap:
            raise _Fail(
                Status.OutOfBounds,
                f"chunk {seq} [{write_end + gap}, {write_end + gap + length}) leaves"
                f" the {limit}-byte region",
            )
        if length > h.data_size - data_seen:
            raise _Fail(Status.LayoutMismatch, f"chunk {seq} exceeds the announced data size")
        off = write_end + gap
        problem = _refs_problem(hd, off, h.max_chunk, kept)
        if problem is not None:
            raise _Fail(Status.BadChunk, f"chunk {seq}: {problem}")
        end = p + size + CHUNK_TAIL_LEN
        if end > n:
            w.consumed = n
            raise _Fail(Status.Truncated, f"stream ends inside chunk {seq}")
        w.consumed = end
        chunk = Chunk2(off, length, enc, stream[p : p + size], gap, keep=hd.keep, pred=hd.pred)
        (stored,) = _U32.unpack_from(stream, end - CHUNK_TAIL_LEN)
        computed = crc32(stream[pos : p + size], seed)
        if stored != computed:
            raise _Fail(
                Status.ChunkCrc,
                f"chunk {seq} CRC stored 0x{stored:08x}, computed 0x{computed:08x}",
            )
        if dev is not None:
            data = _decode_chunk(chunk, dev.weights, model)
            dev.weights[off : off + length] = data
            chunk = Chunk2(off, length, enc, chunk.body, gap, data, hd.keep, hd.pred)
        w.chunks.append(chunk)
        kept = _kept_after(off, hd.keep, hd.pred, kept)
        seed = stored
        write_end = off + length
        data_seen += length
        pos = end
    if data_seen != h.data_size:
        raise _Fail(
            Status.LayoutMismatch,
            f"chunks carry {data_seen} bytes, header says {h.data_size}",
        )
    return pos


def peek_header(data: bytes) -> Header | None:
    """The header at the start of ``data`` (v1 or v2), read without any check,
    or None when the bytes are not one (too short, not MOTA, unknown version,
    malformed v2 fields). For tools that route or pre-check a payload."""
    if len(data) < 6 or data[:4] != MAGIC or data[4] not in FORMAT_VERSIONS:
        return None
    if data[4] == FORMAT_V1:
        return Header.decode(data[:HEADER_LEN])[0] if len(data) >= HEADER_LEN else None
    n = data[5]
    if not V2_MIN_HEADER_LEN <= n <= len(data):
        return None
    return Header.decode_v2(data[:n])


def parse(data: bytes, public_key: bytes | None = None) -> Payload:
    """Reads and checks a payload on its own; raises ModelOTAError on any defect.

    With ``public_key`` (32 bytes) the payload must be signed by that key
    (``Unsigned`` / ``BadSignature`` otherwise); without one a signature is
    read but not checked. v2 chunks are checked (framing, CRC) but not
    decoded: their ``data`` stays None."""
    if public_key is not None and len(public_key) != PUBLIC_KEY_LEN:
        raise ValueError(f"public key must be {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")
    w = _walk(data, None, public_key)
    if w.status != Status.Ok:
        raise ModelOTAError(w.status, w.message)
    assert w.header is not None
    return Payload(w.header, tuple(w.chunks), w.signature)


def apply_reference(stream: bytes, dev: Device) -> Walk:
    """Applies ``stream`` to ``dev.weights`` like the C++ Updater fed the whole
    stream and then told it ended. On failure the weights are put back; on
    success ``dev.current_version`` becomes the payload's version, as the
    device's does (a second apply of the same payload is ``AlreadyCurrent``)."""
    before = bytes(dev.weights)
    w = _walk(stream, dev)
    if w.status == Status.Ok and not w.verified:
        w.status = Status.Truncated
    if w.status != Status.Ok:
        dev.weights[:] = before
    elif w.header is not None:
        dev.current_version = w.header.model_version
    return w
