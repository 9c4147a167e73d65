"""Builds real ``.tflite`` flatbuffers from numpy weights, with the ``tflite`` schema package.

Two levels:

* :class:`Graph` is a small generic writer: tensors (shape, type, optional
  constant data, optional quantization), operators (builtin code, inputs,
  outputs, options), one subgraph, buffers, description and metadata. Buffer
  data is 16-byte aligned as TensorFlow's converter does.
* :func:`build_mlp` turns a stack of :class:`Dense` layers (float weights) into a
  model TFLM runs: FULLY_CONNECTED layers with fused or separate RELU, an
  optional RESHAPE or SOFTMAX at the end, float32 or int8 (int8 weights with
  per-tensor or per-channel symmetric scales, int32 bias, asymmetric per-tensor
  activations calibrated on sample inputs).

The tests build random architectures with it, and :mod:`modelota.demo.digits`
exports its demo classifier with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import tflite

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
BUFFER_ALIGN = 16

_TYPES: dict[str, tuple[int, Any]] = {
    "FLOAT32": (tflite.TensorType.FLOAT32, np.float32),
    "INT32": (tflite.TensorType.INT32, np.int32),
    "INT8": (tflite.TensorType.INT8, np.int8),
    "UINT8": (tflite.TensorType.UINT8, np.uint8),
    "INT16": (tflite.TensorType.INT16, np.int16),
    "INT64": (tflite.TensorType.INT64, np.int64),
}
_OPS = {
    name: getattr(tflite.BuiltinOperator, name)
    for name in (
        "FULLY_CONNECTED",
        "RELU",
        "SOFTMAX",
        "RESHAPE",
        "CONV_2D",
        "LOGISTIC",
        "TANH",
        "PAD",
        "TRANSPOSE",
        "STRIDED_SLICE",
        "MEAN",
        "ADD",
        "MUL",
        "CONCATENATION",
        "GATHER",
        "DEQUANTIZE",
    )
}
_ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU6": 3, "TANH": 4}


@dataclass
class Quant:
    """Quantization parameters of one tensor (per-tensor when one scale)."""

    scale: Sequence[float]
    zero_point: Sequence[int]
    quantized_dimension: int = 0
    min: Sequence[float] | None = None
    max: Sequence[float] | None = None


@dataclass
class TensorSpec:
    name: str
    shape: Sequence[int]
    dtype: str = "FLOAT32"
    data: bytes | None = None
    quant: Quant | None = None
    shape_signature: Sequence[int] | None = None


@dataclass
class OpSpec:
    op: str
    inputs: Sequence[int]
    outputs: Sequence[int]
    options: dict[str, Any] = field(default_factory=dict)
    version: int = 1


@dataclass
class Graph:
    """One-subgraph TFLite model under construction."""

    tensors: list[TensorSpec] = field(default_factory=list)
    ops: list[OpSpec] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str = "FLOAT32",
        data: np.ndarray | bytes | None = None,
        quant: Quant | None = None,
        shape_signature: Sequence[int] | None = None,
    ) -> int:
        raw: bytes | None
        if isinstance(data, np.ndarray):
            want = _TYPES[dtype][1]
            if data.dtype != want:
                raise ValueError(f"tensor {name}: data is {data.dtype}, type says {dtype}")
            raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()
        else:
            raw = data
        self.tensors.append(TensorSpec(name, list(shape), dtype, raw, quant, shape_signature))
        return len(self.tensors) - 1

    def op(
        self,
        op: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        version: int = 1,
        **options: Any,
    ) -> None:
        self.ops.append(OpSpec(op, list(inputs), list(outputs), options, version))

    def serialize(
        self,
        *,
        description: str | None = None,
        metadata: dict[str, bytes] | None = None,
        unique_empty_buffers: bool = False,
        buffer_order_seed: int | None = None,
        subgraph_name: str = "main",
        external_buffers: bool = False,
    ) -> bytes:
        """The .tflite bytes.

        ``unique_empty_buffers`` gives every non-constant tensor its own empty
        buffer (as TensorFlow's converter does) instead of sharing buffer 0;
        ``buffer_order_seed`` shuffles the order of the buffers table. Both
        change the file's layout, never the model. ``external_buffers`` stores
        constant data after the flatbuffer, found through Buffer.offset/size
        (the layout TensorFlow uses for models above 2 GB).
        """
        if not external_buffers:
            return self._serialize(
                description, metadata, unique_empty_buffers, buffer_order_seed, subgraph_name, None
            )
        # pass 1 sizes the flatbuffer (offset fields are fixed-width u64), pass 2 fills them in
        probe = self._serialize(
            description, metadata, unique_empty_buffers, buffer_order_seed, subgraph_name, {}
        )
        base = -(-len(probe) // BUFFER_ALIGN) * BUFFER_ALIGN
        where: dict[int, int] = {}
        tail = bytearray()
        for i, t in enumerate(self.tensors):
            if t.data:
                where[i] = base + len(tail)
                tail += t.data + bytes(-len(t.data) % BUFFER_ALIGN)
        fb = self._serialize(
            description, metadata, unique_empty_buffers, buffer_order_seed, subgraph_name, where
        )
        if len(fb) != len(probe):
            raise AssertionError("flatbuffer size changed between passes")
        return fb + bytes(base - len(fb)) + bytes(tail)

    def _serialize(
        self,
        description: str | None,
        metadata: dict[str, bytes] | None,
        unique_empty_buffers: bool,
        buffer_order_seed: int | None,
        subgraph_name: str,
        external: dict[int, int] | None,
    ) -> bytes:
        # buffer table: 0 is the empty sentinel
        contents: list[bytes] = [b""]
        ext_of: dict[int, int] = {}  # buffer index -> file offset of its external data
        tensor_buffer: list[int] = []
        for i, t in enumerate(self.tensors):
            if t.data is not None or unique_empty_buffers:
                contents.append(t.data or b"")
                tensor_buffer.append(len(contents) - 1)
                if external is not None and t.data:
                    ext_of[len(contents) - 1] = external.get(i, 2)
            else:
                tensor_buffer.append(0)
        meta_buffer: dict[str, int] = {}
        for key, value in (metadata or {}).items():
            contents.append(value)
            meta_buffer[key] = len(contents) - 1
        # optional permutation of buffers 1..n (0 stays the sentinel)
        order = list(range(len(contents)))
        if buffer_order_seed is not None and len(contents) > 2:
            rest = order[1:]
            np.random.default_rng(buffer_order_seed).shuffle(rest)
            order = [0, *rest]
        new_index = {old: new for new, old in enumerate(order)}

        b = flatbuffers.Builder(1024)
        buffer_offs = []
        for old in order:
            data = contents[old]
            if old in ext_of:
                tflite.BufferStart(b)
                tflite.BufferAddOffset(b, ext_of[old])
                tflite.BufferAddSize(b, len(data))
            elif data:
                vec = _aligned_bytes(b, data)
                tflite.BufferStart(b)
                tflite.BufferAddData(b, vec)
            else:
                tflite.BufferStart(b)
            buffer_offs.append(b.EndObject())
        buffers_vec = _offset_vector(b, buffer_offs)

        tensor_offs = []
        for i, t in enumerate(self.tensors):
            name = b.CreateString(t.name)
            shape = _int32_vector(b, t.shape)
            sig = _int32_vector(b, t.shape_signature) if t.shape_signature is not None else None
            q = _quant_table(b, t.quant)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, _TYPES[t.dtype][0])
            tflite.TensorAddBuffer(b, new_index[tensor_buffer[i]])
            tflite.TensorAddName(b, name)
            tflite.TensorAddQuantization(b, q)
            if sig is not None:
                tflite.TensorAddShapeSignature(b, sig)
            tensor_offs.append(tflite.TensorEnd(b))
        tensors_vec = _offset_vector(b, tensor_offs)

        codes: list[tuple[str, int]] = []
        op_offs = []
        for o in self.ops:
            key = (o.op, o.version)
            if key not in codes:
                codes.append(key)
            ins = _int32_vector(b, o.inputs)
            outs = _int32_vector(b, o.outputs)
            opt_type, opt = _options(b, o)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, codes.index(key))
            tflite.OperatorAddInputs(b, ins)
            tflite.OperatorAddOutputs(b, outs)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, opt_type)
                tflite.OperatorAddBuiltinOptions(b, opt)
            op_offs.append(tflite.OperatorEnd(b))
        ops_vec = _offset_vector(b, op_offs)

        sg_in = _int32_vector(b, self.inputs)
        sg_out = _int32_vector(b, self.outputs)
        sg_name = b.CreateString(subgraph_name)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, sg_in)
        tflite.SubGraphAddOutputs(b, sg_out)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, sg_name)
        subgraphs_vec = _offset_vector(b, [tflite.SubGraphEnd(b)])

        code_offs = []
        for op, version in codes:
            code = _OPS[op]
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            code_offs.append(tflite.OperatorCodeEnd(b))
        codes_vec = _offset_vector(b, code_offs)

        meta_offs = []
        for key in meta_buffer:
            name = b.CreateString(key)
            tflite.MetadataStart(b)
            tflite.MetadataAddName(b, name)
            tflite.MetadataAddBuffer(b, new_index[meta_buffer[key]])
            meta_offs.append(tflite.MetadataEnd(b))
        meta_vec = _offset_vector(b, meta_offs) if meta_offs else None
        desc = b.CreateString(description) if description is not None else None

        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, SCHEMA_VERSION)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        if desc is not None:
            tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buffers_vec)
        if meta_vec is not None:
            tflite.ModelAddMetadata(b, meta_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=FILE_IDENTIFIER)
        return bytes(b.Output())


def _aligned_bytes(b: flatbuffers.Builder, data: bytes) -> int:
    """A [ubyte] vector whose first element is BUFFER_ALIGN-aligned in the final file."""
    b.StartVector(1, len(data), BUFFER_ALIGN)
    b.head = b.head - len(data)
    b.Bytes[b.head : b.head + len(data)] = data
    return int(b.EndVector())


def _offset_vector(b: flatbuffers.Builder, offs: Sequence[int]) -> int:
    b.StartVector(4, len(offs), 4)
    for off in reversed(offs):
        b.PrependUOffsetTRelative(off)
    return int(b.EndVector())


def _int32_vector(b: flatbuffers.Builder, values: Sequence[int]) -> int:
    return int(b.CreateNumpyVector(np.asarray(values, dtype=np.int32)))


def _quant_table(b: flatbuffers.Builder, q: Quant | None) -> int:
    """Quantization table; float tensors get an empty one, as the converter writes."""
    if q is None:
        tflite.QuantizationParametersStart(b)
        return int(tflite.QuantizationParametersEnd(b))
    scale = b.CreateNumpyVector(np.asarray(q.scale, dtype=np.float32))
    zp = b.CreateNumpyVector(np.asarray(q.zero_point, dtype=np.int64))
    qmin = b.CreateNumpyVector(np.asarray(q.min, dtype=np.float32)) if q.min is not None else None
    qmax = b.CreateNumpyVector(np.asarray(q.max, dtype=np.float32)) if q.max is not None else None
    tflite.QuantizationParametersStart(b)
    if qmin is not None:
        tflite.QuantizationParametersAddMin(b, qmin)
    if qmax is not None:
        tflite.QuantizationParametersAddMax(b, qmax)
    tflite.QuantizationParametersAddScale(b, scale)
    tflite.QuantizationParametersAddZeroPoint(b, zp)
    tflite.QuantizationParametersAddQuantizedDimension(b, q.quantized_dimension)
    return int(tflite.QuantizationParametersEnd(b))


def _options(b: flatbuffers.Builder, o: OpSpec) -> tuple[int, int | None]:
    kinds = tflite.BuiltinOptions
    if o.op == "FULLY_CONNECTED":
        tflite.FullyConnectedOptionsStart(b)
        act = _ACTIVATIONS[o.options.get("activation", "NONE")]
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        if o.options.get("keep_num_dims"):
            tflite.FullyConnectedOptionsAddKeepNumDims(b, True)
        return kinds.FullyConnectedOptions, int(tflite.FullyConnectedOptionsEnd(b))
    if o.op == "CONV_2D":
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddStrideW(b, int(o.options.get("stride", 1)))
        tflite.Conv2DOptionsAddStrideH(b, int(o.options.get("stride", 1)))
        act = _ACTIVATIONS[o.options.get("activation", "NONE")]
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        return kinds.Conv2DOptions, int(tflite.Conv2DOptionsEnd(b))
    if o.op == "SOFTMAX":
        tflite.SoftmaxOptionsStart(b)
        tflite.SoftmaxOptionsAddBeta(b, float(o.options.get("beta", 1.0)))
        return kinds.SoftmaxOptions, int(tflite.SoftmaxOptionsEnd(b))
    if o.op == "MEAN":
        tflite.ReducerOptionsStart(b)
        tflite.ReducerOptionsAddKeepDims(b, bool(o.options.get("keep_dims", False)))
        return kinds.ReducerOptions, int(tflite.ReducerOptionsEnd(b))
    if o.op in ("ADD", "MUL"):
        start, add, end, kind = (
            (
                tflite.AddOptionsStart,
                tflite.AddOptionsAddFusedActivationFunction,
                tflite.AddOptionsEnd,
                kinds.AddOptions,
            )
            if o.op == "ADD"
            else (
                tflite.MulOptionsStart,
                tflite.MulOptionsAddFusedActivationFunction,
                tflite.MulOptionsEnd,
                kinds.MulOptions,
            )
        )
        start(b)
        add(b, _ACTIVATIONS[o.options.get("activation", "NONE")])
        return kind, int(end(b))
    if o.op == "CONCATENATION":
        tflite.ConcatenationOptionsStart(b)
        tflite.ConcatenationOptionsAddAxis(b, int(o.options.get("axis", 0)))
        return kinds.ConcatenationOptions, int(tflite.ConcatenationOptionsEnd(b))
    if o.op == "STRIDED_SLICE":
        tflite.StridedSliceOptionsStart(b)
        return kinds.StridedSliceOptions, int(tflite.StridedSliceOptionsEnd(b))
    if o.op == "RESHAPE":
        shape = o.options.get("new_shape")
        vec = _int32_vector(b, shape) if shape is not None else None
        tflite.ReshapeOptionsStart(b)
        if vec is not None:
            tflite.ReshapeOptionsAddNewShape(b, vec)
        return kinds.ReshapeOptions, int(tflite.ReshapeOptionsEnd(b))
    return 0, None


# ---------------------------------------------------------------- MLPs


@dataclass
class Dense:
    """One FULLY_CONNECTED layer: ``y = act(x @ weights.T + bias)``.

    ``activation``: "none", "relu" (fused into the FC op) or "relu_op" (a
    separate RELU operator after it).
    """

    weights: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)
    activation: str = "relu"

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[0])


def forward_float(layers: Sequence[Dense], x: np.ndarray) -> list[np.ndarray]:
    """Float activations after each layer (post activation), for calibration."""
    outs = []
    h = np.asarray(x, dtype=np.float64)
    for layer in layers:
        h = h @ layer.weights.astype(np.float64).T + layer.bias.astype(np.float64)
        if layer.activation != "none":
            h = np.maximum(h, 0.0)
        outs.append(h)
    return outs


MIN_ACTIVATION_RANGE = 0.05


def _activation_quant(values: np.ndarray) -> Quant:
    """Asymmetric int8 per-tensor parameters covering ``values`` (and 0).

    The range is at least MIN_ACTIVATION_RANGE: a layer that is always zero on
    the calibration data (a dead RELU) would otherwise get a scale so small that
    the FULLY_CONNECTED output multiplier overflows, which TFLM aborts on.
    """
    lo = min(float(np.min(values)), 0.0)
    hi = max(float(np.max(values)), 0.0)
    if hi - lo < MIN_ACTIVATION_RANGE:
        hi = lo + MIN_ACTIVATION_RANGE
    scale = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return Quant([scale], [zp], min=[lo], max=[hi])


def build_mlp(
    layers: Sequence[Dense],
    *,
    dtype: str = "float32",
    per_channel: bool = False,
    tail: str | None = None,
    calibration: np.ndarray | None = None,
    description: str | None = "ModelOTA builder",
    metadata: dict[str, bytes] | None = None,
    name_prefix: str = "sequential/dense",
    unique_empty_buffers: bool = False,
    buffer_order_seed: int | None = None,
    external_buffers: bool = False,
) -> bytes:
    """A .tflite MLP: input [1, n_in] → FULLY_CONNECTED layers → optional tail.

    ``tail``: None, "softmax" or "reshape" (to [1, 1, n_out]). ``dtype``
    "int8" quantizes weights symmetrically (``per_channel``: one scale per
    output row) and activations asymmetrically from ``calibration`` inputs
    (default: 256 standard normal rows), bias as int32 with scale
    input_scale * weight_scale, as TFLM's int8 FULLY_CONNECTED requires.
    """
    if not layers:
        raise ValueError("an MLP needs at least one layer")
    for a, c in itertools.pairwise(layers):
        if a.n_out != c.n_in:
            raise ValueError(f"layer widths do not chain: {a.n_out} then {c.n_in}")
    if dtype not in ("float32", "int8"):
        raise ValueError(f"dtype must be float32 or int8, got {dtype!r}")
    if tail not in (None, "softmax", "reshape"):
        raise ValueError(f"unknown tail {tail!r}")
    quant = dtype == "int8"
    g = Graph()
    n_in = layers[0].n_in
    act_q: list[Quant] = []
    in_q: Quant | None = None
    if quant:
        if calibration is None:
            calibration = np.random.default_rng(0).normal(0, 1, (256, n_in))
        in_q = _activation_quant(calibration)
        act_q = [_activation_quant(h) for h in forward_float(layers, calibration)]
    tdt = "INT8" if quant else "FLOAT32"
    cur = g.tensor(
        "serving_default_input:0", [1, n_in], tdt, quant=in_q, shape_signature=[-1, n_in]
    )
    g.inputs.append(cur)
    cur_q = in_q
    for i, layer in enumerate(layers):
        name = f"{name_prefix}_{i}" if i else name_prefix
        w = layer.weights.astype(np.float32)
        bias = layer.bias.astype(np.float32)
        if quant:
            assert cur_q is not None
            if per_channel:
                wmax = np.maximum(np.max(np.abs(w), axis=1), 1e-8)
                w_scale = wmax / 127.0
            else:
                w_scale = np.full(w.shape[0], max(float(np.max(np.abs(w))), 1e-8) / 127.0)
            wq = np.clip(np.round(w / w_scale[:, None]), -127, 127).astype(np.int8)
            b_scale = cur_q.scale[0] * w_scale
            bq = np.round(bias / b_scale).astype(np.int32)
            scales = list(w_scale) if per_channel else [float(w_scale[0])]
            w_quant = Quant(scales, [0] * len(scales), quantized_dimension=0)
            b_quant = Quant(
                list(b_scale) if per_channel else [float(b_scale[0])],
                [0] * len(scales),
                quantized_dimension=0,
            )
            wt = g.tensor(f"{name}/MatMul", w.shape, "INT8", wq, w_quant)
            bt = g.tensor(f"{name}/BiasAdd/ReadVariableOp", [w.shape[0]], "INT32", bq, b_quant)
        else:
            wt = g.tensor(f"{name}/MatMul", w.shape, "FLOAT32", w)
            bt = g.tensor(f"{name}/BiasAdd/ReadVariableOp", [w.shape[0]], "FLOAT32", bias)
        out_q = act_q[i] if quant else None
        fused = "RELU" if layer.activation == "relu" else "NONE"
        out = g.tensor(
            f"{name}/BiasAdd", [1, layer.n_out], tdt, quant=out_q, shape_signature=[-1, layer.n_out]
        )
        g.op("FULLY_CONNECTED", [cur, wt, bt], [out], version=4 if quant else 1, activation=fused)
        if layer.activation == "relu_op":
            relu = g.tensor(
                f"{name}/Relu",
                [1, layer.n_out],
                tdt,
                quant=out_q,
                shape_signature=[-1, layer.n_out],
            )
            g.op("RELU", [out], [relu], version=2 if quant else 1)
            out = relu
        cur, cur_q = out, out_q
    n_out = layers[-1].n_out
    if tail == "softmax":
        sq = Quant([1.0 / 256.0], [-128]) if quant else None
        sm = g.tensor("Identity", [1, n_out], tdt, quant=sq, shape_signature=[-1, n_out])
        g.op("SOFTMAX", [cur], [sm], version=2 if quant else 1, beta=1.0)
        cur = sm
    elif tail == "reshape":
        shape = g.tensor("reshape/shape", [3], "INT32", np.array([1, 1, n_out], dtype=np.int32))
        rs = g.tensor("Identity", [1, 1, n_out], tdt, quant=cur_q)
        g.op("RESHAPE", [cur, shape], [rs], new_shape=[1, 1, n_out])
        cur = rs
    g.outputs.append(cur)
    return g.serialize(
        description=description,
        metadata=metadata,
        unique_empty_buffers=unique_empty_buffers,
        buffer_order_seed=buffer_order_seed,
        external_buffers=external_buffers,
    )
