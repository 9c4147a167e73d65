"""TFLite fingerprint v2: which constants a payload may change, re-converted files.

* A model with every kind of structural constant (PAD paddings, TRANSPOSE
  perm, STRIDED_SLICE begin/end/strides, MEAN axis, RESHAPE shape) between a
  conv and a dense layer: changing any of those constants changes the
  fingerprint and ``pack`` refuses naming the tensor and the operator; a
  payload built by hand that rewrites one under the right fingerprint is
  refused by the native core (``WrongModel``) before anything is written,
  because the device holds the model's writable ranges.
* A re-serialised file (written with the flatbuffers builder through
  tflite-micro's object API: tensors renumbered, buffers reordered, names,
  description and metadata changed) of a retrained model has the deployed
  model's fingerprint; the payload made from it turns the deployed file into a
  model whose TFLM outputs equal the new file's.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from modelota.format.payload import HEADER_LEN, pack
from modelota.models.tflite import (
    TFLiteError,
    first_difference,
    pack_tflite,
    read_tflite,
    rebase,
)
from modelota.models.tflite_build import Graph, Quant
from modelota.sim.native import Updater
from modelota.status import Status
from tflite_builder import Arch, inputs, pair, run

ARENA = 64 * 1024

# the structural constants of structured(): name -> (dtype, values)
STRUCTURE = {
    "paddings": ("INT32", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)),
    "perm": ("INT32", np.array([0, 2, 1, 3], np.int32)),
    "begin": ("INT32", np.array([0, 0, 0, 0], np.int32)),
    "end": ("INT32", np.array([1, 6, 6, 3], np.int32)),
    "strides": ("INT32", np.array([1, 2, 1, 1], np.int32)),
    "axis": ("INT32", np.array([1, 2], np.int32)),
    "shape": ("INT32", np.array([1, 3], np.int32)),
}
OP_OF = {
    "paddings": "PAD",
    "perm": "TRANSPOSE",
    "begin": "STRIDED_SLICE",
    "end": "STRIDED_SLICE",
    "strides": "STRIDED_SLICE",
    "axis": "MEAN",
    "shape": "RESHAPE",
}
CHANGED = {
    "paddings": np.array([[0, 0], [2, 0], [1, 1], [0, 0]], np.int32),
    "perm": np.array([0, 1, 2, 3], np.int32),
    "begin": np.array([0, 1, 0, 0], np.int32),
    "end": np.array([1, 5, 6, 3], np.int32),
    "strides": np.array([1, 1, 2, 1], np.int32),
    "axis": np.array([2, 1], np.int32),
    "shape": np.array([-1, 3], np.int32),
}


def structured(seed: int, **override: np.ndarray) -> bytes:
    """PAD -> CONV_2D -> TRANSPOSE -> STRIDED_SLICE -> MEAN -> RESHAPE -> FULLY_CONNECTED,
    float32, with random learned weights; ``override`` replaces structural constants."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.tensor("input", [1, 4, 4, 2])

    def const(name: str) -> int:
        dtype, values = STRUCTURE[name]
        values = override.get(name, values)
        return g.tensor(name, list(values.shape), dtype, values.astype(np.int32))

    pad_out = g.tensor("padded", [1, 6, 6, 2])
    g.op("PAD", [x, const("paddings")], [pad_out])
    filt = g.tensor(
        "conv/filter", [3, 3, 3, 2], "FLOAT32", rng.normal(0, 0.5, (3, 3, 3, 2)).astype(np.float32)
    )
    bias = g.tensor("conv/bias", [3], "FLOAT32", rng.normal(0, 0.1, 3).astype(np.float32))
    conv = g.tensor("conv", [1, 6, 6, 3])
    g.op("CONV_2D", [pad_out, filt, bias], [conv], activation="RELU")
    tr = g.tensor("transposed", [1, 6, 6, 3])
    g.op("TRANSPOSE", [conv, const("perm")], [tr])
    ss = g.tensor("sliced", [1, 3, 6, 3])
    g.op("STRIDED_SLICE", [tr, const("begin"), const("end"), const("strides")], [ss])
    mean = g.tensor("mean", [1, 3])
    g.op("MEAN", [ss, const("axis")], [mean])
    rs = g.tensor("reshaped", [1, 3])
    g.op("RESHAPE", [mean, const("shape")], [rs])
    w = g.tensor("dense/w", [2, 3], "FLOAT32", rng.normal(0, 0.5, (2, 3)).astype(np.float32))
    b = g.tensor("dense/b", [2], "FLOAT32", rng.normal(0, 0.1, 2).astype(np.float32))
    y = g.tensor("output", [1, 2])
    g.op("FULLY_CONNECTED", [rs, w, b], [y])
    g.inputs, g.outputs = [x], [y]
    return g.serialize()


