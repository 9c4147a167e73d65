"""docs/COLLECT.md is the source of truth for the window frame: its tables and
worked example are checked against the host parser and the native encoder."""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from pathlib import Path

import pytest

from modelota import collect
from modelota.collect import Sensor, Window, parse_window
from modelota.sim.native import load

DOC = (Path(__file__).resolve().parent.parent / "docs" / "COLLECT.md").read_text()
HEADER_SRC = (
    Path(__file__).resolve().parent.parent / "firmware_lib" / "modelota" / "samples.h"
).read_text()


def section(title: str) -> str:
    """Text under the heading `title`, up to the next heading of any level."""
    return re.split(r"\n#{2,} ", DOC.split(f"## {title}\n", 1)[1], maxsplit=1)[0]


def doc_table(title: str) -> list[tuple[int, int, str]]:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*`(\w+)`", section(title), flags=re.M)
    return [(int(o), int(s), f) for o, s, f in rows]


def native_frame(window: Window, pushes_before: int = 0, writes_before: int = 0) -> bytes:
    """The frame the C++ logger writes for ``window`` (same sensors, interval
    and values), with seq/first_sample reached by real pushes and writes."""
    n = load()
    ffi, lib = n.ffi, n.lib
    keep = []
    sens = ffi.new(f"modelota_sensor[{window.sensor_count}]")
    for i, s in enumerate(window.sensors):
        a, b = ffi.new("char[]", s.name.encode()), ffi.new("char[]", s.units.encode())
        keep += [a, b]
        sens[i].name, sens[i].units = a, b
    rows = window.sample_count
    ring = ffi.new("float[]", rows * window.sensor_count)
    cfg = ffi.new(
        "modelota_samples_config*",
        {"sensors": sens, "sensor_count": window.sensor_count, "window": rows, "hop": rows,
         "interval_ms": window.interval_ms, "buffer": ring, "buffer_len": len(ring)},
    )  # fmt: skip
    s = ffi.new("modelota_samples*")
    assert lib.modelota_samples_init(s, cfg) == 0
    out = ffi.new("uint8_t[]", lib.modelota_samples_frame_len(s))
    zero = ffi.new("float[]", window.sensor_count)
    for _ in range(writes_before):
        for _ in range(rows):
            lib.modelota_samples_push(s, zero, window.sensor_count)
        assert lib.modelota_samples_encode(s, out, len(out)) == len(out)
    for _ in range(pushes_before):
        lib.modelota_samples_push(s, zero, window.sensor_count)
    for row in window.values:
        lib.modelota_samples_push(s, ffi.new("float[]", list(row)), window.sensor_count)
    got = lib.modelota_samples_encode(s, out, len(out))
    assert got == len(out), got
    return bytes(ffi.buffer(out, got))


def test_head_table_matches_the_parser_and_the_header() -> None:
    rows = doc_table("Head (24 bytes)")
    assert rows[0] == (0, 4, "magic")
    assert rows[0][0] == 0 and all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(rows))
    assert rows[-1][0] + rows[-1][1] == collect.HEAD_LEN == 24
    w = Window((Sensor("ab", "u"),), 2.5, 0x11223344, 0x55667788, ((1.0,),))
    raw = w.encode()
    expected = {
        "magic": b"MOTW",
        "format_version": b"\x01",
        "sensor_count": b"\x01",
        "sample_count": b"\x01\x00",
        "interval_ms": struct.pack("<f", 2.5),
        "seq": struct.pack("<I", 0x11223344),
        "first_sample": struct.pack("<I", 0x55667788),
        "table_len": struct.pack("<H", 1 + 2 + 1 + 1),
        "reserved": b"\x00\x00",
    }
    for offset, size, name in rows:
        assert raw[offset : offset + size] == expected[name], name
    assert parse_window(raw) == w
    magic = bytes(
        int(m, 16)
        for m in re.findall(r"#define MODELOTA_SAMPLES_MAGIC\d (0x[0-9A-F]+)u", HEADER_SRC)
    )
    assert magic == collect.MAGIC


def test_bounds_in_the_doc_match_the_code() -> None:
    head = section("Head (24 bytes)")
    assert "1..16" in head and f"<= {collect.MAX_VALUES}" in head
    table = section("Sensor table (`table_len` bytes)")
    assert f"1..{collect.MAX_NAME}" in table and f"1..{collect.MAX_UNITS}" in table
    for name, value in (("MAX_SENSORS", 16), ("MAX_NAME", 32), ("MAX_UNITS", 16),
                        ("MAX_VALUES", 65536), ("HEAD_LEN", 24)):  # fmt: skip
        assert getattr(load().lib, f"MODELOTA_SAMPLES_{name}") == value
        assert getattr(collect, name) == value


