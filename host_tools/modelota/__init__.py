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
    "Device": "modelota.format.payload",
    "Header": "modelota.format.payload",
    "Payload": "modelota.format.payload",
    "apply_reference": "modelota.format.payload",
    "pack": "modelota.format.payload",
    "parse": "modelota.format.payload",
    "ModelOTAError": "modelota.status",
    "Status": "modelota.status",
}

__all__ = [
    "Device",
    "Header",
    "ModelOTAError",
    "Payload",
    "Status",
    "apply_reference",
    "pack",
    "parse",
]

if TYPE_CHECKING:
    from .format.payload import Device, Header, Payload, apply_reference, pack, parse
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
