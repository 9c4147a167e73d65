"""Model pairs from real training, for bench/bench_size.py.

Each pair is two ``.tflite`` files of one architecture, the second a real
successor of the first, as a fleet would ship them:

* ``seed``: the same network trained twice from different random seeds
  (every weight changes: the worst case for a delta);
* ``finetune``: the first model trained a few more epochs at a lower
  learning rate on shifted data (every weight moves a little);
* ``head``: only the last layer retrained (the rest is frozen, byte for byte).

Each comes as float32 and as int8 (weights quantized per output channel,
int32 bias, activations calibrated on training inputs, as TensorFlow's
converter does), written with :mod:`modelota.models.tflite_build`.

Data: scikit-learn's bundled 8x8 digits (no network), scaled to 16x16 with
random shifts and noise for the convolutional network. Training: PyTorch on
the CPU (``pip install torch==2.13.0``), deterministic seeds, a few seconds
to a minute per model. Files are cached under ``--cache`` (keyed by this
file's hash), so a second run of the bench only measures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv" (3x3, SAME), "flatten", "dense"
    weights: np.ndarray | None = None  # conv: (out, kh, kw, in); dense: (out, in)
    bias: np.ndarray | None = None
    stride: int = 1
    relu: bool = True


@dataclass(frozen=True)
class Pair:
    name: str  # model/kind/dtype
    old: bytes
    new: bytes


# ---------------------------------------------------------------- data


def digits(size: int, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits as (N, size*size) floats in [0, 1], augmented when ``size`` > 8."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.reshape(-1, 8, 8) / 16.0
    y = d.target
    if size == 8:
        return x.reshape(len(x), 64).astype(np.float32), y
    rng = np.random.default_rng(seed)
    scale = size // 8
    big = np.kron(x, np.ones((1, scale, scale)))
    out, labels = [], []
    for _ in range(copies):
        pad = np.pad(big, ((0, 0), (2, 2), (2, 2)))
        dx, dy = rng.integers(0, 5, 2)
        img = pad[:, dy : dy + size, dx : dx + size]
        img = img + rng.normal(0, 0.05, img.shape)
        out.append(img)
        labels.append(y)
    xs = np.concatenate(out).reshape(-1, size * size).astype(np.float32)
    return xs, np.concatenate(labels)


# ---------------------------------------------------------------- training


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - reported by the bench
        raise RuntimeError("PyTorch is needed to train: pip install torch==2.13.0") from e
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return torch


def _net(arch: str) -> Any:
    torch = _torch()
    nn = torch.nn
    if arch == "mlp-small":
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    if arch == "mlp-wide":
        return nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
        )
    if arch == "autoencoder":
        return nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16), nn.ReLU(),
            nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64),
        )  # fmt: skip
    if arch == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 16, 16)),
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),  # NCHW order; converted to NHWC on export
            nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip
    raise ValueError(arch)


def _data(arch: str, shifted: bool) -> tuple[np.ndarray, np.ndarray]:
    if arch == "cnn":
        return digits(16, 3, seed=7 if shifted else 1)
    x, y = digits(8, 1, 0)
    if shifted:  # a drift in the field: brighter, noisier inputs
        rng = np.random.default_rng(5)
        x = np.clip(x * 1.15 + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    return x, y


def train(
    arch: str, seed: int, epochs: int, *, start: Any = None, lr: float = 3e-3,
    shifted: bool = False, head_only: bool = False,
) -> Any:  # fmt: skip
    """A trained torch network (``start``'s weights copied when given)."""
    torch = _torch()
    torch.manual_seed(seed)
    net = _net(arch)
    if start is not None:
        net.load_state_dict(start.state_dict())
    x, y = _data(arch, shifted)
    xt = torch.from_numpy(x)
    target = xt if arch == "autoencoder" else torch.from_numpy(y.astype(np.int64))
    params = list(net.parameters())
    if head_only:
        last = [m for m in net if isinstance(m, torch.nn.Linear)][-1]
        params = list(last.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = torch.nn.MSELoss() if arch == "autoencoder" else torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), target[idx])
            loss.backward()
            opt.step()
    return net


