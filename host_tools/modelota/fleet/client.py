"""Clients of the fleet protocol (docs/FLEET.md), on the standard library's
http.client so they behave like a device's plain HTTP/1.1 stack; ``https://``
server URLs go through TLS with the server's certificate checked (system CAs,
or a PEM file given as ``cacert``).

* :class:`AdminClient` — upload payloads, register devices, assign models.
* :func:`poll` — one check-download-apply-report round of a device: the
  payload streams straight into the device's Updater as it arrives; when the
  connection drops, the download continues with ``Range: bytes=N-`` (N = the
  bytes already fed) and ``If-Range`` on the payload's ETag, so nothing is
  buffered and nothing is downloaded twice. It works against ``modelota
  serve`` and against a static tree from ``modelota export`` served by any
  file server (one without Range support just costs a restart).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from ..sim.device import Progress, StreamLost
from ..status import Status
from .errors import ID_RE

PIECE = 1024  # bytes per read: a device's receive buffer
MANIFEST_MAX = 512


class FleetClientError(Exception):
    """The server refused a request: HTTP status, error name and message."""

    def __init__(self, http: int, name: str, message: str) -> None:
        super().__init__(f"HTTP {http} {name}: {message}")
        self.http = http
        self.name = name
        self.message = message


class FleetURLError(ValueError):
    """A server URL, CA file or id the client cannot use; nothing was sent."""


def _split(base_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of an http:// or https:// server URL."""
    u = urlsplit(base_url)
    if u.scheme not in ("http", "https") or not u.netloc:
        hint = f": did you mean http://{base_url} or https://{base_url}?" if not u.netloc else ""
        raise FleetURLError(
            f"{base_url} is not a server URL (http://host[:port][/prefix] or https://...){hint}"
        )
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError as e:
        raise FleetURLError(f"{base_url}: bad port ({e})") from e
    if not u.hostname:
        raise FleetURLError(f"{base_url}: no host name")
    if u.query or u.fragment:
        raise FleetURLError(f"{base_url}: a server URL has no ?query or #fragment")
    return u.scheme, u.hostname, port, u.path.rstrip("/")


def check_id(kind: str, value: str) -> str:
    """A device, group or line id as the server accepts it (the same pattern),
    checked before it goes into a URL."""
    if not ID_RE.fullmatch(value):
        raise FleetURLError(
            f"{kind} id {value!r} is not valid: 1 to 64 of A-Z a-z 0-9 . _ : -"
            " (not starting with a dot)"
        )
    return value


def tls_context(cacert: str | None = None) -> ssl.SSLContext:
    """Certificate-checking TLS context: the system's CAs, or only those in
    ``cacert`` (a PEM file) when given."""
    try:
        return ssl.create_default_context(cafile=cacert)
    except FileNotFoundError as e:
        raise FleetURLError(f"{cacert}: no such CA certificate file") from e
    except (OSError, ssl.SSLError) as e:
        raise FleetURLError(f"{cacert}: not a PEM CA certificate file ({e})") from e


def _error_of(status: int, raw: bytes) -> FleetClientError:
    try:
        doc = json.loads(raw)
        return FleetClientError(status, str(doc["error"]), str(doc["message"]))
    except (ValueError, KeyError, TypeError):
        reason = http.client.responses.get(status, "")
        return FleetClientError(
            status, reason.replace(" ", "") or "Http",
            "the answer is not a modelota error: is this the right server URL?",
        )  # fmt: skip


def check_server(base_url: str, cacert: str | None = None) -> None:
    """Raises FleetURLError for a server URL or CA file the client cannot use."""
    _Conn(base_url, 1.0, cacert)


class _Conn:
    """Connections to one server, plain or TLS (``https://``; the server's
    certificate is checked against the system's CAs or ``cacert``)."""

    def __init__(self, base_url: str, timeout: float, cacert: str | None = None) -> None:
        self.scheme, self.host, self.port, self.prefix = _split(base_url)
        self.timeout = timeout
        self.tls: ssl.SSLContext | None = None
        if self.scheme == "https":
            self.tls = tls_context(cacert)
        elif cacert is not None:
            raise FleetURLError(f"{base_url}: a CA certificate is for https:// servers")

    def open(self) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.tls
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.open()
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


