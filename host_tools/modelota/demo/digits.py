"""A real TFLite demo model: handwritten digits, before and after training.

scikit-learn's bundled 8x8 digits (``load_digits``, no network) train a small
MLP, 64 inputs → 32 hidden (RELU) → 10 (SOFTMAX), with numpy. The barely
trained ("bad", a few gradient steps from random init) and the well trained
("good") networks are exported as float32 ``.tflite`` flatbuffers with
:mod:`modelota.models.tflite_build`; they share one architecture, so a ModelOTA
payload built by :func:`modelota.models.tflite.pack_tflite` turns a device's bad
model into the good one in place. :func:`tflm_accuracy` runs a model in the
TFLM interpreter.
"""

from __future__ import annotations

import numpy as np

from ..models.tflite_build import Dense, build_mlp

DIMS = (64, 32, 10)
BAD_STEPS = 1
GOOD_STEPS = 400


def load(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train X, train y, test X, test y); pixels scaled to [0, 1], a 75/25 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) * 3 // 4
    tr, te = order[:cut], order[cut:]
    return x[tr], y[tr], x[te], y[te]


def train(
    x: np.ndarray, y: np.ndarray, steps: int, seed: int = 0, start: list[Dense] | None = None
) -> list[Dense]:
    """Full-batch Adam on cross-entropy from a fixed random init (or from the
    layers of ``start``: more training of a model); ``steps`` = 0 is the
    starting network."""
    rng = np.random.default_rng(seed + 1)
    n_in, n_hidden, n_out = DIMS
    if start is None:
        params = [
            rng.normal(0, np.sqrt(2.0 / n_in), (n_in, n_hidden)),
            np.zeros(n_hidden),
            rng.normal(0, np.sqrt(1.0 / n_hidden), (n_hidden, n_out)),
            np.zeros(n_out),
        ]
    else:
        params = []
        for layer in start:
            params += [layer.weights.T.astype(np.float64), layer.bias.astype(np.float64)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    onehot = np.eye(n_out)[y]
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    x64 = x.astype(np.float64)
    for t in range(1, steps + 1):
        w1, c1, w2, c2 = params
        h_pre = x64 @ w1 + c1
        h = np.maximum(h_pre, 0.0)
        logits = h @ w2 + c2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g_logits = (p - onehot) / len(x)
        g_h = (g_logits @ w2.T) * (h_pre > 0)
        grads = [x64.T @ g_h, g_h.sum(axis=0), h.T @ g_logits, g_logits.sum(axis=0)]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat = m[i] / (1 - b1**t)
            vhat = v[i] / (1 - b2**t)
            params[i] = params[i] - lr * mhat / (np.sqrt(vhat) + eps)
    w1, c1, w2, c2 = params
    return [
        Dense(w1.T.astype(np.float32), c1.astype(np.float32), "relu"),
        Dense(w2.T.astype(np.float32), c2.astype(np.float32), "none"),
    ]


def export(layers: list[Dense], description: str) -> bytes:
    return build_mlp(layers, dtype="float32", tail="softmax", description=description)


def digits_models(seed: int = 0) -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    """(bad .tflite, good .tflite, test X, test y).

    Same architecture and initial weights; the bad model had BAD_STEPS
    gradient steps, the good one GOOD_STEPS. Their descriptions differ in
    length, so the two files differ in layout as two real exports would.
    """
    x_tr, y_tr, x_te, y_te = load(seed)
    bad = export(train(x_tr, y_tr, BAD_STEPS, seed), "ModelOTA digits demo: barely trained")
    good = export(
        train(x_tr, y_tr, GOOD_STEPS, seed),
        f"ModelOTA digits demo: trained, {GOOD_STEPS} full-batch Adam steps",
    )
    return bad, good, x_te, y_te


def tflm_predict(model: bytes, x: np.ndarray) -> np.ndarray:
    """Class predicted by the TFLM interpreter for each row of ``x``."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(bytes(model), arena_size=64 * 1024)
    out = np.empty(len(x), dtype=np.int64)
    for i, row in enumerate(np.asarray(x, dtype=np.float32)):
        it.set_input(row.reshape(1, -1), 0)
        it.invoke()
        out[i] = int(np.argmax(it.get_output(0)))
    return out


def tflm_accuracy(model_bytes: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` the model classifies as ``y``, run in the TFLM interpreter."""
    if len(x) == 0:
        raise ValueError("no samples")
    return float(np.mean(tflm_predict(model_bytes, x) == np.asarray(y)))
