"""Devices POST logged sample windows to `modelota serve` (issue [7]): the
server checks each frame and writes Edge Impulse data acquisition files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from test_collect import validate_ingestion_file

from fleet_util import TOKEN, models, raw_http, running_server
from modelota.collect import Sensor, Window
from modelota.fleet.server import ServerThread


def window(seq: int) -> Window:
    rows = tuple((float(i) * 0.5, -float(i) / 3, 1e-3 * i) for i in range(50))
    # float32 round trip: what the device holds
    rows = tuple(tuple(struct.unpack("<3f", struct.pack("<3f", *r))) for r in rows)
    sensors = (Sensor("accX", "m/s2"), Sensor("accY", "m/s2"), Sensor("temp", "C"))
    return Window(sensors, 10.0, seq, seq * 50, rows)


def nan_window() -> Window:
    rows = ((1.0, float("nan"), 2.0), (float("inf"), 0.0, 1.0))
    sensors = (Sensor("a", "u"), Sensor("b", "u"), Sensor("c", "u"))
    return Window(sensors, 10.0, 9, 0, rows)


def f32(row: list[float] | tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(row)}f", *row)


def post(port: int, device: str, body: bytes) -> tuple[int, bytes]:
    head = (f"POST /v1/devices/{device}/windows HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
    return raw_http(port, head.encode() + body)


def test_posted_windows_become_ingestion_files(tmp_path: Path) -> None:
    key = b"ei-project-hmac-key"
    t = ServerThread(tmp_path, TOKEN, hmac_key=key)
    url = t.start()
    port = int(url.rsplit(":", 1)[1])
    try:
        from modelota.fleet.client import AdminClient

        AdminClient(url, TOKEN).register("24:6F:28:AA:01:02")
        frames = window(0).encode() + window(1).encode()
        code, raw = post(port, "24:6F:28:AA:01:02", frames)
        assert code == 201, raw
        files = json.loads(raw.split(b"\r\n\r\n", 1)[1])["files"]
        assert len(files) == 4  # json + csv per window
        out = tmp_path / "windows" / "24:6F:28:AA:01:02"
        for seq, name in enumerate(f for f in sorted(files) if f.endswith(".json")):
            doc = validate_ingestion_file(out / name, key)
            got = [f32(r) for r in doc["payload"]["values"]]  # shortest float32 text in JSON
            assert got == [f32(r) for r in window(seq).values]
            assert doc["payload"]["interval_ms"] == 10.0
            assert doc["payload"]["device_name"] == "24:6F:28:AA:01:02"
        # a damaged frame, garbage, an unknown device, nothing: refused, no file written
        bad = bytearray(window(2).encode())
        bad[-10] ^= 0x20
        for device, body, want in [
            ("24:6F:28:AA:01:02", bytes(bad), 400),
            ("24:6F:28:AA:01:02", window(3).encode() + b"junk", 400),
            ("24:6F:28:AA:01:02", b"", 400),
            ("ghost", window(4).encode(), 404),
            ("..%2Fx", window(5).encode(), 400),
            ("24:6F:28:AA:01:02", window(6).encode() + nan_window().encode(), 400),
        ]:
            code, raw = post(port, device, body)
            assert code == want, raw
        assert sorted(p.name for p in out.iterdir()) == sorted(files)
    finally:
        t.stop()


def test_window_post_is_bounded(tmp_path: Path) -> None:
    with running_server(tmp_path) as s:
        s.admin.register("d")
        code, _ = post(s.port, "d", window(0).encode() * 2000)  # ~1.4 MB
        assert code == 413
        assert not (tmp_path / "windows").exists()
        assert models  # the shared helpers stay importable
