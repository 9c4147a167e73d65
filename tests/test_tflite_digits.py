"""The digits demo model: a barely trained and a well trained TFLite classifier of
one architecture, and a ModelOTA payload that turns one into the other in place
on the native C++ core, proven by accuracy in the TFLM interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from modelota.demo.digits import DIMS, digits_models, tflm_accuracy, tflm_predict
from modelota.format.payload import HEADER_LEN
from modelota.models.tflite import pack_tflite, read_tflite, rebase
from modelota.sim.native import Updater
from modelota.status import Status


@pytest.fixture(scope="module")
def models() -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    return digits_models(seed=0)


def test_bad_and_good_models_share_one_architecture(
    models: tuple[bytes, bytes, np.ndarray, np.ndarray],
) -> None:
    bad, good, x, y = models
    mb, mg = read_tflite(bad), read_tflite(good)
    assert mb.fingerprint() == mg.fingerprint()
    assert len(bad) != len(good)  # different descriptions: two exports, two layouts
    shapes = [t.shape for t in mb.tensors if t.constant]
    assert shapes == [(DIMS[1], DIMS[0]), (DIMS[1],), (DIMS[2], DIMS[1]), (DIMS[2],)]
    assert x.shape == (len(y), DIMS[0]) and x.dtype == np.float32
    assert set(np.unique(y)) == set(range(10))
    # deterministic: the same seed gives the same bytes
    again = digits_models(seed=0)
    assert again[0] == bad and again[1] == good


def test_good_model_is_far_better(models: tuple[bytes, bytes, np.ndarray, np.ndarray]) -> None:
    bad, good, x, y = models
    acc_bad, acc_good = tflm_accuracy(bad, x, y), tflm_accuracy(good, x, y)
    assert acc_good > 0.9
    assert acc_good > acc_bad + 0.30


@pytest.mark.parametrize("delta", [False, True])
def test_update_on_the_native_core_gives_exactly_the_good_model(
    models: tuple[bytes, bytes, np.ndarray, np.ndarray], delta: bool
) -> None:
    bad, good, x, y = models
    payload = pack_tflite(
        bad, good, version=2, base_version=1 if delta else None, delta=delta, chunk_size=512
    )
    device = bytearray(bad)
    u = Updater(
        device,
        fingerprint=read_tflite(bad).fingerprint(),
        current_version=1,
        buffer_len=max(512, HEADER_LEN),
    )
    raw = payload.encode()
    assert u.apply(raw, splits=list(range(64, len(raw), 64))) == Status.Ok
    assert bytes(device) == rebase(read_tflite(bad), read_tflite(good))
    assert np.array_equal(tflm_predict(bytes(device), x), tflm_predict(good, x))
    assert tflm_accuracy(bytes(device), x, y) == tflm_accuracy(good, x, y)
    assert tflm_accuracy(bytes(device), x, y) > tflm_accuracy(bad, x, y) + 0.30


def test_accuracy_needs_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        tflm_accuracy(b"", np.zeros((0, 64), np.float32), np.zeros(0))
