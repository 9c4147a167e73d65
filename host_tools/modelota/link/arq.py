"""The data phase of a push: go-back-N over a noisy line (docs/PROTOCOL.md,
"Host behaviour").

- :class:`Rto`: the retransmission timeout, from round-trip samples (the
  RFC 6298 estimator: ``srtt + 4 * rttvar``), sampled only on frames sent
  once (Karn's rule), doubled on each expiry up to a ceiling.
- :class:`FramePlan`: DATA frame size and frames in flight chosen from the
  bit error rate the host observes. A frame of ``f`` bytes survives a line
  with bit error rate ``p`` with probability ``(1 - p) ** (8 f)``, and under
  go-back-N a lost frame also wastes what was sent after it until the NAK
  comes back; so as errors appear, frames shrink and the window shrinks to
  what keeps the line busy for one round trip.
- :class:`Sender`: sends a payload from the acked offset to the end. An ACK
  moves the window; a NAK (CRC or GAP) goes back to its offset; a silent
  retransmission timeout sends START for the open transfer (the device
  answers ``ACK{acked}``: a resynchronisation, and a keep-alive version 1
  devices also honour) and goes back to the last acked offset. It gives up
  only when the acked offset has not moved for ``stall`` seconds.
"""

from __future__ import annotations

import math
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..status import CliError, Status

# frame types and NAK reasons (docs/PROTOCOL.md); push.py re-exports them
HELLO, START, DATA, COMMIT, ABORT, STATUS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
INFO, ACK, NAK, RESULT = 0x81, 0x82, 0x83, 0x84
NAK_CRC, NAK_GAP, NAK_NO_TRANSFER, NAK_INCOMPLETE = 1, 2, 3, 5
NAK_REASONS = {1: "crc", 2: "gap", 3: "no transfer", 4: "range", 5: "incomplete", 6: "malformed"}

DATA_OVERHEAD = 13  # sync 2, type 1, len 2, offset 4, crc 4
ACK_LEN = 14  # an ACK/NAK frame: 9 + 5
START_LEN = 17
MIN_FRAME = 16  # smallest DATA payload the plan picks (when the device allows more)


def status_text(st: int) -> str:
    try:
        return Status(st).name
    except ValueError:
        return str(st)


class Link(Protocol):
    """What the sender needs of a session: frames out, frames in."""

    def send(self, ftype: int, body: bytes = b"") -> None: ...

    def recv(self, timeout: float) -> tuple[int, bytes] | None: ...


