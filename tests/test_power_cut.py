"""Power-cut sweeps: a cut at every storage operation of an update, lost or torn,
and again during recovery, never leaves a mixed or bricked device.

The default run sweeps every operation of three model sizes on four geometries
(block 256 B..4 KiB, prog 1..16 B, erased 0xFF and 0x00), for a flash-resident
model and a RAM model with persistence, full and delta payloads. ``--run-slow``
adds larger models and more cuts during recovery.
"""

from __future__ import annotations

import pytest

from modelota.sim.sweep import GEOMETRIES, Report, Scenario, count_ops, run, table

SIZES = [700, 3000, 9000]
SLOW_SIZES = [30_000, 70_000]


def scenarios(sizes: list[int]) -> list[Scenario]:
    return [
        Scenario(g, size, delta, mode)
        for g in GEOMETRIES
        for size in sizes
        for mode in ("flash", "ram")
        for delta in (False, True)
    ]


def check(reports: list[Report]) -> None:
    print()
    print(table(reports))
    bad = [f"{r.scenario}: {f}" for r in reports for f in r.failures]
    assert all(r.ok for r in reports), "\n".join(bad[:20])
    for r in reports:
        # every cut ended somewhere, and both ends were reached over the sweep
        assert r.ended_old + r.ended_new == r.cuts
        assert r.ended_old > 0 and r.ended_new > 0, r.scenario


@pytest.mark.parametrize("size", SIZES)
def test_sweep_every_operation(size: int) -> None:
    check([run(sc) for sc in scenarios([size])])


@pytest.mark.slow
@pytest.mark.parametrize("size", SLOW_SIZES)
def test_sweep_large_models_with_repeated_recovery_cuts(size: int) -> None:
    check([run(sc, recovery_cuts=3) for sc in scenarios([size])])


def test_clean_update_counts_are_deterministic() -> None:
    sc = Scenario(GEOMETRIES[0], 3000, False, "flash")
    assert count_ops(sc) == count_ops(sc) > 0
