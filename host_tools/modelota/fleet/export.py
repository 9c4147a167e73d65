"""``modelota export DIR``: the fleet's device answers as a static tree.

When one server no longer carries the fleet, nginx, S3 or a CDN can serve
this tree instead: every device finds its manifest at the same path as on
``modelota serve`` and downloads the payload it names, with Range requests
for resume (every static server supports them). What a static tree cannot
do is answer per request: it always serves the assigned version's full
payload (the device compares versions itself, docs/FLEET.md) and has no
report endpoint.

:func:`write_windows` turns the sample windows devices posted (stored in
the database, ``GET /admin/windows``) into Edge Impulse data acquisition
files (``modelota fleet windows``).

The tree is updated in an order that never shows a device a manifest whose
payload is missing: payload files first, then each manifest renamed into
place, then manifests of devices that lost their assignment removed.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .db import Fleet


@dataclass
class ExportSummary:
    devices: int
    payloads: int
    removed: int


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".export-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(fleet: Fleet, out: Path) -> ExportSummary:
    out = Path(out)
    payload_dir = out / "v1" / "payloads"
    device_dir = out / "v1" / "devices"
    payload_dir.mkdir(parents=True, exist_ok=True)
    manifests: dict[str, bytes] = {}
    needed: set[str] = set()
    for device in fleet.device_ids():
        rec = fleet.target(device)
        if rec is None:
            continue
        manifests[device] = rec.manifest()
        needed.add(rec.sha256)
    for sha in sorted(needed):
        dst = payload_dir / f"{sha}.mota"
        if not dst.exists():
            fd, tmp = tempfile.mkstemp(dir=payload_dir, prefix=".export-")
            try:
                with os.fdopen(fd, "wb") as f:
                    fleet.copy_payload(sha, f)  # from its file or the database
                os.chmod(tmp, 0o644)
                os.replace(tmp, dst)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    for device, raw in manifests.items():
        _atomic_write(device_dir / device / "manifest.json", raw)
    removed = 0
    if device_dir.is_dir():
        for old in device_dir.iterdir():
            if old.name not in manifests and (old / "manifest.json").is_file():
                (old / "manifest.json").unlink()
                removed += 1
    return ExportSummary(len(manifests), len(needed), removed)


def write_windows(
    out: Path, rows: list[dict[str, Any]], hmac_key: bytes | None, device_type: str = "modelota"
) -> int:
    """Writes ``field.<device>.<seq>.<first sample>.<id>.json`` (+ ``.csv``)
    for each stored window (docs/COLLECT.md); the database id in the name
    makes it unique, so nothing is ever probed or overwritten, and a file
    already there (an earlier run) is kept. Returns the files written."""
    from ..collect import csv_text, document_bytes, ingestion_document, parse_window

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for r in rows:
        w = parse_window(r["frame"])
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", r["device"])  # a MAC's ':' -> '_'
        stem = f"field.{name}.{w.seq:06d}.{w.first_sample:010d}.{r['id']}"
        doc = ingestion_document(w, r["device"], device_type, hmac_key, iat=int(r["received_at"]))
        for ext, data in ((".json", document_bytes(doc)), (".csv", csv_text(w).encode("ascii"))):
            path = out / (stem + ext)
            if path.exists():
                continue
            _atomic_write(path, data)
            written += 1
    return written
