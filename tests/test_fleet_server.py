"""`modelota serve` over loopback: the real aiohttp server, real SQLite, real
HTTP; devices are simulated boards running the native C++ core."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from pathlib import Path

import pytest

from fleet_util import (
    FP,
    TOKEN,
    board,
    body_json,
    full,
    models,
    raw_http,
    running_server,
    signed_request,
)
from modelota import pack
from modelota.fleet.client import AdminClient, FleetClientError, poll
from modelota.fleet.server import parse_range
from modelota.sim.faultproxy import Fault, FaultProxy
from modelota.status import Status

OTHER_FP = bytes(range(16))


def setup_line(admin: AdminClient, ws: list[bytes], device: str = "dev-1") -> list[dict]:
    recs = [admin.upload("m", full(w, i + 1)) for i, w in enumerate(ws)]
    admin.register(device, group="g")
    admin.assign("group", "g", "m")
    return recs


def test_device_updates_then_is_current_and_reports(tmp_path: Path, db: str | None) -> None:
    ws = models(3)
    with running_server(tmp_path, db_url=db) as s:
        setup_line(s.admin, ws)
        dev = board(ws[0])
        res = s.poll(dev, "dev-1")
        assert (res.outcome, res.status, res.attempts) == ("updated", Status.Ok, 1)
        assert bytes(dev.ram) == ws[2] and dev.version == 3
        again = s.poll(dev, "dev-1")
        assert again.outcome == "current"
        reports = s.admin.reports("dev-1")
        assert [(r["event"], r["status_name"], r["version"]) for r in reports] == [
            ("apply", "Ok", 3)
        ]
        devices = s.admin.devices()
        assert devices[0]["last_version"] == 3 and devices[0]["assigned"]["version"] == 3


def test_check_answers_match_the_protocol(tmp_path: Path, db: str | None) -> None:
    ws = models(2)
    with running_server(tmp_path, db_url=db) as s:
        recs = setup_line(s.admin, ws)
        sha = recs[1]["sha256"]
        base = "/v1/devices/dev-1/manifest.json"

        def get(path: str, *headers: str, device: str = "dev-1") -> tuple[int, bytes]:
            extra = "".join(f"{h}\r\n" for h in headers)
            return raw_http(s.port, s.signed("GET", path, device, headers=extra))

        code, raw = get(f"{base}?fingerprint={FP.hex()}&version=1")
        assert code == 200
        m = body_json(raw)
        assert list(m) == [
            "version",
            "base_version",
            "size",
            "fingerprint",
            "sha256",
            "url",
            "line",
        ]
        assert (m["version"], m["sha256"], m["fingerprint"]) == (2, sha, FP.hex())
        assert len(raw.split(b"\r\n\r\n", 1)[1]) <= 512
        assert get(f"{base}?fingerprint={FP.hex()}&version=2")[0] == 204
        assert get(f"{base}?version=7")[0] == 204
        assert get(base, f'If-None-Match: "{sha}"')[0] == 304
        code, raw = get(f"{base}?fingerprint={OTHER_FP.hex()}&version=1")
        assert code == 409 and body_json(raw)["error"] == "WrongModel"
        code, raw = raw_http(s.port, signed_request("GET", "/v1/devices/nobody/manifest.json",
                                                    "nobody", bytes(32)))  # fmt: skip
        assert code == 401 and body_json(raw)["error"] == "BadSignature"  # no key, no answer
        s.admin.register("lonely")
        code, raw = get("/v1/devices/lonely/manifest.json", device="lonely")
        assert code == 404 and body_json(raw)["error"] == "NoAssignment"
        # the device's own assignment wins over its group's
        s.admin.assign("device", "dev-1", "m", 1)
        assert get(f"{base}?version=0")[0] == 200
        assert body_json(get(f"{base}?version=0")[1])["version"] == 1


def test_payload_download_ranges_and_etag(tmp_path: Path) -> None:
    ws = models(1)
    payload = full(ws[0], 1)
    with running_server(tmp_path) as s:
        sha = setup_line(s.admin, ws)[0]["sha256"]
        assert sha == hashlib.sha256(payload).hexdigest()
        path = f"/v1/payloads/{sha}.mota"
        n = len(payload)

        def get(*headers: str, method: str = "GET") -> tuple[int, bytes, bytes]:
            extra = "".join(f"{h}\r\n" for h in headers)
            code, raw = raw_http(s.port, s.signed(method, path, "dev-1", headers=extra))
            head, _, body = raw.partition(b"\r\n\r\n")
            return code, head, body

        code, head, body = get()
        assert code == 200 and body == payload and f'ETag: "{sha}"'.encode() in head
        assert b"Accept-Ranges: bytes" in head
        code, head, body = get("Range: bytes=100-")
        assert code == 206 and body == payload[100:]
        assert f"Content-Range: bytes 100-{n - 1}/{n}".encode() in head
        assert get("Range: bytes=10-19")[2] == payload[10:20]
        assert get("Range: bytes=-7")[2] == payload[-7:]
        assert get(f"Range: bytes={n}-")[0] == 416
        assert get("Range: bytes=5-2")[0] == 200  # invalid: ignored
        assert get("Range: bytes=0-1,5-6")[0] == 200  # several: the whole file
        assert get("Range: bytes=100-", 'If-Range: "other"')[2] == payload  # changed: all
        assert get("Range: bytes=100-", f'If-Range: "{sha}"')[0] == 206
        assert get(f'If-None-Match: "{sha}"')[0] == 304
        code, head, body = get(method="HEAD")
        assert code == 200 and body == b"" and f"Content-Length: {n}".encode() in head
        assert get(method="POST")[0] == 405
        # no credential, or another request's: nothing
        assert raw_http(s.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())[0] == 401
        other = s.signed("GET", path + "?x", "dev-1").split(b"\r\n")[2]  # its Authorization
        code, _ = raw_http(s.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + other
                           + b"\r\nConnection: close\r\n\r\n")  # fmt: skip
        assert code == 401


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [
        ("bytes=0-", 10, (0, 10)),
        ("bytes=3-3", 10, (3, 4)),
        ("bytes=3-99", 10, (3, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=10-", 10, False),
        ("bytes=-0", 10, False),
        ("bytes=0-", 0, False),
        ("bytes=4-3", 10, None),
        ("bytes=a-", 10, None),
        ("bytes=-", 10, None),
        ("bytes=1-2,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=\u0661-", 10, None),  # a non-ASCII digit
        ("bytes=" + "9" * 30 + "-", 10, None),
    ],
)
def test_parse_range(header: str, size: int, want: object) -> None:
    assert parse_range(header, size) == want


def test_resume_after_a_dropped_connection_and_corruption_refused(tmp_path: Path) -> None:
    ws = models(2, size=40_000)
    with running_server(tmp_path) as s:
        setup_line(s.admin, ws)
        dev = board(ws[0], max_payload=1 << 17)
        host, port = s.url.removeprefix("http://").split(":")
        with FaultProxy((host, int(port))) as proxy:
            proxy.plan.append(Fault(flip_at=20_000))
            res = s.poll(dev, "dev-1", proxy.url)
            assert res.status == Status.ChunkCrc and bytes(dev.ram) == ws[0] and dev.version == 1
            proxy.plan += [Fault(cut_at=9_000), Fault(cut_at=15_000)]
            res = s.poll(dev, "dev-1", proxy.url)
            assert res.status == Status.Ok and bytes(dev.ram) == ws[1] and dev.version == 2
            assert res.attempts == 3 and len(res.resumed_at) == 2
            ranges = [r for r in proxy.requests if b"\r\nRange: bytes=" in r]
            assert len(ranges) == 2 and all(b"If-Range:" in r for r in ranges)
            # five drops in a row: the device gives up, restores, reports
            proxy.plan += [Fault(cut_at=2_000 + i) for i in range(5)]
            s.admin.upload("m", full(ws[0][::-1], 3))
            res = s.poll(dev, "dev-1", proxy.url, attempts=5)
            assert res.status == Status.Timeout and res.outcome == "failed"
            assert bytes(dev.ram) == ws[1] and dev.version == 2
        names = [r["status_name"] for r in s.admin.reports("dev-1")]
        assert names == ["Timeout", "Ok", "ChunkCrc"]


def test_delta_is_offered_to_devices_on_its_base(tmp_path: Path, db: str | None) -> None:
    ws = models(1, size=20_000)
    new = bytearray(ws[0])
    new[5000:5100] = bytes(100)
    with running_server(tmp_path, db_url=db) as s:
        setup_line(s.admin, ws)
        s.admin.upload("m", full(bytes(new), 2))
        delta = pack(bytes(new), fingerprint=FP, version=2, chunk_size=512, base=ws[0],
                     base_version=1).encode()  # fmt: skip
        rec = s.admin.upload("m", delta)
        assert rec["base_version"] == 1 and rec["size"] < 400
        dev = board(ws[0])
        res = s.poll(dev, "dev-1")
        assert res.status == Status.Ok and res.payload_size == len(delta)
        assert bytes(dev.ram) == bytes(new)
        # a device on another version gets the full payload
        other = board(ws[0][::-1], version=0)
        s.admin.register("dev-2", group="g")
        res = s.poll(other, "dev-2")
        assert res.status == Status.Ok and res.payload_size > 20_000
        # a delta must end in its version's weights and start from its base's
        wrong_end = pack(ws[0][::-1], fingerprint=FP, version=2, chunk_size=512, base=ws[0],
                         base_version=1).encode()  # fmt: skip
        wrong_base = pack(bytes(new), fingerprint=FP, version=2, chunk_size=512,
                          base=ws[0][::-1], base_version=1).encode()  # fmt: skip
        for bad, name in ((wrong_end, "DigestMismatch"), (wrong_base, "WrongBase")):
            with pytest.raises(FleetClientError) as e:
                s.admin.upload("m", bad)
            assert (e.value.http, e.value.name) == (409, name)


def test_upload_validation(tmp_path: Path, db: str | None) -> None:
    ws = models(3)
    with running_server(tmp_path, max_payload=20_000, db_url=db) as s:
        good = full(ws[0], 5)
        assert s.admin.upload("m", good)["version"] == 5
        again = s.admin.upload("m", good)  # same bytes: idempotent
        assert again["version"] == 5
        cases = [
            (b"", 400, "Truncated"),
            (b"not a payload at all" * 10, 400, "BadMagic"),
            (good[:-1], 400, "Truncated"),
            (good[:200] + bytes([good[200] ^ 1]) + good[201:], 400, "ChunkCrc"),
            (good + b"x", 400, "TrailingData"),
            (full(ws[1], 5), 409, "AlreadyCurrent"),
            (full(ws[1], 4), 409, "Rollback"),
            (full(ws[1], 6, fp=OTHER_FP), 409, "WrongModel"),
        ]
        for data, http, name in cases:
            with pytest.raises(FleetClientError) as e:
                s.admin.upload("m", data)
            assert (e.value.http, e.value.name) == (http, name), data[:8]
        with pytest.raises(FleetClientError) as e:
            s.admin.upload("big", full(random.Random(1).randbytes(30_000), 1))  # incompressible
        assert e.value.http == 413
        # chunked transfer encoding (no Content-Length) is capped too
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in [bytes(8000)] * 4) + b"0\r\n\r\n"
        code, _ = raw_http(
            s.port,
            b"POST /admin/payloads?line=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + body,
        )  # fmt: skip
        assert code == 413
        recs = s.admin.payloads()
        assert [(r["line"], r["version"]) for r in recs] == [("m", 5)]
        assert s.stored_payloads() == [recs[0]["sha256"]]  # no stray files or chunks


def test_wrong_tokens_change_nothing(tmp_path: Path, db: str | None) -> None:
    ws = models(2)
    with running_server(tmp_path, db_url=db) as s:
        setup_line(s.admin, ws[:1])
        before = (s.admin.payloads(), s.admin.devices())
        for token in ["", "test-toke", "test-token2", "TEST-TOKEN", "x" * 5000]:
            bad = AdminClient(s.url, token)
            for call in (
                lambda b=bad: b.upload("m", full(ws[1], 2)),
                lambda b=bad: b.register("evil", "g"),
                lambda b=bad: b.assign("group", "g", "m", 1),
                lambda b=bad: b.payloads(),
            ):
                with pytest.raises(FleetClientError) as e:
                    call()
                assert e.value.http == 401
        for header in (b"", b"Authorization: Basic dGVzdA==\r\n", b"Authorization: Bearer\r\n"):
            code, _ = raw_http(s.port, b"GET /admin/devices HTTP/1.1\r\nHost: x\r\n" + header
                               + b"Connection: close\r\n\r\n")  # fmt: skip
            assert code == 401
        assert (s.admin.payloads(), s.admin.devices()) == before


TRAVERSALS = [
    "/v1/devices/../../etc/passwd/manifest.json",
    "/v1/devices/%2e%2e%2f%2e%2e%2fetc/manifest.json",
    "/v1/devices/..%2Ffleet.db/manifest.json",
    "/v1/devices/.hidden/manifest.json",
    "/v1/devices/a%00b/manifest.json",
    "/v1/devices/" + "a" * 65 + "/manifest.json",
    "/v1/devices/caf%C3%A9/manifest.json",
    "/v1/payloads/..%2Ffleet.db",
    "/v1/payloads/../fleet.db",
    "/v1/payloads/%2e%2e%2ffleet.db.mota",
    "/v1/payloads/" + "0" * 64,
    "/v1/payloads/" + "A" * 64 + ".mota",
    "/v1/payloads/" + "0" * 64 + ".mota",
    "/v1/devices/dev-1/manifest.json?version=-1",
    "/v1/devices/dev-1/manifest.json?version=4294967296",
    "/v1/devices/dev-1/manifest.json?version=1e3",
    "/v1/devices/dev-1/manifest.json?fingerprint=zz",
    "/v1/devices/dev-1/manifest.json?fingerprint=" + "0" * 33,
    "/admin/reports?device=../x",
    "/admin/reports?limit=-5",
    "/admin/payloads?line=..",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_hostile_paths_are_4xx(tmp_path: Path, path: str) -> None:
    with running_server(tmp_path) as s:
        setup_line(s.admin, models(1))
        auth = f"Authorization: Bearer {TOKEN}\r\n" if path.startswith("/admin") else ""
        code, raw = raw_http(s.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}"
                             "Connection: close\r\n\r\n".encode())  # fmt: skip
        assert 400 <= code < 500, raw[:300]
        assert b"root:" not in raw and b"SQLite format" not in raw


def req(method: str, path: str, body: bytes = b"", admin: bool = False) -> bytes:
    auth = f"Authorization: Bearer {TOKEN}\r\n" if admin else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /v1/devices/dev-1/manifest.json HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /v1/devices/dev-1/manifest.json HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"POST /v1/devices/dev-1/reports HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n{}",
    req("POST", "/v1/devices/dev-1/reports", b"{bad}"),
    req("POST", "/v1/devices/dev-1/reports", b"[]"),
    req("POST", "/v1/devices/dev-1/reports", b'{"event": "reboot"}'),
    req("POST", "/v1/devices/dev-1/reports", b'{"event": "apply", "version": "xx"}'),
    req("POST", "/v1/devices/dev-1/reports", b'{"event": "apply", "status": 1e9}'),
    req("POST", "/v1/devices/dev-1/reports", b'{"event": "apply", "message": ["x"]}'),
    req("POST", "/v1/devices/dev-1/reports", b"{" * 5000),
    req("POST", "/v1/devices/dev-1/reports", b"[" * 4000),  # deep nesting
    req("POST", "/v1/devices/dev-1/reports", b'{"event": "check"}' + b" " * 5000),
    req("POST", "/v1/devices/ghost/reports", b'{"event": "check"}'),
    req("PUT", "/admin/devices/d", b'{"group": "../"}', admin=True),
    req("PUT", "/admin/devices/d", b'{"group": 5}', admin=True),
    req("PUT", "/admin/devices/d", b'{"fingerprint": "00"}', admin=True),
    req("PUT", "/admin/devices/d", b'{"owner": "x"}', admin=True),
    req("PUT", "/admin/assignments/planet/x", b'{"line": "m"}', admin=True),
    req("PUT", "/admin/assignments/device/dev-1", b'{"line": "m", "version": true}', admin=True),
    req("PUT", "/admin/assignments/device/dev-1", b'{"line": "m", "version": 99}', admin=True),
    req("PUT", "/admin/assignments/device/dev-1", b'{"line": "nope"}', admin=True),
    req("PUT", "/admin/assignments/device/ghost", b'{"line": "m"}', admin=True),
    req("PUT", "/admin/assignments/group/g", b'{"line": ["m"]}', admin=True),
    req("POST", "/admin/payloads", b"MOTA", admin=True),
    req("DELETE", "/admin/payloads", admin=True),
]


def test_malformed_requests_are_4xx_and_change_nothing(tmp_path: Path) -> None:
    with running_server(tmp_path) as s:
        setup_line(s.admin, models(1))
        before = (s.admin.payloads(), s.admin.devices(), s.admin.reports())
        for req in MALFORMED:
            req = req.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
            code, raw = raw_http(s.port, req, timeout=5, half_close=b"9999" in req)
            assert 400 <= code < 500 or code == 0, raw[:300]  # 0: connection refused the bytes
        assert (s.admin.payloads(), s.admin.devices(), s.admin.reports()) == before
        # and it still serves
        assert s.poll(board(models(1)[0][::-1], 0), "dev-1").status == Status.Ok


def test_concurrent_uploads_and_polls_lose_nothing(tmp_path: Path, db: str | None) -> None:
    ws = models(12, size=3000, seed=5)
    with running_server(tmp_path, db_url=db) as s:
        setup_line(s.admin, ws[:1])
        for i in range(8):
            s.admin.register(f"d{i}", group="g")
        results: dict[str, list[object]] = {"upload": [], "poll": [], "errors": []}
        lock = threading.Lock()

        # packed before the race: the race is the server's, not the packer's
        packed = {(k, v): full(ws[v - 1], v, chunk=256 + k) for k in range(4) for v in range(2, 13)}

        def uploader(k: int) -> None:
            # every thread races for versions 2..12 of the same line
            for v in range(2, 13):
                try:
                    rec = s.admin.upload("m", packed[(k, v)])
                    with lock:
                        results["upload"].append(rec["version"])
                except FleetClientError as e:
                    with lock:
                        results["errors"].append((e.http, e.name))

        def poller(i: int) -> None:
            for _ in range(5):
                dev = board(ws[0])
                res = s.poll(dev, f"d{i}")
                with lock:
                    results["poll"].append(
                        (res.status, dev.version, bytes(dev.ram) == ws[dev.version - 1])
                    )

        threads = [threading.Thread(target=uploader, args=(k,)) for k in range(4)]
        threads += [threading.Thread(target=poller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # each version was won by exactly one upload; every loser got a clean 409
        assert sorted(results["upload"]) == list(range(2, 13))
        assert all(e[0] == 409 for e in results["errors"]) and len(results["errors"]) == 33
        # every poll ended with the right weights: updated, or (when it came before
        # the first upload committed: checks do not wait for writes) current at v1
        assert all((st == Status.Ok or (st is None and v == 1)) and ok
                   for st, v, ok in results["poll"]), results["poll"]  # fmt: skip
        recs = s.admin.payloads()
        assert [r["version"] for r in recs] == list(range(1, 13))
        assert s.stored_payloads() == sorted(r["sha256"] for r in recs)
        updates = sum(1 for st, _, _ in results["poll"] if st is not None)
        assert len(s.admin.reports(limit=1000)) == updates  # one report per update, none lost


def test_state_survives_a_restart(tmp_path: Path, db: str | None) -> None:
    ws = models(2)
    with running_server(tmp_path, db_url=db) as s:
        setup_line(s.admin, ws)
        dev = board(ws[0])
        assert s.poll(dev, "dev-1").status == Status.Ok
    with running_server(tmp_path, db_url=db) as s:
        assert [r["version"] for r in s.admin.payloads()] == [1, 2]
        assert s.admin.reports("dev-1")[0]["status_name"] == "Ok"
        assert s.admin.devices()[0]["last_version"] == 2  # the batched check was flushed
        assert s.poll(dev, "dev-1").outcome == "current"


def test_report_body_is_recorded_as_sent(tmp_path: Path) -> None:
    with running_server(tmp_path) as s:
        setup_line(s.admin, models(1))
        body = {"event": "download", "version": 7, "status": -14, "status_name": "ChunkCrc",
                "message": "é" * 600, "bytes": 1234}  # fmt: skip
        raw_body = json.dumps(body).encode()
        code, raw = raw_http(s.port, s.signed("POST", "/v1/devices/dev-1/reports", "dev-1",
                                              raw_body))  # fmt: skip
        assert code == 204, raw
        got = s.admin.reports("dev-1")[0]
        assert (got["event"], got["version"], got["status"], got["bytes"]) == (
            "download",
            7,
            -14,
            1234,
        )
        assert got["message"] == "é" * 500  # bounded


def test_serve_cli_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`modelota serve` as deployed: SIGTERM flushes the batched device checks."""
    from modelota.fleet.server import spawn

    proc, url = spawn(tmp_path, TOKEN)
    try:
        admin = AdminClient(url, TOKEN)
        admin.upload("m", full(models(1)[0], 1))
        secret = admin.register("dev-1", group="g")["secret"]
        admin.assign("group", "g", "m")
        dev = board(models(1)[0])
        # checked at v1, nothing to do
        assert poll(dev, url, "dev-1", secret=secret).outcome == "current"
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    with running_server(tmp_path) as s:
        d = s.admin.devices()[0]
        assert d["last_version"] == 1 and d["last_check"] is not None


