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
import struct
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import flatbuffers
import numpy as np
import tflite
from flatbuffers.table import Table as _Table
from tflite.utils import BUILTIN_OPCODE2NAME

from ..format.codec import predict
from ..format.constants import FORMAT_VERSION
from ..format.payload import CHUNK_OVERHEAD, FINGERPRINT_LEN, Payload, Prediction, pack
from .roles import learned_tensors

FILE_IDENTIFIER = b"TFL3"
FINGERPRINT_DOMAIN = b"modelota-tflite-v2\0"
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
    details: Any = None  # the details table's fields (custom quantization), hashed

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
    has_rank: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # sparsity, variant tensors
    weight: bool = False  # a learned parameter: a payload may rewrite its data
    canonical: int = -1  # number in the graph's canonical order (docs/FORMAT.md)

    @property
    def quantized(self) -> bool:
        return self.quantization is not None

    @property
    def label(self) -> str:
        where = f"subgraph {self.subgraph} " if self.subgraph else ""
        return f"{where}tensor {self.index} '{self.name}'"

    def ranges(self) -> list[tuple[int, int]]:
        """Bytes of this tensor a payload may rewrite: its constant data when it is
        a learned parameter, then its quantization vectors."""
        out = []
        if self.weight and self.data_offset is not None and self.data_length > 0:
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
    """One entry of the canonical description: ``enc`` is its bytes in the
    hashed stream; ``value`` the same in Python terms and ``text`` a difference
    in words (it may use names, which are not hashed)."""

    key: str
    enc: bytes
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

    def canonical_description(self) -> bytes:
        """The canonical description the fingerprint hashes (docs/FORMAT.md)."""
        return b"".join(item.enc for item in self._items)

    def fingerprint(self) -> bytes:
        """16 bytes identifying the model but for its learned parameters:
        SHA-256 of ``modelota-tflite-v2\\0`` and :meth:`canonical_description`, cut to 16.

        The description (docs/FORMAT.md, "Fingerprints") holds every
        operator (code, version, inputs and outputs by canonical tensor number,
        options), every tensor in canonical order (shape, type, learned or fixed
        constant: the bytes of every fixed constant, only the size of a learned
        one; quantization layout) and the subgraph inputs and outputs. Tensors
        are numbered by first use in the graph, buffers by first use, so a file
        the converter renumbered or laid out anew describes equal. Not hashed:
        names, learned values, quantization values, description, metadata,
        signature defs and the order of the operator-code and buffer tables.
        """
        digest = hashlib.sha256(FINGERPRINT_DOMAIN + self.canonical_description()).digest()
        return digest[:FINGERPRINT_LEN]

    def writable_ranges(self) -> list[tuple[int, int]]:
        """The bytes a payload may change, merged where they touch: what the
        device's ``modelota_config.writable`` holds (docs/FORMAT.md)."""
        return merge_ranges(self._ranges, gap=0)

    def canonical_tensors(self, subgraph: int) -> list[TensorInfo]:
        """The subgraph's tensors in canonical order (how two files are matched)."""
        return sorted(
            (t for t in self.tensors if t.subgraph == subgraph), key=lambda t: t.canonical
        )


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


_EMPTY_TABLE: bytes | None = None


def _empty_table() -> tuple[bytes, int]:
    """A buffer holding one table with no fields: every accessor reads its default."""
    global _EMPTY_TABLE
    if _EMPTY_TABLE is None:
        b = flatbuffers.Builder(16)
        b.StartObject(0)
        b.Finish(b.EndObject())
        _EMPTY_TABLE = bytes(b.Output())
    return _EMPTY_TABLE, flatbuffers.encode.Get(flatbuffers.packer.uoffset, _EMPTY_TABLE, 0)


def field_key(name: str) -> str:
    """A schema field's name as the fingerprint spells it: lower case, no '_'
    (``stride_w``, the accessor ``StrideW`` and the attribute ``strideW`` all
    give ``stridew``)."""
    return name.lower().replace("_", "")


