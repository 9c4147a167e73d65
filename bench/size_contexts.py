#!/usr/bin/env python3
"""Would a richer byte model shrink from-scratch int8 retrains? Measured.

    python bench/size_contexts.py [--cache DIR]

For the delta of every int8 pair retrained from another seed (the pairs
bench_size.py misses its goal on), this codes the same decoded streams the
v2 packer chose for its range-coded chunks under model variants and prints
the ideal code length of each (the sum of -log2 p over every coded bit: a
range coder comes within a few bytes per chunk of it). Every variant is an
adaptive binary model like v2's (16-bit probabilities, updated by 1/2^k);
what changes is which probabilities a bit uses:

* v2: tree A for every byte, tree B for the first seven bits of lane bytes
  (what the device decodes);
* shift 4 / shift 6: v2 adapting by 1/16 or 1/64 instead of 1/32;
* prev magnitude: a tree per magnitude class of the previous byte (3);
* row above: a tree per magnitude class of the weight one row above (3);
* energy: the first four bits from a tree per class of the running mean
  magnitude of recent weights (4 classes), the rest shared;
* 4 lanes: a tree per byte lane of int32/float32 chunks (LANES) for all
  four lanes, not only the top one.

Chunks v2 sends raw or as runs count at their v2 size. The RAM a variant
would need on the device is not the question here: none of them pays.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import modelota  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent / "host_tools"))

import trained_models  # noqa: E402
from bench_crypto import table  # noqa: E402

from modelota.format import codec  # noqa: E402
from modelota.models.tflite import pack_tflite, read_tflite  # noqa: E402

LOG = [0.0] + [-math.log2(i / 65536) for i in range(1, 65536)]
# a bit's probabilities: (tree name, node) -> 16-bit probability of a 0
Ctx = Callable[[int, int, int], str]  # (region offset, node, lane flag) -> tree name


def magnitude_class(b: int) -> int:
    m = abs(b - 256 if b > 127 else b)
    return 0 if m < 24 else 1 if m < 64 else 2


def code_length(pay_chunks: list, old: bytes, tree_of: Callable[..., str], shift: int = 5,
                on_byte: Callable[[int, int], None] | None = None) -> float:  # fmt: skip
    """Bytes of the v2 delta with the range-coded chunks under ``tree_of``."""
    trees: dict[str, list[int]] = {}
    total = 0.0
    for c in pay_chunks:
        if c.method != codec.RC:
            total += c.wire_size
            continue
        total += c.wire_size - len(c.body)  # framing as v2 sends it
        stream = codec.sub_base(c.data, old[c.offset : c.offset + c.length]) \
            if c.enc & codec.DIFF else c.data  # fmt: skip
        lanes = bool(c.enc & codec.LANES)
        bits = 0.0
        for i, v in enumerate(stream):
            off = c.offset + i
            node = 1
            for s in range(7, -1, -1):
                name = tree_of(off, node, lanes)
                t = trees.setdefault(name, [32768] * 256)
                p = t[node]
                if (v >> s) & 1:
                    bits += LOG[65536 - p]
                    t[node] = p - (p >> shift)
                    node = 2 * node + 1
                else:
                    bits += LOG[p]
                    t[node] = p + ((65536 - p) >> shift)
                    node = 2 * node
            if on_byte is not None:
                on_byte(off, c.data[i])
        total += bits / 8 + 1  # the range coder's flush, about a byte
    return total


def v2_tree(off: int, node: int, lanes: bool) -> str:
    return "B" if lanes and off & 3 == 3 and node < 128 else "A"


def variants(pair: trained_models.Pair) -> dict[str, float]:
    pay = pack_tflite(pair.old, pair.new, version=2, base_version=1, delta=True, chunk_size=1024)
    chunks, old = pay.chunks, pair.old
    row_len: dict[int, tuple[int, int]] = {}  # offset -> (row length, tensor start)
    for t in read_tflite(pair.old).tensors:
        int8 = t.dtype.upper() == "INT8" and len(t.shape) > 1
        if t.weight and t.data_offset is not None and int8:
            n = t.data_length // t.shape[0]
            for o in range(t.data_offset, t.data_offset + t.data_length):
                row_len[o] = (n, t.data_offset)
    region = bytearray(pair.old)  # new bytes land here as they are coded
    state = {"prev": 0, "energy": 40 << 4}

    def track(off: int, b: int) -> None:
        region[off] = b
        state["prev"] = b
        m = abs(b - 256 if b > 127 else b)
        state["energy"] += ((m << 4) - state["energy"]) >> 4

    def prev_tree(off: int, node: int, lanes: bool) -> str:
        base = v2_tree(off, node, lanes)
        return base if base == "B" else f"A{magnitude_class(state['prev'])}"

    def above_tree(off: int, node: int, lanes: bool) -> str:
        base = v2_tree(off, node, lanes)
        n, start = row_len.get(off, (0, 0))
        if base == "B" or not n or off - n < start:
            return base
        return f"A{magnitude_class(region[off - n])}"

    def energy_tree(off: int, node: int, lanes: bool) -> str:
        base = v2_tree(off, node, lanes)
        if base == "B" or node >= 16:
            return base
        e = state["energy"] >> 4
        return f"E{0 if e < 30 else 1 if e < 45 else 2 if e < 60 else 3}"

    def lanes4_tree(off: int, node: int, lanes: bool) -> str:
        return f"L{off & 3}" if lanes else "A"

    out = {"v2 (as sent)": float(len(pay.encode()))}
    header = pay.header.length
    for name, fn, shift in (("v2", v2_tree, 5), ("shift 4", v2_tree, 4), ("shift 6", v2_tree, 6),
                            ("prev magnitude", prev_tree, 5), ("row above", above_tree, 5),
                            ("energy", energy_tree, 5), ("4 lanes", lanes4_tree, 5)):  # fmt: skip
        region[:] = pair.old
        state.update(prev=0, energy=40 << 4)
        out[name] = header + code_length(chunks, old, fn, shift, track)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "modelota-bench")
    args = ap.parse_args()
    pairs = [p for p in trained_models.build_pairs(args.cache, ["mlp-small", "autoencoder",
                                                                "mlp-wide"])
             if p.name.endswith("seed/int8")]  # fmt: skip
    rows = []
    names: list[str] = []
    for pair in pairs:
        v = variants(pair)
        names = list(v)
        base = v["v2"]
        rows.append([pair.name] + [f"{v[n]:.0f}" if n.startswith("v2") else
                                   f"{v[n]:.0f} ({100 * (v[n] - base) / base:+.1f}%)"
                                   for n in names])  # fmt: skip
    table("Richer byte models on from-scratch int8 retrains: delta bytes (ideal code length;"
          " % against v2's model)", ["pair", *names], rows)  # fmt: skip


if __name__ == "__main__":
    main()
