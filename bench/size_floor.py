"""How far below its payload a delta could go: the order-0 floor of a pair.

Used by bench_size.py (table 2b) for the pairs that miss the goal against
TinyMLDelta. For every changed element of every field the payload rewrites
(a tensor's data, each quantization vector), split into byte lanes (byte j
of every element: int32 and float32 fields have four lanes with very
different statistics), the floor charges the lane's order-0 entropy: the
fewest bits any coder needs when it codes each byte from the exact byte
frequencies of its lane, given for free (of the new values or, when fewer,
of their differences with the old ones). Bytes outside any field cost 8 bits.
Framing is what the v2 payload itself spends on its header and chunk heads
and CRCs. This is not a bound for every coder (one that finds structure
across elements can go lower, as an adaptive one can on a drifting
distribution); it is where byte-frequency coding ends.

The one structure across fields this bench has found: TFLite's converter
writes every bias's per-channel scales as the float32 product of the input
scale and the weights' scales, bit for bit, so they carry no information of
their own. ``exact_bias_scales`` finds them; table 2b shows the floor
without them, next to the delta without PRED (the chunk flag that predicts
the weights' scales from them, docs/FORMAT.md "KEEP and PRED").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelota.format.payload import Payload, _entropy
from modelota.models.tflite import TensorInfo, read_tflite, rebase

ELEMENT = {"INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2, "FLOAT16": 2, "INT32": 4,
           "FLOAT32": 4, "UINT32": 4, "INT64": 8, "FLOAT64": 8}  # fmt: skip
OPS_WITH_BIAS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def entropy_bytes(values: np.ndarray) -> float:
    """Order-0 entropy of uint8 ``values``, in bytes (the packer's own measure)."""
    return _entropy(values.tobytes())


def adaptive_bytes(values: np.ndarray) -> float:
    """Code length, in bytes, of ``values`` under the Krichevsky-Trofimov
    estimator over 256 byte values: an order-0 coder that learns the
    frequencies as it goes (count + 1/2 over seen + 128), the best such
    learner on average. Above :func:`entropy_bytes` by about 127.5 log2(n)
    bits on a sample of n bytes: the price of not knowing the frequencies."""
    if values.size == 0:
        return 0.0
    seen = [0] * 256
    before = np.empty(values.size)
    for i, v in enumerate(values.tolist()):
        before[i] = seen[v]
        seen[v] += 1
    return float(-np.log2((before + 0.5) / (np.arange(values.size) + 128.0)).sum()) / 8


def fields(t: TensorInfo) -> list[tuple[int, int, int]]:
    """(offset, length, element size) of each vector of ``t`` a payload may rewrite."""
    out = []
    if t.weight and t.data_offset is not None and t.data_length > 0:
        out.append((t.data_offset, t.data_length, ELEMENT.get(t.dtype.upper(), 1)))
    q = t.quantization
    if q is not None:
        for off, n, size in (
            (q.scale_offset, q.scale_length, 4),
            (q.zero_point_offset, q.zero_point_length, 8),
            (q.min_offset, q.min_length, 4),
            (q.max_offset, q.max_length, 4),
        ):
            if off is not None and n > 0:
                out.append((off, n, size))  # fmt: skip
    return out


def bias_scale_pairs(model_bytes: bytes) -> list[tuple[float, int, int, int]]:
    """(input scale, weights' scales offset, bias scales offset, vector bytes)
    of every op whose bias scales equal, bit for bit, the float32 product of
    the input scale and the weights' per-channel scales."""
    m = read_tflite(model_bytes)

    def scales(t: TensorInfo) -> tuple[int, np.ndarray] | None:
        q = t.quantization
        if q is None or q.scale_offset is None or q.scale_length == 0:
            return None
        n = q.scale_length // 4
        return q.scale_offset, np.frombuffer(model_bytes, np.float32, n, q.scale_offset)

    found = []
    for op in m.operators:  # inputs (input, weights, bias) for these three
        if op.op not in OPS_WITH_BIAS or len(op.inputs) < 3 or min(op.inputs[:3]) < 0:
            continue
        x, w, b = (scales(m.tensor(op.subgraph, i)) for i in op.inputs[:3])
        if x is None or w is None or b is None or x[1].size != 1 or b[1].size != w[1].size:
            continue
        product = (w[1] * x[1][0]).astype(np.float32)
        if np.array_equal(product.view(np.uint32), b[1].view(np.uint32)):
            found.append((float(x[1][0]), w[0], b[0], b[1].size * 4))
    return found


def exact_bias_scales(model_bytes: bytes) -> set[tuple[int, int]]:
    """(offset, length) of the bias scale vectors :func:`bias_scale_pairs` finds."""
    return {(b, n) for _, _, b, n in bias_scale_pairs(model_bytes)}


@dataclass
class Floor:
    """Bytes. ``static``: the changed fields' byte lanes at their order-0
    entropy (frequencies given for free); ``adaptive``: the same lanes under
    the KT learner (frequencies learnt, each lane starting afresh)."""

    static: float
    adaptive: float
    outside: int  # changed bytes outside any field
    framing: int  # header, chunk heads and CRCs of the v2 payload
    bias_static: float  # the part of ``static`` in exactly predictable bias scales
    bias_adaptive: float  # and of ``adaptive``

    def total(self, adaptive: bool, without_bias: bool = False) -> float:
        fields = self.adaptive if adaptive else self.static
        if without_bias:
            fields -= self.bias_adaptive if adaptive else self.bias_static
        return fields + self.outside + self.framing


def delta_floor(old_bytes: bytes, new_bytes: bytes, v2_delta: Payload) -> Floor:
    old_m = read_tflite(old_bytes)
    target = rebase(old_m, read_tflite(new_bytes))
    old = np.frombuffer(old_bytes, np.uint8)
    new = np.frombuffer(target, np.uint8)
    changed = old != new
    covered = np.zeros(len(old), bool)
    exact = exact_bias_scales(target)
    static = adaptive = bias_static = bias_adaptive = 0.0
    seen: set[tuple[int, int]] = set()
    for t in old_m.tensors:
        for off, n, size in fields(t):
            if (off, n) in seen:
                continue
            seen.add((off, n))
            covered[off : off + n] = True
            count = n // size
            a = new[off : off + count * size].reshape(count, size)
            b = old[off : off + count * size].reshape(count, size)
            rows = changed[off : off + count * size].reshape(count, size).any(axis=1)
            s = ad = 0.0
            for j in range(size):
                lane = min((a[rows, j], a[rows, j] - b[rows, j]), key=entropy_bytes)
                s += entropy_bytes(lane)
                ad += adaptive_bytes(lane)
            static += s
            adaptive += ad
            if (off, n) in exact:
                bias_static += s
                bias_adaptive += ad
    framing = v2_delta.header.length + sum(
        c.wire_size - len(c.body)
        for c in v2_delta.chunks  # type: ignore[union-attr]
    )
    outside = int((changed & ~covered).sum())
    return Floor(static, adaptive, outside, framing, bias_static, bias_adaptive)
