"""Device credentials and request signatures (docs/FLEET.md, "Device
authentication").

Every device request to ``modelota serve`` carries

    Authorization: MOTA id="<device>", ts="<unix s>", nonce="<16 hex>",
                   [hash="<sha256 hex of the body>", ]mac="<64 hex>"

where ``mac`` is HMAC-SHA256 under the device's key over :func:`string_to_sign`
(method, path and query as sent from ``/v1/`` on, device id, ts, nonce and the
SHA-256 of the body; ``hash`` is present when there is a body). The key never
travels, so the scheme works on plain HTTP from devices that cannot do TLS;
a request cannot be changed, and a mutation cannot be replayed (the server
keeps each nonce of a POST for twice the clock window).

Device keys are derived, not stored: ``key = HMAC-SHA256(master, "modelota
device key v1" 0 id 0 generation)``. The database holds the generation of
each device (bumped to revoke a key) and a check value of the master key,
never a key; the master key lives in a file next to the data (0600) or
wherever ``--device-key-file`` says, identical on every replica.

A device without a clock learns the server's: a request with a stale ``ts``
whose MAC is right is answered ``401 StaleTimestamp`` with
``WWW-Authenticate: MOTA ts="<server time>", tsm="<hex>"``, ``tsm`` being
HMAC-SHA256 under the device key over ``"MOTA1-time\\n<ts>\\n<nonce>\\n"`` (the
nonce of the refused request): only the server can produce it, and only for
this request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SCHEME = "MOTA"
WINDOW = 300  # seconds a request's ts may differ from the server's clock
NONCE_KEEP = 2 * WINDOW  # how long the nonce of a mutation is remembered
KEY_LEN = 32
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_PARAM = re.compile(r'\s*([a-z]+)="([^"\\]{0,128})"\s*(?:,|$)')
_NONCE = re.compile(r"[0-9A-Za-z_-]{8,32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"[0-9]{1,10}")


class AuthError(Exception):
    """A refused credential: short name and one-line message (HTTP 401)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True)
class Credential:
    """The parsed Authorization header of a device request."""

    device: str
    ts: int
    nonce: str
    body_hash: str  # "" when the request says it has no body
    mac: str

    @property
    def once(self) -> str:
        """What a replay repeats: ts and nonce (a device's nonce need only be
        unique among its requests signed in the same second)."""
        return f"{self.ts}:{self.nonce}"


def derive_key(master: bytes, device: str, generation: int) -> bytes:
    """The device's HMAC key for its current key generation."""
    info = b"modelota device key v1\0" + device.encode() + b"\0" + str(generation).encode()
    return hmac.new(master, info, hashlib.sha256).digest()


def key_check(master: bytes) -> str:
    """A value stored in the database that says which master key made the
    device keys (replicas with another key refuse to start), not the key."""
    return hmac.new(master, b"modelota key check", hashlib.sha256).hexdigest()[:16]


def string_to_sign(
    method: str, path: str, device: str, ts: int, nonce: str, body_hash: str
) -> bytes:
    """What the MAC covers. ``path`` is the request target from ``/v1/`` on
    (a base path a proxy strips is not part of it), query included."""
    return f"MOTA1\n{method}\n{path}\n{device}\n{ts}\n{nonce}\n{body_hash}\n".encode()


def mac(
    key: bytes, method: str, path: str, device: str, ts: int, nonce: str, body_hash: str
) -> str:
    msg = string_to_sign(method, path, device, ts, nonce, body_hash)
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def time_mac(key: bytes, ts: int, nonce: str) -> str:
    """``tsm`` of a StaleTimestamp answer: the server's time, bound to the
    nonce of the request it answers."""
    return hmac.new(key, f"MOTA1-time\n{ts}\n{nonce}\n".encode(), hashlib.sha256).hexdigest()


def sign(
    key: bytes,
    device: str,
    method: str,
    path: str,
    body: bytes = b"",
    ts: int | None = None,
    nonce: str | None = None,
) -> str:
    """The Authorization header value of a device request (the simulated
    device's and the tests'; the firmware builds the same in http.cpp)."""
    ts = int(time.time()) if ts is None else ts
    nonce = secrets.token_hex(8) if nonce is None else nonce
    body_hash = hashlib.sha256(body).hexdigest() if body else ""
    m = mac(key, method, path, device, ts, nonce, body_hash)
    extra = f', hash="{body_hash}"' if body_hash else ""
    return f'{SCHEME} id="{device}", ts="{ts}", nonce="{nonce}"{extra}, mac="{m}"'


def parse(header: str | None) -> Credential:
    """The credential in an Authorization header; AuthError when it is
    missing or malformed (nothing is looked up before this passes)."""
    if not header:
        raise AuthError("Unauthorized", f"device requests need 'Authorization: {SCHEME} ...'")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME or len(rest) > 512:
        raise AuthError("Unauthorized", f"device requests need 'Authorization: {SCHEME} ...'")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos or m.group(1) in params:
            raise AuthError("BadCredential", "malformed Authorization parameters")
        params[m.group(1)] = m.group(2)
        pos = m.end()
    keys = set(params)
    if keys - {"id", "ts", "nonce", "hash", "mac"} or not {"id", "ts", "nonce", "mac"} <= keys:
        raise AuthError("BadCredential", "Authorization needs id, ts, nonce and mac (and hash)")
    body_hash = params.get("hash", "")
    if (
        not _TS.fullmatch(params["ts"])
        or not _NONCE.fullmatch(params["nonce"])
        or not _HEX64.fullmatch(params["mac"])
        or (body_hash and not _HEX64.fullmatch(body_hash))
    ):
        raise AuthError("BadCredential", "malformed ts, nonce, hash or mac")
    return Credential(params["id"], int(params["ts"]), params["nonce"], body_hash, params["mac"])


def load_master(path: Path, create: bool) -> bytes:
    """The master key in ``path`` (64 hex digits); created (mode 0600) when
    missing and ``create``."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        if not create:
            raise
        key = secrets.token_bytes(KEY_LEN)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return key
    if not _HEX64.fullmatch(text.lower()):
        raise ValueError(f"{path}: a device key file holds 64 hex digits")
    return bytes.fromhex(text)
