# ruff: noqa: B023
"""docs/FORMAT.md "Fingerprints", reimplemented from the text alone.

The TFLite fingerprint is recomputed here from the doc's steps and its
learned-parameter table (parsed from the markdown), reading the files with
tflite-micro's own schema module (object API), not with modelota's reader;
the result must equal ``modelota``'s on several models (converter-made
sine_float.tflite, float and int8 MLPs, the structural-constant model, a
re-serialised file). The raw and Edge Impulse export formulas are checked
the same way.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_tflite_fingerprint import reserialise, structured
from tflite_micro.python.tflite_micro import runtime as tflm_runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

from modelota.models.raw import raw_fingerprint
from modelota.models.tflite import read_tflite
from tflite_builder import Arch, pair

DOC = (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").read_text()
SINE = Path(tflm_runtime.__file__).parent / "sine_float.tflite"
OPS = {v: k for k, v in vars(S.BuiltinOperator).items() if isinstance(v, int)}
TYPES = {v: k for k, v in vars(S.TensorType).items() if isinstance(v, int)}


def doc_table() -> tuple[dict[str, set[int]], dict[str, set[int]], set[str], set[str]]:
    section = DOC[DOC.index("**Learned parameters.**") : DOC.index("**Canonical numbering.**")]
    any_, real, passthru = {}, {}, set()
    for op, pos, kind in re.findall(r"^\| `(\w+)` \| ([\d, -]+) \| ([^|]+) \|$", section, re.M):
        ps: set[int] = set()
        for part in pos.split(","):
            a, _, b = part.strip().partition("-")
            ps |= set(range(int(a), int(b or a) + 1))
        if kind.strip() == "any":
            any_[op] = ps
        elif kind.strip() == "real-valued":
            real[op] = ps
        else:
            passthru.add(op)
    types = set(
        re.search(r"one of ([A-Z0-9, ]+)\n?", section.replace("\n", " "))
        .group(1)
        .replace(",", " ")
        .split()
    )
    return any_, real, types, passthru


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def i64(n: int) -> bytes:
    return struct.pack("<q", n)


def bts(b: bytes) -> bytes:
    return u32(len(b)) + b


def ints(v: Any) -> bytes:
    v = [] if v is None else [int(x) for x in v]
    return u32(len(v)) + b"".join(i64(x) for x in v)


def key(name: str) -> str:
    return name.lower().replace("_", "")


def table(obj: Any) -> dict[str, Any]:
    """A table value: fields differing from the schema default (object API)."""
    default = type(obj)()
    out: dict[str, Any] = {}
    for name, v in vars(obj).items():
        if v is None or (isinstance(v, (list, np.ndarray, bytes)) and len(v) == 0):
            continue
        if hasattr(v, "__dict__") and not isinstance(v, (int, float)):
            out[key(name)] = table(v)
        elif isinstance(v, (list, np.ndarray)):
            out[key(name)] = [table(x) if hasattr(x, "__dict__") else x for x in list(v)]
        elif v != getattr(default, name):
            out[key(name)] = v
    return out


def val(v: Any) -> bytes:
    if v is None:
        return b"N"
    if isinstance(v, (bool, int, np.integer)):
        return b"I" + i64(int(v))
    if isinstance(v, (float, np.floating)):
        return b"F" + struct.pack("<d", float(v))
    if isinstance(v, (bytes, bytearray)):
        return b"S" + bts(bytes(v))
    if isinstance(v, str):
        return b"S" + bts(v.encode())
    if isinstance(v, list):
        return b"L" + u32(len(v)) + b"".join(val(x) for x in v)
    ks = sorted(v)
    return b"T" + u32(len(ks)) + b"".join(bts(k.encode()) + val(v[k]) for k in ks)


def doc_fingerprint(data: bytes) -> bytes:
    any_, real, vtypes, passthru = doc_table()
    m = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    out = i64(m.version) + u32(len(m.subgraphs))
    bufdata = [bytes(bytearray(b.data)) if b.data is not None else b"" for b in m.buffers]
    graphs = []
    for sg in m.subgraphs:
        n = len(sg.tensors)
        ops = []
        for op in sg.operators:
            oc = m.operatorCodes[op.opcodeIndex]
            code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
            ops.append(
                (
                    OPS.get(code, ""),
                    [int(x) for x in op.inputs],
                    [int(x) for x in op.outputs],
                    op,
                    oc,
                    code,
                )
            )
        consumers: list[list[tuple[str, int, list[int]]]] = [[] for _ in range(n)]
        for name, ins, outs, *_ in ops:
            for pos, t in enumerate(ins):
                if t >= 0:
                    consumers[t].append((name, pos, outs))
        outputs = {int(x) for x in sg.outputs}

        def learned(t: int) -> bool:
            if not consumers[t] or t in outputs:
                return False
            for name, pos, outs in consumers[t]:
                if pos in any_.get(name, ()):
                    continue
                if pos in real.get(name, ()) and TYPES[sg.tensors[t].type] in vtypes:
                    continue
                if name in passthru and pos == 0 and len(outs) == 1 and learned(outs[0]):
                    continue
                return False
            return True

        order: list[int] = []
        for t in [
            *sg.inputs,
            *(
                x
                for o in ops
                for x in [
                    *o[1],
                    *o[2],
                    *(o[3].intermediates if o[3].intermediates is not None else []),
                ]
            ),
            *sg.outputs,
            *range(n),
        ]:
            if t >= 0 and int(t) not in order:
                order.append(int(t))
        graphs.append((sg, ops, [learned(t) for t in range(n)], order))
    fixed_bufs = {
        sg.tensors[t].buffer
        for sg, _o, lr, _ in graphs
        for t in range(len(sg.tensors))
        if bufdata[sg.tensors[t].buffer] and not lr[t]
    }
    bufnum: dict[int, int] = {}
    for sg, ops, lr, order in graphs:
        canon = {t: c for c, t in enumerate(order)}
        cn = lambda ids: [canon[int(t)] if t >= 0 else -1 for t in (ids if ids is not None else [])]  # noqa: E731
        out += u32(len(sg.tensors)) + u32(len(ops))
        for _name, ins, outs, op, oc, code in ops:
            out += i64(code) + bts(oc.customCode or b"") + i64(oc.version)
            out += ints(cn(ins)) + ints(cn(outs)) + ints(cn(op.intermediates))
            out += ints(
                [
                    int(bool(x))
                    for x in (
                        op.mutatingVariableInputs if op.mutatingVariableInputs is not None else []
                    )
                ]
            )
            for t_, o_ in (
                (op.builtinOptionsType, op.builtinOptions),
                (op.builtinOptions2Type, op.builtinOptions2),
            ):
                out += val({"type": t_, **table(o_)} if t_ else None)
            custom = (
                bytes(bytearray(op.customOptions))
                if op.customOptions is not None and len(op.customOptions)
                else None
            )
            out += val(custom) + i64(op.customOptionsFormat if custom is not None else 0)
        for t in order:
            tt = sg.tensors[t]
            out += ints(tt.shape) + (
                i64(0) if tt.shapeSignature is None else i64(1) + ints(tt.shapeSignature)
            )
            out += i64(tt.type) + i64(int(tt.isVariable)) + i64(int(tt.hasRank))
            raw = bufdata[tt.buffer]
            if not raw:
                out += i64(0)
            else:
                num = bufnum.setdefault(tt.buffer, len(bufnum))
                if lr[t] and tt.buffer not in fixed_bufs:
                    out += i64(1) + i64(num) + i64(len(raw))
                else:
                    out += i64(2) + i64(num) + bts(raw)
            q = tt.quantization
            counts = [
                len(x) if x is not None else 0
                for x in ((q.scale, q.zeroPoint, q.min, q.max) if q else ())
            ]
            if q is None or (not any(counts) and not q.detailsType):
                out += b"N"
            else:
                out += (
                    b"Q"
                    + b"".join(i64(c) for c in counts)
                    + i64(q.quantizedDimension)
                    + i64(q.detailsType)
                )
                out += val(table(q.details) if q.details is not None else None)
            extra: dict[str, Any] = {}
            if tt.sparsity is not None:
                extra["sparsity"] = table(tt.sparsity)
            if tt.variantTensors:
                extra["varianttensors"] = [table(v) for v in tt.variantTensors]
            out += val(extra)
        out += ints(cn(sg.inputs)) + ints(cn(sg.outputs))
    return hashlib.sha256(b"modelota-tflite-v2\0" + out).digest()[:16]


def models() -> dict[str, bytes]:
    f_old, _ = pair(Arch((6, 16, 16, 1), ("relu", "relu", "none")), 3)
    q_old, q_new = pair(Arch((5, 9, 4), ("relu", "none"), "int8", True, "softmax"), 4)
    return {
        "sine (converter)": SINE.read_bytes(),
        "float mlp": f_old,
        "int8 per-channel": q_old,
        "int8 re-serialised": reserialise(q_new, 2),
        "structural constants": structured(0),
    }


@pytest.mark.parametrize("name", sorted(models()))
def test_doc_definition_gives_the_tools_fingerprint(name: str) -> None:
    data = models()[name]
    assert doc_fingerprint(data) == read_tflite(data).fingerprint()


def test_doc_table_is_the_tools_table() -> None:
    from modelota.models import roles

    any_, real, types, passthru = doc_table()
    assert any_ == {k: set(v) for k, v in roles.WEIGHT_INPUTS.items()}
    assert real == {k: set(v) for k, v in roles.VALUE_INPUTS.items()}
    assert types == set(roles.VALUE_TYPES) and passthru == set(roles.PASS_THROUGH)


def test_doc_definition_can_fail() -> None:
    """The reimplementation is not vacuous: another learned-parameter table
    (a RESHAPE shape counted as learned) gives another fingerprint."""
    data = structured(0)
    want = read_tflite(data).fingerprint()
    global DOC
    saved = DOC
    try:
        DOC = DOC.replace("| `PRELU` | 1 | any |", "| `PRELU` | 1 | any |\n| `RESHAPE` | 1 | any |")
        assert doc_fingerprint(data) != want
    finally:
        DOC = saved


def test_raw_and_export_formulas() -> None:
    assert (
        raw_fingerprint("kws", 1234)
        == hashlib.sha256(b"modelota-raw-v1\0kws\x001234").digest()[:16]
    )
    assert (
        "modelota-raw-v1" in DOC and "modelota-ei-export-v2" in DOC and "modelota-ei-eon-v2" in DOC
    )