def layers_of(net: Any) -> list[Layer]:
    """The network as export layers (NHWC conv weights, NHWC flatten order)."""
    torch = _torch()
    out: list[Layer] = []
    mods = list(net)
    conv_shape: tuple[int, int, int] | None = None  # C, H, W before the flatten
    hw = 16
    for i, m in enumerate(mods):
        relu = i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.ReLU)
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().numpy().transpose(0, 2, 3, 1)  # OIHW -> OHWI
            hw = (hw + m.stride[0] - 1) // m.stride[0]
            conv_shape = (m.out_channels, hw, hw)
            out.append(Layer("conv", w.copy(), m.bias.detach().numpy().copy(), m.stride[0], relu))
        elif isinstance(m, torch.nn.Flatten):
            out.append(Layer("flatten"))
        elif isinstance(m, torch.nn.Linear):
            w = m.weight.detach().numpy().copy()
            if conv_shape is not None and out and out[-1].kind == "flatten":
                c, h, ww = conv_shape
                # torch flattens CHW, TFLite's RESHAPE of an NHWC tensor gives HWC
                w = w.reshape(-1, c, h, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            out.append(Layer("dense", w, m.bias.detach().numpy().copy(), relu=relu))
    return out


# ---------------------------------------------------------------- export


def _act_quant(values: np.ndarray) -> Any:
    from modelota.models.tflite_build import _activation_quant

    return _activation_quant(values)


def _forward(layers: list[Layer], x: np.ndarray, hw: int) -> list[np.ndarray]:
    """Float activations after each layer (for int8 calibration)."""
    outs = []
    h = x.reshape(len(x), hw, hw, 1) if layers[0].kind == "conv" else x
    for layer in layers:
        if layer.kind == "conv":
            assert layer.weights is not None and layer.bias is not None
            h = _conv_nhwc(h, layer.weights, layer.stride) + layer.bias
        elif layer.kind == "flatten":
            h = h.reshape(len(h), -1)
        else:
            assert layer.weights is not None and layer.bias is not None
            h = h @ layer.weights.T + layer.bias
        if layer.relu and layer.kind != "flatten":
            h = np.maximum(h, 0)
        outs.append(h)
    return outs


def _conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    n, hh, ww, _ = x.shape
    cout, kh, kw, _ = w.shape
    oh, ow = (hh + stride - 1) // stride, (ww + stride - 1) // stride
    pad_h = max((oh - 1) * stride + kh - hh, 0)
    pad_w = max((ow - 1) * stride + kw - ww, 0)
    xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                    (0, 0)))  # fmt: skip
    out = np.zeros((n, oh, ow, cout))
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[:, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride, :]
            out += patch @ w[:, dy, dx, :].T
    return out


