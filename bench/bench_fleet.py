"""Loopback load of device checks against `modelota serve`.

The server runs as its own process (`modelota serve`, as deployed); a second
process drives it with keep-alive HTTP/1.1 connections from many simulated
devices, each asking `GET /v1/devices/{id}/manifest.json?fingerprint=..&version=..`
(most are current and get 204, some get the manifest). Bounded by a request
count, not by time. Prints checks/s and latency percentiles; the goal
(>= 2000 checks/s with p99 under 50 ms on 2 cores) is printed, never asserted.

    python bench/bench_fleet.py [--devices 2000] [--checks 20000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from modelota import pack
from modelota.fleet.client import AdminClient
from modelota.fleet.server import spawn

TOKEN = "bench-token"
FP = bytes.fromhex("6d6f64656c6f74612d62656e63682d31")


def populate(url: str, devices: int) -> None:
    admin = AdminClient(url, TOKEN)
    rnd = random.Random(1)
    for v in (1, 2, 3):
        admin.upload("bench", pack(rnd.randbytes(4096), fingerprint=FP, version=v).encode())
    for i in range(devices):
        admin.register(f"dev-{i:05d}", group=("a", "b")[i % 2])
    admin.assign("group", "a", "bench")
    admin.assign("group", "b", "bench", 2)


async def load(
    url: str, devices: int, checks: int, concurrency: int
) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    rnd = random.Random(2)
    plan = [
        (f"dev-{rnd.randrange(devices):05d}", rnd.choice((1, 2, 3, 3, 3))) for _ in range(checks)
    ]
    fp = FP.hex()
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(url, connector=conn) as session:

        async def worker(k: int) -> None:
            for dev, version in plan[k::concurrency]:
                t0 = time.perf_counter()
                async with session.get(
                    f"/v1/devices/{dev}/manifest.json",
                    params={"fingerprint": fp, "version": version},
                ) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t0)
                codes[resp.status] = codes.get(resp.status, 0) + 1

        # warm up the server's answer cache and the connections
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        latencies.clear()
        codes.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return latencies, codes, elapsed


def percentile(sorted_values: list[float], p: float) -> float:
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def run(devices: int, checks: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="modelota-bench-") as tmp:
        proc, url = spawn(Path(tmp), TOKEN)
        try:
            populate(url, devices)
            lat, codes, elapsed = asyncio.run(load(url, devices, checks, concurrency))
        finally:
            proc.terminate()
            proc.wait(10)
    lat.sort()
    rate = len(lat) / elapsed
    res = {
        "checks": float(len(lat)),
        "rate": rate,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "max_ms": lat[-1] * 1e3,
        "errors": float(sum(n for c, n in codes.items() if c >= 400)),
    }
    print(f"modelota serve: device checks over loopback ({os.cpu_count()} CPUs, server and"
          f" load generator are separate processes)")  # fmt: skip
    print(f"{'devices':>10} {'checks':>8} {'conc':>5} {'checks/s':>9} {'p50 ms':>7}"
          f" {'p99 ms':>7} {'max ms':>7}  answers")  # fmt: skip
    answers = ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
    print(f"{devices:>10} {len(lat):>8} {concurrency:>5} {rate:>9.0f} {res['p50_ms']:>7.2f}"
          f" {res['p99_ms']:>7.2f} {res['max_ms']:>7.2f}  {answers}")  # fmt: skip
    met = rate >= 2000 and res["p99_ms"] < 50
    print(f"goal (>= 2000 checks/s, p99 < 50 ms): {'met' if met else 'NOT met'} on this machine")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--checks", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    a = ap.parse_args()
    res = run(a.devices, a.checks, a.concurrency)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
