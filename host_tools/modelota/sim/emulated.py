"""Emulated boards built from the real sources, reachable over a socket.

Two boards run the real firmware_lib core and link protocol (docs/PROTOCOL.md)
on an emulated CPU:

- ``m4``: a bare-metal Cortex-M4 firmware for QEMU ``mps2-an386``
  (sim/boards/m4: startup code, linker script, CMSDK UART0, SysTick clock),
  compiled with arm-none-eabi-g++ from firmware_lib directly;
- ``avr``: the Arduino sketch examples/SerialUpdate compiled with
  arduino-builder for the Mega 2560 and run in ``qemu-system-avr``.

Clocks: the m4 firmware counts milliseconds with SysTick, which QEMU runs
from host time. Under qemu-system-avr the sketch's millis() does not advance
(QEMU 7.2 has no Timer0), so the sketch counts on Timer1 instead; both boards
time an abandoned transfer out (the HIL suite checks it).

Both hold the same 512-byte model (sim/boards/board_model.h; here
:data:`FACTORY_WEIGHTS`, :data:`FINGERPRINT`, :func:`probe`), and answer
HELLO with INFO: version, CRC32 of the weights and the probe inference.

    with start_board("m4") as board:       # builds if needed, boots QEMU
        ser = serial.serial_for_url(board.url)
        print(hello(ser))

Once this module is imported, ``serial.serial_for_url("sim://qemu-m4")`` (or
``sim://qemu-avr``; any pyserial user, e.g. ``modelota.link.push.push``) reaches
a board through :mod:`modelota.sim.handlers.protocol_sim`, booting it on
first use; later opens of the same URL (``?name=x`` for more than one) find
the same board, as with a real one. ``?size=N&seed=S&timeout_ms=T`` boots a
fresh m4 board on ``modelota.sim.board.demo_model(N, S)``; ``timeout_ms=T``
alone (either board) a fresh board with that resume timeout. Boards started this
way run until :func:`stop_sim_boards` or interpreter exit.
``sim://qemu-avr?sketch=SampleLogger`` runs another sketch of examples/ on the
Mega (a board of its own: it never replaces the SerialUpdate board). The HIL suite:
``pytest tests/hil -p modelota.sim.emulated --port sim://qemu-m4``.

Builds go to a cache directory keyed by a hash of every source and flag
(``$MODELOTA_BOARD_CACHE``, default ``<tmp>/modelota-boards``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[3]  # the source checkout (host_tools/modelota/sim/)
FIRMWARE = ROOT / "firmware_lib"
BOARDS = ROOT / "sim" / "boards"
M4_DIR = BOARDS / "m4"
SKETCH = ROOT / "examples" / "SerialUpdate" / "SerialUpdate.ino"

MODEL_SIZE = 512
MODEL_VERSION = 1
FINGERPRINT = b"ModelOTA-sim-brd"
FACTORY_WEIGHTS = bytes((((i * 73 + 41) ^ (i >> 3)) & 0xFF) for i in range(MODEL_SIZE))
# Largest payload chunk each board's chunk buffer takes.
CHUNK_SIZE = {"m4": 512, "avr": 128}

Kind = Literal["m4", "avr"]

M4_CFLAGS = [
    "-mcpu=cortex-m4",
    "-mthumb",
    "-Os",
    "-g",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
    f"-I{FIRMWARE}",
]
M4_CXXFLAGS = ["-std=c++11", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]
M4_LDFLAGS = [
    "-nostartfiles",
    "--specs=nano.specs",
    "--specs=nosys.specs",
    "-Wl,--gc-sections",
    f"-T{M4_DIR / 'mps2_an386.ld'}",
]
M4_CORE = (
    "crc32.cpp",
    "status.cpp",
    "decode.cpp",
    "updater.cpp",
    "store.cpp",
    "link.cpp",
    "sha256.cpp",  # SHA-256 digests and Ed25519 signatures (on by default off AVR)
    "sha512.cpp",
    "ed25519.cpp",
)

ARDUINO_HARDWARE = Path("/usr/share/arduino/hardware")
ARDUINO_BUILDER_PLATFORM = Path("/usr/share/arduino-builder")
FQBN = "arduino:avr:mega:cpu=atmega2560"

BOOT_TIMEOUT = 20.0


def arduino_builder_command(
    builder: str,
    sketch: Path,
    libraries: Path,
    build: Path,
    cache: Path | None = None,
    defines: tuple[str, ...] = (),
) -> list[str]:
    """The arduino-builder call that compiles ``sketch`` for the Mega 2560 on Debian.

    Debian keeps arduino-builder's ctags recipe in /usr/share/arduino-builder
    (hence the second -hardware), its tools on PATH (/usr/bin), and its
    arduino-core-avr needs DECIMAL_DIG, which its avr-libc lacks. Tests and the
    AVR board build share this one command line. ``defines`` (``"NAME=VALUE"``)
    go to every C and C++ compile."""
    extra = " ".join(["-DDECIMAL_DIG=17", *(f"-D{d}" for d in defines)])
    cmd = [
        builder,
        "-hardware", str(ARDUINO_HARDWARE),
        "-hardware", str(ARDUINO_BUILDER_PLATFORM),
        "-tools", "/usr/bin",
        "-fqbn", FQBN,
        "-libraries", str(libraries),
        "-build-path", str(build),
        "-warnings", "all",
        f"-prefs=compiler.cpp.extra_flags={extra}",
        f"-prefs=compiler.c.extra_flags={extra}",
    ]  # fmt: skip
    if cache is not None:
        cmd += ["-build-cache", str(cache)]
    return [*cmd, str(sketch)]


class BoardUnavailable(RuntimeError):
    """A tool the board needs is not installed (tests skip on it)."""


class BuildError(RuntimeError):
    """The firmware did not compile; the message holds the compiler output."""


def probe(weights: bytes) -> int:
    """The boards' fixed inference: sum of int8(w[i]) * ((i % 7) - 3)."""
    return sum((b - 256 if b > 127 else b) * (i % 7 - 3) for i, b in enumerate(weights))


