"""Field data collection (docs/COLLECT.md): windows logged by the C++ sample
logger are parsed by the host, written as Edge Impulse data acquisition files
(+ CSV), and read back value by value; damaged frames are refused; a stream
with garbage, cuts and splits still yields every good window once; the CLI
collects over a real socket and fails with one-line errors."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import itertools
import json
import math
import re
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelota import Status, collect
from modelota.cli import main
from modelota.collect import FrameError, FrameParser, Sensor, Window, parse_window
from modelota.sim.native import load

F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
LABEL = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=32)
PLAIN = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


# ------------------------------------------------------------ the C++ logger


class Logger:
    """The native modelota_samples over a ring it owns."""

    def __init__(self, sensors: list[Sensor], window: int, hop: int, interval_ms: float) -> None:
        n = load()
        self.ffi, self.lib = n.ffi, n.lib
        self.keep: list[Any] = []
        self.width = len(sensors)
        self.sens = self.ffi.new(f"modelota_sensor[{len(sensors)}]")
        for i, s in enumerate(sensors):
            a = self.ffi.new("char[]", s.name.encode())
            b = self.ffi.new("char[]", s.units.encode())
            self.keep += [a, b]
            self.sens[i].name, self.sens[i].units = a, b
        self.ring = self.ffi.new("float[]", max(1, window * len(sensors)))
        self.cfg = self.ffi.new(
            "modelota_samples_config*",
            {"sensors": self.sens, "sensor_count": len(sensors), "window": window, "hop": hop,
             "interval_ms": interval_ms, "buffer": self.ring, "buffer_len": len(self.ring)},
        )  # fmt: skip
        self.s = self.ffi.new("modelota_samples*")
        self.init_status = self.lib.modelota_samples_init(self.s, self.cfg)

    def push(self, row: list[float]) -> int:
        return int(self.lib.modelota_samples_push(self.s, self.ffi.new("float[]", row), len(row)))

    def encode(self, cap: int | None = None) -> bytes | int:
        n = self.lib.modelota_samples_frame_len(self.s)
        cap = n if cap is None else cap
        out = self.ffi.new("uint8_t[]", max(1, cap))
        got = int(self.lib.modelota_samples_encode(self.s, out, cap))
        return bytes(self.ffi.buffer(out, got)) if got >= 0 else got


def f32(x: float) -> bytes:
    return struct.pack("<f", x)


@st.composite
def windows(draw: st.DrawFn, max_rows: int = 40) -> tuple[Window, int, int]:
    """A window, the ring's hop and how many rows were pushed before it."""
    n = draw(st.integers(1, 16))
    sensors = tuple(Sensor(draw(LABEL), draw(LABEL.map(lambda s: s[:16]))) for _ in range(n))
    rows = draw(st.integers(1, max_rows))
    values = tuple(tuple(draw(F32) for _ in range(n)) for _ in range(rows))
    interval = draw(st.floats(min_value=2.0**-20, max_value=2.0**24, width=32))
    hop = draw(st.integers(1, rows))
    pre = draw(st.integers(0, 3 * rows))
    return Window(sensors, interval, 0, pre, values), hop, pre


def device_frame(w: Window, hop: int, pre: int) -> bytes:
    """Pushes `pre` filler rows then the window's rows through the C++ logger
    (so the ring has wrapped) and encodes the ready window."""
    lg = Logger(list(w.sensors), w.sample_count, hop, w.interval_ms)
    assert lg.init_status == Status.Ok
    for i in range(pre):
        lg.push([float(i)] * w.sensor_count)
    ready = 0
    for row in w.values:
        ready = lg.push(list(row))
    assert ready == 1
    frame = lg.encode()
    assert isinstance(frame, bytes)
    return frame


# ------------------------------------------------------------ the documented format


