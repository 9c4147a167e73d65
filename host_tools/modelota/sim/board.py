"""A simulated board speaking the serial update protocol (docs/PROTOCOL.md).

The real firmware_lib link (link.cpp) and Updater, compiled natively through
cffi, run on a RAM model; optionally the Store keeps the weights on a
simulated NOR flash (:class:`modelota.sim.flash.SimFlash`). The board outlives
connections, as a real board outlives its USB cable: a host that reconnects
finds the open transfer and can resume it, or finds it timed out.

    board = SimBoard(weights, fingerprint=fp, version=1)
    port = board.serve_tcp()          # socket://127.0.0.1:<port>
    ...
    board.stop()

``python -m modelota.sim.board --port 5555`` serves one from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import threading
import time
import zlib
from typing import Any

from .device import Layout, _StoreHandle
from .flash import SimFlash
from .native import Updater, load

_installed: set[int] = set()


def _install_callbacks(n: Any) -> None:
    """Binds the link's extern "Python" callbacks of one native module."""
    if id(n) in _installed:
        return
    ffi = n.ffi

    @ffi.def_extern()  # type: ignore[untyped-decorator]
    def modelota_py_link_write(ctx: Any, data: Any, size: int) -> int:
        board: SimBoard = ffi.from_handle(ctx)
        return board._write(bytes(ffi.buffer(data, size)))

    @ffi.def_extern()  # type: ignore[untyped-decorator]
    def modelota_py_link_now(ctx: Any) -> int:
        board: SimBoard = ffi.from_handle(ctx)
        return board.now_ms()

    @ffi.def_extern()  # type: ignore[untyped-decorator]
    def modelota_py_weights_crc(app: Any) -> int:
        board: SimBoard = ffi.from_handle(app)
        return zlib.crc32(bytes(board.weights))

    @ffi.def_extern()  # type: ignore[untyped-decorator]
    def modelota_py_probe(app: Any) -> int:
        board: SimBoard = ffi.from_handle(app)
        return board.probe()

    _installed.add(id(n))


def probe_of(weights: bytes) -> int:
    """The sim board's "fixed inference output": a weighted sum of the signed
    weight bytes, as an int32. The host can compute it for the new weights."""
    acc = 0
    for i, b in enumerate(weights):
        acc += (b - 256 if b > 127 else b) * (i % 7 + 1)
    return ((acc + 2**31) % 2**32) - 2**31


