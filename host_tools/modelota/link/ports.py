"""Opening a serial port from a path or a pyserial URL.

Besides pyserial's own schemes (``socket://``, ``rfc2217://``, ``loop://``...)
``sim://`` reaches a simulated or emulated board (:mod:`modelota.sim.handlers`).
The handler package is named here as a string: pyserial imports it only when
a ``sim://`` URL is opened, so the link layer does not depend on the simulator.
"""

from __future__ import annotations

import socket
from typing import Any

from ..status import CliError

SIM_HANDLERS = "modelota.sim.handlers"


def register_handlers() -> None:
    """Makes ``sim://`` URLs known to ``serial.serial_for_url``."""
    import serial

    if SIM_HANDLERS not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(SIM_HANDLERS)


def set_nodelay(port: Any) -> None:
    """Turns Nagle's algorithm off on a socket-backed port (``socket://``,
    ``sim://``): small frames go out at once instead of waiting for the
    peer's TCP acknowledgement. pyserial's socket handler keeps its socket in
    ``_socket`` and does not set TCP_NODELAY itself; other ports are left alone."""
    sock = getattr(port, "_socket", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def open_port(url: str, baud: int = 115200, timeout: float = 0.05) -> Any:
    """``serial.serial_for_url(url)`` with ``sim://`` known and, on a socket,
    TCP_NODELAY set; a port that cannot be opened is a one-line :class:`CliError`."""
    import serial

    register_handlers()
    try:
        port = serial.serial_for_url(url, baudrate=baud, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise CliError(f"cannot open {url}: {e}") from e
    set_nodelay(port)
    return port
