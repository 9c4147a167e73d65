"""Hypothesis strategies and helpers shared by the property tests."""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from modelota import Device, Status, apply_reference
from modelota.format.payload import Payload, Prediction
from modelota.format.payload import pack as pack_v
from modelota.sim.native import Updater

FP = bytes.fromhex("6d6f64656c6f74612d746573742d6670")  # "modelota-test-fp"
OTHER_FP = bytes.fromhex("00112233445566778899aabbccddeeff")


@dataclass
class Case:
    old: bytes
    new: bytes
    chunk_size: int
    delta: bool
    current_version: int
    new_version: int
    format_version: int = 2
    predictions: tuple[Prediction, ...] = ()

    def payload(self) -> Payload:
        v2 = {"predictions": self.predictions} if self.format_version == 2 else {}
        if self.delta:
            return pack_v(
                self.new,
                fingerprint=FP,
                version=self.new_version,
                chunk_size=self.chunk_size,
                base=self.old,
                base_version=self.current_version,
                format_version=self.format_version,
                **v2,  # type: ignore[arg-type]
            )
        return pack_v(
            self.new,
            fingerprint=FP,
            version=self.new_version,
            chunk_size=self.chunk_size,
            format_version=self.format_version,
            **v2,  # type: ignore[arg-type]
        )

    def device(self, **kw: object) -> Updater:
        kw.setdefault("buffer_len", max(96, self.chunk_size))
        return Updater(
            bytearray(self.old),
            fingerprint=FP,
            current_version=self.current_version,
            **kw,  # type: ignore[arg-type]
        )

    def reference(self, stream: bytes) -> Status:
        dev = Device(FP, self.current_version, bytearray(self.old), max(96, self.chunk_size))
        return apply_reference(stream, dev).status


# weight-like bytes (v2 compresses them) are range coded by the pure-Python
# packer and reference at ~100 KB/s: keep them smaller than random ones
WEIGHT_LIKE_MAX = 12_000


@st.composite
def weight_pairs(draw: st.DrawFn, max_size: int = 70_000) -> tuple[bytes, bytes]:
    """Old and new weights of one size: random bytes, or bytes shaped like a
    quantized model (so v2 payloads carry raw, runs and range-coded chunks);
    new is unrelated to old, or old with a few runs rewritten or nudged by
    one (a fine-tune: v2 ships those as differences)."""
    import random

    from modelota.sim.sweep import weights_like

    like = draw(st.booleans())
    top = min(max_size, WEIGHT_LIKE_MAX) if like else max_size
    size = draw(st.one_of(st.integers(0, 300), st.integers(0, top)))
    seed = draw(st.integers(0, 2**32 - 1))
    rnd = random.Random(seed)

    def fresh(n: int) -> bytes:
        return weights_like(rnd, n) if like else rnd.randbytes(n)

    old = fresh(size)
    if draw(st.booleans()) or size == 0:
        return old, fresh(size)
    new = bytearray(old)
    for _ in range(draw(st.integers(1, 8))):
        start = rnd.randrange(size)
        length = min(size - start, rnd.choice([1, 2, 5, 40, 300, 5000, 70_000]))
        if like and rnd.random() < 0.5:
            new[start : start + length] = bytes((b + rnd.choice((1, 255))) & 0xFF
                                                for b in new[start : start + length])  # fmt: skip
        else:
            new[start : start + length] = fresh(length)
    return old, bytes(new)


