"""Wire format v1: the Python mirror of docs/FORMAT.md and firmware_lib/modelota/format.h.

Three jobs live here, all following the specification field for field:

* :func:`pack` builds a payload (full or delta) from weight bytes;
* :func:`parse` reads a payload without a device and checks everything that can
  be checked without one (used by ``modelota inspect``);
* :func:`apply_reference` applies a payload to a weight buffer exactly as the
  C++ Updater does, returning the same status for every input. Tests hold the
  two implementations against each other.

Signed payloads (``FLAG_SIGNED``) carry a 64-byte Ed25519 signature of the 96
header bytes right after the header; they need the SHA-256 digest type. The
signing and checking itself lives in :mod:`modelota.format.signing`.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field

from ..status import ModelOTAError, Status
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
    FORMAT_VERSION,
    HEADER_CRC_OFFSET,
    HEADER_LEN,
    KNOWN_FLAGS,
    MAGIC,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    U32_MAX,
)

# magic, format_version, digest_type, flags, fingerprint, model_version,
# base_version, base_crc32, weights_size, data_size, chunk_count,
# segment_count, max_chunk, digest, reserved  (header_crc follows)
_HEADER = struct.Struct("<4sBBH16sIIIIIIII32sI")
_CHUNK_HEAD = struct.Struct("<III")
_U32 = struct.Struct("<I")
assert _HEADER.size == HEADER_CRC_OFFSET
assert HEADER_CRC_OFFSET + 4 == HEADER_LEN


def crc32(data: bytes, start: int = 0) -> int:
    """CRC-32/IEEE, the same function as the device's ``modelota_crc32``."""
    return zlib.crc32(data, start) & U32_MAX


@dataclass(frozen=True)
class Header:
    """The fixed 96-byte header (see docs/FORMAT.md, "Header")."""

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
    format_version: int = FORMAT_VERSION
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
        """The 92 bytes covered by the header CRC."""
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

    @property
    def crc(self) -> int:
        return crc32(self.body())

    def encode(self) -> bytes:
        body = self.body()
        return body + _U32.pack(crc32(body))

    @classmethod
    def decode(cls, raw: bytes) -> tuple[Header, int]:
        """Splits 96 bytes into fields and the stored CRC; validates nothing."""
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

    def digest_crc32(self) -> int:
        return int(_U32.unpack(self.digest[:4])[0])


@dataclass(frozen=True)
class Chunk:
    seq: int
    offset: int
    data: bytes

    def head(self) -> bytes:
        return _CHUNK_HEAD.pack(self.seq, self.offset, len(self.data))

    def crc(self, header_crc: int) -> int:
        return crc32(self.data, crc32(self.head(), header_crc))

    def encode(self, header_crc: int) -> bytes:
        return self.head() + self.data + _U32.pack(self.crc(header_crc))


@dataclass(frozen=True)
class Payload:
    header: Header
    chunks: tuple[Chunk, ...]
    signature: bytes = b""  # SIGNATURE_LEN bytes when the header has FLAG_SIGNED

    def encode(self) -> bytes:
        hcrc = self.header.crc
        return self.header.encode() + self.signature + b"".join(c.encode(hcrc) for c in self.chunks)

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
        return HEADER_LEN + len(self.signature)

    def chunk_spans(self) -> list[tuple[int, int]]:
        """(start, end) byte positions of each chunk inside the encoded payload."""
        spans = []
        pos = self.chunks_start
        for c in self.chunks:
            end = pos + CHUNK_OVERHEAD + len(c.data)
            spans.append((pos, end))
            pos = end
        return spans

    @property
    def segments(self) -> list[tuple[int, int]]:
        return segments_of(self.chunks)


def segments_of(chunks: tuple[Chunk, ...] | list[Chunk]) -> list[tuple[int, int]]:
    """Maximal runs of contiguous chunks as (offset, length)."""
    segs: list[tuple[int, int]] = []
    for c in chunks:
        if segs and segs[-1][0] + segs[-1][1] == c.offset:
            segs[-1] = (segs[-1][0], segs[-1][1] + len(c.data))
        else:
            segs.append((c.offset, len(c.data)))
    return segs


# ---------------------------------------------------------------- packing