def test_device_cli_polls_and_keeps_its_flash_between_runs(tmp_path: Path) -> None:
    from payloads import modelota

    ws = models(2)
    factory = tmp_path / "factory.bin"
    factory.write_bytes(ws[0])
    with running_server(tmp_path / "data") as s:
        fp = modelota("fingerprint", "--model", "m", factory).stdout.split()[0]
        for i, w in enumerate(ws):
            s.admin.upload("m", pack(w, fingerprint=bytes.fromhex(fp), version=i + 1).encode())
        key = tmp_path / "dev-1.secret"
        admin = ("fleet", "--server", s.url, "--token", TOKEN)
        r = modelota(*admin, "register", "dev-1", "--group", "g", "--secret-file", key)
        assert r.returncode == 0 and "secret " in r.stdout, r.stderr
        secret = key.read_text().strip()
        assert (key.stat().st_mode & 0o777) == 0o600 and secret in r.stdout
        assert f"written to {key}" in r.stdout
        r = modelota(*admin, "register", "dev-1", "--group", "g", "--secret-file", key)
        assert r.returncode == 1 and "--rotate-secret" in r.stderr  # not shown twice
        assert key.read_text().strip() == secret
        s.admin.assign("group", "g", "m")
        state = tmp_path / "flash.img"
        args = ("device", factory, "--server", s.url, "--id", "dev-1", "--model", "m",
                "--state", state, "--secret", secret)  # fmt: skip
        r = modelota(*args[:-2], "--secret-file", key)
        assert r.returncode == 0, r.stderr
        assert "v1 from factory" in r.stdout and "poll 1: updated (Ok): v1 -> v2" in r.stdout
        r = modelota(*args, "--polls", "2", "--interval", "0")  # a reboot: flash kept
        assert r.returncode == 0, r.stderr
        assert "v2 from store" in r.stdout and "poll 2: current at v2" in r.stdout
        r = modelota("device", factory, "--server", s.url, "--id", "nobody", "--model", "m",
                     "--secret", secret)  # fmt: skip
        assert r.returncode == 1 and "401 BadSignature" in r.stderr
        r = modelota("device", factory, "--server", s.url, "--id", "dev-1", "--model", "m")
        assert r.returncode == 1 and "401 Unauthorized" in r.stderr  # no secret
        r = modelota(*args[:-2], "--secret", "00" * 32)
        assert r.returncode == 1 and "401 BadSignature" in r.stderr  # a wrong one
        r = modelota("device", factory, "--server", s.url, "--id", "dev-1", "--model", "other",
                     "--secret", secret)  # fmt: skip
        assert r.returncode == 1 and "409 WrongModel" in r.stderr
