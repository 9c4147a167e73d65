"""Shared by the fleet server tests: a real server on loopback, a simulated
board (native Updater + Store on simulated flash) and raw HTTP requests."""

from __future__ import annotations

import json
import random
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelota import pack
from modelota.fleet.client import AdminClient
from modelota.fleet.server import ServerThread
from modelota.sim.device import Layout, RamModelDevice
from modelota.sim.flash import SimFlash
from modelota.status import Status

TOKEN = "test-token"
FP = bytes.fromhex("6d6f64656c6f74612d746573742d6670")


@dataclass
class Running:
    url: str
    admin: AdminClient
    thread: ServerThread

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextmanager
def running_server(
    data: Path,
    max_payload: int = 1 << 20,
    db_url: str | None = None,
    clock: Callable[[], float] | None = None,
    rollout_interval: float = 3600.0,
) -> Iterator[Running]:
    """The server on loopback. Its rollout timer is off by default (an hour):
    decisions come after device reports or from admin.evaluate()."""
    t = ServerThread(data, TOKEN, db_url=db_url, max_payload=max_payload, clock=clock,
                     rollout_interval=rollout_interval)  # fmt: skip
    url = t.start()
    try:
        yield Running(url, AdminClient(url, TOKEN), t)
    finally:
        t.stop()


def board(
    weights: bytes, version: int = 1, fp: bytes = FP, max_payload: int = 1 << 16
) -> RamModelDevice:
    layout = Layout.plan(256, 4, len(weights), max_payload)
    flash = SimFlash(256, layout.block_count, 4)
    dev = RamModelDevice(flash, layout, fp, weights, version, buffer_len=1024)
    assert dev.boot() == Status.Ok
    return dev


def models(n: int, size: int = 6000, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(size) for _ in range(n)]


def full(weights: bytes, version: int, fp: bytes = FP, chunk: int = 512) -> bytes:
    return pack(weights, fingerprint=fp, version=version, chunk_size=chunk).encode()


def raw_http(
    port: int, request: bytes, timeout: float = 10.0, half_close: bool = False
) -> tuple[int, bytes]:
    """Sends bytes as they are (no client-side normalisation of the path)
    and returns the status code and the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        if half_close:  # the server sees the end of the bytes (a body shorter than announced)
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/1."):
        return 0, raw
    return int(raw.split(b" ", 2)[1]), raw


def body_json(raw: bytes) -> dict[str, object]:
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server (Debian's postgresql package) on a free
    loopback port, run as the `postgres` user; yields its base URL.

    Its directory is a fresh ``/tmp/modelota-pg-*`` of its own, owned by
    postgres and removed afterwards: not under pytest's temporary root, which
    pytest keeps private to this user (mode 0700, reset on every run), so the
    server user could not reach it; and one per run, so two test runs on one
    machine each have their own server."""
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile

    import pytest

    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e .[test])")
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user to run the server as")

    def as_pg(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        runuser = shutil.which("runuser") or "runuser"
        return subprocess.run([runuser, "-u", "postgres", "--", *cmd], check=check,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    root = Path(tempfile.mkdtemp(prefix="modelota-pg-", dir="/tmp"))
    data = root / "pgdata"
    started = False
    try:
        os.chown(root, pw.pw_uid, pw.pw_gid)  # 0700, the server user's alone
        as_pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        last = ""
        for _attempt in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            r = as_pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                      "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                      "start", check=False)  # fmt: skip
            if r.returncode == 0:
                started = True
                break
            log = root / "log"
            last = r.stdout + r.stderr + (log.read_text(errors="replace") if log.exists() else "")
        if not started:
            raise AssertionError(f"PostgreSQL did not start:\n{last}")
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        if started:  # best effort: the server may already be gone
            as_pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(base_url: str) -> str:
    import uuid

    import psycopg

    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_url + "/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"{base_url}/{name}"


# -- plain servers the device clients are tested against -------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: Any = None, timeout: float = 20) -> None:
    """Waits until something listens on the port (``proc``: fail early if it exits)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def stop(proc: Any) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Nginx:
    port: int
    root: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@contextmanager
def nginx_server(work: Path, root: Path, server: str | None = None) -> Iterator[Nginx]:
    """nginx (Debian's nginx-light) serving ``root`` on a free loopback port;
    its access log records each request's Range, If-Range and If-None-Match.
    ``server``: another ``server { ... }`` block (a TLS proxy, say), where the
    text ``{port}`` stands for that port."""
    import shutil
    import subprocess

    import pytest

    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.skip("nginx is not installed (scripts/test.sh installs nginx-light)")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "access.log"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / sub).mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    if server is None:
        server = f"server {{ listen 127.0.0.1:{port}; root {root}; }}"
    block = server.replace("{port}", str(port))
    conf.write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format range '$request_method $request_uri $status range=[$http_range] '
                     'if_range=[$http_if_range] inm=[$http_if_none_match]';
    access_log {log} range;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    types {{ application/json json; application/octet-stream mota; }}
    {block}
}}
"""
    )
    proc = subprocess.Popen([exe, "-p", str(work), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield Nginx(port, root, log)
    finally:
        stop(proc)
