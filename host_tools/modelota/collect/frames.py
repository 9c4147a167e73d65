"""Sample-window frames (docs/COLLECT.md): the Python mirror of samples.h.

A device running the sample logger (firmware_lib/modelota/samples.h) streams
windows of float sensor rows as frames. This module parses them
(:func:`parse_window` for one frame, :func:`iter_windows` for a body of
frames, :class:`FrameParser` for a serial stream with garbage and losses).
"""

from __future__ import annotations

import collections
import math
import struct
import zlib
from dataclasses import dataclass, field

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


def check_frame(frame: bytes) -> tuple[tuple[Sensor, ...], float, int, int, bytes]:
    """Every check of :func:`parse_window` without decoding the values:
    (sensors, interval_ms, seq, first_sample, the values' raw float32 bytes).
    For hosts that store frames as they came (the fleet server)."""
    frame = bytes(frame)
    if len(frame) < 4 or frame[:4] != MAGIC:
        raise FrameError("BadMagic", f"frame does not start with {MAGIC!r}")
    n_sensors, _rows, interval, seq, first, table_len, total = _head_fields(frame)
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
    return sensors, interval, seq, first, body


def parse_window(frame: bytes) -> Window:
    """Exactly one frame -> Window. Raises FrameError (a ValueError) naming
    the first problem, in the order of docs/COLLECT.md."""
    sensors, interval, seq, first, body = check_frame(frame)
    n_sensors = len(sensors)
    rows = len(body) // (4 * n_sensors)
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