def test_sensor_table_layout() -> None:
    text = section("Sensor table (`table_len` bytes)")
    rows = re.findall(r"^\|\s*([\w+]+)\s*\|\s*(\w+)\s*\|\s*`(\w+)`", text, flags=re.M)
    assert rows == [("0", "1", "name_len"), ("1", "name_len", "name"),
                    ("1+n", "1", "units_len"), ("2+n", "units_len", "units")]  # fmt: skip
    w = Window((Sensor("accX", "m/s2"), Sensor("t", "C")), 1.0, 0, 0, ((1.0, 2.0),))
    raw = w.encode()
    assert raw[24 : 24 + 14] == b"\x04accX\x04m/s2" + b"\x01t\x01C"


def test_worked_example_byte_by_byte() -> None:
    text = section("Worked example")
    w = Window((Sensor("t", "C"),), 10.0, 3, 7, ((1.5,), (-2.0,)))
    lines = dict(re.findall(r"^(\w+)\s*: (.*)$", text.split("```")[1], flags=re.M))

    def hexbytes(s: str) -> bytes:
        out = b""
        for tok in s.split():
            out += tok.strip('"').encode() if tok.startswith('"') else bytes.fromhex(tok)
        return out

    head, table = hexbytes(lines["head"]), hexbytes(lines["table"])
    hcrc = zlib.crc32(head + table)
    values = hexbytes(lines["values"])
    expected = head + table + struct.pack("<I", hcrc) + values
    expected += struct.pack("<I", zlib.crc32(values, hcrc))
    assert f"{len(expected)} bytes in all" in text
    assert w.encode() == expected
    assert parse_window(expected) == w
    # the C++ logger writes the same bytes: seq 3 after three windows, row 6 dropped
    assert native_frame(w, pushes_before=1, writes_before=3) == expected


@pytest.mark.parametrize(
    "name",
    ["BadMagic", "UnsupportedVersion", "BadLength", "HeaderCrc", "Unsupported",
     "BadSensorTable", "BadInterval", "Truncated", "FrameCrc", "TrailingData"],
)  # fmt: skip
def test_every_reason_in_the_doc_is_raised(name: str) -> None:
    """Each reason the doc lists is one the parser raises, for the input the
    doc describes."""
    assert f"`{name}`" in section("What the host checks, in order")
    good = Window((Sensor("t", "C"),), 10.0, 0, 0, ((1.0,), (2.0,))).encode()

    def recrc(b: bytearray) -> bytes:
        hend = 24 + b[20]
        b[hend : hend + 4] = struct.pack("<I", zlib.crc32(bytes(b[:hend])))
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[hend + 4 : -4]), zlib.crc32(bytes(b[:hend]))))
        return bytes(b)

    b = bytearray(good)
    if name == "BadMagic":
        b[3] = ord("A")  # "MOTA": a payload is not a window
    elif name == "UnsupportedVersion":
        b[4] = 2
    elif name == "BadLength":
        b[5] = 17
    elif name == "HeaderCrc":
        b[12] ^= 1
    elif name == "Unsupported":
        b[22] = 1
        b = bytearray(recrc(b))
    elif name == "BadSensorTable":
        b[25] = ord("\n")
        b = bytearray(recrc(b))
    elif name == "BadInterval":
        b[8:12] = struct.pack("<f", float("nan"))
        b = bytearray(recrc(b))
    elif name == "Truncated":
        del b[-1]
    elif name == "FrameCrc":
        b[-6] ^= 0x80
    elif name == "TrailingData":
        b += b"\x00"
    with pytest.raises(collect.FrameError) as e:
        parse_window(bytes(b))
    assert e.value.reason == name


def test_status_codes_named_in_the_doc_are_the_core_ones() -> None:
    from modelota import Status

    for name, value in re.findall(r"`(\w+)` \((-\d+)\)", DOC):
        assert Status[name] == int(value), name


def test_ingestion_example_in_the_doc_is_what_we_write() -> None:
    """The JSON example in the doc (signature aside) is the exact serialization
    ingestion_document + document_bytes produce."""
    example = section("Edge Impulse data acquisition files").split("```json\n")[1].split("\n```")[0]
    w = Window((Sensor("t", "C"),), 10.0, 3, 7, ((1.5,), (-2.0,)))
    doc = collect.ingestion_document(w, "dev-01", "ModelOTA", b"key", iat=1764400000)
    text = collect.document_bytes(doc).decode()
    assert re.sub(r'"signature": "[0-9a-f]{64}"', '"signature": "<64 hex>"', text) == example
