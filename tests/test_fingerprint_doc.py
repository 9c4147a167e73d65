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
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_tflite_fingerprint import reserialise, structured
from tflite_micro.python.tflite_micro import runtime as tflm_runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

from modelota.models.edgeimpulse import read_export
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


def doc_learned(
    n: int,
    ops: list[tuple[str, list[int], list[int]]],
    dtype: Callable[[int], str],
    outputs: set[int],
) -> list[bool]:
    """The rule of "Learned parameters": per tensor, learned or not (the doc's rule and table)."""
    any_, real, vtypes, passthru = doc_table()
    consumers: list[list[tuple[str, int, list[int]]]] = [[] for _ in range(n)]
    for name, ins, outs in ops:
        for pos, t in enumerate(ins):
            if t >= 0:
                consumers[t].append((name, pos, outs))

    def learned(t: int) -> bool:
        if not consumers[t] or t in outputs:
            return False
        for name, pos, outs in consumers[t]:
            if pos in any_.get(name, ()):
                continue
            if pos in real.get(name, ()) and dtype(t) in vtypes:
                continue
            if name in passthru and pos == 0 and len(outs) == 1 and learned(outs[0]):
                continue
            return False
        return True

    return [learned(t) for t in range(n)]


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
        learned_list = doc_learned(
            n,
            [(name, ins, outs) for name, ins, outs, *_ in ops],
            lambda t: TYPES[sg.tensors[t].type],
            {int(x) for x in sg.outputs},
        )

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
        graphs.append((sg, ops, learned_list, order))
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


# ---------------------------------------------------------------- raw and Edge Impulse

RAW_MARK = "### Raw weights"
EI_MARK = "### Edge Impulse exports"


def ei_section() -> str:
    return DOC[DOC.index(EI_MARK) : DOC.index("### Fingerprint versions")]


def formula_after(marker: str, start: str = RAW_MARK) -> str:
    """The first `SHA-256(...)[:16]` code span after ``marker`` in the section."""
    text = DOC[DOC.index(start) :]
    text = text[text.index(marker) :]
    return re.search(r"`(SHA-256\(.*?\)\[:\d+\])`", text, re.S).group(1).replace("\n", " ")


def c_string(literal: str) -> bytes:
    return literal.encode().replace(b"\\0", b"\0")


def evaluate(formula: str, fields: dict[str, bytes], each: list[dict[str, bytes]] = ()) -> bytes:
    """SHA-256(term || term || ... [|| for each X: term || ...])[:n], terms being
    "quoted" strings (\\0 a NUL) or field names the caller supplies."""
    m = re.fullmatch(r"SHA-256\((.*)\)\[:(\d+)\]", formula.strip())
    assert m, formula
    inner, n = m.group(1), int(m.group(2))
    head, loop = inner, ""
    lm = re.search(r"for each [^:]*:", inner)
    if lm:
        head, loop = inner[: lm.start()], inner[lm.end() :]

    def terms(text: str, values: dict[str, bytes]) -> bytes:
        out = b""
        for t in (x.strip() for x in text.split("||")):
            if not t:
                continue
            out += c_string(t[1:-1]) if t.startswith('"') else values[t]
        return out

    data = terms(head, fields) + b"".join(terms(loop, item) for item in each)
    return hashlib.sha256(data).digest()[:n]


def test_raw_formula_from_the_doc() -> None:
    f = formula_after(RAW_MARK)
    for name, size in (("kws", 1234), ("", 0), ("modèle", 7)):
        fields = {"name (UTF-8)": name.encode(), "decimal size (ASCII)": str(size).encode()}
        assert evaluate(f, fields) == raw_fingerprint(name, size)


# -- C text, read the way the doc says


