"""``modelota push``: send a payload to a board over the serial update
protocol (docs/PROTOCOL.md).

HELLO -> INFO (the payload is checked against the board's model, size and
version before any byte of it is sent), START (resumes an open transfer of
the same payload at the board's acked offset), a sliding window of DATA
frames with go-back-N on NAK or ack timeout, COMMIT -> RESULT.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from ..status import CliError, Status
from .ports import open_port

SYNC = b"\xa5\x5a"
HELLO, START, DATA, COMMIT, ABORT, STATUS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
INFO, ACK, NAK, RESULT = 0x81, 0x82, 0x83, 0x84
NAK_REASONS = {1: "crc", 2: "gap", 3: "no transfer", 4: "range", 5: "incomplete", 6: "malformed"}
HEADER_LEN = 96
OVERHEAD = 9  # sync, type, len, crc


def transfer_id(payload: bytes) -> int:
    """Names a transfer: CRC32 of the header bytes before its CRC field (v1:
    bytes 0..91; v2: 0..header_len-5), which is the header's own CRC. Not the
    CRC of a fixed prefix: a block followed by its own CRC32 always has the
    same CRC (0x2144DF1C), so two v2 payloads of one layout would share it."""
    n = payload[5] if len(payload) > 5 and payload[4] == 2 else HEADER_LEN
    return zlib.crc32(payload[: n - 4])


def frame(ftype: int, body: bytes = b"") -> bytes:
    head = struct.pack("<BH", ftype, len(body))
    return SYNC + head + body + struct.pack("<I", zlib.crc32(head + body))


class FrameReader:
    """Hunts for SYNC, checks length and CRC; yields (type, body)."""

    def __init__(self, max_body: int = 0xFFFF) -> None:
        self.buf = bytearray()
        self.max_body = max_body
        self.bad = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            i = self.buf.find(SYNC)
            if i < 0:
                del self.buf[: max(0, len(self.buf) - 1)]
                return out
            del self.buf[:i]
            if len(self.buf) < 5:
                return out
            ftype, n = struct.unpack_from("<BH", self.buf, 2)
            if n > self.max_body:
                self.bad += 1
                del self.buf[:2]
                continue
            if len(self.buf) < 5 + n + 4:
                return out
            raw = bytes(self.buf[2 : 5 + n])
            (crc,) = struct.unpack_from("<I", self.buf, 5 + n)
            if crc != zlib.crc32(raw):
                self.bad += 1
                del self.buf[:2]
                continue
            del self.buf[: 5 + n + 4]
            out.append((ftype, raw[3:]))


@dataclass(frozen=True)
class Info:
    proto: int
    state: int
    fingerprint: bytes
    version: int
    region_size: int
    max_data: int
    window: int
    transfer_id: int
    acked: int
    weights_crc: int
    probe: int

    @classmethod
    def decode(cls, body: bytes) -> Info:
        if len(body) < 45:
            raise CliError(f"device sent a short INFO ({len(body)} bytes)")
        p, st = body[0], body[1]
        fp = bytes(body[2:18])
        ver, size, mx, win, tid, acked, crc, probe = struct.unpack_from("<IIHBIIIi", body, 18)
        return cls(p, st, fp, ver, size, mx, win, tid, acked, crc, probe)


@dataclass(frozen=True)
class PushResult:
    version: int
    weights_crc: int
    resumed_from: int
    data_frames: int
    retransmitted_bytes: int
    naks: int
    seconds: float
    data_seconds: float


def status_text(st: int) -> str:
    try:
        return Status(st).name
    except ValueError:
        return str(st)


RAW_SKETCH_HINT = (
    "the device reads raw payloads, not the link protocol (it refused push's HELLO as"
    " BadMagic{how}): send the file as plain bytes (`stty -F PORT 115200 raw -hupcl &&"
    " cat FILE > PORT`) or flash examples/SerialUpdate to use `modelota push`"
)


def not_a_link(answer: tuple[int, bytes] | None, heard: bytes) -> str | None:
    """What a device that gave no INFO after a HELLO is running, when that is
    clear: a sketch that reads raw payloads (ModelOTA::update(Serial),
    modelota_pull(), examples/Quickstart) answers the HELLO frame with a
    link RESULT{BadMagic} (src/ModelOTA.cpp); one on the bare core
    (examples/CApi) prints the status name. ``answer`` is a frame the device
    sent instead of INFO, ``heard`` the raw bytes it sent. None: not clear."""
    if (
        answer is not None
        and answer[0] == RESULT
        and answer[1][:1]
        and struct.unpack_from("<b", answer[1])[0] == Status.BadMagic
    ):
        return RAW_SKETCH_HINT.format(how="")
    if Status.BadMagic.name.encode() in heard:
        return RAW_SKETCH_HINT.format(how=", in text")
    return None


def explain_silence(heard: bytes) -> str:
    """The one line for a device that never answered HELLO with INFO: what
    it printed, if it printed text (runs of 8+ printable characters, 5+ of
    them letters: line noise rarely has those), or that it said nothing."""
    runs = [r.decode().strip() for r in re.findall(rb"[\x20-\x7e]{8,}", heard)]
    said = [r for r in runs if sum(c.isalpha() for c in r) >= 5]
    if said:
        text = said[0] if len(said[0]) <= 60 else said[0][:57] + "..."
        return (
            f"the device sends text, not ModelOTA link frames (it said {text!r}): it is not"
            " running a sketch with the link (examples/SerialUpdate), or the baud rate differs"
        )
    return "no answer from the device (is it running the ModelOTA link, examples/SerialUpdate?)"


class Session:
    """Frames over an open pyserial port."""

    def __init__(self, port: Any) -> None:
        self.port = port
        self.reader = FrameReader()
        self.pending: list[tuple[int, bytes]] = []
        self.heard = bytearray()  # the last raw bytes received (what a non-link device said)

    def send(self, ftype: int, body: bytes = b"") -> None:
        try:
            self.port.write(frame(ftype, body))
        except (serial.SerialException, OSError) as e:
            raise CliError(f"link lost while sending: {e}") from e

    def recv(self, timeout: float) -> tuple[int, bytes] | None:
        end = time.monotonic() + timeout
        while not self.pending:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.port.timeout = min(left, 0.05)
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError) as e:
                raise CliError(f"link lost: {e}") from e
            if data:
                self.heard += data
                del self.heard[:-1024]
                self.pending += self.reader.feed(data)
        return self.pending.pop(0)

    def request(self, ftype: int, body: bytes, want: set[int], timeout: float, retries: int) -> Any:
        for _ in range(retries + 1):
            self.send(ftype, body)
            end = time.monotonic() + timeout
            while (left := end - time.monotonic()) > 0:
                got = self.recv(left)
                if got is not None and got[0] in want:
                    return got
        return None

    def hello(self, timeout: float, retries: int) -> Info:
        """HELLO -> INFO, retried; stops at the first sign that the device
        runs a sketch without the link (:func:`not_a_link`)."""
        for _ in range(retries + 1):
            got = self.request(HELLO, b"", {INFO, RESULT}, timeout, 0)
            if got is not None and got[0] == INFO:
                return Info.decode(got[1])
            hint = not_a_link(got, bytes(self.heard))
            if hint is not None:
                raise CliError(hint)
        raise CliError(explain_silence(bytes(self.heard)))


def check_payload(payload: bytes, info: Info) -> None:
    """Refuses a payload the device would refuse, before any DATA is sent."""
    from ..format.payload import peek_header

    h = peek_header(payload)
    if h is None:
        raise CliError("not a ModelOTA payload (no MOTA header)")
    fp, version, size = h.fingerprint, h.model_version, h.weights_size
    if fp != info.fingerprint:
        raise CliError(
            f"wrong model: the payload is for model {fp.hex()}, the device runs"
            f" {info.fingerprint.hex()}"
        )
    if size != info.region_size:
        raise CliError(
            f"wrong size: the payload rewrites {size} bytes of weights, the device has"
            f" {info.region_size}"
        )
    if version < info.version:
        raise CliError(
            f"rollback refused: payload version {version} < device version {info.version}"
        )
    if version == info.version:
        raise CliError(f"already current: the device already runs version {version}")
    flags, base_version, base_crc = h.flags, h.base_version, h.base_crc32
    if flags & 1 and base_version != info.version:
        raise CliError(
            f"wrong base: the delta applies to version {base_version}, the device runs"
            f" {info.version}"
        )
    if flags & 1 and info.weights_crc and base_crc != info.weights_crc:
        raise CliError(
            f"wrong base: the delta applies to weights with CRC32 {base_crc:08x}, the device's"
            f" are {info.weights_crc:08x}"
        )


def push(
    port_url: str,
    payload: bytes,
    *,
    window: int | None = None,
    timeout: float = 1.0,
    retries: int = 8,
    progress: bool = False,
    baud: int = 115200,
    max_data: int | None = None,
    on_info: Callable[[Info], None] | None = None,
) -> PushResult:
    """Sends ``payload`` to the board at ``port_url`` (any pyserial URL)."""
    t0 = time.monotonic()
    port = open_port(port_url, baud)
    try:
        return _push(Session(port), payload, window, timeout, retries, progress, baud, max_data,
                     on_info, t0)  # fmt: skip
    finally:
        port.close()


def _push(
    s: Session,
    payload: bytes,
    window: int | None,
    timeout: float,
    retries: int,
    progress: bool,
    baud: int,
    max_data: int | None,
    on_info: Callable[[Info], None] | None,
    t0: float,
) -> PushResult:
    info = s.hello(timeout, retries)
    if on_info is not None:
        on_info(info)
    check_payload(payload, info)
    total = len(payload)
    tid = transfer_id(payload)
    fsize = min(info.max_data, max_data or info.max_data)
    # never more in flight than the device says it can absorb
    win = min(window or info.window, info.window or window or 4) or 4
    got = s.request(START, struct.pack("<II", total, tid), {ACK, RESULT}, timeout, retries)
    if got is None:
        raise CliError("the device did not answer START")
    if got[0] == RESULT:
        raise CliError(
            f"the device refused the update: {status_text(struct.unpack_from('<b', got[1])[0])}"
        )
    (base,) = struct.unpack_from("<I", got[1])
    resumed_from = base
    # an ack takes at most the window's line time plus the round trip to come
    ack_timeout = timeout + win * (fsize + OVERHEAD + 4) * 10 / baud
    nxt = base
    sent_max = base
    frames = naks = resent = stalls = 0
    td = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=base, unit="B", unit_scale=True, desc="push")
    last_progress = time.monotonic()
    try:
        while base < total:
            while nxt < total and nxt - base < win * fsize:
                piece = payload[nxt : nxt + fsize]
                s.send(DATA, struct.pack("<I", nxt) + piece)
                frames += 1
                if nxt < sent_max:
                    resent += len(piece)
                nxt += len(piece)
                sent_max = max(sent_max, nxt)
            got = s.recv(max(0.0, last_progress + ack_timeout - time.monotonic()))
            if got is None:
                stalls += 1
                if stalls > retries:
                    raise CliError(f"the device stopped acknowledging at offset {base} of {total}")
                nxt = base  # go back N
                last_progress = time.monotonic()
                continue
            ftype, body = got
            if ftype == ACK:
                (off,) = struct.unpack_from("<I", body)
                if off > base:
                    if bar is not None:
                        bar.update(off - base)
                    base = off
                    stalls = 0
                    last_progress = time.monotonic()
                    nxt = max(nxt, base)
            elif ftype == NAK:
                (off,) = struct.unpack_from("<I", body)
                naks += 1
                if off < base:
                    raise CliError(f"the device lost acknowledged data (NAK at {off} < {base})")
                if bar is not None and off > base:
                    bar.update(off - base)
                base = off
                nxt = off  # go back N
                last_progress = time.monotonic()
            elif ftype == RESULT:
                st = struct.unpack_from("<b", body)[0]
                raise CliError(f"the device ended the update at offset {base}: {status_text(st)}")
        data_seconds = time.monotonic() - td
        for _ in range(retries + 1):
            got = s.request(COMMIT, b"", {RESULT, NAK}, timeout + 2.0, 0)
            if got is None:
                continue
            if got[0] == NAK:
                raise CliError("the device did not receive the whole payload before COMMIT")
            st, version, crc = struct.unpack_from("<bII", got[1])
            if st != 0:
                raise CliError(f"the device rejected the update: {status_text(st)}")
            return PushResult(version, crc, resumed_from, frames, resent, naks,
                              time.monotonic() - t0, data_seconds)  # fmt: skip
        raise CliError("no RESULT from the device after COMMIT")
    finally:
        if bar is not None:
            bar.close()
