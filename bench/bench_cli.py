"""Start-up time of the ``modelota`` command, as a ratio to a bare interpreter.

Prints, measured in one run (interleaved, so machine load hits every row
alike), the median wall time of N runs of:

* ``python -c pass``                 the floor every Python command pays;
* ``python -c "import argparse"``    what any argparse CLI pays on top;
* ``modelota --help``                the whole command list;
* ``modelota pack --help``           one command's options;
* ``modelota inspect X.mota``        a real command (parses a payload).

Goal: ``modelota --help`` <= 3x ``python -c pass`` (docs/DESIGN.md, "Light
start-up": the command table lists commands without importing them, and
library modules load inside the command that runs). Nothing asserts on time.

    python bench/bench_cli.py [--runs 21]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21, help="runs per command (median taken)")
    args = ap.parse_args()
    exe = shutil.which("modelota", path=str(Path(sys.executable).parent)) or shutil.which(
        "modelota"
    )
    if exe is None:
        print("modelota is not installed in this environment (pip install -e .)")
        return 1
    with tempfile.TemporaryDirectory() as d:
        payload = Path(d) / "x.mota"
        weights = Path(d) / "w.bin"
        weights.write_bytes(bytes(range(256)) * 16)
        subprocess.run([exe, "pack", str(weights), "--model", "bench", "--version", "1",
                        "-o", str(payload)], check=True, capture_output=True)  # fmt: skip
        rows = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import argparse"': [sys.executable, "-c", "import argparse"],
            "modelota --help": [exe, "--help"],
            "modelota pack --help": [exe, "pack", "--help"],
            "modelota inspect x.mota": [exe, "inspect", str(payload)],
        }
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.runs):
            for name, cmd in rows.items():
                t0 = time.perf_counter()
                subprocess.run(
                    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
                )
                times[name].append(time.perf_counter() - t0)
    floor = statistics.median(times["python -c pass"])
    print(f"modelota start-up, median of {args.runs} interleaved runs ({sys.version.split()[0]})")
    print(f"{'command':<30} {'ms':>8} {'x pass':>8}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<30} {m * 1000:8.1f} {m / floor:8.2f}")
    ratio = statistics.median(times["modelota --help"]) / floor
    print(f"goal: modelota --help <= 3.00x python -c pass: {ratio:.2f}x "
          f"({'met' if ratio <= 3.0 else 'NOT met'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
