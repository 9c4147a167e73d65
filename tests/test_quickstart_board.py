"""The quickstart sketches restore the right weights on a real AVR build.

examples/Quickstart (the ModelOTA class) and examples/CApi (the core's C
API, model_update.c) are compiled with arduino-builder for the Mega 2560 and
run in qemu-system-avr. Both keep their factory weights in flash the way
their comments tell a user to (MODELOTA_FLASH: PROGMEM on AVR) and read them
back through modelota_backup_flash. Over the board's serial port, as
`cat v2.mota > /dev/ttyACM0` would, the test sends:

1. v2 with a corrupted chunk: refused (ChunkCrc), the touched bytes are
   copied back from flash: the weights' CRC32 is v1's;
2. v2: applied, CRC32 is v2's;
3. v3 with a corrupted chunk while v2 runs: the backup holds v1, so the whole
   region is reloaded from flash: CRC32 is v1's (the case where a RAM read of
   a PROGMEM array printed 240D0423 instead of v1's AD6DD57C);
4. v2 again: applied. Its "update: Ok" being the very next line proves each
   refused payload gave exactly one status line (no BadMagic flood).

The v1 bytes and the fingerprint are read from the sketch sources; the
fingerprint must be what `modelota fingerprint --model NAME --size 256`
prints, as the sketch says. Then `modelota push` is pointed at each sketch:
they read raw payloads, so push must stop with the one-line hint saying so
(the class answers push's HELLO with a RESULT{BadMagic} frame; the C sketch
prints the status name). examples/TfliteModel (a .tflite model, its
writable-range table in flash, given to the class with setWritableRanges)
refuses a payload that changes the model's RESHAPE shape with WrongModel and
applies one that changes only learned bytes. Skipped when arduino-builder,
avr-gcc or qemu-system-avr is not installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import socket
import struct
import subprocess
import termios
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelota import pack
from modelota.cli import main
from modelota.format.payload import Payload
from modelota.link.push import push
from modelota.sim import emulated as boards
from modelota.status import CliError

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 64


@dataclass(frozen=True)
class Sketch:
    name: str
    model: str  # the --model name its fingerprint comes from
    source: str  # file holding the arrays
    weights_array: str
    fingerprint_array: str


SKETCHES = {
    "Quickstart": Sketch(
        "Quickstart", "quickstart", "Quickstart.ino", "kFactoryWeights", "kFingerprint"
    ),
    "CApi": Sketch("CApi", "capi", "model_data.h", "factory_weights", "model_fingerprint"),
}


def c_array(text: str, name: str) -> bytes:
    m = re.search(rf"\b{name}\[\d*\][^=;]*=\s*\{{(.*?)\}};", text, re.S)
    assert m, f"no array {name} in the sketch"
    return bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", m[1]))


def model_of(sk: Sketch) -> tuple[bytes, bytes]:
    text = (ROOT / "examples" / sk.name / sk.source).read_text()
    return c_array(text, sk.weights_array), c_array(text, sk.fingerprint_array)


def cli_fingerprint(model: str, size: int, capsys: pytest.CaptureFixture[str]) -> bytes:
    assert main(["fingerprint", "--model", model, "--size", str(size)]) == 0
    return bytes.fromhex(capsys.readouterr().out.split()[0])


def corrupt(payload: Payload, chunk: int = 1) -> bytes:
    """A byte in the middle of `chunk` on the wire flipped (its data, in any
    wire format): its CRC32 no longer matches."""
    start, end = payload.chunk_spans()[chunk]
    p = bytearray(payload.encode())
    p[(start + end) // 2] ^= 0x40
    return bytes(p)


# The drain's silence (ModelOTAPull::quiet_ms, CApi's copy of it): counted in
# busy-waits, which qemu-system-avr runs about 5x faster than real time, so
# 200 ms would be 40 ms of the test's time; 2 s of emulated silence leaves a
# loaded machine room to pause the sender without splitting a payload.
#
# Nor does qemu-system-avr pace its USART at a baud rate: Uart.send hands
# over each byte as soon as QEMU takes the previous one, so on a loaded
# machine, where the emulated CPU gets less time than the sender, the line
# can run faster than any real one relative to the sketch (a real Mega
# decodes faster than 115200 baud delivers: docs/FORMAT.md, "Device RAM and
# code"), and the core's 64-byte receive ring dropped bytes (ChunkCrc on a
# good payload, about 1 run in 4 under load). A 2 KiB ring (the whole payload of
# these sketches) stands in for the line's pacing.
DEFINES = ("MODELOTA_PULL_QUIET_MS=2000u", "SERIAL_RX_BUFFER_SIZE=2048")


# qemu-system-avr 7.2 loses an RX interrupt raised while interrupts are off
# (the Arduino core's Serial.write() wraps each byte in cli ... SREG=old):
# when SREG turns them back on, QEMU does not look again while it runs its
# chain of translated blocks, and a sketch waiting for input never leaves
# it, so the byte sits in the USART for good. The AVR takes it at once.
# Stopping and continuing the VM (monitor "stop", "cont") makes QEMU look:
# Uart.send does that when a byte is not taken (see Uart.kick).


@dataclass
class Board:
    proc: subprocess.Popen[bytes]
    uart: Path  # QEMU's serial port: a UNIX socket (see Uart)
    monitor: Path  # QEMU's human monitor


def firmware(sk: Sketch) -> boards.Firmware:
    missing = [t for t in ("qemu-system-avr", "arduino-builder", "avr-gcc") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    try:
        fw = boards.build_avr(sketch=sk.name, defines=DEFINES)
    except boards.BoardUnavailable as e:
        pytest.skip(str(e))
    ours = [w for w in fw.warnings if "/arduino/hardware/" not in w]
    assert not ours, ours
    return fw


def start_qemu(elf: Path, tmp_path: Path) -> Board:
    """qemu-system-avr running `elf`, its UART on a UNIX socket."""
    path = tmp_path / "uart"
    cmd = boards.qemu_command("avr", elf, 0)
    cmd[cmd.index("-serial") + 1] = f"unix:{path},server=on,wait=on"
    cmd[cmd.index("-monitor") + 1] = f"unix:{tmp_path / 'monitor'},server=on,wait=off"
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return Board(proc, path, tmp_path / "monitor")


@pytest.fixture(params=sorted(SKETCHES))
def sketch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Sketch, Board]]:
    """The sketch in qemu-system-avr, its UART on a UNIX socket."""
    sk = SKETCHES[request.param]
    board = start_qemu(firmware(sk).elf, tmp_path)
    try:
        yield sk, board
    finally:
        board.proc.kill()
        board.proc.wait(timeout=10)


class Uart:
    """The board's UART as a serial line feeds it.

    qemu-system-avr's USART takes the next byte as soon as the previous one
    is read from its data register, with no baud-rate pacing: a payload
    written at once arrives faster than any sketch empties the Arduino
    core's 64-byte receive ring, which then drops bytes (a real line at
    115200 baud never outruns these sketches). So bytes go one at a time,
    each once QEMU has read the previous one off the socket (it reads one
    byte per USART receive; on a UNIX socket, SIOCOUTQ counts what the
    reader has not read yet): the USART's own backpressure, whatever the
    load on the machine."""

    def __init__(self, board: Board) -> None:
        self.sock = self._connect(board, board.uart)
        self.monitor = self._connect(board, board.monitor)
        self.buf = b""
        self.kicks = 0
        self.transcript: list[str] = []  # every line the board printed, for failure messages

    @staticmethod
    def _connect(board: Board, path: Path) -> socket.socket:
        end = time.monotonic() + boards.BOOT_TIMEOUT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                err = board.proc.stderr.read() if board.proc.poll() is not None else None
                assert err is None, f"QEMU exited: {err!r}"
                assert time.monotonic() < end, f"QEMU did not open {path}"
                time.sleep(0.01)

    def kick(self) -> None:
        """Stops and continues the VM: QEMU then takes a pending interrupt."""
        self.kicks += 1
        self.monitor.sendall(b"stop\ncont\n")

    def unread(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self.sock, termios.TIOCOUTQ, b"\0" * 4))[0]

    def send(self, data: bytes) -> None:
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])
            end = time.monotonic() + 30
            kick_at = time.monotonic() + 0.02
            while self.unread():
                assert time.monotonic() < end, f"the board stopped reading at byte {i}"
                if time.monotonic() > kick_at:
                    self.kick()  # the previous byte waits in the USART: see above
                    kick_at = time.monotonic() + 0.02
                time.sleep(0.00002)
        self.kick()  # the last byte is in the USART: make sure it is taken

    def next(self, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if time.monotonic() > end:
                raise TimeoutError(f"no line from the board in {timeout} s (got {self.buf!r})")
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                self.buf += self.sock.recv(256)
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.decode("ascii", "replace").strip()
        self.transcript.append(text)
        return text

    def model(self) -> tuple[int, int]:
        """The sketch's "version V, weights crc32 HEX" line."""
        line = self.next()
        m = re.fullmatch(r"version (\d+), weights crc32 ([0-9A-F]+)", line)
        assert m, f"not a model line: {line!r}"
        return int(m[1]), int(m[2], 16)

    def update(self, payload: bytes) -> tuple[str, int, int]:
        self.send(payload)
        line = self.next()
        assert line.startswith("update: "), f"not a status line: {line!r}"
        return (line.split(": ", 1)[1], *self.model())

    def close(self) -> None:
        self.sock.close()
        self.monitor.close()


