#!/usr/bin/env python3
"""What ModelOTA adds to an application: flash and RAM, Mega and Cortex-M4.

    python bench/bench_footprint.py

One application, built with and without ModelOTA, on two boards:

- Arduino Mega 2560: bench/footprint/Footprint/Footprint.ino with
  arduino-builder (the command the tests use), sizes from avr-size on the .elf;
- Cortex-M4: bench/footprint/m4_app.cpp, the same application on the bare
  board of sim/boards/m4 (its startup code, linker script and UART, the same
  arm-none-eabi-g++ flags), sizes from arm-none-eabi-size.

The application: a 1 KiB model runs from RAM, loaded at boot from its
factory copy in flash (PROGMEM on AVR); each byte received is the input of a
small fixed inference whose result is printed. With ModelOTA, a payload
arriving on the same serial port replaces the weights (the ModelOTA class on
the Mega as in examples/Quickstart, the core's C API on the M4 as in
examples/CApi) and its status name is printed.

Builds: without ModelOTA; with it (defaults: on AVR no SHA-256 and no
signatures, status names in flash; on the M4 SHA-256 digests and the
Ed25519 verifier compiled in, linked only where used); with it and
MODELOTA_STATUS_STRINGS=0; on the M4 also with everything optional off.
Flash is text + data; RAM is static RAM (data + bss), which includes the
128-byte chunk buffer the application lends. Not in the table: the stack
while an update runs (modelota_pull's MODELOTA_PULL_BUFFER, 32 bytes, plus
call frames). Nothing is timed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))

from modelota.sim import emulated  # noqa: E402

FOOTPRINT = ROOT / "bench" / "footprint"
CHUNK_BUFFER = 128  # both applications lend this much to ModelOTA
SMALLEST = (
    "MODELOTA_STATUS_STRINGS=0",
    "MODELOTA_SIGNATURES=0",
    "MODELOTA_SHA256=0",
    "MODELOTA_CRC32_TABLE=1",
)


@dataclass
class Size:
    board: str
    build: str
    flash: int
    ram: int


def sections(size_tool: str, elf: Path) -> dict[str, int]:
    """Section sizes (``size -A``)."""
    out = subprocess.run([size_tool, "-A", str(elf)], capture_output=True, text=True, check=True)
    found = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            found[parts[0]] = int(parts[1])
    return found


def measure(size_tool: str, elf: Path, board: str, build: str) -> Size:
    s = sections(size_tool, elf)
    text = s.get(".text", 0) + s.get(".isr_vector", 0) + s.get(".ARM.exidx", 0)
    data = s.get(".data", 0)
    return Size(board, build, text + data, data + s.get(".bss", 0))


def avr_builds(work: Path) -> list[Size]:
    builder = shutil.which("arduino-builder")
    avr_size = shutil.which("avr-size")
    if builder is None or avr_size is None:
        print("Mega: arduino-builder or avr-size not installed, skipped")
        return []
    libraries = work / "libraries"
    libraries.mkdir()
    (libraries / "ModelOTA").symlink_to(ROOT, target_is_directory=True)
    cache = work / "core-cache"
    cache.mkdir()
    out = []
    variants = [
        ("without ModelOTA", ("WITH_MODELOTA=0",)),
        ("with ModelOTA", ("WITH_MODELOTA=1",)),
        ("with, STATUS_STRINGS=0", ("WITH_MODELOTA=1", "MODELOTA_STATUS_STRINGS=0")),
    ]
    for i, (name, defines) in enumerate(variants):
        sketch_dir = work / f"v{i}" / "Footprint"
        shutil.copytree(FOOTPRINT / "Footprint", sketch_dir)
        build = work / f"build{i}"
        build.mkdir()
        cmd = emulated.arduino_builder_command(
            builder, sketch_dir / "Footprint.ino", libraries, build, cache, defines
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=work)
        if proc.returncode != 0:
            raise SystemExit(f"arduino-builder failed for {name}:\n{proc.stdout}{proc.stderr}")
        out.append(measure(avr_size, build / "Footprint.ino.elf", "Mega 2560", name))
    return out


def m4_builds(work: Path) -> list[Size]:
    gcc = shutil.which("arm-none-eabi-gcc")
    gxx = shutil.which("arm-none-eabi-g++")
    arm_size = shutil.which("arm-none-eabi-size")
    if gcc is None or gxx is None or arm_size is None:
        print("Cortex-M4: arm-none-eabi-gcc/g++/size not installed, skipped")
        return []
    core = [emulated.FIRMWARE / "modelota" / n for n in emulated.M4_CORE if n != "link.cpp"]
    variants = [
        ("without ModelOTA", ("WITH_MODELOTA=0",)),
        ("with ModelOTA", ("WITH_MODELOTA=1",)),
        ("with, STATUS_STRINGS=0", ("WITH_MODELOTA=1", "MODELOTA_STATUS_STRINGS=0")),
        ("with, all optional off", ("WITH_MODELOTA=1", *SMALLEST)),
    ]
    out = []
    for i, (name, defines) in enumerate(variants):
        d = work / f"m4-{i}"
        d.mkdir()
        flags = [*emulated.M4_CFLAGS, f"-I{FOOTPRINT}", *(f"-D{x}" for x in defines)]
        units = [emulated.M4_DIR / "startup.c", FOOTPRINT / "m4_app.cpp"]
        if "WITH_MODELOTA=1" in defines:
            units += core
        objs = []
        for src in units:
            obj = d / f"{src.stem}.o"
            if src.suffix == ".c":
                cmd = [gcc, *flags, "-std=c11", "-c", str(src), "-o", str(obj)]
            else:
                cmd = [gxx, *flags, *emulated.M4_CXXFLAGS, "-c", str(src), "-o", str(obj)]
            subprocess.run(cmd, check=True)
            objs.append(str(obj))
        elf = d / "app.elf"
        link = [gcc, *emulated.M4_CFLAGS[:2], *emulated.M4_LDFLAGS, *objs, "-o", str(elf)]
        subprocess.run(link, check=True)
        out.append(measure(arm_size, elf, "Cortex-M4", name))
    return out


def table(rows: list[Size]) -> str:
    head = f"{'board':<10} {'build':<24} {'flash B':>8} {'RAM B':>6} {'+flash':>7} {'+RAM':>5}"
    lines = [head, "-" * len(head)]
    base: dict[str, Size] = {}
    for r in rows:
        if r.build == "without ModelOTA":
            base[r.board] = r
            lines.append(f"{r.board:<10} {r.build:<24} {r.flash:>8} {r.ram:>6} {'':>7} {'':>5}")
        else:
            b = base[r.board]
            lines.append(
                f"{r.board:<10} {r.build:<24} {r.flash:>8} {r.ram:>6}"
                f" {r.flash - b.flash:>+7} {r.ram - b.ram:>+5}"
            )
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        work = Path(tmp)
        (work / "avr").mkdir()
        (work / "m4").mkdir()
        rows = avr_builds(work / "avr") + m4_builds(work / "m4")
    if not rows:
        raise SystemExit("no toolchain: nothing measured")
    print("What ModelOTA adds to one application (1 KiB model in RAM, factory copy in flash,")
    print("inference on serial input); + columns: over the same application without it.")
    print(f"RAM is static RAM and includes the {CHUNK_BUFFER}-byte chunk buffer the application")
    print("lends; the stack an update uses (32-byte read buffer + frames) is not in it.\n")
    print(table(rows))


if __name__ == "__main__":
    main()
