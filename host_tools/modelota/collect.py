"""Field data collection: sample windows from devices to Edge Impulse files.

A device running the sample logger (firmware_lib/modelota/samples.h) streams
windows of float sensor rows as frames (docs/COLLECT.md). This module parses
them (:func:`parse_window` for one frame, :func:`iter_windows` for a body of
frames, :class:`FrameParser` for a serial stream with garbage and losses),
and writes each window as an Edge Impulse data acquisition JSON file, signed
with HMAC-SHA256 when a key is given, plus a CSV (:func:`write_window`).

``modelota collect --port URL OUTDIR`` does it over any pyserial URL,
including the emulated boards (``sim://qemu-avr?sketch=SampleLogger``).
"""

from __future__ import annotations

import argparse
import collections
import csv as csv_module
import hashlib
import hmac
import io
import json
import math
import re
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .status import CliError

MAGIC = b"MOTW"
FORMAT_VERSION = 1
HEAD = struct.Struct("<4sBBHfIIHH")  # magic, version, sensors, rows, interval, seq, first, table
HEAD_LEN = HEAD.size
MAX_SENSORS = 16
MAX_NAME = 32
MAX_UNITS = 16
MAX_VALUES = 65536
MAX_TABLE = MAX_SENSORS * (2 + MAX_NAME + MAX_UNITS)
MAX_FRAME = HEAD_LEN + MAX_TABLE + 4 + 4 * MAX_VALUES + 4
EMPTY_SIGNATURE = "0" * 64
assert HEAD_LEN == 24


class WindowError(ValueError):
    """A window that cannot be read or written; the message is one line."""


