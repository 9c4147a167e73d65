"""Emulated boards built from the real sources (host_tools/modelota/sim/emulated.py).

The Cortex-M4 firmware (sim/boards/m4, QEMU mps2-an386) and the Arduino
sketch examples/SerialUpdate (Mega 2560, qemu-system-avr) are compiled from
firmware_lib and src as they are, booted in QEMU and driven over their UART
through a TCP socket: HELLO answers with version, weights CRC and the probe
inference; a payload sent with the link protocol replaces the weights.

Skipped only when a compiler, arduino-builder or QEMU is not installed.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import serial

from modelota.format.payload import Chunk2, Payload, Prediction, final_weights, pack
from modelota.link.push import push
from modelota.sim import emulated as boards

if TYPE_CHECKING:
    import numpy as np

Step = tuple[bytes, "bytes | None", tuple[str, ...], list[Prediction], int]

KINDS = ("m4", "avr")


def new_weights() -> bytes:
    return bytes((b * 5 + i) & 0xFF for i, b in enumerate(boards.FACTORY_WEIGHTS))


def _build(kind: str) -> boards.Firmware:
    try:
        return boards.build(kind)  # type: ignore[arg-type]
    except boards.BoardUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(params=KINDS)
def board(request: pytest.FixtureRequest) -> Iterator[boards.Board]:
    _build(request.param)
    try:
        b = boards.start_board(request.param)
    except boards.BoardUnavailable as e:
        pytest.skip(str(e))
    with b:
        yield b


@pytest.mark.parametrize("kind", KINDS)
def test_firmware_builds_warning_free(kind: str) -> None:
    fw = _build(kind)
    assert fw.elf.is_file()
    ours = [w for w in fw.warnings if not w.startswith("/usr/share/arduino/")]
    assert ours == []


def test_boots_and_reports_factory_model(board: boards.Board) -> None:
    with serial.serial_for_url(board.url, timeout=1) as ser:
        info = _hello(ser)
    assert info.fingerprint == boards.FINGERPRINT
    assert info.version == boards.MODEL_VERSION
    assert info.size == boards.MODEL_SIZE
    assert info.weights_crc == zlib.crc32(boards.FACTORY_WEIGHTS)
    assert info.probe == boards.probe(boards.FACTORY_WEIGHTS)


def _exchange(ser: serial.Serial, out: bytes, want: int, done: Callable[[bytes], bool]) -> bytes:
    """Sends ``out`` and returns the body of the first ``want`` frame that
    ``done`` accepts, sending ``out`` again after 2 s of silence or a NAK,
    as a host does (a board under a loaded emulator may drop a frame cut by
    a pause: the link forgets a frame that stops for MODELOTA_LINK_GAP_MS).
    Earlier answers (a duplicate's ACK) are passed over."""
    for _ in range(8):
        ser.write(out)
        while True:
            try:
                got, body = boards.read_frame(ser, timeout=2)
            except TimeoutError:
                break
            if got == want and done(body):
                return body
            if got == 0x83:  # NAK: send again now
                break
    raise AssertionError(f"no 0x{want:02x} frame after 8 tries of {out[:8].hex()}...")


def _push_minimal(ser: serial.Serial, payload: bytes, info: boards.Info) -> tuple[int, int, int]:
    """START, DATA one frame at a time (each waits for its ACK), COMMIT;
    returns RESULT's (status, version, crc). Independent of modelota.link.push."""

    def acked(end: int) -> Callable[[bytes], bool]:
        return lambda body: struct.unpack("<I", body[:4])[0] >= end

    _exchange(ser, boards.frame(0x02, struct.pack("<II", len(payload), 0x1234)), 0x82, acked(0))
    for off in range(0, len(payload), info.max_data):
        end = min(len(payload), off + info.max_data)
        data = boards.frame(0x03, struct.pack("<I", off) + payload[off:end])
        body = _exchange(ser, data, 0x82, acked(end))
        assert struct.unpack("<I", body[:4])[0] == end
    body = _exchange(ser, boards.frame(0x04), 0x84, lambda _: True)
    st, version, crc = struct.unpack("<bII", body[:9])
    return st, version, crc


def _hello(ser: serial.Serial) -> boards.Info:
    body = _exchange(ser, boards.frame(boards.HELLO), boards.INFO, lambda _: True)
    return boards.Info(*struct.unpack(boards.INFO_FMT, body[: struct.calcsize(boards.INFO_FMT)]))


def test_update_over_the_link(board: boards.Board) -> None:
    new = new_weights()
    chunk = boards.CHUNK_SIZE[board.kind]
    payload = pack(new, fingerprint=boards.FINGERPRINT, version=2, chunk_size=chunk).encode()
    with serial.serial_for_url(board.url, timeout=1) as ser:
        before = _hello(ser)
        st, version, crc = _push_minimal(ser, payload, before)
        after = _hello(ser)
    assert (st, version, crc) == (0, 2, zlib.crc32(new))
    assert after.version == 2
    assert after.weights_crc == zlib.crc32(new)
    assert after.probe == boards.probe(new) != before.probe


def test_push_tool_updates_board(board: boards.Board) -> None:
    new = new_weights()
    chunk = boards.CHUNK_SIZE[board.kind]
    payload = pack(new, fingerprint=boards.FINGERPRINT, version=3, chunk_size=chunk).encode()
    push(board.url, payload)
    with serial.serial_for_url(board.url, timeout=1) as ser:
        info = _hello(ser)
    assert info.version == 3
    assert info.weights_crc == zlib.crc32(new)
    assert info.probe == boards.probe(new) != boards.probe(boards.FACTORY_WEIGHTS)


def test_range_coded_payloads_decode_on_the_board(board: boards.Board) -> None:
    """The device's own range decoder (on the Mega: the AVR asm loop of
    decode.cpp) on peaked int8 weights (RC), a small fine-tune of them
    (RC+DIFF against the base), float32 weights (RC+LANES) and a zeroed
    tensor (RUNS); then the device's own fdiv and KEEP on scale vectors
    (:func:`_scaled_steps`): each applied exactly, read back through HELLO."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = boards.MODEL_SIZE
    int8 = np.clip(np.round(rng.normal(0, 14, n)), -127, 127).astype(np.int8).tobytes()
    step = rng.choice(np.array([-1, 0, 0, 0, 1], np.int8), n)
    tuned = (np.frombuffer(int8, np.int8) + step).astype(np.int8).tobytes()
    floats = rng.normal(0, 0.05, n // 4).astype("<f4").tobytes()
    zeros = bytes(n - 3) + b"\x01\x02\x03"  # a pruned tensor
    chunk = boards.CHUNK_SIZE[board.kind]
    steps: list[Step] = [
        # (new weights, base, what the packer's choice must include, predictions, chunk)
        (int8, None, ("rc",), [], chunk), (tuned, int8, ("rc", "diff"), [], chunk),
        (floats, None, ("rc", "lanes"), [], chunk), (zeros, None, ("runs",), [], chunk),
        *_scaled_steps(rng, tuned),
    ]  # fmt: skip
    old = boards.FACTORY_WEIGHTS
    for version, (new, base, enc, preds, size) in enumerate(steps, start=2):
        p = pack(new, fingerprint=boards.FINGERPRINT, version=version, chunk_size=size,
                 base=base, base_version=None if base is None else version - 1,
                 predictions=preds)  # fmt: skip
        chosen = p.encoding_stats()
        assert any(all(part in name for part in enc) for name in chosen), (enc, chosen)
        if preds:
            _check_kept_and_predicted(p, new)
        assert final_weights(p, old) == new  # the Python reference
        push(board.url, p.encode())
        with serial.serial_for_url(board.url, timeout=1) as ser:
            info = _hello(ser)
        assert (info.version, info.weights_crc) == (version, zlib.crc32(new)), enc
        assert info.probe == boards.probe(new)
        old = new


# (source, target, values) of two scale vectors in the 512-byte model: the
# first one's target 292 bytes after its source (KEEP with 128-byte chunks),
# the second one's 40 (in one chunk)
SCALES = ((8, 300, 12), (360, 400, 8))


def _scaled_steps(rng: np.random.Generator, base: bytes) -> list[Step]:
    """Two payloads with KEEP and PRED in 128-byte chunks: a full one over
    ``base`` with int8 TFLite-like scales written in (bias scales, then the
    weight scales they imply, ``w = b / x`` up to rounding), then a delta
    that moves the scales and nudges the weights (DIFF + PRED)."""
    import numpy as np

    out: list[Step] = []
    for x, prev in ((0.1, None), (0.0235, base)):
        new = bytearray(base)
        if prev is not None:
            new = bytearray((np.frombuffer(out[-1][0], np.uint8) + 1).astype(np.uint8).tobytes())
        preds: list[Prediction] = []
        xs = np.float32(x)
        for src, tgt, count in SCALES:
            w = rng.uniform(1e-3, 2e-2, count).astype("<f4")
            new[src : src + 4 * count] = (w * xs).astype("<f4").tobytes()
            new[tgt : tgt + 4 * count] = w.tobytes()
            preds.append((tgt, count, src, int(np.array([xs], "<f4").view("<u4")[0])))
        encs = ("keep",) if prev is None else ("diff", "pred")
        base_of = None if prev is None else out[-1][0]
        out.append((bytes(new), base_of, encs, preds, 128))
    return out


def _check_kept_and_predicted(p: Payload, new: bytes) -> None:
    """``p`` predicts one vector from a kept source and one inside its chunk,
    and the residual is partly zero (fdiv's exact quotients) and partly not."""
    from modelota.format.codec import predict

    preds = [c for c in p.chunks if isinstance(c, Chunk2) and c.pred is not None]
    assert any(c.keep is not None for c in p.chunks if isinstance(c, Chunk2))
    assert {c.pred.back > c.pred.start for c in preds if c.pred is not None} == {True, False}
    exact = []
    for c in preds:
        q = c.pred
        assert q is not None
        t = c.offset + q.start
        guess = predict(new[t - q.back : t - q.back + 4 * q.count], q.divisor)
        exact += [guess[k : k + 4] == new[t + k : t + k + 4] for k in range(0, 4 * q.count, 4)]
    assert any(exact) and not all(exact), exact


@pytest.mark.parametrize("kind", KINDS)
def test_sim_url_boots_the_board(kind: str) -> None:
    _build(kind)
    new = new_weights()
    payload = pack(
        new, fingerprint=boards.FINGERPRINT, version=4, chunk_size=boards.CHUNK_SIZE[kind]
    ).encode()
    url = f"sim://qemu-{kind}?name=test-{kind}"
    try:
        push(url, payload)  # boots the board, then reconnects to the same one
        with serial.serial_for_url(url, timeout=1) as ser:
            info = _hello(ser)
        b = boards.sim_board(kind, f"test-{kind}")  # type: ignore[arg-type]
        assert b is not None
        proc = b.proc
    except boards.BoardUnavailable as e:
        pytest.skip(str(e))
    finally:
        boards.stop_sim_boards()
    assert (info.version, info.weights_crc) == (4, zlib.crc32(new))
    assert proc.poll() is not None


def test_model_header_matches_host_model() -> None:
    """sim/boards/board_model.h is what boards.model_header makes of the host's model."""
    text = (boards.BOARDS / "board_model.h").read_text()
    assert text == boards.model_header(boards.FACTORY_WEIGHTS, boards.FINGERPRINT, 1)


def test_hil_suite_passes_on_the_native_board() -> None:
    """tests/hil runs on both QEMU boards by default (it is part of this run);
    this runs it once more with ``--port native``, the cffi-built board."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += [str(root / "tests" / "hil"), "--port", "native"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
