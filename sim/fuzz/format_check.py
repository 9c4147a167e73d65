"""The property sim/fuzz/fuzz_format.py fuzzes (and tests/test_fuzz.py checks
with hypothesis when atheris is missing).

Feeds arbitrary bytes to :func:`modelota.format.payload.parse` (with and without a
public key) and :func:`modelota.format.payload.apply_reference` (a device with and
without a key, with an anti-rollback floor) and checks what the
documentation promises:

* ``parse`` raises nothing but :class:`ModelOTAError` (with a status code);
* ``apply_reference`` never raises; it returns a status; on a failure the
  weights are byte-identical to before; on success the weights carry the
  header's digest, the version went up, and a keyed device accepted only a
  payload whose signature verifies.

Inputs are those of fuzz_updater.cpp (4 control bytes, then a payload:
byte 0 bit 2 picks the keyed device, byte 2 the floor, byte 3 bit 6 the
CRCs recomputed (:func:`fix_crcs`), as there). With
byte 3 bit 7 the bytes are chunks for the decoder alone, as there: each
decodes (:mod:`modelota.format.codec`) to exactly its length, never raising;
a PRED chunk's bytes are float32 pairs for ``codec.fdiv``, checked against
numpy's float32 division as fuzz_updater.cpp checks ``modelota_fdiv``.
"""

from __future__ import annotations

import struct

import numpy as np
from make_corpus import FP, FUZZ_PUBLIC_KEY, REGION, factory

from modelota.format import codec
from modelota.format import signing as keys
from modelota.format.constants import (
    FLAG_DELTA,
    FLAG_SIGNED,
    FORMAT_V2,
    V2_MAX_HEADER_LEN,
    V2_MIN_HEADER_LEN,
)
from modelota.format.payload import (
    SIGNATURE_LEN,
    Device,
    apply_reference,
    crc32,
    final_digest,
    parse,
)
from modelota.status import ModelOTAError, Status

FACTORY = factory()


def check(data: bytes) -> None:
    if len(data) < 4:
        return
    control, stream = data[:4], data[4:]
    if control[3] & 0x80:
        check_decoder(stream)
        return
    if control[3] & 0x40:
        stream = fix_crcs(stream)
    keyed = bool(control[0] & 4)
    key = FUZZ_PUBLIC_KEY if keyed else None
    for k in (None, FUZZ_PUBLIC_KEY):
        try:
            parse(stream, public_key=k)
        except ModelOTAError as e:
            assert isinstance(e.status, Status) and e.status != Status.Ok
    floor = control[2] % 4
    dev = Device(FP, 1, bytearray(FACTORY), 256, public_key=key, min_version=floor)
    walk = apply_reference(stream, dev)
    assert isinstance(walk.status, Status)
    if walk.status != Status.Ok:
        assert bytes(dev.weights) == FACTORY, "a refused payload changed the weights"
        return
    h = walk.header
    assert h is not None
    assert len(dev.weights) == REGION and h.model_version > 1 and h.model_version >= floor
    assert final_digest(h.digest_type, bytes(dev.weights)) == h.digest
    if keyed:
        n = h.length
        sig = stream[n : n + SIGNATURE_LEN]
        assert h.is_signed and keys.verify(FUZZ_PUBLIC_KEY, stream[:n], sig)


def fix_crcs(stream: bytes) -> bytes:
    """fuzz_updater.cpp's fix_crcs: a v2 payload with its header CRC (when
    unsigned) and every chunk CRC as they should be, up to the first chunk
    head the device refuses or the bytes do not hold."""
    p = bytearray(stream)
    n = len(p)
    if n < 6 or p[4] != FORMAT_V2 or not V2_MIN_HEADER_LEN <= p[5] <= min(V2_MAX_HEADER_LEN, n):
        return stream
    hlen, flags = p[5], p[7]
    if not flags & FLAG_SIGNED:
        p[hlen - 4 : hlen] = crc32(bytes(p[: hlen - 4])).to_bytes(4, "little")
    seed = int.from_bytes(p[hlen - 4 : hlen], "little")
    pos = hlen + (SIGNATURE_LEN if flags & FLAG_SIGNED else 0)
    for _ in range(64):
        if pos >= n:
            break
        enc = p[pos]
        method = enc & codec.METHOD_MASK
        diff_ok = not enc & codec.DIFF or flags & FLAG_DELTA
        if enc & ~codec.KNOWN_ENC or method > codec.RC or not diff_ok:
            break
        if enc & codec.LANES and method != codec.RC:
            break
        count = (2 if method == codec.RAW else 3) + (2 if enc & codec.KEEP else 0)
        count += 3 if enc & codec.PRED else 0
        values, q = [], pos + 1
        for _ in range(count):
            value, q, ok = codec.read_varint(p, q)
            if value is None or not ok:
                return bytes(p)
            values.append(value)
        q += 4 if enc & codec.PRED else 0
        size = values[1] if method == codec.RAW else values[2]
        if q > n or size > n - q or n - q - size < 4:
            break
        seed = crc32(bytes(p[pos : q + size]), seed)
        p[q + size : q + size + 4] = seed.to_bytes(4, "little")
        pos = q + size + 4
    return bytes(p)


def check_decoder(stream: bytes) -> None:
    """fuzz_decoder's input format: enc, length - 1, offset, body length, body."""
    model = codec.Model()
    pos = 0
    for _ in range(64):
        if len(stream) - pos < 4:
            return
        enc = stream[pos] & codec.KNOWN_ENC
        if enc & codec.METHOD_MASK > codec.RC:
            enc &= ~codec.METHOD_MASK
        length, offset, size = stream[pos + 1] + 1, stream[pos + 2], stream[pos + 3]
        body = stream[pos + 4 : pos + 4 + size]
        pos += 4 + len(body)
        out = codec.decode(enc, body, length, offset, model)
        assert len(out) == length
        if enc & codec.PRED:
            check_fdiv(bytes(out))


def _normal(bits: int) -> bool:
    return 0 < (bits >> 23) & 0xFF < 0xFF


def check_fdiv(out: bytes) -> None:
    """``out`` as float32 pairs (a, d): ``codec.fdiv`` is IEEE float32
    division wherever it is not 0, and not 0 where the operands and the
    quotient are normal (a quotient rounded up to the smallest normal aside)."""
    for k in range(len(out) // 8):
        a, d = struct.unpack_from("<II", out, 8 * k)
        q = codec.fdiv(a, d)
        if not (_normal(a) and _normal(d)):
            assert q == 0, (hex(a), hex(d), hex(q))
            continue
        fa, fd = np.frombuffer(out[8 * k : 8 * k + 8], "<f4")
        with np.errstate(all="ignore"):
            hw = int(np.array([fa / fd], "<f4").view("<u4")[0])
        if q != 0:
            assert q == hw, (hex(a), hex(d), hex(q), hex(hw))
        else:
            assert not _normal(hw) or hw & 0x7FFFFFFF == 0x00800000, (hex(a), hex(d), hex(hw))
