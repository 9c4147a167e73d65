"""The model-quality gate end to end: 300 simulated devices (native Updater +
Store, model in RAM) run the digits classifier in the TFLM interpreter on
held-out digits, count their predictions with the firmware's accumulator
(firmware_lib/modelota/quality.cpp through the native module) and post its
summary to the real server over HTTP. A better model rolls out wave by wave
to the whole fleet; a barely trained one, released next, is paused by the
server in wave 1 with the numbers, and reaches no device beyond that wave.

Soak periods pass on a simulated clock; the whole test runs in well under a
minute of work (training the three models included)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("tflite_micro", reason="the devices run TFLM (pip install -e .[test])")
pytest.importorskip("sklearn", reason="the digits data ships with scikit-learn")

from fleet_util import running_server
from modelota.demo.simfleet import SimClock, SimFleet, rollout_models
from modelota.fleet.rollout import bucket, wave_of
from modelota.models.tflite import pack_tflite

DEVICES = 300
WAVES = [1, 10, 50, 100]
SOAK = 3600.0
POLICY = {"waves": WAVES, "soak": SOAK, "min_inferences": 100, "max_conf_drop": 0.05,
          "max_shift": 0.15, "max_acc_drop": 0.05}  # fmt: skip


def test_good_model_completes_worse_model_pauses_in_wave_1(tmp_path: Path) -> None:
    m = rollout_models()
    clock = SimClock()
    with running_server(tmp_path, clock=clock) as s:
        for v, weights in ((1, m.factory), (2, m.better), (3, m.worse)):
            s.admin.upload("digits", pack_tflite(m.factory, weights, version=v).encode())
        fleet = SimFleet(s.url, s.admin, "field", DEVICES, m.factory, 1, m.x, m.y, window=50)
        s.admin.assign("group", "field", "digits", 1)
        waves = tuple(float(w) for w in WAVES)
        first = {d.id for d in fleet.devices if wave_of(waves, bucket("digits", d.id)) == 0}
        assert len(first) >= 2  # 1% of 300 by the hash: enough for 100 inferences

        base = fleet.step(50)  # every device reports its v1 summary
        assert base.outcomes == Counter({"current": DEVICES}) and base.summaries == DEVICES

        # 1. the better model: the server opens each wave after its soak, then completes
        r1 = s.admin.create_rollout("digits", 2, "field", POLICY, start=True)
        for _ in range(len(WAVES) + 2):
            fleet.step(50)
            clock.advance(SOAK + 1)
            s.admin.evaluate()
            if s.admin.rollout(r1["id"])["state"] != "running":
                break
        doc = s.admin.rollout(r1["id"])
        assert doc["state"] == "done", doc["pending"]
        assert fleet.versions() == Counter({2: DEVICES})
        auto = [e for e in doc["events"] if e["actor"] == "server"]
        assert [e["action"] for e in auto] == ["advance", "advance", "advance", "complete"]
        gate = auto[0]["numbers"]["quality"]
        assert "model quality ok" in auto[0]["reason"]
        assert gate["new"]["n"] >= 100 and gate["base"]["n"] >= 100 * (DEVICES - len(first)) // 2
        assert gate["new"]["conf"] >= gate["base"]["conf"] - 0.05

        # 2. the barely trained model: wave 1 updates, reports, and the server pauses
        r2 = s.admin.create_rollout("digits", 3, "field", POLICY, start=True)
        got = fleet.step(50)
        assert got.outcomes["Ok"] == len(first)
        s.admin.evaluate()  # the reports kicked it already; this changes nothing then
        doc = s.admin.rollout(r2["id"])
        assert doc["state"] == "paused" and doc["wave"] == 1, doc["pending"]
        pause = doc["events"][-1]
        assert pause["actor"] == "server" and pause["action"] == "pause"
        assert pause["reason"].startswith("wave 1 (1%): model worse: mean top-1 confidence")
        q = pause["numbers"]["quality"]
        assert q["new"]["n"] == 50 * len(first) and q["base"]["devices"] == DEVICES - len(first)
        assert q["conf_drop"] > 0.5 and q["shift_excess"] > 0.15 and q["acc_drop"] > 0.5
        assert f"drop {q['conf_drop']:.3f}" in pause["reason"]
        # paused: nobody else gets v3, even after more checks and time
        for _ in range(2):
            fleet.step(50)
            clock.advance(SOAK + 1)
            s.admin.evaluate()
        assert fleet.versions() == Counter({2: DEVICES - len(first), 3: len(first)})
        assert {d.id for d in fleet.devices if d.dev.version == 3} == first
        assert s.admin.rollout(r2["id"])["state"] == "paused"
        # every device ran its real model: one TFLM run per distinct RAM content
        assert fleet.outputs.models_run == 3
        per_version = {(x["version"]): x for x in s.admin.quality()}
        assert per_version[3]["conf"] < 0.5 < per_version[2]["conf"]