def _fields(obj: Any, depth: int = 0) -> dict[str, Any]:
    """The fields of a generated table object whose value is not the schema
    default, by field key: numbers, lists, nested tables (dicts), unions
    ({"type": n, "value": {...}}), bytes for strings. A field written with its
    default value reads as absent, so both spellings describe equal."""
    if depth > _MAX_DEPTH:
        raise TFLiteError("tables nested too deeply")
    cls = type(obj)
    members = vars(cls)
    empty = cls()
    empty.Init(*_empty_table())
    out: dict[str, Any] = {}
    for name in members:
        fn = members[name]
        if name.startswith(("_", "GetRootAs")) or not callable(fn):
            continue
        if isinstance(fn, (classmethod, staticmethod)) or name == "Init":
            continue
        if name.endswith(("IsNone", "AsNumpy", "BufferHasIdentifier")):
            continue
        derived = [name.removesuffix(x) for x in ("Length", "Type") if name.endswith(x)]
        if derived and derived[0] in members:
            continue  # the length of a vector or the type of a union: read with it
        argc = fn.__code__.co_argcount
        value: Any
        if argc == 2 and name + "Length" in members:
            n = getattr(obj, name + "Length")()
            if n == 0:
                continue
            items = [getattr(obj, name)(j) for j in range(n)]
            value = [_fields(v, depth + 1) if hasattr(v, "_tab") else _scalar(v) for v in items]
        elif argc == 1:
            raw = fn(obj)
            if name + "Type" in members and (raw is None or isinstance(raw, _Table)):
                utype = int(getattr(obj, name + "Type")())
                if utype == 0:
                    continue
                out[field_key(name + "_type")] = utype
                value = _union(name, utype, raw, depth)
            elif hasattr(raw, "_tab"):
                value = _fields(raw, depth + 1)
            elif raw is None:
                continue
            else:
                value = _scalar(raw)
                if value == _scalar(fn(empty)):
                    continue
        else:  # pragma: no cover - the generated accessors take 1 or 2 arguments
            continue
        out[field_key(name)] = value
    return out


def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return int(v)
    return v


def _union(field_name: str, utype: int, table: Any, depth: int) -> Any:
    enum = _UNION_ENUMS.get(field_name)
    names = {v: k for k, v in vars(enum).items() if isinstance(v, int)} if enum else {}
    cls = getattr(tflite, names.get(utype, ""), None)
    if cls is None or table is None:
        raise TFLiteError(f"{field_name} holds union type {utype}, which this schema does not know")
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return _fields(obj, depth + 1)


# ---------------------------------------------------------------- canonical encoding
# docs/FORMAT.md, "Fingerprints": every value of the description is one of these.


def enc_u32(n: int) -> bytes:
    return struct.pack("<I", n)


def enc_i64(n: int) -> bytes:
    return struct.pack("<q", n)


def enc_bytes(b: bytes) -> bytes:
    return enc_u32(len(b)) + b


def enc_ints(values: Iterable[int]) -> bytes:
    vals = list(values)
    return enc_u32(len(vals)) + b"".join(enc_i64(int(v)) for v in vals)


