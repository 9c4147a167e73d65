"""The fleet load bench runs end to end, on SQLite and with replicas on
PostgreSQL behind nginx (short runs; its numbers are printed, never
asserted: machines are noisy)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_fleet


def test_load_bench_runs_without_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    res = bench_fleet.run(devices=200, seconds=2.0, concurrency=8)
    out = capsys.readouterr().out
    print(out)
    assert res["errors"] == 0 and res["checks"] > 0
    assert "checks/s" in out and "goal (>= 2000 checks/s, p99 < 50 ms)" in out


def test_replica_bench_runs_without_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    res = bench_fleet.run_replicas(2, devices=500, seconds=2.0, concurrency=8)
    out = capsys.readouterr().out
    print(out)
    assert res["errors"] == 0 and res["coherent"]
    assert len(res["delays"]) == 2 and set(res["results"]) == {1, 2}
    assert "ratio 2 replicas / 1" in out and "cache dropped after" in out
