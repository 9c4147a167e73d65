"""Storage cost of each update mode, measured on the simulated NOR flash.

For each mode (RAM model without persistence, RAM model with the Store,
flash-resident model) and each payload (full rewrite, small delta), prints the
storage operations of one update, erases and programmed bytes per updated
weight byte, the most-erased block (wear), and the RAM the mode adds beyond
the Updater. Everything is counted in one run; nothing is timed.

    python bench/bench_store.py [--size BYTES] [--block BYTES] [--prog BYTES]
"""

from __future__ import annotations

import argparse
import random

from modelota import Status, pack
from modelota.sim.device import FlashModelDevice, Layout, RamModelDevice
from modelota.sim.flash import SimFlash
from modelota.sim.native import Updater, load
from modelota.sim.sweep import FP


def payloads(size: int, seed: int = 1) -> tuple[bytes, bytes, dict[str, tuple[bytes, int]]]:
    rnd = random.Random(seed)
    v1, v2 = rnd.randbytes(size), rnd.randbytes(size)
    v3 = bytearray(v2)
    for at in (size // 7, size // 2, size - 40):
        v3[at : at + 24] = rnd.randbytes(24)
    full = pack(v2, fingerprint=FP, version=2, chunk_size=512).encode()
    delta = pack(
        bytes(v3), fingerprint=FP, version=3, chunk_size=512, base=v2, base_version=2
    ).encode()
    changed = sum(a != b for a, b in zip(v2, v3, strict=True))
    return v1, v2, {"full": (full, size), "delta": (delta, changed)}


def measure(size: int, block: int, prog: int) -> list[tuple[str, ...]]:
    n = load()
    v1, v2, kinds = payloads(size)
    largest = max(len(p) for p, _ in kinds.values())
    layout = Layout.plan(block, prog, size, largest)
    store_ram = n.ffi.sizeof("modelota_store") + block
    rows: list[tuple[str, ...]] = []
    for kind, (payload, updated) in kinds.items():
        # RAM model, no persistence: the issue-[1] core, restore from a factory image
        base = v2 if kind == "delta" else v1
        dev = Updater(
            bytearray(base),
            fingerprint=FP,
            current_version=2 if kind == "delta" else 1,
            backup=base,
        )
        assert dev.apply(payload) == Status.Ok
        rows.append(
            (
                "RAM, no persistence",
                kind,
                str(len(payload)),
                str(updated),
                "0",
                "0",
                "0.000",
                "0.00",
                "0",
                "0",
            )
        )
        for mode in ("RAM + Store", "flash-resident"):
            flash = SimFlash(block, layout.block_count, prog)
            if mode == "flash-resident":
                flash.load(0, v1)
                d: FlashModelDevice | RamModelDevice = FlashModelDevice(flash, layout, FP, 1)
            else:
                d = RamModelDevice(flash, layout, FP, v1, 1)
            assert d.boot() == Status.Ok
            if kind == "delta":
                assert d.update(kinds["full"][0]) == Status.Ok
            counts = list(flash.erase_counts)
            e0, p0, o0, b0 = flash.erases, flash.progs, flash.ops, flash.bytes_programmed
            assert d.update(payload) == Status.Ok
            erases = flash.erases - e0
            wear = max(a - b for a, b in zip(flash.erase_counts, counts, strict=True))
            rows.append(
                (
                    mode,
                    kind,
                    str(len(payload)),
                    str(updated),
                    str(flash.ops - o0),
                    f"{erases}/{flash.progs - p0}",
                    f"{erases / updated:.3f}",
                    f"{(flash.bytes_programmed - b0) / updated:.2f}",
                    str(wear),
                    str(store_ram),
                )
            )
    return rows


def render(rows: list[tuple[str, ...]]) -> str:
    head = (
        "mode",
        "payload",
        "bytes",
        "updated B",
        "ops",
        "erase/prog",
        "erases/B",
        "prog B/B",
        "max wear",
        "extra RAM B",
    )
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=65536, help="model size in bytes")
    ap.add_argument("--block", type=int, default=4096, help="erase block size")
    ap.add_argument("--prog", type=int, default=16, help="program unit")
    args = ap.parse_args()
    print(
        f"model {args.size} B, flash blocks {args.block} B, prog {args.prog} B"
        f" (simulated NOR flash; extra RAM = modelota_store + one block buffer)"
    )
    print(render(measure(args.size, args.block, args.prog)))


if __name__ == "__main__":
    main()
