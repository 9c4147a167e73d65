"""Prints the power-cut sweep table for every geometry and several model sizes.

    python bench/power_cut_sweep.py [--sizes 700 3000 9000] [--recovery-cuts 1]

Each row: the storage operations N of a clean update, the cuts tried (every
operation, lost and torn, each followed by clean recoveries and by recoveries
cut again), how many ended on the old and on the new model, and how many
ended mixed or bricked (must be 0).
"""

from __future__ import annotations

import argparse
import sys
import time

from modelota.sim.sweep import GEOMETRIES, Scenario, run, table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[700, 3000, 9000, 30_000])
    ap.add_argument("--recovery-cuts", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    reports = []
    for size in args.sizes:
        for g in GEOMETRIES:
            for mode in ("flash", "ram"):
                for delta in (False, True):
                    reports.append(
                        run(Scenario(g, size, delta, mode), recovery_cuts=args.recovery_cuts)
                    )
    print(table(reports))
    cuts = sum(r.cuts for r in reports)
    bad = sum(r.mixed + r.bricked for r in reports)
    print(
        f"\n{len(reports)} scenarios, {cuts} power cuts, {bad} mixed or bricked"
        f" ({time.perf_counter() - t0:.0f} s)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
