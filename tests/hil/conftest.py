"""HIL suite setup: ``--port`` picks the board under test.

Without it (or with ``--port native``) each test gets a fresh native
simulated board (modelota.simboard: the real C++ link and Updater) served on
a TCP port. Other values name a ``sim://`` board (``sim://qemu-m4``...)
registered in modelota.serial_handlers.protocol_sim.BOARDS: called with the
parameters {"size", "timeout_ms"}, it must start a fresh board per call
running :func:`modelota.simboard.demo_model` (``size`` bytes, seed 1) at
version 1 with that resume timeout, and return its TCP endpoint.

``--port`` is registered by tests/conftest.py, so it works from the root and
from this folder (``pytest tests/hil --port sim://qemu-m4``);
``MODELOTA_HIL_PORT`` is the same setting from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from modelota.simboard import SimBoard, demo_model

SIZE = 4096
RESUME_TIMEOUT_MS = 1500


@dataclass
class Board:
    """A board under test: where to reach it and what it runs."""

    url: str
    addr: tuple[str, int]  # TCP endpoint, for the link simulator
    weights: bytes  # factory weights
    fingerprint: bytes
    version: int
    resume_timeout_s: float
    sim: SimBoard | None  # the native board, when it is one


@pytest.fixture
def board(request: pytest.FixtureRequest) -> Iterator[Board]:
    port = request.config.getoption("--port", default=None) or os.environ.get(
        "MODELOTA_HIL_PORT", "native"
    )
    weights, fp = demo_model(SIZE)
    if port in ("native", "sim://native"):
        sim = SimBoard(weights, fingerprint=fp, version=1, resume_timeout_ms=RESUME_TIMEOUT_MS)
        tcp = sim.serve_tcp()
        yield Board(
            f"socket://127.0.0.1:{tcp}",
            ("127.0.0.1", tcp),
            weights,
            fp,
            1,
            RESUME_TIMEOUT_MS / 1000,
            sim,
        )
        sim.stop()
        return
    from modelota.serial_handlers import protocol_sim

    name = port.split("://", 1)[-1].split("?", 1)[0]
    factory = protocol_sim.BOARDS.get(name)
    if factory is None:
        pytest.skip(f"no simulated board {name!r} registered")
    host, tcp = factory({"size": str(SIZE), "timeout_ms": str(RESUME_TIMEOUT_MS)})
    yield Board(
        f"socket://{host}:{tcp}", (host, tcp), weights, fp, 1, RESUME_TIMEOUT_MS / 1000, None
    )
