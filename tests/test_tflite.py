"""TFLite models as weight regions: reader, fingerprint, rebase, payloads, and the
TFLM proof that a model patched in place by the native C++ core *is* the new model.

Models are real .tflite flatbuffers built with the ``tflite`` schema package
(tests/tflite_builder.py over modelota.models.tflite_build) and the converter-made
``sine_float.tflite`` that ships with tflite-micro; they run in the TFLM
interpreter (tflite-micro's Python runtime).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

from modelota.cli import tflite as tflite_cli
from modelota.format.payload import HEADER_LEN, parse
from modelota.models.tflite import (
    TFLiteError,
    TFLiteModel,
    diff_models,
    first_difference,
    merge_ranges,
    pack_tflite,
    read_tflite,
    rebase,
    scale_predictions,
)
from modelota.models.tflite_build import Dense, Graph, Quant, build_mlp
from modelota.sim.native import Updater
from modelota.status import CliError, Status
from tflite_builder import Arch, archs, export, inputs, pair, retrain, run, train

SINE = Path(tflm_runtime.__file__).parent / "sine_float.tflite"
EXAMPLES = settings().max_examples  # 150 by default (MODELOTA_EXAMPLES), 3000 with --run-slow


def apply_native(
    old: bytes, payload: bytes, *, chunk: int = 1024, version: int = 1
) -> tuple[Status, bytearray]:
    """Feeds ``payload`` to the C++ core with the device's RAM holding ``old``."""
    region = bytearray(old)
    u = Updater(
        region,
        fingerprint=read_tflite(old).fingerprint(),
        current_version=version,
        buffer_len=max(chunk, HEADER_LEN),
    )
    assert u.init_status == Status.Ok
    return u.apply(payload), region


def weight_mask(m: TFLiteModel) -> np.ndarray:
    mask = np.zeros(m.size, dtype=bool)
    for off, n in m.weight_ranges():
        mask[off : off + n] = True
    return mask


def changed_outside_weights(old: bytes, patched: bytes) -> int:
    m = read_tflite(old)
    a, b = np.frombuffer(old, np.uint8), np.frombuffer(bytes(patched), np.uint8)
    return int(np.count_nonzero((a != b) & ~weight_mask(m)))