def enc_value(v: Any) -> bytes:
    """Tagged value: N (none), I (integer, bool), F (float as binary64), S (bytes,
    string), L (list), T (table: its fields sorted by key)."""
    if v is None:
        return b"N"
    if isinstance(v, (bool, int, np.integer)):
        return b"I" + enc_i64(int(v))
    if isinstance(v, (float, np.floating)):
        return b"F" + struct.pack("<d", float(v))
    if isinstance(v, str):
        return b"S" + enc_bytes(v.encode())
    if isinstance(v, (bytes, bytearray)):
        return b"S" + enc_bytes(bytes(v))
    if isinstance(v, (list, tuple, np.ndarray)):
        return b"L" + enc_u32(len(v)) + b"".join(enc_value(x) for x in v)
    if isinstance(v, dict):
        keys = sorted(v)
        return (
            b"T"
            + enc_u32(len(keys))
            + b"".join(enc_bytes(k.encode()) + enc_value(v[k]) for k in keys)
        )
    raise TypeError(f"cannot encode {type(v).__name__}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.model = tflite.Model.GetRootAs(data, 0)
        self.items: list[_Item] = []

    def add(self, key: str, enc: bytes, value: Any, text: Callable[[Any, Any], str]) -> None:
        self.items.append(_Item(key, enc, value, text))

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
        self.add(
            "schema_version", enc_i64(version), version, lambda a, b: f"schema version {a} vs {b}"
        )
        codes = []
        for i in range(m.OperatorCodesLength()):
            oc = m.OperatorCodes(i)
            builtin = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            custom = oc.CustomCode()
            codes.append(
                (builtin, custom.decode("utf-8", "replace") if custom else None, int(oc.Version()))
            )
        n_sg = m.SubgraphsLength()
        self.add("subgraphs", enc_u32(n_sg), n_sg, lambda a, b: f"{a} subgraphs vs {b}")
        graphs = [self.read_graph(s, codes) for s in range(n_sg)]
        # a buffer that any fixed constant uses is fixed for every tensor using it
        fixed_buffers = {
            t.buffer for g in graphs for t in g.tensors if t.constant and not g.weight[t.index]
        }
        tensors: list[TensorInfo] = []
        operators: list[OperatorInfo] = []
        canon_buffer: dict[int, int] = {}  # buffer index -> number in order of first use
        for g in graphs:
            for t in g.tensors:
                w = g.weight[t.index] and t.buffer not in fixed_buffers
                g.tensors[t.index] = _replace(t, weight=w)
            tensors += sorted(g.tensors, key=lambda t: t.index)
            operators += g.operators
            self.describe(g, codes, canon_buffer)
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

    def read_graph(self, s: int, codes: list[tuple[int, str | None, int]]) -> _Graph:
        sg = self.model.Subgraphs(s)
        n_t = sg.TensorsLength()
        tensors = [self.read_tensor(s, sg.Tensors(i), i) for i in range(n_t)]
        ops: list[OperatorInfo] = []
        raw_ops = []
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            idx = int(op.OpcodeIndex())
            if not 0 <= idx < len(codes):
                where = f"subgraph {s} " if s else ""
                raise TFLiteError(f"{where}operator {k} uses opcode {idx} of {len(codes)}")
            inputs = tuple(_dims(op.InputsAsNumpy()))
            outputs = tuple(_dims(op.OutputsAsNumpy()))
            inter = tuple(_dims(op.IntermediatesAsNumpy()))
            for t in (*inputs, *outputs, *inter):
                if not -1 <= t < n_t:
                    raise TFLiteError(f"operator {k} refers to tensor {t} of {n_t}")
            ops.append(OperatorInfo(s, k, _op_name(codes[idx]), inputs, outputs))
            raw_ops.append((op, codes[idx], inter))
        sg_in = _dims(sg.InputsAsNumpy())
        sg_out = _dims(sg.OutputsAsNumpy())
        for t in (*sg_in, *sg_out):
            if not 0 <= t < n_t:
                raise TFLiteError(f"subgraph {s} input/output {t} is not one of its {n_t} tensors")
        g = _Graph(s, tensors, ops, raw_ops, sg_in, sg_out)
        g.weight = _weight_roles(g)
        order: list[int] = []
        seen: set[int] = set()

        def visit(ids: Iterable[int]) -> None:
            for t in ids:
                if t >= 0 and t not in seen:
                    seen.add(t)
                    order.append(t)

        visit(sg_in)
        for o, (_op, _code, inter) in zip(ops, raw_ops, strict=True):
            visit(o.inputs)
            visit(o.outputs)
            visit(inter)
        visit(sg_out)
        visit(range(n_t))
        g.order = order
        g.canon = {t: c for c, t in enumerate(order)}
        for t in tensors:
            g.tensors[t.index] = _replace(t, canonical=g.canon[t.index])
        return g

    def describe(
        self, g: _Graph, codes: list[tuple[int, str | None, int]], canon_buffer: dict[int, int]
    ) -> None:
        """Appends the subgraph's part of the canonical description."""
        s = g.index
        sgp = f"subgraph {s} " if s else ""
        n_t = len(g.tensors)
        canon = g.canon

        def cn(ids: Iterable[int]) -> list[int]:
            return [canon[t] if t >= 0 else -1 for t in ids]

        def tname(i: int) -> str:
            return f"'{g.tensors[i].name}'" if 0 <= i < n_t else str(i)

        n_op = len(g.operators)
        self.add(
            f"sg{s}.size",
            enc_u32(n_t) + enc_u32(n_op),
            [n_op, n_t],
            lambda a, b: (
                f"{sgp}{a[0]} operators vs {b[0]}"
                if a[0] != b[0]
                else f"{sgp}{a[1]} tensors vs {b[1]}"
            ),
        )
        for o, (op, code, inter) in zip(g.operators, g.raw_ops, strict=True):
            k = o.index
            where = f"{sgp}operator {k}"
            name = o.op
            builtin, custom, version = code
            self.add(
                f"sg{s}.op{k}.code",
                enc_i64(builtin) + enc_bytes((custom or "").encode()) + enc_i64(version),
                list(code),
                lambda a, b, where=where: f"{where}: {_code_text(a, b)}",
            )
            for fld, ids in (
                ("inputs", o.inputs),
                ("outputs", o.outputs),
                ("intermediates", inter),
            ):
                shown = [f"{i}:{tname(i)}" if i >= 0 else "-1" for i in ids]
                self.add(
                    f"sg{s}.op{k}.{fld}",
                    enc_ints(cn(ids)),
                    (cn(ids), shown),
                    lambda a, b, w=f"{where} ({name}) {fld}": (
                        f"{w} [{', '.join(a[1])}] vs [{', '.join(b[1])}]"
                    ),
                )
            mut = [int(bool(v)) for v in _dims(op.MutatingVariableInputsAsNumpy())]
            self.add(
                f"sg{s}.op{k}.mutating",
                enc_ints(mut),
                mut,
                lambda a, b, w=f"{where} ({name}) mutating_variable_inputs": f"{w} {a} vs {b}",
            )
            opts = self.options(op)
            self.add(
                f"sg{s}.op{k}.options",
                b"".join(enc_value(opts[f]) for f in ("builtin", "builtin2", "custom"))
                + enc_i64(opts["custom_format"]),
                opts,
                lambda a, b, w=f"{where} ({name}) options": f"{w}: {_dict_diff(a, b)}",
            )
        for t_index in g.order:
            self.tensor_items(g, g.tensors[t_index], canon_buffer)
        for fld, ids in (("inputs", g.inputs), ("outputs", g.outputs)):
            shown = ", ".join(tname(i) for i in ids)
            self.add(
                f"sg{s}.{fld}",
                enc_ints(cn(ids)),
                cn(ids),
                lambda a, b, f=fld, shown=shown: f"{sgp}model {f} {a} ({shown}) vs {b}",
            )

    def options(self, op: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "builtin": None,
            "builtin2": None,
            "custom": None,
            "custom_format": 0,
        }
        t1 = int(op.BuiltinOptionsType())
        if t1:
            out["builtin"] = self.union_options(t1, op.BuiltinOptions(), _OPTION_NAMES)
        t2 = int(op.BuiltinOptions2Type())
        if t2:
            out["builtin2"] = self.union_options(t2, op.BuiltinOptions2(), _OPTION2_NAMES)
        start, n = _vector(op._tab, 14, 1, self.size)
        large = int(op.LargeCustomOptionsSize())
        if large:
            off = int(op.LargeCustomOptionsOffset())
            if off + large > self.size:
                raise TFLiteError("large custom options run past the end of the file")
            out["custom"] = self.data[off : off + large]
        elif start is not None:
            out["custom"] = self.data[start : start + n]
        if out["custom"] is not None:
            out["custom_format"] = int(op.CustomOptionsFormat())
        return out

    def union_options(self, utype: int, table: Any, names: dict[int, str]) -> dict[str, Any]:
        name = names.get(utype)
        cls = getattr(tflite, name, None) if name else None
        if cls is None or table is None:
            raise TFLiteError(f"operator options of type {utype}, which this schema does not know")
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
        return {"type": utype, **_fields(obj)}

    def read_tensor(self, s: int, t: Any, i: int) -> TensorInfo:
        name = _name(t.Name())
        buf = int(t.Buffer())
        off, length = self.buffer_range(buf)
        constant = off is not None and length > 0
        q = t.Quantization()
        qi: QuantizationInfo | None = None
        qdim = 0
        details: Any = None
        if q is not None:
            qtab = q._tab
            s_off, s_len = _vector(qtab, 8, 4, self.size)
            z_off, z_len = _vector(qtab, 10, 8, self.size)
            mn_off, mn_len = _vector(qtab, 4, 4, self.size)
            mx_off, mx_len = _vector(qtab, 6, 4, self.size)
            dtype_ = int(q.DetailsType())
            qdim = int(q.QuantizedDimension())
            if dtype_:
                details = {"type": dtype_, **_fields(q)}.get("details")
            if s_len or z_len or mn_len or mx_len or dtype_:
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
                    details_type=dtype_,
                    details=details,
                )
        sig = None if t.ShapeSignatureIsNone() else tuple(_dims(t.ShapeSignatureAsNumpy()))
        dtype = _TYPE_NAMES.get(int(t.Type()), f"type {int(t.Type())}")
        extra: dict[str, Any] = {}
        sp = t.Sparsity()
        if sp is not None:
            extra["sparsity"] = _fields(sp)
        if t.VariantTensorsLength():
            extra["varianttensors"] = [
                _fields(t.VariantTensors(j)) for j in range(t.VariantTensorsLength())
            ]
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
            has_rank=bool(t.HasRank()),
            extra=extra,
        )

    def tensor_items(self, g: _Graph, t: TensorInfo, canon_buffer: dict[int, int]) -> None:
        key = f"sg{t.subgraph}.c{t.canonical}"
        label = g.label(t)
        head = (
            enc_ints(t.shape)
            + (
                enc_i64(0)
                if t.shape_signature is None
                else enc_i64(1) + enc_ints(t.shape_signature)
            )
            + enc_i64(int(self.model.Subgraphs(t.subgraph).Tensors(t.index).Type()))
            + enc_i64(int(t.is_variable))
            + enc_i64(int(t.has_rank))
        )
        self.add(
            f"{key}.head",
            head,
            (list(t.shape), t.shape_signature, t.dtype, t.is_variable, t.has_rank),
            lambda a, b: f"{label} {_head_text(a, b)}",
        )
        data_enc = enc_i64(0)
        shown: Any = None
        if t.constant:
            assert t.data_offset is not None
            number = canon_buffer.setdefault(t.buffer, len(canon_buffer))
            if t.weight:
                data_enc = enc_i64(1) + enc_i64(number) + enc_i64(t.data_length)
                shown = ("weight", number, t.data_length, None)
            else:
                raw = self.data[t.data_offset : t.data_offset + t.data_length]
                data_enc = enc_i64(2) + enc_i64(number) + enc_bytes(raw)
                shown = ("fixed", number, t.data_length, _show_values(raw, t.dtype))
        self.add(f"{key}.data", data_enc, shown, lambda a, b: f"{label}: {_data_text(a, b)}")
        qenc = b"N"
        qshown = None
        if t.quantization is not None:
            qshown = t.quantization.layout()
            qenc = (
                b"Q"
                + b"".join(
                    enc_i64(qshown[k])
                    for k in (
                        "scales",
                        "zero_points",
                        "min",
                        "max",
                        "quantized_dimension",
                        "details",
                    )
                )
                + enc_value(t.quantization.details)
            )
        self.add(
            f"{key}.quantization",
            qenc,
            qshown,
            lambda a, b: f"{label} quantization {_quant_text(a)} vs {_quant_text(b)}",
        )
        self.add(
            f"{key}.extra",
            enc_value(t.extra),
            t.extra,
            lambda a, b: f"{label} sparsity or variant tensors differ",
        )


