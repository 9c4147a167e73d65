"""``modelota serve``: the fleet update server (aiohttp), docs/FLEET.md.

Device checks are the hot path (thousands per second from a large fleet):
they are answered from an in-memory cache of the fleet's answers, rebuilt on
demand after any admin change, and the "last seen" of each device is written
to the database in batches. Everything else (uploads, assignments, reports)
goes to the database on one worker thread, which serialises writers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .. import __version__
from .db import Answer, Fleet, FleetError, PayloadRecord, check_id, parse_fingerprint, parse_u32

log = logging.getLogger("modelota.fleet.server")
T = TypeVar("T")

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
REPORT_MAX = 4096
WINDOWS_MAX = 1024 * 1024
CACHE_MAX = 200_000  # cached device answers before the cache is dropped
FLUSH_SECONDS = 2.0
ROLLOUT_SECONDS = 5.0  # rollout decisions at least this often (and after device reports)
ROLLOUT_GAP = 1.0  # ... but not more often than this after a report
SEND_PIECE = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(
    http: int, name: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A refusal: JSON {"error", "message"}; ``headers`` must not set the type."""
    extra = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
    return web.json_response({"error": name, "message": message}, status=http, headers=extra)


class Server:
    """The aiohttp application's state: the fleet, its worker thread and the
    device-answer cache."""

    def __init__(
        self,
        fleet: Fleet,
        token: str,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        hmac_key: bytes | None = None,
        rollout_interval: float = ROLLOUT_SECONDS,
    ) -> None:
        self.fleet = fleet
        self.rollout_interval = rollout_interval
        self.hmac_key = hmac_key  # signs the Edge Impulse files written from posted windows
        self.token = token.encode()
        self.max_payload = max_payload
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelota-db")
        self.cache: dict[tuple[str, str | None, int | None], tuple[int, Answer | FleetError]] = {}
        self.records: dict[str, tuple[int, PayloadRecord | None]] = {}
        self.seen: dict[str, tuple[float, int | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._decider: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None  # a report came: decide soon
        self._stamp: tuple[int, int] | None = None  # rollouts as this replica last saw them

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, partial(fn, *args))

    # -- lifecycle ----------------------------------------------------------

    async def start(self, _app: web.Application) -> None:
        self._kick = asyncio.Event()
        self._flusher = asyncio.create_task(self._flush_loop())
        self._decider = asyncio.create_task(self._rollout_loop())

    async def stop(self, _app: web.Application) -> None:
        for task in (self._flusher, self._decider):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        await self.flush()
        await self.db(self.fleet.close)
        self.worker.shutdown(wait=True)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # keep serving; the next flush retries
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
                self.fleet.changed()
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
                await self.db(self.fleet.record_checks, seen)
            except Exception:
                for dev, v in seen.items():  # put back what was not written
                    self.seen.setdefault(dev, v)
                raise

    # -- device API ---------------------------------------------------------

    async def answer(self, device: str, fp: str | None, version: int | None) -> Answer:
        key = (device, fp, version)
        gen = self.fleet.generation
        hit = self.cache.get(key)
        if hit is None or hit[0] != gen:
            try:
                result: Answer | FleetError = await self.db(self.fleet.answer, device, fp, version)
            except FleetError as e:
                result = e
            if len(self.cache) >= CACHE_MAX:
                self.cache.clear()
            self.cache[key] = (gen, result)
        else:
            result = hit[1]
        if isinstance(result, FleetError):
            raise result
        return result

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        device = check_id("device", request.match_info["device"])
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

    async def record(self, sha: str) -> PayloadRecord | None:
        gen = self.fleet.generation
        hit = self.records.get(sha)
        if hit is not None and hit[0] == gen:
            return hit[1]
        rec = await self.db(self.fleet.payload, sha)
        if len(self.records) >= CACHE_MAX:
            self.records.clear()
        self.records[sha] = (gen, rec)
        return rec

    async def download(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        sha = name.removesuffix(".mota")
        path = self.fleet.payload_path(sha)  # validates: 64 lowercase hex digits
        rec = await self.record(sha)
        if rec is None or name == sha:
            raise FleetError(404, "UnknownPayload", "no such payload")
        return await send_file(request, path, rec.size, sha)

    async def report(self, request: web.Request) -> web.StreamResponse:
        device = check_id("device", request.match_info["device"])
        body = await read_json(request, REPORT_MAX)
        await self.db(self.fleet.report, device, body)
        pending = self.seen.get(device)
        if pending is not None and isinstance(body.get("version"), int):
            # the report is newer than the batched check: keep its version
            self.seen[device] = (pending[0], body["version"])
        self.kick()
        return web.Response(status=204)

    async def quality(self, request: web.Request) -> web.StreamResponse:
        """A device's model-quality summary for the version it runs."""
        device = check_id("device", request.match_info["device"])
        body = await read_json(request, REPORT_MAX)
        await self.db(self.fleet.store_quality, device, body)
        pending = self.seen.get(device)
        if pending is not None and isinstance(body, dict) and isinstance(body.get("version"), int):
            self.seen[device] = (pending[0], body["version"])
        self.kick()
        return web.Response(status=204)

    async def windows(self, request: web.Request) -> web.StreamResponse:
        """Sample windows a device logged (issue [7]): stored as Edge Impulse
        data acquisition files under data/windows/<device>/."""
        device = check_id("device", request.match_info["device"])
        data = await read_body(request, WINDOWS_MAX)
        files = await self.db(self.fleet.store_windows, device, data, self.hmac_key)
        return web.json_response({"files": files}, status=201)

    # -- admin API ----------------------------------------------------------

    def authorised(self, request: web.Request) -> bool:
        got = request.headers.get("Authorization", "")
        scheme, _, token = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.token
        )

    async def upload(self, request: web.Request) -> web.StreamResponse:
        line = check_id("line", request.query.get("line", ""))
        data = await read_body(request, self.max_payload)
        rec, new = await self.db(self.fleet.upload, line, data)
        return web.json_response(record_json(rec), status=201 if new else 200)

    async def list_payloads(self, request: web.Request) -> web.StreamResponse:
        line = request.query.get("line")
        if line is not None:
            check_id("line", line)
        recs = await self.db(self.fleet.payloads, line)
        return web.json_response([record_json(r) for r in recs])

    async def put_device(self, request: web.Request) -> web.StreamResponse:
        device = check_id("device", request.match_info["device"])
        body = await read_json(request, REPORT_MAX)
        if not isinstance(body, dict) or set(body) - {"group", "fingerprint"}:
            raise FleetError(400, "BadRequest", 'body is {"group": ..., "fingerprint": ...}')
        for key in ("group", "fingerprint"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise FleetError(400, "BadRequest", f"{key} must be a string")
        out = await self.db(self.fleet.register, device, body.get("group"), body.get("fingerprint"))
        return web.json_response(out)

    async def list_devices(self, _request: web.Request) -> web.StreamResponse:
        await self.flush()
        return web.json_response(await self.db(self.fleet.devices))

    async def put_assignment(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        target = check_id(kind, request.match_info["target"])
        body = await read_json(request, REPORT_MAX)
        if not isinstance(body, dict) or not isinstance(body.get("line"), str):
            raise FleetError(400, "BadRequest", 'body is {"line": NAME, "version": N}')
        out = await self.db(self.fleet.assign, kind, target, body["line"], body.get("version"))
        return web.json_response(out)

    async def list_reports(self, request: web.Request) -> web.StreamResponse:
        device = request.query.get("device")
        limit = parse_u32("limit", request.query.get("limit", "100"))
        rows = await self.db(self.fleet.reports, device, min(limit, 10_000))
        return web.json_response(rows)

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
        note = body.get("note", "") if isinstance(body, dict) else ""
        if not isinstance(note, str):
            raise FleetError(400, "BadRequest", "note must be a string")
        await self.db(self.fleet.act, rid, action, note[:200])
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
        form = await request.post()
        token = form.get("token", "")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token):
            return web.Response(
                text=login_page("wrong token"), content_type="text/html", status=401
            )
        resp = web.Response(status=303, headers={"Location": "/dashboard"})
        resp.set_cookie(COOKIE, self.session_cookie(), path="/dashboard", httponly=True,
                        samesite="Strict")  # fmt: skip
        return resp


FLEET = web.AppKey("fleet", Server)
COOKIE = "modelota_dashboard"
LOGIN_MAX = 4096


def record_json(rec: PayloadRecord) -> dict[str, Any]:
    return {
        "sha256": rec.sha256, "line": rec.line, "version": rec.version,
        "base_version": rec.base_version, "size": rec.size, "fingerprint": rec.fingerprint,
        "url": rec.url, "uploaded_at": rec.uploaded_at,
    }  # fmt: skip


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 beyond ``limit`` before it is read."""
    if request.content_length is not None and request.content_length > limit:
        raise FleetError(413, "TooLarge", f"body over {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise FleetError(413, "TooLarge", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int) -> Any:
    raw = await read_body(request, limit)
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


async def send_file(request: web.Request, path: Path, size: int, sha: str) -> web.StreamResponse:
    etag = f'"{sha}"'
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
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            piece = f.read(min(SEND_PIECE, left))
            if not piece:
                raise FleetError(500, "Storage", "payload file shorter than its record")
            await resp.write(piece)
            left -= len(piece)
    await resp.write_eof()
    return resp


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal is JSON {"error", "message"} with its status."""
    try:
        return await handler(request)
    except FleetError as e:
        return error(e.http, e.name, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        name = {404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge"}.get(e.status, "Http")
        allow = {k: v for k, v in e.headers.items() if k == "Allow"}
        return error(e.status, name, e.reason, allow)
    except Exception as e:  # a bug: log it, answer JSON, keep serving
        log.exception("internal error on %s %s", request.method, request.path)
        return error(500, "Internal", f"internal error ({type(e).__name__})")


def make_app(server: Server) -> web.Application:
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
    s = server
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


def serve(
    data_dir: Path,
    host: str,
    port: int,
    token: str,
    db_url: str | None = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
    hmac_key: bytes | None = None,
) -> None:
    """Runs the server until interrupted. ``ready`` gets the base URL once
    it listens (port 0 picks a free port)."""
    fleet = Fleet(data_dir, db_url)
    server = Server(fleet, token, max_payload, hmac_key)
    app = make_app(server)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=log if access_log else None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1] if sockets else port
        url = f"http://{host}:{bound}"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a clean stop flushes the batched checks
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready(url)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def default_token() -> str | None:
    return os.environ.get("MODELOTA_TOKEN")


class ServerThread:
    """The server on its own event loop in a background thread (the demo,
    the tests): ``with ServerThread(data_dir, token) as url: ...``."""

    def __init__(
        self,
        data_dir: Path,
        token: str,
        db_url: str | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        host: str = "127.0.0.1",
        hmac_key: bytes | None = None,
        clock: Callable[[], float] | None = None,
        rollout_interval: float = ROLLOUT_SECONDS,
    ) -> None:
        import threading

        self.server = Server(
            Fleet(data_dir, db_url, clock), token, max_payload, hmac_key, rollout_interval
        )
        self.host = host
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelota-serve", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        runner = web.AppRunner(make_app(self.server), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{port}"
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

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
    returns the process (a subprocess.Popen: terminate() it) and its URL."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "modelota", "serve", "--data", str(data_dir), "--port", "0",
         "--token", token, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "modelota serve: http://" not in line:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"modelota serve did not start: {line}{err}")
    return proc, line.split()[2]
