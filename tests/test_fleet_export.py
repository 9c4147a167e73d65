"""`modelota export DIR` served by plain static file servers (Python's
http.server, and nginx when installed), with the same device client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleet_util import (
    FP,
    board,
    free_port,
    full,
    models,
    nginx_server,
    raw_http,
    running_server,
    stop,
    wait_port,
)
from modelota.fleet.client import FleetClientError, poll
from modelota.sim.faultproxy import Fault, FaultProxy
from modelota.status import Status
from payloads import modelota


@contextmanager
def python_http_server(root: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def fleet_with_export(tmp_path: Path) -> tuple[list[bytes], Path]:
    """A fleet: line m v1..v3, devices in two groups and one unassigned;
    exported with the CLI."""
    ws = models(3, size=30_000, seed=9)
    data = tmp_path / "data"
    with running_server(data) as s:
        for i, w in enumerate(ws):
            s.admin.upload("m", full(w, i + 1))
        s.admin.register("24:6F:28:AA:01:02", group="lab")
        s.admin.register("field-7", group="field")
        s.admin.register("spare")
        s.admin.assign("group", "lab", "m")
        s.admin.assign("group", "field", "m", 2)
        # the dynamic answer a device at v0 gets, to compare with the static one
        answers = {
            dev: raw_http(s.port, s.signed("GET", f"/v1/devices/{dev}/manifest.json?version=0",
                                           dev))[1].split(b"\r\n\r\n", 1)[1]
            for dev in ("24:6F:28:AA:01:02", "field-7")
        }  # fmt: skip
    out = tmp_path / "tree"
    r = modelota("export", out, "--data", data)
    assert r.returncode == 0, r.stderr
    assert "exported 2 device manifests and 2 payloads" in r.stdout
    for dev, raw in answers.items():
        assert (out / "v1" / "devices" / dev / "manifest.json").read_bytes() == raw
    assert not (out / "v1" / "devices" / "spare").exists()
    return ws, out


def test_export_served_by_python_http_server(tmp_path: Path) -> None:
    ws, out = fleet_with_export(tmp_path)
    with python_http_server(out) as url:
        dev = board(ws[0])
        res = poll(dev, url, "24:6F:28:AA:01:02")
        assert res.status == Status.Ok and bytes(dev.ram) == ws[2] and dev.version == 3
        assert poll(dev, url, "24:6F:28:AA:01:02").outcome == "current"  # static: device compares
        other = board(ws[0])
        assert poll(other, url, "field-7").status == Status.Ok and other.version == 2
        with pytest.raises(FleetClientError) as e:
            poll(board(ws[0]), url, "spare")
        assert e.value.http == 404
        wrong = board(ws[0], fp=bytes(16))
        res = poll(wrong, url, "field-7")  # another model: nothing downloaded
        assert res.outcome == "current" and res.status is None and wrong.version == 1


def test_export_served_by_nginx_resumes_with_ranges(tmp_path: Path) -> None:
    ws, out = fleet_with_export(tmp_path)
    with nginx_server(tmp_path / "nginx", out) as ng:
        url = ng.url
        host, port = url.removeprefix("http://").split(":")
        with FaultProxy((host, int(port))) as proxy:
            proxy.plan += [Fault(cut_at=7_000), Fault(cut_at=12_000)]
            dev = board(ws[0], max_payload=1 << 17)
            res = poll(dev, proxy.url, "24:6F:28:AA:01:02")
            assert res.status == Status.Ok and bytes(dev.ram) == ws[2]
            assert res.attempts == 3 and len(res.resumed_at) == 2
            proxy.plan.append(Fault(flip_at=15_000))
            other = board(ws[0], max_payload=1 << 17)
            res = poll(other, proxy.url, "field-7")
            assert res.status == Status.ChunkCrc and bytes(other.ram) == ws[0]


def test_export_follows_the_fleet(tmp_path: Path) -> None:
    ws, out = fleet_with_export(tmp_path)
    data = tmp_path / "data"
    with running_server(data) as s:
        s.admin.upload("m", full(ws[0][::-1], 4))
        s.admin.assign("group", "field", "m")  # latest: v4
        s.admin.register("field-7", group=None)  # leaves its group: no assignment
    r = modelota("export", out, "--data", data)
    assert r.returncode == 0, r.stderr
    assert "1 stale manifests removed" in r.stdout
    assert not (out / "v1" / "devices" / "field-7" / "manifest.json").exists()
    with python_http_server(out) as url:
        dev = board(ws[0])
        assert poll(dev, url, "24:6F:28:AA:01:02").status == Status.Ok and dev.version == 4
    r = modelota("export", tmp_path / "x", "--data", tmp_path / "nothing")
    assert r.returncode == 1 and "not a modelota serve data directory" in r.stderr
    assert FP  # the fixture fingerprint is what the tree advertises


def test_export_of_a_postgresql_fleet_reads_payloads_from_the_database(
    tmp_path: Path, pg_base: str
) -> None:
    """With PostgreSQL the payload bytes are rows of payload_chunks, not
    files: the export writes them out byte for byte, across chunk borders."""
    import hashlib

    from fleet_util import fresh_database

    db = fresh_database(pg_base)
    w = models(1, size=600_000, seed=3)[0]  # over two 256 KiB chunks
    payload = full(w, 1)
    with running_server(tmp_path / "data", db_url=db, max_payload=1 << 21) as s:
        s.admin.upload("m", payload)
        s.admin.register("d", group="g")
        s.admin.assign("group", "g", "m")
        assert s.stored_payloads() == [hashlib.sha256(payload).hexdigest()]
    assert not (tmp_path / "data" / "payloads").exists()  # nothing on this disk
    out = tmp_path / "tree"
    r = modelota("export", out, "--data", tmp_path / "data", "--db", db)
    assert r.returncode == 0, r.stderr
    files = list((out / "v1" / "payloads").iterdir())
    assert [f.read_bytes() for f in files] == [payload]
    with python_http_server(out) as url:
        dev = board(bytes(len(w)), version=0, max_payload=1 << 20)
        assert poll(dev, url, "d").status == Status.Ok and bytes(dev.ram) == w
