"""A TCP proxy that breaks downloads on purpose: the demo and the tests put
it between a device and the fleet server to show a real dropped connection
(resumed with a Range request) and a real corrupted transfer (refused by the
device's Updater).

Each connection whose request line starts with ``match`` takes the next
fault from the plan; other connections and later ones pass through intact.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass


@dataclass
class Fault:
    """``cut_at``: close both sides after this many response bytes;
    ``flip_at``: XOR 0x01 into the response byte at this offset."""

    cut_at: int | None = None
    flip_at: int | None = None


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], match: bytes = b"GET /v1/payloads/") -> None:
        self.upstream = upstream
        self.match = match
        self.plan: list[Fault] = []
        self.requests: list[bytes] = []  # first bytes of every request seen
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        client.settimeout(10)
        try:
            first = client.recv(65536)
            with self._lock:
                self.requests.append(first[:4096])
                fault = self.plan.pop(0) if first.startswith(self.match) and self.plan else None
            upstream.sendall(first)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            sent = 0
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if fault is not None and fault.flip_at is not None:
                    i = fault.flip_at - sent
                    if 0 <= i < len(data):
                        data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
                if (
                    fault is not None
                    and fault.cut_at is not None
                    and sent + len(data) >= fault.cut_at
                ):
                    client.sendall(data[: fault.cut_at - sent])
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
