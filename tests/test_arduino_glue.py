"""The Arduino glue's pull loop (src/ModelOTA.cpp) behaves as documented.

The compile test only proves the glue builds for AVR; here the very same
src/ModelOTA.cpp (with the real firmware_lib core it #includes) is compiled
for the host against a minimal Arduino.h (tests/arduino_host/: Stream,
millis, yield) and driven by tests/arduino_host/glue_driver.cpp through
scripted streams and a fake clock. Payloads come from the Python packer.

Checked: a good payload is applied and nothing after it is read; a link that
goes silent at any byte ends as Timeout after timeout_ms with the old weights
back; timeout 0 on a finite stream that ends early gives Truncated without
waiting; a stream whose read() fails cannot spin forever; the timeout is for
silence, not for the whole transfer; a refused payload is read to its end
and dropped (until the stream has been quiet for ModelOTAPull.quiet_ms), so a
sketch calling update() in its loop prints one error per bad payload, and a
payload after a quiet gap is applied; from a file (timeout 0) reading stops at
the refusal; the first frame of `modelota push` is answered with a link
RESULT{BadMagic} frame; progress reports are monotonic and end at the totals. With
ModelOTAPull.store set, the payload is committed to the Store only when it
checked out, and a fresh Store over the same storage (a reboot) loads exactly
the new weights after success and exactly the old ones after any failure.
Given writable ranges (ModelOTA::setWritableRanges), the class refuses a
payload that would change a byte outside them with WrongModel and keeps the
old weights, applies one that repeats those bytes, and refuses every update
when the table is malformed.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from modelota import Payload, pack

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "tests" / "arduino_host"
FP = b"modelota-test-fp"  # the driver's fingerprint
OTHER_FP = bytes(range(16))
SIZE = 1024
CHUNK = 128
TRAILER = b"NEXT"

GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="host g++ is not installed")

Run = Callable[..., dict[str, str]]


def weights(seed: int) -> bytes:
    out = bytearray()
    x = seed
    while len(out) < SIZE:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x >> 16 & 0xFF)
    return bytes(out)


OLD = weights(1)
NEW = weights(2)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("glue") / "glue_driver"
    assert GXX is not None
    cmd = [
        GXX,
        "-std=c++11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O1",
        "-I",
        str(HOST),
        "-I",
        str(ROOT / "src"),
        str(ROOT / "src" / "ModelOTA.cpp"),
        str(ROOT / "src" / "modelota_store.cpp"),
        str(HOST / "glue_driver.cpp"),
        "-o",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return out


@pytest.fixture
def run(driver: Path, tmp_path: Path) -> Run:
    factory = tmp_path / "factory.bin"
    factory.write_bytes(OLD)

    def go(
        payload: bytes,
        mode: str = "full",
        timeout_ms: int = 1000,
        at: int = 0,
        store: bool = False,
        sketch: bool = False,
        table: str = "",
    ) -> dict:
        p = tmp_path / "payload.bin"
        p.write_bytes(payload)
        args = [str(driver), str(factory), str(p), mode, str(timeout_ms), str(at)]
        proc = subprocess.run(
            args
            + (["store"] if store else [])
            + (["sketch"] if sketch else [])
            + ([table] if table else []),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        res: dict = dict(line.split("=", 1) for line in proc.stdout.splitlines())
        res["_lines"] = proc.stdout.splitlines()
        if table != "overlapping-first":
            assert res["restore_factory"] == "Ok"
        assert int(res["boot_crc"], 16) == zlib.crc32(OLD)  # the factory weights, always
        if store:
            assert res["store_format"] == "Ok" and res["init"] == "Ok", res
        return res

    return go


def good(fingerprint: bytes = FP, version: int = 2) -> Payload:
    return pack(NEW, fingerprint=fingerprint, version=version, chunk_size=CHUNK)


def good_payload(fingerprint: bytes = FP, version: int = 2) -> bytes:
    return good(fingerprint, version).encode()


def assert_old_weights(res: dict[str, str]) -> None:
    assert res["version"] == "1", res
    assert res["intact"] == "1", res
    assert int(res["crc"], 16) == zlib.crc32(OLD), res


def cut_points(n: int) -> list[int]:
    """Header field boundaries, chunk boundaries (and a byte into each chunk's
    head and data) and the last byte."""
    p = good()
    h = p.header.length
    points = {0, 1, 3, 4, 5, 6, h // 2, h - 1, h, h + 1, n // 2, n - 5, n - 4, n - 1}
    for start, _end in p.chunk_spans():
        points.update((start, start + 1, start + 4))
    return sorted(q for q in points if 0 <= q < n)


def test_good_payload_is_applied_and_nothing_after_it_is_read(run: Run) -> None:
    p = good_payload()
    res = run(p + TRAILER)
    assert res["status"] == "Ok" and res["error"] == "Ok", res
    assert res["version"] == "2"
    assert int(res["crc"], 16) == zlib.crc32(NEW)
    assert int(res["consumed"]) == len(p), res
    assert int(res["left"]) == len(TRAILER), res
    assert res["progress_monotonic"] == "1"
    assert res["progress_last"] == f"{len(p)},{SIZE},{SIZE}", res


@pytest.mark.parametrize("at", cut_points(len(good_payload())))
def test_silent_link_times_out_and_restores(run: Run, at: int) -> None:
    res = run(good_payload(), "stall", 1000, at)
    assert res["status"] == "Timeout", res
    assert_old_weights(res)
    assert int(res["consumed"]) == at
    silence = int(res["silence_ms"])
    assert 1000 <= silence <= 1002, f"timed out {silence} fake ms after the last byte, not 1000"
    assert int(res["yields"]) > 0, "the wait loop never yielded"


@pytest.mark.parametrize("at", cut_points(len(good_payload())))
def test_finite_stream_ending_early_is_truncated_at_once(run: Run, at: int) -> None:
    res = run(good_payload(), "eof", 0, at)
    assert res["status"] == "Truncated", res
    assert_old_weights(res)
    assert int(res["consumed"]) == at
    assert res["yields"] == "0", "timeout 0 must not wait"


def test_timeout_zero_applies_a_complete_file(run: Run) -> None:
    res = run(good_payload() + TRAILER, "full", 0)
    assert res["status"] == "Ok", res
    assert int(res["crc"], 16) == zlib.crc32(NEW)
    assert int(res["left"]) == len(TRAILER)


def test_failing_reads_cannot_spin_forever(run: Run) -> None:
    p = good_payload()
    res = run(p, "badread", 300, len(p) // 2)
    assert res["status"] == "Timeout", res
    assert_old_weights(res)
    # 300 ms of waits between the failed reads; the fake clock also counts
    # 1 ms per 64 read() calls, one per wait here
    assert 300 <= int(res["silence_ms"]) <= 300 + 3000 // 64 + 2, res


def test_timeout_is_for_silence_not_the_whole_transfer(run: Run) -> None:
    p = good_payload()
    res = run(p, "trickle", 20)  # 5 fake ms between bytes, 20 ms allowed
    assert res["status"] == "Ok", res
    assert int(res["crc"], 16) == zlib.crc32(NEW)
    assert int(res["elapsed_ms"]) > 20 * 10, "the transfer was not slow: the check proves nothing"


def corrupt_chunk(payload: Payload, chunk: int = 3) -> tuple[bytes, int]:
    """The payload with a data byte of `chunk` flipped, and where that chunk ends."""
    p = bytearray(payload.encode())
    _start, end = payload.chunk_spans()[chunk]
    p[end - 4 - 7] ^= 0x10  # a data byte: the chunk's CRC fails
    return bytes(p), end


def test_corrupt_chunk_is_refused_and_the_rest_is_drained(run: Run) -> None:
    p, end = corrupt_chunk(good())
    res = run(p + TRAILER)
    assert res["status"] == "ChunkCrc", res
    assert_old_weights(res)
    assert int(res["bytes_in"]) == end, res  # refused at the bad chunk
    assert int(res["consumed"]) == len(p) + len(TRAILER), res  # the rest dropped
    # it waited for the line to be quiet for 200 ms (ModelOTAPull.quiet_ms)
    assert 200 <= int(res["silence_ms"]) <= 202, res
    assert res["written"] == "", "a refused payload is not answered"


def test_a_file_is_not_drained(run: Run) -> None:
    """timeout 0 (a File): reading stops at the refusal, nothing is waited for."""
    p, end = corrupt_chunk(good())
    res = run(p + TRAILER, "full", 0)
    assert res["status"] == "ChunkCrc", res
    assert_old_weights(res)
    assert int(res["consumed"]) == end, res
    assert res["yields"] == "0", res


@pytest.mark.parametrize(
    ("payload", "status", "refused_at"),
    [
        (lambda: good_payload(fingerprint=OTHER_FP), "WrongModel", good().header.length),
        (lambda: good_payload(version=1), "AlreadyCurrent", good().header.length),
        (lambda: b"JUNK" + good_payload(), "BadMagic", 4),
    ],
    ids=["wrong-model", "same-version", "not-a-payload"],
)
def test_refused_header_stops_applying_and_drains(
    run: Run, payload: Callable[[], bytes], status: str, refused_at: int
) -> None:
    data = payload() + TRAILER
    res = run(data)
    assert res["status"] == status, res
    assert_old_weights(res)
    assert int(res["bytes_in"]) == refused_at, res
    assert int(res["consumed"]) == len(data), res


@pytest.mark.parametrize(
    "bad",
    [
        lambda: corrupt_chunk(good())[0],
        lambda: good_payload(fingerprint=OTHER_FP),
        lambda: bytes(1088),  # not a payload: 272 x 4 bytes, the BadMagic flood of old
    ],
    ids=["chunk-crc", "wrong-model", "zeros"],
)
def test_a_sketch_prints_one_error_per_bad_payload(run: Run, bad: Callable[[], bytes]) -> None:
    """A sketch whose loop() calls ota.update(Serial) whenever bytes are there
    (no drain loop of its own) reports a bad payload once."""
    res = run(bad(), "full", 1000, 0, sketch=True)
    assert res["lines"] == "1", res
    assert_old_weights(res)


def test_a_payload_after_a_quiet_gap_is_applied(run: Run) -> None:
    bad, _ = corrupt_chunk(good())
    fine = good_payload()
    res = run(bad + fine, "pause", 1000, len(bad), sketch=True)  # 1 s of silence between
    lines = [v for k, v in (ln.split("=", 1) for ln in res["_lines"]) if k == "line"]
    assert lines == ["ChunkCrc", "Ok"], res
    assert res["version"] == "2" and int(res["crc"], 16) == zlib.crc32(NEW), res


def test_the_link_protocol_is_answered_with_a_result_frame(run: Run) -> None:
    """`modelota push` starts with a HELLO frame: a raw-payload sketch refuses
    it as BadMagic and says so in a frame push can read (docs/PROTOCOL.md)."""
    from modelota.link.push import HELLO, RESULT, FrameReader, frame

    res = run(frame(HELLO) * 3, "full", 1000, 0, sketch=True)
    assert res["lines"] == "1", res  # one HELLO answered; the retries were drained with it
    frames = FrameReader().feed(bytes.fromhex(res["written"]))
    assert len(frames) == 1, res["written"]
    ftype, body = frames[0]
    assert ftype == RESULT
    st, version, _crc = struct.unpack("<bII", body)
    assert (st, version) == (-1, 1)  # BadMagic, factory version


def assert_reboot_finds(res: dict[str, str], version: int, content: bytes) -> None:
    assert res["store_state"] == "1", f"the store is not CLEAN after the update: {res}"
    assert res["reboot_load"] == "Ok", res
    assert res["reboot_version"] == str(version), res
    assert int(res["reboot_crc"], 16) == zlib.crc32(content), res


def test_store_commits_a_good_payload(run: Run) -> None:
    p = good_payload()
    res = run(p + TRAILER, store=True)
    assert res["status"] == "Ok", res
    assert res["version"] == "2"
    assert int(res["crc"], 16) == zlib.crc32(NEW)
    assert int(res["left"]) == len(TRAILER)
    assert_reboot_finds(res, 2, NEW)


@pytest.mark.parametrize("at", cut_points(len(good_payload()))[::3])
@pytest.mark.parametrize(
    ("mode", "timeout_ms", "status"), [("stall", 500, "Timeout"), ("eof", 0, "Truncated")]
)
def test_store_keeps_the_old_weights_when_the_stream_ends_early(
    run: Run, at: int, mode: str, timeout_ms: int, status: str
) -> None:
    res = run(good_payload(), mode, timeout_ms, at, store=True)
    assert res["status"] == status, res
    assert_old_weights(res)
    assert_reboot_finds(res, 1, OLD)


def test_store_keeps_the_old_weights_on_a_corrupt_payload(run: Run) -> None:
    p = bytearray(good_payload())
    p[-3] ^= 0x01  # the last chunk's CRC
    res = run(bytes(p), store=True)
    assert res["status"] == "ChunkCrc", res
    assert_old_weights(res)
    assert_reboot_finds(res, 1, OLD)


# The driver's kWritable table: bytes [512, 640) (the 5th 128-byte chunk) may
# not change; everything else may.
FIXED = range(512, 640)


def test_writable_ranges_refuse_a_payload_touching_a_fixed_byte(run: Run) -> None:
    """NEW differs from OLD in the fixed bytes: the chunk holding them is
    refused before it is written, and what the 4 chunks before it wrote is
    copied back."""
    assert NEW[FIXED.start : FIXED.stop] != OLD[FIXED.start : FIXED.stop]
    packed = good()
    assert [c.offset for c in packed.chunks][4] == FIXED.start  # the 5th chunk holds them
    p = packed.encode()
    res = run(p + TRAILER, table="writable")
    assert res["set_writable"] == "Ok", res
    assert res["status"] == "WrongModel" and res["error"] == "WrongModel", res
    assert_old_weights(res)
    # refused once the 5th chunk (and its CRC) is in: the rest is drained
    assert int(res["bytes_in"]) == packed.chunk_spans()[4][1], res
    assert int(res["consumed"]) == len(p) + len(TRAILER), res


def test_writable_ranges_accept_a_payload_that_keeps_the_fixed_bytes(run: Run) -> None:
    """The same payload with the fixed bytes as OLD has them (a full payload
    repeats bytes it does not change): applied."""
    new = NEW[: FIXED.start] + OLD[FIXED.start : FIXED.stop] + NEW[FIXED.stop :]
    p = pack(new, fingerprint=FP, version=2, chunk_size=CHUNK).encode()
    res = run(p + TRAILER, table="writable")
    assert res["set_writable"] == "Ok", res
    assert res["status"] == "Ok", res
    assert res["version"] == "2" and int(res["crc"], 16) == zlib.crc32(new), res
    assert int(res["left"]) == len(TRAILER), res


def test_a_malformed_writable_table_refuses_every_update(run: Run) -> None:
    """Overlapping ranges: setWritableRanges says InvalidArgument, and the
    class applies nothing rather than run with a table it cannot trust."""
    new = NEW[: FIXED.start] + OLD[FIXED.start : FIXED.stop] + NEW[FIXED.stop :]
    p = pack(new, fingerprint=FP, version=2, chunk_size=CHUNK).encode()
    res = run(p, table="overlapping")
    assert res["set_writable"] == "InvalidArgument", res
    assert res["status"] == "InvalidArgument", res
    assert_old_weights(res)
    assert int(res["consumed"]) == 0, res


def test_a_refused_table_still_lets_restore_factory_load_the_weights(run: Run) -> None:
    """The same table set before restoreFactory (boot): the factory weights
    are still copied in (the fixture checks their CRC), restoreFactory says
    the setting's InvalidArgument, and updates stay refused."""
    res = run(good_payload(), table="overlapping-first")
    assert res["set_writable"] == "InvalidArgument", res
    assert res["restore_factory"] == "InvalidArgument", res
    assert res["status"] == "InvalidArgument", res
    assert_old_weights(res)
