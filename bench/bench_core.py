#!/usr/bin/env python3
"""Benchmarks of the firmware_lib core, measured in one run.

    python bench/bench_core.py            # full run, well under a minute
    python bench/bench_core.py --quick    # a few seconds (smaller sizes, fewer repeats)

Tables printed (bench/README.md explains every column):

1. apply throughput of the native core (begin + feed + finish, chunk CRCs and
   final digest included) against a plain memcpy of the same weight bytes;
2. CRC32: the core's modelota_crc32 against zlib.crc32;
3. the Updater's own RAM on the host, AVR (ATmega2560) and Cortex-M4;
4. code size of the core at -Os on AVR and Cortex-M4, and what the config.h
   knobs (CRC32 table, status strings) change.

Host numbers go through cffi, so every native call carries ~0.1-0.3 us of
call overhead; it matters only at the smallest sizes. Timings are medians of
several samples; nothing here asserts on a timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_lib"
CORE_SOURCES = ("crc32.cpp", "status.cpp", "decode.cpp", "updater.cpp")

try:
    import modelota  # noqa: F401  (installed editable in the venv)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "host_tools"))

from modelota.format import payload as fmt  # noqa: E402
from modelota.sim import native  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
FEED_SLICE = 512  # bytes per modelota_feed call, as a transport would hand them over
FINGERPRINT = bytes(range(16))
OLD_VERSION = 1
NEW_VERSION = 2


@dataclass(frozen=True)
class Target:
    label: str
    cxx: str
    size: str
    nm: str
    flags: tuple[str, ...]
    rodata_in_ram: bool  # avr-libc's linker script copies .rodata into SRAM with .data


CROSS_TARGETS = (
    Target("AVR atmega2560", "avr-g++", "avr-size", "avr-nm", ("-mmcu=atmega2560",), True),
    Target(
        "Cortex-M4",
        "arm-none-eabi-g++",
        "arm-none-eabi-size",
        "arm-none-eabi-nm",
        ("-mcpu=cortex-m4", "-mthumb"),
        False,
    ),
)
SIZE_FLAGS = (
    "-std=c++11",
    "-Os",
    "-fno-exceptions",
    "-fno-rtti",
    "-ffunction-sections",
    "-fdata-sections",
)


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    chunks: tuple[int, ...]
    crc_sizes: tuple[int, ...]
    repeat: int
    budget: int  # bytes processed per timing sample (sets the inner loop count)


FULL = Settings(
    sizes=(4 * KiB, 64 * KiB, 1 * MiB),
    chunks=(256, 1024, 4096),
    crc_sizes=(4 * KiB, 64 * KiB, 1 * MiB),
    repeat=11,
    budget=16 * MiB,
)
QUICK = Settings(
    sizes=(4 * KiB, 64 * KiB),
    chunks=(256, 1024, 4096),
    crc_sizes=(4 * KiB, 64 * KiB),
    repeat=3,
    budget=256 * KiB,
)


# ---------------------------------------------------------------- output


def human(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> None:
    """Prints an aligned plain-text table; the first ``left`` columns are left-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def mbps(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:,.0f}" if seconds > 0 else "inf"


# ---------------------------------------------------------------- timing


def median_time(run: Callable[[int], float], inner: int, repeat: int) -> float:
    """Median over ``repeat`` samples of ``run(inner) / inner``, after one warm-up.

    ``run(k)`` performs the operation k times and returns the seconds it
    wants counted (so setup between iterations can be left out)."""
    run(1)
    return statistics.median(run(inner) / inner for _ in range(repeat))


