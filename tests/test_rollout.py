"""Staged rollouts on the real server (aiohttp, SQLite or PostgreSQL, real
HTTP) with simulated boards (native Updater + Store): waves by a stable
hash, the server's own decisions (advance, complete, pause on failures and
on a worse model) with their reasons, admin actions, replicas deciding at
once, the static export following the open wave. Time is a simulated clock
(soak periods pass at once); nothing sleeps."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from fleet_util import board, full, models, running_server
from modelota.demo.simfleet import SimClock
from modelota.fleet.client import AdminClient, FleetClientError, poll, send_quality
from modelota.fleet.db import Fleet
from modelota.fleet.export import export
from modelota.fleet.rollout import Policy, bucket, wave_of
from modelota.sim.device import RamModelDevice
from modelota.sim.faultproxy import Fault, FaultProxy
from modelota.sim.quality import QualityMeter

WAVES = (10.0, 50.0, 100.0)
SOAK = 600.0


def ids(n: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def wave(device: str, line: str = "m", waves: tuple[float, ...] = WAVES) -> int:
    return wave_of(waves, bucket(line, device))


class Fleetlet:
    """Boards registered in group "g", all on v1 of line "m" (random weights)."""

    def __init__(self, admin: AdminClient, n: int, versions: int = 3) -> None:
        self.ws = models(versions)
        for v, w in enumerate(self.ws, 1):
            admin.upload("m", full(w, v))
        self.boards: dict[str, RamModelDevice] = {}
        for d in ids(n):
            admin.register(d, group="g")
            self.boards[d] = board(self.ws[0])
        admin.assign("group", "g", "m", 1)

    def poll_all(self, url: str, only: set[str] | None = None) -> Counter[str]:
        out: Counter[str] = Counter()
        for d, b in self.boards.items():
            if only is None or d in only:
                out[poll(b, url, d, backoff=0.0).what] += 1
        return out

    def versions(self) -> dict[str, int]:
        return {d: b.version for d, b in self.boards.items()}


def policy(**kw: object) -> dict[str, object]:
    return {"waves": list(WAVES), "soak": SOAK, "success": 0.9, "error": 0.2} | kw


def wait_for(fn, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Polls a condition the server reaches by itself (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = fn()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_waves_are_a_stable_hash_of_the_device() -> None:
    devs = [f"24:6F:28:{i >> 8:02X}:{i & 0xFF:02X}:00" for i in range(20000)]
    b = [bucket("digits", d) for d in devs]
    assert all(0 <= x < 100 for x in b)
    got = Counter(wave_of((1.0, 10.0, 50.0, 100.0), x) for x in b)
    # cumulative 1/10/50/100 % of 20000: 200, 1800, 8000, 10000 (binomial spread)
    for w, want in ((0, 200), (1, 1800), (2, 8000), (3, 10000)):
        assert abs(got[w] - want) < 5 * (want * (1 - want / 20000)) ** 0.5, got
    assert [bucket("digits", d) for d in devs[:50]] == b[:50]  # a function of the id alone
    assert bucket("other-line", devs[0]) != b[0]


def test_policy_is_validated() -> None:
    assert Policy.from_json(None) == Policy()
    assert Policy.from_json({"waves": [5, 100], "soak": 0}).waves == (5.0, 100.0)
    for bad, msg in (
        ({"waves": [10, 50]}, "last wave must be 100"),
        ({"waves": [50, 10, 100]}, "increasing"),
        ({"waves": []}, "1..16"),
        ({"waves": [0, 100]}, "increasing"),
        ({"success": 1.5}, "success"),
        ({"error": -0.1}, "error"),
        ({"soak": -1}, "soak"),
        ({"soak": float("nan")}, "soak"),
        ({"min_inferences": 0}, "min_inferences"),
        ({"require_quality": 1}, "require_quality"),
        ({"colour": "red"}, "unknown policy key 'colour'"),
    ):
        with pytest.raises(ValueError, match=msg):
            Policy.from_json(bad)


def test_rollout_advances_by_itself_and_completes(tmp_path: Path, db: str | None) -> None:
    clock = SimClock()
    # the server's own timer decides here (every 50 ms): no evaluate() calls
    with running_server(tmp_path, db_url=db, clock=clock, rollout_interval=0.05) as s:
        f = Fleetlet(s.admin, 40)
        pinned = "d000"
        s.admin.assign("device", pinned, "m", 1)  # its own assignment wins over the rollout
        r = s.admin.create_rollout("m", 2, "g", policy())
        assert r["state"] == "ready" and r["from_version"] == 1
        assert f.poll_all(s.url) == Counter({"current": 40})  # a rollout not started offers nothing
        r = s.admin.rollout_action(r["id"], "start")
        w = {d: wave(d) for d in f.boards if d != pinned}
        assert r["waves"][0]["devices"] == sum(1 for x in w.values() if x == 0) > 0
        assert sum(x["devices"] for x in r["waves"]) == 39  # the pinned device is not in it
        for expect_wave in range(len(WAVES)):
            got = f.poll_all(s.url)
            offered = {d for d, x in w.items() if x <= expect_wave}
            assert f.versions() == {d: 2 if d in offered else 1 for d in f.boards}
            assert got["Ok"] == sum(1 for d, x in w.items() if x == expect_wave)
            doc = s.admin.rollout(r["id"])
            assert doc["state"] == "running" and doc["wave"] == expect_wave + 1
            assert "soaking" in doc["pending"]
            clock.advance(SOAK + 1)
            if expect_wave < len(WAVES) - 1:
                wait_for(lambda n=expect_wave: s.admin.rollout(r["id"])["wave"] == n + 2,
                         f"wave {expect_wave + 2}")  # fmt: skip
        doc = wait_for(lambda: (d := s.admin.rollout(r["id"]))["state"] == "done" and d, "done")
        auto = [e for e in doc["events"] if e["actor"] == "server"]
        assert [e["action"] for e in auto] == ["advance", "advance", "complete"]
        assert "wave 1 (10%)" in auto[0]["reason"] and "devices on v2" in auto[0]["reason"]
        assert auto[0]["numbers"]["updated"] == auto[0]["numbers"]["devices"] == doc["waves"][0][
            "devices"
        ]
        assert [e["step"] for e in doc["events"]] == list(range(1, len(doc["events"]) + 1))
        devices = {d["id"]: d for d in s.admin.devices()}
        assert devices["d001"]["assigned"] == {"line": "m", "version": 2}  # the group, now
        assert devices[pinned]["assigned"] == {"line": "m", "version": 1}
        assert f.boards[pinned].version == 1


def test_failures_pause_the_rollout_and_resume_goes_on(tmp_path: Path) -> None:
    clock = SimClock()
    with running_server(tmp_path, clock=clock) as s:
        f = Fleetlet(s.admin, 40)
        r = s.admin.create_rollout("m", 2, "g", policy(), start=True)
        first = {d for d in f.boards if wave(d) == 0}
        host, port = s.url.removeprefix("http://").split(":")
        with FaultProxy((host, int(port))) as proxy:
            proxy.plan += [Fault(flip_at=2000) for _ in range(len(first))]
            got = f.poll_all(proxy.url)  # every download is corrupted on the wire
        # the reports kick the server's decision (no evaluate() call): it may pause
        # before every board of the wave tried; those after the pause are not offered v2
        failed = got["ChunkCrc"]
        n = len(first)
        assert failed >= 1 and got == Counter({"ChunkCrc": failed, "current": 40 - failed})
        doc = wait_for(lambda: (d := s.admin.rollout(r["id"]))["state"] == "paused" and d, "pause")
        ev = doc["events"][-1]
        assert ev["actor"] == "server" and ev["action"] == "pause"
        m = re.search(rf"wave 1 \(10%\): (\d+) of {n} devices \([\d.]+%\) reported a failure"
                      rf" \(ChunkCrc x(\d+)\) and are not on v2", ev["reason"])  # fmt: skip
        assert m, ev["reason"]
        k = int(m.group(1))
        assert k == int(m.group(2)) and k / n > 0.2 and k <= failed
        assert "above the error threshold 20.0%" in ev["reason"]
        assert ev["numbers"]["failed"] == k and ev["numbers"]["statuses"] == {"ChunkCrc": k}
        assert doc["waves"][0]["failed"] == failed
        # paused: nobody is offered v2, the boards kept v1
        assert f.poll_all(s.url) == Counter({"current": 40})
        assert set(f.versions().values()) == {1}
        # the operator fixed the network: resume counts failures from now on
        s.admin.rollout_action(r["id"], "resume", note="proxy removed")
        assert f.poll_all(s.url) == Counter({"Ok": n, "current": 40 - n})
        clock.advance(SOAK + 1)
        s.admin.evaluate()
        doc = s.admin.rollout(r["id"])
        assert doc["state"] == "running" and doc["wave"] == 2
        assert [e["action"] for e in doc["events"]] == [
            "create", "start", "pause", "resume", "advance",
        ]  # fmt: skip
        assert doc["events"][3]["reason"] == "resume by admin: proxy removed"


def quality_json(version: int, counts: list[int], conf: float, labelled: int = 0) -> bytes:
    """A summary as the firmware's accumulator writes it."""
    m = QualityMeter(len(counts), sum(counts), version)
    k = 0
    for cls, c in enumerate(counts):
        for _ in range(c):
            m.record(cls, conf, cls if k < labelled else None)
            k += 1
    return m.json()