def model_header(weights: bytes, fingerprint: bytes, version: int) -> str:
    """The C header of a board model (sim/boards/board_model.h is this for
    the default model; build_m4 generates others)."""
    rows = "\n".join(
        "    " + ", ".join(f"0x{b:02X}" for b in weights[i : i + 16]) + ", \\"
        for i in range(0, len(weights), 16)
    )
    fp = ", ".join(f"0x{b:02X}" for b in fingerprint)
    return f"""/*
 * The emulated boards' model (sim/boards): {len(weights)} weight bytes, a fingerprint,
 * and the fixed probe inference. Generated by host_tools/modelota/sim/emulated.py
 * (model_header), which holds the same numbers (FACTORY_WEIGHTS, FINGERPRINT,
 * probe()); the default factory bytes are ((i * 73 + 41) ^ (i >> 3)) & 0xFF.
 */
#ifndef MODELOTA_SIM_BOARD_MODEL_H
#define MODELOTA_SIM_BOARD_MODEL_H

#include <stdint.h>

#define BOARD_MODEL_SIZE {len(weights)}u
#define BOARD_MODEL_VERSION {version}u

#define BOARD_FINGERPRINT_INIT \\
    {{{fp}}}

#define BOARD_FACTORY_INIT \\
    {{ \\
{rows}
    }}

/* The fixed inference: sum of (int8) w[i] * ((i % 7) - 3). */
static inline int32_t board_probe(const uint8_t* w, uint32_t n) {{
    int32_t acc = 0;
    for (uint32_t i = 0; i < n; ++i) {{
        acc += (int32_t)(int8_t)w[i] * ((int32_t)(i % 7u) - 3);
    }}
    return acc;
}}

#endif /* MODELOTA_SIM_BOARD_MODEL_H */
"""


def cache_dir() -> Path:
    d = Path(
        os.environ.get("MODELOTA_BOARD_CACHE", Path(tempfile.gettempdir()) / "modelota-boards")
    )
    d.mkdir(parents=True, exist_ok=True)
    return d


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BoardUnavailable(f"{tool} is not installed")
    return path


def _hash(files: list[Path], extra: list[str]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def _sources() -> list[Path]:
    if not (FIRMWARE.is_dir() and BOARDS.is_dir()):
        raise BoardUnavailable(
            f"the firmware sources are not under {ROOT} (an installed wheel has none):"
            " emulated boards run from a source checkout; sim://native needs none"
        )
    files = [p for p in FIRMWARE.rglob("*") if p.is_file()]
    files += [p for p in BOARDS.rglob("*") if p.is_file()]
    return files


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=cwd)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return out


