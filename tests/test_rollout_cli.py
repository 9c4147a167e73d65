"""`modelota rollout ...` against `modelota serve` run as its own process, as
an operator types them: output, one-line errors, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_util import TOKEN, full, models, stop
from modelota.fleet.client import AdminClient
from modelota.fleet.rollout import bucket, wave_of
from modelota.fleet.server import spawn


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, AdminClient]]:
    proc, url = spawn(tmp_path / "data", TOKEN)
    try:
        yield url, AdminClient(url, TOKEN)
    finally:
        stop(proc)


def cli(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "modelota", "rollout", "--server", url, "--token", TOKEN, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    return r


def test_operator_creates_watches_pauses_and_aborts(server: tuple[str, AdminClient]) -> None:
    url, admin = server
    for v, w in enumerate(models(2), 1):
        admin.upload("m", full(w, v))
    devs = [f"dev-{i}" for i in range(20)]
    for d in devs:
        admin.register(d, group="g")
    admin.assign("group", "g", "m", 1)
    first = sum(1 for d in devs if wave_of((25.0, 100.0), bucket("m", d)) == 0)

    out = cli(url, "create", "m", "2", "--group", "g", "--waves", "25%,100%", "--soak", "30m",
              "--success", "90%", "--error", "10%", "--start").stdout  # fmt: skip
    assert out.startswith("rollout 1: m v1 -> v2 on group 'g': RUNNING, wave 1 of 2\n")
    assert "policy: waves 25%,100%; advance at 90% updated after 1800 s; pause above 10%" in out
    assert f"> wave 1 (25%): [....................] 0/{first} updated, 0 failing" in out
    assert f"wave 2 (100%): [....................] 0/{20 - first} updated" in out
    assert "now: wave 1 (25%): soaking, 0 of 1800 s" in out
    assert "[2] admin start: start by admin" in out

    doc = json.loads(cli(url, "--json", "show", "1").stdout)
    assert doc["waves"][0]["devices"] == first and doc["policy"]["soak"] == 1800
    assert doc["policy"]["success"] == 0.9 and doc["policy"]["error"] == 0.1

    out = cli(url, "pause", "1", "--note", "checking a report").stdout
    assert "PAUSED" in out and "[3] admin pause: pause by admin: checking a report" in out
    assert "RUNNING" in cli(url, "resume", "1").stdout
    assert "rollout 1: m v1 -> v2" in cli(url, "list").stdout
    out = cli(url, "abort", "1").stdout
    assert "ABORTED" in out and "group 'g' stays on v1" in out

    err = cli(url, "resume", "1", ok=False).stderr
    want = f"modelota: error: {url}: HTTP 409 BadState: rollout 1 is aborted: cannot resume it\n"
    assert err == want
    err = cli(url, "create", "m", "2", "--group", "g", "--waves", "10,50", ok=False).stderr
    assert err.startswith(f"modelota: error: {url}: HTTP 400 BadPolicy: the last wave must be 100%")
    err = cli(url, "show", "7", ok=False).stderr
    assert err == f"modelota: error: {url}: HTTP 404 UnknownRollout: no rollout 7\n"
    r = cli(url, "create", "m", "2", "--group", "g", "--soak", "soon", ok=False)
    assert r.returncode == 2 and "'soon' is not a duration" in r.stderr
    r = cli(url, "create", "m", "2", "--group", "g", "--error", "120%", ok=False)
    assert r.returncode == 2 and "not between 0% and 100%" in r.stderr