def diff_ranges(old: bytes, new: bytes, merge_gap: int = CHUNK_OVERHEAD) -> list[tuple[int, int]]:
    """Changed byte ranges of ``new`` against ``old`` (same length) as (offset, length).

    Two changed runs separated by at most ``merge_gap`` equal bytes are merged:
    starting a new chunk costs CHUNK_OVERHEAD bytes, so shipping a short gap is
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
) -> Payload:
    """Builds a payload that turns a device's weights into ``new``.

    Without ``base`` the payload rewrites the whole region. With ``base`` (the
    weights the device holds, at ``base_version``) it is a delta: only changed
    ranges are shipped, and the device refuses it unless its weights are
    exactly ``base``. ``segments`` overrides the ranges to ship.

    ``digest`` is "crc32" or "sha256" (the digest of the final weights).
    ``sign_key`` (a 32-byte Ed25519 private seed, :mod:`modelota.format.signing`) signs
    the header and implies "sha256": a CRC32 digest could be forged.
    """
    if digest not in ("crc32", "sha256"):
        raise ValueError(f"digest must be crc32 or sha256, got {digest!r}")
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
            segments = diff_ranges(base, new)
    elif segments is None:
        segments = [(0, len(new))] if new else []
    chunks = split_chunks(new, segments, chunk_size)
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
        data_size=sum(len(c.data) for c in chunks),
        chunk_count=len(chunks),
        segment_count=len(segments_of(chunks)),
        max_chunk=max((len(c.data) for c in chunks), default=0),
        digest=digest_bytes,
        digest_type=digest_type,
        flags=flags,
        base_version=base_version if base is not None and base_version is not None else 0,
        base_crc32=base_crc,
        reserved=reserved,
    )
    signature = b"" if sign_key is None else _sign(sign_key, header.encode())
    return Payload(header, tuple(chunks), signature)


def _key_id_field(seed: bytes) -> int:
    """The ``reserved`` field of a payload signed with ``seed``: the key id."""
    from . import signing as keys  # cryptography is needed only to sign

    (value,) = _U32.unpack(keys.key_id(keys.public_from_private(seed)))
    return int(value)


def _sign(seed: bytes, message: bytes) -> bytes:
    from . import signing as keys

    return keys.sign(seed, message)


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
    final = bytearray(region)
    for c in payload.chunks:
        final[c.offset : c.offset + len(c.data)] = c.data
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
            "digest": final_digest(digest_type, bytes(final)),
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
    chunks: list[Chunk] = field(default_factory=list)
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
    if (
        empty != (h.data_size == 0)
        or empty != (h.segment_count == 0)
        or empty != (h.max_chunk == 0)
        or h.chunk_count > h.data_size
        or h.segment_count > h.chunk_count
        or (not empty and (h.data_size - 1) // h.max_chunk >= h.chunk_count)
    ):
        return (
            f"counts disagree: {h.chunk_count} chunks, {h.segment_count} segments,"
            f" {h.data_size} bytes, max chunk {h.max_chunk}"
        )
    return None


def _check_header(raw: bytes, dev: Device | None, key: bytes | None) -> tuple[Header, int]:
    """Header checks in the device's order (firmware_lib check_header), up to
    the layout; the delta base is checked after the signature block."""
    h, stored = Header.decode(raw)
    computed = crc32(raw[:HEADER_CRC_OFFSET])
    if computed != stored:
        raise _Fail(
            Status.BadHeaderCrc, f"header CRC stored 0x{stored:08x}, computed 0x{computed:08x}"
        )
    if h.digest_type not in DIGEST_NAMES:
        raise _Fail(Status.Unsupported, f"digest type {h.digest_type} not supported")
    if h.flags & ~KNOWN_FLAGS:
        raise _Fail(Status.Unsupported, f"unknown flags 0x{h.flags:04x}")
    if h.is_signed and h.digest_type != DIGEST_SHA256:
        raise _Fail(Status.Unsupported, "a signed payload needs the SHA-256 digest")
    if h.reserved != 0 and not h.is_signed:
        raise _Fail(Status.Unsupported, "reserved field is not zero")
    if not h.is_delta and (h.base_version or h.base_crc32):
        raise _Fail(Status.Unsupported, "base fields set on a full (non-delta) payload")
    if h.digest_type == DIGEST_CRC32 and any(h.digest[4:]):
        raise _Fail(Status.Unsupported, "CRC32 digest has non-zero padding")
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
        if n >= 4 and stream[:4] != MAGIC:
            w.consumed = 4
            raise _Fail(Status.BadMagic, f"magic is {stream[:4]!r}, expected {MAGIC!r}")
        if n >= 5 and stream[4] != FORMAT_VERSION:
            w.consumed = 5
            raise _Fail(Status.UnsupportedVersion, f"format version {stream[4]} (this reads 1)")
        if n < HEADER_LEN:
            w.consumed = n
            raise _Fail(Status.Truncated, f"stream ends inside the header ({n} bytes)")
        w.consumed = HEADER_LEN
        h, w.header_crc_stored = _check_header(stream[:HEADER_LEN], dev, key)
        w.header = h
        pos = HEADER_LEN
        if h.is_signed:
            if n - pos < SIGNATURE_LEN:
                w.consumed = n
                raise _Fail(Status.Truncated, "stream ends inside the signature block")
            w.signature = stream[pos : pos + SIGNATURE_LEN]
            pos += SIGNATURE_LEN
            w.consumed = pos
            if key is not None:
                _check_signature(stream[:HEADER_LEN], h, w.signature, key)
                w.signature_checked = True
        if dev is not None and h.is_delta:
            _check_base(h, dev)
        write_end = 0
        data_seen = 0
        limit = len(dev.weights) if dev is not None else h.weights_size
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
            write_end = off + length
            data_seen += length
            pos = end
        if data_seen != h.data_size or len(segments_of(w.chunks)) != h.segment_count:
            raise _Fail(
                Status.LayoutMismatch,
                f"chunks carry {data_seen} bytes in {len(segments_of(w.chunks))} segments,"
                f" header says {h.data_size} in {h.segment_count}",
            )
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


def parse(data: bytes, public_key: bytes | None = None) -> Payload:
    """Reads and checks a payload on its own; raises ModelOTAError on any defect.

    With ``public_key`` (32 bytes) the payload must be signed by that key
    (``Unsigned`` / ``BadSignature`` otherwise); without one a signature is
    read but not checked."""
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
