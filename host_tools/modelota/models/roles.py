"""Which constant tensors are learned parameters (a payload may rewrite them)
and which are fixed (their bytes belong to the fingerprint): one rule for
.tflite files and Edge Impulse EON models. docs/FORMAT.md ("Learned
parameters") prints the same table; tests/test_fingerprint_doc.py checks that
the two agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence

# (operator, input position) pairs whose constant tensor is a learned parameter
# that a payload may rewrite. Every other constant is fixed: its bytes are part
# of the fingerprint. docs/FORMAT.md lists the same table (a test compares them).

_RANGE = range
WEIGHT_INPUTS: dict[str, frozenset[int]] = {
    "CONV_2D": frozenset({1, 2}),
    "DEPTHWISE_CONV_2D": frozenset({1, 2}),
    "CONV_3D": frozenset({1, 2}),
    "FULLY_CONNECTED": frozenset({1, 2}),
    "TRANSPOSE_CONV": frozenset({1, 3}),
    "CONV_3D_TRANSPOSE": frozenset({1, 3}),
    "LSTM": frozenset([*_RANGE(1, 18), *_RANGE(20, 24)]),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset([*_RANGE(1, 18), *_RANGE(20, 24)]),
    "BIDIRECTIONAL_SEQUENCE_LSTM": frozenset([*_RANGE(1, 35), *_RANGE(40, 48)]),
    "RNN": frozenset({1, 2, 3}),
    "UNIDIRECTIONAL_SEQUENCE_RNN": frozenset({1, 2, 3}),
    "BIDIRECTIONAL_SEQUENCE_RNN": frozenset({1, 2, 3, 5, 6, 7, 10, 11}),
    "SVDF": frozenset({1, 2, 3}),
    "EMBEDDING_LOOKUP": frozenset({1}),
    "EMBEDDING_LOOKUP_SPARSE": frozenset({3, 4}),
    "HASHTABLE_LOOKUP": frozenset({2}),
    "PRELU": frozenset({1}),
}
# ops whose constant operand is learned only when it holds real numbers
# (float or quantized): an int32/int64 constant there is index arithmetic
VALUE_INPUTS: dict[str, frozenset[int]] = {
    "ADD": frozenset({0, 1}),
    "SUB": frozenset({0, 1}),
    "MUL": frozenset({0, 1}),
    "DIV": frozenset({0, 1}),
    "SQUARED_DIFFERENCE": frozenset({0, 1}),
    "BATCH_MATMUL": frozenset({0, 1}),
    "GATHER": frozenset({0}),
}
VALUE_TYPES = frozenset({"FLOAT16", "FLOAT32", "FLOAT64", "BFLOAT16", "INT8", "UINT8", "INT16"})
# input 0 is a weight when the op's output is one (fp16 or sparse weights)
PASS_THROUGH = frozenset({"DEQUANTIZE", "DENSIFY"})


def learned_tensors(
    n_tensors: int,
    ops: Sequence[tuple[str, Sequence[int], Sequence[int]]],
    dtype: Callable[[int], str],
    outputs: Sequence[int] = (),
) -> list[bool]:
    """Per tensor of one graph: True when it has at least one consumer, is not a
    graph output and every consumer takes it as a learned parameter.

    ``ops`` are (operator name as in the TFLite schema, input tensor indices,
    output tensor indices) in graph order, -1 for an absent optional input;
    ``dtype(t)`` the tensor's type name (FLOAT32, INT8...)."""
    consumers: list[list[tuple[str, int, Sequence[int]]]] = [[] for _ in range(n_tensors)]
    for op, ins, outs in ops:
        for pos, t in enumerate(ins):
            if 0 <= t < n_tensors:
                consumers[t].append((op, pos, outs))
    graph_outputs = set(outputs)
    memo: dict[int, bool] = {}

    def learned(t: int, depth: int = 0) -> bool:
        if t in memo:
            return memo[t]
        memo[t] = False
        uses = consumers[t]
        ok = bool(uses) and t not in graph_outputs and depth < 16
        for op, pos, outs in uses if ok else []:
            if pos in WEIGHT_INPUTS.get(op, ()):
                continue
            if pos in VALUE_INPUTS.get(op, ()) and dtype(t) in VALUE_TYPES:
                continue
            if op in PASS_THROUGH and pos == 0 and len(outs) == 1 and 0 <= outs[0] < n_tensors:
                if learned(outs[0], depth + 1):
                    continue
            ok = False
            break
        memo[t] = ok
        return ok

    return [learned(t) for t in range(n_tensors)]