@st.composite
def cases(draw: st.DrawFn, max_size: int = 70_000, formats: tuple[int, ...] = (1, 2)) -> Case:
    old, new = draw(weight_pairs(max_size))
    chunk = draw(
        st.one_of(st.sampled_from([1, 2, 7, 64, 96, 255, 256, 1024, 4096]), st.integers(1, 4096))
    )
    # keep the chunk count (and so the test time) bounded for large models
    chunk = max(chunk, len(new) // 4000 + 1)
    current = draw(st.integers(0, 2**32 - 2))
    new_version = draw(st.integers(current + 1, 2**32 - 1))
    fmt = draw(st.sampled_from(formats))
    new, predictions = draw(planted_predictions(new))
    return Case(old, new, chunk, draw(st.booleans()), current, new_version, fmt, predictions)


@st.composite
def planted_predictions(draw: st.DrawFn, new: bytes) -> tuple[bytes, tuple[Prediction, ...]]:
    """Sometimes ``new`` with up to three pairs of float32 vectors planted in
    it, the later one (nearly: a value or two off) the earlier one divided by
    a constant, and the predictions pack may use for them (KEEP and PRED)."""
    import random

    from modelota.format import codec

    if len(new) < 16 or not draw(st.booleans()):
        return new, ()
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    out = bytearray(new)
    found = []
    for _ in range(draw(st.integers(1, 3))):
        count = draw(st.integers(1, max(1, min(300, len(new) // 16))))
        n = 4 * count
        src = rnd.randrange(0, len(new) - 2 * n + 1)
        target = rnd.randrange(src + n, len(new) - n + 1)
        divisor = int.from_bytes(struct.pack("<f", rnd.uniform(1e-3, 2.0)), "little")
        values = struct.pack(f"<{count}f", *(rnd.gauss(0, 1) * 10 ** rnd.randint(-6, 2)
                                             for _ in range(count)))  # fmt: skip
        out[src : src + n] = values
        guess = bytearray(codec.predict(values, divisor))
        for k in range(0, n, 4):
            if rnd.random() < 0.1:  # the rounding of a product: an ulp off
                guess[k] = (guess[k] + rnd.choice((1, 255))) & 0xFF
        out[target : target + n] = guess
        found.append((target, count, src, divisor))
    return bytes(out), tuple(found)


@st.composite
def splits(draw: st.DrawFn, length: int) -> list[int]:
    """Feed boundaries: everything at once, random cuts, or a fixed step."""
    mode = draw(st.sampled_from(["whole", "cuts", "step"]))
    if mode == "whole" or length == 0:
        return []
    if mode == "cuts":
        return sorted(set(draw(st.lists(st.integers(1, max(1, length - 1)), max_size=40))))
    step = draw(st.sampled_from([1, 2, 3, 5, 13, 96, 97, 512]))
    step = max(step, length // 20_000 + 1)  # one-byte feeds only for small payloads
    return list(range(step, length, step))


def modelota(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Runs the `modelota` command line as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "modelota", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def every_encoding_payload(seed: int = 1, **kw: object) -> tuple[bytes, bytes, Payload]:
    """(old, new, payload): a v2 delta for FP with one chunk in every encoding
    (EVERY_ENCODING; modelota.sim.sweep builds it), base version 1, version 2."""
    from modelota.sim import sweep

    return sweep.every_encoding_payload(seed, fingerprint=FP, **kw)  # type: ignore[arg-type]


from modelota.sim.sweep import EVERY_ENCODING  # noqa: E402,F401


def fdiv_ieee(a: int, d: int) -> int:
    """FORMAT.md's fdiv from the FPU, not from either implementation: numpy's
    float32 a / d (IEEE 754, round to nearest even) where a, d and the exact
    quotient are normal numbers, else 0 (fdiv predicts nothing there)."""
    from fractions import Fraction

    import numpy as np

    fa, fd = np.array([a, d], dtype=np.uint32).view(np.float32)
    if not (np.isfinite(fa) and np.isfinite(fd)) or 0 in ((a >> 23) & 0xFF, (d >> 23) & 0xFF):
        return 0
    exact = abs(Fraction(float(fa)) / Fraction(float(fd)))
    if not Fraction(2) ** -126 <= exact < Fraction(2) ** 128:  # the exact quotient
        return 0
    with np.errstate(all="ignore"):
        q = np.float32(fa) / np.float32(fd)
    return int(np.array([q], dtype=np.float32).view(np.uint32)[0])
