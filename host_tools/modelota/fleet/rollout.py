"""Staged rollouts: the rules, without the database (docs/FLEET.md, "Rollouts").

* A device's wave is fixed by a stable hash of the line and its id: its
  bucket is a number in [0, 100) and it belongs to the first wave whose
  cumulative percentage is above it. Adding or removing devices never moves
  another device to another wave, so no device flips back and forth.
* :func:`decide` looks at one running rollout's numbers (what the devices of
  the open wave run, which of them reported a failure, the model-quality
  summaries of the new and the previous version) and returns what the
  server does: nothing, pause, advance to the next wave, or complete, each
  with a one-line reason that names the numbers.

rollout_store.py applies the decision in one transaction, so two server
replicas deciding at once cannot both apply it.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

STATES = ("ready", "running", "paused", "aborted", "done")
ACTIVE = ("ready", "running", "paused")  # a rollout that governs its group
MAX_WAVES = 16
MAX_CLASSES = 64  # classes a quality summary may carry (the firmware's default is 16)
ACC_MIN_LABELLED = 20  # labelled inferences on each side before accuracy is compared


@dataclass(frozen=True)
class Policy:
    """How a rollout advances and when it stops itself."""

    waves: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)  # cumulative % of the group
    success: float = 0.95  # share of a wave's devices on the new version to go on
    error: float = 0.05  # share of a wave's devices failing (not recovered) to pause
    soak: float = 3600.0  # seconds a wave stays open at least
    min_inferences: int = 100  # per side, before the quality gate judges
    require_quality: bool = False  # a wave waits for quality data before advancing
    max_conf_drop: float = 0.05  # mean top-1 confidence, absolute
    max_shift: float = 0.15  # total variation distance of the class distributions
    max_acc_drop: float = 0.05  # accuracy on labelled inferences, absolute

    @classmethod
    def from_json(cls, doc: Any) -> Policy:
        """Validated policy from a JSON object (missing keys: defaults);
        ValueError names the first bad key."""
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ValueError("policy must be a JSON object")
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown policy key {sorted(unknown)[0]!r}")
        d = cls()
        waves = doc.get("waves", list(d.waves))
        if not isinstance(waves, list) or not 1 <= len(waves) <= MAX_WAVES:
            raise ValueError(f"waves must be a list of 1..{MAX_WAVES} percentages")
        out: list[float] = []
        for w in waves:
            if not _number(w) or not 0 < w <= 100 or (out and w <= out[-1]):
                raise ValueError("waves must be increasing percentages in (0, 100]")
            out.append(float(w))
        if out[-1] != 100.0:
            raise ValueError("the last wave must be 100%: a rollout ends with the whole group")
        vals: dict[str, Any] = {"waves": tuple(out)}
        for key in ("success", "error", "max_conf_drop", "max_shift", "max_acc_drop"):
            v = doc.get(key, getattr(d, key))
            if not _number(v) or not 0 <= v <= 1:
                raise ValueError(f"{key} must be a fraction in [0, 1]")
            vals[key] = float(v)
        soak = doc.get("soak", d.soak)
        if not _number(soak) or not 0 <= soak <= 365 * 86400:
            raise ValueError("soak must be seconds in [0, 1 year]")
        vals["soak"] = float(soak)
        mi = doc.get("min_inferences", d.min_inferences)
        if not isinstance(mi, int) or isinstance(mi, bool) or not 1 <= mi <= 10**9:
            raise ValueError("min_inferences must be an integer >= 1")
        vals["min_inferences"] = mi
        rq = doc.get("require_quality", d.require_quality)
        if not isinstance(rq, bool):
            raise ValueError("require_quality must be true or false")
        vals["require_quality"] = rq
        return cls(**vals)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["waves"] = list(self.waves)
        return doc


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@functools.lru_cache(maxsize=1 << 18)
def bucket(line: str, device: str) -> float:
    """The device's place in [0, 100) for a line's rollouts: the first 8
    bytes of SHA-256(line NUL device) as a fraction. Fixed for a device."""
    h = hashlib.sha256(line.encode() + b"\0" + device.encode()).digest()
    return int.from_bytes(h[:8], "big") * 100.0 / 2.0**64


def wave_of(waves: tuple[float, ...], b: float) -> int:
    """Index of the first wave whose cumulative percentage is above ``b``."""
    for i, w in enumerate(waves):
        if b < w:
            return i
    return len(waves) - 1


# -- model quality ----------------------------------------------------------


@dataclass
class Quality:
    """Summaries of one version added up over devices: per-class top-1
    counts, the confidence sum (in basis points) and labelled results."""

    n: int = 0
    counts: list[int] = field(default_factory=list)
    conf_bp_sum: int = 0  # sum over inferences of confidence x 10000
    labelled: int = 0
    correct: int = 0
    devices: int = 0

    def add(self, n: int, counts: list[int], conf_bp: int, labelled: int, correct: int) -> None:
        self.n += n
        if len(counts) > len(self.counts):
            self.counts += [0] * (len(counts) - len(self.counts))
        for i, c in enumerate(counts):
            self.counts[i] += c
        self.conf_bp_sum += conf_bp * n
        self.labelled += labelled
        self.correct += correct
        self.devices += 1

    @property
    def conf(self) -> float | None:
        return None if self.n == 0 else self.conf_bp_sum / self.n / 10000.0

    @property
    def accuracy(self) -> float | None:
        return None if self.labelled == 0 else self.correct / self.labelled

    def shares(self, classes: int) -> list[float]:
        total = sum(self.counts)
        padded = self.counts + [0] * (classes - len(self.counts))
        return [0.0 if total == 0 else c / total for c in padded]

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices, "n": self.n, "counts": list(self.counts),
            "conf": None if self.conf is None else round(self.conf, 4),
            "labelled": self.labelled, "correct": self.correct,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
        }  # fmt: skip


def tvd(a: Quality, b: Quality) -> float:
    """Total variation distance of the two class distributions, in [0, 1]."""
    k = max(len(a.counts), len(b.counts))
    return 0.5 * sum(abs(x - y) for x, y in zip(a.shares(k), b.shares(k), strict=True))


def sampling_tvd(a: Quality, b: Quality) -> float:
    """The total variation distance two samples of these sizes show when both
    come from one distribution (the pooled one): 0.5 * sum over classes of
    E|p1 - p2| ~ sqrt(2/pi) * sqrt(p (1 - p) (1/n1 + 1/n2)). Only the shift
    beyond it is held against the new model, so a small first wave does not
    pause a rollout on sampling noise."""
    n1, n2 = sum(a.counts), sum(b.counts)
    if n1 == 0 or n2 == 0:
        return 0.0
    k = max(len(a.counts), len(b.counts))
    pa = a.counts + [0] * (k - len(a.counts))
    pb = b.counts + [0] * (k - len(b.counts))
    pooled = [(x + y) / (n1 + n2) for x, y in zip(pa, pb, strict=True)]
    spread = math.sqrt(2.0 / math.pi) * math.sqrt(1.0 / n1 + 1.0 / n2)
    return 0.5 * spread * sum(math.sqrt(p * (1.0 - p)) for p in pooled)


@dataclass
class Verdict:
    """The quality gate's comparison of the new version with the previous."""

    judged: bool  # both sides had enough inferences
    worse: bool
    text: str  # the numbers, one line
    numbers: dict[str, Any]


