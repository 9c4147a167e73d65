"""Seed corpus for sim/fuzz/fuzz_updater.cpp, made by the real packer.

    python sim/fuzz/make_corpus.py DIR

writes one file per (device configuration, payload): 4 control bytes (see
the comment at the top of fuzz_updater.cpp) then a payload for the fuzz
target's model (600 bytes, fingerprint "modelota-fuzz-fp", version 1): wire
format v1 and v2 (v2 with weight-like bytes, so its chunks are range coded,
run-length coded and differences with the base), full and delta, CRC32 and
SHA-256, unsigned and signed with the fuzz key, an empty delta, and a few
damaged ones; v2 payloads with KEEP and PRED chunks (float32 scale vectors
predicted from earlier ones, in one chunk and from a kept range) and near
misses of them (one KEEP or PRED field off, the chunk CRCs still right); and
seeds for the chunk decoder alone (control byte 3 bit 7), PRED ones pairs of
float32 for fdiv.
libFuzzer mutates from there, so it starts with inputs that pass every check
instead of stopping at the magic.
"""

from __future__ import annotations

import hashlib
import random
import struct
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from modelota.format import codec
from modelota.format import signing as keys
from modelota.format.payload import AnyChunk, Chunk2, Payload, Prediction, pack
from modelota.sim.sweep import weights_like

REGION = 600
FP = b"modelota-fuzz-fp"
FUZZ_KEY = hashlib.sha256(b"modelota fuzz key").digest()
# must equal kPublicKey in fuzz_updater.cpp (tests/test_fuzz.py checks it)
FUZZ_PUBLIC_KEY = keys.public_from_private(FUZZ_KEY)


def factory() -> bytes:
    return bytes((i * 31 + 7) & 0xFF for i in range(REGION))


def payloads() -> dict[str, bytes]:
    old = factory()
    rnd = random.Random(6)
    new = bytearray(old)
    for start in (3, 120, 121, 400, 590):
        new[start : start + rnd.randint(1, 40)] = rnd.randbytes(40)[: len(new[start : start + 40])]
    for start in (200, 300):  # a fine-tune: bytes nudged by one, shipped as differences
        new[start : start + 60] = bytes((b + 1) & 0xFF for b in new[start : start + 60])
    new = new[:REGION]
    out: dict[str, bytes] = {}
    for fmt in (1, 2):
        # v1 ships bytes as they are: random ones; v2 compresses: weight-like ones
        full_new = rnd.randbytes(REGION) if fmt == 1 else weights_like(rnd, REGION)
        v = "" if fmt == 1 else "v2-"
        for digest in ("crc32", "sha256"):
            for chunk in (64, 256):
                out[f"{v}full-{digest}-{chunk}"] = pack(
                    full_new, fingerprint=FP, version=2, chunk_size=chunk, digest=digest,
                    format_version=fmt,
                ).encode()  # fmt: skip
                out[f"{v}delta-{digest}-{chunk}"] = pack(
                    bytes(new), fingerprint=FP, version=2, chunk_size=chunk, digest=digest,
                    base=old, base_version=1, format_version=fmt,
                ).encode()  # fmt: skip
        for chunk in (100, 256):
            out[f"signed-{v}full-{chunk}"] = pack(
                full_new, fingerprint=FP, version=3, chunk_size=chunk, sign_key=FUZZ_KEY,
                format_version=fmt,
            ).encode()  # fmt: skip
            out[f"signed-{v}delta-{chunk}"] = pack(
                bytes(new), fingerprint=FP, version=2, chunk_size=chunk, sign_key=FUZZ_KEY,
                base=old, base_version=1, format_version=fmt,
            ).encode()  # fmt: skip
        out[f"signed-{v}empty-delta"] = pack(
            old, fingerprint=FP, version=2, sign_key=FUZZ_KEY, base=old, base_version=1,
            format_version=fmt,
        ).encode()  # fmt: skip
    signed = out["signed-full-100"]
    flipped = bytearray(signed)
    flipped[200] ^= 0x04
    out["signed-chunk-bit-flip"] = bytes(flipped)
    out["signed-truncated"] = signed[:-7]
    out["signed-trailing"] = signed + b"\x00"
    out.update(pred_payloads())
    return out


def scale_vectors(rnd: np.random.Generator, count: int, x: float) -> tuple[bytes, bytes, int]:
    """An int8 TFLite layer's scales: per-channel weight scales ``w``, the
    bias scales the converter derives from them (float32 ``w * x``) and the
    input scale ``x`` (float32 bits): ``w`` is ``b / x``, up to rounding."""
    w = rnd.uniform(1e-3, 2e-2, count).astype("<f4")
    xs = np.float32(x)
    b = (w * xs).astype("<f4")
    return b.tobytes(), w.tobytes(), struct.unpack("<I", struct.pack("<f", xs))[0]


