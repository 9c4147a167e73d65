"""A simulated fleet for staged rollouts: hundreds of devices, each the real
firmware_lib core (Updater + Store on simulated flash, model in RAM) pulling
from a fleet server over real HTTP, running its model on field inputs and
reporting the firmware accumulator's quality summary (sim/quality.py).

Inference is real: each device's RAM bytes (the .tflite model as its
updates left it) run in the TFLM interpreter. Devices whose RAM holds the
same bytes give the same outputs, so the outputs are computed once per
distinct RAM content (keyed by its SHA-256), not once per device.

Used by the rollout demo (demo/rollout.py) and tests/test_rollout_sim.py.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..fleet.client import AdminClient, poll, send_quality
from ..models.tflite import read_tflite
from ..sim.device import Layout, RamModelDevice
from ..sim.flash import SimFlash
from ..sim.quality import QualityMeter
from ..status import Status
from . import digits

CLASSES = 10


@dataclass(frozen=True)
class RolloutModels:
    """Three releases of the digits classifier, one architecture: the
    factory model, a better one, and a barely trained (worse) one."""

    factory: bytes  # v1: 200 training steps
    better: bytes  # v2: 200 more
    worse: bytes  # barely trained: the "new model" that must not ship
    x: np.ndarray  # field inputs (held-out digits)
    y: np.ndarray


def rollout_models(seed: int = 0) -> RolloutModels:
    x_tr, y_tr, x_te, y_te = digits.load(seed)
    half = digits.GOOD_STEPS // 2
    v1 = digits.train(x_tr, y_tr, half, seed)
    v2 = digits.train(x_tr, y_tr, half, seed, start=v1)
    bad = digits.train(x_tr, y_tr, digits.BAD_STEPS, seed)
    return RolloutModels(
        digits.export(v1, f"digits v1: {half} steps"),
        digits.export(v2, f"digits v2: {2 * half} steps"),
        digits.export(bad, f"digits: {digits.BAD_STEPS} step"),
        x_te,
        y_te,
    )


class Outputs:
    """TFLM outputs for every field input, per distinct model bytes."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float32)
        self.cache: dict[bytes, np.ndarray] = {}
        self.models_run = 0

    def of(self, model: bytes) -> np.ndarray:
        key = hashlib.sha256(model).digest()
        out = self.cache.get(key)
        if out is None:
            from tflite_micro.python.tflite_micro import runtime

            it = runtime.Interpreter.from_bytes(bytes(model), arena_size=64 * 1024)
            rows = []
            for row in self.x:
                it.set_input(row.reshape(1, -1), 0)
                it.invoke()
                rows.append(np.array(it.get_output(0), dtype=np.float32).reshape(-1))
            out = np.stack(rows)
            self.cache[key] = out
            self.models_run += 1
        return out


def mac(i: int) -> str:
    """Device ids as devices name themselves: by MAC address."""
    return f"24:6F:28:{(i >> 16) & 0xFF:02X}:{(i >> 8) & 0xFF:02X}:{i & 0xFF:02X}"


class SimDevice:
    def __init__(self, ident: str, factory: bytes, fp: bytes, version: int, window: int) -> None:
        layout = Layout.plan(256, 4, len(factory), 2 * len(factory) + 4096)
        self.id = ident
        self.dev = RamModelDevice(SimFlash(256, layout.block_count, 4), layout, fp, factory,
                                  version, buffer_len=1024)  # fmt: skip
        st = self.dev.boot()
        if st != Status.Ok:
            raise RuntimeError(f"{ident}: boot failed: {st.name}")
        self.meter = QualityMeter(CLASSES, window, self.dev.version)


@dataclass
class StepResult:
    outcomes: Counter[str]  # poll outcome (or Updater status name) -> devices
    summaries: int  # quality summaries posted


class SimFleet:
    """``n`` devices in ``group``, registered on the server, all running
    ``factory`` as ``version``."""

    def __init__(
        self,
        url: str,
        admin: AdminClient,
        group: str,
        n: int,
        factory: bytes,
        version: int,
        x: np.ndarray,
        y: np.ndarray,
        window: int = 50,
        labelled: float = 0.25,
        seed: int = 0,
        first: int = 1,
    ) -> None:
        self.url = url
        self.outputs = Outputs(x)
        self.y = np.asarray(y)
        self.window = window
        self.labelled = labelled
        self.rng = np.random.default_rng(seed)
        fp = read_tflite(factory).fingerprint()
        self.devices = [SimDevice(mac(first + i), factory, fp, version, window) for i in range(n)]
        for d in self.devices:
            admin.register(d.id, group=group, fingerprint=fp.hex())

    def versions(self) -> Counter[int]:
        return Counter(d.dev.version for d in self.devices)

    def step(
        self,
        inferences: int,
        poll_url: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> StepResult:
        """Every device checks for an update (through ``poll_url`` when given:
        a proxy that breaks downloads), then runs ``inferences`` inferences
        on field inputs and posts each summary its accumulator completes."""
        outcomes: Counter[str] = Counter()
        summaries = 0
        for i, d in enumerate(self.devices):
            res = poll(d.dev, poll_url or self.url, d.id, backoff=0.0)
            outcomes[res.what if res.outcome != "current" else "current"] += 1
            if d.dev.version != d.meter.version:  # new weights: a new summary
                d.meter.reset(d.dev.version)
            probs = self.outputs.of(bytes(d.dev.ram))
            picks = self.rng.integers(0, len(probs), inferences)
            known = self.rng.random(inferences) < self.labelled
            completed = False
            for k, lab in zip(picks, known, strict=True):
                label = int(self.y[k]) if lab else None
                completed |= d.meter.record_scores(probs[k].tolist(), label)
            if completed:  # the latest summary, once per step (a device's report period)
                send_quality(self.url, d.id, d.meter.json())
                summaries += 1
            if progress is not None:
                progress(i + 1)
        return StepResult(outcomes, summaries)


class SimClock:
    """A clock the test or demo moves by hand (``Fleet(clock=...)``): soak
    periods pass at once, and every recorded time follows it."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