class SimBoard:
    """One simulated board: model, Updater, optional Store, link."""

    def __init__(
        self,
        weights: bytes,
        *,
        fingerprint: bytes,
        version: int,
        frame_data: int = 1024,
        window: int = 8,
        resume_timeout_ms: int = 2000,
        chunk_buffer: int = 1024,
        store: bool = False,
    ) -> None:
        n = load()
        _install_callbacks(n)
        self._n = n
        ffi, lib = n.ffi, n.lib
        self.weights = bytearray(weights)
        self._lock = threading.RLock()
        self._conn: socket.socket | None = None
        self._t0 = time.monotonic()
        self._keep: list[Any] = []
        self.sent = bytearray()  # nothing kept unless record is set
        self.record = False
        self.fake_ms: int | None = None  # set to drive the link's clock by hand
        self.store: _StoreHandle | None = None
        if store:
            layout = Layout.plan(256, 4, len(weights), len(weights) * 2 + 4096)
            self.flash = SimFlash(256, layout.block_count, 4)
            self.store = _StoreHandle(self.flash, layout)
            self.store.recover()
            self.store.format(bytes(weights), version)
            cfg = ffi.new("modelota_config*")
            wbuf = ffi.from_buffer("uint8_t[]", self.weights, require_writable=True)
            lib.modelota_store_attach_ram(cfg, self.store.st, wbuf)
            fp = ffi.new("uint8_t[]", bytes(fingerprint))
            buf = ffi.new("uint8_t[]", chunk_buffer)
            cfg.fingerprint = fp
            cfg.current_version = version
            cfg.buffer = buf
            cfg.buffer_len = chunk_buffer
            self._keep += [cfg, wbuf, fp, buf]
            self._cfg = cfg
            self._u = ffi.new("modelota_updater*")
            if lib.modelota_init(self._u, cfg) != 0:
                raise ValueError("bad board configuration")
        else:
            self.updater = Updater(
                self.weights, fingerprint=fingerprint, current_version=version,
                buffer_len=chunk_buffer,
            )  # fmt: skip
            self._cfg = self.updater._cfg
            self._u = self.updater._u
        self._handle = ffi.new_handle(self)
        self._frame = ffi.new("uint8_t[]", frame_data + 7)
        lc = ffi.new("modelota_link_config*")
        lc.updater = self._u
        lc.cfg = self._cfg
        lc.store = self.store.st if self.store is not None else ffi.NULL
        lc.io.ctx = self._handle
        lc.io.write = lib.modelota_py_link_write
        lc.io.now_ms = lib.modelota_py_link_now
        lc.frame_buf = self._frame
        lc.frame_buf_len = frame_data + 7
        lc.resume_timeout_ms = resume_timeout_ms
        lc.window = window
        lc.weights_crc = lib.modelota_py_weights_crc
        lc.probe = lib.modelota_py_probe
        lc.app = self._handle
        self._lc = lc
        self._link = ffi.new("modelota_link*")
        rc = lib.modelota_link_init(self._link, lc)
        if rc != 0:
            raise ValueError(f"modelota_link_init failed: {rc}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None

    # --- callbacks -------------------------------------------------------

    def now_ms(self) -> int:
        if self.fake_ms is not None:
            return self.fake_ms & 0xFFFFFFFF
        return int((time.monotonic() - self._t0) * 1000) & 0xFFFFFFFF

    def probe(self) -> int:
        return probe_of(bytes(self.weights))

    def _write(self, data: bytes) -> int:
        if self.record:
            self.sent += data
        conn = self._conn
        if conn is None:
            return 0  # nobody listening: the bytes are lost, as on a UART
        try:
            conn.sendall(data)
        except OSError:
            self._conn = None
        return 0

    # --- driving the link ------------------------------------------------

    def rx(self, data: bytes) -> int:
        with self._lock:
            n = self._n
            return int(n.lib.modelota_link_rx(self._link, n.ffi.from_buffer(data), len(data)))

    def poll(self) -> int:
        with self._lock:
            return int(self._n.lib.modelota_link_poll(self._link))

    @property
    def version(self) -> int:
        return int(self._n.lib.modelota_current_version(self._u))

    @property
    def busy(self) -> bool:
        return bool(self._n.lib.modelota_link_busy(self._link))

    @property
    def last_result(self) -> int:
        return int(self._n.lib.modelota_link_last_result(self._link))

    @property
    def acked(self) -> int:
        return int(self._n.lib.modelota_link_acked(self._link))

    @property
    def frames_bad(self) -> int:
        return int(self._n.lib.modelota_link_frames_bad(self._link))

    def serve_tcp(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serves the board on a TCP port (one connection at a time, a new one
        replaces the old) from a daemon thread; returns the port."""
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(4)
        self._listener = ls
        self._thread = threading.Thread(target=self._serve, name="simboard", daemon=True)
        self._thread.start()
        return int(ls.getsockname()[1])

    def _serve(self) -> None:
        assert self._listener is not None
        ls = self._listener
        while not self._stop.is_set():
            conn = self._conn
            rl = [ls] if conn is None else [ls, conn]
            try:
                ready, _, _ = select.select(rl, [], [], 0.005)
            except (OSError, ValueError):
                ready = []
                self._conn = None
            for s in ready:
                if s is ls:
                    new, _ = ls.accept()
                    new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    old, self._conn = self._conn, new
                    if old is not None:
                        old.close()
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    with contextlib.suppress(OSError):
                        s.close()
                    if self._conn is s:
                        self._conn = None
                    continue
                self.rx(data)
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for s in (self._listener, self._conn):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self._conn = None

    def __enter__(self) -> SimBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_model(size: int = 4096, seed: int = 1) -> tuple[bytes, bytes]:
    """Deterministic (weights, fingerprint) for a demo board."""
    import random

    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(size)), bytes(range(16))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="serve a simulated ModelOTA board on TCP")
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--store", action="store_true")
    a = ap.parse_args(argv)
    weights, fp = demo_model(a.size)
    board = SimBoard(weights, fingerprint=fp, version=a.version, store=a.store)
    port = board.serve_tcp(a.port)
    print(f"socket://127.0.0.1:{port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        board.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