def same_outputs(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def mlp(dims: tuple[int, ...], seed: int = 0, tail: str | None = None) -> bytes:
    arch = Arch(dims, ("relu",) * (len(dims) - 1), tail=tail)
    return export(arch, train(arch, np.random.default_rng(seed)))


# ---------------------------------------------------------------- reading


def test_sine_model_tensors_and_ranges() -> None:
    data = SINE.read_bytes()
    m = read_tflite(data)
    consts = [t for t in m.tensors if t.constant]
    assert [t.shape for t in consts] == [(16,), (1,), (16,), (16, 1), (16, 16), (1, 16)]
    assert all(t.dtype == "FLOAT32" and t.quantization is None for t in m.tensors)
    # each constant's range holds exactly its float32 values
    for t in consts:
        assert t.data_offset is not None
        assert t.data_length == 4 * int(np.prod(t.shape))
        vals = np.frombuffer(data, np.float32, t.data_length // 4, t.data_offset)
        assert np.all(np.isfinite(vals))
    assert m.weight_bytes == sum(t.data_length for t in consts) == 1284
    assert len(m.fingerprint()) == 16


def test_int8_tensor_info_points_at_the_quantization_vectors() -> None:
    arch = Arch((5, 7, 3), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    data = export(arch, train(arch, np.random.default_rng(3)))
    m = read_tflite(data)
    w = m.tensor(0, 1)
    assert w.dtype == "INT8" and w.constant and w.shape == (7, 5)
    q = w.quantization
    assert q is not None and q.num_scales == 7 and q.num_zero_points == 7
    assert q.scale_offset is not None and q.zero_point_offset is not None
    scales = np.frombuffer(data, np.float32, 7, q.scale_offset)
    zps = np.frombuffer(data, np.int64, 7, q.zero_point_offset)
    assert np.all(scales > 0) and np.all(zps == 0)
    out = m.tensors[-1]  # softmax output: TFLM requires scale 1/256, zero point -128
    assert out.quantization is not None and out.quantization.scale_offset is not None
    assert np.frombuffer(data, np.float32, 1, out.quantization.scale_offset)[0] == 1 / 256
    # every weight range is data or a quantization vector of some tensor
    owned = {r for t in m.tensors for r in t.ranges()}
    assert set(m.weight_ranges()) == owned


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x00" * 3, "too short"),
        (b"\x10\x00\x00\x00TFL2" + bytes(40), "file identifier"),
        (b"PK\x03\x04 this is a zip file, not a model", "not a TFLite model"),
        (b"\x10\x00\x00\x00TFL3" + b"\xff" * 8, "not a valid TFLite flatbuffer"),
    ],
)
def test_not_a_tflite_model_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(TFLiteError, match=message):
        read_tflite(data)
    assert issubclass(TFLiteError, ValueError)


def test_truncated_model_is_refused() -> None:
    data = SINE.read_bytes()
    for cut in (8, 64, 600, len(data) // 2, len(data) - 100):
        with pytest.raises(TFLiteError):
            read_tflite(data[:cut])


CORRUPT_BASE = mlp((4, 6, 3), tail="softmax")


@settings(max_examples=EXAMPLES * 2)
@given(st.data())
def test_corrupted_model_reads_or_raises_tflite_error(data: st.DataObject) -> None:
    raw = bytearray(CORRUPT_BASE)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        m = read_tflite(bytes(raw))
    except TFLiteError:
        return
    for off, n in m.weight_ranges():
        assert 0 <= off and off + n <= len(raw)
    assert len(m.fingerprint()) == 16


# ---------------------------------------------------------------- fingerprint


@settings(max_examples=EXAMPLES)
@given(arch=archs(), seed=st.integers(0, 2**32 - 1), layout=st.integers(0, 40))
def test_retrained_model_has_the_same_fingerprint(arch: Arch, seed: int, layout: int) -> None:
    old, new = pair(arch, seed, layout=layout)
    a, b = read_tflite(old), read_tflite(new)
    assert a.fingerprint() == b.fingerprint()
    assert first_difference(a, b) is None
    if arch.dtype == "int8":  # the scales really changed, and did not count
        scale_bytes = [
            (
                old[ta.quantization.scale_offset : ta.quantization.scale_offset + 4],
                new[tb.quantization.scale_offset : tb.quantization.scale_offset + 4],
            )
            for ta, tb in zip(a.tensors, b.tensors, strict=True)
            if ta.quantization
            and tb.quantization
            and ta.quantization.scale_offset
            and tb.quantization.scale_offset
        ]
        assert any(x != y for x, y in scale_bytes)


def test_layout_names_and_metadata_are_not_hashed() -> None:
    arch = Arch((6, 9, 4), ("relu", "none"), "int8", tail="softmax")
    layers = train(arch, np.random.default_rng(1))
    plain = export(arch, layers)
    fancy = export(arch, layers, layout=29)
    assert len(plain) != len(fancy)
    a, b = read_tflite(plain), read_tflite(fancy)
    assert a.description != b.description
    assert [t.name for t in a.tensors] != [t.name for t in b.tensors]
    assert a.fingerprint() == b.fingerprint()


def test_weight_and_quantization_values_are_not_hashed() -> None:
    arch = Arch((5, 7, 3), ("relu", "none"), "int8", per_channel=True)
    data = export(arch, train(arch, np.random.default_rng(2)))
    m = read_tflite(data)
    scrambled = bytearray(data)
    rng = np.random.default_rng(0)
    for off, n in m.weight_ranges():
        scrambled[off : off + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    assert bytes(scrambled) != data
    assert read_tflite(bytes(scrambled)).fingerprint() == m.fingerprint()
    # while one structural byte outside the ranges does count (a shape entry)
    shape_pos = data.find(np.array([7, 5], dtype=np.int32).tobytes())
    assert shape_pos > 0 and not weight_mask(m)[shape_pos]
    other = bytearray(data)
    other[shape_pos] = 8
    assert read_tflite(bytes(other)).fingerprint() != m.fingerprint()


def _fc_graph(op: str = "FULLY_CONNECTED", weight_type: str = "FLOAT32") -> bytes:
    g = Graph()
    x = g.tensor("x", [1, 4])
    wdata = np.ones((3, 4), np.float32) if weight_type == "FLOAT32" else np.ones((3, 4), np.int8)
    wq = Quant([0.1], [0]) if weight_type == "INT8" else None
    w = g.tensor("w", [3, 4], weight_type, wdata, wq)
    b = g.tensor("b", [3], "FLOAT32", np.zeros(3, np.float32))
    y = g.tensor("y", [1, 3])
    g.op(op, [x, w, b], [y])
    g.inputs, g.outputs = [x], [y]
    return g.serialize()


DIFFERENT = [
    (
        "width",
        mlp((5, 7, 3)),
        mlp((5, 8, 3)),
        "tensor 1 'sequential/dense/MatMul' (input 1 of operator 0 FULLY_CONNECTED) shape [7, 5]"
        " vs [8, 5]",
    ),
    ("depth", mlp((5, 7, 3)), mlp((5, 7, 7, 3)), "2 operators vs 3"),
    (
        "input",
        mlp((5, 7, 3)),
        mlp((6, 7, 3)),
        "tensor 0 'serving_default_input:0' (input 0 of operator 0 FULLY_CONNECTED) shape"
        " [1, 5] vs [1, 6]",
    ),
    (
        "type",
        _fc_graph(),
        _fc_graph(weight_type="INT8"),
        "tensor 1 'w' (input 1 of operator 0 FULLY_CONNECTED) type FLOAT32 vs INT8",
    ),
    ("op", _fc_graph(), _fc_graph("CONV_2D"), "operator 0: FULLY_CONNECTED vs CONV_2D"),
    (
        "activation",
        export(
            Arch((5, 3), ("relu",)),
            [Dense(np.ones((3, 5), np.float32), np.zeros(3, np.float32), "relu")],
        ),
        export(
            Arch((5, 3), ("none",)),
            [Dense(np.ones((3, 5), np.float32), np.zeros(3, np.float32), "none")],
        ),
        "operator 0 (FULLY_CONNECTED) options: builtin.fusedactivationfunction 1 vs default",
    ),
    (
        "per-channel",
        export(
            Arch((5, 7, 3), ("relu", "none"), "int8"),
            train(Arch((5, 7, 3), ("relu", "none")), np.random.default_rng(0)),
        ),
        export(
            Arch((5, 7, 3), ("relu", "none"), "int8", True),
            train(Arch((5, 7, 3), ("relu", "none")), np.random.default_rng(0)),
        ),
        "tensor 1 'sequential/dense/MatMul' (input 1 of operator 0 FULLY_CONNECTED) quantization"
        " per-tensor, 1 zero points"
        " vs 7 scales on dimension 0, 7 zero points",
    ),
    ("tail", mlp((5, 7, 3)), mlp((5, 7, 3), tail="softmax"), "2 operators vs 3"),
]


@pytest.mark.parametrize(("case", "a", "b", "message"), DIFFERENT, ids=[c[0] for c in DIFFERENT])
def test_different_architecture_is_named(case: str, a: bytes, b: bytes, message: str) -> None:
    ma, mb = read_tflite(a), read_tflite(b)
    assert ma.fingerprint() != mb.fingerprint()
    assert first_difference(ma, mb) == message
    assert first_difference(mb, ma) is not None
    with pytest.raises(TFLiteError, match=re.escape("not the same architecture: " + message)):
        rebase(ma, mb)
    with pytest.raises(TFLiteError):
        pack_tflite(a, b, version=2)


@settings(max_examples=EXAMPLES)
@given(
    a=archs(max_depth=3, max_width=6), b=archs(max_depth=3, max_width=6), seed=st.integers(0, 99)
)
def test_fingerprint_equal_exactly_when_no_difference(a: Arch, b: Arch, seed: int) -> None:
    ma = read_tflite(export(a, train(a, np.random.default_rng(seed))))
    mb = read_tflite(export(b, train(b, np.random.default_rng(seed + 1)), layout=seed))
    same = ma.fingerprint() == mb.fingerprint()
    assert same == (first_difference(ma, mb) is None) == (first_difference(mb, ma) is None)
    if a == b:
        assert same
    if a.dims != b.dims or a.dtype != b.dtype or a.tail != b.tail or a.activations != b.activations:
        assert not same


# ---------------------------------------------------------------- rebase, ranges, diff


def test_merge_ranges() -> None:
    assert merge_ranges([]) == []
    assert merge_ranges([(10, 5), (0, 4)], gap=5) == [(0, 4), (10, 5)]
    # gaps of 16 bytes or less merge, 17 do not; touching and overlapping merge
    assert merge_ranges([(0, 4), (20, 4)], gap=16) == [(0, 24)]
    assert merge_ranges([(0, 4), (21, 4)], gap=16) == [(0, 4), (21, 4)]
    assert merge_ranges([(0, 4), (4, 4), (6, 10)], gap=0) == [(0, 16)]
    assert merge_ranges([(0, 0), (5, 1)], gap=0) == [(5, 1)]


def test_merge_ranges_default_gap_is_chunk_framing() -> None:
    assert merge_ranges([(0, 4), (10, 5)]) == [(0, 15)]
    assert merge_ranges([(0, 1), (17, 1)]) == [(0, 18)]  # 16 bytes apart
    assert merge_ranges([(0, 1), (18, 1)]) == [(0, 1), (18, 1)]  # 17 bytes apart
    assert merge_ranges([(0, 1), (17, 1)], gap=15) == [(0, 1), (17, 1)]


def test_rebase_of_a_differently_laid_out_export_runs_as_the_new_model() -> None:
    for arch in (
        Arch((8, 16, 8, 4), ("relu", "relu_op", "none"), tail="softmax"),
        Arch((8, 16, 8, 4), ("relu", "relu_op", "none"), "int8", per_channel=True, tail="reshape"),
    ):
        old, new = pair(arch, 7, layout=31)
        assert len(old) != len(new)
        result = rebase(read_tflite(old), read_tflite(new))
        assert len(result) == len(old) and result != old
        assert changed_outside_weights(old, result) == 0
        xs = inputs(arch, np.random.default_rng(0), 16)
        assert same_outputs(run(result, xs), run(new, xs))
        assert not same_outputs(run(old, xs), run(new, xs))


def test_rebase_handles_external_buffers() -> None:
    """Buffer.offset/size (data after the flatbuffer, TensorFlow's >2 GB layout).
    TFLM does not read such files, so this is checked on bytes."""
    arch = Arch((6, 10, 3), ("relu", "none"), "int8", per_channel=True)
    rng = np.random.default_rng(5)
    layers = train(arch, rng)
    new_layers = retrain(layers, rng)
    old = export(arch, layers, external_buffers=True)
    new_inline = export(arch, new_layers)
    mo, mn = read_tflite(old), read_tflite(new_inline)
    fb_end = max(t.data_offset or 0 for t in mo.tensors)
    assert all(
        t.data_offset is not None and t.data_offset >= 1000 for t in mo.tensors if t.constant
    )
    assert fb_end > 0 and mo.fingerprint() == mn.fingerprint()
    result = rebase(mo, mn)
    mr = read_tflite(result)
    for tr, tn in zip(mr.tensors, mn.tensors, strict=True):
        for (ro, rn), (no, nn) in zip(tr.ranges(), tn.ranges(), strict=True):
            assert rn == nn and result[ro : ro + rn] == new_inline[no : no + nn]
    payload = pack_tflite(old, new_inline, version=3, base_version=2, delta=True).encode()
    st_, region = apply_native(old, payload, version=2)
    assert st_ == Status.Ok and bytes(region) == result


def test_rebase_refuses_a_shared_buffer_that_splits() -> None:
    """Two tensors sharing one buffer in the old file but not in the new: the
    fingerprint sees the sharing pattern, so this is a different architecture."""

    def graph(shared: bool) -> bytes:
        g = Graph()
        x = g.tensor("x", [1, 4])
        w1 = g.tensor("w1", [4, 4], "FLOAT32", np.eye(4, dtype=np.float32))
        b = g.tensor("b", [4], "FLOAT32", np.zeros(4, np.float32))
        h = g.tensor("h", [1, 4])
        w2 = w1 if shared else g.tensor("w2", [4, 4], "FLOAT32", 2 * np.eye(4, dtype=np.float32))
        y = g.tensor("y", [1, 4])
        g.op("FULLY_CONNECTED", [x, w1, b], [h])
        g.op("FULLY_CONNECTED", [h, w2, b], [y])
        g.inputs, g.outputs = [x], [y]
        return g.serialize()

    a, b = read_tflite(graph(True)), read_tflite(graph(False))
    assert a.fingerprint() != b.fingerprint()
    assert first_difference(a, b) == "5 tensors vs 6"


def test_diff_models_counts_changed_bytes() -> None:
    arch = Arch((6, 12, 8, 3), ("relu", "relu", "none"), "float32")
    old, new = pair(arch, 11, frozen={0, 2})
    diffs = diff_models(read_tflite(old), read_tflite(new))
    assert {d.name for d in diffs} == {
        "sequential/dense_1/MatMul",
        "sequential/dense_1/BiasAdd/ReadVariableOp",
    }
    for d in diffs:
        assert d.quant_bytes == 0 and d.data_bytes == 4 * int(np.prod(d.shape))
        assert 0 < d.data_changed <= d.data_bytes and d.changed == d.data_changed
    every = diff_models(read_tflite(old), read_tflite(new), include_unchanged=True)
    assert len(every) == 6 and sum(1 for d in every if d.changed) == 2
    same = diff_models(read_tflite(old), read_tflite(old))
    assert same == []


# ---------------------------------------------------------------- the TFLM proof


def _prove(old: bytes, new: bytes, arch_or_xs: Arch | list[np.ndarray], chunk: int) -> None:
    """Full and delta payloads of new-over-old, applied by the C++ core onto the old
    bytes, give a model whose TFLM outputs are identical to the new model's."""
    xs = (
        inputs(arch_or_xs, np.random.default_rng(len(old)), 12)
        if isinstance(arch_or_xs, Arch)
        else arch_or_xs
    )
    expected = rebase(read_tflite(old), read_tflite(new))
    want = run(new, xs)
    for delta in (False, True):
        payload = pack_tflite(
            old, new, version=5, base_version=4 if delta else None, delta=delta, chunk_size=chunk
        )
        h = payload.header
        assert h.weights_size == len(old) and h.fingerprint == read_tflite(old).fingerprint()
        if not delta:
            assert list(payload.segments) == merge_ranges(read_tflite(old).weight_ranges())
        raw = payload.encode()
        assert parse(raw).header == h
        status, patched = apply_native(old, raw, chunk=chunk, version=4)
        assert status == Status.Ok, (delta, status)
        assert bytes(patched) == expected
        assert changed_outside_weights(old, patched) == 0
        assert same_outputs(run(bytes(patched), xs), want)


@settings(max_examples=EXAMPLES)
@given(
    arch=archs(),
    seed=st.integers(0, 2**32 - 1),
    layout=st.integers(0, 40),
    chunk=st.sampled_from([16, 100, 256, 1024, 4096]),
    frozen=st.sets(st.integers(0, 3), max_size=2),
)
def test_tflm_outputs_identical_after_native_update(
    arch: Arch, seed: int, layout: int, chunk: int, frozen: set[int]
) -> None:
    old, new = pair(arch, seed, layout=layout, frozen=frozen)
    _prove(old, new, arch, chunk)


def test_tflm_proof_can_fail() -> None:
    """The proof distinguishes models: old and new outputs differ on these inputs."""
    for dtype in ("float32", "int8"):
        arch = Arch((8, 16, 4), ("relu", "none"), dtype, tail="softmax")
        old, new = pair(arch, 3)
        xs = inputs(arch, np.random.default_rng(0), 12)
        assert not same_outputs(run(old, xs), run(new, xs))
        _prove(old, new, xs, 256)


def _perturbed_sine(seed: int, noise: float = 0.05) -> bytes:
    data = SINE.read_bytes()
    m = read_tflite(data)
    out = bytearray(data)
    rng = np.random.default_rng(seed)
    for t in m.tensors:
        if t.constant:
            assert t.data_offset is not None
            w = np.frombuffer(data, np.float32, t.data_length // 4, t.data_offset)
            w2 = (w * (1 + rng.normal(0, noise, w.shape))).astype(np.float32)
            out[t.data_offset : t.data_offset + t.data_length] = w2.tobytes()
    return bytes(out)


@pytest.mark.parametrize("seed", range(4))
def test_sine_model_with_perturbed_weights(seed: int) -> None:
    old = SINE.read_bytes()
    new = _perturbed_sine(seed)
    xs = [np.array([[x]], dtype=np.float32) for x in np.linspace(0, 2 * np.pi, 25)]
    assert not same_outputs(run(old, xs), run(new, xs))
    _prove(old, new, xs, 128)


# ---------------------------------------------------------------- refusals on the device


def test_corrupted_payload_keeps_the_old_model_running() -> None:
    arch = Arch((8, 16, 4), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    old, new = pair(arch, 21)
    xs = inputs(arch, np.random.default_rng(1), 12)
    old_out = run(old, xs)
    payload = pack_tflite(old, new, version=2, chunk_size=64)
    raw = bytearray(payload.encode())
    start, end = payload.chunk_spans()[len(payload.chunks) // 2]
    raw[start + 12 + 3] ^= 0x10  # one bit in a chunk's data, in transit
    status, region = apply_native(old, bytes(raw), chunk=64)
    assert status == Status.ChunkCrc
    assert bytes(region) == old
    assert same_outputs(run(bytes(region), xs), old_out)
    # cut short: truncated, old bytes kept
    status, region = apply_native(old, bytes(payload.encode()[: end - 5]), chunk=64)
    assert status == Status.Truncated and bytes(region) == old
    # the intact payload still works on that device
    status, region = apply_native(old, payload.encode(), chunk=64)
    assert status == Status.Ok and same_outputs(run(bytes(region), xs), run(new, xs))


def test_payload_for_another_architecture_is_refused_before_writing() -> None:
    a_old, a_new = pair(Arch((5, 7, 3), ("relu", "none")), 1)
    b_old, _ = pair(Arch((5, 8, 3), ("relu", "none")), 1)
    payload = pack_tflite(a_old, a_new, version=2).encode()
    status, region = apply_native(b_old, payload)
    assert status == Status.WrongModel and bytes(region) == b_old


def test_full_payload_for_another_layout_is_refused_and_restored() -> None:
    """A device running another export of the same architecture: same fingerprint,
    but the payload's ranges are for the old layout. The final digest refuses it
    and the device's bytes are restored."""
    arch = Arch((6, 10, 4), ("relu", "none"), "float32", tail="softmax")
    rng = np.random.default_rng(4)
    layers = train(arch, rng)
    old = export(arch, layers)
    device = next(
        d
        for seed in range(1, 60)
        if len(d := export(arch, layers, buffer_order_seed=seed)) == len(old) and d != old
    )
    assert read_tflite(device).fingerprint() == read_tflite(old).fingerprint()
    new = export(arch, retrain(layers, rng))
    payload = pack_tflite(old, new, version=2).encode()
    status, region = apply_native(device, payload)
    assert status == Status.DigestMismatch
    assert bytes(region) == device
    # a delta is refused before any write: its base CRC is not the device's
    delta = pack_tflite(old, new, version=2, base_version=1, delta=True).encode()
    status, region = apply_native(device, delta)
    assert status == Status.WrongBase and bytes(region) == device


def test_delta_of_identical_weights_is_empty_and_applies() -> None:
    old = mlp((4, 6, 2))
    payload = pack_tflite(old, old, version=2, base_version=1, delta=True)
    assert payload.header.chunk_count == 0 and payload.header.data_size == 0
    status, region = apply_native(old, payload.encode())
    assert status == Status.Ok and bytes(region) == old


def test_pack_tflite_argument_checks() -> None:
    old, new = pair(Arch((4, 5, 2), ("relu", "none")), 0)
    with pytest.raises(ValueError, match="base_version"):
        pack_tflite(old, new, version=2, delta=True)
    with pytest.raises(ValueError, match="above base version"):
        pack_tflite(old, new, version=2, base_version=2, delta=True)
    with pytest.raises(TFLiteError, match="not a TFLite model"):
        pack_tflite(b"\x00" * 64, new, version=2)


# ---------------------------------------------------------------- CLI functions


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    arch = Arch((6, 12, 3), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    old, new = pair(arch, 9, layout=3, frozen={0})
    other = export(
        Arch((6, 13, 3), ("relu", "none"), "int8", True, "softmax"),
        train(Arch((6, 13, 3), ("relu", "none")), np.random.default_rng(0)),
    )
    paths = {"old": old, "new": new, "other": other, "junk": b"\x00" * 100}
    out = {}
    for name, data in paths.items():
        p = tmp_path / f"{name}.tflite"
        p.write_bytes(data)
        out[name] = p
    return out


def _cli(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    tflite_cli.add_commands(sub)
    return p.parse_args(argv)


def _pack_args(models: dict[str, Path], tmp_path: Path, **kw: object) -> argparse.Namespace:
    base = {
        "weights": [str(models["new"])],
        "base": str(models["old"]),
        "output": str(tmp_path / "x.mota"),
        "version": 2,
        "base_version": None,
        "delta": False,
        "chunk_size": 256,
        "model": None,
        "fingerprint": None,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_diff_lists_changed_tensors(
    models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli(["diff", str(models["old"]), str(models["new"])])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "same architecture" in out
    assert "sequential/dense_1/MatMul" in out and "sequential/dense/MatMul " not in out
    assert "total: 3 of 8 weight tensors change" in out
    assert "payload: full" in out and "delta" in out


def test_cli_diff_refuses_another_architecture(models: dict[str, Path]) -> None:
    args = _cli(["diff", str(models["old"]), str(models["other"])])
    with pytest.raises(CliError) as e:
        args.func(args)
    msg = str(e.value)
    assert "\n" not in msg
    assert "not the same architecture" in msg
    assert (
        "tensor 1 'sequential/dense/MatMul' (input 1 of operator 0 FULLY_CONNECTED) shape [12, 6]"
        " vs [13, 6]" in msg
    )


def test_cli_pack_full_and_delta(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = models["old"].read_bytes()
    new = models["new"].read_bytes()
    assert tflite_cli.cmd_pack_tflite(_pack_args(models, tmp_path)) == 0
    full = (tmp_path / "x.mota").read_bytes()
    out = capsys.readouterr().out
    assert "full payload v2" in out and f"{len(full)} bytes" in out
    args = _pack_args(models, tmp_path, delta=True, base_version=1, output=str(tmp_path / "d.mota"))
    assert tflite_cli.cmd_pack_tflite(args) == 0
    delta = (tmp_path / "d.mota").read_bytes()
    out = capsys.readouterr().out
    assert f"delta saves {len(full) - len(delta)} bytes" in out
    assert len(delta) < len(full)
    want = rebase(read_tflite(old), read_tflite(new))
    for raw, version in ((full, 1), (delta, 1)):
        status, region = apply_native(old, raw, chunk=256, version=version)
        assert status == Status.Ok and bytes(region) == want


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": ["NEW"]}, "exactly one new model"),
        ({"base": None}, "give it as --base old.tflite"),
        ({"delta": True}, "--delta needs --base-version"),
        ({"delta": True, "base_version": 2}, "must be above --base-version 2"),
        ({"base_version": 1}, "--base-version is for --delta payloads"),
        ({"model": "kws"}, "--model/--fingerprint do not apply"),
        ({"chunk_size": 0}, "--chunk-size must be at least 1"),
        ({"base": "MISSING"}, "no such file"),
        ({"base": "JUNK"}, "not a TFLite model"),
        (
            {"weights": ["OTHER"]},
            "not the same architecture: .*old.tflite \\(old\\) vs .*other.tflite \\(new\\):"
            " tensor 1 'sequential/dense/MatMul' \\(input 1 of operator 0 FULLY_CONNECTED\\)"
            " shape \\[12, 6\\] vs \\[13, 6\\]",
        ),
    ],
)
def test_cli_pack_refusals(
    models: dict[str, Path], tmp_path: Path, change: dict[str, object], message: str
) -> None:
    subst = {
        "NEW": str(models["new"]),
        "OTHER": str(models["other"]),
        "JUNK": str(models["junk"]),
        "MISSING": str(tmp_path / "missing.tflite"),
    }
    fixed = {
        k: ([subst.get(x, x) for x in v] if isinstance(v, list) else subst.get(v, v))  # type: ignore[call-overload]
        for k, v in change.items()
    }
    if fixed.get("weights") == [str(models["new"])]:
        fixed["weights"] = [str(models["new"]), str(models["new"])]
    with pytest.raises(CliError, match=message) as e:
        tflite_cli.cmd_pack_tflite(_pack_args(models, tmp_path, **fixed))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.mota").exists()


def test_cli_describe_lists_tensors(models: dict[str, Path]) -> None:
    text = tflite_cli.describe_tflite(models["old"])
    m = read_tflite(models["old"].read_bytes())
    assert m.fingerprint().hex() in text
    assert "MODEL_FINGERPRINT[16]" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    rows = lines[header + 1 : header + 1 + len(m.tensors)]
    assert len(rows) == len(m.tensors)
    w = next(r for r in rows if "sequential/dense/MatMul" in r)
    assert "[12, 6]" in w and "INT8" in w and " 72 " in w
    assert "constant, quantized per-channel (12 on dim 0)" in w
    assert any("activation" not in r and "quantized per-tensor" in r for r in rows)
    with pytest.raises(CliError, match="not a TFLite model"):
        tflite_cli.describe_tflite(models["junk"])
    sine = tflite_cli.describe_tflite(SINE)
    assert "1284 bytes in 6 range(s)" in sine
    assert tflite_cli.is_tflite("a/b.TFLITE") and not tflite_cli.is_tflite("w.bin")


def test_build_mlp_validates() -> None:
    d = Dense(np.ones((3, 4), np.float32), np.zeros(3, np.float32))
    e = Dense(np.ones((2, 5), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="do not chain"):
        build_mlp([d, e])
    with pytest.raises(ValueError, match="at least one layer"):
        build_mlp([])


# ---------------------------------------------------------------- PRED: predicted weight scales


def test_scale_predictions_find_every_per_channel_layer_and_pay() -> None:
    """An int8 model with per-channel scales (bias scale = input scale x weight
    scale, rounded from double precision as a converter may: some quotients are
    an ulp off) gets one prediction per layer; the retrained delta packed with
    them is smaller, carries PRED (and KEEP) chunks and applies exactly through
    the Updater in place, through callbacks and through the Store on flash."""
    from modelota.format import codec
    from modelota.sim.device import FlashModelDevice, Layout
    from modelota.sim.flash import SimFlash

    arch = Arch((16, 64, 48, 10), ("relu", "relu", "none"), "int8", per_channel=True)
    old, new = pair(arch, 7)
    target = rebase(read_tflite(old), read_tflite(new))
    preds = scale_predictions(read_tflite(target))
    assert [c for _, c, _, _ in preds] == [64, 48, 10]
    for t, c, src, d in preds:  # close, not always exact
        guess = codec.predict(target[src : src + 4 * c], d)
        have = np.frombuffer(guess, np.int32).astype(np.int64)
        want = np.frombuffer(target, np.int32, c, t).astype(np.int64)
        assert np.abs(have - want).max() <= 4
    plain = pack_tflite(old, new, version=2, base_version=1, delta=True, chunk_size=256,
                        encodings=("raw", "runs", "rc", "diff", "lanes"))  # fmt: skip
    p = pack_tflite(old, new, version=2, base_version=1, delta=True, chunk_size=256)
    assert len(p.encode()) < len(plain.encode())
    assert any(c.pred is not None for c in p.chunks)  # type: ignore[union-attr]
    assert any(c.keep is not None for c in p.chunks)  # type: ignore[union-attr]
    raw = p.encode()
    for mode in ("ram", "callback"):
        u = Updater(bytearray(old), fingerprint=p.header.fingerprint, current_version=1,
                    buffer_len=256, target_mode=mode)  # fmt: skip
        assert u.apply(raw, list(range(5, len(raw), 97))) == Status.Ok
        assert bytes(u.weights) == target
    layout = Layout.plan(128, 4, len(old), len(raw) + 256)
    flash = SimFlash(128, layout.block_count, 4)
    flash.load(0, old)
    dev = FlashModelDevice(flash, layout, p.header.fingerprint, 1, buffer_len=256)
    assert dev.boot() == Status.Ok
    assert dev.update(raw, piece=61) == Status.Ok and dev.weights() == target


def test_no_predictions_for_float_or_per_tensor_models() -> None:
    for dtype, per_channel in (("float32", False), ("int8", False)):
        arch = Arch((16, 32, 10), ("relu", "none"), dtype, per_channel=per_channel)
        model = export(arch, train(arch, np.random.default_rng(2)))
        assert scale_predictions(read_tflite(model)) == []
