"""Edge Impulse data acquisition files of sample windows (docs/COLLECT.md).

:func:`ingestion_document` builds the JSON document of a window (signed with
HMAC-SHA256 when a key is given), :func:`csv_text` its CSV, and
:func:`write_window` writes both under names Edge Impulse reads a label from.
"""

from __future__ import annotations

import csv as csv_module
import hashlib
import hmac
import io
import json
import math
import re
import struct
import time
from pathlib import Path
from typing import Any

from .frames import EMPTY_SIGNATURE, Window, WindowError


def f32_text(x: float) -> str:
    """Shortest decimal that reads back as the same float32 (x is one)."""
    if not math.isfinite(x):
        raise WindowError(f"{x} cannot be written: JSON has no NaN or infinity")
    want = struct.pack("<f", x)
    for digits in range(1, 10):
        s = f"{x:.{digits}g}"
        try:
            if struct.pack("<f", float(s)) == want:
                return repr(float(s))
        except OverflowError:
            continue
    return repr(x)  # 9 significant digits always round-trip; not reached


def document_bytes(doc: dict[str, Any]) -> bytes:
    """The exact bytes of an ingestion file: json.dumps with its default
    separators, keys in insertion order (protected, signature, payload),
    UTF-8. The HMAC is computed over these bytes with a zero signature."""
    return json.dumps(doc).encode("utf-8")


def ingestion_document(
    window: Window,
    device_name: str,
    device_type: str,
    hmac_key: bytes | None,
    *,
    iat: int | None = None,
) -> dict[str, Any]:
    """The Edge Impulse data acquisition document of a window (docs/COLLECT.md).

    ``hmac_key`` given: alg HS256, signature = hex HMAC-SHA256 over
    :func:`document_bytes` of the document whose signature is 64 zeros.
    Without a key: alg "none" and the 64-zero signature. ``iat`` defaults to
    now (the host's clock; the device's may not run). ``device_name`` empty:
    the key is left out (Edge Impulse: only for globally unique ids)."""
    if not device_type:
        raise WindowError("device_type is required by the data acquisition format")
    try:
        rows = [[float(f32_text(v)) for v in row] for row in window.values]
        interval = float(f32_text(window.interval_ms))
    except WindowError as e:
        raise WindowError(f"window {window.seq}: {e}") from None
    payload: dict[str, Any] = {}
    if device_name:
        payload["device_name"] = device_name
    payload["device_type"] = device_type
    payload["interval_ms"] = interval
    payload["sensors"] = [{"name": s.name, "units": s.units} for s in window.sensors]
    payload["values"] = rows
    doc: dict[str, Any] = {
        "protected": {
            "ver": "v1",
            "alg": "HS256" if hmac_key else "none",
            "iat": int(time.time()) if iat is None else int(iat),
        },
        "signature": EMPTY_SIGNATURE,
        "payload": payload,
    }
    if hmac_key:
        doc["signature"] = hmac.new(hmac_key, document_bytes(doc), hashlib.sha256).hexdigest()
    return doc


def csv_text(window: Window) -> str:
    """timestamp (ms from the window's first row) and one column per sensor,
    values as in the JSON file (Edge Impulse CSV: a ``timestamp`` column)."""
    out = io.StringIO()
    w = csv_module.writer(out, lineterminator="\n")
    w.writerow(["timestamp", *(s.name for s in window.sensors)])
    for i, row in enumerate(window.values):
        w.writerow([repr(i * window.interval_ms), *(f32_text(v) for v in row)])
    return out.getvalue()


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _safe(text: str, fallback: str) -> str:
    s = _UNSAFE.sub("_", text).strip("_")[:40]
    return s or fallback


def write_window(
    outdir: Path,
    window: Window,
    device_name: str,
    device_type: str,
    hmac_key: bytes | None,
    csv: bool = True,
    *,
    label: str = "field",
    iat: int | None = None,
) -> list[Path]:
    """Writes ``<label>.<device>.<seq>.<first_sample>[.N].json`` (+ ``.csv``)
    in ``outdir`` and returns the paths. Names hold only [A-Za-z0-9_.-];
    an existing file is never overwritten (``.1``, ``.2``... is appended;
    a rebooted device starts its seq at 0 again). Edge Impulse infers the
    label from the name up to the first dot."""
    doc = ingestion_document(window, device_name, device_type, hmac_key, iat=iat)
    texts = {".json": document_bytes(doc)}
    if csv:
        texts[".csv"] = csv_text(window).encode("ascii")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = (f"{_safe(label, 'field')}.{_safe(device_name or device_type, 'device')}"
            f".{window.seq:06d}.{window.first_sample:010d}")  # fmt: skip
    for n in range(10000):
        name = stem if n == 0 else f"{stem}.{n}"
        written: list[Path] = []
        try:
            for ext, data in texts.items():
                path = outdir / (name + ext)
                with open(path, "xb") as f:  # x: never overwrite
                    written.append(path)
                    f.write(data)
        except FileExistsError:
            for p in written:
                p.unlink()
            continue
        return written
    raise WindowError(f"{outdir}: 10000 files named {stem}.* exist already")