def test_a_worse_model_pauses_naming_the_numbers(tmp_path: Path) -> None:
    clock = SimClock()
    with running_server(tmp_path, clock=clock) as s:
        f = Fleetlet(s.admin, 40)
        pol = policy(min_inferences=150, max_conf_drop=0.1, max_shift=0.2)
        r = s.admin.create_rollout("m", 2, "g", pol, start=True)
        first = sorted(d for d in f.boards if wave(d) == 0)
        assert len(first) >= 2
        f.poll_all(s.url)
        for d, b in f.boards.items():  # the previous version: even classes, sure of itself
            if b.version == 1:
                send_quality(s.url, d, quality_json(1, [25, 25, 25, 25], 0.95))
        # one summary from the new version: less than min_inferences, no verdict yet
        send_quality(s.url, first[0], quality_json(2, [25, 25, 25, 25], 0.80))
        s.admin.evaluate()
        doc = s.admin.rollout(r["id"])
        assert doc["state"] == "running"
        assert "100 inferences on v2" in doc["quality_text"]
        send_quality(s.url, first[1], quality_json(2, [70, 10, 10, 10], 0.80))
        doc = wait_for(lambda: (d := s.admin.rollout(r["id"]))["state"] == "paused" and d, "pause")
        ev = doc["events"][-1]
        assert ev["actor"] == "server" and ev["action"] == "pause"
        assert "model worse" in ev["reason"]
        assert "mean top-1 confidence 0.800 on v2 vs 0.950 on v1 (drop 0.150, limit 0.100)" in (
            ev["reason"]
        )
        q = ev["numbers"]["quality"]
        assert q["new"]["counts"] == [95, 35, 35, 35] and q["new"]["n"] == 200
        # TVD of (95,35,35,35)/200 vs even: |0.475 - 0.25| = 0.225
        assert q["shift"] == pytest.approx(0.225, abs=1e-4)
        # 0.225 is within what 200 vs 3600 inferences show by chance plus the margin
        assert q["shift_noise"] == pytest.approx(0.050, abs=0.002)
        assert "class distribution" not in ev["reason"]