@dataclass
class _Graph:
    """One subgraph while it is read: tensors by file index, operators, roles."""

    index: int
    tensors: list[TensorInfo]
    operators: list[OperatorInfo]
    raw_ops: list[tuple[Any, tuple[int, str | None, int], tuple[int, ...]]]
    inputs: list[int]
    outputs: list[int]
    weight: list[bool] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # file index by canonical number
    canon: dict[int, int] = field(default_factory=dict)

    def uses(self, t: int) -> list[tuple[OperatorInfo, int]]:
        return [(o, pos) for o in self.operators for pos, i in enumerate(o.inputs) if i == t]

    def label(self, t: TensorInfo) -> str:
        where = f"subgraph {t.subgraph} " if t.subgraph else ""
        text = f"{where}tensor {t.index} '{t.name}'"
        uses = self.uses(t.index)
        if uses:
            o, pos = uses[0]
            text += f" (input {pos} of operator {o.index} {o.op})"
        return text


def _weight_roles(g: _Graph) -> list[bool]:
    """Per tensor: consumed only as a learned parameter (models/roles.py)."""
    return learned_tensors(
        len(g.tensors),
        [(o.op, o.inputs, o.outputs) for o in g.operators],
        lambda t: g.tensors[t].dtype,
        g.outputs,
    )


