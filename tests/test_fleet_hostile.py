"""`modelota serve` facing hostile clients (issue [5]): signed device
requests, every text field validated, rate limits and quotas (429 +
Retry-After), connection caps and deadlines, a bounded log. Each failure the
issue measured (F1, F2, F5, unauthenticated device calls) is replayed here;
F3 and F4 (sample windows) are in test_fleet_windows.py. Every row of the
reliability table in docs/SECURITY.md names its test."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_util import (
    FP,
    TOKEN,
    Running,
    board,
    body_json,
    full,
    models,
    raw_http,
    running_server,
    signed_request,
    stop,
)
from modelota.fleet import auth
from modelota.fleet.client import AdminClient, FleetClientError, Signer, poll
from modelota.fleet.guard import Limits, RateLimitedLog, TokenBuckets
from modelota.fleet.server import spawn
from modelota.status import Status


def fleet_of_one(s: Running) -> bytes:
    """Line m v1, device d in group g with it assigned; returns its weights."""
    w = models(1)[0]
    s.admin.upload("m", full(w, 1))
    s.admin.register("d", group="g")
    s.admin.assign("group", "g", "m")
    return w


def report(s: Running, body: bytes, device: str = "d") -> tuple[int, bytes]:
    return raw_http(s.port, s.signed("POST", f"/v1/devices/{device}/reports", device, body))


def no_500(s: Running) -> None:
    answered = s.admin.call("GET", "/admin/stats")["answered"]
    assert not [k for k in answered if k.startswith("5")], answered


# -- F1, F2: text that cannot be stored --------------------------------------


BAD_TEXT = [
    (rb'{"event":"apply","message":"\ud800"}', "BadText"),  # F1: a lone surrogate
    (rb'{"event":"apply","status_name":"\udfff"}', "BadText"),
    (rb'{"event":"apply","message":"a\u0000b"}', "BadText"),  # F2: NUL (PostgreSQL)
    (rb'{"event":"apply","status_name":"\u0000"}', "BadText"),
    (b'{"event":"apply","message":"\xff\xfe"}', "BadJson"),  # not UTF-8 at all
    (rb'{"event":"apply","message":5}', "BadRequest"),
]


def test_f1_f2_text_that_cannot_be_stored_is_400_and_nothing_is(
    tmp_path: Path, db: str | None
) -> None:
    """F1: a lone surrogate in a report's message was a 500
    (UnicodeEncodeError) on both databases; F2: a NUL was a 500 (DataError)
    on PostgreSQL. Both are refused with 400 now and nothing is recorded."""
    with running_server(tmp_path, db_url=db) as s:
        fleet_of_one(s)
        for body, name in BAD_TEXT:
            code, raw = report(s, body)
            assert (code, body_json(raw)["error"]) == (400, name), body
        assert s.admin.reports("d") == []
        # what can be stored is stored as sent: any Unicode but NUL, cut to 500 characters
        text = "ünïcødé \U0001f600 \t\r\n" + "x" * 600
        code, _ = report(s, json.dumps({"event": "apply", "message": text}).encode())
        assert code == 204
        assert s.admin.reports("d")[0]["message"] == text[:500]
        no_500(s)


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30),
)  # fmt: skip
json_value = st.recursive(
    json_leaf, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids,
                                                                          max_size=3), max_leaves=8
)  # fmt: skip
REPORT_KEYS = ["event", "version", "status", "status_name", "message", "bytes"]


@st.composite
def hostile_reports(draw: st.DrawFn) -> bytes:
    doc = {k: draw(json_value) for k in draw(st.lists(st.sampled_from(REPORT_KEYS), max_size=6))}
    if draw(st.booleans()):
        doc["event"] = draw(st.sampled_from(["apply", "check", "download"]))
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    return raw


def test_hostile_json_never_makes_a_500(tmp_path: Path, db: str | None) -> None:
    """Random JSON (any Unicode, lone surrogates, NUL, huge numbers, nesting)
    in every place a device or an admin can put it: 4xx or success, never a
    500, and what was stored reads back."""
    unlimited = Limits(device_rate=1e6, device_burst=1e6, failure_rate=1e6, failure_burst=1e6)
    with running_server(tmp_path, db_url=db, limits=unlimited) as s:
        w = fleet_of_one(s)
        # a rollout of v2 to group r (no devices): its actions take a free-text note
        s.admin.upload("m", full(models(2)[1], 2))
        s.admin.assign("group", "r", "m", 1)
        n = 60 if db else 150

        def admin_call(method: str, path: str, raw_body: bytes) -> int:
            try:
                s.admin.call(method, path, raw_body, "application/json")
            except FleetClientError as e:
                assert 400 <= e.http < 500, e
                return e.http
            return 200

        @settings(max_examples=n, deadline=None, database=None)
        @given(body=hostile_reports(), admin_body=json_value, key=st.text(max_size=10),
               note=json_leaf, form=st.binary(max_size=40))  # fmt: skip
        def one(body: bytes, admin_body: Any, key: str, note: Any, form: bytes) -> None:
            code, raw = report(s, body)
            assert code in (204, 400), raw[:300]
            for method, path in (("PUT", "/admin/devices/d2"),
                                 ("PUT", "/admin/assignments/group/g2")):  # fmt: skip
                raw_body = json.dumps(admin_body if not key else {key: admin_body}).encode(
                    "utf-8", "surrogatepass"
                )
                admin_call(method, path, raw_body)
            # a note on an action the rollout's state allows (a rollout not started
            # yet: the server's decisions cannot end it first)
            rid = s.admin.create_rollout("m", 2, "r", {"waves": [100]})["id"]
            doc = json.dumps({"note": note}).encode("utf-8", "surrogatepass")
            if admin_call("POST", f"/admin/rollouts/{rid}/abort", doc) != 200:
                assert admin_call("POST", f"/admin/rollouts/{rid}/abort", b"{}") == 200
            # the dashboard's sign-in form: any bytes
            code, raw = raw_http(s.port, b"POST /dashboard/login HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (len(form) + 6, b"token=" + form))  # fmt: skip
            assert code in (400, 401), raw[:300]

        one()
        assert s.poll(board(w, 0), "d").status == Status.Ok
        s.admin.reports(limit=10_000)  # everything stored reads back
        s.admin.devices()
        no_500(s)


# -- device authentication ------------------------------------------------------


def test_unauthenticated_device_calls_are_401_and_change_nothing(
    tmp_path: Path, db: str | None
) -> None:
    """The issue: device endpoints trusted a device id (a MAC address) alone.
    Without the device's signature (none, another device's, a wrong key, a
    changed path or body, a replay) every device call is 401 and nothing
    changes: no report, no window, no "last seen"."""
    with running_server(tmp_path, db_url=db) as s:
        w = fleet_of_one(s)
        s.admin.register("other")
        sha = s.admin.payloads()[0]["sha256"]
        body = b'{"event":"apply","version":9}'
        paths = [("GET", "/v1/devices/d/manifest.json?version=0", b""),
                 ("POST", "/v1/devices/d/reports", body),
                 ("POST", "/v1/devices/d/windows", b"MOTW"),
                 ("GET", f"/v1/payloads/{sha}.mota", b"")]  # fmt: skip
        before = (s.admin.devices(), s.admin.reports(), s.admin.windows())
        d_key, other_key = s.secret("d"), s.secret("other")
        for method, path, b in paths:
            good = signed_request(method, path, "d", d_key, b)
            forged = [
                signed_request(method, path, "d", bytes(32), b),  # a guessed key
                signed_request(method, path, "d", other_key, b),  # another device's key
                # another device's own credential: refused where the path names d (a
                # payload is not d's: any registered device may fetch one it is told of)
                *([signed_request(method, path, "other", other_key, b)]
                  if "/devices/" in path else []),
                good.replace(b"\r\nAuthorization: ", b"\r\nX-Was: "),  # no credential
                good.replace(b' mac="', b' mac="0').replace(b'0"\r\n', b'"\r\n', 1),
                signed_request(method, path + ("&" if "?" in path else "?") + "x=1", "d", d_key,
                               b).replace(b"&x=1", b"").replace(b"?x=1", b""),  # changed path
                signed_request(method, path, "d", d_key, b, ts=int(time.time()) - 3600),
            ]  # fmt: skip
            if b:
                forged.append(good.replace(b, b[:-1] + b"X"))  # changed body
            for req in forged:
                code, raw = raw_http(s.port, req)
                assert code == 401, (path, req[:300], raw[:300])
        # replays of a signed mutation: the first counts, the copy does not
        good = signed_request("POST", "/v1/devices/d/reports", "d", d_key, body)
        assert raw_http(s.port, good)[0] == 204
        code, raw = raw_http(s.port, good)
        assert (code, body_json(raw)["error"]) == (401, "Replay")
        devices, reports, windows = s.admin.devices(), s.admin.reports(), s.admin.windows()
        assert windows == before[2] and len(reports) == len(before[1]) + 1
        assert [d["last_check"] for d in devices] == [d["last_check"] for d in before[0]]
        # the real device still works
        assert s.poll(board(w, 0), "d").status == Status.Ok


def test_clock_sync_rotation_and_rate_limit(tmp_path: Path) -> None:
    limits = Limits(device_rate=1.0, device_burst=6)
    with running_server(tmp_path, limits=limits) as s:
        w = fleet_of_one(s)
        # a device whose clock is 2 days off (or has none) is told the time, signed
        skewed = Signer("d", s.secret("d"), clock=lambda: time.time() - 2 * 86400)
        res = poll(board(w, 0), s.url, "d", secret=skewed)
        assert res.status == Status.Ok and skewed.synced == 1
        assert abs(skewed.offset - 2 * 86400) < 60
        # a forged time is not believed
        stale = signed_request("GET", "/v1/devices/d/manifest.json", "d", s.secret("d"), ts=5,
                               nonce="00112233aabbccdd")  # fmt: skip
        code, raw = raw_http(s.port, stale)
        assert code == 401 and body_json(raw)["error"] == "StaleTimestamp"
        m = re.search(rb'WWW-Authenticate: MOTA ts="(\d+)", tsm="([0-9a-f]{64})"', raw)
        assert m is not None
        assert auth.time_mac(s.secret("d"), int(m[1]), "00112233aabbccdd") == m[2].decode()
        assert auth.time_mac(s.secret("d"), int(m[1]) + 1, "00112233aabbccdd") != m[2].decode()
        # rotation: the old secret stops working at once, the new one works
        old = s.secret("d")
        new = s.admin.register("d", group="g", rotate_secret=True)["secret"]
        assert bytes.fromhex(new) == s.secret("d") != old
        with pytest.raises(FleetClientError) as e:
            poll(board(w, 1), s.url, "d", secret=old)
        assert e.value.http == 401
        assert "secret" not in s.admin.register("d", group="g")  # shown only when issued
        # a device sending faster than its rate gets 429 + Retry-After; others do not
        s.admin.register("e", group="g")
        codes = [raw_http(s.port, s.signed("GET", "/v1/devices/d/manifest.json", "d"))
                 for _ in range(12)]  # fmt: skip
        limited = [raw for code, raw in codes if code == 429]
        assert limited and b"Retry-After: " in limited[0]
        assert body_json(limited[0])["error"] == "RateLimited"
        assert raw_http(s.port, s.signed("GET", "/v1/devices/e/manifest.json", "e"))[0] == 200
        no_500(s)


def test_refusals_from_one_address_are_rate_limited(tmp_path: Path) -> None:
    """Unauthenticated floods: after the failure burst one address gets 429
    (with Retry-After, and the connection closed) before any work is done,
    and its new connections are refused until its bucket refills; another
    address is served all along."""
    limits = Limits(failure_rate=0.01, failure_burst=20)
    with running_server(tmp_path, limits=limits) as s:
        w = fleet_of_one(s)
        req = b"GET /v1/devices/d/manifest.json HTTP/1.1\r\nHost: x\r\n\r\n"
        codes, last = [], b""
        with socket.create_connection(("127.0.0.1", s.port), timeout=10,
                                      source_address=("127.0.0.2", 0)) as c:  # fmt: skip
            f = c.makefile("rb")
            for _ in range(25):
                try:
                    c.sendall(req)
                    status = f.readline()
                except OSError:
                    break
                if not status:
                    break
                codes.append(int(status.split(b" ")[1]))
                head = b""
                while (line := f.readline()) not in (b"\r\n", b""):
                    head += line
                n = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
                last = head + f.read(n)
        assert codes == [401] * 20 + [429], codes  # then the server closed the connection
        assert b"Retry-After: " in last and b"RateLimited" in last
        # a new connection from there is closed before any answer
        with socket.create_connection(("127.0.0.1", s.port), timeout=10,
                                      source_address=("127.0.0.2", 0)) as c:  # fmt: skip
            try:
                c.sendall(req)
                answer = c.recv(100)
            except OSError:
                answer = b""
        assert answer == b""
        assert s.poll(board(w, 0), "d").status == Status.Ok  # 127.0.0.1 is not limited
        assert s.admin.call("GET", "/admin/stats")["connections"]["refused"] >= 1


def test_token_buckets_and_the_log_filter_follow_their_clock() -> None:
    now = [0.0]
    b = TokenBuckets(rate=2.0, burst=3.0, max_keys=2, clock=lambda: now[0])
    assert [b.take("a") for _ in range(4)] == [0, 0, 0, 0.5]
    now[0] = 0.5
    assert b.take("a") == 0 and b.take("a") > 0
    b.take("b")
    b.take("c")  # "a" forgotten: a full bucket again
    assert len(b.buckets) == 2 and b.take("a") == 0
    import logging

    f = RateLimitedLog(rate=1.0, burst=2.0, clock=lambda: now[0], width=40)

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, msg, None, None)

    passed = [f.filter(rec(f"line {i}\nsecond")) for i in range(10)]
    assert passed == [True, True] + [False] * 8
    now[0] += 1.0
    r = rec("x" * 100)
    assert f.filter(r) and r.msg.endswith("...") and len(r.msg) == 40
    r = rec("a\n  b")
    now[0] += 1.0
    assert f.filter(r) and r.msg == "a b"


# -- F5: connections, heads, bodies, the log --------------------------------------


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_server(c: socket.socket) -> bool:
    """Waits (30 s at most) for the server to close the connection."""
    c.settimeout(30)
    try:
        while c.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_f5_half_sent_heads_idle_floods_and_the_log(tmp_path: Path) -> None:
    """F5: a half-sent request head kept its connection forever; ~20,000
    exhausted the open-file limit (every check timed out) and the log grew
    52 MB in 90 s. Now a head must arrive within --header-timeout, at most
    --max-connections are open (the stalest idle one makes room), at most 64
    per address, and the log is rate-limited to short lines."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to count the server's open files")
    proc, url = spawn(tmp_path, TOKEN, "--max-connections", "100", "--header-timeout", "1")
    port = int(url.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        admin = AdminClient(url, TOKEN)
        admin.upload("m", full(models(1)[0], 1))
        secret = admin.register("d", group="g")["secret"]
        admin.assign("group", "g", "m")
        base = fds(proc.pid)
        # a half-sent head, and one dripping a byte at a time, are closed
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /v1/devices/d/manifest.json HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(half)
        drip = socket.create_connection(("127.0.0.1", port), timeout=30)
        closed = False
        for ch in b"GET /v1/health HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
            try:
                drip.sendall(bytes([ch]))
                time.sleep(0.05)
            except OSError:
                closed = True
                break
        assert closed or closed_by_server(drip)
        # 600 connections from five addresses, each sending half a head
        for i in range(600):
            try:
                source = (f"127.0.0.{2 + i % 5}", 0)
                c = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=source)
                c.sendall(b"GET / HTTP/1.1\r\n")
                held.append(c)
            except OSError:
                pass
            if i % 100 == 99:  # an honest device gets through all along
                dev = board(models(1)[0])
                assert poll(dev, url, "d", secret=secret).outcome == "current"
        assert fds(proc.pid) <= base + 100 + 10
        stats = admin.call("GET", "/admin/stats")
        assert stats["connections"]["open"] <= 100
        assert stats["connections"]["evicted"] + stats["connections"]["refused"] >= 490
        # 3,000 malformed requests as fast as they go: a bounded log
        t0 = time.monotonic()
        for _ in range(3000):
            raw_http(port, b"GET / HTTP/9.9\r\n\r\n", timeout=5)
        elapsed = time.monotonic() - t0
        log = (tmp_path / "serve.log").read_text()
        lines = log.splitlines()
        limits = Limits()
        assert len(lines) <= limits.log_burst + limits.log_rate * (elapsed + 5) + 10, len(lines)
        assert max(map(len, lines)) <= 300 + 80
        assert "earlier messages dropped" in log
    finally:
        for c in held:
            c.close()
        stop(proc)


