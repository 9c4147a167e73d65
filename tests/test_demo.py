"""The README's demo, run as the user runs it."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_updates_then_refuses_bad_payloads() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "modelota.cli", "demo"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "UNEXPECTED" not in out
    for status in ("Ok", "ChunkCrc", "Rollback", "Timeout", "StorageIo"):
        assert f"status {status}:" in out
    m = re.search(r"accuracy: ([\d.]+)% \(bad, v1\) -> ([\d.]+)% \(good, v2\)", out)
    assert m, out
    assert float(m.group(2)) > float(m.group(1)) + 30
