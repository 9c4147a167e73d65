#!/usr/bin/env python3
"""Bytes over the air, measured in one run: wire format v1 and v2 against
TinyMLDelta's patch, `xz -9` and zlib -9, and what decoding v2 costs on the
device.

    python bench/bench_size.py            # everything (trains the models on the first run)
    python bench/bench_size.py --quick    # two small architectures, no device timing

Model pairs (bench/trained_models.py): real training, every pair two
``.tflite`` files of one architecture: trained twice from different seeds,
fine-tuned a few epochs, last layer retrained; float32 and int8; an MLP of
2 K parameters up to a CNN of 150 K (625 KB float); and twins of the models
the tflite-micro pip package ships (its sine model fine-tuned and retrained).
The .tflite files are cached under --cache (default ~/.cache/modelota-bench).

Tables printed (docs/BENCHMARKS.md explains them and quotes a run):

1. full payloads: v1, v2, `xz -9` and zlib -9 of the v1 payload; v2 / xz;
2. delta payloads: v1, v2, TinyMLDelta's patch (its generator, run as a
   program: ``crash`` when it fails), `xz -9` and zlib -9 of the v1 delta
   (the changed bytes and their framing); v2 / TinyMLDelta, v2 / xz;
   the goals: v2 delta <= 0.9x TinyMLDelta, v2 <= 1.05x xz -9 of v1;
2b. the pairs that miss the TinyMLDelta goal against their order-0 floors
   (size_floor.py: each changed field's byte lanes at their entropy, given or
   learnt, plus framing; without the bias scales TFLite writes as exact
   products of other scales; and the delta without PRED, which predicts the
   weights' scales from them);
3. v2 bytes by chunk encoding over all pairs;
4. decoding cost on the Cortex-M4 (QEMU mps2-an386, -icount: instructions
   per output byte) and the ATmega2560 (simavr, cycle accurate: cycles per
   output byte, and whether a whole update keeps up with 115200 baud);
5. code size of the decoder per target;
6. why these encodings: v2 with parts switched off (lanes, differences, runs,
   the range coder), next to zlib -9 and `xz -9` of the v1 payloads and an
   LZ whose dictionary is the base (xz of base + changed bytes, minus xz of
   the base), summed over the pairs of the MLPs and the int8 CNN.

Nothing asserts on a timing. The script fails only when something is wrong:
a payload that does not apply to the exact new model (checked with the
Python reference for every payload, and with the native Updater), or a
device decode that differs from the packer's bytes.
"""

from __future__ import annotations

import argparse
import lzma
import os
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import modelota  # noqa: F401  (installed editable in the venv)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "host_tools"))

import trained_models  # noqa: E402
from bench_crypto import table  # noqa: E402
from size_floor import Floor, delta_floor  # noqa: E402

from modelota.format.payload import Device, Payload, apply_reference  # noqa: E402
from modelota.models.tflite import pack_tflite  # noqa: E402
from modelota.status import Status  # noqa: E402

PEER = Path(os.environ.get("TINYMLDELTA", "/work/shared/peers/tinymldelta/cli"))
PEER_GEN = PEER / "tinymldelta_patchgen.py"
CHUNK = 1024  # the device's chunk buffer the payloads are packed for
TMD_GOAL = 0.9
XZ_GOAL = 1.05

notes: list[str] = []


def note(msg: str) -> None:
    notes.append(msg)


def xz(data: bytes) -> int:
    return len(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))


def zl(data: bytes) -> int:
    return len(zlib.compress(data, 9))