def test_slow_bodies_get_408_and_uploads_stay_off_the_check_path(tmp_path: Path) -> None:
    limits = Limits(body_timeout=1.0)
    with running_server(tmp_path, limits=limits) as s:
        w = fleet_of_one(s)
        body = b'{"event":"apply"}'
        req = s.signed("POST", "/v1/devices/d/reports", "d", body)
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
            c.sendall(req[: -len(body)] + body[:3])  # the rest never comes
            raw = c.recv(4096)
        assert raw.startswith(b"HTTP/1.1 408"), raw
        assert s.admin.reports("d") == []
        # an admin upload dribbling in does not hold checks back
        payload = full(models(1, seed=3)[0], 2)
        head = (f"POST /admin/payloads?line=m HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{TOKEN}\r\nContent-Length: {len(payload)}\r\n\r\n").encode()  # fmt: skip
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
            c.sendall(head + payload[:100])
            assert s.poll(board(w, 1), "d").outcome == "current"
        assert [r["version"] for r in s.admin.payloads()] == [1]  # the cut upload left nothing
        no_500(s)
        assert FP  # the shared fingerprint stays importable


def test_nonces_and_quota_days_are_forgotten_in_time(tmp_path: Path) -> None:
    """What replay protection and quotas keep is bounded: nonces older than
    twice the clock window and quota days before yesterday are pruned."""
    from modelota.fleet.db import DAY, Fleet

    fleet = Fleet(tmp_path)
    try:
        fleet.register("d", None, None)
        fleet.report("d", {"event": "check"}, nonce="1:aaaaaaaa")
        now = time.time()
        fleet._write(lambda: fleet.db.execute(
            "INSERT INTO usage (device, day, kind, count, bytes) VALUES ('d', ?, 'windows', 1, 1)",
            (int(now // DAY) - 5,),
        ))  # fmt: skip
        fleet.prune(now)
        assert fleet.db.one("SELECT COUNT(*) FROM nonces") == (1,)  # still within the window
        assert fleet.db.one("SELECT COUNT(*) FROM usage") == (1,)  # only today's reports
        fleet.prune(now + auth.NONCE_KEEP + 1)  # (a request that old is refused by its ts)
        assert fleet.db.one("SELECT COUNT(*) FROM nonces") == (0,)
        assert fleet.db.one("SELECT COUNT(*) FROM usage") == (1,)
        fleet.prune(now + 2 * DAY)
        assert fleet.db.one("SELECT COUNT(*) FROM usage") == (0,)
    finally:
        fleet.close()
