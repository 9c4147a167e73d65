"""Load for `modelota serve`, run as a process of its own (so that its own
CPU use does not sit in the server's event loop): honest devices polling
with signed checks, downloading an update, reporting and posting sample
windows, optionally beside hostile clients. tests/test_fleet_soak.py and
bench/bench_fleet.py start it.

    python bench/fleet_load.py CONFIG.json     # prints one JSON line of results

CONFIG (JSON): role ("honest": only the honest devices, "hostile": only the
hostile clients, absent: both), url, master (hex device key file contents), devices, prefix,
phases ({"name", "seconds", "hostile", "sweep", "sweeps"}: a sweep phase
lasts until every device was checked "sweeps" times, at most "seconds"),
interval (s between one device's checks), concurrency (connections of the
honest pool), closed_loop (instead: `concurrency` workers checking random
devices back to back, for throughput), update_every (every
Nth device runs v1 of a line whose v2 is assigned: it downloads, checks the
SHA-256 and reports), windows_every (every Nth device posts one window per
phase), fingerprint (hex), evil (id of a registered device whose key the
hostile clients hold), flood (bool: hostile phase includes an unthrottled
unauthenticated flood).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host_tools"))

from modelota.collect import Sensor, Window
from modelota.fleet import auth


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def window(seq: int, rows: int = 20) -> bytes:
    values = tuple((float(i),) for i in range(rows))
    return Window((Sensor("t", "C"),), 10.0, seq, 0, values).encode()


class Pool:
    """Keep-alive HTTP/1.1 connections, requests written by hand: a client
    that costs far less CPU per request than a full HTTP library, so the
    load measures the server."""

    def __init__(self, url: str, size: int, timeout: float) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        async with self.slots:
            conn = None
            while self.idle and conn is None:
                conn = self.idle.pop()
                if conn[0].at_eof() or conn[1].is_closing():
                    conn[1].close()  # the server closed it while idle (30 s): not reused
                    conn = None
            try:
                try:
                    return await asyncio.wait_for(
                        self._send(conn, method, path, headers, body), self.timeout
                    )
                except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as e:
                    if conn is None or method != "GET" or getattr(e, "partial", b""):
                        raise
                    # the server closed the reused connection as the request went out
                    # (no response byte came): a GET is sent again on a new one, as
                    # HTTP clients do (RFC 9112, 9.3.1)
                    return await asyncio.wait_for(
                        self._send(None, method, path, headers, body), self.timeout
                    )
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                raise aiohttp.ClientError(str(e)) from e

    async def _send(self, conn: Any, method: str, path: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        if conn is None:
            conn = await asyncio.open_connection(self.host, self.port)
        r, w = conn
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        ) + f"Content-Length: {len(body)}\r\n\r\n"
        w.write(head.encode() + body)
        raw = await r.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        code = int(lines[0].split(" ", 2)[1])
        pairs = (ln.partition(":") for ln in lines[1:] if ln)
        got = {k.strip().lower(): v.strip() for k, _, v in pairs}
        data = await r.readexactly(int(got.get("content-length", "0")))
        if got.get("connection", "").lower() == "close":
            w.close()
        else:
            self.idle.append((r, w))
        return code, got, data


class Honest:
    """The honest fleet: every device checks every `interval` seconds."""

    def __init__(self, cfg: dict[str, Any], session: Pool) -> None:
        self.cfg = cfg
        self.session = session
        self.master = bytes.fromhex(cfg["master"])
        self.latency: dict[str, list[float]] = {}
        self.codes: dict[str, Counter[str]] = {}
        self.phase = ""
        self.reports = Counter[str]()
        self.windows = Counter[str]()
        self.downloads = Counter[str]()
        self.errors = Counter[str]()  # checks without an answer, by phase and reason
        self.keys: dict[str, bytes] = {}
        self.sweep: int | None = None  # next check of a sweep phase
        self.sweeps = 1  # times a sweep phase checks every device
        self.swept = asyncio.Event()
        self.stopped = False  # closed loop: the last phase is over

    def key(self, dev: str) -> bytes:
        k = self.keys.get(dev)
        if k is None:
            k = self.keys[dev] = auth.derive_key(self.master, dev, 1)
        return k

    async def request(self, dev: str, method: str, path: str, body: bytes = b"",
                      **kw: Any) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        headers = {"Authorization": auth.sign(self.key(dev), dev, method, path, body)}
        headers.update(kw.pop("headers", {}))
        return await self.session.request(method, path, headers, body)

    async def device(self, i: int, stop: float) -> None:
        cfg = self.cfg
        dev = f"{cfg['prefix']}{i:05d}"
        updating = cfg["update_every"] and i % cfg["update_every"] == 0
        version = 1 if updating else 2
        rnd = random.Random(i)
        await asyncio.sleep(rnd.uniform(0, cfg["interval"]))
        posted: set[str] = set()
        while time.monotonic() < stop:
            phase = self.phase
            path = (f"/v1/devices/{dev}/manifest.json?fingerprint={cfg['fingerprint']}"
                    f"&version={version}")  # fmt: skip
            t0 = time.perf_counter()
            try:
                code, _, body = await self.request(dev, "GET", path)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                code, body = 0, b""
                self.errors[f"{phase}: {type(e.__cause__ or e).__name__} {e}"[:120]] += 1
            self.latency.setdefault(phase, []).append(time.perf_counter() - t0)
            self.codes.setdefault(phase, Counter())[str(code)] += 1
            if code == 200:
                version = await self.update(dev, json.loads(body), version)
            every = cfg["windows_every"]
            if every and i % every == 1 and phase not in posted:
                posted.add(phase)
                frames = window(i) + window(i + 1)
                try:
                    code, _, _ = await self.request(dev, "POST", f"/v1/devices/{dev}/windows",
                                                    frames)  # fmt: skip
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    code = 0
                self.windows[str(code)] += 1
            pause = cfg["interval"] * rnd.uniform(0.8, 1.2)
            if time.monotonic() + pause >= stop:
                return
            await asyncio.sleep(pause)

    async def worker(self, k: int, stop: float) -> None:
        """Closed loop (a throughput bench): checks of random devices, one
        after the other, as fast as the server answers; during a "sweep"
        phase every device once, in order (the server's caches fill as a
        polling fleet's would). Device i always says version 1 if i % 4 == 0,
        else 2."""
        cfg = self.cfg
        rnd = random.Random(k)
        while time.monotonic() < stop and not self.stopped:
            if self.sweep is not None:
                i = self.sweep % cfg["devices"]
                self.sweep += 1
                if self.sweep >= cfg["devices"] * self.sweeps:
                    self.sweep = None
                    self.swept.set()
            else:
                i = rnd.randrange(cfg["devices"])
            dev = f"{cfg['prefix']}{i:05d}"
            version = 1 if i % 4 == 0 else 2
            path = (f"/v1/devices/{dev}/manifest.json?fingerprint={cfg['fingerprint']}"
                    f"&version={version}")  # fmt: skip
            phase = self.phase
            t0 = time.perf_counter()
            try:
                code, _, _ = await self.request(dev, "GET", path)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                code = 0
            self.latency.setdefault(phase, []).append(time.perf_counter() - t0)
            self.codes.setdefault(phase, Counter())[str(code)] += 1

    async def update(self, dev: str, m: dict[str, Any], version: int) -> int:
        try:
            code, _, data = await self.request(dev, "GET", m["url"])
        except (aiohttp.ClientError, asyncio.TimeoutError):
            code, data = 0, b""
        ok = code == 200 and hashlib.sha256(data).hexdigest() == m["sha256"]
        self.downloads["ok" if ok else f"bad {code}"] += 1
        new = m["version"] if ok else version
        body = json.dumps({"event": "apply", "version": new, "status": 0 if ok else -1,
                           "status_name": "Ok" if ok else "Aborted", "bytes": len(data)}).encode()
        try:
            rc, _, _ = await self.request(dev, "POST", f"/v1/devices/{dev}/reports", body)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            rc = 0
        self.reports[str(rc)] += 1
        return new


class Hostile:
    """Clients that try to stall or fill the server (issue [5], F1-F5)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        url = cfg["url"].removeprefix("http://")
        self.host, port = url.split(":")
        self.port = int(port)
        self.counts: Counter[str] = Counter()
        self.evil_key = auth.derive_key(bytes.fromhex(cfg["master"]), cfg["evil"], 1)

    async def slowloris(self, address: str, stop: float) -> None:
        """Keeps opening connections that send half a request head."""
        while time.monotonic() < stop:
            try:
                r, w = await asyncio.open_connection(self.host, self.port, local_addr=(address, 0))
                w.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                await asyncio.wait_for(r.read(), timeout=max(0.1, stop - time.monotonic()))
                self.counts["slowloris closed by server"] += 1
                w.close()
            except (OSError, asyncio.TimeoutError):
                self.counts["slowloris other"] += 1
            await asyncio.sleep(0.25)

    async def flood(self, address: str, stop: float) -> None:
        """Unsigned checks and garbage on one keep-alive connection, as fast as it goes."""
        conn = aiohttp.TCPConnector(limit=1, local_addr=(address, 0))
        async with aiohttp.ClientSession(self.cfg["url"], connector=conn) as s:
            while time.monotonic() < stop:
                try:
                    async with s.get("/v1/devices/x/manifest.json") as resp:
                        await resp.read()
                        self.counts[f"flood {resp.status}"] += 1
                except aiohttp.ClientError:  # refused: reconnect at once (10 ms)
                    self.counts["flood refused"] += 1
                    await asyncio.sleep(0.01)

    async def evil(self, stop: float) -> None:
        """A device whose key leaked: F1/F2 texts, F4 floods of tiny frames,
        1 MiB window posts until its quota, report spam until its rate limit."""
        dev = self.cfg["evil"]
        big = b"".join(window(i, rows=1000) for i in range(250))  # ~1 MB, 250 frames
        tiny = b"".join(window(i, rows=1) for i in range(20000))[: 1 << 20]
        tiny = tiny[: len(tiny) // len(window(0, rows=1)) * len(window(0, rows=1))]
        bodies = [
            ("reports", b'{"event":"apply","message":"\\ud800"}'),
            ("reports", b'{"event":"apply","message":"a\\u0000b"}'),
            ("windows", tiny),
            ("windows", big),
            ("reports", b'{"event":"check"}'),
        ]
        conn = aiohttp.TCPConnector(limit=2, local_addr=("127.0.0.7", 0))
        async with aiohttp.ClientSession(self.cfg["url"], connector=conn) as s:
            k = 0
            while time.monotonic() < stop:
                what, body = bodies[k % len(bodies)]
                k += 1
                path = f"/v1/devices/{dev}/{what}"
                headers = {"Authorization": auth.sign(self.evil_key, dev, "POST", path, body)}
                try:
                    async with s.post(path, data=body, headers=headers) as resp:
                        await resp.read()
                        self.counts[f"evil {what} {resp.status}"] += 1
                except aiohttp.ClientError:
                    self.counts["evil error"] += 1
                await asyncio.sleep(0.02)

    async def trickle(self, stop: float) -> None:
        """The leaked device's report, its body sent a byte a second (the
        body timeout ends it)."""
        dev = self.cfg["evil"]
        body = b'{"event":"check","message":"' + b"x" * 3000 + b'"}'
        path = f"/v1/devices/{dev}/reports"
        while time.monotonic() < stop:
            try:
                r, w = await asyncio.open_connection(self.host, self.port,
                                                     local_addr=("127.0.0.8", 0))  # fmt: skip
                sig = auth.sign(self.evil_key, dev, "POST", path, body)
                w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {sig}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode())  # fmt: skip
                for k in range(len(body)):
                    if time.monotonic() >= stop or r.at_eof():
                        break
                    w.write(body[k : k + 1])
                    await w.drain()
                    try:
                        got = await asyncio.wait_for(r.read(200), 1.0)
                    except asyncio.TimeoutError:
                        continue
                    if got:
                        self.counts[f"trickle {got.split(b' ')[1].decode()}"] += 1
                    break
                w.close()
            except OSError:
                self.counts["trickle refused"] += 1
            await asyncio.sleep(1.0)

    def tasks(self, stop: float) -> list[asyncio.Task[None]]:
        jobs = [self.slowloris(f"127.0.0.{2 + k % 4}", stop) for k in range(120)]
        if self.cfg.get("flood", True):
            jobs += [self.flood("127.0.0.6", stop) for _ in range(2)]
        jobs += [self.evil(stop)] + [self.trickle(stop) for _ in range(10)]
        return [asyncio.create_task(j) for j in jobs]


async def run_hostile(cfg: dict[str, Any]) -> dict[str, Any]:
    """role "hostile": the hostile clients alone, during the hostile phases
    of the same timeline (the honest devices run in another process, so the
    attackers' own CPU use does not delay the honest clients)."""
    hostile = Hostile(cfg)
    for p in cfg["phases"]:
        end = time.monotonic() + p["seconds"]
        if p["hostile"]:
            tasks = hostile.tasks(end)
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
    return {"hostile": dict(hostile.counts)}


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("role") == "hostile":
        return await run_hostile(cfg)
    total = sum(p["seconds"] for p in cfg["phases"])
    honest = Honest(cfg, Pool(cfg["url"], cfg["concurrency"], cfg.get("timeout", 10.0)))
    stop = time.monotonic() + total
    if cfg.get("closed_loop"):
        devices = [asyncio.create_task(honest.worker(k, stop)) for k in range(cfg["concurrency"])]
    else:
        devices = [asyncio.create_task(honest.device(i, stop)) for i in range(cfg["devices"])]
    together = cfg.get("role") != "honest"  # else the hostile clients run elsewhere
    hostile = Hostile(cfg) if together and any(p["hostile"] for p in cfg["phases"]) else None
    phases = []
    for p in cfg["phases"]:
        honest.phase = p["name"]
        t0 = time.monotonic()
        end = t0 + p["seconds"]
        tasks = hostile.tasks(end) if hostile is not None and p["hostile"] else []
        if p.get("sweep"):  # until every device was checked once (closed loop)
            honest.sweep = 0
            honest.sweeps = int(p.get("sweeps", 1))
            await asyncio.wait_for(honest.swept.wait(), p["seconds"])
        else:
            await asyncio.sleep(p["seconds"])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        phases.append({"name": p["name"], "seconds": time.monotonic() - t0})
    # a sweep may have ended its phase early: the closed loop stops on this flag
    # (not by cancelling: wait_for in 3.11 may swallow a cancellation)
    honest.stopped = True
    await asyncio.gather(*devices)
    out: dict[str, Any] = {"phases": []}
    for p in phases:
        lat = honest.latency.get(p["name"], [])
        out["phases"].append({
            "name": p["name"], "checks": len(lat), "rate": len(lat) / p["seconds"],
            "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
            "max_ms": max(lat, default=float("nan")) * 1e3,
            "codes": dict(honest.codes.get(p["name"], {})),
        })  # fmt: skip
    out["reports"] = dict(honest.reports)
    out["windows"] = dict(honest.windows)
    out["downloads"] = dict(honest.downloads)
    out["errors"] = dict(honest.errors)
    out["hostile"] = dict(hostile.counts) if hostile is not None else {}
    return out


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    if cfg.get("nice"):
        # the attackers of a loopback test share the server's cores: their own
        # CPU use yields to the server's (what the server spends on them counts)
        os.nice(int(cfg["nice"]))
    print(json.dumps(asyncio.run(run(cfg))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
