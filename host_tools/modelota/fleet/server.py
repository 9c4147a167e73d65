"""``modelota serve``: the fleet update server (aiohttp), docs/FLEET.md.

Device checks are the hot path (thousands per second from a large fleet):
they are answered from an in-memory cache of the fleet's answers, dropped
when the fleet's generation moves (an admin change here, or a NOTIFY from
another replica on PostgreSQL), and the "last seen" of each device is written
to the database in batches.

Threads: uncached checks, payload bytes and listings run on reader threads;
uploads, registrations, assignments and reports on one writer thread (which
serialises them); sample windows on a thread of their own, so that neither a
large upload nor a burst of windows delays a check.

Device requests are signed (:mod:`.auth`); the admin API takes a bearer
token. :mod:`.guard` bounds connections, heads, bodies, request rates and the
log; :class:`~.db.Quotas` bound what a device may store per day.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .. import __version__
from . import auth
from .db import (
    CHUNK,
    DEFAULT_QUOTAS,
    Answer,
    Fleet,
    FleetError,
    PayloadRecord,
    Quotas,
    check_id,
    parse_fingerprint,
    parse_u32,
)
from .errors import check_text
from .guard import DEFAULT_LIMITS, ConnectionGuard, Limits, TokenBuckets, log_to_stderr

log = logging.getLogger("modelota.fleet.server")
T = TypeVar("T")

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
REPORT_MAX = 4096
WINDOWS_MAX = 1024 * 1024
CACHE_MAX = 200_000  # cached device answers before the cache is dropped
CHUNK_CACHE_BYTES = 64 * 1024 * 1024  # payload bytes kept in memory (immutable)
FLUSH_SECONDS = 2.0
PRUNE_SECONDS = 60.0
READERS = 4
WINDOWS_PAGE_MAX = 100
# refusals that count against the client address's failure bucket
FAILURES = frozenset({400, 401, 403, 405, 413})
ROLLOUT_SECONDS = 5.0  # rollout decisions at least this often (and after device reports)
ROLLOUT_GAP = 1.0  # ... but not more often than this after a report

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(
    http: int, name: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A refusal: JSON {"error", "message"}; ``headers`` must not set the type."""
    extra = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    return web.json_response({"error": name, "message": message}, status=http, headers=extra)