def _replace(t: TensorInfo, **kw: Any) -> TensorInfo:
    return replace(t, **kw)


def _show_values(raw: bytes, dtype: str) -> list[Any] | None:
    """Small integer constants (shapes, axes, paddings) as numbers, for messages."""
    np_type = {"INT32": "<i4", "INT64": "<i8", "INT16": "<i2", "INT8": "i1", "UINT8": "u1"}
    if dtype not in np_type:
        return None
    vals = np.frombuffer(raw, dtype=np_type[dtype])
    return [int(v) for v in vals] if vals.size <= 16 else None


def _head_text(a: Any, b: Any) -> str:
    names = ["shape", "shape signature", "type", "is_variable", "has_rank"]
    for name, x, y in zip(names, a, b, strict=True):
        if x != y:
            return f"{name} {x} vs {y}"
    return "differs"


def _code_text(a: list[Any], b: list[Any]) -> str:
    na, nb = _op_name((a[0], a[1], a[2])), _op_name((b[0], b[1], b[2]))
    if na == nb:
        return f"{na} version {a[2]} vs {b[2]}"
    return f"{na} vs {nb}"


def _data_text(a: Any, b: Any) -> str:
    def one(v: Any) -> str:
        if v is None:
            return "no constant data"
        kind = "learned" if v[0] == "weight" else "fixed"
        return f"{v[2]} bytes of {kind} constant data"

    if a is None or b is None or a[0] != b[0] or a[2] != b[2]:
        return f"{one(a)} vs {one(b)}"
    if a[1] != b[1]:
        return f"shares constant buffer #{a[1]} vs #{b[1]} (buffers are shared differently)"
    if a[3] is not None and b[3] is not None:
        return (
            f"fixed constant {a[3]} vs {b[3]} (not a learned parameter: a payload only"
            " changes those)"
        )
    return "fixed constant bytes differ (not a learned parameter: a payload only changes those)"


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
                x, y = (v.get(k, "default") if isinstance(v, dict) else v for v in (a, b))
                return f"{k} {x} vs {y}"
    return f"{a} vs {b}"


