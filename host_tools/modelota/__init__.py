"""ModelOTA host tools: pack, inspect and simulate streamed in-place model weight updates.

The names below are loaded on first use (PEP 562), so that ``modelota --help``
and a script that needs one corner of the package do not pay for the rest.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)

__version__ = "0.2.0"

# public name -> module that defines it
_API = {
    # what a script or notebook calls (docs/API.md)
    "pack": "modelota.api",
    "inspect": "modelota.api",
    "fingerprint": "modelota.api",
    "simulate": "modelota.api",
    "SimulatedDevice": "modelota.sim.device",
    "ModelOTAError": "modelota.status",
    "Status": "modelota.status",
    # the wire format itself (docs/FORMAT.md)
    "Device": "modelota.format.payload",
    "Header": "modelota.format.payload",
    "Payload": "modelota.format.payload",
    "apply_reference": "modelota.format.payload",
    "parse": "modelota.format.payload",
}

__all__ = [
    "Device",
    "Header",
    "ModelOTAError",
    "Payload",
    "SimulatedDevice",
    "Status",
    "apply_reference",
    "fingerprint",
    "inspect",
    "pack",
    "parse",
    "simulate",
]

if TYPE_CHECKING:
    from .api import fingerprint, inspect, pack, simulate
    from .format.payload import Device, Header, Payload, apply_reference, parse
    from .sim.device import SimulatedDevice
    from .status import ModelOTAError, Status


def __getattr__(name: str) -> object:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'modelota' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
