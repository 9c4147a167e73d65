"""Stateless replicas (issue [5]): three `modelota serve` processes on one
throwaway PostgreSQL behind nginx. Admin calls go to one replica, devices
poll and download through the other two (round robin); every replica gives
the same answers, an admin change reaches every replica's cache through
LISTEN/NOTIFY, payload bytes come from the database (a replica started after
the upload serves them, with Range), uploads racing on two replicas leave
one winner, and a replica killed in the middle of a download costs the
device one Range request."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleet_util import (
    TOKEN,
    board,
    free_port,
    fresh_database,
    full,
    models,
    nginx_proxy,
    raw_http,
    signed_request,
    stop,
)
from modelota.fleet.client import AdminClient, FleetClientError, poll
from modelota.fleet.server import spawn
from modelota.status import Status


@dataclass
class Replica:
    name: str
    proc: Any
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stats(self) -> dict[str, Any]:
        return dict(AdminClient(self.url, TOKEN).call("GET", "/admin/stats"))


def start(tmp: Path, name: str, db: str, key: Path, *extra: str) -> Replica:
    proc, url = spawn(tmp / name, TOKEN, "--db", db, "--device-key-file", str(key),
                      "--trust-proxy", "127.0.0.1", *extra)  # fmt: skip
    return Replica(name, proc, url)


def signed_get(port: int, device: str, key: bytes, path: str) -> tuple[int, bytes]:
    code, raw = raw_http(port, signed_request("GET", path, device, key))
    return code, raw.split(b"\r\n\r\n", 1)[1]


def wait_for(what: str, ok: Any, timeout: float = 15.0) -> float:
    """Polls ``ok()`` until true; returns the seconds it took."""
    t0 = time.monotonic()
    while not ok():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - t0


def test_three_replicas_behind_nginx(pg_base: str, tmp_path: Path) -> None:
    db = fresh_database(pg_base)
    key = tmp_path / "device.key"
    key.write_text("ab" * 32 + "\n")
    replicas: list[Replica] = []
    try:
        a = start(tmp_path, "a", db, key)
        b = start(tmp_path, "b", db, key)
        replicas += [a, b]
        c_port = free_port()  # C joins later, after the uploads
        with nginx_proxy(tmp_path / "nginx", {"/admin/": [a.port], "/": [b.port, c_port]}) as ng:
            admin = AdminClient(ng.url, TOKEN)
            # uploads and assignments through A (nginx routes /admin/ there)
            ws = models(3, size=30_000, seed=4)
            big = models(1, size=12_000_000, seed=5)[0]
            for i, w in enumerate(ws):
                admin.upload("m", full(w, i + 1))
            admin.upload("big", full(big, 1, chunk=1024))
            secrets = {d: bytes.fromhex(admin.register(d, group="g")["secret"])
                       for d in ("d1", "d2", "d3")}  # fmt: skip
            admin.assign("group", "g", "m", 2)

            # devices poll and download through nginx: B (C is not up yet)
            dev = board(ws[0])
            res = poll(dev, ng.url, "d1", secret=secrets["d1"])
            assert (res.status, dev.version, bytes(dev.ram)) == (Status.Ok, 2, ws[1])

            # an admin change on A reaches B's cache (LISTEN/NOTIFY); the answer changes
            path = "/v1/devices/d2/manifest.json?version=2"
            for _ in range(3):  # B has this answer cached now
                assert signed_get(b.port, "d2", secrets["d2"], path)[0] == 204
            gen = b.stats()["generation"]
            t0 = time.monotonic()
            admin.assign("group", "g", "m", 3)
            wait_for("B to hear of the change", lambda: b.stats()["generation"] > gen)
            notified = time.monotonic() - t0
            code, body = signed_get(b.port, "d2", secrets["d2"], path)
            assert code == 200 and json.loads(body)["version"] == 3
            print(f"\nadmin change on A -> B's cache dropped after {notified * 1000:.0f} ms")

            # every replica answers every device the same, byte for byte
            def same_answers(rs: list[Replica]) -> None:
                for d in ("d1", "d2", "d3"):
                    p = f"/v1/devices/{d}/manifest.json?version=1"
                    answers = {r.name: signed_get(r.port, d, secrets[d], p) for r in rs}
                    assert len(set(answers.values())) == 1, answers
                    assert answers["a"][0] in (200, 204), answers

            same_answers([a, b])

            # B is killed in the middle of a download; C, started then (it never saw
            # the upload: the bytes come from the database), serves the rest
            admin.assign("device", "d3", "big")
            killed: list[str] = []
            d3 = board(bytes(len(big)), version=0, max_payload=1 << 24)

            def progress(done: int, total: int) -> None:
                if done >= 200_000 and not killed:
                    b.proc.send_signal(signal.SIGKILL)
                    b.proc.wait(10)
                    killed.append("b")
                    replicas.append(start(tmp_path, "c", db, key, "--port", str(c_port)))

            res = poll(d3, ng.url, "d3", progress=progress, secret=secrets["d3"], attempts=5)
            if res.status != Status.Ok:
                print("\n".join(["nginx access:", *ng.access()[-6:], "errors:", *ng.errors()[-6:]]))
            assert killed and res.status == Status.Ok and bytes(d3.ram) == big, res
            assert res.attempts >= 2 and res.resumed_at and res.resumed_at[0] >= 200_000
            ranges = [ln for ln in ng.access() if "/v1/payloads/" in ln and "range=[bytes=" in ln]
            assert ranges and ranges[-1].endswith(f":{c_port}]"), ng.access()[-4:]
            assert " 206 " in ranges[-1]
            reports = admin.reports("d3")
            assert reports[0]["status_name"] == "Ok" and reports[0]["bytes"] == res.payload_size
            print(f"B killed after 200 KB: the device resumed at {res.resumed_at} of"
                  f" {res.payload_size} bytes, through C")  # fmt: skip
            assert reports[0]["version"] == 1
            same_answers([a, replicas[-1]])
    finally:
        for r in replicas:
            stop(r.proc)


def test_racing_uploads_on_two_replicas_leave_one_winner(pg_base: str, tmp_path: Path) -> None:
    db = fresh_database(pg_base)
    key = tmp_path / "device.key"
    key.write_text("cd" * 32 + "\n")
    a = start(tmp_path, "a", db, key)
    b = start(tmp_path, "b", db, key)
    try:
        admins = [AdminClient(a.url, TOKEN), AdminClient(b.url, TOKEN)]
        ws = models(8, size=4000, seed=7)
        admins[0].upload("m", full(ws[0], 1))
        results: list[tuple[int, int, str]] = []
        lock = threading.Lock()

        def racer(k: int) -> None:
            for v in range(2, 9):
                # each replica gets other bytes for the same version (another chunking)
                data = full(ws[v - 1], v, chunk=256 + 64 * k)
                try:
                    rec = admins[k % 2].upload("m", data)
                    with lock:
                        results.append((v, 201, rec["sha256"]))
                except FleetClientError as e:
                    with lock:
                        results.append((v, e.http, e.name))

        threads = [threading.Thread(target=racer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for v in range(2, 9):
            got = sorted(r[1] for r in results if r[0] == v)
            assert got == [201, 409, 409, 409], (v, results)
        recs = admins[1].payloads()
        assert [r["version"] for r in recs] == list(range(1, 9))
        winners = {r[0]: r[2] for r in results if r[1] == 201}
        assert all(winners[r["version"]] == r["sha256"] for r in recs if r["version"] > 1)
        # the same bytes on both replicas at once: one 201, one 200 with the same record
        same = full(models(1, size=4000, seed=99)[0], 9)
        outs: list[dict[str, Any]] = []
        ts = [threading.Thread(target=lambda ad=ad: outs.append(ad.upload("m", same)))
              for ad in admins]  # fmt: skip
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert len(outs) == 2 and outs[0]["sha256"] == outs[1]["sha256"]
        assert outs[0]["sha256"] == hashlib.sha256(same).hexdigest()
        # a replica with another device key file refuses to start, in one line
        other = tmp_path / "other.key"
        other.write_text("ef" * 32 + "\n")
        with pytest.raises(RuntimeError) as e:
            start(tmp_path, "c", db, other)
        assert "registered under another device key" in str(e.value)
    finally:
        stop(a.proc)
        stop(b.proc)


def test_replay_and_quota_are_shared_by_replicas(pg_base: str, tmp_path: Path) -> None:
    """A nonce and a day's quota live in the database: a report replayed to
    another replica is refused, windows posted to two replicas count once."""
    from test_fleet_windows import tiny

    db = fresh_database(pg_base)
    key = tmp_path / "device.key"
    key.write_text("12" * 32 + "\n")
    a = start(tmp_path, "a", db, key, "--quota-windows", "10")
    b = start(tmp_path, "b", db, key, "--quota-windows", "10")
    try:
        secret = bytes.fromhex(AdminClient(a.url, TOKEN).register("d")["secret"])
        req = signed_request("POST", "/v1/devices/d/reports", "d", secret, b'{"event":"check"}')
        assert raw_http(a.port, req)[0] == 204
        code, raw = raw_http(b.port, req)
        assert code == 401 and b"Replay" in raw
        post = [signed_request("POST", "/v1/devices/d/windows", "d", secret, tiny(i) * 4)
                for i in range(3)]  # fmt: skip
        assert raw_http(a.port, post[0])[0] == 201
        assert raw_http(b.port, post[1])[0] == 201
        assert raw_http(a.port, post[2])[0] == 429  # 12 > 10, whichever replica is asked
        assert len(AdminClient(b.url, TOKEN).windows()) == 8
    finally:
        stop(a.proc)
        stop(b.proc)