# (source, target, values): A's target is 404 bytes after its source (a KEEP
# when chunks are under 452 bytes), B's 40 (in one chunk from 72 bytes up)
PRED_VECTORS = ((16, 420, 12), (300, 340, 8))
# not 4-aligned: a predicted value straddles the 128-byte flash blocks of
# the fuzz target's Store (at 512 and at 384), which rebuilds it in two pieces
ODD_VECTORS = ((13, 479, 12), (350, 382, 4))


def pred_region(new: bytes, seed: int, vectors: tuple[tuple[int, int, int], ...] = PRED_VECTORS
                ) -> tuple[bytes, list[Prediction]]:  # fmt: skip
    """``new`` with the bias and weight scales of ``vectors`` (source,
    target, values) written in, and the predictions that pack them."""
    rnd = np.random.default_rng(seed)
    out = bytearray(new)
    preds: list[Prediction] = []
    for src, tgt, count in vectors:
        b, w, x = scale_vectors(rnd, count, 0.1)
        out[src : src + 4 * count] = b
        out[tgt : tgt + 4 * count] = w
        preds.append((tgt, count, src, x))
    return bytes(out), preds


def pred_payloads() -> dict[str, bytes]:
    """v2 payloads with KEEP and PRED chunks (full and delta, a kept source
    and one in the chunk, signed ones for the keyed devices) and near misses:
    each breaks one KEEP or PRED rule (or the prediction itself) of a valid
    payload, with every CRC recomputed, so the Updater gets to the check."""
    rnd = random.Random(11)
    full, preds = pred_region(weights_like(rnd, REGION), 1)
    # a fine-tune (every byte nudged, so the delta's chunks are whole ones)
    # that also moves the scales
    delta, dpreds = pred_region(bytes((b + 1) & 0xFF for b in factory()), 2)
    out: dict[str, bytes] = {}
    for chunk in (64, 256, 600):
        out[f"v2-pred-full-{chunk}"] = pack(
            full, fingerprint=FP, version=2, chunk_size=chunk, predictions=preds
        ).encode()
        out[f"v2-pred-delta-{chunk}"] = pack(
            delta, fingerprint=FP, version=2, chunk_size=chunk, base=factory(), base_version=1,
            predictions=dpreds).encode()  # fmt: skip
    out["signed-v2-pred-full-256"] = pack(
        full, fingerprint=FP, version=3, chunk_size=256, sign_key=FUZZ_KEY, predictions=preds
    ).encode()
    out["signed-v2-pred-delta-256"] = pack(
        delta, fingerprint=FP, version=3, chunk_size=256, sign_key=FUZZ_KEY, base=factory(),
        base_version=1, predictions=dpreds).encode()  # fmt: skip
    for kind, base in (("full", None), ("delta", factory())):
        odd, opreds = pred_region(full if base is None else delta, 3, ODD_VECTORS)
        out[f"v2-pred-odd-{kind}-256"] = pack(
            odd, fingerprint=FP, version=2, chunk_size=256, base=base,
            base_version=None if base is None else 1, predictions=opreds).encode()  # fmt: skip
    p = pack(full, fingerprint=FP, version=2, chunk_size=256, predictions=preds)
    for name, chunks in pred_misses(p.chunks).items():
        out[f"v2-pred-miss-{name}"] = Payload(p.header, chunks).encode()
    return out