class AdminClient:
    """The admin API with its bearer token."""

    def __init__(
        self, base_url: str, token: str, timeout: float = 30.0, cacert: str | None = None
    ) -> None:
        self.conn = _Conn(base_url, timeout, cacert)
        self.token = token

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> Any:
        """Any admin request; the parsed JSON answer, FleetClientError on 4xx/5xx."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if ctype:
            headers["Content-Type"] = ctype
        status, _, raw = self.conn.request(method, path, body, headers)
        if status >= 400:
            raise _error_of(status, raw)
        try:
            return json.loads(raw) if raw else None
        except ValueError as e:
            raise FleetClientError(
                status, "BadResponse", "the answer is not JSON: is this a modelota serve URL?"
            ) from e

    def upload(self, line: str, payload: bytes) -> dict[str, Any]:
        check_id("line", line)
        return dict(
            self.call(
                "POST", f"/admin/payloads?{urlencode({'line': line})}", payload,
                "application/octet-stream",
            )
        )  # fmt: skip

    def payloads(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/admin/payloads"))

    def register(
        self, device: str, group: str | None = None, fingerprint: str | None = None
    ) -> dict[str, Any]:
        body = json.dumps({"group": group, "fingerprint": fingerprint}).encode()
        check_id("device", device)
        return dict(self.call("PUT", f"/admin/devices/{device}", body, "application/json"))

    def devices(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/admin/devices"))

    def assign(self, kind: str, target: str, line: str, version: int | None = None) -> Any:
        body = json.dumps({"line": line, "version": version}).encode()
        check_id(kind, target)
        return self.call("PUT", f"/admin/assignments/{kind}/{target}", body, "application/json")

    def reports(self, device: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if device:
            check_id("device", device)
        q = {"limit": str(limit)} | ({"device": device} if device else {})
        return list(self.call("GET", f"/admin/reports?{urlencode(q)}"))

    def _post_json(self, path: str, doc: Any) -> Any:
        return self.call("POST", path, json.dumps(doc).encode(), "application/json")

    def create_rollout(
        self, line: str, version: int, group: str, policy: dict[str, Any] | None = None,
        start: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        doc = {"line": line, "version": version, "group": group, "policy": policy or {},
               "start": start}  # fmt: skip
        return dict(self._post_json("/admin/rollouts", doc))

    def rollouts(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/admin/rollouts"))

    def rollout(self, rid: int) -> dict[str, Any]:
        return dict(self.call("GET", f"/admin/rollouts/{rid}"))

    def rollout_action(self, rid: int, action: str, note: str = "") -> dict[str, Any]:
        """start, pause, resume or abort."""
        return dict(self._post_json(f"/admin/rollouts/{rid}/{action}", {"note": note}))

    def evaluate(self) -> list[dict[str, Any]]:
        """The server's rollout decisions, made now rather than on its timer."""
        return list(self.call("POST", "/admin/rollouts/evaluate"))

    def quality(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/admin/quality"))

    def history(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/admin/history"))


class PullDevice(Protocol):
    """What :func:`poll` needs from a device (device.RamModelDevice has it)."""

    fingerprint: bytes

    @property
    def version(self) -> int: ...

    def update_stream(
        self, pieces: Iterator[bytes], progress: Progress | None = None
    ) -> Status: ...


@dataclass
class PollResult:
    """What one poll did."""

    outcome: str  # "current", "updated", "refused", "failed"
    version: int  # the device's version afterwards
    status: Status | None = None  # the Updater's status when an update ran
    offered: int | None = None  # version the server offered
    payload_size: int = 0
    attempts: int = 0  # connections used to download (1 = no resume needed)
    resumed_at: list[int] = field(default_factory=list)  # byte offsets resumed from
    message: str = ""

    @property
    def what(self) -> str:
        """The Updater's status name when an update ran, else the outcome."""
        return self.outcome if self.status is None else self.status.name


@dataclass
class Manifest:
    version: int
    base_version: int
    size: int
    fingerprint: str
    sha256: str
    url: str
    line: str

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        if len(raw) > MANIFEST_MAX:
            raise ValueError(f"manifest over {MANIFEST_MAX} bytes")
        doc = json.loads(raw)
        try:
            m = cls(
                int(doc["version"]), int(doc["base_version"]), int(doc["size"]),
                str(doc["fingerprint"]), str(doc["sha256"]), str(doc["url"]), str(doc["line"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"manifest lacks a field: {e}") from e
        if not m.url.startswith("/v1/payloads/"):
            raise ValueError("manifest url must be a /v1/payloads/ path")
        return m


class _Download:
    """Payload bytes as an iterator of pieces, reconnecting with a Range
    request after a drop. Raises StreamLost when it gives up."""

    def __init__(
        self,
        conn: _Conn,
        m: Manifest,
        attempts: int,
        backoff: float,
    ) -> None:
        self.conn = conn
        self.m = m
        self.max_attempts = attempts
        self.backoff = backoff
        self.attempts = 0
        self.resumed_at: list[int] = []
        self.fed = 0
        self.restarted = False

    def __iter__(self) -> Iterator[bytes]:
        etag = ""  # the server's own ETag (a static server has its own scheme)
        while self.fed < self.m.size:
            if self.attempts >= self.max_attempts:
                raise StreamLost(Status.Timeout, f"download gave up after {self.attempts} tries")
            self.attempts += 1
            headers = {"User-Agent": "ModelOTA-sim"}
            if self.fed:
                headers["Range"] = f"bytes={self.fed}-"
                if etag:
                    headers["If-Range"] = etag
                self.resumed_at.append(self.fed)
            c = self.conn.open()
            try:
                c.request("GET", self.conn.prefix + self.m.url, headers=headers)
                resp = c.getresponse()
                if resp.status == 200 and self.fed:
                    # the server ignored the range: the Updater cannot rewind
                    # (it applied those bytes), so this download is over
                    raise StreamLost(Status.Aborted, "server ignored the Range request")
                if resp.status not in (200, 206):
                    raise StreamLost(Status.Aborted, f"payload download: HTTP {resp.status}")
                etag = etag or resp.getheader("ETag", "")
                if resp.status == 206 and not resp.getheader("Content-Range", "").startswith(
                    f"bytes {self.fed}-"
                ):
                    raise StreamLost(Status.Aborted, "server answered another range")
                while self.fed < self.m.size:
                    piece = resp.read1(PIECE)
                    if not piece:
                        break  # connection closed early: resume
                    self.fed += len(piece)
                    yield piece
            except (OSError, http.client.HTTPException):
                pass  # dropped: resume from self.fed
            finally:
                c.close()
            if self.fed < self.m.size:
                time.sleep(self.backoff)


def poll(
    device: PullDevice,
    base_url: str,
    device_id: str,
    progress: Callable[[int, int], None] | None = None,
    attempts: int = 5,
    timeout: float = 10.0,
    backoff: float = 0.05,
    report: bool = True,
    cacert: str | None = None,
) -> PollResult:
    """One round of a device's pull loop (docs/FLEET.md): check, download
    into the Updater, report. ``https://`` servers are checked against the
    system's CAs, or the PEM file ``cacert``."""
    conn = _Conn(base_url, timeout, cacert)
    check_id("device", device_id)
    query = urlencode({"fingerprint": device.fingerprint.hex(), "version": device.version})
    status, _, raw = conn.request(
        "GET", f"/v1/devices/{device_id}/manifest.json?{query}", headers={"User-Agent": "sim"}
    )
    if status in (204, 304):
        return PollResult("current", device.version, message="already runs the assigned model")
    if status != 200:
        raise _error_of(status, raw)
    m = Manifest.parse(raw)
    if m.version <= device.version or m.fingerprint != device.fingerprint.hex():
        why = (
            f"offered v{m.version} for model {m.fingerprint[:8]}..., device runs"
            f" v{device.version} of {device.fingerprint.hex()[:8]}..."
        )
        return PollResult("current", device.version, offered=m.version, message=why)
    dl = _Download(conn, m, attempts, backoff)
    st = device.update_stream(
        iter(dl), None if progress is None else (lambda n: progress(n, m.size))
    )
    outcome = "updated" if st == Status.Ok else "refused"
    if st in (Status.Timeout, Status.Aborted) and dl.fed < m.size:
        outcome = "failed"
    result = PollResult(
        outcome, device.version, st, m.version, m.size, dl.attempts, dl.resumed_at,
        f"{st.name} after {dl.fed} of {m.size} bytes",
    )  # fmt: skip
    if report:
        send_report(
            conn, device_id,
            {"event": "apply", "version": device.version, "status": int(st),
             "status_name": st.name, "message": result.message, "bytes": dl.fed},
        )  # fmt: skip
    return result


def send_quality(base_url: str, device_id: str, summary: bytes, timeout: float = 10.0) -> int:
    """POSTs a device's model-quality summary (the JSON the firmware's
    accumulator writes, docs/FLEET.md); returns the HTTP status."""
    conn = _Conn(base_url, timeout)
    status, _, raw = conn.request(
        "POST", f"/v1/devices/{device_id}/quality", summary,
        {"Content-Type": "application/json"},
    )  # fmt: skip
    if status >= 400:
        raise _error_of(status, raw)
    return status


def send_report(conn: _Conn, device_id: str, body: dict[str, Any]) -> bool:
    """Best effort, as on a device: a static tree has no report endpoint."""
    try:
        status, _, _ = conn.request(
            "POST", f"/v1/devices/{device_id}/reports", json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )  # fmt: skip
    except (OSError, http.client.HTTPException):
        return False
    return status == 204
