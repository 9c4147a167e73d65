#!/usr/bin/env python3
"""Benchmarks of the device's crypto primitives (firmware_lib/modelota/sha256,
sha512, ed25519), measured in one run.

    python bench/bench_crypto.py            # full run, about 30 s
    python bench/bench_crypto.py --quick    # fewer repeats, -Os only on the M4

Tables printed (bench/README.md, section "bench_crypto.py", explains them):

1. host: one Ed25519 verification and the hashes, through cffi and in a plain
   C++ loop (g++ -O2), next to libsodium (pynacl) and hashlib;
2. Cortex-M4 under QEMU mps2-an386: instructions per verification and per
   hashed byte (-icount shift=0: 1 ns of virtual time per instruction, read
   with SysTick at 25 MHz, so 40 instructions per tick), and the peak stack
   measured by painting; 2b. the same on the ATmega2560 in simavr, in cycles;
3. code size (.text incl. read-only data) per file on Cortex-M4 and AVR;
4. worst-case stack of modelota_ed25519_verify from -fstack-usage and the
   call graph of the objects (static analysis, every target).

Nothing asserts on a timing. The script fails only when a primitive gives a
wrong answer (a valid signature rejected, a bad one accepted, a digest that
differs from hashlib's).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_lib"
MODELOTA = FIRMWARE / "modelota"
M4_DIR = ROOT / "sim" / "boards" / "m4"
SOURCES = ("sha256.cpp", "sha512.cpp", "ed25519.cpp")

try:
    import modelota  # noqa: F401  (installed editable in the venv)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "host_tools"))

from modelota.sim import native  # noqa: E402

SEED = bytes(range(32))
MESSAGE = hashlib.sha512(b"ModelOTA payload header").digest()  # 64 bytes, like a signed digest
HASH_LEN = 16 * 1024  # bytes hashed on the M4
TICK_INSNS = 40  # 25 MHz SysTick, 1 instruction per ns of virtual time
# Cortex-M4 call overhead is inside the callee's frame (LR is pushed by its
# prologue); atmega2560's CALL pushes a 3-byte return address; x86-64's 8 bytes
# are inside GCC's figure.
CALL_OVERHEAD = {"host": 0, "cortex-m4": 0, "atmega2560": 3}
# libgcc helpers (64-bit shifts and multiplies on AVR) have no .su entry:
# their frames are charged this much (AVR's __muldi3 pushes 18 registers).
HELPER_FRAME = {"host": 0, "cortex-m4": 16, "atmega2560": 24}
STRICT = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-fno-exceptions",
          "-fno-rtti", "-ffunction-sections", "-fdata-sections"]  # fmt: skip
TARGETS = {
    "cortex-m4": ("arm-none-eabi-g++", ["-mcpu=cortex-m4", "-mthumb"], "arm-none-eabi-"),
    "atmega2560": ("avr-g++", ["-mmcu=atmega2560"], "avr-"),
    "host": ("g++", [], ""),
}

notes: list[str] = []


def note(msg: str) -> None:
    notes.append(msg)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))


def median_time(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Median seconds per call over `repeat` samples of `number` calls."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def run(cmd: list[str], **kw: object) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return str(r.stdout)


# ------------------------------------------------------------------------------------------
# 1. host


HOST_LOOP = r"""
#include <stdio.h>
#include <time.h>
#include "modelota/ed25519.h"
#include "modelota/sha256.h"
#include "modelota/sha512.h"
#include "vectors.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint8_t buf[1 << 20];