# ---------------------------------------------------------------- comparing


def first_difference(a: TFLiteModel, b: TFLiteModel) -> str | None:
    """The first architectural difference between two models, in words; None when
    they have the same architecture (same fingerprint)."""
    for ia, ib in zip(a._items, b._items, strict=False):
        if ia.key != ib.key:  # cannot happen after equal counts; guard anyway
            return f"{ia.key} vs {ib.key}"
        if ia.enc != ib.enc:
            return ia.text(ia.value, ib.value)
    if len(a._items) != len(b._items):
        return f"descriptions differ in length ({len(a._items)} vs {len(b._items)} entries)"
    return None


def _require_same(old: TFLiteModel, new: TFLiteModel) -> None:
    if old.fingerprint() != new.fingerprint():
        diff = first_difference(old, new) or "fingerprints differ"
        raise TFLiteError(f"not the same architecture: {diff}")


def _tensor_pairs(old: TFLiteModel, new: TFLiteModel) -> Iterable[tuple[TensorInfo, TensorInfo]]:
    """Old and new tensor at the same place in the graph (canonical number), so a
    re-converted file with renumbered tensors and reordered buffers pairs up."""
    subgraphs = sorted({t.subgraph for t in old.tensors})
    for s in subgraphs:
        yield from zip(old.canonical_tensors(s), new.canonical_tensors(s), strict=True)


def _pair_ranges(ta: TensorInfo, tb: TensorInfo) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    ra, rb = ta.ranges(), tb.ranges()
    if [n for _, n in ra] != [n for _, n in rb]:  # excluded by equal fingerprints
        raise TFLiteError(f"{ta.label}: weight ranges differ in size")
    return list(zip(ra, rb, strict=True))


