"""The bounds tests catch every bounds check moved by one (tests/bounds_mutants.py).

The default run builds the instrumented core (cached per source hash) and
proves the off-by-one that once survived the whole suite, fuzzers and
sanitizers included (the Updater's chunk bound ``len > size - off`` moved to
``len > size + 1 - off``), is now caught by its named test; building the
instrumented core also checks that every check the table names is still in
the sources. ``--run-slow`` runs all the mutants (about a minute).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bounds_mutants import DEFAULT, MUTANTS

HERE = Path(__file__).resolve().parent


def run(*ids: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HERE / "bounds_mutants.py"), *ids],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_the_off_by_one_that_survived_is_caught_by_its_named_test() -> None:
    r = run(*DEFAULT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "unmutated instrumented core:" in out and " bounds tests pass" in out, out
    for mutant in DEFAULT:
        assert any(line.split()[:2] == ["killed", mutant] for line in out.splitlines()), out


@pytest.mark.slow
def test_every_bounds_check_moved_by_one_fails_a_named_test() -> None:
    r = run()
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    killed = [ln.split()[1] for ln in out.splitlines() if ln.startswith("killed")]
    assert killed == [m.id for m in MUTANTS], out
