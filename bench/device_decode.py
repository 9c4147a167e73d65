"""Tables 4 and 5 of bench/bench_size.py: what decoding v2 costs on the device.

Vectors come from the bench's real model pairs (the largest weight tensor of
the CNN, as int8 and float32; its fine-tune for the differences): encoded by
the packer's codec (format/codec.py), compiled into sim/boards/decode_bench.h
for the Cortex-M4 (QEMU mps2-an386, -icount: instructions) and the
ATmega2560 (simavr, cycle accurate: cycles). The boards check every decoded
chunk against the packer's CRC32 and every applied region against the new
weights; a mismatch fails the bench.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelota.format import codec
from modelota.format.payload import pack

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_lib"
MODELOTA = FIRMWARE / "modelota"
BOARDS = ROOT / "sim" / "boards"
PIECE = 64  # bytes handed to the decoder at a time, as a UART driver would
CHUNK = 512  # decoded bytes per chunk (the AVR lends a 512-byte buffer here)
CASE_BYTES = 2048  # decoded bytes per case
REGION = 2048  # model size for the whole-update runs (fits the Mega's RAM)
M4_TICK_INSNS = 40  # 25 MHz SysTick, 1 instruction per ns under -icount shift=0
AVR_HZ = 16_000_000
BAUD_BYTES = 115_200 // 10  # 8N1: 11,520 bytes per second
STRICT = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-fno-exceptions",
          "-fno-rtti", "-ffunction-sections", "-fdata-sections"]  # fmt: skip
FP = bytes(range(16))


@dataclass
class Case:
    name: str
    chunks: list[tuple[int, int, bytes, bytes, bytes]]  # enc, offset, body, base, decoded


@dataclass
class Apply:
    name: str
    payload: bytes
    old: bytes
    new: bytes


def largest_tensor(old: bytes, new: bytes) -> tuple[int, bytes, bytes]:
    from modelota.models.tflite import read_tflite

    m = read_tflite(old)
    t = max((t for t in m.tensors if t.constant), key=lambda t: t.data_length)
    a = t.data_offset or 0
    return a, old[a : a + t.data_length], new[a : a + t.data_length]


def busiest(offset: int, old: bytes, new: bytes) -> tuple[int, bytes, bytes]:
    """The CASE_BYTES window (chunk aligned) of a tensor where most bytes change."""
    a = np.frombuffer(old, np.uint8)
    b = np.frombuffer(new, np.uint8)
    best = max(range(0, len(old) - CASE_BYTES + 1, CHUNK),
               key=lambda s: int(np.count_nonzero(a[s : s + CASE_BYTES] != b[s : s + CASE_BYTES])))
    return offset + best, old[best : best + CASE_BYTES], new[best : best + CASE_BYTES]


def coded_case(name: str, enc: int, offset: int, new: bytes, old: bytes | None) -> Case:
    model = codec.Model()
    chunks = []
    for at in range(0, CASE_BYTES, CHUNK):
        piece = new[at : at + CHUNK]
        base = old[at : at + CHUNK] if old is not None else b""
        stream = codec.sub_base(piece, base) if enc & codec.DIFF else piece
        method = enc & codec.METHOD_MASK
        if method == codec.RC:
            body = codec.rc_encode(stream, offset + at, bool(enc & codec.LANES), model)
        elif method == codec.RUNS:
            body = codec.runs_encode(stream)
        else:
            body = stream
        chunks.append((enc, offset + at, body, base, piece))
    return Case(name, chunks)


def build_cases(pairs: dict[str, tuple[bytes, bytes]]) -> tuple[list[Case], list[Apply]]:
    rnd = np.random.default_rng(3)
    off, _, seed_i8 = largest_tensor(*pairs["cnn/seed/int8"])
    offf, _, seed_f32 = largest_tensor(*pairs["cnn/seed/float"])
    offt, tune_old, tune_new = busiest(*largest_tensor(*pairs["cnn/finetune/int8"]))
    offtf, tunef_old, tunef_new = busiest(*largest_tensor(*pairs["cnn/finetune/float"]))
    w = np.frombuffer(seed_i8, dtype=np.int8).copy()
    w[np.abs(w.astype(int)) < np.quantile(np.abs(w.astype(int)), 0.8)] = 0  # pruned 80%
    cases = [
        coded_case("raw (random bytes)", codec.RAW, 0, rnd.bytes(CASE_BYTES), None),
        coded_case("runs (int8, 80% pruned)", codec.RUNS, off, w.tobytes(), None),
        coded_case("rc (int8 weights)", codec.RC, off, seed_i8, None),
        coded_case("rc+lanes (float32 weights)", codec.RC | codec.LANES, offf, seed_f32, None),
        coded_case("rc+diff (int8 fine-tune)", codec.RC | codec.DIFF, offt, tune_new, tune_old),
        coded_case(
            "rc+diff+lanes (float fine-tune)",
            codec.RC | codec.DIFF | codec.LANES,
            offtf,
            tunef_new,
            tunef_old,
        ),
    ]
    _, old_i8, _ = largest_tensor(*pairs["cnn/seed/int8"])
    applies = []
    for name, old, new, delta, fmt in (
        ("v1 full, int8", old_i8[:REGION], seed_i8[:REGION], False, 1),
        ("v2 full, int8", old_i8[:REGION], seed_i8[:REGION], False, 2),
        ("v2 full, float32", seed_f32[REGION : 2 * REGION], seed_f32[:REGION], False, 2),
        ("v2 delta, int8 fine-tune", tune_old[:REGION], tune_new[:REGION], True, 2),
    ):
        p = pack(new, fingerprint=FP, version=2, chunk_size=CHUNK, format_version=fmt,
                 base=old if delta else None, base_version=1 if delta else None)  # fmt: skip
        applies.append(Apply(name, p.encode(), old, new))
    return cases, applies


def c_bytes(name: str, data: bytes) -> str:
    body = ",".join(str(b) for b in data) or "0"
    return f"static const uint8_t {name}[] BENCH_ROM = {{{body}}};\n"


def vectors(cases: list[Case], applies: list[Apply]) -> str:
    out = ["#include <stdint.h>\n",
           "struct BenchChunk { uint32_t offset; uint32_t body_at; uint32_t base_at; uint32_t crc;"
           " uint16_t length; uint16_t size; uint8_t enc; };\n",
           "struct BenchApply { uint32_t payload_at; uint32_t size; uint32_t old_at;"
           " uint32_t region; uint32_t new_crc; };\n",
           f"#define BENCH_PIECE {PIECE}u\n#define BENCH_MAX_CHUNK {CHUNK}u\n",
           f"#define BENCH_CASES {len(cases)}u\n#define BENCH_APPLIES {len(applies)}u\n",
           f"#define BENCH_REGION_MAX {REGION}u\n"]  # fmt: skip
    bodies, bases, rows, firsts = bytearray(), bytearray(), [], [0]
    for case in cases:
        for enc, offset, body, base, decoded in case.chunks:
            rows.append(f"{{{offset}u,{len(bodies)}u,{len(bases)}u,{zlib.crc32(decoded)}u,"
                        f"{len(decoded)}u,{len(body)}u,{enc}u}}")  # fmt: skip
            bodies += body
            bases += base
        firsts.append(len(rows))
    out.append("static const BenchChunk bench_chunks[] BENCH_ROM = {" + ",".join(rows) + "};\n")
    out.append("static const uint16_t bench_case_first[] = {" + ",".join(map(str, firsts)) + "};\n")
    out.append(c_bytes("bench_bodies", bytes(bodies)) + c_bytes("bench_bases", bytes(bases)))
    payloads, regions, arows = bytearray(), bytearray(), []
    for a in applies:
        arows.append(f"{{{len(payloads)}u,{len(a.payload)}u,{len(regions)}u,{len(a.old)}u,"
                     f"{zlib.crc32(a.new)}u}}")  # fmt: skip
        payloads += a.payload
        regions += a.old
    out.append("static const BenchApply bench_applies[] BENCH_ROM = {" + ",".join(arows) + "};\n")
    out.append(c_bytes("bench_payloads", bytes(payloads)))
    out.append(c_bytes("bench_regions", bytes(regions)))
    out.append("static const uint8_t bench_fingerprint[16] = {" + ",".join(map(str, FP)) + "};\n")
    return "".join(out)


def run(cmd: list[str], timeout: float = 600) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p.stdout + p.stderr


def parse(text: str) -> tuple[dict[str, int], list[dict[str, int]], list[dict[str, int]]]:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    top: dict[str, int] = {}
    cases: list[dict[str, int]] = []
    applies: list[dict[str, int]] = []
    cur: dict[str, int] | None = None
    for key, value in re.findall(r"(\w+)=(\d+)", text):
        v = int(value)
        if key == "case":
            cur = {}
            cases.append(cur)
        elif key == "apply":
            cur = {}
            applies.append(cur)
        elif cur is not None:
            cur[key] = v
        else:
            top[key] = v
    if "done" not in text:
        raise RuntimeError(f"the benchmark did not finish:\n{text[-2000:]}")
    return top, cases, applies


SOURCES = ("crc32.cpp", "status.cpp", "decode.cpp", "updater.cpp")


def run_m4(tmp: Path, header: Path) -> tuple[dict[str, int], list, list] | str:
    from bench_crypto import link_m4, qemu_m4

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        return "arm-none-eabi-gcc or qemu-system-arm not found"
    out = tmp / "m4dec"
    out.mkdir(exist_ok=True)
    m4_sources = (*SOURCES, "sha256.cpp", "sha512.cpp", "ed25519.cpp")  # the M4's default config
    units = [BOARDS / "m4" / "startup.c", BOARDS / "m4" / "decode_bench.cpp",
             *(MODELOTA / s for s in m4_sources)]  # fmt: skip
    elf = link_m4(out, units, [f'-DDECODE_BENCH_VECTORS="{header}"', f"-I{FIRMWARE}"],
                  "decode_bench")  # fmt: skip
    return parse(qemu_m4(elf, timeout=600))


def run_avr(tmp: Path, header: Path) -> tuple[dict[str, int], list, list] | str:
    cxx, cc, sim = shutil.which("avr-g++"), shutil.which("avr-gcc"), shutil.which("simavr")
    if cxx is None or cc is None or sim is None:
        return "avr-g++ or simavr not found (apt-get install gcc-avr avr-libc simavr)"
    out = tmp / "avrdec"
    out.mkdir(exist_ok=True)
    flags = ["-mmcu=atmega2560", os.environ.get("AVR_OPT", "-Os"), *STRICT, f"-I{FIRMWARE}",
             f'-DDECODE_BENCH_VECTORS="{header}"']  # fmt: skip
    objs = []
    for src in (BOARDS / "avr" / "decode_bench.cpp", *(MODELOTA / s for s in SOURCES)):
        obj = out / (src.stem + ".o")
        run([cxx, *flags, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = out / "decode_bench.elf"
    run([cc, "-mmcu=atmega2560", "-Wl,--gc-sections", *objs, "-o", str(elf)])
    try:
        p = subprocess.run([sim, "-m", "atmega2560", "-f", str(AVR_HZ), str(elf)],
                           capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "simavr did not finish in 15 minutes"
    return parse(p.stdout + p.stderr)


def code_sizes() -> list[list[str]]:
    """Flash bytes (.text + .rodata + .progmem) of the decoder and the Updater, -Os."""
    targets = {"Cortex-M4": ("arm-none-eabi-g++", ["-mcpu=cortex-m4", "-mthumb"], "arm-none-eabi-"),
               "ATmega2560": ("avr-g++", ["-mmcu=atmega2560"], "avr-"),
               "x86-64 host": ("g++", [], "")}  # fmt: skip
    rows = []
    for label, (cxx, flags, prefix) in targets.items():
        if shutil.which(cxx) is None:
            continue
        sizes = []
        for src in ("decode.cpp", "updater.cpp", "store.cpp"):
            obj = Path(f"/tmp/modelota-size-{prefix or 'host'}-{src}.o")
            run([cxx, *flags, "-Os", *STRICT, f"-I{FIRMWARE}", "-c", str(MODELOTA / src),
                 "-o", str(obj)])  # fmt: skip
            head = run([f"{prefix}objdump", "-h", str(obj)])
            total = 0
            for line in head.splitlines():
                parts = line.split()
                if len(parts) >= 3 and re.match(r"\.(text|rodata|progmem)", parts[1]):
                    total += int(parts[2], 16)
            sizes.append(total)
            obj.unlink(missing_ok=True)
        rows.append([label, f"{sizes[0]} B", f"{sizes[1]} B", f"{sizes[2]} B"])
    return rows


def run_all(tmp: Path, pairs: list, note: Callable[[str], None],
            table: Callable[[str, list[str], list[list[str]]], None]) -> None:  # fmt: skip
    by_name = {p.name: (p.old, p.new) for p in pairs}
    need = ("cnn/seed/int8", "cnn/seed/float", "cnn/finetune/int8", "cnn/finetune/float")
    if not all(n in by_name for n in need):
        note("device decode: the CNN pairs are not in this run (--quick?)")
        return
    cases, applies = build_cases(by_name)
    header = tmp / "decode_vectors.h"
    header.write_text(vectors(cases, applies))
    results = {}
    for target, runner in (("m4", run_m4), ("avr", run_avr)):
        try:
            r = runner(tmp, header)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            r = str(e).splitlines()[0]
        if isinstance(r, str):
            note(f"device decode on {target}: not measured ({r})")
            continue
        top, cs, aps = r
        bad = [c for c in (*cs, *aps) if c.get("ok") != 1]
        if bad or len(cs) != len(cases) or len(aps) != len(applies):
            raise SystemExit(f"FAIL: {target} decoded wrong bytes or failed an update: {r}")
        results[target] = r
    rows = []
    for i, case in enumerate(cases):
        out_b = sum(len(c[4]) for c in case.chunks)
        in_b = sum(len(c[2]) for c in case.chunks)
        row = [case.name, f"{in_b / out_b:.2f}"]
        if "m4" in results:
            c = results["m4"][1][i]
            row.append(f"{c['units'] * M4_TICK_INSNS / out_b:.0f}")
        else:
            row.append("-")
        if "avr" in results:
            c = results["avr"][1][i]
            per_out = c["units"] / out_b
            per_in = c["units"] / max(in_b, 1)
            row += [f"{per_out:.0f}", f"{per_in:.0f}", f"{AVR_HZ / per_in / 1000:.1f}",
                    "yes" if AVR_HZ / per_in >= BAUD_BYTES else "NO"]  # fmt: skip
        else:
            row += ["-"] * 4
        rows.append(row)
    table(f"4. Decoding, per encoding ({CASE_BYTES} B of real weights in {CHUNK}-byte chunks,"
          f" fed {PIECE} B at a time; decode calls only)",
          ["case", "in/out", "M4 insn/out B", "AVR cyc/out B", "AVR cyc/in B",
           "AVR in KB/s", "keeps up 115200"], rows)  # fmt: skip
    rows = []
    for i, a in enumerate(applies):
        row = [a.name, str(len(a.payload))]
        if "m4" in results:
            u = results["m4"][2][i]["units"] * M4_TICK_INSNS
            row.append(f"{u / len(a.payload):.0f}")
        else:
            row.append("-")
        if "avr" in results:
            u = results["avr"][2][i]["units"]
            rate = AVR_HZ * len(a.payload) / u
            row += [f"{u / len(a.payload):.0f}", f"{u / AVR_HZ * 1000:.1f} ms",
                    f"{rate / 1000:.1f}", "yes" if rate >= BAUD_BYTES else "NO"]  # fmt: skip
        else:
            row += ["-"] * 4
        rows.append(row)
    table(f"4b. A whole update through the Updater ({REGION}-byte RAM model, {CHUNK}-byte"
          f" buffer, CRC32 digest, fed {PIECE} B at a time)",
          ["payload", "wire B", "M4 insn/wire B", "AVR cyc/wire B", "AVR total",
           "AVR wire KB/s", "keeps up 115200"], rows)  # fmt: skip
    print(f"   115200 baud 8N1 = {BAUD_BYTES} B/s = {AVR_HZ / BAUD_BYTES:.0f} cycles per byte at"
          " 16 MHz; M4: instructions under QEMU -icount (a real M4 needs 1-3 cycles each)")
    sizes = code_sizes()
    mem = []
    for target in ("m4", "avr"):
        if target in results:
            top = results[target][0]
            mem.append(f"{target}: sizeof(modelota_decoder) {top['decoder_bytes']} B,"
                       f" sizeof(modelota_updater) {top['updater_bytes']} B (decoder included)")
    table("5. Code size, -Os (flash: .text + .rodata; unlinked objects)",
          ["target", "decode.cpp", "updater.cpp", "store.cpp"], sizes)  # fmt: skip
    for line in mem:
        print(f"   {line}")