class Server:
    """The aiohttp application's state: the fleet, its threads, the caches
    and the limits."""

    def __init__(
        self,
        fleet: Fleet,
        token: str,
        master_key: bytes,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        limits: Limits = DEFAULT_LIMITS,
        quotas: Quotas = DEFAULT_QUOTAS,
        trusted_proxies: frozenset[str] = frozenset(),
        rollout_interval: float = ROLLOUT_SECONDS,
    ) -> None:
        self.fleet = fleet
        self.rollout_interval = rollout_interval
        self.token = token.encode()
        self.master = master_key
        stored = fleet.meta("device_key_check", auth.key_check(master_key))
        if stored != auth.key_check(master_key):
            raise FleetError(
                500, "WrongDeviceKey",
                "this database's devices were registered under another device key"
                " (give every replica the same --device-key-file)",
            )  # fmt: skip
        self.max_payload = max_payload
        self.limits = limits
        self.quotas = quotas
        self.trusted = trusted_proxies
        self.reads = ThreadPoolExecutor(READERS, thread_name_prefix="modelota-read")
        self.writes = ThreadPoolExecutor(1, thread_name_prefix="modelota-write")
        self.bulk = ThreadPoolExecutor(1, thread_name_prefix="modelota-windows")
        self.cache: dict[tuple[str, str | None, int | None], tuple[int, Answer | FleetError]] = {}
        self.records: dict[str, tuple[int, PayloadRecord | None]] = {}
        self.keys: dict[str, tuple[int, bytes | None]] = {}
        self.chunks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.chunk_bytes = 0
        self.seen: dict[str, tuple[float, int | None]] = {}
        self.device_buckets = TokenBuckets(limits.device_rate, limits.device_burst)
        self.failure_buckets = TokenBuckets(limits.failure_rate, limits.failure_burst)
        # an address whose refusals ran out is turned away when it connects
        # (cheaper than answering every request of a flood with a 429)
        self.guard = ConnectionGuard(
            limits, trusted_proxies, lambda a: self.failure_buckets.empty(a) > 0
        )
        self.answered: Counter[int] = Counter()  # responses by status (GET /admin/stats)
        self.cache_use: Counter[str] = Counter()  # hits and misses of the caches
        self._tasks: list[asyncio.Task[None]] = []
        self._kick: asyncio.Event | None = None  # a report came: decide soon
        self._stamp: tuple[int, int] | None = None  # rollouts as this replica last saw them

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, partial(self.fleet.guarded, fn, *args))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self.reads, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self.writes, fn, *args)

    # kept for hooks written against the single-thread server: a write
    db = write

    # -- lifecycle ----------------------------------------------------------

    async def start(self, _app: web.Application) -> None:
        self.fleet.listen()
        self.guard.start()
        self._kick = asyncio.Event()
        self._tasks = [asyncio.create_task(self._flush_loop()),
                       asyncio.create_task(self._rollout_loop())]  # fmt: skip

    async def stop(self, _app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.guard.stop()
        try:
            await self.flush()
        except Exception:
            log.exception("could not record device checks at exit")
        for pool in (self.bulk, self.reads, self.writes):
            pool.shutdown(wait=True)
        self.fleet.close()

    async def _flush_loop(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                if time.monotonic() - last_prune > PRUNE_SECONDS:
                    last_prune = time.monotonic()
                    await self.write(self.fleet.prune)
            except Exception:  # keep serving; the next round retries
                log.exception("could not record device checks")

    async def _rollout_loop(self) -> None:
        """Every replica runs this: the database's compare-and-set lets one
        of them apply a decision, the others find the rollout moved on."""
        assert self._kick is not None
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self.rollout_interval)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()
            started = time.monotonic()
            try:
                await self.decide()
            except Exception:  # keep serving; the next round retries
                log.exception("rollout decisions failed")
            # reports keep kicking while a fleet updates: a large group's decision
            # (about 1 s for 50,000 devices, bench/bench_rollout.py) may take at most
            # a fifth of the database worker's time
            took = time.monotonic() - started
            await asyncio.sleep(min(self.rollout_interval, max(ROLLOUT_GAP, 4 * took)))

    async def decide(self) -> list[dict[str, Any]]:
        """The rollout decisions due now (after recording the pending checks,
        whose versions they count)."""
        await self.flush()
        applied = await self.db(self.fleet.evaluate_rollouts)
        stamp = await self.db(self.fleet.rollout_stamp)
        if stamp != self._stamp:  # another replica (or an admin there) moved a rollout
            if self._stamp is not None:
                self.fleet.bump()  # (its NOTIFY came too, on PostgreSQL)
            self._stamp = stamp
        for a in applied:
            log.info("rollout %s: %s: %s", a["rollout"], a["action"], a["reason"])
        return applied

    def kick(self) -> None:
        if self._kick is not None:
            self._kick.set()

    async def flush(self) -> None:
        seen, self.seen = self.seen, {}
        if seen:
            try:
                await self.write(self.fleet.record_checks, seen)
            except Exception:
                for dev, v in seen.items():  # put back what was not written
                    self.seen.setdefault(dev, v)
                raise

    # -- caches ---------------------------------------------------------------

    async def cached(self, table: dict[Any, tuple[int, Any]], key: Any,
                     fn: Callable[..., Any], *args: Any) -> Any:  # fmt: skip
        """``fn(*args)`` on a reader thread, or its cached result while the
        fleet's generation has not moved (and the replicas are coherent).
        A FleetError is cached and raised like a result."""
        gen = self.fleet.generation  # read before: a change during the read makes it stale
        hit = table.get(key)
        if hit is None or hit[0] != gen or not self.fleet.coherent:
            self.cache_use["misses"] += 1
            try:
                result = await self.read(fn, *args)
            except FleetError as e:
                if e.http >= 500:
                    raise
                result = e
            if len(table) >= CACHE_MAX:
                table.clear()
            table[key] = (gen, result)
        else:
            self.cache_use["hits"] += 1
            result = hit[1]
        if isinstance(result, FleetError):
            raise result
        return result

    async def answer(self, device: str, fp: str | None, version: int | None) -> Answer:
        return await self.cached(self.cache, (device, fp, version), self.fleet.answer, device,
                                 fp, version)  # fmt: skip

    async def record(self, sha: str) -> PayloadRecord | None:
        return await self.cached(self.records, sha, self.fleet.payload, sha)  # type: ignore[no-any-return]

    async def device_key(self, device: str) -> bytes | None:
        gen = await self.cached(self.keys, device, self.fleet.key_gen, device)
        return None if gen is None else auth.derive_key(self.master, device, gen)

    async def chunk(self, sha: str, seq: int) -> bytes:
        key = (sha, seq)
        data = self.chunks.get(key)
        if data is not None:
            self.chunks.move_to_end(key)
            return data
        data = await self.read(self.fleet.read_chunk, sha, seq)
        self.chunks[key] = data
        self.chunk_bytes += len(data)
        while self.chunk_bytes > CHUNK_CACHE_BYTES and self.chunks:
            _, old = self.chunks.popitem(last=False)
            self.chunk_bytes -= len(old)
        return data

    # -- device authentication -------------------------------------------------

    async def authenticate(self, request: web.Request, device: str | None) -> auth.Credential:
        """The request's signed credential, checked (docs/FLEET.md, "Device
        authentication"); FleetError 401 / 429 otherwise. A body is checked
        against the signed hash by :meth:`signed_body`."""
        try:
            cred = auth.parse(request.headers.get("Authorization"))
        except auth.AuthError as e:
            raise FleetError(
                401, e.name, e.message, headers={"WWW-Authenticate": auth.SCHEME}
            ) from None
        if device is not None and cred.device != device:
            raise FleetError(401, "WrongDevice", "the credential is another device's")
        if not isinstance(cred.device, str) or not check_id_ok(cred.device):
            raise FleetError(401, "BadCredential", "malformed device id in the credential")
        key = await self.device_key(cred.device)
        expected = None if key is None else auth.mac(
            key, request.method, request.raw_path, cred.device, cred.ts, cred.nonce, cred.body_hash
        )  # fmt: skip
        if key is None or expected is None or not hmac.compare_digest(expected, cred.mac):
            raise FleetError(401, "BadSignature", "unknown device or wrong signature",
                             headers={"WWW-Authenticate": auth.SCHEME})  # fmt: skip
        now = int(time.time())
        if abs(cred.ts - now) > auth.WINDOW:
            tsm = auth.time_mac(key, now, cred.nonce)
            raise FleetError(
                401, "StaleTimestamp",
                f"ts {cred.ts} is {cred.ts - now:+d} s from the server's clock",
                headers={"WWW-Authenticate": f'{auth.SCHEME} ts="{now}", tsm="{tsm}"'},
            )  # fmt: skip
        wait = self.device_buckets.take(cred.device)
        if wait > 0:
            raise FleetError(429, "RateLimited", f"device {cred.device!r} sends too fast",
                             int(wait) + 1)  # fmt: skip
        return cred

    async def signed_body(self, request: web.Request, cred: auth.Credential, limit: int) -> bytes:
        data = await read_body(request, limit, self.limits.body_timeout)
        if (hashlib.sha256(data).hexdigest() if data else "") != cred.body_hash:
            raise FleetError(401, "BadSignature", "the body is not the one signed")
        return data

    # -- device API ---------------------------------------------------------

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        device = check_id("device", request.match_info["device"])
        await self.authenticate(request, device)
        q = request.query
        fp = parse_fingerprint(q["fingerprint"]) if "fingerprint" in q else None
        version = parse_u32("version", q["version"]) if "version" in q else None
        ans = await self.answer(device, fp, version)
        self.seen[device] = (self.fleet.clock(), version)
        if ans.payload is None:
            return web.Response(status=204)
        etag = f'"{ans.payload.sha256}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=ans.payload.manifest(), content_type="application/json", headers=headers
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        sha = name.removesuffix(".mota")
        self.fleet.payload_path(sha)  # validates: 64 lowercase hex digits
        await self.authenticate(request, None)
        rec = await self.record(sha)
        if rec is None or name == sha:
            raise FleetError(404, "UnknownPayload", "no such payload")
        return await self.send_payload(request, rec)

    async def send_payload(self, request: web.Request, rec: PayloadRecord) -> web.StreamResponse:
        size, etag = rec.size, f'"{rec.sha256}"'
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Cache-Control": "public, max-age=31536000, immutable",
            "Content-Type": "application/octet-stream",
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        start, end, status = 0, size, 200
        rng = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if rng is not None and (if_range is None or if_range == etag):
            parsed = parse_range(rng, size)
            if parsed is False:
                headers["Content-Range"] = f"bytes */{size}"
                return error(416, "RangeNotSatisfiable", f"the payload has {size} bytes", headers)
            if isinstance(parsed, tuple):
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        first = await self.chunk(rec.sha256, start // CHUNK)  # before any byte: errors are clean
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        pos = start
        try:
            while pos < end:
                seq = pos // CHUNK
                data = first if seq == start // CHUNK else await self.chunk(rec.sha256, seq)
                piece = data[pos - seq * CHUNK : end - seq * CHUNK]
                if not piece:
                    raise FleetError(500, "Storage", "payload bytes shorter than its record")
                await asyncio.wait_for(resp.write(piece), self.limits.send_timeout)
                pos += len(piece)
            await resp.write_eof()
        except (asyncio.TimeoutError, ConnectionError, FleetError) as e:
            # headers are out: the only way left to say "failed" is to cut the
            # connection (the device resumes with a Range request)
            if isinstance(e, FleetError):
                log.error("payload %s: %s", rec.sha256, e.message)
            if request.transport is not None:
                request.transport.abort()
        return resp

    async def report(self, request: web.Request) -> web.StreamResponse:
        device = check_id("device", request.match_info["device"])
        cred = await self.authenticate(request, device)
        body = parse_json(await self.signed_body(request, cred, REPORT_MAX))
        await self.write(self.fleet.report, device, body, cred.once, self.quotas)
        pending = self.seen.get(device)
        if pending is not None and isinstance(body.get("version"), int):
            # the report is newer than the batched check: keep its version
            self.seen[device] = (pending[0], body["version"])
        self.kick()
        return web.Response(status=204)

    async def quality(self, request: web.Request) -> web.StreamResponse:
        """A device's model-quality summary for the version it runs."""
        device = check_id("device", request.match_info["device"])
        cred = await self.authenticate(request, device)
        body = parse_json(await self.signed_body(request, cred, REPORT_MAX))
        await self.write(self.fleet.store_quality, device, body, cred.once)
        pending = self.seen.get(device)
        if pending is not None and isinstance(body, dict) and isinstance(body.get("version"), int):
            self.seen[device] = (pending[0], body["version"])
        self.kick()
        return web.Response(status=204)

    async def windows(self, request: web.Request) -> web.StreamResponse:
        """Sample windows a device logged: all frames of the request stored,
        or none (docs/FLEET.md)."""
        device = check_id("device", request.match_info["device"])
        cred = await self.authenticate(request, device)
        data = await self.signed_body(request, cred, WINDOWS_MAX)
        ids = await self._run(self.bulk, self.fleet.store_windows, device, data, cred.once,
                              self.quotas)  # fmt: skip
        return web.json_response({"stored": len(ids), "ids": ids}, status=201)

    # -- admin API ----------------------------------------------------------

    def authorised(self, request: web.Request) -> bool:
        got = request.headers.get("Authorization", "")
        scheme, _, token = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "replace"), self.token
        )

    async def upload(self, request: web.Request) -> web.StreamResponse:
        line = check_id("line", request.query.get("line", ""))
        data = await read_body(request, self.max_payload, self.limits.body_timeout)
        rec, new = await self.write(self.fleet.upload, line, data)
        return web.json_response(record_json(rec), status=201 if new else 200)

    async def list_payloads(self, request: web.Request) -> web.StreamResponse:
        line = request.query.get("line")
        if line is not None:
            check_id("line", line)
        recs = await self.read(self.fleet.payloads, line)
        return web.json_response([record_json(r) for r in recs])

    async def put_device(self, request: web.Request) -> web.StreamResponse:
        """Registers a device; a new device, or ``"rotate_secret": true``,
        gets its secret in the answer (the only time it is shown)."""
        device = check_id("device", request.match_info["device"])
        body = parse_json(await read_body(request, REPORT_MAX, self.limits.body_timeout))
        if not isinstance(body, dict) or set(body) - {"group", "fingerprint", "rotate_secret"}:
            raise FleetError(
                400, "BadRequest",
                'body is {"group": ..., "fingerprint": ..., "rotate_secret": true/false}',
            )  # fmt: skip
        for key in ("group", "fingerprint"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise FleetError(400, "BadRequest", f"{key} must be a string")
        rotate = body.get("rotate_secret", False)
        if not isinstance(rotate, bool):
            raise FleetError(400, "BadRequest", "rotate_secret must be true or false")
        out = await self.write(self.fleet.register, device, body.get("group"),
                               body.get("fingerprint"), rotate)  # fmt: skip
        if out.pop("created") or rotate:
            out["secret"] = auth.derive_key(self.master, device, out["key_gen"]).hex()
        return web.json_response(out)

    async def list_devices(self, _request: web.Request) -> web.StreamResponse:
        await self.flush()
        return web.json_response(await self.read(self.fleet.devices))

    async def put_assignment(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        target = check_id(kind, request.match_info["target"])
        body = parse_json(await read_body(request, REPORT_MAX, self.limits.body_timeout))
        if not isinstance(body, dict) or not isinstance(body.get("line"), str):
            raise FleetError(400, "BadRequest", 'body is {"line": NAME, "version": N}')
        out = await self.write(self.fleet.assign, kind, target, body["line"], body.get("version"))
        return web.json_response(out)

    async def list_reports(self, request: web.Request) -> web.StreamResponse:
        device = request.query.get("device")
        limit = parse_u32("limit", request.query.get("limit", "100"))
        rows = await self.read(self.fleet.reports, device, min(limit, 10_000))
        return web.json_response(rows)

    async def list_windows(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        after = parse_u32("after", q.get("after", "0"))
        limit = min(parse_u32("limit", q.get("limit", str(WINDOWS_PAGE_MAX))), WINDOWS_PAGE_MAX)
        device = q.get("device")
        rows = await self.read(self.fleet.windows, after, limit, device)
        for r in rows:
            r["frame"] = base64.b64encode(r["frame"]).decode("ascii")
        return web.json_response(rows)

    async def stats(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({
            "connections": self.guard.stats(),
            "answered": {str(k): v for k, v in sorted(self.answered.items())},
            "cache": dict(self.cache_use),
            "coherent": self.fleet.coherent,
            "generation": self.fleet.generation,
        })  # fmt: skip

    # -- rollouts (docs/FLEET.md "Rollouts") --------------------------------

    def _rollout_doc(self, rid: int) -> dict[str, Any]:
        return self.fleet.rollout_json(self.fleet.rollout(rid))

    async def create_rollout(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request, REPORT_MAX)
        if not isinstance(body, dict) or set(body) - {"line", "version", "group", "policy",
                                                      "start"}:  # fmt: skip
            raise FleetError(
                400, "BadRequest",
                'body is {"line", "version", "group", "policy": {...}, "start": bool}',
            )  # fmt: skip
        for key in ("line", "group"):
            if not isinstance(body.get(key), str):
                raise FleetError(400, "BadRequest", f"{key} must be a string")
        r = await self.db(
            self.fleet.create_rollout, body["line"], body.get("version"), body["group"],
            body.get("policy"), bool(body.get("start", False)),
        )  # fmt: skip
        return web.json_response(await self.db(self._rollout_doc, r.id), status=201)

    async def list_rollouts(self, _request: web.Request) -> web.StreamResponse:
        await self.flush()

        def docs() -> list[dict[str, Any]]:
            return [self.fleet.rollout_json(r) for r in self.fleet.rollouts()]

        return web.json_response(await self.db(docs))

    async def get_rollout(self, request: web.Request) -> web.StreamResponse:
        rid = parse_u32("rollout", request.match_info["rid"])
        await self.flush()
        return web.json_response(await self.db(self._rollout_doc, rid))

    async def rollout_action(self, request: web.Request) -> web.StreamResponse:
        rid = parse_u32("rollout", request.match_info["rid"])
        action = request.match_info["action"]
        body = await read_json(request, REPORT_MAX) if request.can_read_body else {}
        note = check_text("note", body.get("note") if isinstance(body, dict) else None, 200)
        await self.db(self.fleet.act, rid, action, note or "")
        return web.json_response(await self.db(self._rollout_doc, rid))

    async def evaluate(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.decide())

    async def list_quality(self, _request: web.Request) -> web.StreamResponse:
        await self.flush()
        return web.json_response(await self.db(self.fleet.quality_summary))

    async def history(self, _request: web.Request) -> web.StreamResponse:
        await self.flush()
        return web.json_response(await self.db(self.fleet.version_history))

    # -- dashboard (read-only, behind the admin token) ----------------------

    def session_cookie(self) -> str:
        """The dashboard cookie's value: derived from the token, so every
        replica accepts it and changing the token ends every session."""
        return hmac.new(self.token, b"modelota-dashboard-v1", "sha256").hexdigest()

    def dashboard_allowed(self, request: web.Request) -> bool:
        got = request.cookies.get(COOKIE, "")
        return self.authorised(request) or hmac.compare_digest(
            got.encode(), self.session_cookie().encode()
        )

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        from .dashboard import REFRESH, login_page, render

        if not self.dashboard_allowed(request):
            return web.Response(text=login_page(""), content_type="text/html", status=401)
        refresh = parse_u32("refresh", request.query.get("refresh", str(REFRESH)))
        await self.flush()
        html = await self.db(render, self.fleet, min(refresh, 3600))
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def dashboard_login(self, request: web.Request) -> web.StreamResponse:
        from .dashboard import login_page

        if request.content_length is None or request.content_length > LOGIN_MAX:
            raise FleetError(413, "TooLarge", f"a sign-in form is at most {LOGIN_MAX} bytes")
        try:
            form = await request.post()
        except (UnicodeDecodeError, ValueError):
            raise FleetError(400, "BadForm", "the sign-in form is not UTF-8 form data") from None
        token = form.get("token", "")
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode("utf-8", "replace"), self.token
        ):
            return web.Response(
                text=login_page("wrong token"), content_type="text/html", status=401
            )
        resp = web.Response(status=303, headers={"Location": "/dashboard"})
        resp.set_cookie(COOKIE, self.session_cookie(), path="/dashboard", httponly=True,
                        samesite="Strict")  # fmt: skip
        return resp

    # -- per-request bookkeeping -------------------------------------------------

    def client_address(self, request: web.Request) -> str:
        """The client's address; behind a trusted proxy, the one it forwards
        (the last X-Forwarded-For entry: the one the proxy itself added)."""
        peer = request.remote or "?"
        if peer in self.trusted:
            fwd = request.headers.get("X-Forwarded-For", "")
            if fwd:
                return fwd.rsplit(",", 1)[-1].strip()[:64] or peer
        return peer


FLEET = web.AppKey("fleet", Server)
COOKIE = "modelota_dashboard"
LOGIN_MAX = 4096


def check_id_ok(value: str) -> bool:
    try:
        check_id("device", value)
    except FleetError:
        return False
    return True


def record_json(rec: PayloadRecord) -> dict[str, Any]:
    return {
        "sha256": rec.sha256, "line": rec.line, "version": rec.version,
        "base_version": rec.base_version, "size": rec.size, "fingerprint": rec.fingerprint,
        "url": rec.url, "uploaded_at": rec.uploaded_at,
    }  # fmt: skip


async def read_body(request: web.Request, limit: int, timeout: float = 30.0) -> bytes:
    """The whole body, refused with 413 beyond ``limit`` (before it is read
    when Content-Length says so) and with 408 when it takes longer than
    ``timeout`` seconds."""
    if request.content_length is not None and request.content_length > limit:
        raise FleetError(413, "TooLarge", f"body over {limit} bytes")
    chunks, total = [], 0

    async def read() -> None:
        nonlocal total
        async for chunk in request.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise FleetError(413, "TooLarge", f"body over {limit} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise FleetError(408, "BodyTimeout", f"the body took over {timeout:g} s") from None
    except ConnectionError:  # the client went away mid-body: nothing was stored
        raise FleetError(400, "Incomplete", "the connection closed before the body ended") from None
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int, timeout: float = 30.0) -> Any:
    """A JSON body (admin requests; device bodies are checked against their
    signature first: :meth:`Server.signed_body`)."""
    return parse_json(await read_body(request, limit, timeout))


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FleetError(400, "BadJson", f"body is not JSON: {e}") from e


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """One ``bytes=`` range as [start, end). None: ignore the header (invalid,
    or several ranges: the whole file is sent, as RFC 9110 allows); False:
    unsatisfiable (416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    for part in (first, last):
        if part and (not part.isdigit() or not part.isascii() or len(part) > 19):
            return None
    if not dash or not (first or last):
        return None
    if not first:  # suffix form: the last N bytes
        n = int(last)
        return False if n == 0 or size == 0 else (max(0, size - n), size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, min(size, int(last) + 1) if last else size


def make_app(server: Server) -> web.Application:
    s = server

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every refusal is JSON {"error", "message"} with its status; the
        connection guard learns when a request is in progress; refusals
        count against the client's failure bucket (429 when it is empty)."""
        transport = request.transport
        s.guard.request_started(transport)
        address = s.client_address(request)
        try:
            wait = s.failure_buckets.empty(address)
            if wait > 0:  # and the connection is closed: new ones are refused meanwhile
                resp: web.StreamResponse = error(
                    429, "RateLimited", "too many refused requests from this address",
                    {"Retry-After": str(int(wait) + 1)},
                )  # fmt: skip
                resp.force_close()
            else:
                resp = await respond(request, handler)
            s.answered[resp.status] += 1
            if resp.status in FAILURES:
                s.failure_buckets.take(address)
            return resp
        finally:
            s.guard.request_done(transport)

    async def respond(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except FleetError as e:
            headers = dict(e.headers)
            if e.retry_after is not None:
                headers["Retry-After"] = str(e.retry_after)
            return error(e.http, e.name, e.message, headers)
        except ConnectionError:  # the client is gone: nobody reads this answer
            return error(400, "ConnectionLost", "the client closed the connection")
        except web.HTTPException as e:
            if e.status < 400:
                raise
            name = {404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge"}.get(e.status, "Http")
            allow = {k: v for k, v in e.headers.items() if k == "Allow"}
            return error(e.status, name, e.reason, allow)
        except Exception as e:  # a bug: log it, answer JSON, keep serving
            log.exception("internal error on %s %s", request.method, request.path)
            return error(500, "Internal", f"internal error ({type(e).__name__})")

    @web.middleware
    async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/admin/") and not server.authorised(request):
            return error(
                401, "Unauthorized", "admin requests need 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return await handler(request)

    app = web.Application(middlewares=[errors, admin_auth], client_max_size=server.max_payload + 1)
    app[FLEET] = server
    app.router.add_get("/v1/devices/{device}/manifest.json", s.manifest)
    app.router.add_post("/v1/devices/{device}/reports", s.report)
    app.router.add_post("/v1/devices/{device}/windows", s.windows)
    app.router.add_get("/v1/payloads/{name}", s.download)
    app.router.add_post("/admin/payloads", s.upload)
    app.router.add_get("/admin/payloads", s.list_payloads)
    app.router.add_put("/admin/devices/{device}", s.put_device)
    app.router.add_get("/admin/devices", s.list_devices)
    app.router.add_put("/admin/assignments/{kind}/{target}", s.put_assignment)
    app.router.add_get("/admin/reports", s.list_reports)
    app.router.add_get("/admin/windows", s.list_windows)
    app.router.add_get("/admin/stats", s.stats)
    app.router.add_post("/v1/devices/{device}/quality", s.quality)
    app.router.add_post("/admin/rollouts", s.create_rollout)
    app.router.add_get("/admin/rollouts", s.list_rollouts)
    app.router.add_post("/admin/rollouts/evaluate", s.evaluate)
    app.router.add_get("/admin/rollouts/{rid}", s.get_rollout)
    app.router.add_post("/admin/rollouts/{rid}/{action}", s.rollout_action)
    app.router.add_get("/admin/quality", s.list_quality)
    app.router.add_get("/admin/history", s.history)
    app.router.add_get("/dashboard", s.dashboard)
    app.router.add_post("/dashboard/login", s.dashboard_login)

    async def health(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"server": f"modelota {__version__}"})

    app.router.add_get("/v1/health", health)
    app.on_startup.append(s.start)
    app.on_cleanup.append(s.stop)
    return app


def raise_open_files(wanted: int) -> int:
    """Raises the soft open-file limit towards ``wanted`` (within the hard
    one); returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else wanted


async def run_app(server: Server, host: str, port: int, ready: Callable[[str], None] | None,
                  stop: asyncio.Event, access_log: bool = False) -> None:  # fmt: skip
    """Serves ``server`` on host:port behind its connection guard until
    ``stop`` is set; ``ready`` gets the URL once it listens."""
    runner = web.AppRunner(make_app(server), access_log=log if access_log else None,
                           handle_signals=False)  # fmt: skip
    await runner.setup()
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        server.guard.factory(runner.server), host, port, reuse_address=True,  # type: ignore[arg-type]
        backlog=1024,
    )  # fmt: skip
    try:
        bound = srv.sockets[0].getsockname()[1] if srv.sockets else port
        if ready is not None:
            ready(f"http://{host}:{bound}")
        await stop.wait()
    finally:
        srv.close()
        await runner.cleanup()


def serve(
    data_dir: Path,
    host: str,
    port: int,
    token: str,
    db_url: str | None = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
    device_key_file: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    quotas: Quotas = DEFAULT_QUOTAS,
    trusted_proxies: frozenset[str] = frozenset(),
    payload_store: str | None = None,
) -> None:
    """Runs the server until SIGINT/SIGTERM. ``ready`` gets the base URL
    once it listens (port 0 picks a free port)."""
    soft = raise_open_files(limits.max_connections + 256)
    if soft - 128 < limits.max_connections:  # room for the database, the log, payload files
        from dataclasses import replace

        limits = replace(limits, max_connections=max(16, soft - 128))
    log_to_stderr(limits)
    fleet = Fleet(data_dir, db_url, payload_store=payload_store)
    try:
        master = load_device_key(data_dir, device_key_file, db_url)
        server = Server(fleet, token, master, max_payload, limits, quotas, trusted_proxies)
    except BaseException:
        fleet.close()
        raise

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a clean stop flushes the batched checks
            loop.add_signal_handler(sig, stop.set)
        await run_app(server, host, port, ready, stop, access_log)

    asyncio.run(main())


def load_device_key(data_dir: Path, path: Path | None, db_url: str | None) -> bytes:
    """The master key device keys derive from: ``path``, else DATA/device.key
    (created on first use when the database is the data directory's own;
    replicas on PostgreSQL must all be given the same file)."""
    own = db_url is None or not db_url.startswith(("postgresql://", "postgres://"))
    target = path if path is not None else Path(data_dir) / "device.key"
    try:
        return auth.load_master(target, create=own or path is None)
    except FileNotFoundError:
        raise FleetError(500, "NoDeviceKey", f"{target}: no device key file") from None
    except (ValueError, OSError) as e:
        raise FleetError(500, "BadDeviceKey", str(e)) from e


def default_token() -> str | None:
    return os.environ.get("MODELOTA_TOKEN")


class ServerThread:
    """The server on its own event loop in a background thread (the demo,
    the tests): ``with ServerThread(data_dir, token) as url: ...``.
    ``device_secret(id)`` is what ``fleet register`` hands out."""

    def __init__(
        self,
        data_dir: Path,
        token: str,
        db_url: str | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        host: str = "127.0.0.1",
        limits: Limits = DEFAULT_LIMITS,
        quotas: Quotas = DEFAULT_QUOTAS,
        payload_store: str | None = None,
        device_key_file: Path | None = None,
        clock: Callable[[], float] | None = None,
        rollout_interval: float = ROLLOUT_SECONDS,
    ) -> None:
        import threading

        fleet = Fleet(data_dir, db_url, clock, payload_store)
        master = load_device_key(data_dir, device_key_file, None)
        self.server = Server(fleet, token, master, max_payload, limits, quotas,
                             rollout_interval=rollout_interval)  # fmt: skip
        self.host = host
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelota-serve", daemon=True)

    def device_secret(self, device: str) -> bytes:
        gen = self.server.fleet.key_gen(device)
        if gen is None:
            raise KeyError(device)
        return auth.derive_key(self.server.master, device, gen)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()

        def ready(url: str) -> None:
            self.url = url
            self._ready.set()

        await run_app(self.server, self.host, 0, ready, self._stop)

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self.url:
            raise RuntimeError(f"server did not start: {self._error}")
        return self.url

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(data_dir: Path, token: str, *extra: str) -> tuple[Any, str]:
    """Starts ``modelota serve`` as its own process on a free loopback port;
    returns the process (a subprocess.Popen: terminate() it) and its URL.
    Its log (stderr) goes to DATA/serve.log."""
    import subprocess
    import sys

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    logf = open(Path(data_dir) / "serve.log", "ab")  # the child keeps it open
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelota", "serve", "--data", str(data_dir), "--port", "0",
         "--token", token, *extra],
        stdout=subprocess.PIPE, stderr=logf, text=True,
    )  # fmt: skip
    logf.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "modelota serve: http://" not in line:
        proc.kill()
        proc.wait()
        err = (Path(data_dir) / "serve.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"modelota serve did not start: {line}{err}")
    return proc, line.split()[2]