def export(layers: list[Layer], int8: bool, calibration: np.ndarray, hw: int) -> bytes:
    """A .tflite of ``layers``: CONV_2D / RESHAPE / FULLY_CONNECTED, float32 or int8."""
    from modelota.models.tflite_build import Graph, Quant

    g = Graph()
    conv = layers[0].kind == "conv"
    in_shape = [1, hw, hw, 1] if conv else [1, calibration.shape[1]]
    in_q = _act_quant(calibration) if int8 else None
    acts = [_act_quant(a) for a in _forward(layers, calibration, hw)] if int8 else []
    tdt = "INT8" if int8 else "FLOAT32"
    cur = g.tensor("serving_default_input:0", in_shape, tdt, quant=in_q)
    g.inputs.append(cur)
    cur_q = in_q
    shape = in_shape
    for i, layer in enumerate(layers):
        name = f"model/{layer.kind}_{i}"
        out_q = acts[i] if int8 else None
        if layer.kind == "flatten":
            shape = [1, int(np.prod(shape[1:]))]
            shp = g.tensor(f"{name}/shape", [2], "INT32", np.array(shape, dtype=np.int32))
            out = g.tensor(name, shape, tdt, quant=cur_q)
            g.op("RESHAPE", [cur, shp], [out], new_shape=shape)
            cur = out
            continue
        assert layer.weights is not None and layer.bias is not None
        w = layer.weights.astype(np.float32)
        b = layer.bias.astype(np.float32)
        if int8:
            assert cur_q is not None
            flat = np.abs(w).reshape(w.shape[0], -1)
            w_scale = np.maximum(flat.max(axis=1), 1e-8) / 127.0
            wq = np.clip(np.round(w / w_scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127)
            b_scale = cur_q.scale[0] * w_scale
            wt = g.tensor(f"{name}/weights", w.shape, "INT8", wq.astype(np.int8),
                          Quant(list(w_scale), [0] * len(w_scale)))  # fmt: skip
            bt = g.tensor(f"{name}/bias", [w.shape[0]], "INT32",
                          np.round(b / b_scale).astype(np.int32),
                          Quant(list(b_scale), [0] * len(b_scale)))  # fmt: skip
        else:
            wt = g.tensor(f"{name}/weights", w.shape, "FLOAT32", w)
            bt = g.tensor(f"{name}/bias", [w.shape[0]], "FLOAT32", b)
        act = "RELU" if layer.relu else "NONE"
        if layer.kind == "conv":
            hw_out = (shape[1] + layer.stride - 1) // layer.stride
            shape = [1, hw_out, hw_out, w.shape[0]]
            out = g.tensor(name, shape, tdt, quant=out_q)
            g.op("CONV_2D", [cur, wt, bt], [out], version=3 if int8 else 1,
                 stride=layer.stride, activation=act)  # fmt: skip
        else:
            shape = [1, w.shape[0]]
            out = g.tensor(name, shape, tdt, quant=out_q)
            g.op("FULLY_CONNECTED", [cur, wt, bt], [out], version=4 if int8 else 1,
                 activation=act)  # fmt: skip
        cur, cur_q = out, out_q
    g.outputs.append(cur)
    return g.serialize(description="bench_size trained model")


# ---------------------------------------------------------------- pairs

ARCHS = {  # arch: (epochs from scratch, fine-tune epochs, head epochs)
    "mlp-small": (60, 5, 10),
    "autoencoder": (40, 5, 10),
    "mlp-wide": (40, 4, 8),
    "cnn": (8, 2, 3),
}


def _pair_nets(arch: str) -> dict[str, tuple[Any, Any]]:
    full, tune, head = ARCHS[arch]
    a = train(arch, seed=1, epochs=full)
    b = train(arch, seed=2, epochs=full)
    ft = train(arch, seed=3, epochs=tune, start=a, lr=5e-4, shifted=True)
    hd = train(arch, seed=4, epochs=head, start=a, lr=1e-3, shifted=True, head_only=True)
    return {"seed": (a, b), "finetune": (a, ft), "head": (a, hd)}


def build_pairs(cache: Path | None, archs: list[str] | None = None) -> list[Pair]:
    """Every (architecture, kind, dtype) pair, trained or read from the cache."""
    key = hashlib.sha256(HERE.read_bytes()).hexdigest()[:12]
    pairs: list[Pair] = []
    for arch in archs or list(ARCHS):
        d = cache / f"{arch}-{key}" if cache is not None else None
        names = [f"{k}-{t}" for k in ("seed", "finetune", "head") for t in ("float", "int8")]
        if d is not None and all((d / f"{n}.{s}.tflite").exists() for n in names
                                 for s in ("old", "new")):  # fmt: skip
            for n in names:
                kind, dtype = n.split("-")
                pairs.append(Pair(f"{arch}/{kind}/{dtype}", (d / f"{n}.old.tflite").read_bytes(),
                                  (d / f"{n}.new.tflite").read_bytes()))  # fmt: skip
            continue
        hw = 16 if arch == "cnn" else 8
        x, _ = _data(arch, False)
        calib = x[np.random.default_rng(0).choice(len(x), 256, replace=False)]
        for kind, (old_net, new_net) in _pair_nets(arch).items():
            for dtype in ("float", "int8"):
                old = export(layers_of(old_net), dtype == "int8", calib, hw)
                new = export(layers_of(new_net), dtype == "int8", calib, hw)
                pairs.append(Pair(f"{arch}/{kind}/{dtype}", old, new))
                if d is not None:
                    d.mkdir(parents=True, exist_ok=True)
                    (d / f"{kind}-{dtype}.old.tflite").write_bytes(old)
                    (d / f"{kind}-{dtype}.new.tflite").write_bytes(new)
    return pairs


# ---------------------------------------------------------------- shipped models


def shipped_models() -> list[Path]:
    """The .tflite files the tflite-micro pip package ships."""
    try:
        import tflite_micro
    except ImportError:
        return []
    root = Path(tflite_micro.__file__).resolve().parent
    return sorted(root.rglob("*.tflite"))


def _float_mlp_tensors(data: bytes) -> list[tuple[Any, Any]]:
    """(weights, bias) TensorInfo of each FULLY_CONNECTED op of a float model."""
    from modelota.models.tflite import read_tflite

    m = read_tflite(data)
    out = []
    for op in m.operators:
        if op.op != "FULLY_CONNECTED":
            raise ValueError(f"only float MLPs are retrained here, found {op.op}")
        w, b = (m.tensor(op.subgraph, i) for i in op.inputs[1:3])
        if w.dtype != "FLOAT32" or b.dtype != "FLOAT32":
            raise ValueError("only float MLPs are retrained here")
        out.append((w, b))
    return out


def _write_floats(data: bytes, net: Any, tensors: list[tuple[Any, Any]]) -> bytes:
    import torch

    out = bytearray(data)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for lin, (w, b) in zip(linears, tensors, strict=True):
        for t, values in ((w, lin.weight), (b, lin.bias)):
            raw = values.detach().numpy().astype("<f4").tobytes()
            assert len(raw) == t.data_length
            out[t.data_offset : t.data_offset + len(raw)] = raw
    return bytes(out)


def shipped_pairs() -> list[Pair]:
    """Twins of the shipped float MLPs (tflite-micro's sine model): the same
    file with its weights fine-tuned a few epochs, and retrained from scratch."""
    torch = _torch()
    pairs = []
    for path in shipped_models():
        data = path.read_bytes()
        try:
            tensors = _float_mlp_tensors(data)
        except ValueError:
            continue
        dims = [(w.shape[1], w.shape[0]) for w, _ in tensors]
        layers: list[Any] = []
        for i, (n_in, n_out) in enumerate(dims):
            layers.append(torch.nn.Linear(n_in, n_out))
            if i + 1 < len(dims):
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        with torch.no_grad():
            for lin, (w, b) in zip(net[::2], tensors, strict=True):
                wv = np.frombuffer(data, "<f4", w.data_length // 4, w.data_offset)
                bv = np.frombuffer(data, "<f4", b.data_length // 4, b.data_offset)
                lin.weight.copy_(torch.from_numpy(wv.reshape(w.shape).copy()))
                lin.bias.copy_(torch.from_numpy(bv.copy()))
        x = torch.linspace(0, 2 * np.pi, 1000).reshape(-1, 1)
        y = torch.sin(x)

        def fit(model: Any, epochs: int, lr: float, seed: int, xs: Any = x, ys: Any = y) -> Any:
            torch.manual_seed(seed)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            for _ in range(epochs):
                for i in range(0, len(xs), 50):
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(model(xs[i : i + 50]), ys[i : i + 50]).backward()
                    opt.step()
            return model

        import copy

        tuned = fit(copy.deepcopy(net), 5, 3e-4, 1)
        torch.manual_seed(2)
        fresh = torch.nn.Sequential(*[type(m)(*([] if isinstance(m, torch.nn.ReLU) else
                                                 [m.in_features, m.out_features]))
                                      for m in net])  # fmt: skip
        fresh = fit(fresh, 200, 3e-3, 2)
        stem = path.stem
        pairs.append(Pair(f"{stem}/finetune/float", data, _write_floats(data, tuned, tensors)))
        pairs.append(Pair(f"{stem}/seed/float", data, _write_floats(data, fresh, tensors)))
    return pairs