def test_a_failed_update_restores_the_factory_weights_from_flash(
    sketch: tuple[Sketch, Board], capsys: pytest.CaptureFixture[str]
) -> None:
    sk, board = sketch
    v1, fp = model_of(sk)
    assert len(v1) == 256
    assert fp == cli_fingerprint(sk.model, len(v1), capsys), "the sketch's fingerprint is stale"
    v2 = bytes((b * 7 + 3) & 0xFF for b in v1)
    v3 = bytes(b ^ 0x5A for b in v1)
    good2 = pack(v2, fingerprint=fp, version=2, chunk_size=CHUNK).encode()
    bad2 = corrupt(pack(v2, fingerprint=fp, version=2, chunk_size=CHUNK))
    bad3 = corrupt(pack(v3, fingerprint=fp, version=3, chunk_size=CHUNK), chunk=2)

    lines = Uart(board)
    try:
        assert lines.model() == (1, zlib.crc32(v1)), "boot: not the factory weights"
        # touched bytes restored:
        assert lines.update(bad2) == ("ChunkCrc", 1, zlib.crc32(v1)), lines.transcript
        assert lines.update(good2) == ("Ok", 2, zlib.crc32(v2)), lines.transcript
        # the whole region from flash:
        assert lines.update(bad3) == ("ChunkCrc", 1, zlib.crc32(v1)), lines.transcript
        # no stray line before it:
        assert lines.update(good2) == ("Ok", 2, zlib.crc32(v2)), lines.transcript
    finally:
        lines.close()