def judge_quality(
    new: Quality, base: Quality, p: Policy, v_new: int, v_base: int | None
) -> Verdict:
    nums: dict[str, Any] = {"new": new.to_json(), "base": base.to_json()}
    if v_base is None or new.n < p.min_inferences or base.n < p.min_inferences:
        text = (
            f"quality: {new.n} inferences on v{v_new} and {base.n} on"
            f" {'no previous version' if v_base is None else f'v{v_base}'}"
            f" (the gate judges from {p.min_inferences} on each side)"
        )
        return Verdict(False, False, text, nums)
    assert new.conf is not None and base.conf is not None
    drop = base.conf - new.conf
    shift = tvd(new, base)
    noise = sampling_tvd(new, base)
    excess = shift - noise
    nums |= {"conf_drop": round(drop, 4), "shift": round(shift, 4),
             "shift_noise": round(noise, 4), "shift_excess": round(excess, 4)}  # fmt: skip
    bad: list[str] = []
    parts = [
        f"mean top-1 confidence {new.conf:.3f} on v{v_new} vs {base.conf:.3f} on v{v_base}"
        f" (drop {drop:.3f}, limit {p.max_conf_drop:.3f})",
        f"class distribution shift (total variation) {shift:.3f}, {noise:.3f} of it expected"
        f" from sampling at these counts (excess {excess:.3f}, limit {p.max_shift:.3f})",
    ]
    if drop > p.max_conf_drop:
        bad.append(parts[0])
    if excess > p.max_shift:
        bad.append(parts[1])
    if new.labelled >= ACC_MIN_LABELLED and base.labelled >= ACC_MIN_LABELLED:
        assert new.accuracy is not None and base.accuracy is not None
        acc_drop = base.accuracy - new.accuracy
        nums["acc_drop"] = round(acc_drop, 4)
        parts.append(
            f"accuracy on labelled inferences {new.accuracy:.1%} vs {base.accuracy:.1%}"
            f" (drop {acc_drop:.1%}, limit {p.max_acc_drop:.1%})"
        )
        if acc_drop > p.max_acc_drop:
            bad.append(parts[-1])
    counted = f" over {new.n} vs {base.n} inferences"
    if bad:
        return Verdict(True, True, "model worse: " + "; ".join(bad) + counted, nums)
    return Verdict(True, False, "model quality ok: " + "; ".join(parts) + counted, nums)


