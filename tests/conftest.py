"""Shared test setup: the slow marker, hypothesis profiles, and a guard that
the native module was built from the sources in this tree."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("MODELOTA_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("MODELOTA_EXAMPLES", "3000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--port",
        default=None,
        help="HIL: pyserial URL of the board under test (/dev/ttyACM0, socket://..., sim://...);"
        " default: the emulated boards",
    )
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="run the long sweeps and fuzzing marked 'slow', and more hypothesis examples",
    )


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("long" if config.getoption("--run-slow") else "default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: pass --run-slow to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_native", ROOT / "sim" / "build_native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a native module built from other sources than these
    (except a mutant: the core with one check moved on purpose, which
    tests/test_bounds_mutants.py runs the bounds tests against)."""
    if os.environ.get("MODELOTA_MUTANT"):
        return
    from modelota.sim import native

    built = native.load().ffi.string(native.load().lib.MODELOTA_SOURCE_HASH).decode()
    current = _build_module().source_hash()
    if built != current:
        pytest.exit(
            f"the native module ({built}) was built from other firmware_lib/sim sources than"
            f" this tree ({current}): run `pip install -e .` again",
            returncode=2,
        )


# -- the fleet tests' databases ------------------------------------------------


@pytest.fixture(scope="session")
def pg_base() -> Iterator[str]:
    """One throwaway PostgreSQL server for the session (skips when there is
    none), in a directory of its own outside pytest's private temp root."""
    from fleet_util import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> str | None:
    """The database behind a fleet server: SQLite (default) or a fresh
    database on the real PostgreSQL."""
    if request.param == "sqlite":
        return None
    from fleet_util import fresh_database

    return str(fresh_database(request.getfixturevalue("pg_base")))
