"""HIL suite setup: ``--port`` picks the board under test.

The suite is model-agnostic: the ``board`` fixture asks the device (HELLO ->
INFO) for its fingerprint, weight region size, version and weights CRC, and
the tests build payloads of that size for that model at higher versions. So
the same tests run against

- a real board: ``--port /dev/ttyACM0`` (any pyserial URL that is not
  ``sim://``). The port is opened once and bridged to a local TCP port, so
  the link simulator (modelota.link.linksim) can drop and corrupt bytes in
  between. Tests never restore the board: each one takes the version INFO
  reports and only goes up. ``MODELOTA_HIL_TIMEOUT_MS`` is the firmware's
  resume timeout (default 10000, the SerialUpdate sketch's). Opening the port
  resets an Arduino: the bridge sends HELLO until INFO comes back;
- an emulated board: ``--port sim://qemu-m4``, ``--port sim://qemu-avr``
  (modelota.sim.emulated), ``--port sim://native`` or ``native`` (modelota.sim.board:
  the real C++ link and Updater through cffi). Each test gets a fresh board
  (parameters may be added: ``sim://qemu-m4?size=1024``) whose resume
  timeout is the firmware's default (10 s), long enough that no transfer
  times out while a test looks at it on a loaded machine; a test about the
  timeout itself asks for a shorter one with
  ``@pytest.mark.resume_timeout_ms(N)``;
- by default (no ``--port``, no ``MODELOTA_HIL_PORT``), both emulated boards
  in turn: ``sim://qemu-m4`` and ``sim://qemu-avr``. A board whose compiler
  or QEMU is not installed is skipped with the reason.

Only emulated boards expose their factory weights (:attr:`Board.factory`);
the one case that needs them (a delta against the factory weights) skips on
a real board.

``--port`` is registered by tests/conftest.py, so it works from the root and
from this folder (``pytest tests/hil --port sim://qemu-m4``);
``MODELOTA_HIL_PORT`` is the same setting from the environment.

No test waits a fixed time: each waits for the board's next frame (INFO,
ACK, NAK, RESULT), with a bound only to fail instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import serial

from modelota.link.push import Info, Session
from modelota.sim.board import SimBoard, demo_model

SIZE = 4096  # weight bytes of the emulated boards whose size is a parameter
RESUME_TIMEOUT_MS = 10000  # of the emulated boards: the firmware's default
DEFAULT_PORTS = ("sim://qemu-m4", "sim://qemu-avr")


@dataclass
class Board:
    """A board under test: where to reach it and what its INFO said."""

    url: str
    addr: tuple[str, int]  # TCP endpoint, for the link simulator
    info: Info  # at the start of the test
    resume_timeout_s: float
    factory: bytes | None  # the weights it holds, when known (emulated boards)
    sim: SimBoard | None  # the native board, when it is one

    @property
    def fingerprint(self) -> bytes:
        return self.info.fingerprint

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def size(self) -> int:
        return self.info.region_size


def read_info(url: str, wait_s: float = 6.0) -> Info:
    """HELLO -> INFO on a fresh connection; HELLO is sent again every 0.25 s
    until INFO comes (a board that is booting or resetting drops bytes), at
    most ``wait_s`` seconds."""
    port = serial.serial_for_url(url, timeout=0.05)
    try:
        return Session(port).hello(0.25, max(0, int(wait_s / 0.25) - 1))
    finally:
        port.close()


class SerialBridge:
    """Serves a serial port on a local TCP port (one client at a time; a new
    client replaces the old), so a real board can sit behind the link
    simulator like an emulated one."""

    def __init__(self, url: str, baud: int = 115200) -> None:
        self.ser = serial.serial_for_url(url, baudrate=baud, timeout=0)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = int(self.ls.getsockname()[1])
        self.conn: socket.socket | None = None
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, name="serial-bridge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_ev.is_set():
            rl: list[Any] = [self.ls] if self.conn is None else [self.ls, self.conn]
            ready, _, _ = select.select(rl, [], [], 0.002)
            for s in ready:
                if s is self.ls:
                    new, _ = self.ls.accept()
                    new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = new
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    s.close()
                    self.conn = None
                    continue
                self.ser.write(data)
            data = self.ser.read(self.ser.in_waiting or 1)
            if data and self.conn is not None:
                with contextlib.suppress(OSError):
                    self.conn.sendall(data)

    def close(self) -> None:
        self.stop_ev.set()
        self.thread.join(timeout=2)
        for s in (self.conn, self.ls):
            if s is not None:
                s.close()
        self.ser.close()


_bridges: dict[str, SerialBridge] = {}


def _ports(config: pytest.Config) -> list[str]:
    port = config.getoption("--port", default=None) or os.environ.get("MODELOTA_HIL_PORT")
    return [port] if port else list(DEFAULT_PORTS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "resume_timeout_ms(n): the emulated board's resume timeout for this test"
        " (a real board keeps its firmware's, MODELOTA_HIL_TIMEOUT_MS)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "board" in metafunc.fixturenames:
        ports = _ports(metafunc.config)
        ids = [p.split("://", 1)[-1].split("?", 1)[0].replace("/", "_") for p in ports]
        metafunc.parametrize("board", ports, indirect=True, ids=ids)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _bridges:
        _bridges.popitem()[1].close()


@dataclass
class _Emulated:
    host: str
    port: int
    factory: bytes
    timeout_s: float
    kind: str
    name: str

    def stop(self) -> None:
        from modelota.sim import emulated as boards

        b = boards.sim_board(self.kind, self.name)  # type: ignore[arg-type]
        if b is not None:
            b.close()


def _sim_board(port: str, timeout_ms: int | None) -> _Emulated:
    """Starts a fresh emulated board, under a name of its own: never one that
    another test (or test file) opened through the same sim:// URL."""
    parts = urllib.parse.urlsplit(port if "://" in port else f"sim://{port}")
    name = parts.netloc
    params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
    params.setdefault("name", f"hil-{uuid.uuid4().hex[:12]}")
    if timeout_ms is not None:
        params["timeout_ms"] = str(timeout_ms)
    if name in ("native", "qemu-m4"):
        params.setdefault("size", str(SIZE))
    if name in ("qemu-m4", "qemu-avr"):
        from modelota.sim import emulated as boards

        factory: bytes = boards.FACTORY_WEIGHTS
        if "size" in params or "seed" in params:
            factory = demo_model(int(params.get("size", "4096")), int(params.get("seed", "1")))[0]
        kind = name[len("qemu-") :]
        try:
            host, tcp = boards.qemu_endpoint(kind, params)  # type: ignore[arg-type]
        except boards.BoardUnavailable as e:
            pytest.skip(f"{name}: {e}")
        timeout_s = int(params.get("timeout_ms", RESUME_TIMEOUT_MS)) / 1000
        return _Emulated(host, tcp, factory, timeout_s, kind, params["name"])
    pytest.skip(f"no simulated board {name!r} (sim://native, sim://qemu-m4, sim://qemu-avr)")