def validate_ingestion_file(path: Path, hmac_key: bytes | None) -> dict[str, Any]:
    """Checks a file against docs/COLLECT.md "Edge Impulse data acquisition
    files", independently of collect.py: keys, types, shapes, signature."""
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert list(doc) == ["protected", "signature", "payload"]
    prot, sig, payload = doc["protected"], doc["signature"], doc["payload"]
    assert prot["ver"] == "v1"
    assert isinstance(prot["iat"], int) and prot["iat"] > 1_600_000_000
    assert isinstance(sig, str) and re.fullmatch(r"[0-9a-f]{64}", sig)
    assert set(payload) <= {"device_name", "device_type", "interval_ms", "sensors", "values"}
    assert {"device_type", "interval_ms", "sensors", "values"} <= set(payload)
    if "device_name" in payload:
        assert isinstance(payload["device_name"], str) and payload["device_name"]
    assert isinstance(payload["device_type"], str) and payload["device_type"]
    iv = payload["interval_ms"]
    assert isinstance(iv, float | int) and not isinstance(iv, bool)
    assert math.isfinite(iv) and iv > 0
    sensors = payload["sensors"]
    assert isinstance(sensors, list) and sensors
    for s in sensors:
        assert set(s) == {"name", "units"}
        assert isinstance(s["name"], str) and isinstance(s["units"], str)
    values = payload["values"]
    assert isinstance(values, list) and values
    for row in values:
        assert isinstance(row, list) and len(row) == len(sensors)
        assert all(isinstance(v, float | int) and not isinstance(v, bool) for v in row)
    if hmac_key is None:
        assert prot["alg"] == "none" and sig == "0" * 64
    else:
        assert prot["alg"] == "HS256"
        marker = b'"signature": "' + sig.encode() + b'"'
        assert raw.count(marker) == 1
        zeroed = raw.replace(marker, b'"signature": "' + b"0" * 64 + b'"')
        assert hmac.compare_digest(hmac.new(hmac_key, zeroed, hashlib.sha256).hexdigest(), sig)
        # and json.dumps of the parsed document reproduces the signed bytes
        doc["signature"] = "0" * 64
        assert json.dumps(doc).encode() == zeroed
    return doc