def inner_for(nbytes: int, budget: int) -> int:
    return max(1, budget // max(nbytes, 1))


# ---------------------------------------------------------------- 1. apply


@dataclass
class Device:
    """A RAM-target device driven through the raw cffi calls (see native.Updater)."""

    n: Any
    weights: bytearray
    keep: list[Any]
    cfg: Any
    u: Any


def make_device(n: Any, old: bytes, buffer_len: int) -> Device:
    ffi = n.ffi
    weights = bytearray(old)
    wbuf = ffi.from_buffer("uint8_t[]", weights, require_writable=True)
    backup = ffi.new("uint8_t[]", old)
    fp = ffi.new("uint8_t[]", FINGERPRINT)
    buf = ffi.new("uint8_t[]", buffer_len)
    cfg = ffi.new("modelota_config*")
    cfg.target.ram = wbuf
    cfg.target.size = len(weights)
    cfg.backup.image = backup
    cfg.backup.version = OLD_VERSION
    cfg.fingerprint = fp
    cfg.current_version = OLD_VERSION
    cfg.buffer = buf
    cfg.buffer_len = buffer_len
    u = ffi.new("modelota_updater*")
    return Device(n, weights, [wbuf, backup, fp, buf], cfg, u)


def time_apply(dev: Device, payload: bytes, slice_len: int, inner: int, repeat: int) -> float:
    """Seconds per apply (begin .. finish); the reset (modelota_init) is not counted."""
    ffi, lib = dev.n.ffi, dev.n.lib
    src = ffi.from_buffer(payload)
    base = ffi.cast("uint8_t*", src)
    size = len(payload)
    slices = [(base + a, min(slice_len, size - a)) for a in range(0, size, slice_len)]
    u, cfg = dev.u, dev.cfg
    init, begin, feed, finish = (
        lib.modelota_init,
        lib.modelota_begin,
        lib.modelota_feed,
        lib.modelota_finish,
    )
    clock = time.perf_counter
    ok = lib.MODELOTA_OK

    def run(k: int) -> float:
        total = 0.0
        for _ in range(k):
            if init(u, cfg) != ok:  # back to OLD_VERSION: the payload applies again
                raise RuntimeError("modelota_init failed")
            t0 = clock()
            begin(u)
            for p, m in slices:
                feed(u, p, m)
            st = finish(u)
            total += clock() - t0
            if st != ok:
                raise RuntimeError(f"apply failed: {native.status_name(st)}")
        return total

    t = median_time(run, inner, repeat)
    del src
    return t


def time_calls(fn: Callable[..., object], args: tuple[Any, ...], inner: int, repeat: int) -> float:
    """Seconds per ``fn(*args)``, timed over ``inner`` back-to-back calls."""
    clock = time.perf_counter

    def run(k: int) -> float:
        t0 = clock()
        for _ in range(k):
            fn(*args)
        return clock() - t0

    return median_time(run, inner, repeat)


def time_memcpy(n: Any, data: bytes, inner: int, repeat: int) -> float:
    src = n.ffi.from_buffer(data)
    dst = n.ffi.new("uint8_t[]", len(data))
    return time_calls(n.ffi.memmove, (dst, src, len(data)), inner, repeat)


def bench_apply(n: Any, s: Settings, rng: Any) -> None:
    rows: list[list[str]] = []
    for size in s.sizes:
        old = rng.randbytes(size)
        new = rng.randbytes(size)
        inner = inner_for(size, s.budget)
        t_mem = time_memcpy(n, new, inner, s.repeat)
        for chunk in s.chunks:
            payload = fmt.pack(
                new, fingerprint=FINGERPRINT, version=NEW_VERSION, chunk_size=chunk
            ).encode()
            dev = make_device(n, old, max(chunk, fmt.HEADER_LEN))
            apply_inner = inner_for(size, s.budget // 2)
            t_sliced = time_apply(dev, payload, FEED_SLICE, apply_inner, s.repeat)
            t_whole = time_apply(dev, payload, len(payload), apply_inner, s.repeat)
            if bytes(dev.weights) != new:
                raise RuntimeError("weights differ from the payload after apply")
            rows.append(
                [
                    human(size),
                    str(chunk),
                    f"{len(payload):,}",
                    f"{(len(payload) - size) / size * 100:.1f}%",
                    mbps(size, t_mem),
                    mbps(size, t_sliced),
                    mbps(size, t_whole),
                    f"{t_sliced * 1e6:,.1f}",
                    f"{t_sliced / t_mem:,.1f}x",
                ]
            )
    table(
        f"1. Apply a full update (RAM target) vs memcpy of the same weight bytes"
        f"  [MB/s = 1e6 weight bytes/s, median of {s.repeat}]",
        [
            "model",
            "chunk",
            "payload B",
            "overhead",
            "memcpy MB/s",
            f"apply MB/s ({FEED_SLICE} B feeds)",
            "apply MB/s (1 feed)",
            "us/apply",
            "apply/memcpy time",
        ],
        rows,
        left=1,
    )


# ---------------------------------------------------------------- 2. CRC32


def bench_crc(n: Any, s: Settings, rng: Any) -> None:
    ffi, lib = n.ffi, n.lib
    rows: list[list[str]] = []
    for size in s.crc_sizes:
        data = rng.randbytes(size)
        ptr = ffi.from_buffer(data)
        if lib.modelota_crc32(0, ptr, size) != zlib.crc32(data):
            raise RuntimeError("modelota_crc32 disagrees with zlib.crc32")
        inner = inner_for(size, s.budget)
        t_native = time_calls(lib.modelota_crc32, (0, ptr, size), inner, s.repeat)
        t_zlib = time_calls(zlib.crc32, (data,), inner, s.repeat)
        rows.append(
            [
                human(size),
                mbps(size, t_native),
                mbps(size, t_zlib),
                f"{t_native / t_zlib:,.1f}x",
            ]
        )
    table(
        f"2. CRC32: modelota_crc32 (host build, MODELOTA_CRC32_TABLE=2) vs zlib.crc32"
        f"  [median of {s.repeat}]",
        ["buffer", "modelota MB/s", "zlib MB/s", "modelota/zlib time"],
        rows,
    )


# ---------------------------------------------------------------- 3-4. targets

PROBE = """\
#include "modelota.h"
modelota_updater probe_updater;
modelota_config probe_config;
unsigned char probe_cpp_updater[sizeof(modelota::Updater)];
"""
PROBE_SYMBOLS = ("probe_updater", "probe_config", "probe_cpp_updater")


def compile_obj(
    cxx: str, flags: Sequence[str], src: Path, out: Path, defines: Sequence[str] = ()
) -> str | None:
    """Compiles one object; returns an error line, or None on success."""
    cmd = [cxx, *SIZE_FLAGS, *flags, *defines, "-I", str(FIRMWARE), "-c", str(src), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
        return f"{cxx} failed on {src.name}: {first}"
    return None


def symbol_sizes(nm: str, obj: Path) -> dict[str, int]:
    out = subprocess.run([nm, "-S", str(obj)], capture_output=True, text=True, check=True).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4:
            sizes[f[3]] = int(f[1], 16)
    return sizes


@dataclass(frozen=True)
class Sections:
    """Section bytes of one object, grouped by kind (``size -A``)."""

    text: int
    rodata: int
    data: int
    bss: int

    def flash(self) -> int:
        return self.text + self.rodata + self.data

    def ram(self, rodata_in_ram: bool) -> int:
        return self.data + self.bss + (self.rodata if rodata_in_ram else 0)

    def __add__(self, o: Sections) -> Sections:
        return Sections(
            self.text + o.text, self.rodata + o.rodata, self.data + o.data, self.bss + o.bss
        )


def sections(size_tool: str, obj: Path) -> Sections:
    out = subprocess.run(
        [size_tool, "-A", str(obj)], capture_output=True, text=True, check=True
    ).stdout
    acc = {".text": 0, ".rodata": 0, ".data": 0, ".bss": 0}
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2 or not f[1].isdigit():
            continue
        if f[0].startswith(".progmem"):  # AVR PROGMEM data: flash only, counted with the code
            acc[".text"] += int(f[1])
            continue
        for kind in acc:
            if f[0] == kind or f[0].startswith(kind + "."):
                acc[kind] += int(f[1])
    return Sections(acc[".text"], acc[".rodata"], acc[".data"], acc[".bss"])


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def bench_ram(n: Any, tmp: Path, notes: list[str]) -> None:
    ffi = n.ffi
    probe = tmp / "probe.cpp"
    probe.write_text(PROBE)
    lent = f"lent by caller, >= max({fmt.HEADER_LEN}, chunk)"
    rows: list[list[str]] = [
        [
            f"host {platform.machine()} (cffi sizeof)",
            str(ffi.sizeof("modelota_updater")),
            str(ffi.sizeof("modelota_config")),
            "-",
            lent,
        ]
    ]
    host = Target(f"host {platform.machine()} (g++ -Os)", "g++", "size", "nm", (), False)
    for t in (host, *CROSS_TARGETS):
        if not have(t.cxx, t.nm):
            notes.append(f"RAM: {t.label} skipped ({t.cxx} or {t.nm} not found)")
            continue
        obj = tmp / f"probe-{t.cxx}.o"
        err = compile_obj(t.cxx, t.flags, probe, obj)
        if err:
            notes.append(f"RAM: {t.label} skipped ({err})")
            continue
        sizes = symbol_sizes(t.nm, obj)
        rows.append([t.label, *(str(sizes.get(sym, "?")) for sym in PROBE_SYMBOLS), lent])
        built = ffi.sizeof("modelota_updater")
        if t is host and sizes.get("probe_updater", built) != built:
            notes.append(
                f"RAM: the installed native module's modelota_updater is {built} bytes, the"
                f" headers now give {sizes['probe_updater']}: tables 1-2 measure an older build"
            )
    table(
        "3. RAM held by the Updater (bytes; no heap, no copy of the model)",
        [
            "target",
            "modelota_updater",
            "modelota_config",
            "modelota::Updater (C++)",
            "chunk buffer",
        ],
        rows,
    )


def bench_code_size(tmp: Path, notes: list[str]) -> None:
    rows: list[list[str]] = []
    knob_rows: list[list[str]] = []
    core = FIRMWARE / "modelota"
    for t in CROSS_TARGETS:
        if not have(t.cxx, t.size):
            notes.append(f"code size: {t.label} skipped ({t.cxx} or {t.size} not found)")
            continue

        def measure(src: Path, tag: str, defines: Sequence[str] = (), t: Target = t) -> Sections:
            obj = tmp / f"{t.cxx}-{tag}.o"
            err = compile_obj(t.cxx, t.flags, src, obj, defines)
            if err:
                raise RuntimeError(err)
            return sections(t.size, obj)

        try:
            objs = [(name, measure(core / name, name)) for name in CORE_SOURCES]
            knobs = [
                measure(core / "crc32.cpp", f"crc{k}", [f"-DMODELOTA_CRC32_TABLE={k}"])
                for k in (0, 1, 2)
            ]
            knobs.append(measure(core / "status.cpp", "nostr", ["-DMODELOTA_STATUS_STRINGS=0"]))
        except RuntimeError as e:
            notes.append(f"code size: {t.label} skipped ({e})")
            continue
        total = Sections(0, 0, 0, 0)
        for name, sec in [*objs, ("total", sum((o for _, o in objs), total))]:
            rows.append(
                [
                    t.label,
                    name,
                    *(str(v) for v in (sec.text, sec.rodata, sec.data, sec.bss)),
                    str(sec.flash()),
                    str(sec.ram(t.rodata_in_ram)),
                ]
            )
        knob_rows.append([t.label, *(f"{k.flash()} / {k.ram(t.rodata_in_ram)}" for k in knobs)])
    if rows:
        table(
            "4. Code size of firmware_lib at -Os, unlinked objects (bytes; static RAM counts"
            " .rodata on AVR, where avr-libc copies it to SRAM)\n   flags: " + " ".join(SIZE_FLAGS),
            ["target", "object", ".text", ".rodata", ".data", ".bss", "flash", "static RAM"],
            rows,
            left=2,
        )
    if knob_rows:
        table(
            "4b. Config knobs (config.h): flash / static RAM bytes of the one object they change",
            [
                "target",
                "crc32.cpp TABLE=0 (bitwise)",
                "TABLE=1 (nibble)",
                "TABLE=2 (byte)",
                "status.cpp STATUS_STRINGS=0",
            ],
            knob_rows,
        )
    if knob_rows:
        print(
            "   defaults: CRC32_TABLE=1 on AVR, 2 elsewhere; STATUS_STRINGS=1"
            " (the rows of table 4)."
        )


# ---------------------------------------------------------------- main


def build_info(n: Any) -> str:
    """Which native module is measured, and whether it matches the sources."""
    where = getattr(n, "__file__", "?")
    try:
        built = n.ffi.string(n.lib.MODELOTA_SOURCE_HASH).decode()
    except AttributeError:
        built = "?"
    try:
        spec = importlib.util.spec_from_file_location("_bench_build", ROOT / "sim/build_native.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        current = str(mod.source_hash())
    except Exception:  # informational only
        current = "?"
    state = "matches sources" if built == current else f"sources now {current}: rebuild?"
    return f"{os.path.relpath(where, ROOT)} (source hash {built}, {state})"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="a few seconds: small sizes, 3 repeats")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random weight bytes")
    args = ap.parse_args(argv)
    s = QUICK if args.quick else FULL

    rng = random.Random(args.seed)
    n = native.load()
    start = time.perf_counter()
    print("ModelOTA core benchmark" + (" (--quick)" if args.quick else ""))
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"native: {build_info(n)}")
    print(f"native compiled with Python's extension flags: {sysconfig.get_config_var('OPT')}")

    bench_apply(n, s, rng)
    bench_crc(n, s, rng)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelota-bench-") as d:
        bench_ram(n, Path(d), notes)
        bench_code_size(Path(d), notes)
    for note in notes:
        print(f"note: {note}")
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