def _timeout_mark(request: pytest.FixtureRequest) -> int | None:
    mark = request.node.get_closest_marker("resume_timeout_ms")
    return int(mark.args[0]) if mark is not None else None


@pytest.fixture
def board(request: pytest.FixtureRequest) -> Iterator[Board]:
    port: str = request.param
    if port in ("native", "sim://native") or port.startswith("sim://native?"):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(port).query))
        weights, fp = demo_model(int(q.get("size", SIZE)), int(q.get("seed", "1")))
        timeout_ms = _timeout_mark(request) or int(q.get("timeout_ms", RESUME_TIMEOUT_MS))
        sim = SimBoard(weights, fingerprint=fp, version=int(q.get("version", "1")),
                       resume_timeout_ms=timeout_ms)  # fmt: skip
        tcp = sim.serve_tcp()
        url = f"socket://127.0.0.1:{tcp}"
        try:
            yield Board(url, ("127.0.0.1", tcp), read_info(url), timeout_ms / 1000, weights, sim)
        finally:
            sim.stop()
        return
    if port.startswith("sim://"):
        emu = _sim_board(port, _timeout_mark(request))
        url = f"socket://{emu.host}:{emu.port}"
        try:
            yield Board(url, (emu.host, emu.port), read_info(url), emu.timeout_s, emu.factory,
                        None)  # fmt: skip
        finally:
            emu.stop()
        return
    # a real board (or any other pyserial URL): bridged once, never restored
    bridge = _bridges.get(port)
    if bridge is None:
        bridge = _bridges[port] = SerialBridge(port)
        # an Arduino resets when its port opens (DTR) and its bootloader
        # drops what comes in: HELLO until the sketch answers
        read_info(f"socket://127.0.0.1:{bridge.port}", wait_s=10.0)
    url = f"socket://127.0.0.1:{bridge.port}"
    timeout_s = int(os.environ.get("MODELOTA_HIL_TIMEOUT_MS", "10000")) / 1000
    yield Board(url, ("127.0.0.1", bridge.port), read_info(url), timeout_s, None, None)
