"""TensorFlow Lite models as ModelOTA weight regions.

A device holds the whole ``.tflite`` flatbuffer as a byte array and its
interpreter (TFLM) reads the weights from it in place. A ModelOTA payload for
such a device treats the *whole file* as the weight region
(``weights_size == len(old.tflite)``) and its segments rewrite only the bytes
that carry weights: the data of constant buffers and the quantization
parameters (scale, zero point, min, max) of quantized tensors. Everything else
(tables, vtables, offsets, shapes, operators) stays byte for byte.

The flatbuffer is read with the maintained ``tflite`` schema package; byte
positions of vectors come from its tables (``Table.Vector``), never from
hand-rolled offsets.

* :func:`read_tflite` parses a file into a :class:`TFLiteModel`: tensors with
  their byte ranges, :meth:`TFLiteModel.weight_ranges`,
  :meth:`TFLiteModel.fingerprint` (the architecture, not the weight values);
* :func:`first_difference` names the first architectural difference of two models;
* :func:`rebase` writes a retrained model's weights into the old model's layout;
* :func:`pack_tflite` builds the payload (full or delta) for devices running the old file;
* :func:`diff_models` lists the tensors whose bytes change.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import tflite
from flatbuffers.table import Table as _Table
from tflite.utils import BUILTIN_OPCODE2NAME

from ..format.constants import FORMAT_VERSION
from ..format.payload import CHUNK_OVERHEAD, FINGERPRINT_LEN, Payload, pack

FILE_IDENTIFIER = b"TFL3"
FINGERPRINT_DOMAIN = b"modelota-tflite-v1\0"
_MAX_DEPTH = 8

_TYPE_NAMES = {
    v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_") and isinstance(v, int)
}
_OPTION_NAMES = {
    v: k
    for k, v in vars(tflite.BuiltinOptions).items()
    if not k.startswith("_") and isinstance(v, int)
}
_OPTION2_NAMES = {
    v: k
    for k, v in vars(tflite.BuiltinOptions2).items()
    if not k.startswith("_") and isinstance(v, int)
}
_DETAILS_NAMES = {
    v: k
    for k, v in vars(tflite.QuantizationDetails).items()
    if not k.startswith("_") and isinstance(v, int)
}
# union-valued fields inside tables we describe by reflection: field -> enum class
_UNION_ENUMS: dict[str, Any] = {
    "ArraySegments": tflite.SparseIndexVector,
    "ArrayIndices": tflite.SparseIndexVector,
    "Details": tflite.QuantizationDetails,
}


class TFLiteError(ValueError):
    """The bytes are not a TFLite model this tool can handle, or two models do not match."""


# ---------------------------------------------------------------- model info


@dataclass(frozen=True)
class QuantizationInfo:
    """Quantization parameters of one tensor: where their vectors sit in the file.

    Offsets are absolute positions of the first element inside the file
    (``None`` when the vector is absent); lengths are in bytes.
    """

    scale_offset: int | None
    scale_length: int
    zero_point_offset: int | None
    zero_point_length: int
    quantized_dimension: int
    num_scales: int
    num_zero_points: int
    min_offset: int | None = None
    min_length: int = 0
    max_offset: int | None = None
    max_length: int = 0
    details_type: int = 0

    def ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of the value vectors: they change between trainings."""
        out = []
        for off, length in (
            (self.scale_offset, self.scale_length),
            (self.zero_point_offset, self.zero_point_length),
            (self.min_offset, self.min_length),
            (self.max_offset, self.max_length),
        ):
            if off is not None and length > 0:
                out.append((off, length))
        return out

    def layout(self) -> dict[str, int]:
        """What the fingerprint keeps of the quantization: counts, never values."""
        return {
            "scales": self.num_scales,
            "zero_points": self.num_zero_points,
            "min": self.min_length // 4,
            "max": self.max_length // 4,
            "quantized_dimension": self.quantized_dimension,
            "details": self.details_type,
        }


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of one subgraph and where its weight bytes sit in the file."""

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int
    constant: bool
    data_offset: int | None
    data_length: int
    quantization: QuantizationInfo | None
    quantized_dimension: int
    shape_signature: tuple[int, ...] | None = None
    is_variable: bool = False

    @property
    def quantized(self) -> bool:
        return self.quantization is not None

    @property
    def label(self) -> str:
        where = f"subgraph {self.subgraph} " if self.subgraph else ""
        return f"{where}tensor {self.index} '{self.name}'"

    def ranges(self) -> list[tuple[int, int]]:
        """Weight byte ranges of this tensor: constant data, then quantization vectors."""
        out = []
        if self.constant and self.data_offset is not None and self.data_length > 0:
            out.append((self.data_offset, self.data_length))
        if self.quantization is not None:
            out += self.quantization.ranges()
        return out

    @property
    def weight_bytes(self) -> int:
        return sum(n for _, n in self.ranges())


@dataclass(frozen=True)
class OperatorInfo:
    subgraph: int
    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class _Item:
    """One entry of the canonical description: ``key`` and ``value`` are hashed;
    ``text`` explains a difference in words (it may use names, which are not hashed)."""

    key: str
    value: Any
    text: Callable[[Any, Any], str]


@dataclass
class TFLiteModel:
    """A parsed .tflite file (see :func:`read_tflite`)."""

    data: bytes
    version: int
    description: str
    tensors: list[TensorInfo]
    operators: list[OperatorInfo]
    _items: list[_Item] = field(default_factory=list, repr=False)
    _ranges: list[tuple[int, int]] = field(default_factory=list, repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def tensor(self, subgraph: int, index: int) -> TensorInfo:
        for t in self.tensors:
            if t.subgraph == subgraph and t.index == index:
                return t
        raise KeyError(f"no tensor {index} in subgraph {subgraph}")

    def weight_ranges(self) -> list[tuple[int, int]]:
        """Sorted, distinct (offset, length) ranges of every weight byte in the file:
        constant buffers' data and quantization vectors. Not merged."""
        return list(self._ranges)

    @property
    def weight_bytes(self) -> int:
        return sum(n for _, n in self._ranges)

    def fingerprint(self) -> bytes:
        """16 bytes identifying the architecture, never the weight values.

        SHA-256 over a canonical description: per operator its resolved
        operator code (builtin code, custom code, version), inputs, outputs,
        intermediates and options; per tensor its shape, shape signature, type,
        whether it has constant data and how many bytes (buffers numbered by
        first use, so the order of the buffers table does not matter),
        is-variable, quantization layout (counts and quantized dimension) and
        sparsity; subgraph inputs and outputs. Not hashed: tensor, subgraph and
        signature names, weight bytes, quantization values, description,
        metadata and the order of the operator-codes and buffers tables.
        """
        canon = [[item.key, item.value] for item in self._items]
        text = json.dumps(canon, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(FINGERPRINT_DOMAIN + text.encode()).digest()
        return digest[:FINGERPRINT_LEN]


# ---------------------------------------------------------------- parsing


def read_tflite(data: bytes | bytearray | memoryview) -> TFLiteModel:
    """Parses a .tflite flatbuffer; raises :class:`TFLiteError` on anything else."""
    data = bytes(data)
    if len(data) < 8:
        raise TFLiteError(f"{len(data)} bytes is too short for a TFLite flatbuffer")
    ident = data[4:8]
    if ident != FILE_IDENTIFIER:
        raise TFLiteError(
            f"file identifier is {ident!r}, expected {FILE_IDENTIFIER!r}: not a TFLite model"
        )
    try:
        return _Reader(data).read()
    except TFLiteError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, KeyError) as e:
        raise TFLiteError(f"not a valid TFLite flatbuffer ({type(e).__name__}: {e})") from e