int main(int argc, char** argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int ok = 0;
    double t = now();
    for (int i = 0; i < n; ++i) {
        ok += modelota_ed25519_verify(BENCH_SIG, BENCH_MSG, BENCH_MSG_LEN, BENCH_KEY);
    }
    double verify = (now() - t) / n;
    uint8_t d[64];
    t = now();
    for (int i = 0; i < 8; ++i) {
        modelota_sha256 c; modelota_sha256_init(&c); modelota_sha256_update(&c, buf, sizeof(buf));
        modelota_sha256_final(&c, d);
    }
    double s256 = (now() - t) / 8;
    t = now();
    for (int i = 0; i < 8; ++i) {
        modelota_sha512 c; modelota_sha512_init(&c); modelota_sha512_update(&c, buf, sizeof(buf));
        modelota_sha512_final(&c, d);
    }
    double s512 = (now() - t) / 8;
    printf("ok=%d n=%d verify_s=%.9f sha256_s=%.9f sha512_s=%.9f bytes=%u\n", ok, n, verify, s256,
           s512, (unsigned)sizeof(buf));
    return ok == n ? 0 : 1;
}
"""


def vectors_header() -> tuple[str, bytes, bytes]:
    """A C header with one signed message (pynacl signs; the device only verifies)."""
    from nacl.signing import SigningKey

    signer = SigningKey(SEED)
    sig = signer.sign(MESSAGE).signature
    key = bytes(signer.verify_key)

    def arr(name: str, data: bytes) -> str:
        return f"static const uint8_t {name}[{len(data)}] = {{{', '.join(map(str, data))}}};\n"

    text = "#include <stdint.h>\n#include <stdlib.h>\n"
    text += arr("BENCH_KEY", key) + arr("BENCH_SIG", sig) + arr("BENCH_MSG", MESSAGE)
    text += f"#define BENCH_MSG_LEN {len(MESSAGE)}u\n#define BENCH_HASH_LEN {HASH_LEN}u\n"
    return text, key, sig


def host_tables(tmp: Path, quick: bool) -> None:
    from nacl.signing import VerifyKey

    n = native.load()
    _, key, sig = vectors_header()
    if n.lib.modelota_ed25519_verify(sig, MESSAGE, len(MESSAGE), key) != 1:
        raise SystemExit("FAIL: the native verifier rejected a valid signature")
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    if n.lib.modelota_ed25519_verify(bad, MESSAGE, len(MESSAGE), key) != 0:
        raise SystemExit("FAIL: the native verifier accepted a corrupted signature")
    repeat = 3 if quick else 7
    t_ours = median_time(lambda: n.lib.modelota_ed25519_verify(sig, MESSAGE, 64, key), repeat, 50)
    vk = VerifyKey(key)
    t_sodium = median_time(lambda: vk.verify(MESSAGE, sig), repeat, 200)
    t_keyok = median_time(lambda: n.lib.modelota_ed25519_public_key_valid(key), repeat, 50)

    data = bytes(i * 131 & 0xFF for i in range(1 << 20))
    hashes = []
    for name, size in (("sha256", 32), ("sha512", 64)):
        ctx = n.ffi.new(f"modelota_{name}*")
        out = n.ffi.new("uint8_t[64]")
        parts = ("init", "update", "final")
        init, upd, fin = (getattr(n.lib, f"modelota_{name}_{f}") for f in parts)

        def one(ctx: object = ctx, out: object = out, init=init, upd=upd, fin=fin) -> None:  # type: ignore[no-untyped-def]
            init(ctx)
            upd(ctx, data, len(data))
            fin(ctx, out)

        one()
        ref = getattr(hashlib, name)
        if bytes(out)[:size] != ref(data).digest():
            raise SystemExit(f"FAIL: {name} differs from hashlib")
        t = median_time(one, repeat, 2)
        t_ref = median_time(lambda ref=ref: ref(data).digest(), repeat, 4)
        hashes.append((name, len(data) / t / 1e6, len(data) / t_ref / 1e6))

    loop = None
    if shutil.which("g++"):
        (tmp / "vectors.h").write_text(vectors_header()[0])
        (tmp / "loop.cpp").write_text(HOST_LOOP)
        exe = tmp / "loop"
        srcs = [str(MODELOTA / s) for s in SOURCES]
        run(["g++", "-O2", "-std=c++11", f"-I{FIRMWARE}", f"-I{tmp}", str(tmp / "loop.cpp"),
             *srcs, "-o", str(exe)])  # fmt: skip
        out_line = run([str(exe), "100" if quick else "400"])
        loop = dict(kv.split("=") for kv in out_line.split())
    else:
        note("g++ not found: no C++ loop figures")

    rows = [
        ["Ed25519 verify (64-byte msg)", f"{t_ours * 1e6:.0f} us",
         f"{float(loop['verify_s']) * 1e6:.0f} us" if loop else "-",
         f"{t_sodium * 1e6:.0f} us", f"{t_ours / t_sodium:.1f}x"],
        ["public_key_valid", f"{t_keyok * 1e6:.0f} us", "-", "-", "-"],
    ]  # fmt: skip
    for name, ours, ref in hashes:
        c_loop = "-"
        if loop:
            c_loop = f"{int(loop['bytes']) / float(loop[name + '_s']) / 1e6:.0f} MB/s"
        rows.append([f"{name.upper()} (1 MiB)", f"{ours:.0f} MB/s", c_loop, f"{ref:.0f} MB/s",
                     f"{ref / ours:.1f}x"])  # fmt: skip
    table(
        "1. Host (x86-64): ModelOTA primitives vs libsodium (pynacl) and hashlib (OpenSSL)",
        ["operation", "ours via cffi", "ours C++ loop -O2", "reference", "ref faster by"],
        rows,
    )
    print(f"   native module: {native.load().__file__}")


# ------------------------------------------------------------------------------------------
# 2. Cortex-M4 in QEMU


@dataclass
class M4Result:
    opt: str
    values: dict[str, int]
    text: int


def link_m4(out: Path, units: list[Path], flags: list[str], name: str) -> Path:
    """Compiles ``units`` (.c and .cpp) for the mps2-an386 board with the
    board's flags plus ``flags`` and links ``out/name.elf``. bench_size's
    decode benchmark builds with it too."""
    from modelota.sim import emulated as boards

    gcc, gxx = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-g++")
    if gcc is None or gxx is None:
        raise FileNotFoundError("arm-none-eabi-gcc")
    flags = [*boards.M4_CFLAGS, *flags]
    objs = []
    for src in units:
        obj = out / (src.stem + ".o")
        if src.suffix == ".c":
            run([gcc, *flags, "-std=c11", "-c", str(src), "-o", str(obj)])
        else:
            run([gxx, *flags, *boards.M4_CXXFLAGS, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = out / f"{name}.elf"
    run([gcc, *boards.M4_CFLAGS[:2], *boards.M4_LDFLAGS, *objs, "-o", str(elf)])
    return elf


def build_m4(tmp: Path, opt: str) -> Path:
    out = tmp / f"m4{opt}"
    out.mkdir(exist_ok=True)
    (out / "vectors.h").write_text(vectors_header()[0])
    units = [M4_DIR / "startup.c", M4_DIR / "crypto_bench.cpp", *(MODELOTA / s for s in SOURCES)]
    return link_m4(out, units, [opt, f'-DCRYPTO_BENCH_VECTORS="{out / "vectors.h"}"'],
                   "crypto_bench")  # fmt: skip


def qemu_m4(elf: Path, timeout: float = 300) -> str:
    """What the program prints on the board's UART under -icount shift=0
    (1 ns of virtual time per instruction); it must end with "done"."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise FileNotFoundError("qemu-system-arm")
    cmd = [qemu, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "stdio",
           "-semihosting", "-icount", "shift=0", "-kernel", str(elf)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if "done" not in proc.stdout:
        raise RuntimeError(f"the M4 benchmark did not finish:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_m4(elf: Path) -> dict[str, int]:
    values = {}
    for line in qemu_m4(elf).splitlines():
        m = re.fullmatch(r"(\w+)=(\d+)", line.strip())
        if m:
            values[m.group(1)] = int(m.group(2))
    return values


def m4_tables(tmp: Path, quick: bool) -> None:
    buf = bytes((i * 131 + 7) & 0xFF for i in range(HASH_LEN))
    results = []
    for opt in ["-Os"] if quick else ["-Os", "-O2"]:
        try:
            elf = build_m4(tmp, opt)
            v = run_m4(elf)
        except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as e:
            note(f"Cortex-M4 {opt}: not measured ({str(e).splitlines()[0]})")
            return
        if v.get("verify_ok") != 1 or v.get("bad_verify_result") != 0 or v.get("key_valid") != 1:
            raise SystemExit(f"FAIL: wrong verdicts on the Cortex-M4: {v}")
        for name in ("sha256", "sha512"):
            want = int.from_bytes(getattr(hashlib, name)(buf).digest()[:4], "big")
            if v[f"{name}_first_word"] != want:
                raise SystemExit(f"FAIL: {name} on the Cortex-M4 differs from hashlib")
        size = run(["arm-none-eabi-size", "-A", str(elf)])
        text = sum(int(ln.split()[1]) for ln in size.splitlines() if ln.startswith(".text"))
        results.append(M4Result(opt, v, text))
    rows = []
    for r in results:
        v = r.values
        base = v["empty_ticks"]

        def insns(key: str, v: dict[str, int] = v, base: int = base) -> int:
            return (v[key] - base) * TICK_INSNS

        rows.append([
            r.opt, f"{insns('verify_ticks') / 1e6:.2f} M",
            f"{insns('bad_verify_ticks') / 1e6:.2f} M",
            f"{insns('key_valid_ticks') / 1e6:.2f} M",
            f"{insns('sha256_ticks') / HASH_LEN:.1f}", f"{insns('sha512_ticks') / HASH_LEN:.1f}",
            f"{v['verify_stack_bytes']} B",
            f"{insns('verify_ticks') / 64e3:.0f} ms",
        ])  # fmt: skip
    table(
        "2. Cortex-M4 (QEMU mps2-an386, -icount shift=0, SysTick: 40 instructions per tick)",
        ["opt", "verify insns", "bad sig insns", "key_valid insns", "SHA-256 insn/B",
         "SHA-512 insn/B", "verify stack (painted)", "verify @64 MHz, 1 IPC"],
        rows,
    )  # fmt: skip
    print("   instructions, not cycles: a real M4 takes 1-3 cycles per instruction (loads,")
    print("   taken branches, 64-bit multiply-accumulate SMLAL is 1); the last column is a floor.")


AVR_DIR = ROOT / "sim" / "boards" / "avr"
AVR_HASH_LEN = 2048  # the Mega has 8 KiB of RAM
AVR_TICK_CYCLES = 64  # Timer1 prescaler


def avr_table(tmp: Path) -> None:
    """ATmega2560 cycles under simavr (cycle-accurate): qemu-system-avr 7.2 cannot run
    with -icount ("Bad icount read"), so it gives no instruction count."""
    cxx, simavr = shutil.which("avr-g++"), shutil.which("simavr")
    if cxx is None or simavr is None or shutil.which("avr-gcc") is None:
        note("avr-g++ or simavr not found: no ATmega2560 timing (apt-get install simavr)")
        return
    out = tmp / "avr-sim"
    out.mkdir(exist_ok=True)
    header = vectors_header()[0].replace(f"{HASH_LEN}u", f"{AVR_HASH_LEN}u")
    (out / "vectors.h").write_text(header)
    flags = ["-mmcu=atmega2560", "-Os", *STRICT, f"-I{FIRMWARE}",
             f'-DCRYPTO_BENCH_VECTORS="{out / "vectors.h"}"']  # fmt: skip
    objs = []
    for src in [AVR_DIR / "crypto_bench.cpp", *(MODELOTA / s for s in SOURCES)]:
        obj = out / (src.stem + ".o")
        run([cxx, *flags, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = out / "crypto_bench.elf"
    run(["avr-gcc", "-mmcu=atmega2560", "-Wl,--gc-sections", *objs, "-o", str(elf)])
    try:
        proc = subprocess.run([simavr, "-m", "atmega2560", "-f", "16000000", str(elf)],
                              capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        note("simavr did not finish in 10 minutes: no ATmega2560 timing")
        return
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    v = {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+)=(\d+)", text)}
    if "done" not in text or v.get("verify_ok") != 1:
        raise SystemExit(f"FAIL: the ATmega2560 run failed or rejected the signature:\n{text}")
    buf = bytes((i * 131 + 7) & 0xFF for i in range(AVR_HASH_LEN))
    for name in ("sha256", "sha512"):
        want = int.from_bytes(getattr(hashlib, name)(buf).digest()[:4], "big")
        if v[f"{name}_first_word"] != want:
            raise SystemExit(f"FAIL: {name} on the ATmega2560 differs from hashlib")

    def cycles(key: str) -> int:
        return (v[key] - v["empty_ticks"]) * AVR_TICK_CYCLES

    table(
        "2b. ATmega2560 (simavr 16 MHz, cycle-accurate; Timer1 / 64, so 64-cycle resolution)",
        ["opt", "verify cycles", "verify @16 MHz", "SHA-256 cycles/B", "SHA-512 cycles/B",
         "verify stack (painted)"],
        [["-Os", f"{cycles('verify_ticks') / 1e6:.0f} M", f"{cycles('verify_ticks') / 16e6:.1f} s",
          f"{cycles('sha256_ticks') / AVR_HASH_LEN:.0f}",
          f"{cycles('sha512_ticks') / AVR_HASH_LEN:.0f}", f"{v['verify_stack_bytes']} B"]],
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# 3. code size and 4. stack


def compile_objs(target: str, tmp: Path, opt: str) -> list[Path] | None:
    cxx, flags, _ = TARGETS[target]
    if shutil.which(cxx) is None:
        note(f"{cxx} not found: no {target} figures")
        return None
    out = tmp / f"{target}{opt}"
    out.mkdir(exist_ok=True)
    objs = []
    for s in SOURCES:
        obj = out / s.replace(".cpp", ".o")
        run([cxx, *flags, opt, *STRICT, "-fstack-usage", "-c", str(MODELOTA / s), "-o", str(obj)],
            cwd=out)  # fmt: skip
        objs.append(obj)
    return objs


def text_size(target: str, obj: Path) -> int:
    prefix = TARGETS[target][2]
    out = run([f"{prefix}objdump", "-h", str(obj)])
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and re.match(r"\.(text|rodata|progmem)", parts[1]):
            total += int(parts[2], 16)
    return total


def _fn_name(sym: str) -> str:
    """Bare function name of a symbol or section name: `.text._ZN12_GLOBAL__N_19ed_fe_mulEPl`
    and `_ZN12_GLOBAL__N_19ed_fe_mulEPl` give `ed_fe_mul`; C names stay as they are."""
    sym = sym.removeprefix(".text.")
    m = re.match(r"_ZN12_GLOBAL__N_1(\d+)", sym)
    if m:
        start = m.end()
        return sym[start : start + int(m.group(1))]
    return sym


def worst_stack(target: str, objs: list[Path], root: str) -> int:
    """Deepest path from `root` through the objects' call graph, in bytes."""
    prefix = TARGETS[target][2]
    frames: dict[str, int] = {}
    for obj in objs:
        su = obj.parent / (obj.stem + ".su")
        for line in su.read_text().splitlines():
            where, size, _kind = line.rsplit("\t", 2)
            name = re.sub(r"\(.*$", "", where.split(":", 3)[3]).split("::")[-1].split()[-1]
            frames[name] = max(frames.get(name, 0), int(size))
    edges: dict[str, set[str]] = {}
    for obj in objs:
        current = None
        for line in run([f"{prefix}objdump", "-dr", str(obj)]).splitlines():
            m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
            if m:
                current = _fn_name(m.group(1))
                edges.setdefault(current, set())
                continue
            m = re.search(r"R_\w+\s+(\S+)", line)
            if m and current is not None:
                target_sym = re.sub(r"[+-]0x[0-9a-f]+$", "", m.group(1))
                if target_sym.startswith(".text.") or not target_sym.startswith("."):
                    callee = _fn_name(target_sym)
                    if callee != current:
                        edges[current].add(callee)

    def depth(fn: str, seen: tuple[str, ...]) -> int:
        if fn in seen:
            raise RuntimeError(f"recursion through {fn}")
        own = frames.get(fn)
        if own is None:
            own = HELPER_FRAME[target] if fn.startswith("__") else 0
        callees = [c for c in edges.get(fn, ()) if c in frames or c.startswith("__")]
        deeper = [depth(c, (*seen, fn)) for c in callees]
        return own + CALL_OVERHEAD[target] + max(deeper, default=0)

    return depth(root, ())


def size_and_stack_tables(tmp: Path) -> None:
    size_rows = []
    stack_rows = []
    for target, opts in (("cortex-m4", ["-Os", "-O2"]), ("atmega2560", ["-Os"]), ("host", ["-O2"])):
        for opt in opts:
            objs = compile_objs(target, tmp, opt)
            if objs is None:
                break
            sizes = [text_size(target, o) for o in objs]
            if target != "host":
                size_rows.append([target, opt, *map(str, sizes), str(sum(sizes))])
            verify = worst_stack(target, objs, "modelota_ed25519_verify")
            sha = worst_stack(target, objs, "modelota_sha256_update")
            stack_rows.append([target, opt, f"{verify} B", f"{sha} B"])
    table("3. Code size (.text + read-only data, bytes; includes the constant tables)",
          ["target", "opt", "sha256", "sha512", "ed25519", "total"], size_rows)  # fmt: skip
    print("   ed25519 needs sha512; sha256 is only needed by a caller that hashes with it.")
    print("   AVR keeps every table in flash (PROGMEM): 0 bytes of .data.")
    table(
        "4. Worst-case stack, static (-fstack-usage + call graph of the objects)",
        ["target", "opt", "modelota_ed25519_verify", "modelota_sha256_update"],
        stack_rows,
    )
    print("   AVR: + 3 B return address per call level; libgcc helpers charged 24 B.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, -Os only on the M4")
    args = ap.parse_args()
    print("ModelOTA crypto primitives benchmark")
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as d:
        tmp = Path(d)
        host_tables(tmp, args.quick)
        m4_tables(tmp, args.quick)
        avr_table(tmp)
        size_and_stack_tables(tmp)
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
