"""The README's demo, run as the user runs it."""

from __future__ import annotations

import re
import subprocess
import sys


def demo(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "modelota", "demo", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "UNEXPECTED" not in r.stdout
    return r.stdout


def test_fleet_demo_updates_over_http_and_refuses_bad_payloads() -> None:
    out = demo()
    assert "one bit flipped on the wire: ChunkCrc, board still v1" in out
    assert re.search(r"resumed with 'Range: bytes=\d+-' \(2 connections\): Ok", out), out
    assert "refused, HTTP 400 ChunkCrc" in out
    assert "after v2: HTTP 409 Rollback" in out
    assert "pushed to the board anyway: Rollback, board keeps v2" in out
    assert "runs v2 from store" in out
    assert "reports: ChunkCrc, Ok" in out
    m = re.search(r"accuracy: ([\d.]+)% \(v1\) -> ([\d.]+)% \(v2\) over HTTP", out)
    assert m, out
    assert float(m.group(2)) > float(m.group(1)) + 30


def test_board_demo_updates_then_refuses_bad_payloads() -> None:
    out = demo("--board")
    for status in ("Ok", "ChunkCrc", "Rollback", "Timeout", "StorageIo"):
        assert f"status {status}:" in out
    m = re.search(r"accuracy: ([\d.]+)% \(bad, v1\) -> ([\d.]+)% \(good, v2\)", out)
    assert m, out
    assert float(m.group(2)) > float(m.group(1)) + 30


def test_rollout_demo_completes_a_better_model_and_pauses_a_worse_one() -> None:
    out = demo("--fleet")
    assert re.search(r"\[done\s*\] rollout 1 done: 300 of 300 devices on v2", out), out
    m = re.search(r"\[PAUSED\s*\] by the server: wave 1 \(1%\): model worse: mean top-1"
                  r" confidence ([\d.]+) on v3 vs ([\d.]+) on v2", out)  # fmt: skip
    assert m, out
    assert float(m.group(2)) - float(m.group(1)) > 0.5
    assert re.search(r"a check and an hour later: 298 devices on v2, 2 on v3; rollout 2 is"
                     r" paused", out), out  # fmt: skip
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/dashboard", out), out