# examples/TfliteModel: a .tflite model in RAM, its factory copy and its
# writable-range table in flash (MODELOTA_FLASH), the table handed to the
# class with setWritableRanges(modelota_writable_flash(...)).
TFLITE_SKETCH = Sketch("TfliteModel", "", "model_data.h", "kModelFactory", "MODEL_FINGERPRINT")


def test_a_structural_change_is_refused_with_the_table_in_flash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A payload with the right fingerprint and CRCs that changes one byte of
    the model's RESHAPE shape is refused (WrongModel) on the Mega, before
    that chunk is written, and the model is what it was; one that changes
    only learned bytes is applied. The sketch reads the table from flash:
    read as RAM at that address it would be other numbers (the init refuses
    them, or they cover other bytes)."""
    from modelota.format.payload import pack as pack_region  # the bytes as the device holds them
    from modelota.models.tflite import read_tflite

    d = ROOT / "examples" / TFLITE_SKETCH.name
    v1 = c_array((d / TFLITE_SKETCH.source).read_text(), TFLITE_SKETCH.weights_array)
    header = (d / "model_fingerprint.h").read_text()
    model = tmp_path / "model.tflite"
    model.write_bytes(v1)
    assert main(["fingerprint", str(model)]) == 0
    printed = capsys.readouterr().out.splitlines(keepends=True)
    assert header == "".join(printed[1:]), "model_fingerprint.h is not what the CLI prints"
    m = read_tflite(v1)
    fp = m.fingerprint()
    assert c_array(header, TFLITE_SKETCH.fingerprint_array) == fp
    writable = {i for o, n in m.writable_ranges() for i in range(o, o + n)}
    assert 0 < len(writable) < len(v1)
    v2 = bytes(b ^ 0x5A if i in writable else b for i, b in enumerate(v1))  # "retrained"
    (shape,) = [t for t in m.tensors if t.constant and t.name.endswith("shape")]
    assert shape.data_offset is not None and shape.data_offset not in writable
    reshaped = bytearray(v2)
    reshaped[shape.data_offset] ^= 0x01  # [1, 1, 3] becomes [0, 1, 3]: another graph
    chunks = len(v1) // CHUNK
    assert 0 < shape.data_offset // CHUNK < chunks, "earlier chunks must write first"
    good2 = pack_region(v2, fingerprint=fp, version=2, chunk_size=CHUNK).encode()
    wrong2 = pack_region(bytes(reshaped), fingerprint=fp, version=2, chunk_size=CHUNK).encode()
    wrong3 = pack_region(bytes(reshaped), fingerprint=fp, version=3, chunk_size=CHUNK).encode()

    fw = firmware(TFLITE_SKETCH)
    nm = shutil.which("avr-nm")
    if nm is not None:  # the table and the factory copy are in flash, not in RAM
        syms = subprocess.run([nm, "-C", str(fw.elf)], capture_output=True, text=True).stdout
        kinds = {p[2]: p[1] for p in (ln.split() for ln in syms.splitlines()) if len(p) == 3}
        assert kinds.get("MODEL_WRITABLE_RANGES") in ("t", "T"), kinds
        assert kinds.get("kModelFactory") in ("t", "T"), kinds
    board = start_qemu(fw.elf, tmp_path)
    uart = Uart(board)
    try:
        assert uart.next() == "writable ranges: Ok"
        assert uart.model() == (1, zlib.crc32(v1)), "boot: not the factory model"
        # its learned bytes were written, then the shape's chunk was refused:
        # the touched bytes are copied back from flash
        assert uart.update(wrong2) == ("WrongModel", 1, zlib.crc32(v1)), uart.transcript
        assert uart.update(good2) == ("Ok", 2, zlib.crc32(v2)), uart.transcript
        # while v2 runs: the whole model reloaded from the factory copy
        assert uart.update(wrong3) == ("WrongModel", 1, zlib.crc32(v1)), uart.transcript
    finally:
        uart.close()
        board.proc.kill()
        board.proc.wait(timeout=10)


@pytest.fixture(params=sorted(SKETCHES))
def tcp_sketch(request: pytest.FixtureRequest) -> Iterator[tuple[Sketch, boards.Board]]:
    """The sketch in qemu-system-avr behind a socket:// URL, as push opens it."""
    sk = SKETCHES[request.param]
    firmware(sk)
    with boards.start_board("avr", sketch=sk.name, defines=DEFINES) as b:
        yield sk, b


