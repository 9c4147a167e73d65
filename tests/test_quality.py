"""The firmware's model-quality accumulator (firmware_lib/modelota/quality.h),
the real C++ through the native module, against a Python model of it; the
JSON it writes is what the fleet server accepts (docs/FLEET.md)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelota import pack
from modelota.fleet.rollout_store import parse_quality
from modelota.sim.native import load
from modelota.sim.quality import QualityMeter
from modelota.status import Status

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "tests" / "arduino_host"


def model_summary(rows: list[tuple[int, float, int | None]], classes: int, window: int,
                  version: int) -> dict | None:  # fmt: skip
    """What the accumulator must report: the last complete window."""
    full = len(rows) // window
    if full == 0:
        return None
    last = rows[(full - 1) * window : full * window]
    counts = [0] * classes
    conf = 0
    labelled = correct = 0
    for cls, c, label in last:
        counts[cls] += 1
        # as the C code computes it: in float, then truncated
        conf += int(np.float32(c) * np.float32(10000.0) + np.float32(0.5))
        if label is not None:
            labelled += 1
            correct += label == cls
    return {"format": 1, "version": version, "n": window, "counts": counts,
            "conf_bp": (conf + window // 2) // window, "labelled": labelled,
            "correct": correct}  # fmt: skip


def f32(x: float) -> float:
    """The value as the C float it becomes."""
    n = load()
    return float(n.ffi.cast("float", x))


@settings(max_examples=60, deadline=None)
@given(
    classes=st.integers(1, 16),
    window=st.integers(1, 12),
    data=st.data(),
)
def test_summary_is_the_last_complete_window(
    classes: int, window: int, data: st.DataObject
) -> None:
    version = data.draw(st.integers(0, 2**32 - 1))
    rows = data.draw(st.lists(st.tuples(
        st.integers(0, classes - 1),
        st.floats(0.0, 1.0, width=32),
        st.one_of(st.none(), st.integers(0, classes - 1)),
    ), max_size=40))  # fmt: skip
    m = QualityMeter(classes, window, version)
    completed = 0
    for cls, conf, label in rows:
        completed += m.record(cls, conf, label)
    assert completed == len(rows) // window == m.windows
    want = model_summary([(c, f32(x), lab) for c, x, lab in rows], classes, window, version)
    if want is None:
        assert not m.ready
        with pytest.raises(ValueError, match="BadState"):
            m.json()
        return
    raw = m.json()
    assert json.loads(raw) == want
    assert raw == json.dumps(want, separators=(",", ":")).encode()  # compact, keys in order
    assert parse_quality(json.loads(raw)) == want  # and the server takes it as it is


def test_scores_reset_and_refusals() -> None:
    m = QualityMeter(3, 2, 7)
    assert m.record_scores([0.2, 0.5, 0.3]) is False
    assert m.record_scores([0.4, 0.4, 0.2], label=0) is True  # a tie: the first class
    doc = json.loads(m.json())
    assert doc["counts"] == [1, 1, 0] and doc["labelled"] == 1 and doc["correct"] == 1
    assert doc["conf_bp"] == 4500
    for bad in ((3, 0.5, None), (0, 1.5, None), (0, -0.1, None), (0, math.nan, None),
                (0, 0.5, 3), (0, 0.5, -2)):  # fmt: skip
        with pytest.raises(ValueError, match="InvalidArgument"):
            m.record(*bad)
    for bad_scores in ([0.1, math.nan, 0.2], [0.1, 0.2], [2.0, 0.1, 0.1]):
        with pytest.raises(ValueError, match="InvalidArgument"):
            m.record_scores(bad_scores)
    assert json.loads(m.json()) == doc  # a refused inference counts nowhere
    m.reset(8)
    assert not m.ready and m.windows == 0
    m.record(2, 1.0)
    m.record(2, 0.0)
    assert json.loads(m.json()) == {"format": 1, "version": 8, "n": 2, "counts": [0, 0, 2],
                                    "conf_bp": 5000, "labelled": 0, "correct": 0}  # fmt: skip


def test_configuration_is_checked() -> None:
    n = load()
    top = int(n.lib.MODELOTA_QUALITY_MAX_CLASSES)
    QualityMeter(top, 1, 0)
    for classes, window in ((0, 10), (top + 1, 10), (3, 0)):
        with pytest.raises(ValueError):
            QualityMeter(classes, window, 0)
    q = n.ffi.new("modelota_quality*")
    assert n.lib.modelota_quality_init(q, top + 1, 5, 0) == Status.InvalidArgument
    assert n.lib.modelota_quality_record(q, 0, 0.5, -1) == Status.InvalidArgument


def test_longest_summary_fits_the_documented_buffer() -> None:
    """As many digits as a full window of 65535 inferences can have, the
    largest version: MODELOTA_QUALITY_JSON_MAX holds it, and a buffer one
    byte short of it and its NUL is refused."""
    n = load()
    top = int(n.lib.MODELOTA_QUALITY_MAX_CLASSES)
    q = n.ffi.new("modelota_quality*")
    assert n.lib.modelota_quality_init(q, top, 0xFFFF, 0xFFFFFFFF) == 0
    counts = [10000] * min(5, top) + [1000] * max(0, top - 5)
    counts[0] += 0xFFFF - sum(counts)
    for cls, k in enumerate(counts):
        for _ in range(k):
            assert n.lib.modelota_quality_record(q, cls, 0.99999, cls) >= 0
    cap = int(n.lib.MODELOTA_QUALITY_JSON_MAX)
    buf = n.ffi.new("char[]", cap)
    k = n.lib.modelota_quality_json(q, buf, cap)
    assert k > 0, Status(k).name
    text = n.ffi.string(buf).decode()
    doc = json.loads(text)
    assert doc["n"] == 0xFFFF and doc["version"] == 0xFFFFFFFF and sum(doc["counts"]) == 0xFFFF
    assert n.lib.modelota_quality_json(q, buf, k) == Status.TooLarge  # no room for the NUL
    assert n.ffi.string(buf) == b""
    assert n.lib.modelota_quality_json(q, buf, k + 1) == k


def test_arduino_class_follows_the_model_version(tmp_path: Path) -> None:
    """src/ModelOTAQuality.{h,cpp} compiled for the host (tests/arduino_host:
    a minimal Arduino.h) with the real core: a summary is for one version,
    an update starts the counts again."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++")
    exe = tmp_path / "quality_driver"
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-O1", "-I", str(HOST), "-I",
             str(ROOT / "src")]  # fmt: skip
    objs = []
    # the new glue with -Wconversion; ModelOTA.cpp as the glue tests build it (millis()
    # is an unsigned long on the host)
    for src, extra in ((ROOT / "src" / "ModelOTAQuality.cpp", ["-Wconversion"]),
                       (HOST / "quality_driver.cpp", ["-Wconversion"]),
                       (ROOT / "src" / "ModelOTA.cpp", []),
                       (ROOT / "src" / "modelota_store.cpp", [])):  # fmt: skip
        obj = tmp_path / (src.stem + ".o")
        proc = subprocess.run([gxx, *flags, *extra, "-c", str(src), "-o", str(obj)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        objs.append(str(obj))
    proc = subprocess.run([gxx, *objs, "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    old, new = bytes(range(256)) * 4, bytes(255 - b for b in range(256)) * 4
    (tmp_path / "f.bin").write_bytes(old)
    fp = b"modelota-test-fp"
    (tmp_path / "p.bin").write_bytes(pack(new, fingerprint=fp, version=2, chunk_size=128).encode())
    r = subprocess.run([str(exe), str(tmp_path / "f.bin"), str(tmp_path / "p.bin")],
                       capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert out["status"] == "0" and out["bad_status"] == str(int(Status.InvalidArgument))
    assert out["bad_record"] == str(int(Status.InvalidArgument))
    assert out["before"] == str(int(Status.BadState))
    assert out["refused"] == str(int(Status.InvalidArgument))
    assert out["completed"] == "1" and out["ready"] == "1"
    assert json.loads(out["json1"]) == {"format": 1, "version": 1, "n": 5, "counts": [1, 2, 1, 1],
                                        "conf_bp": 8000, "labelled": 3, "correct": 2}  # fmt: skip
    assert out["update"] == "Ok" and out["version"] == "2"
    assert out["kept_version"] == "1"  # nothing recorded since: the v1 summary stands
    assert out["after_one_ready"] == "0" and out["after_one_version"] == "2"
    assert json.loads(out["json2"]) == {"format": 1, "version": 2, "n": 5, "counts": [0, 0, 5, 0],
                                        "conf_bp": 2500, "labelled": 0, "correct": 0}  # fmt: skip
    assert out["short"] == str(int(Status.TooLarge))