def pred_misses(chunks: tuple[AnyChunk, ...]) -> dict[str, tuple[AnyChunk, ...]]:
    """Chunk lists one field away from ``chunks`` (a 256-byte plan of
    PRED_VECTORS: a KEEP chunk, an in-chunk PRED, a PRED from the kept range)."""
    cs = [c for c in chunks if isinstance(c, Chunk2)]
    keep = next(i for i, c in enumerate(cs) if c.keep is not None)
    uses = next(i for i, c in enumerate(cs) if c.pred is not None and c.pred.back > c.pred.start)
    local = next(i for i, c in enumerate(cs) if c.pred is not None and c.pred.back <= c.pred.start)
    k, u, lo = cs[keep], cs[uses], cs[local]
    assert k.keep is not None and u.pred is not None and lo.pred is not None
    ks = k.keep[0]
    kept_at = k.offset + ks
    q, ql = u.pred, lo.pred
    edits: dict[str, tuple[int, Chunk2]] = {
        "keep-past-end": (keep, replace(k, keep=(ks, k.length - ks + 1))),
        "keep-empty": (keep, replace(k, keep=(ks, 0))),
        "keep-whole-chunk": (keep, replace(k, keep=(0, k.length))),  # no room for the next
        "keep-dropped": (keep, replace(k, enc=k.enc & ~codec.KEEP, keep=None)),
        "pred-before-kept": (uses, replace(u, pred=replace(q, back=q.back + 4))),
        "pred-past-kept": (uses, replace(u, pred=replace(q, back=q.back - 4))),
        "pred-past-chunk": (uses, replace(u, pred=replace(q, count=(u.length - q.start) // 4 + 1))),
        "pred-none": (uses, replace(u, pred=replace(q, count=0))),
        "pred-before-region": (uses, replace(u, pred=replace(q, back=u.offset + q.start + 1))),
        "pred-divisor-zero": (uses, replace(u, pred=replace(q, divisor=0))),
        "pred-divisor-nan": (uses, replace(u, pred=replace(q, divisor=0x7FC00000))),
        "pred-overlap": (local, replace(lo, pred=replace(ql, back=4 * ql.count - 1))),
        "pred-adjacent": (local, replace(lo, pred=replace(ql, back=4 * ql.count))),
        # the in-chunk prediction takes the kept source instead: released, so
        # the later one that needs it is refused
        "pred-releases-kept": (
            local,
            replace(lo, pred=replace(ql, back=lo.offset + ql.start - kept_at)),
        ),
        "pred-divisor-ulp": (uses, replace(u, pred=replace(q, divisor=q.divisor + 1))),
    }
    out: dict[str, tuple[AnyChunk, ...]] = {}
    for name, (i, c) in edits.items():
        changed = list(chunks)
        changed[chunks.index(cs[i])] = c
        out[name] = tuple(changed)
    return out


CONTROLS = {
    "ram": bytes([0x30, 0, 0, 0]),
    "ram-split": bytes([0x20, 7, 0, 0]),
    "callback-backupcb": bytes([0x19, 3, 1, 0]),
    "ram-keyed": bytes([0x34, 0, 0, 0]),
    "callback-keyed-split": bytes([0x15, 9, 2, 0]),
    "storeflash": bytes([0x32, 0, 0, 0]),
    "storeflash-keyed-split": bytes([0x26, 5, 2, 0]),
    "storeram-keyed": bytes([0x37, 0, 3, 0]),
    "storeram-split": bytes([0x13, 11, 0, 0]),
    # byte 3 bit 6: the harness recomputes the CRCs, so mutated KEEP and PRED
    # fields reach their checks (these get the v2 KEEP/PRED seeds only)
    "ram-fixcrc": bytes([0x30, 0, 0, 0x40]),
    "callback-fixcrc-split": bytes([0x21, 13, 0, 0x40]),
    "storeflash-fixcrc": bytes([0x32, 0, 0, 0x40]),
    "storeram-fixcrc-split": bytes([0x23, 9, 0, 0x40]),
}


def decoder_seeds() -> dict[str, bytes]:
    """Inputs for fuzz_decoder: chunks of enc, length-1, offset, body length, body."""
    rnd = random.Random(9)
    out: dict[str, bytes] = {}
    model = codec.Model()
    stream = bytearray()
    for i in range(6):
        data = weights_like(rnd, rnd.randint(20, 256))
        lanes = i % 2 == 1
        enc = codec.RC | (codec.LANES if lanes else 0)
        body = codec.rc_encode(data, i, lanes, model)[:255]
        stream += bytes([enc, len(data) - 1, i, len(body)]) + body
        runs = codec.runs_encode(data)[:255]
        stream += bytes([codec.RUNS | codec.DIFF, len(data) - 1, 0, len(runs)]) + runs
    out["decoder-rc-runs"] = bytes(stream)
    out["decoder-raw"] = bytes([codec.RAW | codec.DIFF, 99, 3, 100]) + rnd.randbytes(100)
    # PRED: the decoded bytes are float32 pairs (a, d) for fdiv: scales, ties,
    # quotients at the edges of the normal range, zeros, subnormals, inf, NaN
    pairs = [(0.0017, 0.1), (1.5, 1.0), (3.0, 2.0), (1.0, 3.0), (2.0**-120, 2.0**10),
             (2.0**100, 2.0**-30), (1.0000001, 0.99999994), (-6.5, 0.25), (0.0, 1.0),
             (1e-40, 1.0), (float("inf"), 2.0), (1.0, float("nan"))]  # fmt: skip
    floats = b"".join(struct.pack("<ff", a, d) for a, d in pairs)
    bits = b"".join(
        struct.pack("<II", a, d)
        for a, d in ((0x00800000, 0x3F800001), (0x7F7FFFFF, 0x3F7FFFFF), (0x00FFFFFF, 0x3FFFFFFF))
    )
    body = floats + bits
    out["decoder-pred-raw"] = bytes([codec.RAW | codec.PRED, len(body) - 1, 0, len(body)]) + body
    return out


def write(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, seed in decoder_seeds().items():
        (directory / f"seed-{name}").write_bytes(bytes([0, 5, 0, 0x80]) + seed)
        count += 1
    for cname, control in CONTROLS.items():
        keyed = bool(control[0] & 4)
        for pname, payload in payloads().items():
            if keyed != pname.startswith("signed"):
                continue  # a keyed device refuses unsigned seeds at once: little to learn
            if control[3] & 0x40 and not pname.startswith("v2-pred-"):
                continue
            (directory / f"seed-{cname}-{pname}").write_bytes(control + payload)
            count += 1
    return count


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py DIR")
    print(f"{write(Path(sys.argv[1]))} seeds in {sys.argv[1]}")