def test_equal_quality_passes_and_labelled_accuracy_is_compared(tmp_path: Path) -> None:
    clock = SimClock()
    with running_server(tmp_path, clock=clock) as s:
        f = Fleetlet(s.admin, 40)
        pol = policy(min_inferences=100, require_quality=True)
        r = s.admin.create_rollout("m", 2, "g", pol, start=True)
        f.poll_all(s.url)
        clock.advance(SOAK + 1)
        s.admin.evaluate()
        doc = s.admin.rollout(r["id"])  # quality is required and nothing was reported
        assert doc["state"] == "running" and doc["wave"] == 1
        assert "waiting for quality" in doc["pending"]
        for d, b in f.boards.items():
            send_quality(s.url, d, quality_json(b.version, [30, 30, 40], 0.9, labelled=60))
        s.admin.evaluate()
        doc = s.admin.rollout(r["id"])
        assert doc["state"] == "running" and doc["wave"] == 2, doc["pending"]
        ev = doc["events"][-1]
        assert "model quality ok" in ev["reason"] and "accuracy on labelled inferences" in (
            ev["reason"]
        )
        assert ev["numbers"]["quality"]["conf_drop"] == 0


def test_admin_actions_and_refusals(tmp_path: Path) -> None:
    clock = SimClock()
    with running_server(tmp_path, clock=clock) as s:
        f = Fleetlet(s.admin, 20)
        with pytest.raises(FleetClientError) as e:
            s.admin.create_rollout("m", 9, "g")
        assert e.value.http == 404 and e.value.name == "UnknownVersion"
        with pytest.raises(FleetClientError) as e:
            s.admin.create_rollout("m", 2, "g", {"waves": [10, 50]})
        assert e.value.http == 400 and "last wave must be 100" in e.value.message
        r = s.admin.create_rollout("m", 3, "g", policy())
        with pytest.raises(FleetClientError) as e:
            s.admin.create_rollout("m", 2, "g")
        assert e.value.http == 409 and e.value.name == "RolloutActive"
        with pytest.raises(FleetClientError) as e:
            s.admin.assign("group", "g", "m", 2)
        assert e.value.http == 409 and e.value.name == "RolloutActive"
        for action in ("pause", "resume"):
            with pytest.raises(FleetClientError) as e:
                s.admin.rollout_action(r["id"], action)
            assert e.value.http == 409 and "is ready" in e.value.message
        with pytest.raises(FleetClientError) as e:
            s.admin.rollout_action(r["id"], "explode")
        assert e.value.http == 400
        assert s.admin.rollout_action(r["id"], "start")["state"] == "running"
        f.poll_all(s.url)
        assert s.admin.rollout_action(r["id"], "pause")["state"] == "paused"
        assert s.admin.rollout_action(r["id"], "abort")["state"] == "aborted"
        with pytest.raises(FleetClientError) as e:
            s.admin.rollout_action(r["id"], "resume")
        assert e.value.http == 409
        # aborted: the group stays where it was; boards that got v3 keep it (no downgrade)
        devices = {d["id"]: d for d in s.admin.devices()}
        assert {d["assigned"]["version"] for d in devices.values()} == {1}
        before = f.versions()
        assert f.poll_all(s.url) == Counter({"current": 20})
        assert f.versions() == before
        assert s.admin.rollout(r["id"])["events"][-1]["reason"] == (
            "abort by admin; group 'g' stays on v1"
        )
        # a new rollout may start now; the admin API needs the token
        s.admin.create_rollout("m", 2, "g")
        with pytest.raises(FleetClientError) as e:
            AdminClient(s.url, "wrong").rollouts()
        assert e.value.http == 401
        with pytest.raises(FleetClientError) as e:
            s.admin.rollout(999)
        assert e.value.http == 404