class Rto:
    """Retransmission timeout in seconds: the RFC 6298 estimator
    (``srtt + 4 * rttvar``) over round trips of frames sent once (Karn's
    rule), doubled on each expiry up to a ceiling.

    The sender times each frame from when its last byte leaves the host (a
    model of the line at the baud rate), so the estimate is the latency of
    the line and the device, not the queue of frames ahead of it. The back-off
    ends when the device acknowledges new data, not only at the next valid
    sample: on a noisy line whole stretches of frames are retransmissions, and
    a timeout stuck at its ceiling would cost more than the noise does (a
    serial line has no congestion for the back-off to protect)."""

    def __init__(self, initial: float, lo: float, hi: float) -> None:
        self.lo = lo
        self.hi = max(lo, hi)
        self.base = initial
        self.backoffs = 0
        self.srtt: float | None = None
        self.rttvar = 0.0

    @property
    def value(self) -> float:
        return min(max(self.base, self.lo) * (1 << min(self.backoffs, 16)), self.hi)

    def sample(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.base = self.srtt + 4 * self.rttvar
        self.backoffs = 0

    def backoff(self) -> None:
        self.backoffs += 1

    def progress(self) -> None:
        """New data acknowledged: the line works, the back-off ends."""
        self.backoffs = 0


def efficiency(size: int, window: int, ber: float, latency: float) -> float:
    """Expected payload bytes per byte time of line for go-back-N with DATA
    frames of ``size`` bytes, ``window`` frames in flight, bit error rate
    ``ber`` and ``latency`` byte times from the end of a frame to its ACK
    (propagation both ways plus the device's processing)."""
    f = size + DATA_OVERHEAD
    q = (1.0 - ber) ** (8 * f)
    cycle = f + latency + ACK_LEN  # a frame's send to its ACK
    per_frame = max(f, cycle / window)  # a window smaller than a cycle idles the line
    waste = f + max(latency + ACK_LEN, (window - 1) * f)  # a lost frame and what follows it
    return size * q / (q * per_frame + (1.0 - q) * waste)


class FramePlan:
    """DATA frame size and frames in flight for the bit error rate observed.

    The rate is estimated as errors per bit sent in frames whose fate is
    known (acked, or the lost frame a NAK or timeout points at), with a prior
    of ``PRIOR_BITS`` clean bits so one early loss does not shrink frames to
    the minimum; counts are halved past ``HORIZON_BITS`` so the estimate
    follows a line that changes. With no errors the plan is the largest frame
    the device allows, and the window that keeps the line busy for the
    latency measured, plus one frame."""

    PRIOR_BITS = 8 * 1024
    HORIZON_BITS = 8 * 1 << 20

    def __init__(self, max_data: int, max_window: int) -> None:
        self.max_data = max(1, max_data)
        self.max_window = max(1, max_window)
        low = min(self.max_data, MIN_FRAME)
        sizes = {self.max_data, low}
        s = float(self.max_data)
        while s > low:  # steps of 1/sqrt(2)
            sizes.add(max(low, int(s)))
            s /= math.sqrt(2)
        self.sizes = sorted(sizes, reverse=True)
        self.errors = 0.0
        self.bits = 0.0
        self.latency = 0.0  # byte times
        self._choice = (self.max_data, self.max_window)
        self._dirty = True
        self._since = 0

    @property
    def ber(self) -> float:
        return self.errors / (self.bits + self.PRIOR_BITS)

    def good(self, size: int) -> None:
        self.bits += 8 * (size + DATA_OVERHEAD)
        self._since += 1
        if self.errors and self._since >= 32:
            self._dirty = True
        self._forget()

    def lost(self, size: int) -> None:
        self.bits += 8 * (size + DATA_OVERHEAD)
        self.errors += 1
        self._dirty = True
        self._forget()

    def set_latency(self, byte_times: float) -> None:
        if abs(byte_times - self.latency) > 0.25 * self.latency + 16:
            self._dirty = True
        self.latency = byte_times

    def _forget(self) -> None:
        if self.bits > self.HORIZON_BITS:
            self.bits /= 2
            self.errors /= 2

    def choice(self) -> tuple[int, int]:
        """(DATA bytes per frame, frames in flight)."""
        if self._dirty:
            self._dirty = False
            self._since = 0
            self._choice = self._best()
        return self._choice

    def _best(self) -> tuple[int, int]:
        p = self.ber
        if not self.latency and p <= 0:
            return self.max_data, self.max_window  # nothing known yet
        # a little slack on the measured latency: the device's processing varies
        lat = 1.25 * self.latency + 2 * ACK_LEN
        windows = range(1, min(self.max_window, 64) + 1)
        scored = [(efficiency(s, w, p, lat), s, w) for s in self.sizes for w in windows]
        best = max(e for e, _, _ in scored)
        # Within 1% of the best: the largest frames (fewer for the device to
        # handle), then the smallest window, plus one frame of slack for the
        # latency: frames beyond what keeps the line busy only wait in line,
        # and are lost with the frame before them.
        good = [(s, w) for e, s, w in scored if e >= 0.99 * best]
        size = max(s for s, _ in good)
        window = min(w for s, w in good if s == size)
        return size, min(window + 1, self.max_window)


@dataclass
class _Frame:
    off: int
    n: int
    left: float  # when its last byte leaves the host (line model)
    once: bool  # sent once only: its round trip is a valid sample (Karn)

    @property
    def end(self) -> int:
        return self.off + self.n


@dataclass
class SendStats:
    frames: int = 0
    resent_bytes: int = 0
    naks: int = 0
    timeouts: int = 0
    sizes: set[int] = field(default_factory=set)  # DATA frame sizes used


class Sender:
    """Sends ``payload[base:]`` as DATA frames until the device has acked all
    of it (see the module docstring)."""

    def __init__(
        self,
        link: Link,
        payload: bytes,
        base: int,
        *,
        transfer_id: int,
        max_data: int,
        window: int,
        rto: Rto,
        stall: float,
        byte_time: float,
        latency: float = 0.0,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.link = link
        self.payload = payload
        self.total = len(payload)
        self.base = base
        self.nxt = base
        self.sent_max = base
        self.start_body = struct.pack("<II", self.total, transfer_id)
        self.plan = FramePlan(max_data, window)
        self.rto = rto
        self.stall = stall
        self.byte_time = byte_time
        self.plan.set_latency(latency / byte_time if byte_time else 0.0)
        self.on_progress = on_progress
        self.inflight: deque[_Frame] = deque()
        self.line_free = 0.0  # when the host's bytes sent so far have left the line
        self.stats = SendStats()
        self.last_progress = time.monotonic()

    # --- sending ------------------------------------------------------

    def _put(self, nbytes: int, now: float) -> float:
        """Models the line: returns when these bytes will have left the host."""
        self.line_free = max(now, self.line_free) + nbytes * self.byte_time
        return self.line_free

    def _send_data(self) -> None:
        size, _ = self.plan.choice()
        n = min(size, self.total - self.nxt)
        body = struct.pack("<I", self.nxt) + self.payload[self.nxt : self.nxt + n]
        self.link.send(DATA, body)
        now = time.monotonic()
        left = self._put(n + DATA_OVERHEAD, now)
        once = self.nxt >= self.sent_max
        if not once:
            self.stats.resent_bytes += n
        self.inflight.append(_Frame(self.nxt, n, left, once))
        self.stats.frames += 1
        self.stats.sizes.add(size)
        self.nxt += n
        self.sent_max = max(self.sent_max, self.nxt)

    def _go_back(self, off: int) -> None:
        self.nxt = off
        self.inflight.clear()

    # --- answers ------------------------------------------------------

    def _advance(self, off: int, now: float) -> None:
        """The device has every byte before ``off`` (> base)."""
        while self.inflight and self.inflight[0].end <= off:
            fr = self.inflight.popleft()
            self.plan.good(fr.n)
            if fr.once and fr.end == off:
                # from when the line model says the frame left: the latency, whatever
                # the frames ahead of it in the line
                self.rto.sample(max(0.0, now - fr.left))
                if self.byte_time and self.rto.srtt is not None:
                    self.plan.set_latency(max(0.0, self.rto.srtt / self.byte_time - ACK_LEN))
        self.rto.progress()
        if self.on_progress is not None:
            self.on_progress(off - self.base)
        self.base = off
        self.nxt = max(self.nxt, off)
        self.last_progress = now

    def _lost_at(self, off: int) -> None:
        """The frame at ``off`` was lost (NAK or timeout): count it for the plan."""
        size = next((f.n for f in self.inflight if f.off == off), self.plan.choice()[0])
        self.plan.lost(size)

    def _on_frame(self, ftype: int, body: bytes, now: float) -> None:
        if ftype == ACK and len(body) >= 4:
            (off,) = struct.unpack_from("<I", body)
            if off > self.base:
                self._advance(min(off, self.total), now)
        elif ftype == NAK and len(body) >= 5:
            off, reason = struct.unpack_from("<IB", body)
            if reason not in (NAK_CRC, NAK_GAP):
                what = NAK_REASONS.get(reason, str(reason))
                if reason == NAK_NO_TRANSFER:
                    what += " (the transfer timed out or was ended)"
                raise CliError(
                    f"the device refused DATA at offset {self.base} of {self.total}: {what}"
                )
            self.stats.naks += 1
            if off < self.base:
                raise CliError(f"the device lost acknowledged data (NAK at {off} < {self.base})")
            if off > self.base:
                self._advance(off, now)
            self._lost_at(off)
            self._go_back(off)
        elif ftype == RESULT:
            st = struct.unpack_from("<b", body)[0]
            raise CliError(f"the device ended the update at offset {self.base}: {status_text(st)}")

    def _timed_out(self, now: float) -> None:
        self.stats.timeouts += 1
        self._lost_at(self.base)
        self.rto.backoff()
        # resynchronise (ACK{acked}) and keep the transfer open, then go back
        self.link.send(START, self.start_body)
        self._put(START_LEN, now)
        self._go_back(self.base)

    def run(self) -> SendStats:
        self.last_progress = time.monotonic()
        while self.base < self.total:
            now = time.monotonic()
            if now - self.last_progress > self.stall:
                raise CliError(
                    f"the device stopped acknowledging at offset {self.base} of {self.total}"
                    f" (no progress for {self.stall:g} s)"
                )
            _, win = self.plan.choice()
            while self.nxt < self.total and len(self.inflight) < win:
                self._send_data()
            now = time.monotonic()
            # the oldest frame's ACK is due a latency after its last byte left the host
            oldest = self.inflight[0].left if self.inflight else now
            deadline = min(oldest + self.rto.value, self.last_progress + self.stall + 0.001)
            got = self.link.recv(max(0.0, deadline - now))
            now = time.monotonic()
            if got is None:
                if now - self.last_progress <= self.stall:
                    self._timed_out(now)
                continue
            self._on_frame(got[0], got[1], now)
        return self.stats


def commit_wait(rto: Rto) -> float:
    """First wait for RESULT after COMMIT: a few round trips (then doubled)."""
    return max(2 * rto.value, 0.1)
