"""The firmware's model-quality accumulator (firmware_lib/modelota/quality.h)
as a simulated device runs it: the real C++ code through the native module.

    meter = QualityMeter(classes=10, window=100, version=dev.version)
    if meter.record_scores(model_output, label=None):   # a window completed
        send_quality(url, device_id, meter.json())

The JSON is the bytes a board POSTs to /v1/devices/<id>/quality
(docs/FLEET.md "Model quality").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..status import Status
from .native import load


class QualityMeter:
    def __init__(self, classes: int, window: int, version: int) -> None:
        n = load()
        self._n = n
        self._q: Any = n.ffi.new("modelota_quality*")
        self.classes = classes
        if not 0 < classes <= 0xFFFF or not 0 < window <= 0xFFFF:
            raise ValueError("classes and window must be 1..65535")
        st = n.lib.modelota_quality_init(self._q, classes, window, version)
        if st != 0:
            raise ValueError(
                f"quality accumulator refused {classes} classes, window {window}: {Status(st).name}"
                f" (at most {n.lib.MODELOTA_QUALITY_MAX_CLASSES} classes)"
            )
        self.version = version

    def reset(self, version: int) -> None:
        """The model changed: forget every count."""
        self._n.lib.modelota_quality_reset(self._q, version)
        self.version = version

    def _done(self, rc: int) -> bool:
        if rc < 0:
            raise ValueError(f"quality accumulator: {Status(rc).name}")
        return rc == 1

    def record(self, cls: int, confidence: float, label: int | None = None) -> bool:
        """One inference; True when it completed a window."""
        if not 0 <= cls <= 0xFFFF:
            raise ValueError("class out of range")
        lab = -1 if label is None else label
        return self._done(self._n.lib.modelota_quality_record(self._q, cls, confidence, lab))

    def record_scores(self, scores: Sequence[float], label: int | None = None) -> bool:
        """One inference from the model's output probabilities."""
        arr = self._n.ffi.new("float[]", [float(s) for s in scores])
        lab = -1 if label is None else label
        rc = self._n.lib.modelota_quality_record_scores(self._q, arr, len(scores), lab)
        return self._done(rc)

    @property
    def ready(self) -> bool:
        return bool(self._n.lib.modelota_quality_ready(self._q))

    @property
    def windows(self) -> int:
        return int(self._n.lib.modelota_quality_windows(self._q))

    def json(self) -> bytes:
        """The last complete window's summary, as the firmware writes it."""
        cap = int(self._n.lib.MODELOTA_QUALITY_JSON_MAX)
        buf = self._n.ffi.new("char[]", cap)
        k = int(self._n.lib.modelota_quality_json(self._q, buf, cap))
        if k < 0:
            raise ValueError(f"no summary: {Status(k).name}")
        return bytes(self._n.ffi.buffer(buf, k))
