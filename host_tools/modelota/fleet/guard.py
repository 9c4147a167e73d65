"""What keeps hostile clients from stalling or filling ``modelota serve``
(docs/FLEET.md, "Limits"): a connection guard in front of aiohttp (a cap on
open connections, per address too, a deadline for request heads and idle
keep-alives), token buckets for rate limits, and a logging filter that
bounds how fast the log grows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Connection and rate limits (defaults documented in docs/FLEET.md)."""

    header_timeout: float = 10.0  # s from the first byte of a request to its complete head
    idle_timeout: float = 30.0  # s a keep-alive connection may stay silent
    body_timeout: float = 30.0  # s to receive a whole request body
    send_timeout: float = 30.0  # s a response may wait for the client to take bytes
    max_connections: int = 1024  # open at once (new ones evict the stalest idle one)
    max_per_address: int = 64  # open at once from one client address
    device_rate: float = 5.0  # requests/s per device, sustained
    device_burst: float = 50.0
    failure_rate: float = 10.0  # refused requests/s per client address, sustained
    failure_burst: float = 100.0
    log_rate: float = 5.0  # log records/s, sustained
    log_burst: float = 50.0


DEFAULT_LIMITS = Limits()


class TokenBuckets:
    """One token bucket per key (device id, client address), at most
    ``max_keys`` remembered (least recently used forgotten: a full bucket)."""

    def __init__(
        self, rate: float, burst: float, max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self.buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, key: str, n: float = 1.0) -> float:
        """0 when ``n`` tokens were taken, else the seconds until they would
        be there (nothing taken)."""
        now = self.clock()
        tokens = self._level(key, now)
        if tokens >= n:
            self.buckets[key] = (tokens - n, now)
            self.buckets.move_to_end(key)
            if len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
            return 0.0
        return (n - tokens) / self.rate if self.rate > 0 else 3600.0

    def empty(self, key: str) -> float:
        """Seconds until one token is there (0: there is one); takes nothing."""
        tokens = self._level(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate if self.rate > 0 else 3600.0


@dataclass
class _Conn:
    address: str
    opened: float
    idle_since: float  # when the last request ended (or the connection opened)
    first_byte: float | None = None  # first byte after idle_since: a request head is coming
    busy: bool = False  # a request is being handled


class ConnectionGuard:
    """Wraps aiohttp's protocol factory: counts connections, refuses or
    evicts beyond the caps, and closes connections whose request head does
    not arrive within ``header_timeout`` or that stay idle longer than
    ``idle_timeout`` (a slow-loris client holds nothing for long). The
    application marks requests busy/done (:meth:`request_started`)."""

    def __init__(
        self, limits: Limits, trusted: frozenset[str] = frozenset(),
        penalised: Callable[[str], bool] = lambda _address: False,
    ) -> None:  # fmt: skip
        self.limits = limits
        self.trusted = trusted  # proxy addresses: no per-address cap for them
        self.penalised = penalised  # an address refused at once (its failures ran out)
        self.conns: dict[Any, _Conn] = {}
        self.per_address: dict[str, int] = {}
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._sweeper: asyncio.Task[None] | None = None

    def factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner())

    # -- bookkeeping ------------------------------------------------------

    def admit(self, transport: Any) -> bool:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        now = time.monotonic()
        if address not in self.trusted and (
            self.per_address.get(address, 0) >= self.limits.max_per_address
            or self.penalised(address)
        ):
            self.refused += 1
            return False
        if len(self.conns) >= self.limits.max_connections and not self._evict_one():
            self.refused += 1
            return False
        self.conns[transport] = _Conn(address, now, now)
        self.per_address[address] = self.per_address.get(address, 0) + 1
        return True

    def _evict_one(self) -> bool:
        """Closes the connection that has waited longest without a request in
        progress (a half-sent head first); False when every one is busy."""
        idle = [(c.first_byte is None, c.first_byte or c.idle_since, t)
                for t, c in self.conns.items() if not c.busy]  # fmt: skip
        if not idle:
            return False
        _, _, transport = min(idle, key=lambda x: (x[0], x[1]))
        self.evicted += 1
        self._close(transport)
        return True

    def _close(self, transport: Any) -> None:
        self.forget(transport)
        transport.abort()

    def forget(self, transport: Any) -> None:
        c = self.conns.pop(transport, None)
        if c is not None:
            n = self.per_address.get(c.address, 1) - 1
            if n > 0:
                self.per_address[c.address] = n
            else:
                self.per_address.pop(c.address, None)

    def data(self, transport: Any) -> None:
        c = self.conns.get(transport)
        if c is not None and not c.busy and c.first_byte is None:
            c.first_byte = time.monotonic()

    def request_started(self, transport: Any) -> None:
        c = self.conns.get(transport)
        if c is not None:
            c.busy = True

    def request_done(self, transport: Any) -> None:
        c = self.conns.get(transport)
        if c is not None:
            c.busy = False
            c.first_byte = None
            c.idle_since = time.monotonic()

    # -- deadlines --------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        late = []
        for t, c in self.conns.items():
            if c.busy:
                continue
            if c.first_byte is not None:
                if now - c.first_byte > self.limits.header_timeout:
                    late.append(t)
            elif now - c.idle_since > self.limits.idle_timeout:
                late.append(t)
        for t in late:
            self.timed_out += 1
            self._close(t)
        return len(late)

    async def run(self) -> None:
        period = max(0.05, min(self.limits.header_timeout, self.limits.idle_timeout) / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass

    def stats(self) -> dict[str, int]:
        return {"open": len(self.conns), "refused": self.refused, "evicted": self.evicted,
                "timed_out": self.timed_out}  # fmt: skip


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol behind the guard (every call passed through)."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: Any = None
        self.admitted = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.guard.admit(transport):
            transport.abort()
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.guard.data(self.transport)
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self.transport)
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


class RateLimitedLog(logging.Filter):
    """Lets ``burst`` records through, then ``rate`` per second; the next
    record after a quiet spell says how many were dropped. Every record is
    one line of at most ``width`` characters; a malformed request's
    traceback is cut to its message, logged as a warning (the client's
    fault, not the server's)."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
        width: int = 300,
    ) -> None:  # fmt: skip
        super().__init__()
        self.bucket = TokenBuckets(rate, burst, 1, clock)
        self.dropped = 0
        self.width = width

    def filter(self, record: logging.LogRecord) -> bool:
        if self.bucket.take("log") > 0:
            self.dropped += 1
            return False
        text = record.getMessage()
        if record.exc_info and record.name.startswith("aiohttp"):
            exc = record.exc_info[1]
            text = f"{text}: {type(exc).__name__}: {exc}"
            record.exc_info = None
            record.exc_text = None
            if type(exc).__module__.startswith("aiohttp"):  # a malformed request
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        if self.dropped:
            text = f"{text} ({self.dropped} earlier messages dropped)"
            self.dropped = 0
        text = " ".join(text.split())
        record.msg = text if len(text) <= self.width else text[: self.width - 3] + "..."
        record.args = None
        return True


def log_to_stderr(limits: Limits, level: int = logging.INFO) -> logging.Handler:
    """The server's log: one rate-limited handler for aiohttp's, asyncio's
    and modelota's loggers."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimitedLog(limits.log_rate, limits.log_burst))
    for name in ("aiohttp", "asyncio", "modelota"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False
    return handler
