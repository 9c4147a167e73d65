"""The fleet load bench runs end to end (a short run; its numbers are printed,
never asserted: machines are noisy)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_fleet


def test_load_bench_runs_without_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    res = bench_fleet.run(devices=200, checks=3000, concurrency=16)
    out = capsys.readouterr().out
    print(out)
    assert res["errors"] == 0 and res["checks"] == 3000
    assert "checks/s" in out and "goal (>= 2000 checks/s, p99 < 50 ms)" in out
