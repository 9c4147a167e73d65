"""Power-cut sweeps: a cut at every storage operation of an update, lost or torn,
and again during recovery, never leaves a mixed or bricked device.

The default run sweeps every operation of three model sizes on four geometries
(block 256 B..4 KiB, prog 1..16 B, erased 0xFF and 0x00), for a flash-resident
model and a RAM model with persistence, full and delta payloads, in wire
format v2 (weight-like bytes: raw, runs, range-coded and difference chunks,
which the Store decodes again from its log while it rewrites the region and
once more when it recovers) and v1 for the smallest model; and a v2 delta
with one chunk in every encoding. ``--run-slow`` adds larger models and more
cuts during recovery.
"""

from __future__ import annotations

import pytest

from modelota.sim.sweep import GEOMETRIES, Report, Scenario, count_ops, run, table

SIZES = [700, 3000, 9000]
SLOW_SIZES = [30_000, 70_000]


def scenarios(sizes: list[int], fmt: int = 2) -> list[Scenario]:
    return [
        Scenario(g, size, delta, mode, format_version=fmt)
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


def test_sweep_v1_payloads() -> None:
    check([run(sc) for sc in scenarios(SIZES[:1], fmt=1)])


@pytest.mark.parametrize("mode", ["flash", "ram"])
def test_sweep_a_delta_in_every_encoding(mode: str) -> None:
    """One chunk of each v2 encoding (raw, runs, range coder; with and without
    differences and lanes), cut at every storage operation on every geometry."""
    check([run(Scenario(g, 3000, True, mode, every_encoding=True)) for g in GEOMETRIES])


def test_sweep_payloads_carry_compressed_chunks() -> None:
    """The sweep's v2 payloads are not just raw bytes: the Store really decodes."""
    from modelota.format.payload import parse
    from modelota.sim.sweep import _Bench

    seen: set[str] = set()
    for delta in (False, True):
        b = _Bench(Scenario(GEOMETRIES[0], 9000, delta, "flash"))
        seen |= {c.encoding for c in parse(b.payload).chunks}  # type: ignore[union-attr]
    assert {"runs", "rc"} <= seen and any("diff" in e for e in seen), seen


@pytest.mark.slow
@pytest.mark.parametrize("size", SLOW_SIZES)
def test_sweep_large_models_with_repeated_recovery_cuts(size: int) -> None:
    check([run(sc, recovery_cuts=3) for sc in scenarios([size])])


def test_clean_update_counts_are_deterministic() -> None:
    sc = Scenario(GEOMETRIES[0], 3000, False, "flash")
    assert count_ops(sc) == count_ops(sc) > 0