def test_quality_reports_are_checked(tmp_path: Path) -> None:
    with running_server(tmp_path) as s:
        Fleetlet(s.admin, 2)
        good = json.loads(quality_json(1, [3, 2], 0.5))
        assert send_quality(s.url, "d000", json.dumps(good).encode()) == 204
        for change, msg in (
            ({"n": 6}, "add up to 5, not n = 6"),
            ({"counts": [3, -2]}, "counts[] must be an integer"),
            ({"conf_bp": 10001}, "conf_bp"),
            ({"correct": 1, "labelled": 0}, "correct must be an integer 0..0"),
            ({"format": 2}, "format must be 1"),
            ({"extra": 1}, "unknown key 'extra'"),
            ({"counts": []}, "counts must be a list"),
        ):
            with pytest.raises(FleetClientError) as e:
                send_quality(s.url, "d000", json.dumps(good | change).encode())
            assert e.value.http == 400 and msg in e.value.message, (change, e.value.message)
        with pytest.raises(FleetClientError) as e:
            send_quality(s.url, "nobody", json.dumps(good).encode())
        assert e.value.http == 404
        assert s.admin.quality() == [{"line": "m", "version": 1, "devices": 1, "n": 5,
                                      "counts": [3, 2], "conf": 0.5, "labelled": 0,
                                      "correct": 0, "accuracy": None}]  # fmt: skip


