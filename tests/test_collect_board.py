"""Done means: a window logged on an emulated board ends as a valid ingestion
file on the host. examples/SampleLogger is built with arduino-builder for the
Mega 2560 and run in qemu-system-avr; `modelota collect --port
sim://qemu-avr?sketch=SampleLogger` receives its windows over the board's
serial port and writes Edge Impulse files, checked against the documented
format and, value by value, against the sketch's synthetic sensor."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_collect import validate_ingestion_file

from modelota.cli import main
from modelota.sim import emulated as boards

NAME = "collect-test"
URL = f"sim://qemu-avr?sketch=SampleLogger&name={NAME}"


def synthetic(i: int) -> list[float]:
    """The sketch's synthetic() in Python: row i of the three columns."""
    return [((i % 64) - 32) / 8.0, ((i * 7) % 50) * 0.25 - 6.0, 20.0 + (i % 16) * 0.125]


@pytest.fixture(scope="module")
def logger_board() -> Iterator[None]:
    missing = [t for t in ("qemu-system-avr", "arduino-builder", "avr-gcc") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    try:
        fw = boards.build_avr(sketch="SampleLogger")
    except boards.BoardUnavailable as e:
        pytest.skip(str(e))
    ours = [w for w in fw.warnings if "/arduino/hardware/" not in w]
    assert not ours, ours
    yield
    b = boards._sim_boards.pop(f"avr:{NAME}:SampleLogger", None)
    if b is not None:
        b.close()


def test_windows_from_the_emulated_board_become_ingestion_files(
    logger_board: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "field"
    rc = main(["collect", "--port", URL, str(out), "--count", "4", "--timeout", "20", "--quiet",
               "--hmac-key", "ei-hmac", "--device-type", "ARDUINO_MEGA2560"])  # fmt: skip
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "wrote 4 windows (8 files)" in text.out
    docs = sorted(out.glob("*.json"))
    assert len(docs) == 4 and len(list(out.glob("*.csv"))) == 4
    for path in docs:
        doc = validate_ingestion_file(path, b"ei-hmac")
        p = doc["payload"]
        assert p["device_type"] == "ARDUINO_MEGA2560" and p["interval_ms"] == 10.0
        assert p["sensors"] == [
            {"name": "accX", "units": "m/s2"},
            {"name": "accY", "units": "m/s2"},
            {"name": "temp", "units": "C"},
        ]
        first = int(path.name.split(".")[3])  # label.device.seq.first_sample.json
        seq = int(path.name.split(".")[2])
        assert first == 32 * seq  # tumbling windows of 32 rows, none dropped
        assert len(p["values"]) == 32
        for r, row in enumerate(p["values"]):
            want = synthetic(first + r)
            assert [struct.pack("<f", v) for v in row] == [struct.pack("<f", v) for v in want]
    assert json.loads(docs[0].read_text())["protected"]["alg"] == "HS256"