@dataclass
class Firmware:
    elf: Path
    log: str  # compiler output (warnings) of the build that made it

    @property
    def warnings(self) -> list[str]:
        return [ln for ln in self.log.splitlines() if "warning:" in ln]


def build_m4(
    weights: bytes | None = None,
    fingerprint: bytes = FINGERPRINT,
    version: int = MODEL_VERSION,
    resume_timeout_ms: int = 10000,
) -> Firmware:
    """Compiles sim/boards/m4 and firmware_lib for mps2-an386 (cached).
    ``weights`` (default: the 512-byte FACTORY_WEIGHTS) become the factory
    model through a generated board_model.h."""
    gcc = _need("arm-none-eabi-gcc")
    gxx = _need("arm-none-eabi-g++")
    flags = [*M4_CFLAGS, f"-DBOARD_RESUME_TIMEOUT_MS={int(resume_timeout_ms)}u"]
    header = None
    if weights is not None:
        header = model_header(weights, fingerprint, version)
    key = _hash(_sources(), flags + M4_CXXFLAGS + M4_LDFLAGS + [header or ""])
    out = cache_dir() / f"m4-{key}"
    elf = out / "fw.elf"
    if elf.is_file():
        return Firmware(elf, (out / "build.log").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="m4-", dir=cache_dir()))
    if header is not None:
        (tmp / "model.h").write_text(header)
        flags.append(f'-DBOARD_MODEL_HEADER="{tmp / "model.h"}"')
    log = []
    objs = []
    units = [M4_DIR / "startup.c", M4_DIR / "main.cpp"]
    units += [FIRMWARE / "modelota" / n for n in M4_CORE]
    for src in units:
        obj = tmp / (src.stem + ".o")
        if src.suffix == ".c":
            cmd = [gcc, *flags, "-std=c11", "-c", str(src), "-o", str(obj)]
        else:
            cmd = [gxx, *flags, *M4_CXXFLAGS, "-c", str(src), "-o", str(obj)]
        log.append(_run(cmd))
        objs.append(str(obj))
    link = [gcc, *M4_CFLAGS[:2], *M4_LDFLAGS, *objs, "-o", str(tmp / "fw.elf")]
    log.append(_run([*link, f"-Wl,-Map={tmp / 'fw.map'}"]))
    (tmp / "build.log").write_text("".join(log))
    with contextlib.suppress(OSError):
        tmp.rename(out)
    if not elf.is_file():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return Firmware(elf, (out / "build.log").read_text())


def build_avr(
    resume_timeout_ms: int | None = None,
    sketch: str = "SerialUpdate",
    defines: tuple[str, ...] = (),
) -> Firmware:
    """Compiles examples/SerialUpdate for the Mega 2560 with arduino-builder
    (cached); ``resume_timeout_ms`` overrides the sketch's RESUME_TIMEOUT_MS.
    ``sketch`` names another sketch of examples/ (``SampleLogger``);
    ``defines`` (``"NAME=VALUE"``) go to every compile."""
    sketch_path = _avr_sketch(sketch)
    builder = _need("arduino-builder")
    _need("avr-gcc")
    if not (ARDUINO_BUILDER_PLATFORM / "platform.txt").is_file():
        raise BoardUnavailable(f"{ARDUINO_BUILDER_PLATFORM}/platform.txt is missing")
    sketch_files = [p for p in sketch_path.parent.rglob("*") if p.is_file()]  # .ino, .c, .h...
    files = _sources() + sketch_files + [p for p in (ROOT / "src").rglob("*") if p.is_file()]
    if resume_timeout_ms is not None:
        defines = (*defines, f"RESUME_TIMEOUT_MS={int(resume_timeout_ms)}u")
    key = _hash(files, [FQBN, *defines])
    out = cache_dir() / f"avr-{key}"
    elf = out / f"{sketch_path.name}.elf"
    if elf.is_file():
        return Firmware(elf, (out / "build.log").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="avr-", dir=cache_dir()))
    libraries = tmp / "libraries"
    libraries.mkdir()
    (libraries / "ModelOTA").symlink_to(ROOT, target_is_directory=True)
    sketch_copy = tmp / sketch_path.parent.name / sketch_path.name
    shutil.copytree(sketch_path.parent, sketch_copy.parent)  # with its other tabs (examples/CApi)
    build = tmp / "build"
    build.mkdir()
    (tmp / "core-cache").mkdir()
    cmd = arduino_builder_command(
        builder, sketch_copy, libraries, build, tmp / "core-cache", defines=defines
    )
    log = _run(cmd, cwd=tmp)
    (build / "build.log").write_text(log)
    with contextlib.suppress(OSError):
        build.rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return Firmware(elf, (out / "build.log").read_text())