def tflm(model: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    it = runtime.Interpreter.from_bytes(bytes(model), arena_size=ARENA)
    out = []
    for x in xs:
        it.set_input(x, 0)
        it.invoke()
        out.append(np.array(it.get_output(0), copy=True))
    return out


def device(old: bytes, *, target_mode: str = "ram", version: int = 1) -> Updater:
    m = read_tflite(old)
    u = Updater(
        bytearray(old),
        fingerprint=m.fingerprint(),
        current_version=version,
        buffer_len=8192,
        target_mode=target_mode,
        writable=m.writable_ranges(),
    )
    assert u.init_status == Status.Ok
    return u


XS = [np.random.default_rng(7).normal(0, 1, (1, 4, 4, 2)).astype(np.float32) for _ in range(4)]


def test_structured_model_runs_and_only_learned_tensors_are_weights() -> None:
    data = structured(0)
    m = read_tflite(data)
    weights = sorted(t.name for t in m.tensors if t.weight)
    assert weights == ["conv/bias", "conv/filter", "dense/b", "dense/w"]
    fixed = sorted(t.name for t in m.tensors if t.constant and not t.weight)
    assert fixed == sorted(STRUCTURE)
    assert len(tflm(data, XS)) == 4
    # the writable ranges are exactly the four learned tensors' data (float: no quantization)
    want = sorted((t.data_offset, t.data_length) for t in m.tensors if t.weight)
    covered = sum(n for _, n in m.writable_ranges())
    assert covered == sum(n for _, n in want)


def test_retrained_structured_model_packs_and_runs_as_the_new_one() -> None:
    old, new = structured(0), structured(1)
    assert read_tflite(old).fingerprint() == read_tflite(new).fingerprint()
    for delta in (False, True):
        payload = pack_tflite(old, new, version=2, base_version=1, delta=delta).encode()
        u = device(old)
        assert u.apply(payload) == Status.Ok
        assert np.array_equal(np.array(tflm(bytes(u.weights), XS)), np.array(tflm(new, XS)))


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_changed_structural_constant_is_refused_by_pack_naming_tensor_and_operator(
    name: str,
) -> None:
    old = structured(0)
    new = structured(1, **{name: CHANGED[name]})
    mo, mn = read_tflite(old), read_tflite(new)
    assert mo.fingerprint() != mn.fingerprint()
    diff = first_difference(mo, mn)
    assert diff is not None and "\n" not in diff
    assert f"'{name}'" in diff and OP_OF[name] in diff and "fixed constant" in diff
    old_vals = [int(v) for v in STRUCTURE[name][1].reshape(-1)]
    new_vals = [int(v) for v in CHANGED[name].reshape(-1)]
    assert f"{old_vals} vs {new_vals}" in diff
    with pytest.raises(TFLiteError, match="not the same architecture"):
        pack_tflite(old, new, version=2)
    with pytest.raises(TFLiteError):
        rebase(mo, mn)


@pytest.mark.parametrize("target_mode", ["ram", "callback"])
@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_device_refuses_a_payload_that_rewrites_a_structural_constant(
    name: str, target_mode: str
) -> None:
    """A payload made by hand with the deployed fingerprint: the first chunk
    carries new learned weights and the changed constant. Refused before any
    byte is written."""
    old = structured(0)
    m = read_tflite(old)
    t = next(t for t in m.tensors if t.name == name)
    assert t.data_offset is not None and not t.weight
    evil = bytearray(rebase(m, read_tflite(structured(1))))
    evil[t.data_offset : t.data_offset + t.data_length] = CHANGED[name].astype("<i4").tobytes()
    lo = min(o for o, _ in [*m.weight_ranges(), (t.data_offset, 0)])
    hi = max(o + n for o, n in [*m.weight_ranges(), (t.data_offset, t.data_length)])
    payload = pack(
        bytes(evil),
        fingerprint=m.fingerprint(),
        version=2,
        chunk_size=1024,
        segments=[(lo, hi - lo)],
    ).encode()
    u = device(old, target_mode=target_mode)
    assert u.apply(payload) == Status.WrongModel
    assert bytes(u.weights) == old
    if target_mode == "callback":
        assert u.target_region.writes == 0
    # the same bytes repeated unchanged are fine: only the learned weights move
    good = bytearray(evil)
    good[t.data_offset : t.data_offset + t.data_length] = old[
        t.data_offset : t.data_offset + t.data_length
    ]
    payload = pack(
        bytes(good),
        fingerprint=m.fingerprint(),
        version=2,
        chunk_size=1024,
        segments=[(lo, hi - lo)],
    ).encode()
    u = device(old, target_mode=target_mode)
    assert u.apply(payload) == Status.Ok
    assert bytes(u.weights) == bytes(good)


def test_device_without_writable_ranges_accepts_the_same_payload() -> None:
    """The check is the writable table's: without it the old behaviour stands
    (which is why prepare-ei and `modelota fingerprint` print the table)."""
    old = structured(0)
    m = read_tflite(old)
    t = next(t for t in m.tensors if t.name == "shape")
    assert t.data_offset is not None
    evil = bytearray(old)
    evil[t.data_offset : t.data_offset + t.data_length] = CHANGED["shape"].tobytes()
    payload = pack(
        bytes(evil),
        fingerprint=m.fingerprint(),
        version=2,
        chunk_size=1024,
        segments=[(t.data_offset, t.data_length)],
    ).encode()
    u = Updater(bytearray(old), fingerprint=m.fingerprint(), current_version=1)
    assert u.apply(payload) == Status.Ok


def test_invalid_writable_tables_are_refused_at_init() -> None:
    old = structured(0)
    fp = read_tflite(old).fingerprint()
    for bad in ([(10, 4), (12, 4)], [(20, 4), (10, 4)], [(len(old) - 2, 4)], [(5, 0)]):
        u = Updater(bytearray(old), fingerprint=fp, current_version=1, writable=bad)
        assert u.init_status == Status.InvalidArgument, bad


# ---------------------------------------------------------------- re-serialised files


def reserialise(data: bytes, seed: int) -> bytes:
    """The same model written anew with the flatbuffers builder (tflite-micro's
    object API): tensors renumbered, buffers reordered, names, description and
    metadata changed, as another converter run lays a file out."""
    rng = np.random.default_rng(seed)
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    nb = len(m.buffers)
    border = [0, *(int(i) for i in rng.permutation(np.arange(1, nb)))]  # new -> old
    bnew = {old: new for new, old in enumerate(border)}
    m.buffers = [m.buffers[i] for i in border]
    for sg in m.subgraphs:
        nt = len(sg.tensors)
        torder = [int(i) for i in rng.permutation(nt)]  # new -> old
        tnew = {old: new for new, old in enumerate(torder)}
        sg.tensors = [sg.tensors[i] for i in torder]
        for t in sg.tensors:
            t.buffer = bnew[t.buffer]
            t.name = b"reconverted/" + (t.name or b"")
        for op in sg.operators:
            op.inputs = [tnew[int(i)] if i >= 0 else -1 for i in op.inputs]
            op.outputs = [tnew[int(i)] for i in op.outputs]
        sg.inputs = [tnew[int(i)] for i in sg.inputs]
        sg.outputs = [tnew[int(i)] for i in sg.outputs]
        sg.name = b"serving_default"
    m.description = b"re-converted by another toolchain"
    meta_buf = schema.BufferT()
    meta_buf.data = list(b"1.14.0\0")
    m.buffers.append(meta_buf)
    md = schema.MetadataT()
    md.name = b"min_runtime_version"
    md.buffer = len(m.buffers) - 1
    m.metadata = [*(m.metadata or []), md]
    # the operator-code table in another order too
    corder = list(reversed(range(len(m.operatorCodes))))
    cnew = {old: new for new, old in enumerate(corder)}
    m.operatorCodes = [m.operatorCodes[i] for i in corder]
    for sg in m.subgraphs:
        for op in sg.operators:
            op.opcodeIndex = cnew[op.opcodeIndex]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_reserialised_retrained_model_packs_and_runs_as_the_new_file(dtype: str) -> None:
    arch = Arch((6, 16, 16, 1), ("relu", "relu", "none"), dtype, per_channel=dtype == "int8")
    old, new = pair(arch, 3)
    renumbered = reserialise(new, seed=5)
    mo, mr = read_tflite(old), read_tflite(renumbered)
    # the file really is laid out anew: tensors and buffers moved
    assert [t.name for t in mo.tensors] != [t.name.removeprefix("reconverted/") for t in mr.tensors]
    assert mo.fingerprint() == mr.fingerprint(), first_difference(mo, mr)
    xs = inputs(arch, np.random.default_rng(1), 6)
    want = run(renumbered, xs)
    assert np.array_equal(np.array(want), np.array(run(new, xs)))
    for delta in (False, True):
        payload = pack_tflite(old, renumbered, version=2, base_version=1, delta=delta).encode()
        u = device(old)
        assert u.apply(payload) == Status.Ok
        assert np.array_equal(np.array(run(bytes(u.weights), xs)), np.array(want))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_any_renumbering_keeps_the_fingerprint(seed: int) -> None:
    data = structured(seed % 7)
    assert read_tflite(reserialise(data, seed)).fingerprint() == read_tflite(data).fingerprint()


def test_reserialised_file_of_another_architecture_is_named() -> None:
    arch = Arch((6, 16, 16, 1), ("relu", "relu", "none"), "int8", per_channel=True)
    other = Arch((6, 16, 17, 1), ("relu", "relu", "none"), "int8", per_channel=True)
    old, _ = pair(arch, 3)
    _, new = pair(other, 3)
    mo, mn = read_tflite(old), read_tflite(reserialise(new, 9))
    diff = first_difference(mo, mn)
    assert diff is not None and "FULLY_CONNECTED" in diff and "[16, 16] vs [17, 16]" in diff


def test_quantized_add_constant_is_learned_but_int32_index_constant_is_not() -> None:
    g = Graph()
    x = g.tensor("x", [1, 4])
    c = g.tensor("offset", [4], "FLOAT32", np.arange(4, dtype=np.float32))
    y = g.tensor("y", [1, 4])
    g.op("ADD", [x, c], [y])
    k = g.tensor("k", [4], "INT32", np.arange(4, dtype=np.int32))
    xi = g.tensor("xi", [1, 4], "INT32")
    yi = g.tensor("yi", [1, 4], "INT32")
    g.op("ADD", [xi, k], [yi])
    q = g.tensor("q", [4], "INT8", np.arange(4, dtype=np.int8), quant=Quant([0.5], [0]))
    xq = g.tensor("xq", [1, 4], "INT8", quant=Quant([0.5], [0]))
    yq = g.tensor("yq", [1, 4], "INT8", quant=Quant([0.5], [0]))
    g.op("MUL", [xq, q], [yq])
    g.inputs, g.outputs = [x, xi, xq], [y, yi, yq]
    m = read_tflite(g.serialize())
    roles = {t.name: t.weight for t in m.tensors if t.constant}
    assert roles == {"offset": True, "k": False, "q": True}


def test_cli_fingerprint_prints_writable_ranges(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from modelota.cli.app import main

    path = Path(str(tmp_path)) / "m.tflite"
    data = structured(0)
    path.write_bytes(data)
    assert main(["fingerprint", str(path)]) == 0
    out = capsys.readouterr().out
    m = read_tflite(data)
    assert m.fingerprint().hex() in out
    ranges = m.writable_ranges()
    assert f"MODEL_WRITABLE_RANGES[{2 * len(ranges)}]" in out
    flat = ", ".join(f"{o}u, {n}u" for o, n in ranges)
    assert flat in out
    assert HEADER_LEN == 96
