"""``sim://`` serial URLs: a simulated board reachable as a serial port.

``sim://native?size=4096&version=1&seed=1&store=0&timeout_ms=2000&name=x``
starts a :class:`modelota.sim.board.SimBoard` (the real C++ link and Updater
through cffi) on a RAM model from :func:`modelota.sim.board.demo_model`, and
connects to it over a local socket. Boards opened with the same ``name``
are the same board, so a host can drop the port and reconnect to resume.

Other hosts (``sim://qemu-m4``...) are looked up in :data:`BOARDS`: a
function of the query parameters returning ``(host, port)`` of a TCP
endpoint, registered by whoever provides that board.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from serial.urlhandler.protocol_socket import Serial as SocketSerial

from ...link.ports import set_nodelay
from ..board import SimBoard, demo_model

BOARDS: dict[str, Callable[[dict[str, str]], tuple[str, int]]] = {}
_native: dict[str, tuple[SimBoard, int]] = {}


def native_board(params: dict[str, str]) -> tuple[str, int]:
    name = params.get("name", "")
    if name and name in _native:
        return "127.0.0.1", _native[name][1]
    weights, fp = demo_model(int(params.get("size", "4096")), int(params.get("seed", "1")))
    board = SimBoard(
        weights,
        fingerprint=fp,
        version=int(params.get("version", "1")),
        store=params.get("store", "0") not in ("0", ""),
        resume_timeout_ms=int(params.get("timeout_ms", "2000")),
        frame_data=int(params.get("frame", "1024")),
    )
    port = board.serve_tcp()
    if name:
        _native[name] = (board, port)
    return "127.0.0.1", port


BOARDS["native"] = native_board


def board(name: str) -> SimBoard | None:
    """The native board opened under ``name``, for tests to inspect."""
    entry = _native.get(name)
    return entry[0] if entry else None


class Serial(SocketSerial):
    """A socket:// port whose far end is a simulated board, with TCP_NODELAY
    (pyserial's socket handler leaves Nagle on, which holds back small frames)."""

    def open(self) -> None:
        super().open()
        set_nodelay(self)

    def from_url(self, url: str) -> tuple[str, int]:  # type: ignore[override]
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "sim":
            raise ValueError(f"expected sim://BOARD[?params], got {url!r}")
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        factory = BOARDS.get(parts.netloc)
        if factory is None and parts.netloc in ("qemu-m4", "qemu-avr"):
            from ..emulated import qemu_endpoint

            return qemu_endpoint(parts.netloc[len("qemu-") :], params)  # type: ignore[arg-type]
        if factory is None:
            raise ValueError(f"unknown simulated board {parts.netloc!r}; known: {sorted(BOARDS)}")
        return factory(params)