def test_push_to_a_raw_payload_sketch_says_what_to_do(
    tcp_sketch: tuple[Sketch, boards.Board],
) -> None:
    sk, board = tcp_sketch
    v1, fp = model_of(sk)
    payload = pack(bytes(len(v1)), fingerprint=fp, version=2, chunk_size=CHUNK).encode()
    with socket.create_connection(("127.0.0.1", board.port), timeout=30) as boot:
        seen = b""
        while not seen.endswith(b"\n"):  # the boot line: the sketch waits for input
            seen += boot.recv(1)
        assert seen.startswith(b"version 1,"), seen
    with pytest.raises(CliError) as e:
        push(board.url, payload, timeout=1.0, retries=8)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("the device reads raw payloads, not the link protocol"), msg
    # the class answers in a frame; the C sketch only prints the status name
    assert ("in text" in msg) == (sk.name == "CApi"), msg
    assert "examples/SerialUpdate" in msg and "cat FILE > PORT" in msg


# A sketch of the test's own: every status name as the AVR build reads them
# out of flash (modelota_status_str and modelota_status_name), and factory
# weights read through modelota_backup_flash_far(pgm_get_far_address(...)),
# the form for arrays above 64 KiB. The array here sits below 64 KiB:
# qemu-system-avr 7.2 does not read flash above it back (an array placed at
# 0x10000 or 0x20000 with --section-start reads 119, 192, 0, 0 through ELPM
# instead of its bytes), so what this shows is the far constructor's address
# and reader (memcpy_PF, which modelota_backup_flash also uses), not a
# second 64 KiB bank.
FAR_SKETCH = r"""
#include <ModelOTA.h>

const uint8_t farWeights[256] PROGMEM = {%(weights)s};
const uint8_t fingerprint[16] = {%(fingerprint)s};
uint8_t weights[256];
uint8_t chunkBuffer[128];

/* pgm_get_far_address() is a statement expression: it only works inside a
 * function, so the object is a function's static. */
static ModelOTA& model() {
  static ModelOTA ota(weights, sizeof(weights), fingerprint,
                      modelota_backup_flash_far(pgm_get_far_address(farWeights),
                                                sizeof(weights), 1),
                      chunkBuffer, sizeof(chunkBuffer));
  return ota;
}

static void printModel() {
  Serial.print(F("version "));
  Serial.print(model().version());
  Serial.print(F(", weights crc32 "));
  Serial.println(modelota_crc32(0, weights, sizeof(weights)), HEX);
}

void setup() {
  Serial.begin(115200);
  Serial.print(F("weights at 0x"));
  Serial.println(pgm_get_far_address(farWeights), HEX);
  Serial.print(F("names"));
  char name[MODELOTA_STATUS_NAME_MAX];
  for (int st = 1; st >= MODELOTA_STATUS_MIN - 1; --st) {
    modelota_status_name(st, name, sizeof(name));
    Serial.print(' ');
    Serial.print(modelota_status_str(st));
    Serial.print(strcmp(name, modelota_status_str(st)) == 0 ? "" : "!");
  }
  Serial.println();
  model().restoreFactory();
  printModel();
}

void loop() {
  if (Serial.available() > 0) {
    int st = model().update(Serial, 5000);
    Serial.print(F("update: "));
    Serial.println(ModelOTA::statusName(st));
    printModel();
  }
}
"""


