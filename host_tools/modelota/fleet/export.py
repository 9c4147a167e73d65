"""``modelota export DIR``: the fleet's device answers as a static tree.

When one server no longer carries the fleet, nginx, S3 or a CDN can serve
this tree instead: every device finds its manifest at the same path as on
``modelota serve`` and downloads the payload it names, with Range requests
for resume (every static server supports them). What a static tree cannot
do is answer per request: it always serves the assigned version's full
payload (the device compares versions itself, docs/FLEET.md) and has no
report endpoint.

The tree is updated in an order that never shows a device a manifest whose
payload is missing: payload files first, then each manifest renamed into
place, then manifests of devices that lost their assignment removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
            os.close(fd)
            try:
                shutil.copyfile(fleet.payload_path(sha), tmp)
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