class FrameError(WindowError):
    """A frame that is not a valid window. ``reason`` is a short name
    (``BadMagic``, ``HeaderCrc``, ``FrameCrc``, ``Truncated``...)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.detail = message
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Sensor:
    name: str
    units: str


@dataclass(frozen=True)
class Window:
    """One window: ``values[row][sensor]`` float32 values (as Python floats)."""

    sensors: tuple[Sensor, ...]
    interval_ms: float
    seq: int
    first_sample: int
    values: tuple[tuple[float, ...], ...]

    @property
    def sensor_count(self) -> int:
        return len(self.sensors)

    @property
    def sample_count(self) -> int:
        return len(self.values)

    def encode(self) -> bytes:
        """The frame the device would send (reference encoder, docs/COLLECT.md)."""
        table = b"".join(
            bytes([len(s.name)]) + s.name.encode("ascii") + bytes([len(s.units)])
            + s.units.encode("ascii")
            for s in self.sensors
        )  # fmt: skip
        head = HEAD.pack(MAGIC, FORMAT_VERSION, len(self.sensors), len(self.values),
                         self.interval_ms, self.seq, self.first_sample, len(table), 0)  # fmt: skip
        hcrc = zlib.crc32(head + table)
        flat = [v for row in self.values for v in row]
        body = struct.pack(f"<{len(flat)}f", *flat)
        return (head + table + struct.pack("<I", hcrc) + body
                + struct.pack("<I", zlib.crc32(body, hcrc)))  # fmt: skip


def _label_ok(raw: bytes, limit: int) -> bool:
    return 1 <= len(raw) <= limit and all(0x20 <= b <= 0x7E for b in raw)


def _head_fields(buf: bytes | bytearray) -> tuple[int, int, float, int, int, int, int]:
    """Checks magic, version and every length field of a head (at least 24
    bytes): sensor count, sample count, values, table length. Returns
    (sensors, rows, interval, seq, first_sample, table_len, frame length)."""
    if bytes(buf[:4]) != MAGIC:
        raise FrameError("BadMagic", f"frame does not start with {MAGIC!r}")
    if len(buf) < 5:
        raise FrameError("Truncated", "frame ends inside its head")
    if buf[4] != FORMAT_VERSION:
        raise FrameError("UnsupportedVersion", f"format version {buf[4]}, this host reads 1")
    if len(buf) < HEAD_LEN:
        raise FrameError("Truncated", f"frame ends inside its head ({len(buf)} of 24 bytes)")
    _, _, n_sensors, rows, interval, seq, first, table_len, _reserved = HEAD.unpack_from(buf)
    if not 1 <= n_sensors <= MAX_SENSORS:
        raise FrameError("BadLength", f"sensor_count {n_sensors} not in 1..{MAX_SENSORS}")
    if rows == 0 or n_sensors * rows > MAX_VALUES:
        raise FrameError("BadLength", f"{n_sensors} x {rows} values (1..{MAX_VALUES})")
    if not n_sensors * 4 <= table_len <= n_sensors * (2 + MAX_NAME + MAX_UNITS):
        raise FrameError("BadLength", f"table_len {table_len} impossible for {n_sensors} sensors")
    total = HEAD_LEN + table_len + 4 + 4 * n_sensors * rows + 4
    return n_sensors, rows, interval, seq, first, table_len, total


def frame_length(head: bytes | bytearray) -> int:
    """Length of the frame that starts with ``head`` (at least 24 bytes),
    from its length fields; FrameError when they are out of bounds."""
    return _head_fields(head)[6]


def _sensor_table(table: bytes, n_sensors: int) -> tuple[Sensor, ...]:
    sensors = []
    pos = 0
    for i in range(n_sensors):
        parts = []
        for what, limit in (("name", MAX_NAME), ("units", MAX_UNITS)):
            if pos >= len(table):
                raise FrameError("BadSensorTable", f"sensor {i}: table ends before its {what}")
            n = table[pos]
            raw = table[pos + 1 : pos + 1 + n]
            if len(raw) != n or not _label_ok(raw, limit):
                raise FrameError(
                    "BadSensorTable", f"sensor {i}: {what} must be 1..{limit} printable ASCII bytes"
                )
            parts.append(raw.decode("ascii"))
            pos += 1 + n
        sensors.append(Sensor(parts[0], parts[1]))
    if pos != len(table):
        raise FrameError("BadSensorTable", f"{len(table) - pos} bytes left after the last sensor")
    return tuple(sensors)


def parse_window(frame: bytes) -> Window:
    """Exactly one frame -> Window. Raises FrameError (a ValueError) naming
    the first problem, in the order of docs/COLLECT.md."""
    frame = bytes(frame)
    if len(frame) < 4 or frame[:4] != MAGIC:
        raise FrameError("BadMagic", f"frame does not start with {MAGIC!r}")
    n_sensors, rows, interval, seq, first, table_len, total = _head_fields(frame)
    hend = HEAD_LEN + table_len
    if len(frame) < hend + 4:
        raise FrameError("Truncated", f"frame ends inside its head ({len(frame)} bytes)")
    (hcrc,) = struct.unpack_from("<I", frame, hend)
    if hcrc != zlib.crc32(frame[:hend]):
        raise FrameError("HeaderCrc", "header CRC32 mismatch")
    if HEAD.unpack_from(frame)[8] != 0:
        raise FrameError("Unsupported", "reserved field is not 0")
    sensors = _sensor_table(frame[HEAD_LEN:hend], n_sensors)
    if not (math.isfinite(interval) and interval > 0):
        raise FrameError("BadInterval", f"interval_ms {interval} is not a positive number")
    if len(frame) < total:
        raise FrameError("Truncated", f"frame is {len(frame)} of {total} bytes")
    body = frame[hend + 4 : total - 4]
    (fcrc,) = struct.unpack_from("<I", frame, total - 4)
    if fcrc != zlib.crc32(body, hcrc):
        raise FrameError("FrameCrc", "frame CRC32 mismatch (values corrupted)")
    if len(frame) > total:
        raise FrameError("TrailingData", f"{len(frame) - total} bytes after the frame")
    flat = struct.unpack(f"<{n_sensors * rows}f", body)
    values = tuple(tuple(flat[r * n_sensors : (r + 1) * n_sensors]) for r in range(rows))
    return Window(sensors, interval, seq, first, values)


def iter_windows(data: bytes) -> list[Window]:
    """A body made of whole frames, back to back (an HTTP POST from a device)
    -> its windows. Strict: any garbage or bad frame raises FrameError with
    the offset of the frame."""
    out = []
    pos = 0
    while pos < len(data):
        try:
            total = frame_length(data[pos : pos + HEAD_LEN])
            out.append(parse_window(data[pos : pos + total]))
        except FrameError as e:
            raise FrameError(e.reason, f"frame {len(out)} at byte {pos}: {e.detail}") from None
        pos += total
    return out


@dataclass
class FrameParser:
    """Windows from a byte stream that may hold other bytes and damaged
    frames: hunts for the magic, bounds lengths before waiting, checks the
    header CRC before waiting for the values, then the frame CRC. After a
    bad frame it scans again from the byte after that magic, so a good
    frame that follows a cut one is still found."""

    windows: int = 0
    rejected: int = 0  # frame candidates refused (each one counted once)
    garbage_bytes: int = 0  # bytes outside any good frame (text, noise, bad frames)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    buf: bytearray = field(default_factory=bytearray)

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        self.garbage_bytes += 1
        del self.buf[:1]

    def feed(self, data: bytes) -> list[Window]:
        self.buf += data
        return self._scan(final=False)

    def close(self) -> list[Window]:
        """End of stream: frames still incomplete are counted as Truncated
        and the bytes after their magic scanned again."""
        out = self._scan(final=True)
        self.garbage_bytes += len(self.buf)
        self.buf.clear()
        return out

    def _scan(self, final: bool) -> list[Window]:
        out: list[Window] = []
        while True:
            i = self.buf.find(MAGIC)
            if i < 0:
                keep = 0 if final else min(len(self.buf), len(MAGIC) - 1)
                self.garbage_bytes += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            self.garbage_bytes += i
            del self.buf[:i]
            if len(self.buf) < HEAD_LEN:
                if final:
                    self._reject("Truncated")
                    continue
                return out
            try:
                total = frame_length(self.buf)
            except FrameError as e:
                self._reject(e.reason)
                continue
            # the header CRC first: a damaged length must not make us wait
            hend = HEAD_LEN + (self.buf[20] | self.buf[21] << 8) + 4
            if len(self.buf) < total:
                if final or len(self.buf) >= hend:
                    try:  # header CRC, table, interval: all known now
                        parse_window(bytes(self.buf[: min(hend, len(self.buf))]))
                    except FrameError as e:
                        if e.reason != "Truncated" or final:
                            self._reject(e.reason)
                            continue
                return out
            try:
                w = parse_window(bytes(self.buf[:total]))
            except FrameError as e:
                self._reject(e.reason)
                continue
            del self.buf[:total]
            self.windows += 1
            out.append(w)


# ------------------------------------------------------------ Edge Impulse


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


# ------------------------------------------------------------ serial collection


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

    if "modelota.serial_handlers" not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append("modelota.serial_handlers")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise CliError(f"{outdir} exists and is not a directory")
    t0 = time.monotonic()
    try:
        port = serial.serial_for_url(port_url, baudrate=baud, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as e:
        raise CliError(f"cannot open {port_url}: {e}") from e
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


def cmd_collect(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1")
    if args.timeout <= 0:
        raise CliError("--timeout must be positive")
    key = None
    if args.hmac_key is not None:
        if not args.hmac_key:
            raise CliError("--hmac-key is empty")
        key = args.hmac_key.encode("utf-8")
    if not args.device_type:
        raise CliError("--device-type must not be empty (Edge Impulse requires it)")
    r = collect(args.port, Path(args.outdir), count=args.count, timeout=args.timeout,
                hmac_key=key, device_name=args.device_name, device_type=args.device_type,
                csv=args.csv, label=args.label, baud=args.baud,
                progress=not args.quiet)  # fmt: skip
    why = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items()))
    bad = f"rejected {r.rejected} damaged frames ({why})" if r.rejected else "no damaged frames"
    skipped = f", {r.unwritable} with NaN/infinity not written" if r.unwritable else ""
    print(f"wrote {r.windows} windows ({len(r.files)} files) to {args.outdir}; {bad}{skipped};"
          f" {r.garbage_bytes} other bytes skipped")  # fmt: skip
    if r.windows == 0:
        raise CliError(f"no window received from {args.port} in {args.timeout:g} s")
    if args.count is not None and r.windows < args.count:
        raise CliError(
            f"received only {r.windows} of {args.count} windows (no window for {args.timeout:g} s)"
        )
    return 0


def add_commands(sub: Any) -> None:
    """Registers ``collect`` on the cli's subparsers."""
    p = sub.add_parser(
        "collect",
        help="receive sample windows from a device and write Edge Impulse files",
        description="Receive sample windows (docs/COLLECT.md) over a serial port and write"
        " each as an Edge Impulse data acquisition JSON file (+ CSV). Damaged frames"
        " are counted and never written.",
    )
    p.add_argument("--port", required=True, help="serial port or pyserial URL (socket://, sim://)")
    p.add_argument("outdir", help="directory for the files (created if missing)")
    p.add_argument("--count", type=int, default=None, help="stop after N windows")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="stop when no window came for S seconds (default 10)")  # fmt: skip
    p.add_argument(
        "--hmac-key",
        default=None,
        help="Edge Impulse project HMAC key: sign files with HS256 (its UTF-8 text)",
    )
    p.add_argument("--device-name", default="",
                   help="globally unique device id (MAC...); left out when empty")  # fmt: skip
    p.add_argument("--device-type", default="ModelOTA", help="device model (required by EI)")
    p.add_argument(
        "--label",
        default="field",
        help="file name prefix; Edge Impulse takes it as the label (default field)",
    )
    p.add_argument("--csv", action=argparse.BooleanOptionalAction, default=True,
                   help="also write a CSV per window (default: yes)")  # fmt: skip
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_collect)
