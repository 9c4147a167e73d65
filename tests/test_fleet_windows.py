"""Devices POST logged sample windows to `modelota serve` (issue [7]): the
server checks every frame and stores all frames of a request in the database
(or none), within per-device daily quotas; `modelota fleet windows` writes
them as Edge Impulse data acquisition files. Replays of the failures of
issue [5] (F3, F4) are here."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
from test_collect import validate_ingestion_file

from fleet_util import TOKEN, Running, body_json, raw_http, running_server
from modelota.collect import Sensor, Window
from modelota.fleet.db import Quotas
from payloads import modelota

DEVICE = "24:6F:28:AA:01:02"


def window(seq: int, rows: int = 50, first: int | None = None) -> Window:
    values = tuple((float(i) * 0.5, -float(i) / 3, 1e-3 * i) for i in range(rows))
    # float32 round trip: what the device holds
    values = tuple(tuple(struct.unpack("<3f", struct.pack("<3f", *r))) for r in values)
    sensors = (Sensor("accX", "m/s2"), Sensor("accY", "m/s2"), Sensor("temp", "C"))
    return Window(sensors, 10.0, seq, seq * rows if first is None else first, values)


def tiny(seq: int) -> bytes:
    """The smallest frame there is (one sensor, one row): 40 bytes."""
    return Window((Sensor("a", "u"),), 1.0, seq, 0, ((1.0,),)).encode()


def nan_window() -> Window:
    rows = ((1.0, float("nan"), 2.0), (float("inf"), 0.0, 1.0))
    sensors = (Sensor("a", "u"), Sensor("b", "u"), Sensor("c", "u"))
    return Window(sensors, 10.0, 9, 0, rows)


def f32(row: list[float] | tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(row)}f", *row)


def post(s: Running, device: str, body: bytes) -> tuple[int, bytes]:
    return raw_http(s.port, s.signed("POST", f"/v1/devices/{device}/windows", device, body))


def stored(s: Running) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    while True:
        page = s.admin.windows(int(out[-1]["id"]) if out else 0)  # type: ignore[call-overload]
        if not page:
            return out
        out += page


def test_posted_windows_become_ingestion_files(tmp_path: Path) -> None:
    key = "ei-project-hmac-key"
    with running_server(tmp_path / "data") as s:
        s.admin.register(DEVICE)
        frames = window(0).encode() + window(1).encode()
        code, raw = post(s, DEVICE, frames)
        assert code == 201, raw
        assert body_json(raw)["stored"] == 2
        # a damaged frame, garbage, nothing, NaN: refused whole, nothing stored
        bad = bytearray(window(2).encode())
        bad[-10] ^= 0x20
        for body, name in [
            (bytes(bad), "BadWindow"),
            (window(3).encode() + b"junk", "BadWindow"),
            (b"", "BadWindow"),
            (window(6).encode() + nan_window().encode(), "BadWindow"),
        ]:
            code, raw = post(s, DEVICE, body)
            assert (code, body_json(raw)["error"]) == (400, name), raw
        s.admin.register("ghost")
        code, raw = raw_http(s.port, s.signed("POST", "/v1/devices/..%2Fx/windows", "ghost",
                                              window(5).encode()))  # fmt: skip
        assert code in (400, 401)
        assert [w["seq"] for w in stored(s)] == [0, 1]
        out = tmp_path / "ei"
        args = ("fleet", "--server", s.url, "--token", TOKEN, "windows", out, "--hmac-key", key)
        r = modelota(*args)
        assert r.returncode == 0, r.stderr
        assert "2 windows, 4 new files" in r.stdout
        files = sorted(p.name for p in out.iterdir())
        assert len(files) == 4 and all(f.startswith("field.24_6F_28_AA_01_02.") for f in files)
        for seq, name in enumerate(f for f in files if f.endswith(".json")):
            doc = validate_ingestion_file(out / name, key.encode())
            got = [f32(r) for r in doc["payload"]["values"]]  # shortest float32 text in JSON
            assert got == [f32(r) for r in window(seq).values]
            assert doc["payload"]["interval_ms"] == 10.0
            assert doc["payload"]["device_name"] == DEVICE
        r = modelota(*args)  # again: nothing new, nothing overwritten
        assert r.returncode == 0 and "2 windows, 0 new files" in r.stdout


def test_window_post_is_bounded(tmp_path: Path) -> None:
    with running_server(tmp_path) as s:
        s.admin.register("d")
        code, _ = post(s, "d", window(0).encode() * 2000)  # ~1.4 MB
        assert code == 413
        assert stored(s) == []
        assert not (tmp_path / "windows").exists()  # nothing is written to the disk


def test_f3_one_sequence_number_repeated_costs_the_same_every_time(tmp_path: Path) -> None:
    """F3: frames repeating one sequence number made every upload probe more
    file names (22 s for 1,000 frames, 228 s for 3,000), and after 10,000
    files with one name stem every upload was a 500 with earlier frames
    written. Now each request costs the same number of statements however
    many windows share its sequence number, and every one is stored."""
    quotas = Quotas(windows=100_000, window_bytes=1 << 30)
    with running_server(tmp_path, quotas=quotas) as s:
        s.admin.register("d")
        body = tiny(7) * 256  # the most frames one request may hold, all seq 7
        fleet = s.thread.server.fleet
        costs = []
        for _ in range(42):  # 10,752 windows named alike
            conns = list(fleet._conns)
            before = sum(c.statements for c in conns)
            code, raw = post(s, "d", body)
            assert code == 201, raw
            costs.append(sum(c.statements for c in fleet._conns) - before)
        assert len(set(costs[2:])) == 1, costs  # constant: no probing, nothing quadratic
        assert costs[-1] <= 256 + 10
        rows = fleet.db.one("SELECT COUNT(*), COUNT(DISTINCT seq) FROM windows")
        assert rows == (42 * 256, 1)
        s.admin.call("GET", "/admin/stats")  # still answering
        assert "500" not in s.admin.call("GET", "/admin/stats")["answered"]


def test_f3_checks_are_answered_while_a_window_upload_is_in_flight(tmp_path: Path) -> None:
    """F3: a check waited 37 s behind an 80 KB window upload. The upload is
    held half-sent here; a check is answered meanwhile, then the upload
    completes."""
    from fleet_util import board, full, models

    with running_server(tmp_path) as s:
        ws = models(1)
        s.admin.upload("m", full(ws[0], 1))
        s.admin.register("d", group="g")
        s.admin.assign("group", "g", "m")
        body = b"".join(window(i, rows=500).encode() for i in range(14))  # ~85 KB
        request = s.signed("POST", "/v1/devices/d/windows", "d", body)
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as up:
            up.sendall(request[: len(request) // 2])
            res = s.poll(board(ws[0]), "d")  # answered while the upload waits
            assert res.outcome == "current"
            up.sendall(request[len(request) // 2 :])
            raw = b""
            while chunk := up.recv(65536):
                raw += chunk
        assert raw.startswith(b"HTTP/1.1 201"), raw[:200]
        assert len(stored(s)) == 14


def test_f4_one_megabyte_of_tiny_frames_is_refused_whole(tmp_path: Path) -> None:
    """F4: one 1 MB POST of tiny frames became 52,000 files (206 MB) and a
    31 s stall. Now a request holds at most 256 windows: 413, nothing stored."""
    with running_server(tmp_path) as s:
        s.admin.register("d")
        body = b"".join(tiny(i) for i in range(1_000_000 // len(tiny(0))))
        assert len(body) <= 1 << 20
        code, raw = post(s, "d", body)
        assert (code, body_json(raw)["error"]) == (413, "TooManyWindows")
        assert stored(s) == []


def test_daily_quota_is_429_with_retry_after_and_all_or_nothing(tmp_path: Path) -> None:
    quotas = Quotas(windows=10, window_bytes=1 << 20)
    with running_server(tmp_path, quotas=quotas) as s:
        s.admin.register("d")
        s.admin.register("e")
        assert post(s, "d", tiny(0) * 6)[0] == 201
        code, raw = post(s, "d", tiny(1) * 6)  # 12 > 10: none of the six
        assert code == 429 and body_json(raw)["error"] == "QuotaExceeded"
        retry = int(raw.split(b"Retry-After: ", 1)[1].split(b"\r\n", 1)[0])
        assert 0 < retry <= 86400
        assert post(s, "d", tiny(2) * 4)[0] == 201  # exactly up to the quota
        assert post(s, "d", tiny(3))[0] == 429
        assert post(s, "e", tiny(4) * 10)[0] == 201  # another device has its own
        assert [w["seq"] for w in stored(s)] == [0] * 6 + [2] * 4 + [4] * 10
    quotas = Quotas(window_bytes=1000)
    with running_server(tmp_path / "b", quotas=quotas) as s:
        s.admin.register("d")
        assert post(s, "d", window(0).encode())[0] == 201  # 650 bytes
        assert post(s, "d", window(1).encode())[0] == 429  # 1300 > 1000
        assert len(stored(s)) == 1


@pytest.mark.parametrize("what", ["unsigned", "replayed", "other body"])
def test_windows_need_the_device_signature(tmp_path: Path, what: str) -> None:
    with running_server(tmp_path) as s:
        s.admin.register("d")
        good = s.signed("POST", "/v1/devices/d/windows", "d", window(0).encode())
        if what == "unsigned":
            req = good.replace(good.split(b"\r\n")[2] + b"\r\n", b"")
        elif what == "replayed":
            assert raw_http(s.port, good)[0] == 201
            req = good
        else:
            req = good.replace(window(0).encode(), window(1).encode())
        code, raw = raw_http(s.port, req)
        assert code == 401, raw
        assert len(stored(s)) == (1 if what == "replayed" else 0)
        assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"] in (
            "Unauthorized", "Replay", "BadSignature",
        )  # fmt: skip
