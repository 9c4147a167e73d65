"""Sample windows received over a serial link (any pyserial URL) and filed."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..link.ports import open_port
from ..status import CliError
from .frames import FrameParser, Window, WindowError
from .ingestion import write_window


@dataclass
class CollectResult:
    windows: int
    files: list[Path]
    rejected: int
    garbage_bytes: int
    reasons: dict[str, int]
    unwritable: int
    seconds: float


def collect(
    port_url: str,
    outdir: Path,
    *,
    count: int | None = None,
    timeout: float = 10.0,
    hmac_key: bytes | None = None,
    device_name: str = "",
    device_type: str = "ModelOTA",
    csv: bool = True,
    label: str = "field",
    baud: int = 115200,
    progress: bool = False,
) -> CollectResult:
    """Receives windows from ``port_url`` (any pyserial URL) and writes each
    one to ``outdir``, until ``count`` windows are written or no window came
    for ``timeout`` seconds. Damaged frames are counted, never written."""
    import serial

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise CliError(f"{outdir} exists and is not a directory")
    t0 = time.monotonic()
    port = open_port(port_url, baud)
    parser = FrameParser()
    files: list[Path] = []
    written = 0
    unwritable = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="window", desc="collect")

    def take(windows: Iterable[Window]) -> None:
        nonlocal unwritable, written
        for w in windows:
            if count is not None and written >= count:
                return
            try:
                files.extend(write_window(outdir, w, device_name, device_type, hmac_key, csv,
                                          label=label))  # fmt: skip
            except WindowError:
                unwritable += 1
                continue
            written += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(rejected=parser.rejected)

    def done() -> int:
        return written

    try:
        last = time.monotonic()
        while count is None or done() < count:
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as e:
                raise CliError(f"link lost: {e}") from e
            before = done()
            if data:
                take(parser.feed(data))
            if done() > before:
                last = time.monotonic()
            elif time.monotonic() - last > timeout:
                break
        if count is None or done() < count:
            take(parser.close())
    finally:
        port.close()
        if bar is not None:
            bar.close()
    return CollectResult(done(), files, parser.rejected, parser.garbage_bytes,
                         dict(parser.reasons), unwritable, time.monotonic() - t0)  # fmt: skip
