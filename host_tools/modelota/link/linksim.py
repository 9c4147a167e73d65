"""A TCP proxy that behaves like a slow, noisy serial link.

Between a host and a board (both TCP endpoints, e.g. ``socket://`` and
:mod:`modelota.sim.board`), each direction is limited to ``baud`` / 10 bytes
per second, delayed by half the round-trip time, and hit by random bit
errors at ``ber`` (per bit) or at chosen byte positions. The connection can
be dropped after ``drop_after`` host-to-board bytes. Everything is bounded:
the proxy stops itself after ``lifetime`` seconds.

    with LinkSim(("127.0.0.1", board_port), baud=115200, rtt=0.02) as sim:
        push(f"socket://127.0.0.1:{sim.port}", payload)
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

PIECE = 16  # bytes delivered at a time: a UART delivers bytes, not packets


@dataclass
class Stats:
    up_bytes: int = 0  # host -> board
    down_bytes: int = 0
    flipped_bits: int = 0
    dropped: bool = False
    connections: int = 0
    corrupted_at: list[int] = field(default_factory=list)


class _Pipe:
    """One direction: line-rate serialisation, latency, bit errors."""

    def __init__(self, sim: LinkSim, up: bool) -> None:
        self.sim = sim
        self.up = up
        self.line_free = 0.0  # when the line finishes sending what is queued
        self.queue: deque[tuple[float, bytes]] = deque()
        self.count = 0
        self.next_error = sim._gap()

    def accept(self, data: bytes, now: float) -> None:
        sim = self.sim
        byte_time = 10.0 / sim.baud if sim.baud else 0.0
        for i in range(0, len(data), PIECE):
            piece = bytearray(data[i : i + PIECE])
            if self.up:
                for j in range(len(piece)):
                    if self.count + j in sim.corrupt_at:
                        piece[j] ^= 0x10
                        sim.stats.flipped_bits += 1
                        sim.stats.corrupted_at.append(self.count + j)
            if sim.ber > 0:
                bits = len(piece) * 8
                while self.next_error < bits:
                    piece[self.next_error // 8] ^= 1 << (self.next_error % 8)
                    sim.stats.flipped_bits += 1
                    self.next_error += sim._gap() + 1
                self.next_error -= bits
            self.count += len(piece)
            start = max(now, self.line_free)
            self.line_free = start + len(piece) * byte_time
            self.queue.append((self.line_free + sim.rtt / 2, bytes(piece)))

    def due(self, now: float) -> bytes:
        out = bytearray()
        while self.queue and self.queue[0][0] <= now:
            out += self.queue.popleft()[1]
        return bytes(out)

    def next_time(self) -> float | None:
        return self.queue[0][0] if self.queue else None


class LinkSim:
    """Serial-link simulator between a listening port and ``target``."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        baud: int = 115200,
        rtt: float = 0.0,
        ber: float = 0.0,
        corrupt_at: set[int] | None = None,
        drop_after: int | None = None,
        lifetime: float = 120.0,
        seed: int = 1,
    ) -> None:
        self.target = target
        self.baud = baud
        self.rtt = rtt
        self.ber = ber
        self.corrupt_at = corrupt_at or set()
        self.drop_after = drop_after
        self.lifetime = lifetime
        self.rng = random.Random(seed)
        self.stats = Stats()
        self._stop = threading.Event()
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(2)
        self.port = int(self._ls.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="linksim", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _gap(self) -> int:
        """Bits until the next error (geometric), huge when ber is 0."""
        if self.ber <= 0:
            return 1 << 62
        return int(self.rng.expovariate(self.ber))

    def _run(self) -> None:
        end = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < end:
            r, _, _ = select.select([self._ls], [], [], 0.05)
            if not r:
                continue
            host, _ = self._ls.accept()
            self.stats.connections += 1
            try:
                board = socket.create_connection(self.target, timeout=5)
            except OSError:
                host.close()
                continue
            self._relay(host, board, end)

    def _relay(self, host: socket.socket, board: socket.socket, end: float) -> None:
        for s in (host, board):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
        up, down = _Pipe(self, True), _Pipe(self, False)
        up_total = 0
        try:
            while not self._stop.is_set() and time.monotonic() < end:
                now = time.monotonic()
                nexts = [t for t in (up.next_time(), down.next_time()) if t is not None]
                wait = max(0.0, min([*nexts, now + 0.05]) - now)
                r, _, _ = select.select([host, board], [], [], wait)
                now = time.monotonic()
                closed = False
                for s in r:
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        closed = True
                        break
                    if s is host:
                        if self.drop_after is not None:
                            data = data[: max(0, self.drop_after - up_total)]
                        up_total += len(data)
                        self.stats.up_bytes += len(data)
                        up.accept(data, now)
                    else:
                        self.stats.down_bytes += len(data)
                        down.accept(data, now)
                if closed:
                    return
                for pipe, dst in ((up, board), (down, host)):
                    out = pipe.due(now)
                    if out:
                        dst.setblocking(True)
                        dst.sendall(out)
                        dst.setblocking(False)
                if self.drop_after is not None and up_total >= self.drop_after and not up.queue:
                    self.stats.dropped = True
                    return
        except OSError:
            return
        finally:
            for s in (host, board):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self._ls.close()

    def __enter__(self) -> LinkSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