def test_two_replicas_deciding_at_once_never_double_advance(tmp_path: Path, db: str | None) -> None:
    """Two Fleet objects (two server replicas) on one database evaluate the
    same rollout at the same moment, 12 times over: each decision is applied
    once, the waves open in order, the rollout completes once."""
    clock = SimClock()
    a = Fleet(tmp_path, db, clock)
    b = Fleet(tmp_path, db, clock)
    try:
        ws = models(2)
        for v, w in enumerate(ws, 1):
            a.upload("m", full(w, v))
        for d in ids(30):
            a.register(d, "g", None)
        a.assign("group", "g", "m", 1)
        r = a.create_rollout("m", 2, "g", {"waves": [20, 60, 100], "soak": 10}, start=True)
        gate = threading.Barrier(2)
        applied: dict[str, list[dict]] = {"a": [], "b": []}

        errors: list[BaseException] = []

        def run(name: str, fleet: Fleet) -> None:
            gate.wait()
            try:
                applied[name] += fleet.evaluate_rollouts()
            except BaseException as e:  # the loser must find nothing to do, not fail
                errors.append(e)

        for _ in range(12):
            for d in ids(30):  # every device offered the new version runs it
                rec = a.target(d)
                if rec is not None and rec.version == 2:
                    a.report(d, {"event": "apply", "version": 2, "status": 0})
            clock.advance(11)
            threads = [threading.Thread(target=run, args=x) for x in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert not errors, errors
        both = applied["a"] + applied["b"]
        assert sorted(x["action"] for x in both) == ["advance", "advance", "complete"]
        events = a.rollout_events(r.id)
        assert [e["action"] for e in events] == ["create", "start", "advance", "advance",
                                                 "complete"]  # fmt: skip
        assert [e["wave"] for e in events[2:]] == [2, 3, 3]
        assert a.rollout(r.id).state == "done" and b.rollout(r.id).state == "done"
    finally:
        a.close()
        b.close()


def test_static_export_follows_the_open_wave(tmp_path: Path) -> None:
    clock = SimClock()
    out = tmp_path / "tree"
    with running_server(tmp_path / "data", clock=clock) as s:
        f = Fleetlet(s.admin, 40)
        r = s.admin.create_rollout("m", 2, "g", policy(), start=True)

        def exported() -> dict[str, int]:  # as `modelota export` does: its own connection
            fleet = Fleet(tmp_path / "data")
            try:
                export(fleet, out)
            finally:
                fleet.close()
            return {d: json.loads((out / "v1" / "devices" / d / "manifest.json").read_bytes())
                    ["version"] for d in f.boards}  # fmt: skip

        assert exported() == {d: 2 if wave(d) == 0 else 1 for d in f.boards}
        f.poll_all(s.url)
        clock.advance(SOAK + 1)
        s.admin.evaluate()
        assert s.admin.rollout(r["id"])["wave"] == 2
        assert exported() == {d: 2 if wave(d) <= 1 else 1 for d in f.boards}
        s.admin.rollout_action(r["id"], "pause")
        assert set(exported().values()) == {1}  # paused: the tree offers v2 to nobody new


def test_replicas_give_devices_the_same_answers(tmp_path: Path, db: str | None) -> None:
    """Two servers on one database (and one data directory): a rollout
    started on one reaches the devices that check with the other (which
    drops its cached answers when it sees the rollout move), and a decision
    is taken once and seen by both."""
    clock = SimClock()
    data = tmp_path / "data"
    with (running_server(data, db_url=db, clock=clock, rollout_interval=0.05) as a,
          running_server(data, db_url=db, clock=clock, rollout_interval=0.05) as b):  # fmt: skip
        f = Fleetlet(a.admin, 20, versions=2)
        assert f.poll_all(b.url) == Counter({"current": 20})  # b caches "current" for all
        r = a.admin.create_rollout("m", 2, "g", policy(), start=True)
        first = {d for d in f.boards if wave(d) == 0}
        d0 = sorted(first)[0]
        wait_for(lambda: poll(f.boards[d0], b.url, d0, backoff=0.0).what == "Ok",
                 "replica b to offer the rollout's version")  # fmt: skip
        assert f.poll_all(b.url, first) == Counter({"Ok": len(first) - 1, "current": 1})
        clock.advance(SOAK + 1)
        wait_for(lambda: a.admin.rollout(r["id"])["wave"] == 2 == b.admin.rollout(r["id"])["wave"],
                 "both replicas to see wave 2")  # fmt: skip
        events = a.admin.rollout(r["id"])["events"]
        assert [e["action"] for e in events] == ["create", "start", "advance"]  # decided once
        second = {d for d in f.boards if wave(d) == 1}
        wait_for(lambda: f.poll_all(b.url, second).get("current", 0) == 0
                 and f.poll_all(a.url, second) == Counter({"current": len(second)}),
                 "wave 2 offered by both")  # fmt: skip
        assert f.versions() == {d: 2 if wave(d) <= 1 else 1 for d in f.boards}


def test_a_batched_check_never_puts_back_an_older_version(tmp_path: Path) -> None:
    """The server writes checks in batches: a check made before an update
    but written after the update's report must not undo the report (the
    rollout would count the device as not updated, the history would show a
    downgrade)."""
    clock = SimClock()
    fleet = Fleet(tmp_path, None, clock)
    try:
        fleet.register("d", "g", None)
        fleet.record_checks({"d": (clock(), 1)})
        clock.advance(1)
        checked = clock()  # the check before the update, still in the batch
        clock.advance(1)
        fleet.report("d", {"event": "apply", "version": 2, "status": 0})
        fleet.record_checks({"d": (checked, 1)})
        assert fleet.devices()[0]["last_version"] == 2
        assert [h["version"] for h in fleet.version_history()] == [1, 2]
        clock.advance(1)
        fleet.record_checks({"d": (clock(), 3)})  # a newer check is news
        assert fleet.devices()[0]["last_version"] == 3
    finally:
        fleet.close()