def rebase(old: TFLiteModel, new: TFLiteModel) -> bytes:
    """The old file with every weight range overwritten by the new model's values.

    Tensors are matched by their place in the graph (canonical number), so the
    two files' layouts may differ (tensor numbering, buffer order, description,
    metadata, padding). The result has the
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
    for ta, tb in _tensor_pairs(check, new):
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


_OPS_WITH_BIAS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
_MIN_PREDICTED = 4  # values: a prediction's head (about 9 bytes) must pay for itself
_ULPS = 4  # how far a predicted scale may be from the real one and still count


def scale_predictions(model: TFLiteModel) -> list[Prediction]:
    """Scale vectors of ``model`` a device can predict from earlier ones
    (pack's ``predictions``, docs/FORMAT.md "KEEP and PRED").

    TFLite's converter sets an int8 layer's bias scales to the float32
    product of the input's scale and the weights' per-channel scales, and
    FlatBuffers writes the bias's vector first; so the weights' scales are
    the bias scales divided by the input scale, up to the rounding of the
    product. Returned where that division gives at least half the values
    within a few ulps (the differences travel as a residual); nothing for
    float models or converters that lay the vectors out otherwise."""
    data = model.data
    out: list[Prediction] = []

    def scales(sub: int, index: int) -> tuple[int, int] | None:
        if index < 0:
            return None
        q = model.tensor(sub, index).quantization
        if q is None or q.scale_offset is None or q.scale_length < 4:
            return None
        return q.scale_offset, q.scale_length // 4

    for op in model.operators:
        if op.op not in _OPS_WITH_BIAS or len(op.inputs) < 3:
            continue
        x, w, b = (scales(op.subgraph, i) for i in op.inputs[:3])
        if op.op == "TRANSPOSE_CONV" and len(op.inputs) >= 4:  # output shape, weights, input, bias
            w, x, b = (scales(op.subgraph, i) for i in op.inputs[1:4])
        if x is None or w is None or b is None or x[1] != 1 or w[1] != b[1]:
            continue
        count = w[1]
        if count < _MIN_PREDICTED or b[0] + 4 * count > w[0]:
            continue
        divisor = int.from_bytes(data[x[0] : x[0] + 4], "little")
        guess = struct.unpack(f"<{count}i", predict(data[b[0] : b[0] + 4 * count], divisor))
        actual = struct.unpack_from(f"<{count}i", data, w[0])
        # within a few ulps (a converter that rounds the product from wider
        # scales): the residual is a small low byte, still far below a float
        close = sum(abs(g - a) <= _ULPS for g, a in zip(guess, actual, strict=True))
        if 2 * close >= count:
            out.append((w[0], count, b[0], divisor))
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
    encodings: Collection[str] | None = None,
) -> Payload:
    """A payload that turns a device's copy of ``old_bytes`` into the new model.

    The weight region is the whole old file. Full: the segments are all weight
    ranges of the old layout (merged when contiguous or at most 16 bytes
    apart), so the payload carries every weight but no structure. Delta
    (needs ``base_version``): only the bytes that change; the device refuses
    it unless it holds exactly ``old_bytes``. ``format_version``: 2 (chunks
    compressed, docs/FORMAT.md) or 1 (devices built before it); ``encodings``
    limits what v2 may use (see :func:`modelota.format.payload.pack`).
    """
    old = read_tflite(old_bytes)
    new = read_tflite(new_bytes)
    target = rebase(old, new)
    fp = old.fingerprint()
    options: dict[str, Any] = {} if encodings is None else {"encodings": encodings}
    # target is the old file's layout with the new values: no second parse
    options["predictions"] = scale_predictions(replace(old, data=target))
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
            **options,
        )
    return pack(
        target,
        fingerprint=fp,
        version=version,
        chunk_size=chunk_size,
        segments=merge_ranges(old.weight_ranges()),
        format_version=format_version,
        **options,
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
            if k == 0 and ta.weight:
                data_n, data_c = n, changed
            else:
                q_n, q_c = q_n + n, q_c + changed
        d = TensorDiff(ta.subgraph, ta.index, ta.name, ta.shape, ta.dtype, data_n, data_c, q_n, q_c)
        if d.changed or include_unchanged:
            out.append(d)
    return out