def _avr_sketch(name: str) -> Path:
    """examples/NAME/NAME.ino, for sketches the avr board can run."""
    path = ROOT / "examples" / name / f"{name}.ino"
    if not name.isidentifier() or not path.is_file():
        raise ValueError(f"no sketch examples/{name}/{name}.ino")
    return path


def build(kind: Kind, **model: Any) -> Firmware:
    """Builds a board's firmware; ``model`` holds build_m4's arguments (the
    avr board takes ``resume_timeout_ms``, ``sketch`` and ``defines``: its model is the
    sketch's)."""
    if kind == "m4":
        return build_m4(**model)
    if kind == "avr":
        if set(model) - {"resume_timeout_ms", "sketch", "defines"}:
            raise ValueError("the avr board runs the fixed 512-byte SerialUpdate model")
        return build_avr(**model)
    raise ValueError(f"unknown board {kind!r} (m4 or avr)")


def qemu_command(kind: Kind, elf: Path, port: int) -> list[str]:
    # nodelay: QEMU's end of the serial socket sends each byte the firmware
    # writes at once, as a UART would (Nagle would hold small answers back)
    serial = f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"
    common = ["-nographic", "-monitor", "none", "-serial", serial]
    if kind == "m4":
        return [_need("qemu-system-arm"), "-M", "mps2-an386", *common, "-kernel", str(elf)]
    return [_need("qemu-system-avr"), "-M", "mega2560", *common, "-bios", str(elf)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Board:
    """One QEMU process running a board's firmware; ``url`` reaches its UART."""

    def __init__(self, kind: Kind, proc: subprocess.Popen[bytes], port: int, elf: Path):
        self.kind = kind
        self.proc = proc
        self.port = port
        self.elf = elf
        self.url = f"socket://127.0.0.1:{port}"
        self.boot_seconds = 0.0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_board(kind: Kind, timeout: float = BOOT_TIMEOUT, **model: Any) -> Board:
    """Builds the firmware if needed, starts QEMU and waits until its serial
    port accepts a connection (QEMU waits for it before running the CPU).
    ``model``: build_m4's weights/fingerprint/version/resume_timeout_ms."""
    fw = build(kind, **model)
    cmd0 = qemu_command(kind, fw.elf, 0)  # checks qemu is installed
    del cmd0
    last = ""
    for _attempt in range(3):  # the free port may be taken before QEMU binds it
        port = _free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            qemu_command(kind, fw.elf, port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        board = Board(kind, proc, port, fw.elf)
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                last = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                break
            if _listening(port):
                board.boot_seconds = time.monotonic() - t0
                return board
            time.sleep(0.02)
        else:
            board.close()
            raise TimeoutError(f"QEMU for {kind} did not open port {port} in {timeout} s")
    raise RuntimeError(f"QEMU for {kind} exited: {last.strip()}")


def _listening(port: int) -> bool:
    """True when something listens on the port, without connecting to it
    (QEMU's server=on,wait=on socket takes one client: ours)."""
    try:
        with open("/proc/net/tcp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return False
    for ln in lines:
        parts = ln.split()
        local, state = parts[1], parts[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return True
    return False


# ---------------------------------------------------------------- protocol

HELLO = 0x01
INFO = 0x81
INFO_FMT = "<BB16sIIHBIIIi"


@dataclass
class Info:
    proto: int
    state: int
    fingerprint: bytes
    version: int
    size: int
    max_data: int
    window: int
    transfer_id: int
    acked: int
    weights_crc: int
    probe: int


def frame(ftype: int, body: bytes = b"") -> bytes:
    head = bytes([ftype]) + struct.pack("<H", len(body)) + body
    return b"\xa5\x5a" + head + struct.pack("<I", zlib.crc32(head))


def read_frame(ser: Any, timeout: float = 5.0) -> tuple[int, bytes]:
    """Reads one device frame (sync, type, len, body, CRC) from a pyserial port."""
    deadline = time.monotonic() + timeout
    buf = bytearray()

    def need(n: int) -> bytes:
        while len(buf) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete frame in {timeout} s (got {bytes(buf).hex()})")
            buf.extend(ser.read(n - len(buf)))
        out = bytes(buf[:n])
        del buf[:n]
        return out

    prev = 0
    while True:
        b = need(1)[0]
        if prev == 0xA5 and b == 0x5A:
            break
        prev = b
    head = need(3)
    body = need(struct.unpack("<H", head[1:3])[0])
    crc = struct.unpack("<I", need(4))[0]
    if crc != zlib.crc32(head + body):
        raise ValueError("device frame failed its CRC")
    return head[0], body


def hello(ser: Any, timeout: float = 5.0) -> Info:
    """Sends HELLO and returns the device's INFO."""
    ser.write(frame(HELLO))
    ftype, body = read_frame(ser, timeout)
    if ftype != INFO:
        raise ValueError(f"expected INFO (0x81), got 0x{ftype:02x}")
    return Info(*struct.unpack(INFO_FMT, body[: struct.calcsize(INFO_FMT)]))


# ---------------------------------------------------------------- sim:// URLs

_sim_boards: dict[str, Board] = {}


def _qemu_factory(kind: Kind) -> Callable[[dict[str, str]], tuple[str, int]]:
    def factory(params: dict[str, str]) -> tuple[str, int]:
        """The board behind ``sim://qemu-KIND[?name=x&size=..]``: like a real
        board on a port, one per (kind, name) that outlives connections, so a
        host can drop the port and reconnect (QEMU's server socket takes the
        next client). Opening it boots it if it is not running; model
        parameters (size, seed, version, timeout_ms) boot a fresh one."""
        key = f"{kind}:{params.get('name', '')}"
        model = _model_params(kind, params)
        sketch = params.get("sketch")  # sim://qemu-avr?sketch=SampleLogger: another example
        if sketch is not None:
            if kind != "avr":
                raise ValueError("sketch= is for sim://qemu-avr (the m4 board is not a sketch)")
            _avr_sketch(sketch)
            key += f":{sketch}"  # never the board another URL opened
        b = _sim_boards.get(key)
        if b is not None and (model or b.proc.poll() is not None):
            b.close()
            b = None
        if b is None:
            b = start_board(kind, **model, **({"sketch": sketch} if sketch else {}))
            _sim_boards[key] = b
        return "127.0.0.1", b.port

    return factory


def _model_params(kind: Kind, params: dict[str, str]) -> dict[str, Any]:
    """size/seed: the m4 board runs modelota.sim.board.demo_model(size, seed)
    (fingerprint bytes(range(16)), as sim://native does); timeout_ms: its
    resume timeout (both boards). The avr board has the sketch's fixed model."""
    model: dict[str, Any] = {}
    if {"size", "seed", "version"} & params.keys():
        if kind != "m4":
            raise ValueError(
                "sim://qemu-avr runs the SerialUpdate sketch's fixed 512-byte model;"
                " size/seed are for sim://qemu-m4"
            )
        from .board import demo_model

        weights, fp = demo_model(int(params.get("size", "4096")), int(params.get("seed", "1")))
        model.update(weights=weights, fingerprint=fp, version=int(params.get("version", "1")))
    if "timeout_ms" in params:
        model["resume_timeout_ms"] = int(params["timeout_ms"])
    return model


def sim_board(kind: Kind, name: str) -> Board | None:
    """The board ``sim://qemu-KIND?name=NAME`` opened, if it is running."""
    return _sim_boards.get(f"{kind}:{name}")


def stop_sim_boards() -> None:
    """Stops every board a sim://qemu-* URL started (also done at exit)."""
    while _sim_boards:
        _sim_boards.popitem()[1].close()


def qemu_endpoint(kind: Kind, params: dict[str, str]) -> tuple[str, int]:
    """``(host, port)`` of the board behind ``sim://qemu-KIND?...`` (used by
    :mod:`modelota.sim.handlers.protocol_sim`)."""
    return _qemu_factory(kind)(params)


atexit.register(stop_sim_boards)


if __name__ == "__main__":  # python -m modelota.sim.emulated m4|avr: serve one until Ctrl-C
    with start_board(sys.argv[1] if len(sys.argv) > 1 else "m4") as b:  # type: ignore[arg-type]
        print(b.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            b.proc.wait()
