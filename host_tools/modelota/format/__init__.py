"""The wire format: the one Python mirror of docs/FORMAT.md.

:mod:`.payload` packs, parses and applies payloads (header, chunks, digest);
:mod:`.signing` holds Ed25519 key files (needs the ``sign`` extra).
"""

from __future__ import annotations

import importlib

__all__ = [
    "Chunk",
    "Device",
    "Header",
    "Payload",
    "apply_reference",
    "crc32",
    "diff_ranges",
    "final_digest",
    "pack",
    "parse",
    "seal",
    "segments_of",
    "split_chunks",
]


def __getattr__(name: str) -> object:
    # loaded on first use: the CLI reads .constants without paying for .payload
    if name not in __all__:
        raise AttributeError(f"module 'modelota.format' has no attribute {name!r}")
    value = getattr(importlib.import_module("modelota.format.payload"), name)
    globals()[name] = value
    return value