def tinymldelta(old: bytes, new: bytes, tmp: Path) -> int | str:
    """Size of TinyMLDelta's patch, or "crash" / "n/a"."""
    if not PEER_GEN.is_file():
        return "n/a"
    a, b, out = tmp / "base.tflite", tmp / "target.tflite", tmp / "patch.tmd"
    a.write_bytes(old)
    b.write_bytes(new)
    out.unlink(missing_ok=True)
    p = subprocess.run([sys.executable, str(PEER_GEN), str(a), str(b), str(out)],
                       capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    if p.returncode != 0 or not out.is_file():
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        note(f"TinyMLDelta failed: {last[:120]}")
        return "crash"
    return out.stat().st_size


@dataclass
class Sizes:
    name: str
    v1_full: int
    v2_full: int
    v1_delta: int
    v2_delta: int
    xz_full: int
    zlib_full: int
    xz_delta: int
    zlib_delta: int
    tmd: int | str
    by_encoding: dict[str, int] = field(default_factory=dict)
    floor: Floor | None = None  # of the delta (size_floor.py)
    no_pred: int | None = None  # the delta without PRED (int8 pairs)


def check_applies(payload: Payload, old: bytes, new: bytes, what: str) -> None:
    """The payload turns ``old`` into exactly the file ``new`` carries, per the
    Python reference and the native Updater."""
    from modelota.models.tflite import read_tflite, rebase

    want = rebase(read_tflite(old), read_tflite(new))
    raw = payload.encode()
    dev = Device(payload.header.fingerprint, 1, bytearray(old), CHUNK)
    w = apply_reference(raw, dev)
    if w.status != Status.Ok or bytes(dev.weights) != want:
        raise SystemExit(f"FAIL: {what}: the reference applier gave {w.status.name}")
    try:
        from modelota.sim.native import Updater
    except ImportError:
        return
    u = Updater(bytearray(old), fingerprint=payload.header.fingerprint, current_version=1,
                buffer_len=CHUNK)  # fmt: skip
    if u.apply(raw) != Status.Ok or bytes(u.weights) != want:
        raise SystemExit(f"FAIL: {what}: the native Updater did not apply it")


def measure(pair: trained_models.Pair, tmp: Path) -> Sizes:
    def pk(fmt: int, delta: bool) -> Payload:
        p = pack_tflite(pair.old, pair.new, version=2, base_version=1 if delta else None,
                        delta=delta, chunk_size=CHUNK, format_version=fmt)  # fmt: skip
        check_applies(p, pair.old, pair.new, f"{pair.name} v{fmt} {'delta' if delta else 'full'}")
        return p

    v1f, v2f, v1d, v2d = pk(1, False), pk(2, False), pk(1, True), pk(2, True)
    r1f, r1d = v1f.encode(), v1d.encode()
    by_enc: dict[str, int] = {}
    for p in (v2f, v2d):
        for name, (_, nbytes, _) in p.encoding_stats().items():
            by_enc[name] = by_enc.get(name, 0) + nbytes
    return Sizes(
        pair.name, len(r1f), len(v2f.encode()), len(r1d), len(v2d.encode()),
        xz(r1f), zl(r1f), xz(r1d), zl(r1d), tinymldelta(pair.old, pair.new, tmp), by_enc,
        delta_floor(pair.old, pair.new, v2d),
        len(pack_tflite(pair.old, pair.new, version=2, base_version=1, delta=True,
                        chunk_size=CHUNK, encodings=WITHOUT_PRED).encode())
        if pair.name.endswith("int8") else None,
    )  # fmt: skip


def ratio(a: int, b: int | str) -> str:
    return f"{a / b:.2f}" if isinstance(b, int) and b > 0 else "-"


def size_tables(results: list[Sizes]) -> None:
    rows = []
    for r in results:
        rows.append([r.name, r.v1_full, r.v2_full, r.xz_full, r.zlib_full,
                     ratio(r.v2_full, r.v1_full), ratio(r.v2_full, r.xz_full),
                     "ok" if r.v2_full <= XZ_GOAL * r.xz_full else "MISS"])  # fmt: skip
    table("1. Full payloads (bytes): every weight of the new model",
          ["pair", "v1", "v2", "xz -9 v1", "zlib -9 v1", "v2/v1", "v2/xz", f"<= {XZ_GOAL}x xz"],
          rows)  # fmt: skip
    rows = []
    for r in results:
        tmd_ok = "-" if not isinstance(r.tmd, int) else (
            "ok" if r.v2_delta <= TMD_GOAL * r.tmd else "MISS")  # fmt: skip
        rows.append([r.name, r.v1_delta, r.v2_delta, r.tmd, r.xz_delta, r.zlib_delta,
                     ratio(r.v2_delta, r.tmd), ratio(r.v2_delta, r.xz_delta), tmd_ok,
                     "ok" if r.v2_delta <= XZ_GOAL * r.xz_delta else "MISS"])  # fmt: skip
    table("2. Delta payloads (bytes): only what changed; TinyMLDelta = its patch generator",
          ["pair", "v1", "v2", "TinyMLDelta", "xz -9 v1", "zlib -9 v1", "v2/TMD", "v2/xz",
           f"<= {TMD_GOAL}x TMD", f"<= {XZ_GOAL}x xz"], rows)  # fmt: skip
    tmd_pairs = [r for r in results if isinstance(r.tmd, int)]
    tmd_met = sum(r.v2_delta <= TMD_GOAL * r.tmd for r in tmd_pairs)  # type: ignore[operator]
    xz_met = sum(r.v2_delta <= XZ_GOAL * r.xz_delta and r.v2_full <= XZ_GOAL * r.xz_full
                 for r in results)  # fmt: skip
    xz_stretch = sum(r.v2_delta <= r.xz_delta and r.v2_full <= r.xz_full for r in results)
    crashes = sum(r.tmd == "crash" for r in results)
    print(f"\n   goals: v2 delta <= {TMD_GOAL}x TinyMLDelta on {tmd_met} of {len(tmd_pairs)} pairs"
          f" it handles (it crashed on {crashes}); v2 full and delta <= {XZ_GOAL}x xz -9 of v1"
          f" on {xz_met} of {len(results)} pairs (<= 1.0x on {xz_stretch})")  # fmt: skip
    tot = {k: sum(getattr(r, k) for r in results) for k in
           ("v1_full", "v2_full", "xz_full", "v1_delta", "v2_delta", "xz_delta")}  # fmt: skip
    print(f"   all pairs: full v2/v1 {tot['v2_full'] / tot['v1_full']:.3f},"
          f" v2/xz {tot['v2_full'] / tot['xz_full']:.3f}; delta v2/v1"
          f" {tot['v2_delta'] / tot['v1_delta']:.3f},"
          f" v2/xz {tot['v2_delta'] / tot['xz_delta']:.3f}")
    floor_table(results)
    by_enc: dict[str, int] = {}
    for r in results:
        for k, v in r.by_encoding.items():
            by_enc[k] = by_enc.get(k, 0) + v
    total = sum(by_enc.values())
    table("3. v2 bytes over the air by chunk encoding (full and delta payloads of every pair)",
          ["encoding", "bytes", "share"],
          [[k, v, f"{100 * v / total:.1f}%"]
           for k, v in sorted(by_enc.items(), key=lambda kv: -kv[1])])  # fmt: skip


def floor_table(results: list[Sizes]) -> None:
    """Table 2b: each pair that misses the goal against TinyMLDelta, next to
    its order-0 floor (size_floor.py): how much of the miss a better byte
    model could still take."""
    rows = []
    for r in results:
        if not isinstance(r.tmd, int) or r.v2_delta <= TMD_GOAL * r.tmd or r.floor is None:
            continue
        f = r.floor
        adaptive, without = f.total(True), f.total(True, without_bias=True)
        no_pred = "-" if r.no_pred is None else f"{r.no_pred} ({r.no_pred / r.tmd:.3f})"
        rows.append([r.name, r.v2_delta, int(TMD_GOAL * r.tmd), f.framing,
                     f"{f.total(False):.0f}", f"{adaptive:.0f}", f"{without:.0f}",
                     f"{adaptive / r.tmd:.3f}", f"{without / r.tmd:.3f}", no_pred])  # fmt: skip
    if not rows:
        return
    table("2b. The misses against their order-0 floors (bytes, size_floor.py): every changed"
          " field's byte lanes at their entropy (static) or under the KT learner (adaptive),"
          " plus v2's framing",
          ["pair", "v2", "goal", "framing", "static floor", "adaptive floor",
           "w/o bias scales", "adaptive / TMD", "w/o bias scales / TMD",
           "v2 w/o PRED (/ TMD)"], rows)  # fmt: skip
    print("   w/o bias scales: the adaptive floor less the bias scale vectors that are, bit for"
          " bit, the float32 product of the input scale and the weights' scales (no information"
          " of their own; v2 codes them as numbers)")
    print("   v2 w/o PRED: the delta without predicting the weights' scales from the bias"
          " scales (docs/FORMAT.md, KEEP and PRED)")


WITHOUT_PRED = ("runs", "rc", "diff", "lanes")
ABLATIONS = {
    "v2 (all)": ("runs", "rc", "diff", "lanes", "pred"),
    "v2 without pred": WITHOUT_PRED,
    "v2 without lanes": ("runs", "rc", "diff", "pred"),
    "v2 without diff": ("runs", "rc", "lanes", "pred"),
    "v2 without runs": ("rc", "diff", "lanes", "pred"),
    "v2 rc only": ("rc",),
    "v2 runs and diff only": ("runs", "diff"),
    "v2 raw only (framing)": ("raw",),
}


def ablation_table(pairs: list[trained_models.Pair]) -> None:
    chosen = [p for p in pairs if not p.name.startswith("cnn/") or p.name.endswith("int8")]
    totals: dict[str, list[int]] = {}
    for pair in chosen:
        for name, enc in ABLATIONS.items():
            row = totals.setdefault(name, [0, 0])
            for i, delta in enumerate((False, True)):
                pay = pack_tflite(pair.old, pair.new, version=2, base_version=1 if delta else None,
                                  delta=delta, chunk_size=CHUNK, encodings=enc)  # fmt: skip
                row[i] += len(pay.encode())
        v1 = [pack_tflite(pair.old, pair.new, version=2, base_version=1 if d else None, delta=d,
                          chunk_size=CHUNK, format_version=1) for d in (False, True)]  # fmt: skip
        for name, fn in (("v1", len), ("zlib -9 of v1", zl), ("xz -9 of v1", xz)):
            row = totals.setdefault(name, [0, 0])
            row[0] += fn(v1[0].encode())
            row[1] += fn(v1[1].encode())
        changed = b"".join(c.data for c in v1[1].chunks)  # type: ignore[union-attr]
        row = totals.setdefault("xz, base as dictionary", [0, 0])
        row[0] = -1
        row[1] += max(0, xz(pair.old + changed) - xz(pair.old))
    base = totals["v2 (all)"]
    rows = [[name, str(f) if f >= 0 else "-", str(d), f"{f / base[0]:.3f}" if f >= 0 else "-",
             f"{d / base[1]:.3f}"] for name, (f, d) in totals.items()]  # fmt: skip
    table(f"6. Why these encodings: bytes summed over {len(chosen)} pairs (the MLPs, the int8"
          " CNN, sine), full and delta", ["variant", "full", "delta", "full / v2", "delta / v2"],
          rows)  # fmt: skip


# ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small models only, no device timing")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "modelota-bench",
                    help="where trained .tflite pairs are kept between runs")  # fmt: skip
    ap.add_argument("--no-device", action="store_true", help="skip the M4 and AVR timing")
    args = ap.parse_args()
    archs = ["mlp-small", "autoencoder"] if args.quick else None
    print(f"bench_size: chunk buffer {CHUNK} B; TinyMLDelta from {PEER_GEN}")
    pairs = trained_models.build_pairs(args.cache, archs) + trained_models.shipped_pairs()
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for pair in pairs:
            results.append(measure(pair, tmp))
            print(f"   measured {pair.name}", file=sys.stderr)
        size_tables(results)
        if not (args.quick or args.no_device):
            import device_decode

            device_decode.run_all(tmp, pairs, note, table)
        if not args.quick:
            ablation_table(pairs)
    for n in dict.fromkeys(notes):
        print(f"note: {n}")


if __name__ == "__main__":
    main()