def _vector(
    tab: flatbuffers.table.Table, slot: int, elem: int, size: int
) -> tuple[int | None, int]:
    """(absolute offset of the first element, length in bytes) of a vector field."""
    o = tab.Offset(slot)
    if o == 0:
        return None, 0
    n = tab.VectorLen(o)
    start = tab.Vector(o)
    if start < 0 or n < 0 or start + n * elem > size:
        raise TFLiteError(f"vector at {start} with {n} elements runs past the end of the file")
    return start, n * elem


def _name(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


def _dims(arr: Any) -> list[int]:
    if isinstance(arr, int):  # the generated AsNumpy() returns 0 when absent
        return []
    return [int(v) for v in arr]


def _op_name(code: tuple[int, str | None, int]) -> str:
    builtin, custom, _ = code
    if custom is not None:
        return f"CUSTOM '{custom}'"
    return BUILTIN_OPCODE2NAME.get(builtin, f"builtin {builtin}")


def _json_safe(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else repr(value)
    if isinstance(value, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(value).hexdigest()[:32]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def _reflect(obj: Any, depth: int = 0) -> dict[str, Any]:
    """Every field of a generated table object, by its accessors: values, not layout.

    Scalars as numbers, vectors as lists, sub-tables recursively, byte/string
    vectors hashed. Absent fields read as their schema defaults, so two files
    that spell a table differently (defaults written or omitted) describe equal.
    """
    if depth > _MAX_DEPTH:
        raise TFLiteError("tables nested too deeply")
    cls = type(obj)
    members = vars(cls)
    out: dict[str, Any] = {}
    for name in sorted(members):
        fn = members[name]
        if name.startswith("_") or not callable(fn) or isinstance(fn, (classmethod, staticmethod)):
            continue
        if name == "Init" or name.endswith(("IsNone", "AsNumpy")):
            continue
        derived = [name.removesuffix(s) for s in ("Length", "Type") if name.endswith(s)]
        if derived and derived[0] in members:
            continue  # the length of a vector or the type of a union: read with it
        argc = fn.__code__.co_argcount
        if argc == 2 and name + "Length" in members:
            n = getattr(obj, name + "Length")()
            items = [getattr(obj, name)(j) for j in range(n)]
            out[name] = [
                _reflect(v, depth + 1) if hasattr(v, "_tab") else _json_safe(v) for v in items
            ]
        elif argc == 1:
            value = fn(obj)
            if name + "Type" in members and (value is None or isinstance(value, _Table)):
                out[name] = _union(name, int(getattr(obj, name + "Type")()), value, depth)
            elif hasattr(value, "_tab"):
                out[name] = _reflect(value, depth + 1)
            else:
                out[name] = _json_safe(value)
    return out


def _union(field_name: str, utype: int, table: Any, depth: int) -> Any:
    if utype == 0 or table is None:
        return None
    enum = _UNION_ENUMS.get(field_name)
    names = {v: k for k, v in vars(enum).items() if isinstance(v, int)} if enum else {}
    cls = getattr(tflite, names.get(utype, ""), None)
    if cls is None:
        return {"union_type": utype}
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return {"union_type": utype, "value": _reflect(obj, depth + 1)}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.model = tflite.Model.GetRootAs(data, 0)
        self.items: list[_Item] = []

    def add(self, key: str, value: Any, text: Callable[[Any, Any], str]) -> None:
        self.items.append(_Item(key, _json_safe(value), text))

    # -- buffers

    def buffer_range(self, index: int) -> tuple[int | None, int]:
        """Where a buffer's bytes sit: its data vector, or Buffer.offset/size
        (data stored after the flatbuffer, for models above 2 GB)."""
        m = self.model
        if not 0 <= index < m.BuffersLength():
            raise TFLiteError(f"buffer index {index} out of range ({m.BuffersLength()} buffers)")
        buf = m.Buffers(index)
        ext_off, ext_size = int(buf.Offset()), int(buf.Size())
        if ext_off > 1:
            if ext_off + ext_size > self.size:
                raise TFLiteError(
                    f"buffer {index} points at [{ext_off}, {ext_off + ext_size}) outside the"
                    f" {self.size}-byte file"
                )
            return ext_off, ext_size
        return _vector(buf._tab, 4, 1, self.size)

    # -- the whole model

    def read(self) -> TFLiteModel:
        m = self.model
        version = int(m.Version())
        self.add("schema_version", version, lambda a, b: f"schema version {a} vs {b}")
        codes = []
        for i in range(m.OperatorCodesLength()):
            oc = m.OperatorCodes(i)
            builtin = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            custom = oc.CustomCode()
            codes.append(
                (builtin, custom.decode("utf-8", "replace") if custom else None, int(oc.Version()))
            )
        n_sg = m.SubgraphsLength()
        self.add("subgraphs", n_sg, lambda a, b: f"{a} subgraphs vs {b}")
        tensors: list[TensorInfo] = []
        operators: list[OperatorInfo] = []
        canon_buffer: dict[int, int] = {}  # data offset -> number in order of first use
        for s in range(n_sg):
            self.read_subgraph(s, codes, canon_buffer, tensors, operators)
        ranges = sorted({r for t in tensors for r in t.ranges()})
        for (o1, n1), (o2, n2) in itertools.pairwise(ranges):
            if o2 < o1 + n1:
                raise TFLiteError(f"weight ranges [{o1}, {o1 + n1}) and [{o2}, {o2 + n2}) overlap")
        desc = m.Description()
        return TFLiteModel(
            data=self.data,
            version=version,
            description=_name(desc),
            tensors=tensors,
            operators=operators,
            _items=self.items,
            _ranges=ranges,
        )

    def read_subgraph(
        self,
        s: int,
        codes: list[tuple[int, str | None, int]],
        canon_buffer: dict[int, int],
        tensors: list[TensorInfo],
        operators: list[OperatorInfo],
    ) -> None:
        sg = self.model.Subgraphs(s)
        sgp = f"subgraph {s} " if s else ""
        n_t = sg.TensorsLength()
        infos = [self.read_tensor(s, sg.Tensors(i), i) for i in range(n_t)]
        tensors += infos

        def tname(i: int) -> str:
            return f"'{infos[i].name}'" if 0 <= i < n_t else str(i)

        # operators first: they are the architecture a reader recognises
        n_op = sg.OperatorsLength()
        self.add(f"sg{s}.operators", n_op, lambda a, b: f"{sgp}{a} operators vs {b}")
        for k in range(n_op):
            op = sg.Operators(k)
            idx = int(op.OpcodeIndex())
            if not 0 <= idx < len(codes):
                raise TFLiteError(f"{sgp}operator {k} uses opcode {idx} of {len(codes)}")
            code = codes[idx]
            name = _op_name(code)
            inputs = tuple(_dims(op.InputsAsNumpy()))
            outputs = tuple(_dims(op.OutputsAsNumpy()))
            operators.append(OperatorInfo(s, k, name, inputs, outputs))
            where = f"{sgp}operator {k}"
            self.add(
                f"sg{s}.op{k}.code",
                list(code),
                lambda a, b, where=where: f"{where}: {_code_text(a, b)}",
            )
            for fld, value in (
                ("inputs", inputs),
                ("outputs", outputs),
                ("intermediates", _dims(op.IntermediatesAsNumpy())),
                (
                    "mutating_variable_inputs",
                    [bool(v) for v in _dims(op.MutatingVariableInputsAsNumpy())],
                ),
            ):
                self.add(
                    f"sg{s}.op{k}.{fld}",
                    list(value),
                    lambda a, b, w=f"{where} ({name}) {fld}": f"{w} {a} vs {b}",
                )
            self.add(
                f"sg{s}.op{k}.options",
                self.options(op),
                lambda a, b, w=f"{where} ({name}) options": f"{w}: {_dict_diff(a, b)}",
            )
        self.add(f"sg{s}.tensors", n_t, lambda a, b: f"{sgp}{a} tensors vs {b}")
        for t in infos:
            self.tensor_items(t, canon_buffer)
        for fld, value in (
            ("inputs", _dims(sg.InputsAsNumpy())),
            ("outputs", _dims(sg.OutputsAsNumpy())),
        ):
            shown = ", ".join(tname(i) for i in value)
            self.add(
                f"sg{s}.{fld}",
                value,
                lambda a, b, f=fld, shown=shown: f"{sgp}model {f} {a} ({shown}) vs {b}",
            )

    def options(self, op: Any) -> Any:
        out: dict[str, Any] = {}
        t1 = int(op.BuiltinOptionsType())
        if t1:
            out["builtin"] = self.union_options(t1, op.BuiltinOptions(), _OPTION_NAMES)
        t2 = int(op.BuiltinOptions2Type())
        if t2:
            out["builtin2"] = self.union_options(t2, op.BuiltinOptions2(), _OPTION2_NAMES)
        start, n = _vector(op._tab, 14, 1, self.size)
        if start is not None:
            out["custom"] = self.data[start : start + n]
            out["custom_format"] = int(op.CustomOptionsFormat())
        if int(op.LargeCustomOptionsSize()):
            out["large_custom_size"] = int(op.LargeCustomOptionsSize())
        return out

    def union_options(self, utype: int, table: Any, names: dict[int, str]) -> Any:
        name = names.get(utype)
        cls = getattr(tflite, name, None) if name else None
        if cls is None or table is None:
            return {"type": utype}
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
        return {"type": name, **_reflect(obj)}

    def read_tensor(self, s: int, t: Any, i: int) -> TensorInfo:
        name = _name(t.Name())
        buf = int(t.Buffer())
        off, length = self.buffer_range(buf)
        constant = off is not None and length > 0
        q = t.Quantization()
        qi: QuantizationInfo | None = None
        qdim = 0
        if q is not None:
            qtab = q._tab
            s_off, s_len = _vector(qtab, 8, 4, self.size)
            z_off, z_len = _vector(qtab, 10, 8, self.size)
            mn_off, mn_len = _vector(qtab, 4, 4, self.size)
            mx_off, mx_len = _vector(qtab, 6, 4, self.size)
            details = int(q.DetailsType())
            qdim = int(q.QuantizedDimension())
            if s_len or z_len or mn_len or mx_len or details:
                qi = QuantizationInfo(
                    scale_offset=s_off,
                    scale_length=s_len,
                    zero_point_offset=z_off,
                    zero_point_length=z_len,
                    quantized_dimension=qdim,
                    num_scales=s_len // 4,
                    num_zero_points=z_len // 8,
                    min_offset=mn_off,
                    min_length=mn_len,
                    max_offset=mx_off,
                    max_length=mx_len,
                    details_type=details,
                )
        sig = None if t.ShapeSignatureIsNone() else tuple(_dims(t.ShapeSignatureAsNumpy()))
        dtype = _TYPE_NAMES.get(int(t.Type()), f"type {int(t.Type())}")
        return TensorInfo(
            subgraph=s,
            index=i,
            name=name,
            shape=tuple(_dims(t.ShapeAsNumpy())),
            dtype=dtype,
            buffer=buf,
            constant=constant,
            data_offset=off if constant else None,
            data_length=length if constant else 0,
            quantization=qi,
            quantized_dimension=qdim,
            shape_signature=sig,
            is_variable=bool(t.IsVariable()),
        )

    def tensor_items(self, t: TensorInfo, canon_buffer: dict[int, int]) -> None:
        key = f"sg{t.subgraph}.t{t.index}"
        label = t.label
        self.add(f"{key}.shape", list(t.shape), lambda a, b: f"{label} shape {a} vs {b}")
        self.add(
            f"{key}.shape_signature",
            None if t.shape_signature is None else list(t.shape_signature),
            lambda a, b: f"{label} shape signature {a} vs {b}",
        )
        self.add(f"{key}.type", t.dtype, lambda a, b: f"{label} type {a} vs {b}")
        data: list[int] | None = None
        if t.constant:
            assert t.data_offset is not None
            number = canon_buffer.setdefault(t.data_offset, len(canon_buffer))
            data = [number, t.data_length]
        self.add(f"{key}.data", data, lambda a, b: f"{label} {_data_text(a, b)}")
        self.add(
            f"{key}.is_variable", t.is_variable, lambda a, b: f"{label} is_variable {a} vs {b}"
        )
        layout = t.quantization.layout() if t.quantization is not None else None
        self.add(
            f"{key}.quantization",
            layout,
            lambda a, b: f"{label} quantization {_quant_text(a)} vs {_quant_text(b)}",
        )
        tab = self.model.Subgraphs(t.subgraph).Tensors(t.index)
        sp = tab.Sparsity()
        self.add(
            f"{key}.sparsity",
            _reflect(sp) if sp is not None else None,
            lambda a, b: f"{label} sparsity differs",
        )


def _code_text(a: list[Any], b: list[Any]) -> str:
    na, nb = _op_name((a[0], a[1], a[2])), _op_name((b[0], b[1], b[2]))
    if na == nb:
        return f"{na} version {a[2]} vs {b[2]}"
    return f"{na} vs {nb}"


def _data_text(a: list[int] | None, b: list[int] | None) -> str:
    if a is None or b is None:
        show = [
            "no constant data" if v is None else f"{v[1]} bytes of constant data" for v in (a, b)
        ]
        return f"{show[0]} vs {show[1]}"
    if a[1] != b[1]:
        return f"constant data {a[1]} bytes vs {b[1]}"
    return f"shares constant buffer #{a[0]} vs #{b[0]} (buffers are shared differently)"


def _quant_text(q: dict[str, int] | None) -> str:
    if q is None:
        return "none"
    if q["scales"] == 1:
        text = "per-tensor"
    else:
        text = f"{q['scales']} scales on dimension {q['quantized_dimension']}"
    text += f", {q['zero_points']} zero points"
    return text + (f", details type {q['details']}" if q["details"] else "")


def _dict_diff(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                    return f"{k}.{_dict_diff(a[k], b[k])}"
                return f"{k} {a.get(k)} vs {b.get(k)}"
    return f"{a} vs {b}"


# ---------------------------------------------------------------- comparing


def first_difference(a: TFLiteModel, b: TFLiteModel) -> str | None:
    """The first architectural difference between two models, in words; None when
    they have the same architecture (same fingerprint)."""
    for ia, ib in zip(a._items, b._items, strict=False):
        if ia.key != ib.key:  # cannot happen after equal counts; guard anyway
            return f"{ia.key} vs {ib.key}"
        if ia.value != ib.value:
            return ia.text(ia.value, ib.value)
    if len(a._items) != len(b._items):
        return f"descriptions differ in length ({len(a._items)} vs {len(b._items)} entries)"
    return None


def _require_same(old: TFLiteModel, new: TFLiteModel) -> None:
    if old.fingerprint() != new.fingerprint():
        diff = first_difference(old, new) or "fingerprints differ"
        raise TFLiteError(f"not the same architecture: {diff}")


def _tensor_pairs(old: TFLiteModel, new: TFLiteModel) -> Iterable[tuple[TensorInfo, TensorInfo]]:
    return zip(old.tensors, new.tensors, strict=True)


def _pair_ranges(ta: TensorInfo, tb: TensorInfo) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    ra, rb = ta.ranges(), tb.ranges()
    if [n for _, n in ra] != [n for _, n in rb]:  # excluded by equal fingerprints
        raise TFLiteError(f"{ta.label}: weight ranges differ in size")
    return list(zip(ra, rb, strict=True))


def rebase(old: TFLiteModel, new: TFLiteModel) -> bytes:
    """The old file with every weight range overwritten by the new model's values.

    Tensors are matched by subgraph and index, so the two files' layouts may
    differ (description, metadata, buffer order, padding). The result has the
    old layout and the new weights: functionally the new model. Raises
    :class:`TFLiteError` naming the first difference when the architectures differ.
    """
    _require_same(old, new)
    out = bytearray(old.data)
    written: dict[tuple[int, int], bytes] = {}
    for ta, tb in _tensor_pairs(old, new):
        for (oa, n), (ob, _) in _pair_ranges(ta, tb):
            value = new.data[ob : ob + n]
            if written.setdefault((oa, n), value) != value:
                raise TFLiteError(
                    f"{ta.label}: bytes [{oa}, {oa + n}) are shared in the old file but"
                    " carry different values in the new one"
                )
            out[oa : oa + n] = value
    result = bytes(out)
    # self-check: same structure, new weights in every tensor
    check = read_tflite(result)
    if check.fingerprint() != old.fingerprint():
        raise TFLiteError("rebased model no longer has the old architecture (overlapping ranges?)")
    for ta, tb in zip(check.tensors, new.tensors, strict=True):
        for (oa, n), (ob, _) in _pair_ranges(ta, tb):
            if result[oa : oa + n] != new.data[ob : ob + n]:
                raise TFLiteError(f"{ta.label}: weights did not survive the rebase")
    return result


def merge_ranges(
    ranges: Iterable[tuple[int, int]], gap: int = CHUNK_OVERHEAD
) -> list[tuple[int, int]]:
    """Sorted ranges merged where they touch or are separated by at most ``gap`` bytes."""
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if n <= 0:
            continue
        if out and off <= out[-1][0] + out[-1][1] + gap:
            start = out[-1][0]
            out[-1] = (start, max(out[-1][0] + out[-1][1], off + n) - start)
        else:
            out.append((off, n))
    return out


def pack_tflite(
    old_bytes: bytes,
    new_bytes: bytes,
    *,
    version: int,
    base_version: int | None = None,
    delta: bool = False,
    chunk_size: int = 1024,
    format_version: int = FORMAT_VERSION,
) -> Payload:
    """A payload that turns a device's copy of ``old_bytes`` into the new model.

    The weight region is the whole old file. Full: the segments are all weight
    ranges of the old layout (merged when contiguous or at most 16 bytes
    apart), so the payload carries every weight but no structure. Delta
    (needs ``base_version``): only the bytes that change; the device refuses
    it unless it holds exactly ``old_bytes``. ``format_version``: 2 (chunks
    compressed, docs/FORMAT.md) or 1 (devices built before it).
    """
    old = read_tflite(old_bytes)
    new = read_tflite(new_bytes)
    target = rebase(old, new)
    fp = old.fingerprint()
    if delta:
        if base_version is None:
            raise ValueError("a delta needs base_version: the version the devices run")
        if base_version >= version:
            raise ValueError(f"version {version} must be above base version {base_version}")
        return pack(
            target,
            fingerprint=fp,
            version=version,
            chunk_size=chunk_size,
            base=bytes(old_bytes),
            base_version=base_version,
            format_version=format_version,
        )
    return pack(
        target,
        fingerprint=fp,
        version=version,
        chunk_size=chunk_size,
        segments=merge_ranges(old.weight_ranges()),
        format_version=format_version,
    )


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor's weight bytes change between two models of one architecture."""

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data_bytes: int
    data_changed: int
    quant_bytes: int
    quant_changed: int

    @property
    def changed(self) -> int:
        return self.data_changed + self.quant_changed

    @property
    def total(self) -> int:
        return self.data_bytes + self.quant_bytes


def _count_changed(a: bytes, b: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8)))


def diff_models(
    old: TFLiteModel, new: TFLiteModel, *, include_unchanged: bool = False
) -> list[TensorDiff]:
    """Tensors whose weight bytes (constant data, quantization vectors) change.

    Raises :class:`TFLiteError` naming the first difference when the
    architectures differ. A buffer shared by several tensors is counted for each.
    """
    _require_same(old, new)
    out = []
    for ta, tb in _tensor_pairs(old, new):
        pairs = _pair_ranges(ta, tb)
        if not pairs:
            continue
        data_n = data_c = q_n = q_c = 0
        for k, ((oa, n), (ob, _)) in enumerate(pairs):
            changed = _count_changed(old.data[oa : oa + n], new.data[ob : ob + n])
            if k == 0 and ta.constant:
                data_n, data_c = n, changed
            else:
                q_n, q_c = q_n + n, q_c + changed
        d = TensorDiff(ta.subgraph, ta.index, ta.name, ta.shape, ta.dtype, data_n, data_c, q_n, q_c)
        if d.changed or include_unchanged:
            out.append(d)
    return out
