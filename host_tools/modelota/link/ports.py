"""Opening a serial port from a path or a pyserial URL.

Besides pyserial's own schemes (``socket://``, ``rfc2217://``, ``loop://``...)
``sim://`` reaches a simulated or emulated board (:mod:`modelota.sim.handlers`).
The handler package is named here as a string: pyserial imports it only when
a ``sim://`` URL is opened, so the link layer does not depend on the simulator.
"""

from __future__ import annotations

from typing import Any

from ..status import CliError

SIM_HANDLERS = "modelota.sim.handlers"


def register_handlers() -> None:
    """Makes ``sim://`` URLs known to ``serial.serial_for_url``."""
    import serial

    if SIM_HANDLERS not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(SIM_HANDLERS)


def open_port(url: str, baud: int = 115200, timeout: float = 0.05) -> Any:
    """``serial.serial_for_url(url)`` with ``sim://`` known; a port that cannot
    be opened is a one-line :class:`CliError`."""
    import serial

    register_handlers()
    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise CliError(f"cannot open {url}: {e}") from e
