#!/usr/bin/env python3
"""What signed payloads cost: code size, RAM and whole-update time.

    python bench/bench_security.py

1. code size of the Updater + Store at -Os on AVR and Cortex-M4 (unlinked
   objects, text + rodata + data) with the config.h switches
   MODELOTA_SHA256 / MODELOTA_SIGNATURES off and on, and of the primitives
   they pull in (sha256.cpp, sha512.cpp + ed25519.cpp);
2. sizeof(modelota_updater) with and without the embedded SHA-256 context;
3. a whole update on the host (native core through cffi): the same 64 KiB
   full payload with a CRC32 digest, a SHA-256 digest and signed, applied to
   a RAM model (and with the Store on a simulated flash), time and bytes.

The primitives' own cycle counts on the boards are in bench/bench_crypto.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_core", ROOT / "bench" / "bench_core.py")
assert _spec is not None and _spec.loader is not None
core = importlib.util.module_from_spec(_spec)
sys.modules["bench_core"] = core
_spec.loader.exec_module(core)

from modelota.format import signing as keys  # noqa: E402
from modelota.format.payload import pack  # noqa: E402
from modelota.sim.device import FlashModelDevice, Layout  # noqa: E402
from modelota.sim.flash import SimFlash  # noqa: E402
from modelota.sim.native import Updater  # noqa: E402

FIRMWARE = ROOT / "firmware_lib" / "modelota"
SEED = hashlib.sha256(b"bench key").digest()
PUB = keys.public_from_private(SEED)
CONFIGS = (
    ("CRC32 only (SHA256=0)", ["-DMODELOTA_SHA256=0", "-DMODELOTA_SIGNATURES=0"]),
    ("+ SHA-256 digest", ["-DMODELOTA_SHA256=1", "-DMODELOTA_SIGNATURES=0"]),
    ("+ Ed25519 signatures", ["-DMODELOTA_SHA256=1", "-DMODELOTA_SIGNATURES=1"]),
)


def code_size(tmp: Path, notes: list[str]) -> None:
    rows: list[list[str]] = []
    for t in core.CROSS_TARGETS:
        if not core.have(t.cxx, t.size):
            notes.append(f"code size: {t.label} skipped ({t.cxx} not found)")
            continue

        def flash(src: str, defines: list[str], tag: str, t: Any = t) -> int:
            obj = tmp / f"{t.cxx}-{src}-{tag}.o"
            err = core.compile_obj(t.cxx, t.flags, FIRMWARE / src, obj, defines)
            if err:
                raise RuntimeError(err)
            return int(core.sections(t.size, obj).flash())

        sha256 = flash("sha256.cpp", [], "p")
        ed = flash("sha512.cpp", [], "p") + flash("ed25519.cpp", [], "p")
        base = None
        for i, (label, defines) in enumerate(CONFIGS):
            units = ("decode.cpp", "updater.cpp", "store.cpp")
            glue = sum(flash(f, defines, str(i)) for f in units)
            prims = (sha256 if i >= 1 else 0) + (ed if i >= 2 else 0)
            total = glue + prims
            base = total if base is None else base
            rows.append([t.label, label, str(glue), str(prims), str(total), f"+{total - base}"])
    core.table(
        "1. Code size at -Os, bytes of flash (unlinked objects)",
        ["target", "config", "decode+updater+store", "primitives", "total", "vs CRC32 only"],
        rows,
        left=2,
    )


PROBE = '#include "modelota.h"\nmodelota_updater probe_updater;\n'


def ram(tmp: Path, notes: list[str]) -> None:
    probe = tmp / "probe.cpp"
    probe.write_text(PROBE)
    rows = []
    host = core.Target("host (g++)", "g++", "size", "nm", (), False)
    for t in (host, *core.CROSS_TARGETS):
        if not core.have(t.cxx, t.nm):
            notes.append(f"RAM: {t.label} skipped")
            continue
        cells = [t.label]
        for i, (_, defines) in enumerate(CONFIGS[:2]):
            obj = tmp / f"probe-{t.cxx}-{i}.o"
            err = core.compile_obj(t.cxx, t.flags, probe, obj, defines)
            cells.append("?" if err else str(core.symbol_sizes(t.nm, obj)["probe_updater"]))
        rows.append(cells)
    core.table(
        "2. sizeof(modelota_updater), bytes (signatures add no Updater state;"
        " the verify runs on the stack)",
        ["target", "SHA256=0", "SHA256=1"],
        rows,
    )


def median(fn: Any, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def whole_update() -> None:
    rnd = random.Random(1)
    size = 64 * 1024
    old, new = rnd.randbytes(size), rnd.randbytes(size)
    variants = {
        "CRC32": pack(new, fingerprint=bytes(16), version=2, chunk_size=1024),
        "SHA-256": pack(new, fingerprint=bytes(16), version=2, chunk_size=1024, digest="sha256"),
        "SHA-256 + Ed25519": pack(
            new, fingerprint=bytes(16), version=2, chunk_size=1024, sign_key=SEED
        ),
    }
    rows = []
    base_t = {}
    for label, p in variants.items():
        raw = p.encode()
        key = PUB if p.header.is_signed else None
        splits = list(range(512, len(raw), 512))

        def ram_update(
            raw: bytes = raw, key: bytes | None = key, splits: list[int] = splits
        ) -> None:
            dev = Updater(bytearray(old), fingerprint=bytes(16), current_version=1,
                          public_key=key, buffer_len=1024)  # fmt: skip
            assert dev.apply(raw, splits) == 0

        def store_update(raw: bytes = raw, key: bytes | None = key) -> None:
            layout = Layout.plan(4096, 16, size, len(raw) + 4096)
            flash = SimFlash(4096, layout.block_count, 16)
            flash.load(0, old)
            dev = FlashModelDevice(flash, layout, bytes(16), 1, buffer_len=1024, public_key=key)
            assert dev.boot() == 0 and dev.update(raw, piece=512) == 0

        t_ram, t_store = median(ram_update, 9), median(store_update, 9)
        base_t.setdefault("ram", t_ram)
        base_t.setdefault("store", t_store)
        rows.append([
            label, str(len(raw)), f"{t_ram * 1e3:.2f}", f"{t_ram / base_t['ram']:.2f}x",
            f"{t_store * 1e3:.1f}", f"{t_store / base_t['store']:.2f}x",
        ])  # fmt: skip
    core.table(
        "3. Whole update of a 64 KiB model on the host (512-byte feeds, 1 KiB chunks; median)",
        ["payload", "bytes", "RAM model ms", "vs CRC32", "flash + Store ms", "vs CRC32"],
        rows,
    )


def main() -> int:
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as d:
        code_size(Path(d), notes)
        ram(Path(d), notes)
    whole_update()
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
