"""Random TFLite models for the tests, built by :mod:`modelota.models.tflite_build`.

An :class:`Arch` is an architecture (layer widths, activations, float32 or
int8, per-tensor or per-channel weight scales, optional RESHAPE/SOFTMAX tail);
:func:`train` gives it weights; :func:`export` writes a .tflite, optionally
with a different file layout (description, metadata, names, buffer order,
empty buffers) as a second export of the same architecture would have;
:func:`pair` gives an old model and a retrained one (new weights, new
quantization scales; some layers possibly unchanged, as in fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from tflite_micro.python.tflite_micro import runtime

from modelota.models.tflite_build import Dense, build_mlp

ARENA = 64 * 1024


@dataclass(frozen=True)
class Arch:
    dims: tuple[int, ...]  # input width, then each layer's width
    activations: tuple[str, ...]  # per layer: "none", "relu" (fused), "relu_op"
    dtype: str = "float32"  # or "int8"
    per_channel: bool = False
    tail: str | None = None  # None, "softmax", "reshape"

    @property
    def n_in(self) -> int:
        return self.dims[0]


@st.composite
def archs(draw: st.DrawFn, max_depth: int = 4, max_width: int = 24) -> Arch:
    depth = draw(st.integers(1, max_depth))
    dims = tuple(draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1)))
    acts = tuple(
        draw(st.lists(st.sampled_from(["none", "relu", "relu_op"]), min_size=depth, max_size=depth))
    )
    dtype = draw(st.sampled_from(["float32", "int8"]))
    per_channel = dtype == "int8" and draw(st.booleans())
    tail = draw(st.sampled_from([None, "softmax", "reshape"]))
    return Arch(dims, acts, dtype, per_channel, tail)


def train(arch: Arch, rng: np.random.Generator) -> list[Dense]:
    """Random weights for ``arch`` (stand-in for a training run)."""
    layers = []
    for (n_in, n_out), act in zip(
        zip(arch.dims, arch.dims[1:], strict=False), arch.activations, strict=True
    ):
        w = rng.normal(0, 1.0 / np.sqrt(n_in), (n_out, n_in)) * rng.uniform(0.2, 2.0, (n_out, 1))
        b = rng.normal(0, 0.2, n_out)
        layers.append(Dense(w.astype(np.float32), b.astype(np.float32), act))
    return layers


def retrain(
    layers: list[Dense], rng: np.random.Generator, frozen: set[int] | None = None
) -> list[Dense]:
    """Same shapes, new values (layers in ``frozen`` keep theirs)."""
    out = []
    for i, layer in enumerate(layers):
        if frozen and i in frozen:
            out.append(layer)
            continue
        w = layer.weights * (1 + rng.normal(0, 0.3, layer.weights.shape)) + rng.normal(
            0, 0.05, layer.weights.shape
        )
        b = layer.bias + rng.normal(0, 0.1, layer.bias.shape)
        out.append(Dense(w.astype(np.float32), b.astype(np.float32), layer.activation))
    return out


def export(arch: Arch, layers: list[Dense], layout: int = 0, **extra: object) -> bytes:
    """The .tflite of ``layers``; ``layout`` > 0 varies everything but the model:
    description and metadata lengths, tensor names, empty buffers, buffer order."""
    calibration = np.random.default_rng(12345).normal(0, 1, (128, arch.n_in))
    kwargs: dict[str, object] = {}
    if layout:
        kwargs = {
            "description": "retrained export " + "#" * (layout % 37),
            "metadata": {
                "min_runtime_version": b"1.5.0\0\0\0\0\0\0\0\0\0\0\0",
                "notes": bytes(range(layout % 23)),
            },
            "name_prefix": f"model_{layout}/dense",
            "unique_empty_buffers": layout % 2 == 1,
            "buffer_order_seed": layout if layout % 3 else None,
        }
    kwargs.update(extra)
    return build_mlp(
        layers,
        dtype=arch.dtype,
        per_channel=arch.per_channel,
        tail=arch.tail,
        calibration=calibration,
        **kwargs,  # type: ignore[arg-type]
    )


def pair(
    arch: Arch, seed: int, *, layout: int = 0, frozen: set[int] | None = None
) -> tuple[bytes, bytes]:
    """(old, retrained) .tflite of one architecture; ``layout`` varies the new file's layout."""
    rng = np.random.default_rng(seed)
    old_layers = train(arch, rng)
    new_layers = retrain(old_layers, rng, frozen)
    return export(arch, old_layers), export(arch, new_layers, layout)


def inputs(arch: Arch, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` random model inputs of shape [1, n_in] in the model's input type."""
    if arch.dtype == "int8":
        return [rng.integers(-128, 128, (1, arch.n_in)).astype(np.int8) for _ in range(n)]
    return [rng.normal(0, 1.5, (1, arch.n_in)).astype(np.float32) for _ in range(n)]


def run(model: bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    """TFLM outputs of ``model`` for each input (one interpreter, invoked per input)."""
    it = runtime.Interpreter.from_bytes(bytes(model), arena_size=ARENA)
    outs = []
    for x in xs:
        it.set_input(x, 0)
        it.invoke()
        outs.append(np.array(it.get_output(0), copy=True))
    return outs
