"""ModelOTA host tools: pack, inspect and simulate streamed in-place model weight updates."""

from .format import Device, Header, Payload, apply_reference, pack, parse
from .status import ModelOTAError, Status

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
__version__ = "0.1.0"