def uncomment(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        return m.group(0) if m.group(0).startswith('"') else " "

    return re.sub(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/', repl, text, flags=re.S)


def normalised(text: str) -> str:
    text = re.sub(r"\s", "", text)
    text = re.sub(r"tensor_arena\+\d+[uU]?", "tensor_arena+?", text)
    return re.sub(r"\b[A-Za-z_]\w*::", "", text)


def c_int(tok: str) -> int:
    tok = tok.strip().rstrip("uUlL")
    neg = tok.startswith("-")
    tok = tok.lstrip("+-").strip()
    v = int(tok, 8) if re.fullmatch(r"0[0-7]+", tok) else int(tok, 0)
    return -v if neg else v


def elements(body: str) -> list[str]:
    return [t.strip() for t in body.split(",") if t.strip()]


def braced(text: str, open_at: int) -> tuple[str, int]:
    """Text between the brace at ``open_at`` and its match; and the match's index."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i], i
    raise AssertionError("unbalanced")


def rows_of(body: str) -> list[str]:
    out, i = [], 0
    while (j := body.find("{", i)) >= 0:
        row, end = braced(body, j)
        out.append(row)
        i = end + 1
    return out


ALLOCATION = {"MmapRo", "ArenaRw", "ArenaRwPersistent", "MemNone"}
ELEMENT = {"int8_t": "i1", "uint8_t": "u1", "int16_t": "<i2", "uint16_t": "<u2",
           "int32_t": "<i4", "uint32_t": "<u4", "float": "<f4", "double": "<f8"}  # fmt: skip


def eon_items(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The doc's items of an EON model, as (item kind, placeholder values)."""
    c = uncomment(text)
    tensors = [
        (m.start(), m.group(2), m.group(1), m.group(3).strip(), elements(m.group(4)))
        for m in re.finditer(
            rf"\b({'|'.join(ELEMENT)})\s+(tensor_data\d+)\s*\[([^\]]*)\][^=;]*=\s*\{{([^}}]*)\}}\s*;",
            c,
        )
    ]
    tfarrays = [
        (m.start(), m.group(3), int(m.group(1)), m.group(2), elements(m.group(4)))
        for m in re.finditer(
            r"\bTfArray\s*<\s*(\d+)\s*,\s*(int|float)\s*>\s*(\w+)\s*=\s*\{\s*\d+\s*,\s*"
            r"\{([^}]*)\}\s*\}\s*;",
            c,
        )
    ]
    quants = [
        (m.group(1), m.group(2).split("::")[-1], m.group(3).split("::")[-1], int(m.group(4)))
        for m in re.finditer(
            r"\bTfLiteAffineQuantization\s+(\w+)\s*=\s*\{\s*\(\s*TfLiteFloatArray\s*\*\s*\)\s*&"
            r"\s*([\w:]+)\s*,\s*\(\s*TfLiteIntArray\s*\*\s*\)\s*&\s*([\w:]+)\s*,\s*(-?\d+)\s*\}",
            c,
        )
    ]
    scales = {q[1] for q in quants}
    zeros = {q[2] for q in quants}
    tables = []
    for m in re.finditer(
        r"\b(?:TensorInfo_t|NodeInfo_t|TfLiteNode)\s+(tensorData|nodeData|tflNodes)\s*"
        r"\[[^\]]*\]\s*=\s*\{",
        c,
    ):
        tables.append((m.group(1), rows_of(braced(c, m.end() - 1)[0])))
    used_ops = re.search(r"\bused_operators_e\s+used_ops\s*\[[^\]]*\]\s*=\s*\{([^}]*)\}", c)

    # fixed constants: the learned-parameter rule over the tables
    tensor_rows = next(r for name, r in tables if name == "tensorData")
    node_name, node_rows = next((n, r) for n, r in tables if n in ("nodeData", "tflNodes"))
    arrays = {name: [c_int(v) for v in vals] for _, name, _n, t, vals in tfarrays if t == "int"}
    index = {
        m.group(1): [int(v) for v in elements(m.group(2))]
        for m in re.finditer(r"\b(tflTensors|tflNodes)_subgraph_index\s*\[\]\s*=\s*\{([^}]*)\}", c)
    }
    ops = []
    for i, row in enumerate(node_rows):
        if node_name == "nodeData":
            op = re.search(r"\bOP_(\w+)", row).group(1)
        else:
            op = elements(used_ops.group(1))[i].removeprefix("OP_")
        base = 0
        if "tflNodes" in index:
            g = max(k for k, first in enumerate(index["tflNodes"]) if first <= i)
            base = index["tflTensors"][g]
        ins = [
            v + base if v >= 0 else -1 for v in arrays[re.search(r"\b(inputs\d+)", row).group(1)]
        ]
        outs = [v + base for v in arrays[re.search(r"\b(outputs\d+)", row).group(1)]]
        ops.append((op, ins, outs))

    def row_type(t: int) -> str:
        for m in re.finditer(r"\bkTfLite(\w+)", tensor_rows[t]):
            if m.group(1) not in ALLOCATION:
                return m.group(1).upper()
        return ""

    learned = doc_learned(len(tensor_rows), ops, row_type, set())
    fixed = {
        m.group(0)
        for t, row in enumerate(tensor_rows)
        if (m := re.search(r"\btensor_data\d+\b", row)) and not learned[t]
    }

    def values(vals: list[str], element: str, weight: bool) -> str:
        if element in ("float", "double"):
            nums = [
                float(v.rstrip("fF")) if "x" not in v.lower() else float.fromhex(v) for v in vals
            ]
            if weight and element == "float":
                nums = [float(np.float32(x)) for x in nums]
            return ",".join(repr(x) for x in nums)
        return ",".join(str(c_int(v)) for v in vals)

    weights = [
        (pos, {"name": name, "kind": "tensor", "declaration": f"{el}[{dim}]", "element": el,
               "vals": vals, "fixed": name in fixed})
        for pos, name, el, dim, vals in tensors
    ] + [
        (pos, {"name": name, "kind": "scale" if name in scales else "zero",
               "declaration": f"TfArray<{n}, {t}>", "element": t, "vals": vals, "fixed": False})
        for pos, name, n, t, vals in tfarrays
        if name in scales or name in zeros
    ]  # fmt: skip
    items: list[tuple[str, dict[str, Any]]] = [("once", {})]
    for _, w in sorted(weights, key=lambda x: x[0]):
        w["values"] = values(w["vals"], w["element"], True)
        items.append(("weight", w))
    items += [("quant", {"name": n, "scale": s, "zero": z, "axis": a}) for n, s, z, a in quants]
    items += [
        ("tfarray", {"name": name, "n": n, "type": t, "values": values(vals, t, False)})
        for _, name, n, t, vals in tfarrays
        if name not in scales and name not in zeros
    ]
    items += [
        ("row", {"table": name, "row": i, "text": normalised(r)})
        for name, rows in tables
        for i, r in enumerate(rows)
    ]
    for m in re.finditer(r"\b(TfLite\w*Params)\s+(opdata\d+)\s*=\s*\{", c):
        items.append(("struct", {"name": m.group(2), "type": m.group(1),
                                 "text": normalised(braced(c, m.end() - 1)[0])}))  # fmt: skip
    for m in re.finditer(r"\b(u?int8_t)\s+(opdata\d+)\s*\[[^\]]*\]\s*=\s*\{([^}]*)\}", c):
        items.append(
            ("bytes", {"name": m.group(2), "type": m.group(1), "text": normalised(m.group(3))})
        )
    em = re.search(r"\benum\s+used_operators_e\s*\{([^}]*)\}", c)
    if em:
        items.append(("enum", {"text": normalised(em.group(1))}))
    if used_ops:
        items.append(("used_ops", {"text": normalised(used_ops.group(1))}))
    return items


# which item kind each row of the doc's table describes (by its first column)
ROW_KINDS = [
    (r"^once$", "once"),
    (r"^each weight array", "weight"),
    (r"^then, when that array is a fixed constant", "fixed"),
    (r"^each `TfLiteAffineQuantization`", "quant"),
    (r"^each other `TfArray`", "tfarray"),
    (r"^each row of each table", "row"),
    (r"^each `opdata` struct", "struct"),
    (r"^each `opdata` byte array", "bytes"),
    (r"^the `used_operators_e` enum", "enum"),
    (r"^the `used_ops` list", "used_ops"),
]


def doc_items_table() -> list[tuple[str, str, str]]:
    section = ei_section()
    table = section[section.index("| item | key | value |") :]
    out = []
    for what, key, value in re.findall(r"^\| (.+?) \| `(.+?)` \| `(.+?)` \|$", table, re.M):
        kind = next(k for pat, k in ROW_KINDS if re.search(pat, what))
        out.append((kind, key, value))
    return out


def fill(template: str, values: dict[str, Any]) -> str:
    return re.sub(r"<(\w+)>", lambda m: str(values.get(m.group(1), m.group(0))), template)


def doc_eon_fingerprint(text: str) -> bytes:
    items = eon_items(text)
    table = doc_items_table()
    domain = re.search(r'SHA-256\("(modelota-ei-eon-[^"]+)"', ei_section()).group(1)
    lines = []
    for i, (kind, key, value) in enumerate(table):
        if kind == "fixed":
            continue  # written right after its array
        sub = table[i + 1] if i + 1 < len(table) and table[i + 1][0] == "fixed" else None
        for k, v in items:
            if k != kind:
                continue
            lines.append(f"{fill(key, v)}={fill(value, v)}\n")
            if sub is not None and v.get("fixed"):
                lines.append(f"{fill(sub[1], v)}={fill(sub[2], v)}\n")
    return hashlib.sha256(c_string(domain) + "".join(lines).encode()).digest()[:16]


def flatbuffer_bytes(text: str, array: str) -> bytes:
    c = uncomment(text)
    m = re.search(rf"\b{re.escape(array)}\s*\[\s*\d*\s*\][^=;]*=\s*\{{([^}}]*)\}}", c)
    return bytes(c_int(v) % 256 for v in elements(m.group(1)))


def doc_export_fingerprint(root: Path) -> bytes:
    src = root / "src"
    params = uncomment((src / "model-parameters" / "model_metadata.h").read_text())
    variables = src / "model-parameters" / "model_variables.h"
    if variables.exists():
        params += "\n" + uncomment(variables.read_text())
    refs: dict[str, str] = {}
    for m in re.finditer(r"\bmodel_init\s*=\s*&\s*(\w+)_init\b|\.model\s*=\s*&?\s*(\w+)\b", params):
        refs.setdefault(m.group(1) or m.group(2), "eon" if m.group(1) else "tflite")
    if not refs:
        compiled = re.search(r"#define\s+EI_CLASSIFIER_COMPILED\s+(\d+)", params).group(1)
        refs = {"trained_model": "eon"} if compiled == "1" else {"trained_tflite": "tflite"}
    models = []
    for name, form in refs.items():
        if form == "eon":
            (path,) = src.rglob(f"{name}_compiled.cpp")
            fp = doc_eon_fingerprint(path.read_text())
        else:
            file = "tflite-trained.h" if name == "trained_tflite" else f"{name}.h"
            (path,) = (p for p in src.rglob(file) if "edge-impulse-sdk" not in p.parts)
            fp = doc_fingerprint(flatbuffer_bytes(path.read_text(), name))
        models.append({"form": form.encode(), "model fingerprint": fp})
    if len(models) == 1:
        return models[0]["model fingerprint"]
    return evaluate(formula_after("With several", EI_MARK), {}, models)


def ei_exports() -> dict[str, Any]:
    from test_edgeimpulse import FORMS
    from test_ei_models import export_with_anomaly

    out: dict[str, Any] = {
        name: (lambda root, b=b: b(root, "old").export) for name, b in FORMS.items()
    }
    out["anomaly eon+eon"] = lambda root: export_with_anomaly(root, 1, "eon")
    out["anomaly eon+tflite"] = lambda root: export_with_anomaly(root, 1, "tflite")
    return out


@pytest.mark.parametrize("name", sorted(ei_exports()))
def test_doc_definition_gives_the_tools_export_fingerprint(name: str, tmp_path: Path) -> None:
    exp = ei_exports()[name](tmp_path / "lib")
    tool = read_export(exp.root)
    assert doc_export_fingerprint(exp.root) == tool.fingerprint()
    # and model by model
    for m in tool.models:
        (path,) = (p for p in exp.root.rglob(Path(m.source).name))
        if m.form == "eon":
            assert doc_eon_fingerprint(path.read_text()) == m.fingerprint(), m.name
        else:
            assert doc_fingerprint(flatbuffer_bytes(path.read_text(), m.name)) == m.fingerprint()


def doc_region(root: Path) -> bytes:
    """The doc's weight region: each model's bytes, as the doc lays them out."""
    assert "each element little-endian in its C type" in ei_section()
    out = b""
    for m in read_export(root).models:  # the models and their order are checked above
        (path,) = (p for p in root.rglob(Path(m.source).name))
        if m.form == "tflite":
            out += flatbuffer_bytes(path.read_text(), m.name)
            continue
        for kind, w in eon_items(path.read_text()):
            if kind != "weight":
                continue
            element = "int32_t" if w["element"] == "int" else w["element"]
            if element in ("float", "double"):
                vals = [float(v.rstrip("fF")) for v in w["vals"]]
            else:
                vals = [c_int(v) for v in w["vals"]]
            out += np.array(vals, dtype=ELEMENT[element]).tobytes()
    return out


@pytest.mark.parametrize("name", ["eon2025_tflnodes", "eon2024_g0_hex", "anomaly eon+tflite"])
def test_doc_weight_region_is_the_tools(name: str, tmp_path: Path) -> None:
    exp = ei_exports()[name](tmp_path / "lib")
    assert doc_region(exp.root) == read_export(exp.root).weights_bytes()


def _with_doc(text: str) -> None:
    global DOC
    DOC = text


def test_ei_doc_definition_can_fail(tmp_path: Path) -> None:
    """Another doc gives another answer: the items table in another order, a
    RESHAPE shape counted as learned, another export or raw formula."""
    from test_edgeimpulse import FORMS

    exp = FORMS["eon2025_tflnodes"](tmp_path / "lib", "old").export
    multi = ei_exports()["anomaly eon+tflite"](tmp_path / "multi")
    (src,) = exp.root.rglob("*_compiled.cpp")
    want = read_export(exp.root).fingerprint()
    want_multi = read_export(multi.root).fingerprint()
    saved = DOC
    quant = "| each `TfLiteAffineQuantization`, in file order |"
    other = "| each other `TfArray`, in file order |"
    q_row = re.search(rf"^{re.escape(quant)}.*$", saved, re.M).group(0)
    o_row = re.search(rf"^{re.escape(other)}.*$", saved, re.M).group(0)
    mutations = {
        "rows swapped": saved.replace(q_row, "@Q@").replace(o_row, q_row).replace("@Q@", o_row),
        "axis renamed": saved.replace(", axis <axis>`", ", dim <axis>`"),
        "reshape learned": saved.replace(
            "| `PRELU` | 1 | any |", "| `PRELU` | 1 | any |\n| `RESHAPE` | 1 | any |"
        ),
        "form after": saved.replace(
            'form || "\\0" || model fingerprint)', 'model fingerprint || "\\0" || form)'
        ),
        "raw": saved.replace('name (UTF-8) || "\\0" || decimal', "name (UTF-8) || decimal"),
    }
    try:
        assert doc_eon_fingerprint(src.read_text()) == want
        for what, text in mutations.items():
            assert text != saved, what
            _with_doc(text)
            if what == "raw":
                f = formula_after(RAW_MARK)
                fields = {"name (UTF-8)": b"kws", "decimal size (ASCII)": b"12"}
                assert evaluate(f, fields) != raw_fingerprint("kws", 12)
            elif what == "form after":
                assert doc_export_fingerprint(multi.root) != want_multi
            else:
                assert doc_eon_fingerprint(src.read_text()) != want, what
    finally:
        _with_doc(saved)


# ---------------------------------------------------------------- writable ranges on a device

DRIVER = r"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include "modelota.h"

int model_updater_init(modelota_updater* u, modelota_config* cfg, uint32_t version);

#include "model_bytes.inc"  /* defines model_tflite, model_tflite_factory, model_tflite_len */

static std::vector<uint8_t> slurp(const char* path) {
    std::vector<uint8_t> out;
    FILE* f = fopen(path, "rb");
    if (f == NULL) exit(2);
    int c;
    while ((c = fgetc(f)) != EOF) out.push_back(static_cast<uint8_t>(c));
    fclose(f);
    return out;
}

int main(int argc, char** argv) {
    uint32_t version = 1;
    for (int i = 1; i < argc; ++i) {
        modelota_updater u;
        modelota_config cfg;
        int st = model_updater_init(&u, &cfg, version);
        if (st == MODELOTA_OK) st = modelota_begin(&u);
        std::vector<uint8_t> p = slurp(argv[i]);
        if (st == MODELOTA_OK) st = modelota_feed(&u, p.data(), p.size());
        if (st == MODELOTA_OK) st = modelota_finish(&u);
        version = modelota_current_version(&u);
        uint32_t crc = modelota_crc32(0, model_tflite, model_tflite_len);
        printf("%s %s %u %08x\n", argv[i], modelota_status_str(st), (unsigned)version,
               (unsigned)crc);
    }
    return 0;
}
"""


def doc_block(lang: str) -> str:
    """The one block of ``lang`` that FORMAT.md marks as run by this test
    (``<!-- doc-test: tested-by=tests/test_fingerprint_doc.py -->``)."""
    from docblocks import marked_tested_by

    (block,) = [b for b in marked_tested_by("tests/test_fingerprint_doc.py") if b.lang == lang]
    return block.text


def test_writable_ranges_how_to_compiles_and_refuses_a_structural_change(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import zlib

    from modelota.format.payload import pack
    from modelota.models.tflite import pack_tflite, rebase

    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("host g++ is not installed")
    root = Path(__file__).resolve().parent.parent
    old, new = structured(0), structured(1)
    (tmp_path / "model.tflite").write_bytes(old)
    # the shell block, verbatim, with the installed command
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    sh = doc_block("sh")
    r = subprocess.run(
        ["bash", "-e", "-c", sh], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    header = (tmp_path / "model_fingerprint.h").read_text()
    m = read_tflite(old)
    assert "MODEL_FINGERPRINT[16]" in header and "MODEL_WRITABLE_RANGES" in header
    assert "0x" + m.fingerprint()[:1].hex() in header

    (tmp_path / "config.cpp").write_text(doc_block("c"))
    (tmp_path / "driver.cpp").write_text(DRIVER)
    body = ", ".join(str(b) for b in old)
    (tmp_path / "model_bytes.inc").write_text(
        f"uint8_t model_tflite[{len(old)}] = {{{body}}};\n"
        f"extern const uint8_t model_tflite_factory[{len(old)}] = {{{body}}};\n"
        f"extern const uint32_t model_tflite_len = {len(old)};\n"
    )
    core = sorted((root / "firmware_lib" / "modelota").glob("*.cpp"))
    exe = tmp_path / "driver"
    cmd = [gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-O1",
           f"-I{root / 'firmware_lib'}", f"-I{tmp_path}", str(tmp_path / "config.cpp"),
           str(tmp_path / "driver.cpp"), *map(str, core), "-o", str(exe)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]

    good = pack_tflite(old, new, version=2, chunk_size=256)
    (tmp_path / "good.mota").write_bytes(good.encode())
    # the same weights, plus one byte of the RESHAPE shape constant changed
    region = bytearray(rebase(m, read_tflite(new)))
    shape = next(t for t in m.tensors if t.name == "shape")
    assert shape.data_offset is not None and not shape.weight
    region[shape.data_offset] ^= 0x01
    wrong = pack(bytes(region), fingerprint=m.fingerprint(), version=3, chunk_size=256)
    (tmp_path / "wrong.mota").write_bytes(wrong.encode())
    r = subprocess.run([str(exe), "wrong.mota", "good.mota", "wrong.mota"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    new_crc = f"{zlib.crc32(rebase(m, read_tflite(new))):08x}"
    old_crc = f"{zlib.crc32(old):08x}"
    # refused before its structural byte is written; what earlier chunks wrote
    # is undone (from the factory copy: version 1 again once it held version 2)
    assert r.stdout.splitlines() == [
        f"wrong.mota WrongModel 1 {old_crc}",
        f"good.mota Ok 2 {new_crc}",
        f"wrong.mota WrongModel 1 {old_crc}",
    ], r.stdout