# -- decisions --------------------------------------------------------------


@dataclass
class WaveStats:
    """What the devices of the open wave did (devices with their own
    assignment are not part of a rollout)."""

    index: int  # 0-based
    devices: int  # devices this wave added
    updated: int  # of them, on the new version (or above)
    failed: int  # of them, with a failure report since the wave opened and not updated
    statuses: dict[str, int]  # failure status name -> devices
    opened_at: float


@dataclass
class Decision:
    action: str  # "none", "pause", "advance", "complete"
    reason: str
    numbers: dict[str, Any]


def decide(
    p: Policy,
    version: int,
    from_version: int | None,
    w: WaveStats,
    quality: Verdict,
    now: float,
) -> Decision:
    """What the server does with a running rollout now. Failures and a worse
    model pause at once; advancing waits for the soak time, the success
    threshold and (when required) the quality gate."""
    label = f"wave {w.index + 1} ({p.waves[w.index]:g}%)"
    nums: dict[str, Any] = {
        "wave": w.index + 1, "devices": w.devices, "updated": w.updated, "failed": w.failed,
        "statuses": dict(w.statuses), "quality": quality.numbers,
    }  # fmt: skip
    if w.devices and w.failed / w.devices > p.error:
        names = ", ".join(f"{k} x{v}" for k, v in sorted(w.statuses.items()))
        return Decision(
            "pause",
            f"{label}: {w.failed} of {w.devices} devices ({w.failed / w.devices:.1%}) reported"
            f" a failure ({names}) and are not on v{version}: above the error threshold"
            f" {p.error:.1%}",
            nums,
        )
    if quality.worse:
        return Decision("pause", f"{label}: {quality.text}", nums)
    last = w.index == len(p.waves) - 1
    nxt = "complete" if last else "advance"
    done = f"{'rollout complete' if last else f'wave {w.index + 2} opens'}"
    if w.devices == 0:
        return Decision(nxt, f"{label} has no devices: {done}", nums)
    waited = now - w.opened_at
    share = w.updated / w.devices
    if waited < p.soak:
        return Decision("none", f"{label}: soaking, {waited:.0f} of {p.soak:.0f} s", nums)
    if share < p.success:
        return Decision(
            "none",
            f"{label}: {w.updated} of {w.devices} devices on v{version} ({share:.1%}),"
            f" {p.success:.1%} needed",
            nums,
        )
    if p.require_quality and not quality.judged and from_version is not None and not last:
        return Decision("none", f"{label}: waiting for {quality.text}", nums)
    q = f"; {quality.text}" if quality.judged else ""
    return Decision(
        nxt,
        f"{label}: {w.updated} of {w.devices} devices on v{version} ({share:.1%} >= "
        f"{p.success:.1%}), {w.failed} failing, soaked {waited:.0f} s{q}: {done}",
        nums,
    )