@pytest.fixture(scope="module")
def far_sketch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    missing = [t for t in ("qemu-system-avr", "arduino-builder", "avr-gcc") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    root = tmp_path_factory.mktemp("far")
    v1 = bytes((i * 29 + 7) & 0xFF for i in range(256))
    fp = b"far-flash-model!"
    sketch = root / "FarFlash" / "FarFlash.ino"
    sketch.parent.mkdir()
    sketch.write_text(FAR_SKETCH % {
        "weights": ", ".join(str(b) for b in v1),
        "fingerprint": ", ".join(str(b) for b in fp),
    })  # fmt: skip
    libraries = root / "libraries"
    libraries.mkdir()
    (libraries / "ModelOTA").symlink_to(ROOT, target_is_directory=True)
    build = root / "build"
    build.mkdir()
    builder = shutil.which("arduino-builder")
    assert builder is not None
    cmd = boards.arduino_builder_command(builder, sketch, libraries, build, None, DEFINES)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ours = [ln for ln in proc.stdout.splitlines() if "warning:" in ln and "/arduino/" not in ln]
    assert not ours, ours
    return build / "FarFlash.ino.elf", v1, fp


def test_far_source_and_the_status_names_on_avr(
    far_sketch: tuple[Path, bytes, bytes], tmp_path: Path
) -> None:
    from modelota.status import Status

    elf, v1, fp = far_sketch
    board = start_qemu(elf, tmp_path)
    uart = Uart(board)
    try:
        at = uart.next()
        assert at.startswith("weights at 0x"), at
        assert 0 < int(at.rsplit("x", 1)[1], 16) < 0x10000, at  # see FAR_SKETCH's comment
        names = uart.next().split()
        codes = range(1, min(Status) - 2, -1)
        want = ["names", *(Status(c).name if c in Status._value2member_map_ else "Unknown"
                           for c in codes)]  # fmt: skip
        assert names == want  # modelota_status_name agrees: no "!"
        assert uart.model() == (1, zlib.crc32(v1)), "the far weights did not read back"
        v2 = bytes(b ^ 0xA5 for b in v1)
        bad = corrupt(pack(v2, fingerprint=fp, version=2, chunk_size=CHUNK), chunk=2)
        assert uart.update(bad) == ("ChunkCrc", 1, zlib.crc32(v1)), uart.transcript
    finally:
        uart.close()
        board.proc.kill()
        board.proc.wait(timeout=10)
