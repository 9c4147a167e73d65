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
from .arq import (  # noqa: F401  (frame types and NAK reasons are part of this module's API)
    ABORT,
    ACK,
    COMMIT,
    DATA,
    HELLO,
    INFO,
    NAK,
    NAK_INCOMPLETE,
    NAK_REASONS,
    RESULT,
    START,
    STATUS,
    Rto,
    Sender,
    commit_wait,
    status_text,
)
from .ports import open_port

SYNC = b"\xa5\x5a"
HEADER_LEN = 96
OVERHEAD = 9  # sync, type, len, crc
# A device frame fits the link's 64-byte transmit buffer (MODELOTA_LINK_TX_LEN):
# a longer length field is a corrupted one, not a frame to wait for.
DEVICE_MAX_BODY = 64 - OVERHEAD
# A frame whose bytes stop arriving for this long is not a frame (a device
# writes each answer at once): the reader forgets it and hunts for SYNC again.
GAP_S = 0.05
# First wait for the answer to HELLO or START, doubled on each retry up to
# --timeout: both are harmless to repeat, and on a noisy line a lost frame
# should cost a fraction of a second, not the whole timeout.
REPEAT_FIRST = 0.25


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

    def skip(self) -> list[tuple[int, bytes]]:
        """Forgets the frame being gathered (its bytes stopped: a corrupted
        length) and hunts again in what came after its SYNC."""
        if len(self.buf) < 2:
            return []
        self.bad += 1
        del self.buf[:2]
        return self.feed(b"")


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
    resume_timeout_ms: int = 0  # protocol version 2; 0: not told

    @classmethod
    def decode(cls, body: bytes) -> Info:
        if len(body) < 45:
            raise CliError(f"device sent a short INFO ({len(body)} bytes)")
        p, st = body[0], body[1]
        fp = bytes(body[2:18])
        ver, size, mx, win, tid, acked, crc, probe = struct.unpack_from("<IIHBIIIi", body, 18)
        (resume,) = struct.unpack_from("<I", body, 45) if len(body) >= 49 else (0,)
        return cls(p, st, fp, ver, size, mx, win, tid, acked, crc, probe, resume)


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
    timeouts: int = 0  # retransmission timeouts in the data phase
    frame_sizes: tuple[int, ...] = ()  # DATA frame sizes used, largest first


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
        self.reader = FrameReader(DEVICE_MAX_BODY)
        self.pending: list[tuple[int, bytes]] = []
        self.last_rx = 0.0
        self.rtt = 0.0  # round trip of the last request answered
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
            now = time.monotonic()
            if data:
                self.last_rx = now
                self.heard += data
                del self.heard[:-1024]
                self.pending += self.reader.feed(data)
            elif len(self.reader.buf) >= 2 and now - self.last_rx >= GAP_S:
                self.pending += self.reader.skip()
        return self.pending.pop(0)

    def request(
        self,
        ftype: int,
        body: bytes,
        want: set[int],
        timeout: float,
        retries: int,
        first: float | None = None,
    ) -> Any:
        """Sends a frame until one of ``want`` answers, ``retries`` more times at
        most. Each attempt waits ``timeout``; with ``first``, the first waits that
        long and each next one twice as long, up to ``timeout`` (for requests that
        are harmless to repeat: a frame lost to noise costs a short wait)."""
        wait = min(first, timeout) if first else timeout
        for _ in range(retries + 1):
            self.send(ftype, body)
            sent = time.monotonic()
            end = sent + wait
            wait = min(wait * 2, timeout)
            while (left := end - time.monotonic()) > 0:
                got = self.recv(left)
                if got is not None and got[0] in want:
                    self.rtt = time.monotonic() - sent  # of the attempt answered
                    return got
        return None

    def hello(self, timeout: float, retries: int) -> Info:
        """HELLO -> INFO, retried (the first wait REPEAT_FIRST, doubled up to
        ``timeout``: on a noisy line a lost HELLO costs a short wait); stops at
        the first sign that the device runs a sketch without the link
        (:func:`not_a_link`)."""
        wait = min(REPEAT_FIRST, timeout)
        for _ in range(retries + 1):
            got = self.request(HELLO, b"", {INFO, RESULT}, wait, 0)
            wait = min(wait * 2, timeout)
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


def _commit(s: Session, wait: float) -> tuple[int, bytes] | None:
    """Sends COMMIT and waits ``wait`` seconds for RESULT or NAK{INCOMPLETE}.
    Other NAKs are late answers to the data phase (a corrupted duplicate
    DATA frame after the last ACK), not to COMMIT."""
    s.send(COMMIT)
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        got = s.recv(left)
        if got is None:
            return None
        if got[0] == RESULT or (got[0] == NAK and got[1][4:5] == bytes([NAK_INCOMPLETE])):
            return got
    return None


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
    # a repeated START of the same transfer is a resume: ACK{acked} again
    got = s.request(START, struct.pack("<II", total, tid), {ACK, RESULT}, timeout, retries,
                    first=REPEAT_FIRST)  # fmt: skip
    if got is None:
        raise CliError("the device did not answer START")
    if got[0] == RESULT:
        raise CliError(
            f"the device refused the update: {status_text(struct.unpack_from('<b', got[1])[0])}"
        )
    (base,) = struct.unpack_from("<I", got[1])
    resumed_from = base
    byte_time = 10 / baud if baud else 0.0
    # round trip of START (17 bytes) and its ACK (14): the line's latency, to start with
    latency = max(0.0, s.rtt - 31 * byte_time)
    # Retransmission timeout, counted from when a frame's last byte has left the host:
    # twice the START round trip to begin with, at most the user's timeout (protocol 1's
    # fixed timeout) and at most a third of the device's resume timeout, so a
    # retransmission (or the START sent on a timeout) keeps the transfer open.
    ceiling = timeout
    if info.resume_timeout_ms:
        ceiling = min(ceiling, info.resume_timeout_ms / 3000)
    rto = Rto(2 * s.rtt + 0.1, lo=0.1, hi=ceiling)
    stall = timeout * (retries + 1)
    td = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=base, unit="B", unit_scale=True, desc="push")
    try:
        sender = Sender(s, payload, base, transfer_id=tid, max_data=fsize, window=win, rto=rto,
                        stall=stall, byte_time=byte_time, latency=latency,
                        on_progress=bar.update if bar is not None else None)  # fmt: skip
        st_ = sender.run()
        data_seconds = time.monotonic() - td
        # COMMIT is idempotent (a device with no open transfer repeats its last RESULT):
        # resend it after a few round trips, backing off, until `stall` passes
        wait = commit_wait(rto)
        end = time.monotonic() + stall
        while (got := _commit(s, wait)) is None:
            if time.monotonic() >= end:
                raise CliError("no RESULT from the device after COMMIT")
            wait = min(wait * 2, timeout + 2.0)
        if got[0] == NAK:
            raise CliError("the device did not receive the whole payload before COMMIT")
        st, version, crc = struct.unpack_from("<bII", got[1])
        if st != 0:
            raise CliError(f"the device rejected the update: {status_text(st)}")
        return PushResult(version, crc, resumed_from, st_.frames, st_.resent_bytes, st_.naks,
                          time.monotonic() - t0, data_seconds, st_.timeouts,
                          tuple(sorted(st_.sizes, reverse=True)))  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
