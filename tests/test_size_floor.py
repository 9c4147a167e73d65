"""bench/size_floor.py, the floors table 2b of bench_size.py sets the misses
against (docs/BENCHMARKS.md): the KT code length, the field walk and the
finder of bias scales that are exactly input scale x weight scale."""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from size_floor import (
    adaptive_bytes,
    delta_floor,
    entropy_bytes,
    exact_bias_scales,
)

from modelota.models.tflite import pack_tflite, read_tflite
from modelota.models.tflite_build import Dense, build_mlp


def mlp(seed: int) -> bytes:
    rng = np.random.default_rng(seed)

    def dense(n_out: int, n_in: int, act: str) -> Dense:
        return Dense(rng.normal(0, 0.3, (n_out, n_in)).astype(np.float32),
                     rng.normal(0, 0.1, n_out).astype(np.float32), act)  # fmt: skip

    return build_mlp([dense(16, 8, "relu"), dense(4, 16, "none")], dtype="int8", per_channel=True)


def test_kt_code_length_by_hand() -> None:
    # first byte: (0 + 1/2) / (0 + 128) = 1/256, 8 bits; the same again: 1.5 / 129
    assert adaptive_bytes(np.array([7], np.uint8)) == pytest.approx(1.0)
    two = (8 - math.log2(1.5 / 129)) / 8
    assert adaptive_bytes(np.array([7, 7], np.uint8)) == pytest.approx(two)
    assert entropy_bytes(np.array([7, 7], np.uint8)) == 0.0
    assert entropy_bytes(np.array([1, 2, 3, 4], np.uint8)) == pytest.approx(1.0)  # 2 bits each


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_learner_never_beats_the_frequencies_it_is_not_given(seed: int) -> None:
    v = np.random.default_rng(seed).integers(0, 256, 500).astype(np.uint8)
    assert adaptive_bytes(v) > entropy_bytes(v)


def test_bias_scales_found_on_every_layer_and_not_once_one_is_changed() -> None:
    data = mlp(1)
    m = read_tflite(data)
    biases = {}
    for t in m.tensors:
        q = t.quantization
        if t.dtype == "INT32" and q is not None and q.scale_offset is not None:
            biases[t.name] = (q.scale_offset, q.scale_length)
    assert len(biases) == 2
    assert exact_bias_scales(data) == set(biases.values())
    # one ulp off in one channel of the first layer's bias scales: that vector is no longer implied
    off, _ = min(biases.values())
    (bits,) = struct.unpack_from("<I", data, off + 4)
    changed = bytearray(data)
    struct.pack_into("<I", changed, off + 4, bits + 1)
    assert exact_bias_scales(bytes(changed)) == set(biases.values()) - {min(biases.values())}


def test_delta_floor_of_a_retrain() -> None:
    old, new = mlp(1), mlp(2)
    pay = pack_tflite(old, new, version=2, base_version=1, delta=True)
    f = delta_floor(old, new, pay)
    assert 0 < f.static < f.adaptive
    assert 0 < f.bias_static < f.bias_adaptive < f.adaptive
    assert f.outside == 0  # a retrain changes weights and quantization values only
    chunks = sum(len(c.body) for c in pay.chunks)  # type: ignore[union-attr]
    assert f.framing == len(pay.encode()) - chunks
    assert f.total(True) - f.total(True, without_bias=True) == pytest.approx(f.bias_adaptive)