def check_files(paths: list[Path], w: Window, key: bytes | None, device_type: str) -> None:
    """The JSON and CSV files hold the window, float32 for float32."""
    js = [p for p in paths if p.suffix == ".json"]
    assert len(js) == 1
    doc = validate_ingestion_file(js[0], key)
    payload = doc["payload"]
    assert payload["device_type"] == device_type
    assert [(s["name"], s["units"]) for s in payload["sensors"]] == [
        (s.name, s.units) for s in w.sensors
    ]
    assert f32(payload["interval_ms"]) == f32(w.interval_ms)
    assert len(payload["values"]) == w.sample_count
    for got, want in zip(payload["values"], w.values, strict=True):
        assert [f32(v) for v in got] == [f32(v) for v in want]
    cs = [p for p in paths if p.suffix == ".csv"]
    if cs:
        assert cs[0].stem == js[0].stem
        with open(cs[0], newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["timestamp", *(s.name for s in w.sensors)]
        assert len(rows) == 1 + w.sample_count
        for i, (row, want) in enumerate(zip(rows[1:], w.values, strict=True)):
            assert float(row[0]) == pytest.approx(i * w.interval_ms, rel=1e-12)
            assert [f32(float(v)) for v in row[1:]] == [f32(v) for v in want]


# ------------------------------------------------------------ round trip


@settings(max_examples=60, **PLAIN)
@given(data=windows(), signed=st.booleans(), with_csv=st.booleans())
def test_round_trip_device_to_files(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[Window, int, int], signed: bool,
    with_csv: bool,
) -> None:  # fmt: skip
    w, hop, pre = data
    frame = device_frame(w, hop, pre)
    assert frame == w.encode()  # the C++ encoder and the documented layout agree
    got = parse_window(frame)
    assert got.sensors == w.sensors and got.first_sample == pre and got.seq == 0
    assert [[f32(v) for v in r] for r in got.values] == [[f32(v) for v in r] for r in w.values]
    key = b"ei-hmac-" + bytes([pre % 256]).hex().encode() if signed else None
    out = tmp_path_factory.mktemp("rt")
    paths = collect.write_window(out, got, "dev:01", "MEGA2560", key, with_csv)
    assert len(paths) == (2 if with_csv else 1)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", p.name) for p in paths)
    check_files(paths, w, key, "MEGA2560")


def test_sliding_and_tumbling_windows_on_the_device() -> None:
    """hop < window: windows overlap by window - hop rows; rows pushed while a
    window waits slide it and are counted as dropped when never sent."""
    lg = Logger([Sensor("x", "u")], 4, 2, 1.0)
    ready = [lg.push([float(i)]) for i in range(4)]
    assert ready == [0, 0, 0, 1]
    w0 = parse_window(lg.encode())  # type: ignore[arg-type]
    assert [r[0] for r in w0.values] == [0, 1, 2, 3] and w0.seq == 0 and w0.first_sample == 0
    assert lg.encode() == Status.BadState  # written: not ready until hop more rows
    assert [lg.push([float(i)]) for i in (4, 5)] == [0, 1]
    w1 = parse_window(lg.encode())  # type: ignore[arg-type]
    assert [r[0] for r in w1.values] == [2, 3, 4, 5] and (w1.seq, w1.first_sample) == (1, 2)
    for i in range(6, 12):  # nobody writes: the ring keeps the newest 4
        lg.push([float(i)])
    w2 = parse_window(lg.encode())  # type: ignore[arg-type]
    assert [r[0] for r in w2.values] == [8, 9, 10, 11] and w2.first_sample == 8
    assert lg.lib.modelota_samples_dropped(lg.s) == 2  # rows 6 and 7 were never sent
    assert lg.lib.modelota_samples_seq(lg.s) == 3


def test_logger_refuses_bad_configuration_and_rows() -> None:
    ok = [Sensor("a", "u")]
    assert Logger(ok, 4, 0, 1.0).init_status == Status.Ok  # hop 0: tumbling
    for sensors, window, hop, interval in [
        ([], 4, 4, 1.0),
        (ok * 17, 1, 1, 1.0),
        (ok, 0, 0, 1.0),
        (ok, 4, 5, 1.0),
        (ok, 4, 4, 0.0),
        (ok, 4, 4, -1.0),
        (ok, 4, 4, math.inf),
        (ok, 4, 4, math.nan),
        ([Sensor("a" * 33, "u")], 4, 4, 1.0),
        ([Sensor("a", "u" * 17)], 4, 4, 1.0),
        ([Sensor("tab\t", "u")], 4, 4, 1.0),
        ([Sensor("a", "")], 4, 4, 1.0),
        (ok * 2, 32769, 1, 1.0),  # 65538 values
    ]:
        if len(sensors) == 0:
            lg = Logger(ok, window, hop, interval)
            lg.cfg.sensor_count = 0
            assert lg.lib.modelota_samples_init(lg.s, lg.cfg) == Status.InvalidArgument
            continue
        assert Logger(sensors, window, hop, interval).init_status == Status.InvalidArgument, (
            sensors[:1], window, hop, interval,
        )  # fmt: skip
    lg = Logger(ok, 4, 4, 1.0)
    lg.cfg.buffer_len = 3  # ring too small
    assert lg.lib.modelota_samples_init(lg.s, lg.cfg) == Status.InvalidArgument
    lg = Logger([Sensor("a", "u"), Sensor("b", "v")], 2, 2, 1.0)
    assert lg.push([1.0]) == Status.InvalidArgument  # wrong width
    lg.push([1.0, 2.0])
    lg.push([3.0, 4.0])
    assert lg.encode(cap=lg.lib.modelota_samples_frame_len(lg.s) - 1) == Status.TooLarge
    assert isinstance(lg.encode(), bytes)  # still ready after the short buffer


# ------------------------------------------------------------ damaged frames


def sample_frames() -> list[bytes]:
    return [
        Window((Sensor("t", "C"),), 10.0, 3, 7, ((1.5,), (-2.0,))).encode(),
        Window(
            (Sensor("accX", "m/s2"), Sensor("accY", "m/s2")),
            0.0625,
            1,
            99,
            ((0.1, -0.2), (3.0, 4.5), (1e-30, -7e20)),
        ).encode(),
    ]


@pytest.mark.parametrize("frame", sample_frames(), ids=["1x2", "2x3"])
def test_every_bit_flip_and_truncation_is_refused(frame: bytes) -> None:
    for i in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(FrameError):
            parse_window(bytes(bad))
        p = FrameParser()
        assert p.feed(bytes(bad)) + p.close() == [], f"bit {i} flipped was accepted"
        assert p.rejected >= 1 or bytes(bad[:4]) != collect.MAGIC
    for n in range(len(frame)):
        with pytest.raises(FrameError):
            parse_window(frame[:n])
    with pytest.raises(FrameError, match="TrailingData"):
        parse_window(frame + b"\x00")


@settings(max_examples=80, **PLAIN)
@given(
    data=windows(max_rows=8),
    before=st.binary(max_size=64),
    after=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
    fake_magic=st.booleans(),
)
def test_split_frame_in_garbage_is_parsed_once(
    data: tuple[Window, int, int], before: bytes, after: bytes, cuts: list[int], fake_magic: bool
) -> None:
    w, hop, pre = data
    frame = device_frame(w, hop, pre)
    if fake_magic:  # a magic in the garbage, with a plausible head
        before = before + collect.MAGIC + b"\x01\x01\x04\x00" + bytes(16)
    stream = before + frame + after
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    p = FrameParser()
    got = []
    for a, b in itertools.pairwise(bounds):
        got += p.feed(stream[a:b])
    got += p.close()
    assert got == [parse_window(frame)]
    assert p.windows == 1


def test_cut_frame_then_good_frames_resync() -> None:
    a, b = sample_frames()
    stream = b"SampleLogger ready\r\n" + a[:30] + b + a + b[:-1] + b"\x00" + a
    p = FrameParser()
    got = []
    for i in range(0, len(stream), 7):
        got += p.feed(stream[i : i + 7])
    got += p.close()
    assert [w.first_sample for w in got] == [99, 7, 7]
    assert p.rejected >= 2 and p.reasons["FrameCrc"] >= 1


def test_iter_windows_reads_a_body_of_frames_strictly() -> None:
    a, b = sample_frames()
    assert [w.seq for w in collect.iter_windows(a + b + a)] == [3, 1, 3]
    assert collect.iter_windows(b"") == []
    with pytest.raises(FrameError, match=f"FrameCrc: frame 1 at byte {len(a)}"):
        collect.iter_windows(a + b[:-1] + b"\x00")
    with pytest.raises(FrameError, match="BadMagic: frame 2"):
        collect.iter_windows(a + b + b"junk")
    with pytest.raises(FrameError, match="Truncated"):
        collect.iter_windows(a + b[:40])
    assert isinstance(FrameError("X", "y"), ValueError)


# ------------------------------------------------------------ files


def test_files_are_never_overwritten_and_names_are_safe(tmp_path: Path) -> None:
    w = parse_window(sample_frames()[0])
    first = collect.write_window(tmp_path, w, "../../etc/pass wd", "T", None)
    before = [p.read_bytes() for p in first]
    second = collect.write_window(tmp_path, w, "../../etc/pass wd", "T", None)
    assert {p.name for p in first}.isdisjoint({p.name for p in second})
    assert [p.read_bytes() for p in first] == before
    for p in first + second:
        assert p.parent == tmp_path and re.fullmatch(r"[A-Za-z0-9_.-]+", p.name), p.name
    assert first[0].name == "field.etc_pass_wd.000003.0000000007.json"
    assert second[0].name == "field.etc_pass_wd.000003.0000000007.1.json"
    # a CSV that exists alone still moves both names on
    (tmp_path / "field.T.000003.0000000007.csv").write_text("x")
    third = collect.write_window(tmp_path, w, "", "T", None)
    assert third[0].name == "field.T.000003.0000000007.1.json"
    assert (tmp_path / "field.T.000003.0000000007.csv").read_text() == "x"


def test_signature_is_hmac_sha256_over_the_zeroed_document(tmp_path: Path) -> None:
    w = parse_window(sample_frames()[1])
    doc = collect.ingestion_document(w, "dev", "T", b"secret", iat=1_764_400_000)
    zero = dict(doc, signature="0" * 64)
    want = hmac.new(b"secret", json.dumps(zero).encode(), hashlib.sha256).hexdigest()
    assert doc["signature"] == want
    other = collect.ingestion_document(w, "dev", "T", b"other", iat=1_764_400_000)
    assert other["signature"] != want
    assert doc["payload"]["values"][0] == [0.1, -0.2]  # shortest float32 decimals
    p = collect.write_window(tmp_path, w, "dev", "T", b"secret", csv=False)[0]
    validate_ingestion_file(p, b"secret")
    tampered = tmp_path / "t.json"
    tampered.write_bytes(p.read_bytes().replace(b"0.1,", b"0.2,", 1))
    with pytest.raises(AssertionError):
        validate_ingestion_file(tampered, b"secret")


def test_non_finite_values_are_not_written(tmp_path: Path) -> None:
    w = Window((Sensor("t", "C"),), 1.0, 0, 0, ((float("nan"),),))
    w2 = parse_window(w.encode())  # a valid frame...
    with pytest.raises(collect.WindowError, match="NaN"):
        collect.write_window(tmp_path, w2, "", "T", None)  # ...that JSON cannot carry
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ CLI over a socket


@contextlib.contextmanager
def serve(data: bytes, chunk: int = 97) -> Iterator[str]:
    """A TCP endpoint that sends `data` to the first client, in pieces, after
    a pause (pyserial's socket:// discards what is waiting when it opens)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            with conn:
                threading.Event().wait(0.3)
                for i in range(0, len(data), chunk):
                    conn.sendall(data[i : i + chunk])
                threading.Event().wait(3.0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield f"socket://127.0.0.1:{port}"
    finally:
        srv.close()


def device_stream(n: int) -> tuple[bytes, list[Window]]:
    """n windows of a 3-axis logger, text before, one frame damaged."""
    lg = Logger([Sensor("accX", "m/s2"), Sensor("accY", "m/s2"), Sensor("t", "C")], 8, 8, 10.0)
    out = b"SampleLogger: 3 sensors, 8 rows, 10 ms\r\n"
    wins = []
    for k in range(n + 1):
        for i in range(8):
            lg.push([k + i / 8, -k - i / 4, 20.0 + i])
        frame = lg.encode()
        assert isinstance(frame, bytes)
        if k == 1:  # damaged in transit: never written
            frame = frame[:50] + bytes([frame[50] ^ 4]) + frame[51:]
        else:
            wins.append(parse_window(frame))
        out += frame
    return out, wins


def test_cli_collects_over_a_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, wins = device_stream(4)
    with serve(data) as url:
        argv = ["collect", "--port", url, str(tmp_path / "out"), "--count", "4", "--quiet"]
        rc = main(
            [*argv, "--hmac-key", "k3y", "--device-name", "ac:87:a3", "--device-type", "MEGA"]
        )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "wrote 4 windows (8 files)" in out.out and "rejected 1 damaged frames" in out.out
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 8
    for w in wins:
        paths = sorted((tmp_path / "out").glob(f"field.ac_87_a3.{w.seq:06d}.*"))
        check_files(paths, w, b"k3y", "MEGA")
        doc = json.loads(next(p for p in paths if p.suffix == ".json").read_text())
        assert doc["payload"]["device_name"] == "ac:87:a3"


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def err(argv: list[str]) -> str:
        assert main(argv) == 1
        e = capsys.readouterr().err
        assert e.startswith("modelota: error: ") and e.count("\n") == 1, e
        return e

    out = str(tmp_path / "o")
    assert "cannot open" in err(["collect", "--port", "socket://127.0.0.1:1", out, "--quiet"])
    assert "--count" in err(["collect", "--port", "loop://", out, "--count", "0"])
    assert "--hmac-key is empty" in err(["collect", "--port", "loop://", out, "--hmac-key", ""])
    (tmp_path / "file").write_text("x")
    assert "not a directory" in err(["collect", "--port", "loop://", str(tmp_path / "file")])
    e = err(["collect", "--port", "loop://", out, "--timeout", "0.3", "--quiet"])
    assert "no window received from loop:// in 0.3 s" in e
    data, _ = device_stream(2)
    with serve(data) as url:
        e = err(["collect", "--port", url, out, "--count", "5", "--timeout", "0.5", "--quiet"])
    assert "received only 2 of 5 windows" in e
    assert len(list((tmp_path / "o").glob("*.json"))) == 2  # what did arrive is kept


def test_frame_crc_binds_values_to_their_head() -> None:
    """A head from one window spliced onto another window's values of the same
    size fails: the frame CRC continues from the header CRC."""
    a = Window((Sensor("t", "C"),), 10.0, 0, 0, ((1.0,), (2.0,))).encode()
    b = Window((Sensor("t", "C"),), 10.0, 1, 2, ((3.0,), (4.0,))).encode()
    hend = 24 + a[20] + 4
    with pytest.raises(FrameError, match="FrameCrc"):
        parse_window(a[:hend] + b[hend:])
    assert zlib.crc32(a[:hend]) == 0x2144DF1C  # why header_crc is skipped


@settings(max_examples=60, **PLAIN)
@given(
    width=st.integers(1, 4),
    window=st.integers(1, 6),
    hop_frac=st.integers(0, 6),
    ops=st.lists(st.sampled_from(["push", "push", "push", "write"]), max_size=60),
)
def test_logger_against_a_reference_model(
    width: int, window: int, hop_frac: int, ops: list[str]
) -> None:
    """Random pushes and writes: the C++ ring, readiness, seq, first_sample and
    dropped rows equal a list-based model of the documented semantics."""
    hop = min(hop_frac, window)  # 0 means tumbling
    eff_hop = hop or window
    lg = Logger([Sensor(f"s{i}", "u") for i in range(width)], window, hop, 0.5)
    assert lg.init_status == Status.Ok
    rows: list[list[float]] = []
    sent_end = seq = dropped = 0
    since = 0
    for op in ops:
        ready = len(rows) >= window and since >= eff_hop
        if op == "push":
            row = [float(len(rows) * 10 + k) for k in range(width)]
            if len(rows) >= window and len(rows) - window >= sent_end:
                dropped += 1  # the oldest row leaves the ring unsent
            rows.append(row)
            since += 1
            ready = len(rows) >= window and since >= eff_hop
            assert lg.push(row) == int(ready)
        else:
            got = lg.encode()
            if not ready:
                assert got == Status.BadState
                continue
            assert isinstance(got, bytes)
            w = parse_window(got)
            first = len(rows) - window
            assert (w.seq, w.first_sample) == (seq, first)
            assert [list(r) for r in w.values] == rows[first:]
            sent_end, seq, since = len(rows), seq + 1, 0
        assert lg.lib.modelota_samples_ready(lg.s) == int(len(rows) >= window and since >= eff_hop)
        assert lg.lib.modelota_samples_dropped(lg.s) == dropped
        assert lg.lib.modelota_samples_seq(lg.s) == seq
        assert lg.lib.modelota_samples_total(lg.s) == len(rows)
