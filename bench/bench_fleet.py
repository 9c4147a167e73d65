"""Loopback load of signed device checks against `modelota serve`.

Default: one server (SQLite, as `modelota serve` runs by default) as its own
process, driven by bench/fleet_load.py (another process) with keep-alive
connections checking random registered devices back to back
(`GET /v1/devices/{id}/manifest.json?fingerprint=..&version=..`, most answered
204, some with the manifest). Prints checks/s and latency percentiles.

`--replicas N`: a throwaway PostgreSQL (Debian's postgresql), 10,000
registered devices, and in one run the same load through nginx (round robin)
in front of 1 replica and then of N replicas, plus how long an admin change
on one replica takes to reach every other replica's cache (LISTEN/NOTIFY).
On a 2-core machine the point is coherence and no errors, not scaling: the
ratio is printed as measured.

Numbers are printed, never asserted (machines are noisy).

    python bench/bench_fleet.py [--devices 2000] [--seconds 10] [--concurrency 32]
    python bench/bench_fleet.py --replicas 3 [--devices 10000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host_tools"))
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL and nginx launchers

from modelota import pack  # noqa: E402
from modelota.fleet import auth  # noqa: E402
from modelota.fleet.client import AdminClient  # noqa: E402
from modelota.fleet.db import Fleet  # noqa: E402
from modelota.fleet.server import spawn  # noqa: E402

TOKEN = "bench-token"
FP = bytes.fromhex("6d6f64656c6f74612d62656e63682d31")
MASTER = bytes(range(32))
GOAL = "goal (>= 2000 checks/s, p99 < 50 ms)"


def populate(fleet: Fleet, devices: int) -> None:
    """Line "bench" v1..v3; devices in two groups (a: latest, b: v2),
    written straight into the database (10,000 registrations through the
    API would take longer than the bench)."""
    fleet.meta("device_key_check", auth.key_check(MASTER))
    rnd = random.Random(1)
    for v in (1, 2, 3):
        fleet.upload("bench", pack(rnd.randbytes(4096), fingerprint=FP, version=v).encode())
    now = time.time()
    rows = [(f"dev-{i:05d}", ("a", "b")[i % 2], None, now) for i in range(devices)]

    def insert() -> None:
        fleet.db.executemany(
            "INSERT INTO devices (id, grp, fingerprint, created_at) VALUES (?, ?, ?, ?)", rows
        )
        fleet.changed()

    fleet._write(insert)
    fleet.assign("group", "a", "bench", None)
    fleet.assign("group", "b", "bench", 2)


def load(url: str, devices: int, seconds: float, concurrency: int, work: Path,
         sweeps: int = 1) -> dict[str, Any]:  # fmt: skip
    """bench/fleet_load.py in closed loop: a warm-up that checks every
    device `sweeps` times (as a polling fleet fills every replica's cache),
    then `seconds` of checks of random devices."""
    cfg = {
        "url": url, "master": MASTER.hex(), "devices": devices, "prefix": "dev-",
        "interval": 1.0, "concurrency": concurrency, "fingerprint": FP.hex(),
        "update_every": 0, "windows_every": 0, "closed_loop": True,
        "phases": [{"name": "warm-up", "seconds": 600, "hostile": False, "sweep": True,
                    "sweeps": sweeps},
                   {"name": "measured", "seconds": seconds, "hostile": False}],
    }  # fmt: skip
    path = work / f"load-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(cfg))
    cmd = [sys.executable, str(ROOT / "bench" / "fleet_load.py"), str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 600, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"load generator failed: {run.stderr[-2000:]}")
    return dict(json.loads(run.stdout.strip().splitlines()[-1])["phases"][1])


def _cpu(pid: int) -> float:
    """CPU seconds a process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(urls: list[str]) -> list[dict[str, int]]:
    return [dict(AdminClient(u, TOKEN).call("GET", "/admin/stats")["cache"]) for u in urls]


def row(label: str, devices: int, concurrency: int, res: dict[str, Any]) -> str:
    answers = ", ".join(f"{c}: {n}" for c, n in sorted(res["codes"].items()))
    return (f"{label:>12} {devices:>8} {res['checks']:>8} {concurrency:>5} {res['rate']:>9.0f}"
            f" {res['p50_ms']:>7.2f} {res['p99_ms']:>7.2f} {res['max_ms']:>7.1f}"
            f"  {answers}")  # fmt: skip


HEADER = (f"{'servers':>12} {'devices':>8} {'checks':>8} {'conc':>5} {'checks/s':>9}"
          f" {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  answers")  # fmt: skip


def errors(res: dict[str, Any]) -> int:
    return sum(n for c, n in res["codes"].items() if c not in ("200", "204"))


def run(devices: int = 2000, seconds: float = 10.0, concurrency: int = 32) -> dict[str, float]:
    """One `modelota serve` on SQLite (the one-command default)."""
    with tempfile.TemporaryDirectory(prefix="modelota-bench-") as tmp:
        work = Path(tmp)
        key = work / "device.key"
        key.write_text(MASTER.hex() + "\n")
        fleet = Fleet(work / "data")
        try:
            populate(fleet, devices)
        finally:
            fleet.close()
        proc, url = spawn(work / "data", TOKEN, "--device-key-file", str(key),
                          "--device-rate", "1000")  # fmt: skip
        try:
            res = load(url, devices, seconds, concurrency, work)
        finally:
            proc.terminate()
            proc.wait(20)
    print(f"modelota serve (SQLite): signed device checks over loopback ({os.cpu_count()} CPUs;"
          " server and load generator are separate processes)")  # fmt: skip
    print(HEADER)
    print(row("1 (sqlite)", devices, concurrency, res))
    met = res["rate"] >= 2000 and res["p99_ms"] < 50
    print(f"{GOAL}: {'met' if met else 'NOT met'} on this machine")
    return {"checks": float(res["checks"]), "rate": res["rate"], "p99_ms": res["p99_ms"],
            "errors": float(errors(res))}  # fmt: skip


def run_replicas(
    replicas: int, devices: int = 10_000, seconds: float = 10.0, concurrency: int = 32
) -> dict[str, Any]:
    """1 and then ``replicas`` `modelota serve` processes on one PostgreSQL
    behind nginx, the same load through nginx each time."""
    from fleet_util import fresh_database, nginx_proxy, postgres_server, stop

    out: dict[str, Any] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="modelota-bench-") as tmp:
        work = Path(tmp)
        base = stack.enter_context(postgres_server())
        db = fresh_database(base)
        key = work / "device.key"
        key.write_text(MASTER.hex() + "\n")
        t0 = time.monotonic()
        fleet = Fleet(work / "seed", db)
        try:
            populate(fleet, devices)
        finally:
            fleet.close()
        seeded = time.monotonic() - t0
        procs: list[Any] = []
        try:
            urls = []
            for i in range(replicas):
                proc, url = spawn(work / f"r{i}", TOKEN, "--db", db, "--device-key-file",
                                  str(key), "--trust-proxy", "127.0.0.1", "--device-rate",
                                  "1000")  # fmt: skip
                procs.append(proc)
                urls.append(url)
            ports = [int(u.rsplit(":", 1)[1]) for u in urls]
            results = {}
            usage = {}
            for n in sorted({1, replicas}):
                with nginx_proxy(work / f"nginx{n}", {"/": ports[:n]}) as ng:
                    before = [_cpu(p.pid) for p in procs[:n]], _stats(urls[:n])
                    results[n] = load(ng.url, devices, seconds, concurrency, work, sweeps=n)
                    after = [_cpu(p.pid) for p in procs[:n]], _stats(urls[:n])
                usage[n] = (
                    [a - b for a, b in zip(after[0], before[0], strict=True)],
                    [{k: a.get(k, 0) - b.get(k, 0) for k in a} for a, b in
                     zip(after[1], before[1], strict=True)],
                )  # fmt: skip
            # coherence: an admin change on replica 0 reaches every replica's cache
            gens = [AdminClient(u, TOKEN).call("GET", "/admin/stats")["generation"] for u in urls]
            t_change = time.monotonic()
            AdminClient(urls[0], TOKEN).assign("group", "b", "bench", 3)
            delays = []
            for u, g in zip(urls, gens, strict=True):
                while AdminClient(u, TOKEN).call("GET", "/admin/stats")["generation"] <= g:
                    time.sleep(0.002)
                delays.append(time.monotonic() - t_change)
            same = {
                json.dumps(AdminClient(u, TOKEN).call("GET", "/admin/payloads"), sort_keys=True)
                for u in urls
            }
        finally:
            for p in procs:
                stop(p)
    print(f"modelota serve x N on PostgreSQL behind nginx (round robin): signed device checks"
          f" over loopback, {devices} registered devices ({os.cpu_count()} CPUs; PostgreSQL,"
          f" nginx, the replicas and the load generator share them; seeding took {seeded:.1f} s)")
    print(HEADER)
    for n, res in results.items():
        print(row(f"{n} replica{'s' if n > 1 else ''}", devices, concurrency, res))
    for n, (cpu, cache) in usage.items():
        print(f"  {n} replica(s), warm-up + measured: CPU s per replica "
              + ", ".join(f"{c:.1f}" for c in cpu) + "; cache hits/misses "
              + ", ".join(f"{c.get('hits', 0)}/{c.get('misses', 0)}" for c in cache))
    one, many = results[1], results[replicas]
    print(f"ratio {replicas} replicas / 1: {many['rate'] / one['rate']:.2f}x checks/s,"
          f" p99 {many['p99_ms'] / one['p99_ms']:.2f}x")
    print("admin change on replica 0 -> every replica's cache dropped after: "
          + ", ".join(f"{d * 1000:.0f} ms" for d in delays)
          + f"; payload lists identical on all replicas: {len(same) == 1}")  # fmt: skip
    out = {"results": results, "delays": delays, "coherent": len(same) == 1,
           "errors": sum(errors(r) for r in results.values())}  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--replicas", type=int, help="compare 1 and N replicas on PostgreSQL")
    ap.add_argument("--devices", type=int, help="registered devices (2000; 10000 with --replicas)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    ap.add_argument("--concurrency", type=int, default=32, help="connections of the load")
    a = ap.parse_args()
    if a.replicas:
        res = run_replicas(a.replicas, a.devices or 10_000, a.seconds, a.concurrency)
        return 1 if res["errors"] or not res["coherent"] else 0
    out = run(a.devices or 2000, a.seconds, a.concurrency)
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
