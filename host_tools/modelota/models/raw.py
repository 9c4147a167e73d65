"""Raw weight files (.bin, .npy): reading them and their fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..format.payload import FINGERPRINT_LEN, U32_MAX
from ..status import CliError


def raw_fingerprint(model: str, size: int) -> bytes:
    """Fingerprint for raw weight files, where no graph is available to hash:
    the model name the user gives plus the region size."""
    h = hashlib.sha256(b"modelota-raw-v1\0" + model.encode() + b"\0" + str(size).encode())
    return h.digest()[:FINGERPRINT_LEN]


def read_weights(paths: Sequence[str]) -> bytes:
    """Concatenates raw weight files in order (.npy arrays as their raw bytes)."""
    parts = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            raise CliError(f"{p}: is a directory, not a weights file")
        if not path.is_file():
            raise CliError(f"{p}: no such file")
        if path.suffix == ".npy":
            import numpy as np

            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise CliError(f"{p}: not a numpy array file ({e})") from e
            parts.append(np.ascontiguousarray(arr).tobytes())
        else:
            parts.append(path.read_bytes())
    data = b"".join(parts)
    if len(data) > U32_MAX:
        raise CliError("weights exceed 4 GiB, the format's limit")
    return data
