"""What a rollout decision costs the server as the group grows.

Every replica decides every 5 s and after device reports (at most every
ROLLOUT_GAP); one decision reads the group's devices, the failure reports
since the wave opened and the quality summaries, then computes each
device's wave. This fills a SQLite database (or PostgreSQL with --db) with
a group of N devices in an open rollout, 10% of them with a failure report
and every one with a quality summary, and times evaluate_rollouts() and a
device's answer (target()) with the rollout in force. Prints a table; the
numbers are for reading, never asserted.

    python bench/bench_rollout.py [--sizes 1000,10000,50000] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from modelota import pack
from modelota.fleet.db import Fleet

FP = bytes.fromhex("6d6f64656c6f74612d62656e63682d31")


def fill(fleet: Fleet, n: int) -> int:
    rnd = random.Random(n)
    for v in (1, 2):
        fleet.upload("bench", pack(rnd.randbytes(2048), fingerprint=FP, version=v).encode())
    db = fleet.db
    now = fleet.clock()
    db.begin()
    for i in range(n):
        d = f"dev-{i:06d}"
        db.execute("INSERT INTO devices (id, grp, fingerprint, created_at, last_version)"
                   " VALUES (?, 'g', NULL, ?, 1)", (d, now))  # fmt: skip
        db.execute(
            "INSERT INTO quality (device, version, line, at, n, counts, conf_bp, labelled,"
            " correct) VALUES (?, 1, 'bench', ?, 100, ?, 9300, 20, 19)",
            (d, now, json.dumps([10] * 10)),
        )
        if i % 10 == 0:
            db.execute("INSERT INTO reports (device, at, event, version, status, status_name)"
                       " VALUES (?, ?, 'apply', 1, -14, 'ChunkCrc')", (d, now + 1))  # fmt: skip
    db.commit()
    fleet.assign("group", "g", "bench", 1)
    r = fleet.create_rollout("bench", 2, "g", {"waves": [50, 100], "error": 0.5,
                                               "soak": 10**6}, start=True)  # fmt: skip
    return r.id


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--db", help="a PostgreSQL URL of an empty database (default: SQLite)")
    args = ap.parse_args()
    print(f"{'devices':>8} {'decision ms':>12} {'answer ms':>10}  (median of 5 / of 200)")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            fleet = Fleet(Path(tmp), args.db)
            try:
                fill(fleet, n)
                runs = []
                for _ in range(5):
                    t = time.perf_counter()
                    applied = fleet.evaluate_rollouts()
                    runs.append(time.perf_counter() - t)
                    assert not applied  # soaking: nothing to apply, all of it read
                answers = []
                for i in range(200):
                    t = time.perf_counter()
                    fleet.target(f"dev-{(i * 7919) % n:06d}")
                    answers.append(time.perf_counter() - t)
                runs.sort()
                answers.sort()
                print(f"{n:>8} {runs[2] * 1000:>12.1f} {answers[100] * 1000:>10.3f}")
            finally:
                if args.db:
                    for t in ("rollout_events", "rollouts", "quality", "version_changes",
                              "reports", "assignments", "devices", "payloads", "lines"):
                        fleet.db.execute(f"DELETE FROM {t}")
                fleet.close()


if __name__ == "__main__":
    main()
