"""The device side of the fleet protocol (docs/FLEET.md): firmware_lib's HTTP
pull (modelota/http.cpp) with the real Updater and Store, compiled with host
g++ into tests/http_host/pull_main (strict warnings, ASan + UBSan), talking to
real servers over loopback through a POSIX-socket transport:

- nginx serving a static tree laid out as docs/FLEET.md says (and, when it is
  available, the tree ``modelota export`` writes);
- ``modelota serve`` (the fleet server), driven through its admin API;
- a TCP proxy in this file between the two that cuts a download after N
  bytes, stalls it, drops the Range header of the retry, or flips a byte.

The response parser and the manifest reader are also loaded through ctypes
(tests/http_host/probe.cpp) for hypothesis: random cuts of valid responses
parse identically, garbage is refused with a negative status.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet_util import Nginx, nginx_server, stop
from modelota import pack
from modelota.fleet.client import AdminClient
from modelota.fleet.server import spawn
from payloads import modelota

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_lib"
HOST = ROOT / "tests" / "http_host"
STRICT = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wshadow"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
FP = bytes.fromhex("6d6f64656c6f74612d746573742d6670")
OTHER_FP = bytes(range(16))
DEVICE = "24:6F:28:AA:01:02"  # a MAC address is a valid device id
TOKEN = "http-pull-token"

GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="host g++ is not installed")

OK, NO_UPDATE = 0, 1
CHUNK_CRC = -14
HTTP_CLOSED, HTTP_STATUS, HTTP_INVALID_ARGUMENT = -103, -107, -111


# --------------------------------------------------------------------------
# builds


@dataclass
class Built:
    pull: Path  # pull_main with ASan + UBSan
    probe: ctypes.CDLL


def _compile(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    assert GXX is not None
    out = tmp_path_factory.mktemp("http_host")
    core = sorted(str(p) for p in (FIRMWARE / "modelota").glob("*.cpp"))
    inc = ["-I", str(FIRMWARE), "-I", str(HOST)]
    pull = out / "pull_main"
    lib = out / "libhttpprobe.so"
    jobs = [
        _compile(
            [
                GXX,
                *STRICT,
                "-g",
                "-O1",
                *SANITIZE,
                *inc,
                *(str(HOST / n) for n in ("pull_main.cpp", "posix_transport.cpp", "probe.cpp")),
                *core,
                "-o",
                str(pull),
            ]
        ),
        _compile(
            [
                GXX,
                *STRICT,
                "-O1",
                "-shared",
                "-fPIC",
                *inc,
                str(HOST / "probe.cpp"),
                *core,
                "-o",
                str(lib),
            ]
        ),
    ]
    for job in jobs:
        text, _ = job.communicate(timeout=300)
        assert job.returncode == 0, f"{' '.join(map(str, job.args))}\n{text}"  # type: ignore[arg-type]
    probe = ctypes.CDLL(str(lib))
    probe.http_probe.restype = ctypes.c_int
    probe.manifest_probe.restype = ctypes.c_int
    probe.http_probe_sizeof.restype = ctypes.c_size_t
    probe.hmac_probe.restype = ctypes.c_int
    return Built(pull, probe)


# --------------------------------------------------------------------------
# the device program


@dataclass
class Outcome:
    """The `result key=value ...` line a pull_main run printed."""

    status: int
    name: str
    fields: dict[str, str]

    def __getitem__(self, key: str) -> int:
        return int(self.fields[key])


@dataclass
class Result(Outcome):
    weights: bytes


def run_device(
    built: Built,
    port: int,
    weights: bytes,
    version: int,
    tmp: Path,
    *extra: str,
    fp: bytes = FP,
    device: str = DEVICE,
    repeat: int = 1,
) -> list[Result]:
    tmp.mkdir(parents=True, exist_ok=True)
    w_in, w_out = tmp / "weights.bin", tmp / "weights.out"
    w_in.write_bytes(weights)
    cmd = [
        str(built.pull),
        "pull",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--id",
        device,
        "--weights",
        str(w_in),
        "--out",
        str(w_out),
        "--fingerprint",
        fp.hex(),
        "--version",
        str(version),
        "--repeat",
        str(repeat),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    results = []
    out = w_out.read_bytes()
    for line in proc.stdout.splitlines():
        if line.startswith("result "):
            f = dict(kv.split("=", 1) for kv in line.split()[1:])
            results.append(Result(int(f["status"]), f["name"], f, out))
    assert len(results) == repeat, proc.stdout + proc.stderr
    return results


# --------------------------------------------------------------------------
# servers


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    d = tmp_path_factory.mktemp("nginx")
    root = d / "tree"
    root.mkdir()
    with nginx_server(d, root) as n:
        yield n


def static_tree(
    root: Path,
    device: str,
    payload: bytes,
    version: int,
    base_version: int = 0,
    fp: bytes = FP,
    line: str = "digits",
) -> str:
    """Writes the answers of docs/FLEET.md as files; returns the payload's sha256."""
    sha = hashlib.sha256(payload).hexdigest()
    (root / "v1" / "payloads").mkdir(parents=True, exist_ok=True)
    (root / "v1" / "payloads" / f"{sha}.mota").write_bytes(payload)
    doc = {
        "version": version,
        "base_version": base_version,
        "size": len(payload),
        "fingerprint": fp.hex(),
        "sha256": sha,
        "url": f"/v1/payloads/{sha}.mota",
        "line": line,
    }
    manifest = json.dumps(doc, separators=(",", ":")).encode()
    assert len(manifest) <= 512
    (root / "v1" / "devices" / device).mkdir(parents=True, exist_ok=True)
    (root / "v1" / "devices" / device / "manifest.json").write_bytes(manifest)
    return sha


# --------------------------------------------------------------------------
# the fault-injecting proxy


@dataclass
class Action:
    cut_after: int | None = None  # response bytes forwarded before closing
    stall_after: int | None = None  # response bytes forwarded before going silent
    flip_body_at: int | None = None  # body offset of a byte to corrupt
    drop_range: bool = False  # remove Range/If-Range from the request
    rechunk: int = 0  # > 0: re-send the body chunked, pieces of 1..rechunk bytes (seeded)
    edit: tuple[bytes, bytes] | None = None  # (old, new): replaced in the response head


@dataclass
class Exchange:
    request: bytes
    response_head: bytes
    action: Action


Policy = Callable[[int, bytes], Action]


@dataclass
class Proxy:
    upstream: int
    policy: Policy
    port: int = 0
    exchanges: list[Exchange] = field(default_factory=list)
    _sock: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Proxy:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._sock is not None
        self._sock.close()

    def payload_requests(self) -> list[Exchange]:
        return [e for e in self.exchanges if b"/v1/payloads/" in e.request.split(b"\r\n")[0]]

    def _serve(self) -> None:
        assert self._sock is not None
        n = 0
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(client, n), daemon=True).start()
            n += 1

    def _handle(self, client: socket.socket, index: int) -> None:
        with client:
            client.settimeout(10)
            request = read_request(client)
            action = self.policy(index, request)
            sent = request
            if action.drop_range:
                sent = re.sub(rb"(?im)^(range|if-range):[^\r\n]*\r\n", b"", request)
            with socket.create_connection(("127.0.0.1", self.upstream), timeout=10) as up:
                up.sendall(sent)
                response = read_all(up)
            head_end = response.find(b"\r\n\r\n") + 4
            if action.edit is not None:
                head = response[:head_end].replace(*action.edit)
                response, head_end = head + response[head_end:], len(head)
            if action.flip_body_at is not None:
                at = head_end + action.flip_body_at
                response = response[:at] + bytes([response[at] ^ 0x5A]) + response[at + 1 :]
            if action.rechunk:
                response = rechunked(response, head_end, action.rechunk, seed=index)
                head_end = response.find(b"\r\n\r\n") + 4
            with self._lock:
                self.exchanges.append(Exchange(request, response[:head_end], action))
            limit = action.cut_after if action.cut_after is not None else action.stall_after
            try:
                client.sendall(response if limit is None else response[:limit])
                if action.stall_after is not None:
                    # silent but open until the device times out and hangs up
                    client.settimeout(60)
                    while client.recv(4096):
                        pass
            except OSError:
                pass


def rechunked(response: bytes, head_end: int, most: int, seed: int) -> bytes:
    """The same response with Transfer-Encoding: chunked instead of its
    Content-Length: random piece sizes, chunk extensions, a trailer."""
    rnd = random.Random(seed)
    head = re.sub(rb"(?im)^content-length:[^\r\n]*\r\n", b"", response[: head_end - 2])
    out = [head + b"Transfer-Encoding: chunked\r\n\r\n"]
    body = response[head_end:]
    while body:
        n = rnd.randint(1, most)
        ext = rnd.choice([b"", b";x=1", b';name="v"'])
        out.append(b"%x%s\r\n%s\r\n" % (min(n, len(body)), ext, body[:n]))
        body = body[n:]
    out.append(b"0\r\nX-Trailer: t\r\n\r\n")
    return b"".join(out)


def read_request(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = s.recv(4096)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(m[1]) if m else 0
    while len(body) < want:
        piece = s.recv(4096)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        piece = s.recv(65536)
        if not piece:
            return b"".join(chunks)
        chunks.append(piece)


def passthrough(_index: int, _request: bytes) -> Action:
    return Action()


# --------------------------------------------------------------------------
# fixtures: models and payloads


def models(seed: int, size: int = 6000) -> tuple[bytes, bytes]:
    rnd = random.Random(seed)
    old = rnd.randbytes(size)
    new = bytearray(old)
    for _ in range(40):
        at = rnd.randrange(size - 64)
        new[at : at + 64] = rnd.randbytes(64)
    return old, bytes(new)


def full_payload(new: bytes, version: int, fp: bytes = FP, chunk: int = 512) -> bytes:
    return pack(new, fingerprint=fp, version=version, chunk_size=chunk).encode()


# --------------------------------------------------------------------------
# 1. response parser and manifest reader (ctypes, hypothesis)


def probe_http(built: Built, data: bytes, cuts: list[int], eof: bool = True) -> tuple[int, str]:
    arr = (ctypes.c_uint32 * max(1, len(cuts)))(*cuts)
    out = ctypes.create_string_buffer(1 << 16)
    r = built.probe.http_probe(data, len(data), arr, len(cuts), int(eof), out, len(out))
    return int(r), out.value.decode("latin-1")


def probe_manifest(built: Built, data: bytes, cuts: list[int]) -> tuple[int, str]:
    arr = (ctypes.c_uint32 * max(1, len(cuts)))(*cuts)
    out = ctypes.create_string_buffer(4096)
    r = built.probe.manifest_probe(data, len(data), arr, len(cuts), out, len(out))
    return int(r), out.value.decode("latin-1")


TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
header_names = st.text(TOKEN_CHARS, min_size=1, max_size=20).filter(
    lambda s: (
        s.lower()
        not in (
            "content-length",
            "transfer-encoding",
            "content-range",
            "etag",
            "connection",
            "content-encoding",
            "www-authenticate",
        )
    )
)
header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=150)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, bytes, str, str]:
    """A valid HTTP/1.1 response: (bytes, code, body, etag, framing)."""
    code = draw(st.sampled_from([200, 206, 404, 500, 201]))
    body = draw(st.binary(max_size=400))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    etag = draw(st.sampled_from(["", '"abc"', 'W/"5f-2c00"', '"' + "ab" * 32 + '"']))
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    if draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))), ("Connection", "close"))
    if etag:
        headers.insert(draw(st.integers(0, len(headers))), ("ETag", etag))
    if framing == "length":
        headers.insert(draw(st.integers(0, len(headers))), ("Content-Length", str(len(body))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    head = f"HTTP/1.1 {code} Some Reason{eol}" + "".join(f"{k}: {v}{eol}" for k, v in headers)
    raw = (head + eol).encode()
    if framing == "chunked":
        rest = body
        while rest:
            n = draw(st.integers(1, max(1, len(rest))))
            ext = draw(st.sampled_from(["", ";name=value", " ;x"]))
            raw += f"{n:x}{ext}\r\n".encode() + rest[:n] + b"\r\n"
            rest = rest[n:]
        raw += b"0\r\n" + draw(st.sampled_from([b"", b"Trailer: x\r\n"])) + b"\r\n"
    else:
        raw += body
    return raw, code, body, etag, framing


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resp=responses(), data=st.data())
def test_random_cuts_of_a_valid_response_parse_identically(
    built: Built, resp: tuple[bytes, int, bytes, str, str], data: st.DataObject
) -> None:
    raw, code, body, etag, framing = resp
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    whole, text = probe_http(built, raw, [])
    assert whole == 3, text  # MODELOTA_HTTP_EV_DONE
    assert text.startswith(f"code={code} ") and f"etag=[{etag}]" in text, text
    assert f" body={body.hex()} headers=1 result=3" in text, text
    assert (f"len={len(body)} " in text) == (framing == "length" or len(body) == 0), text
    split, split_text = probe_http(built, raw, cuts)
    assert (split, split_text) == (whole, text)
    bytewise, bytewise_text = probe_http(built, raw, list(range(len(raw))))
    assert (bytewise, bytewise_text) == (whole, text)
    if framing != "close":  # the length or the chunk framing ends it without a close
        assert probe_http(built, raw, cuts, eof=False) == (whole, text)
        cut_short, short_text = probe_http(built, raw[:-1], cuts[:-1] if cuts else [])
        assert cut_short == HTTP_CLOSED or (framing == "length" and not body), short_text


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=800), data=st.data())
def test_garbage_never_parses(built: Built, garbage: bytes, data: st.DataObject) -> None:
    if garbage.startswith(b"HTTP/1."):
        garbage = b"X" + garbage
    cuts = sorted(data.draw(st.lists(st.integers(0, len(garbage)), max_size=8)))
    r, text = probe_http(built, garbage, cuts)
    assert -111 <= r <= -100, text
    r, text = probe_manifest(built, garbage, cuts)
    assert r == -108 or garbage.strip().startswith(b"{"), text


@settings(max_examples=200, deadline=None)
@given(resp=responses(), data=st.data())
def test_mutated_responses_never_crash(
    built: Built, resp: tuple[bytes, int, bytes, str, str], data: st.DataObject
) -> None:
    raw = bytearray(resp[0])
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        raw[at : at + 1] = data.draw(st.binary(max_size=3))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    r, text = probe_http(built, bytes(raw), cuts)
    assert r == 3 or -111 <= r <= -100, text
    assert probe_http(built, bytes(raw), []) == (r, text)  # deterministic under cuts


def test_parser_refusals(built: Built) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert probe_http(built, ok, [])[0] == 3
    cases = {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n": -106,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n": -106,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi": -104,
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n": -104,
        b"HTTP/1.1 2000 OK\r\n\r\n": -104,
        b"HTTP/1.1 206 P\r\nContent-Range: bytes 9-3/20\r\n\r\n": -104,
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n": -104,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n": -104,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n": -104,
        b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n": -105,
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 1000 + b"\r\n": -105,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi": HTTP_CLOSED,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n": HTTP_CLOSED,
    }
    for raw, want in cases.items():
        r, text = probe_http(built, raw, [])
        assert r == want, (raw[:80], text)
    # a long header we do not read is cut, not refused; a long ETag is dropped
    long_other = b"HTTP/1.1 200 OK\r\nServer: " + b"s" * 300 + b"\r\nContent-Length: 0\r\n\r\n"
    assert probe_http(built, long_other, [])[0] == 3
    long_etag = b'HTTP/1.1 200 OK\r\nETag: "' + b"e" * 100 + b'"\r\nContent-Length: 0\r\n\r\n'
    r, text = probe_http(built, long_etag, [])
    assert r == 3 and "etag=[]" in text and "flags=17 " in text, text
    # 1xx is skipped; the final answer counts
    cont = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    r, text = probe_http(built, cont, [])
    assert r == 3 and text.startswith("code=204 "), text
    # a 416's "bytes */N"
    r, text = probe_http(
        built, b"HTTP/1.1 416 R\r\nContent-Range: bytes */77\r\nContent-Length: 0\r\n\r\n", []
    )
    assert r == 3 and "range=0-0/77" in text, text


def fleet_manifest(sha: str = "ab" * 32, **over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "version": 7,
        "base_version": 0,
        "size": 11264,
        "fingerprint": FP.hex(),
        "sha256": sha,
        "url": f"/v1/payloads/{sha}.mota",
        "line": "digits",
    }
    doc.update(over)
    return doc


def test_parser_reads_the_signed_server_time(built: Built) -> None:
    tsm = "0123456789abcdef" * 4
    head = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
    good = f'WWW-Authenticate: MOTA ts="1796296571", tsm="{tsm}"\r\n'
    code, text = probe_http(built, (head + good + "\r\n").encode(), [40, 90])
    assert code == 3 and f"[auth=1796296571:{tsm[:32]}]" in text  # the first 16 bytes kept
    for bad in (
        f'WWW-Authenticate: MOTA ts="1796296571", tsm="{tsm}0"',  # 65 digits
        f'WWW-Authenticate: MOTA ts="1796296571", tsm="{tsm[:-1]}g"',
        f'WWW-Authenticate: MOTA ts="99999999999", tsm="{tsm}"',  # over 32 bits
        f'WWW-Authenticate: MOTA ts="", tsm="{tsm}"',
        f'WWW-Authenticate: Bearer ts="1", tsm="{tsm}"',
        "WWW-Authenticate: MOTA",
    ):
        code, text = probe_http(built, (head + bad + "\r\n\r\n").encode(), [])
        assert code == 3 and "[auth=" not in text, bad


def hmac_c(built: Built, key: bytes, msg: bytes, cuts: list[int]) -> bytes | None:
    out = ctypes.create_string_buffer(32)
    arr = (ctypes.c_uint32 * max(1, len(cuts)))(*cuts)
    r = built.probe.hmac_probe(key, len(key), msg, len(msg), arr, len(cuts), out)
    return None if r != 0 else out.raw


def test_hmac_sha256_matches_rfc_4231_and_hashlib(built: Built) -> None:
    import hmac as pyhmac

    # RFC 4231 test case 2
    got = hmac_c(built, b"Jefe", b"what do ya want for nothing?", [])
    assert got == bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    rnd = random.Random(3)
    for n in (0, 1, 55, 56, 63, 64, 65, 200):
        for klen in (1, 32, 63, 64):
            key, msg = rnd.randbytes(klen), rnd.randbytes(n)
            cuts = sorted(rnd.randrange(n + 1) for _ in range(3))
            assert hmac_c(built, key, msg, cuts) == pyhmac.digest(key, msg, "sha256")
    assert hmac_c(built, b"", b"x", []) is None and hmac_c(built, bytes(65), b"x", []) is None


@settings(max_examples=200, deadline=None)
@given(
    version=st.integers(0, 2**32 - 1),
    size=st.integers(0, 2**32 - 1),
    line=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64),
    extra=st.dictionaries(
        st.text(TOKEN_CHARS, min_size=1, max_size=20),
        st.one_of(
            st.integers(-(10**6), 10**6),
            st.booleans(),
            st.none(),
            st.text(max_size=20),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=3,
    ),
    indent=st.sampled_from([None, 0, 1]),
    data=st.data(),
)
def test_manifest_reader_reads_any_layout_of_a_manifest(
    built: Built,
    version: int,
    size: int,
    line: str,
    extra: dict[str, object],
    indent: int | None,
    data: st.DataObject,
) -> None:
    doc = fleet_manifest(version=version, size=size, line=line)
    for k, v in extra.items():
        doc.setdefault(k, v)
    items = list(doc.items())
    data.draw(st.randoms()).shuffle(items)
    raw = json.dumps(dict(items), indent=indent).encode()
    if len(raw) > 512:
        raw = json.dumps(dict(items), separators=(",", ":")).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    r, text = probe_manifest(built, raw, cuts)
    if len(raw) > 512:
        assert r == -108, text
        return
    assert r == 0, (raw, text)
    assert f"version={version} base=0 size={size} fp={FP.hex()} sha={'ab' * 32}" in text
    kept = line.encode()[:32].decode()
    assert text.endswith(f"] line=[{kept}]") or "\\" in line or '"' in line, text
    assert probe_manifest(built, raw, []) == (r, text)


def test_manifest_refusals(built: Built) -> None:
    good = json.dumps(fleet_manifest()).encode()
    assert probe_manifest(built, good, [])[0] == 0
    bad = [
        {**fleet_manifest(), "version": -1},
        {**fleet_manifest(), "version": 2**32},
        {**fleet_manifest(), "version": 1.5},
        {**fleet_manifest(), "version": "7"},
        {**fleet_manifest(), "size": None},
        {**fleet_manifest(), "fingerprint": FP.hex()[:-1]},
        {**fleet_manifest(), "fingerprint": "zz" + FP.hex()[2:]},
        {**fleet_manifest(), "sha256": "ab" * 33},
        {**fleet_manifest(), "url": "/v1/" + "x" * 100},
        {**fleet_manifest(), "url": "/a b"},
        {**fleet_manifest(), "nested": {"a": 1}},
        {**fleet_manifest(), "list": [1]},
        {k: v for k, v in fleet_manifest().items() if k != "url"},
        {k: v for k, v in fleet_manifest().items() if k != "fingerprint"},
    ]
    for doc in bad:
        r, text = probe_manifest(built, json.dumps(doc).encode(), [])
        assert r == -108, (doc, text)
    for raw in (
        b"",
        b"[]",
        b"{",
        b'{"version": 7,}',
        good + b"x",
        good[:-1],
        b'{"version":7,"version":8}',
        b" " * 513 + b"{}",
    ):
        assert probe_manifest(built, raw, [])[0] == -108, raw


def test_fuzz_under_asan_and_ubsan(built: Built) -> None:
    proc = subprocess.run(
        [str(built.pull), "fuzz", "30000", "12345"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"garbage=(\d+) garbage_negative=(\d+)", proc.stdout)
    assert m and int(m[1]) > 1000 and m[1] == m[2], proc.stdout
    print("\n" + proc.stdout.strip())


def test_struct_sizes(built: Built) -> None:
    sizes = {
        n: int(built.probe.http_probe_sizeof(i))
        for i, n in enumerate(("modelota_http", "parser", "manifest", "config"))
    }
    print(f"\nhost (x86-64) sizes: {sizes}")
    assert sizes["modelota_http"] <= 640, sizes


# --------------------------------------------------------------------------
# 2. nginx: a static tree


def test_static_tree_update_then_no_update(built: Built, nginx: Nginx, tmp_path: Path) -> None:
    """The device pulls v2 from plain files, ends byte-identical; the next
    check (a new process: no ETag kept) and a repeated one in the same
    process (If-None-Match: 304) say NoUpdate without touching the payload."""
    old, new = models(1)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)
    with Proxy(nginx.port, passthrough) as px:
        r = run_device(built, px.port, old, 1, tmp_path / "a")[0]
        assert (r.status, r.name, r["version"], r["attempts"]) == (OK, "Ok", 2, 1), r.fields
        assert r.weights == new
        assert r["fed"] == len(payload) and r.fields["progress"] == f"{len(payload)}/{len(payload)}"
        first = px.exchanges[0].request.decode()
        assert first.startswith(
            f"GET /v1/devices/{DEVICE}/manifest.json?fingerprint={FP.hex()}&version=1 HTTP/1.1\r\n"
        ), first
        assert f"Host: 127.0.0.1:{px.port}\r\n" in first and "User-Agent: ModelOTA/" in first
        assert "Connection: close\r\n" in first
        posts = [e for e in px.exchanges if e.request.startswith(b"POST ")]
        assert len(posts) == 1 and posts[0].response_head[9:12] in (b"404", b"405")  # no endpoint
        report = json.loads(posts[0].request.partition(b"\r\n\r\n")[2])
        assert report == {
            "event": "apply",
            "version": 2,
            "status": 0,
            "status_name": "Ok",
            "bytes": len(payload),
        }

        n = len(px.exchanges)
        res = run_device(built, px.port, new, 2, tmp_path / "b", repeat=2)
        assert [x.status for x in res] == [NO_UPDATE, NO_UPDATE]
        assert res[1].fields["code"] == "304", res[1].fields
        later = px.exchanges[n:]
        assert len(later) == 2 and not px.payload_requests()[1:]
        assert b"If-None-Match: " in later[1].request and b" 304 " in later[1].response_head


def test_static_tree_resumes_with_range_after_a_cut(
    built: Built, nginx: Nginx, tmp_path: Path
) -> None:
    old, new = models(2, size=9000)
    payload = full_payload(new, 5, chunk=700)
    static_tree(nginx.root, DEVICE, payload, 5)
    cut = 3000 + 200  # response bytes: headers + about 3000 payload bytes

    def policy(index: int, request: bytes) -> Action:
        first_payload = b"/v1/payloads/" in request and b"Range:" not in request
        return Action(cut_after=cut) if first_payload else Action()

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 4, tmp_path)[0]
    assert (r.status, r["version"], r["attempts"], r["resumes"], r["restarts"]) == (OK, 5, 2, 1, 0)
    assert r.weights == new
    first, second = px.payload_requests()
    head_len = first.response_head.__len__()
    done = cut - head_len
    assert f"Range: bytes={done}-\r\n".encode() in second.request, second.request
    etag = re.search(rb"(?im)^etag: ([^\r\n]+)", first.response_head)
    assert etag and b"If-Range: " + etag[1] + b"\r\n" in second.request
    assert second.response_head.startswith(b"HTTP/1.1 206 "), second.response_head
    assert f"Content-Range: bytes {done}-{len(payload) - 1}/{len(payload)}".encode() in (
        second.response_head
    )


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(0, 3200), max_size=4))
def test_resume_after_cuts_anywhere(built: Built, nginx: Nginx, cuts: list[int]) -> None:
    """Up to 4 connections of a download cut at any response byte (inside the
    status line, the headers, or the body): with 5 attempts the device
    always ends with the new weights, and every retry asks for exactly the
    bytes it has fed so far (the body bytes the cut connections delivered)."""
    old, new = models(15, size=2500)
    payload = full_payload(new, 2, chunk=300)
    static_tree(nginx.root, "dev-cuts", payload, 2)
    pending = list(cuts)

    def policy(index: int, request: bytes) -> Action:
        if b"/v1/payloads/" in request and pending:
            return Action(cut_after=pending.pop(0))
        return Action()

    with tempfile.TemporaryDirectory() as tmp, Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, Path(tmp), "--no-report", device="dev-cuts")[0]
    assert (r.status, r.weights) == (OK, new), r.fields
    fed = 0
    for ex in px.payload_requests():
        m = re.search(rb"Range: bytes=(\d+)-", ex.request)
        assert (int(m[1]) if m else 0) == fed, (ex.request, fed)
        if ex.action.cut_after is not None:
            fed += max(0, min(ex.action.cut_after - len(ex.response_head), len(payload) - fed))
    assert r["attempts"] == len(px.payload_requests())


def test_a_stalled_download_times_out_and_resumes(
    built: Built, nginx: Nginx, tmp_path: Path
) -> None:
    old, new = models(3)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)

    def policy(index: int, request: bytes) -> Action:
        first_payload = b"/v1/payloads/" in request and b"Range:" not in request
        return Action(stall_after=1500) if first_payload else Action()

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path, "--timeout", "700")[0]
    assert (r.status, r["attempts"], r["resumes"]) == (OK, 2, 1), r.fields
    assert r.weights == new
    assert b"Range: bytes=" in px.payload_requests()[1].request


@pytest.mark.parametrize("store", [False, True], ids=["ram", "store"])
def test_a_200_to_the_range_request_starts_over(
    built: Built, nginx: Nginx, tmp_path: Path, store: bool
) -> None:
    old, new = models(4)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)
    seen: list[int] = []

    def policy(index: int, request: bytes) -> Action:
        if b"/v1/payloads/" not in request:
            return Action()
        seen.append(index)
        return Action(cut_after=2500) if len(seen) == 1 else Action(drop_range=True)

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path, *(["--store"] if store else []))[0]
    assert (r.status, r["attempts"], r["restarts"], r["resumes"]) == (OK, 2, 1, 0), r.fields
    if store:  # the log was dropped and restarted: the store holds exactly v2
        assert (r.fields["store_version"], r.fields["store_matches"]) == ("2", "1"), r.fields
    assert r["backwards"] == 1 and r.weights == new
    second = px.payload_requests()[1]
    assert b"Range: bytes=" in second.request and second.response_head.startswith(b"HTTP/1.1 200")


def test_a_corrupted_byte_is_refused_and_the_weights_restored(
    built: Built, nginx: Nginx, tmp_path: Path
) -> None:
    old, new = models(5)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)

    def policy(index: int, request: bytes) -> Action:
        return Action(flip_body_at=2000) if b"/v1/payloads/" in request else Action()

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path)[0]
    assert (r.status, r.name, r["version"], r["intact"]) == (CHUNK_CRC, "ChunkCrc", 1, 1)
    assert r.weights == old
    assert r["attempts"] == 1  # a refused payload is not downloaded again
    report = json.loads(
        next(e for e in px.exchanges if e.request.startswith(b"POST ")).request.split(b"\r\n\r\n")[
            1
        ]
    )
    assert report["status_name"] == "ChunkCrc" and report["event"] == "apply"
    assert report["version"] == 1  # the version the device runs after the event


def test_chunked_responses_are_decoded_end_to_end(
    built: Built, nginx: Nginx, tmp_path: Path
) -> None:
    """Every response re-sent with Transfer-Encoding: chunked (no
    Content-Length, random chunk sizes and extensions, a trailer), and the
    first download cut mid-chunk: the manifest, the payload and the resumed
    206 are decoded into the Updater; the weights end byte-identical."""
    old, new = models(12, size=7000)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)
    cut_once: list[bool] = []

    def policy(index: int, request: bytes) -> Action:
        if b"/v1/payloads/" in request and not cut_once:
            cut_once.append(True)
            return Action(rechunk=300, cut_after=2500)
        return Action(rechunk=97)

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path)[0]
    assert (r.status, r["attempts"], r["resumes"], r.weights) == (OK, 2, 1, new), r.fields
    heads = [e.response_head for e in px.exchanges]
    assert all(b"Transfer-Encoding: chunked" in h for h in heads) and not any(
        b"Content-Length" in h for h in heads if b" 404 " not in h and b" 405 " not in h
    ), heads


def test_no_update_unless_newer_and_same_model(built: Built, nginx: Nginx, tmp_path: Path) -> None:
    old, new = models(6)
    with Proxy(nginx.port, passthrough) as px:
        static_tree(nginx.root, "dev-old", full_payload(new, 3), 3)
        r = run_device(built, px.port, old, 3, tmp_path / "same", device="dev-old")[0]
        assert (r.status, r.weights) == (NO_UPDATE, old)
        r = run_device(built, px.port, old, 9, tmp_path / "older", device="dev-old")[0]
        assert (r.status, r.weights) == (NO_UPDATE, old)
        static_tree(nginx.root, "dev-fp", full_payload(new, 3, fp=OTHER_FP), 3, fp=OTHER_FP)
        r = run_device(built, px.port, old, 1, tmp_path / "fp", device="dev-fp")[0]
        assert (r.status, r.weights) == (NO_UPDATE, old)
        static_tree(nginx.root, "dev-delta", full_payload(new, 3), 3, base_version=2)
        r = run_device(built, px.port, old, 1, tmp_path / "delta", device="dev-delta")[0]
        assert (r.status, r.weights) == (NO_UPDATE, old)
        assert not px.payload_requests()
        r = run_device(built, px.port, old, 1, tmp_path / "none", device="dev-unknown")[0]
        assert (r.status, r.name, r.fields["code"]) == (HTTP_STATUS, "HttpStatus", "404")
        elsewhere = tmp_path / "elsewhere"
        sha = static_tree(nginx.root, "dev-abs", full_payload(new, 3), 3)
        manifest = nginx.root / "v1" / "devices" / "dev-abs" / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"/v1/', '"http://cdn.example/v1/'))
        r = run_device(built, px.port, old, 1, elsewhere, device="dev-abs")[0]
        assert (r.status, r.name, r.weights) == (-108, "BadManifest", old), sha
        assert not px.payload_requests()


def test_store_backed_update(built: Built, nginx: Nginx, tmp_path: Path) -> None:
    """The Store path: the payload is logged while it streams (and across the
    resume), committed by finish(), and loads back as the new weights."""
    old, new = models(7)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)

    def policy(index: int, request: bytes) -> Action:
        first_payload = b"/v1/payloads/" in request and b"Range:" not in request
        return Action(cut_after=2000) if first_payload else Action()

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path, "--store")[0]
    assert (r.status, r["resumes"], r.fields["store_version"]) == (OK, 1, "2"), r.fields
    assert (r.fields["store_load"], r.fields["store_matches"], r.weights) == ("Ok", "1", new)


def test_gives_up_after_max_attempts(built: Built, nginx: Nginx, tmp_path: Path) -> None:
    old, new = models(8)
    payload = full_payload(new, 2)
    static_tree(nginx.root, DEVICE, payload, 2)

    def policy(index: int, request: bytes) -> Action:
        return Action(cut_after=400) if b"/v1/payloads/" in request else Action()

    with Proxy(nginx.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path, "--attempts", "3")[0]
    assert (r.status, r.name, r["attempts"], r["intact"]) == (HTTP_CLOSED, "HttpClosed", 3, 1)
    assert r.fields["updater"] == "Timeout"  # the Updater's own record of the lost link
    assert r.weights == old and len(px.payload_requests()) == 3
    report = json.loads(px.exchanges[-1].request.split(b"\r\n\r\n")[1])
    assert report["event"] == "download" and report["status_name"] == "HttpClosed"


def test_an_updater_busy_with_another_transfer_is_left_alone(
    built: Built, nginx: Nginx, tmp_path: Path
) -> None:
    old, new = models(14)
    static_tree(nginx.root, DEVICE, full_payload(new, 2), 2)
    with Proxy(nginx.port, passthrough) as px:
        r = run_device(built, px.port, old, 1, tmp_path, "--busy")[0]
    assert (r.status, r.name, r["connects"], r["state"]) == (-22, "BadState", 0, 1), r.fields
    assert r.weights == old and not px.exchanges


def test_invalid_device_id_is_refused_before_any_request(built: Built, tmp_path: Path) -> None:
    r = run_device(built, 9, b"\0" * 100, 1, tmp_path, device=".hidden")[0]
    assert (r.status, r.name) == (HTTP_INVALID_ARGUMENT, "HttpInvalidArgument")


# --------------------------------------------------------------------------
# 3. modelota serve (the fleet server) and modelota export


@dataclass
class Fleet:
    port: int
    data: Path
    client: AdminClient

    def admin(self, method: str, path: str, body: bytes | dict[str, object] | None = None) -> Any:
        if isinstance(body, dict):
            return self.client.call(method, path, json.dumps(body).encode(), "application/json")
        return self.client.call(method, path, body, "application/octet-stream")

    def register(self, device: str, body: dict[str, object] | None = None) -> str:
        """Registers a new device; its secret (hex) as `fleet register` prints it."""
        return str(self.admin("PUT", f"/admin/devices/{device}", body or {})["secret"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    data = tmp_path_factory.mktemp("fleet")
    proc, url = spawn(data, TOKEN)
    try:
        yield Fleet(int(url.rsplit(":", 1)[1]), data, AdminClient(url, TOKEN))
    finally:
        stop(proc)


def test_fleet_server_update_resume_report(built: Built, fleet: Fleet, tmp_path: Path) -> None:
    old, new = models(9, size=8000)
    v2 = full_payload(new, 2, chunk=600)
    rec = fleet.admin("POST", "/admin/payloads?line=pull-line", v2)
    assert isinstance(rec, dict) and rec["sha256"] == hashlib.sha256(v2).hexdigest()
    dev = "dev-pull-1"
    key = fleet.register(dev, {"group": "pull-g", "fingerprint": FP.hex()})
    fleet.admin("PUT", f"/admin/assignments/device/{dev}", {"line": "pull-line"})

    def policy(index: int, request: bytes) -> Action:
        first_payload = b"/v1/payloads/" in request and b"Range:" not in request
        return Action(cut_after=3000) if first_payload else Action()

    with Proxy(fleet.port, policy) as px:
        r = run_device(built, px.port, old, 1, tmp_path / "a", "--secret", key, device=dev)[0]
        assert (r.status, r["version"], r["resumes"], r.weights) == (OK, 2, 1, new), r.fields
        second = px.payload_requests()[1]
        assert f'If-Range: "{rec["sha256"]}"'.encode() in second.request
        assert second.response_head.startswith(b"HTTP/1.1 206 ")
        post = next(e for e in px.exchanges if e.request.startswith(b"POST "))
        assert post.response_head.startswith(b"HTTP/1.1 204 "), post.response_head

        again = run_device(built, px.port, new, 2, tmp_path / "b", "--secret", key,
                           device=dev)[0]  # fmt: skip
        assert (again.status, again.fields["code"]) == (NO_UPDATE, "204")
        # every request carried the device's signature
        assert all(b"\r\nAuthorization: MOTA id=" in e.request for e in px.exchanges)

    reports = fleet.admin("GET", f"/admin/reports?device={dev}&limit=5")
    assert isinstance(reports, list) and reports, reports
    latest = reports[0]
    assert (latest["event"], latest["status"], latest["status_name"], latest["version"]) == (
        "apply",
        0,
        "Ok",
        2,
    )


def test_fleet_server_refuses_another_model(built: Built, fleet: Fleet, tmp_path: Path) -> None:
    old, new = models(10)
    fleet.admin("POST", "/admin/payloads?line=other-line", full_payload(new, 2, fp=OTHER_FP))
    dev = "dev-pull-2"
    key = fleet.register(dev)
    fleet.admin("PUT", f"/admin/assignments/device/{dev}", {"line": "other-line"})
    r = run_device(built, fleet.port, old, 1, tmp_path, "--secret", key, device=dev)[0]
    assert (r.status, r.fields["code"], r.weights) == (HTTP_STATUS, "409", old)


def test_fleet_server_sends_a_delta_to_a_device_on_its_base(
    built: Built, fleet: Fleet, tmp_path: Path
) -> None:
    """The server answers a device on v2 with the v2->v3 delta (a manifest
    with base_version 2) and a device on v1 with the full v3; both end with
    exactly the v3 weights."""
    w1, w2 = models(13)
    w3 = bytearray(w2)
    w3[100:140] = bytes(40)
    w3 = bytes(w3)
    full3 = full_payload(w3, 3)
    delta = pack(w3, fingerprint=FP, version=3, chunk_size=512, base=w2, base_version=2).encode()
    assert len(delta) < len(full3)
    fleet.admin("POST", "/admin/payloads?line=delta-line", full_payload(w2, 2))
    fleet.admin("POST", "/admin/payloads?line=delta-line", full3)
    fleet.admin("POST", "/admin/payloads?line=delta-line", delta)
    keys = {dev: fleet.register(dev, {"group": "delta-g"})
            for dev in ("dev-delta-on-2", "dev-delta-on-1")}  # fmt: skip
    fleet.admin("PUT", "/admin/assignments/group/delta-g", {"line": "delta-line"})
    on2 = run_device(built, fleet.port, w2, 2, tmp_path / "on2", "--secret",
                     keys["dev-delta-on-2"], device="dev-delta-on-2")[0]  # fmt: skip
    assert (on2.status, on2["version"], on2["fed"], on2.weights) == (OK, 3, len(delta), w3)
    on1 = run_device(built, fleet.port, w1, 1, tmp_path / "on1", "--secret",
                     keys["dev-delta-on-1"], device="dev-delta-on-1")[0]  # fmt: skip
    assert (on1.status, on1["version"], on1["fed"], on1.weights) == (OK, 3, len(full3), w3)


def test_exported_tree_served_by_nginx(
    built: Built, fleet: Fleet, nginx: Nginx, tmp_path: Path
) -> None:
    """`modelota export` writes the tree; nginx serves it; the device updates."""
    old, new = models(11)
    fleet.admin("POST", "/admin/payloads?line=export-line", full_payload(new, 4))
    dev = "dev-pull-export"
    key = fleet.register(dev)
    fleet.admin("PUT", f"/admin/assignments/device/{dev}", {"line": "export-line"})
    proc = modelota("export", nginx.root, "--data", fleet.data)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the static tree is public: a signed device and an unsigned one both read it
    for extra in (("--secret", key), ()):
        r = run_device(built, nginx.port, old, 1, tmp_path, *extra, device=dev)[0]
        assert (r.status, r["version"], r.weights) == (OK, 4, new), r.fields


def test_fleet_server_signatures_clock_sync_and_refusals(
    built: Built, fleet: Fleet, tmp_path: Path
) -> None:
    """A device without a clock sends its first request with ts 0, gets a
    401 carrying the server's time signed for that request (tsm), checks it,
    and signs the same request again: the update goes through. A forged tsm
    is not believed; a wrong or missing secret gets HttpUnauthorized and
    changes nothing on the server."""
    old, new = models(14)
    fleet.admin("POST", "/admin/payloads?line=auth-line", full_payload(new, 2))
    dev = "dev-auth"
    key = fleet.register(dev)
    fleet.admin("PUT", f"/admin/assignments/device/{dev}", {"line": "auth-line"})
    before = fleet.admin("GET", f"/admin/reports?device={dev}")

    def refusals(px: Proxy) -> list[bytes]:
        return [e.response_head for e in px.exchanges
                if e.response_head.startswith(b"HTTP/1.1 401")]  # fmt: skip

    # a wrong secret, none at all, a forged server time: nothing happens
    forged = Action(edit=(b'MOTA ts="1', b'MOTA ts="2'))  # another time: its tsm cannot match
    cases = [
        (("--secret", "11" * 32), passthrough),
        ((), passthrough),
        (("--secret", key), lambda i, req: forged),
    ]
    for extra, policy in cases:
        with Proxy(fleet.port, policy) as px:
            r = run_device(built, px.port, old, 1, tmp_path / "x", *extra, device=dev)[0]
        assert (r.status, r.name, r.fields["code"]) == (-112, "HttpUnauthorized", "401")
        assert (r.weights, r["clock"]) == (old, 0)
        assert not px.payload_requests() and len(px.exchanges) == 1
    assert fleet.admin("GET", f"/admin/reports?device={dev}") == before
    # no clock: one 401 teaches the time, the rest is signed with it
    with Proxy(fleet.port, passthrough) as px:
        r = run_device(built, px.port, old, 1, tmp_path / "a", "--secret", key, device=dev)[0]
    assert (r.status, r["version"], r.weights) == (OK, 2, new), r.fields
    assert abs(r["clock"] - time.time()) < 60 and r["signed"] == 4  # check x2, payload, report
    assert len(refusals(px)) == 1 and b'WWW-Authenticate: MOTA ts="' in refusals(px)[0]
    assert fleet.admin("GET", f"/admin/reports?device={dev}")[0]["status_name"] == "Ok"
    # a device with a clock signs right away: no 401
    fleet.admin("POST", "/admin/payloads?line=auth-line", full_payload(old, 3))
    with Proxy(fleet.port, passthrough) as px:
        r = run_device(built, px.port, new, 2, tmp_path / "b", "--secret", key,
                       "--clock", str(int(time.time())), device=dev)[0]  # fmt: skip
    assert (r.status, r["version"], r.weights) == (OK, 3, old), r.fields
    assert refusals(px) == [] and r["signed"] == 3


# --------------------------------------------------------------------------
# 3b. model-quality summaries: modelota_http_post_quality against the server


@dataclass
class Posted(Outcome):
    json: str  # the body the device sent


def post_quality(built: Built, port: int, *extra: str, device: str = DEVICE) -> Posted:
    """pull_main quality: the real accumulator's summary (or --json's bytes)
    through modelota_http_post_quality."""
    cmd = [str(built.pull), "quality", "--host", "127.0.0.1", "--port", str(port),
           "--id", device, *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    result = next(ln for ln in lines if ln.startswith("result "))
    f = dict(kv.split("=", 1) for kv in result.split()[1:])
    body = next(ln for ln in lines if ln.startswith("json "))[5:]
    return Posted(int(f["status"]), f["name"], f, body)


# (class, confidence, label or -1): binary fractions, so each confidence is
# an exact number of basis points in float32 as in Python
INFERENCES = [(0, 0.75, 0), (2, 0.5, -1), (2, 0.875, 2), (1, 0.625, 0), (0, 1.0, -1),
              (3, 0.25, 3), (2, 0.5, -1), (0, 0.9375, 1), (2, 0.75, 2)]  # fmt: skip


def expected_summary(version: int, classes: int = 4) -> dict[str, Any]:
    """What the device must send for INFERENCES, computed here from the
    definition in docs/FLEET.md (not by the C++)."""
    n = len(INFERENCES)
    counts = [sum(1 for c, _, _ in INFERENCES if c == k) for k in range(classes)]
    conf_sum = sum(round(conf * 10000) for _, conf, _ in INFERENCES)
    labelled = sum(1 for _, _, lab in INFERENCES if lab >= 0)
    correct = sum(1 for c, _, lab in INFERENCES if lab == c)
    conf_bp = (conf_sum + n // 2) // n
    return {"format": 1, "version": version, "n": n, "counts": counts, "conf_bp": conf_bp,
            "labelled": labelled, "correct": correct}  # fmt: skip


def infer_args(version: int) -> list[str]:
    spec = ",".join(f"{c}:{conf}:{lab}" for c, conf, lab in INFERENCES)
    return ["--infer", spec, "--classes", "4", "--version", str(version)]


def quality_of(fleet: Fleet, line: str) -> list[dict[str, Any]]:
    rows = fleet.admin("GET", "/admin/quality")
    assert isinstance(rows, list), rows
    return [r for r in rows if r["line"] == line]


def test_a_signed_quality_summary_reaches_the_server(
    built: Built, fleet: Fleet, tmp_path: Path
) -> None:
    """The C core's accumulator summarises known inferences; the device POSTs
    the summary signed (body hash in the signature); /admin/quality then
    shows exactly those numbers for the device's line and version. Without a
    clock the first POST gets the server's signed time in a 401 and the
    second goes through; with a clock one request is enough."""
    old, _ = models(15)
    fleet.admin("POST", "/admin/payloads?line=quality-line", full_payload(old, 3))
    dev = "dev-quality"
    key = fleet.register(dev)
    fleet.admin("PUT", f"/admin/assignments/device/{dev}", {"line": "quality-line"})
    want = expected_summary(3)
    with Proxy(fleet.port, passthrough) as px:
        r = post_quality(built, px.port, "--secret", key, *infer_args(3), device=dev)
    assert (r.status, r.name, r.fields["code"]) == (OK, "Ok", "204"), r.fields
    assert json.loads(r.json) == want and r["len"] == len(r.json)
    assert (r["signed"], r["connects"]) == (2, 2) and abs(r["clock"] - time.time()) < 60
    assert [e.response_head.split(b" ")[1] for e in px.exchanges] == [b"401", b"204"]
    sent = px.exchanges[-1].request
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(f"POST /v1/devices/{dev}/quality HTTP/1.1\r\n".encode())
    assert body == r.json.encode()
    assert f'hash="{hashlib.sha256(body).hexdigest()}"'.encode() in head
    assert b"Content-Type: application/json" in head
    rows = quality_of(fleet, "quality-line")
    assert len(rows) == 1, rows
    got = rows[0]
    assert (got["version"], got["devices"], got["n"], got["counts"]) == (
        3, 1, want["n"], want["counts"])  # fmt: skip
    assert got["conf"] == want["conf_bp"] / 10000
    assert (got["labelled"], got["correct"]) == (want["labelled"], want["correct"])
    # a device with a clock: one signed request, no 401
    with Proxy(fleet.port, passthrough) as px:
        r = post_quality(built, px.port, "--secret", key, "--clock", str(int(time.time())),
                         *infer_args(3), device=dev)  # fmt: skip
    assert (r.status, r["signed"], r["connects"]) == (OK, 1, 1), r.fields
    assert [e.response_head.split(b" ")[1] for e in px.exchanges] == [b"204"]
    assert quality_of(fleet, "quality-line")[0]["n"] == want["n"]  # the latest, not added up


def test_quality_summaries_the_server_refuses_store_nothing(
    built: Built, fleet: Fleet, tmp_path: Path
) -> None:
    """A wrong secret, no secret, a forged server time: HttpUnauthorized
    (401); a summary whose counts do not add up: HttpStatus with 400; a body
    over MODELOTA_HTTP_BODY_MAX: HttpInvalidArgument before any connection.
    /admin/quality is the same after all of them."""
    old, _ = models(16)
    fleet.admin("POST", "/admin/payloads?line=quality-refused", full_payload(old, 2))
    dev = "dev-quality-refused"
    key = fleet.register(dev)
    fleet.admin("PUT", f"/admin/assignments/device/{dev}", {"line": "quality-refused"})
    before = fleet.admin("GET", "/admin/quality")
    forged = Action(edit=(b'MOTA ts="1', b'MOTA ts="2'))
    for extra, policy in [
        (("--secret", "33" * 32), passthrough),
        ((), passthrough),
        (("--secret", key), lambda i, req: forged),
    ]:
        with Proxy(fleet.port, policy) as px:
            r = post_quality(built, px.port, *extra, *infer_args(2), device=dev)
        assert (r.status, r.name, r.fields["code"]) == (-112, "HttpUnauthorized", "401")
        assert r["connects"] == 1 and len(px.exchanges) == 1
    bad = json.dumps({**expected_summary(2), "n": 10}, separators=(",", ":"))
    r = post_quality(built, fleet.port, "--secret", key, "--clock", str(int(time.time())),
                     "--json", bad, device=dev)  # fmt: skip
    assert (r.status, r.name, r.fields["code"]) == (HTTP_STATUS, "HttpStatus", "400")
    big = post_quality(built, fleet.port, "--secret", key, "--json", "{" + " " * 4095 + "}",
                       device=dev)  # fmt: skip
    assert (big.status, big.name, big["connects"]) == (HTTP_INVALID_ARGUMENT,
                                                       "HttpInvalidArgument", 0)  # fmt: skip
    assert fleet.admin("GET", "/admin/quality") == before


def one_shot_server(answer: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """Accepts one connection, reads the request, sends `answer` (None:
    closes without a byte)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            read_request(conn)
            if answer is not None:
                conn.sendall(answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


@pytest.mark.parametrize(
    ("answer", "status", "name", "code"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", HTTP_STATUS,
         "HttpStatus", 503),
        (b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\noops", HTTP_STATUS,
         "HttpStatus", 500),
        (None, HTTP_CLOSED, "HttpClosed", 0),
        (b"HTTP/1.1 204 No", HTTP_CLOSED, "HttpClosed", 0),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", -104, "HttpBadResponse", 0),
    ],
    ids=["503", "500", "closed", "cut-status-line", "not-http"],
)
def test_a_failing_server_gives_a_clear_quality_status(
    built: Built, answer: bytes | None, status: int, name: str, code: int
) -> None:
    srv, t = one_shot_server(answer)
    r = post_quality(built, srv.getsockname()[1], "--secret", "44" * 32, *infer_args(1))
    t.join(timeout=30)
    srv.close()
    assert (r.status, r.name, r["code"], r["connects"]) == (status, name, code, 1), r.fields


def test_no_server_listening_is_http_connect(built: Built) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = post_quality(built, port, "--secret", "44" * 32, *infer_args(1))
    assert (r.status, r.name, r["code"]) == (-100, "HttpConnect", 0), r.fields


# --------------------------------------------------------------------------
# 4. cross builds: the pull code for AVR and Cortex-M4, strict flags


CROSS = {
    "avr": ("avr-g++", "avr-size", ["-mmcu=atmega2560"]),
    "cortex-m4": ("arm-none-eabi-g++", "arm-none-eabi-size", ["-mcpu=cortex-m4", "-mthumb"]),
}


def _cross(target: str, tmp: Path) -> str:
    cxx, size, flags = CROSS[target]
    if shutil.which(cxx) is None:
        return f"{target}: {cxx} not installed, skipped"
    probe = tmp / f"probe_{target}.cpp"
    probe.write_text(
        '#include "modelota/http.h"\nmodelota_http probe_http;\n'
        "modelota_http_parser probe_parser;\nmodelota_manifest probe_manifest;\n"
    )
    objs = []
    for src in (FIRMWARE / "modelota" / "http.cpp", probe):
        obj = tmp / f"{src.stem}_{target}.o"
        cmd = [
            cxx,
            *STRICT,
            "-fno-exceptions",
            "-fno-rtti",
            "-Os",
            *flags,
            "-I",
            str(FIRMWARE),
            "-c",
            str(src),
            "-o",
            str(obj),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stderr}"
        objs.append(obj)
    text = subprocess.run(
        [size, "-A", str(objs[0])], capture_output=True, text=True, check=True
    ).stdout
    code = sum(
        int(p[1])
        for p in (ln.split() for ln in text.splitlines())
        if len(p) >= 2 and p[0].startswith((".text", ".rodata", ".progmem"))
    )
    nm = shutil.which(size.replace("size", "nm"))
    assert nm is not None
    syms = subprocess.run(
        [nm, "-S", str(objs[1])], capture_output=True, text=True, check=True
    ).stdout
    sizes = {p[-1]: int(p[1], 16) for p in (ln.split() for ln in syms.splitlines()) if len(p) == 4}
    return (
        f"{target}: http.cpp code {code} bytes; sizeof modelota_http "
        f"{sizes['probe_http']}, parser {sizes['probe_parser']}, "
        f"manifest {sizes['probe_manifest']}"
    )


def test_cross_compiles_for_avr_and_cortex_m4(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as ex:
        lines = list(ex.map(lambda t: _cross(t, tmp_path), sorted(CROSS)))
    print("\n" + "\n".join(lines))
    if all("skipped" in ln for ln in lines):
        pytest.skip("no cross compiler installed")
    for ln in lines:
        m = re.search(r"sizeof modelota_http (\d+)", ln)
        assert m is None or int(m[1]) <= 600, ln


# --------------------------------------------------------------------------
# 5. examples/WiFiPull run on the host


SKETCH = ROOT / "examples" / "WiFiPull" / "WiFiPull.ino"
WIFI_SHIM = ROOT / "tests" / "arduino_shims" / "WiFi" / "src"
ARDUINO_HOST = ROOT / "tests" / "arduino_host"
SKETCH_MAC = "24:6F:28:00:00:01"


def sketch_model() -> tuple[bytes, bytes, int]:
    """The factory weights (the array's initialiser, zero-filled), the
    fingerprint and the factory version, read from the sketch's source."""
    text = SKETCH.read_text()
    m = re.search(r"kFactoryWeights\[(\d+)\](?: MODELOTA_FLASH)? = \{([^}]*)\}", text)
    fp = re.search(r"MODEL_FINGERPRINT\[16\] = \{([^}]*)\}", text)
    ver = re.search(r"kFactoryVersion = (\d+);", text)
    assert m and fp and ver, "the sketch's model arrays moved"
    init = bytes(int(x, 16) for x in m[2].replace(",", " ").split())
    weights = init + bytes(int(m[1]) - len(init))
    return weights, bytes(int(x, 16) for x in fp[1].replace(",", " ").split()), int(ver[1])


@pytest.fixture(scope="module")
def wifipull(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/WiFiPull built with host g++ (ASan + UBSan) against
    declaration-compatible stand-ins (NOT the ESP32 core, which cannot be
    installed here): the WiFi shim's headers with a POSIX-socket WiFiClient,
    tests/arduino_host's Arduino.h and a host Client.h. Its FLEET_PORT and
    FLEET_SECRET come from the environment, so one build serves each test."""
    print(
        "\nWiFiPull is built with HOST g++ against ESP32-API STAND-INS "
        "(tests/arduino_shims/WiFi, tests/http_host/arduino), not the ESP32 core"
    )
    assert GXX is not None
    exe = tmp_path_factory.mktemp("wifipull") / "wifipull"
    inc = [ARDUINO_HOST, HOST / "arduino", WIFI_SHIM, ROOT / "src", FIRMWARE]
    cmd = [
        GXX, "-std=gnu++11", "-Wall", "-Wextra", "-Werror", "-g", "-O1", *SANITIZE,
        *(f"-I{d}" for d in inc), '-DFLEET_HOST="127.0.0.1"',
        '-DFLEET_PORT=atoi(getenv("MODELOTA_FLEET_PORT"))',
        '-DFLEET_SECRET=getenv("MODELOTA_FLEET_SECRET")', "-DQUALITY_WINDOW=5",
        "-DINFER_MS=0",
        "-include", "Arduino.h", "-include", "stdlib.h",
        "-include", str(HOST / "arduino" / "host_sketch.h"),
        "-x", "c++", str(SKETCH), "-x", "none", str(HOST / "sketch_main.cpp"),
        str(HOST / "wifi_posix.cpp"), *(str(ROOT / "src" / n) for n in
        ("ModelOTA.cpp", "ModelOTAHttp.cpp", "ModelOTAQuality.cpp", "modelota_store.cpp")),
        "-o", str(exe),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout + proc.stderr
    return exe


def run_sketch(exe: Path, port: int, out: Path, secret: str | None = None, loops: int = 1,
               mac: str = SKETCH_MAC) -> str:  # fmt: skip
    env = {**os.environ, "MODELOTA_HOST_MAC": mac, "MODELOTA_FLEET_PORT": str(port)}
    if secret is not None:
        env["MODELOTA_FLEET_SECRET"] = secret
    run = subprocess.run([str(exe), str(out), str(loops)], capture_output=True, text=True,
                         timeout=60, env=env, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    print(run.stdout)
    return run.stdout


def cut_first_download(index: int, request: bytes) -> Action:
    first_payload = b"/v1/payloads/" in request and b"Range:" not in request
    return Action(cut_after=700) if first_payload else Action()


def test_wifi_pull_sketch_runs_on_the_host(nginx: Nginx, wifipull: Path, tmp_path: Path) -> None:
    """setup() and one loop() run against nginx through a proxy that cuts
    the download once: the sketch resumes, prints Ok, and its weights array
    ends byte-identical to the new model."""
    factory, fp, version = sketch_model()
    new = bytes((b + 7 * i) & 0xFF for i, b in enumerate(factory))
    payload = full_payload(new, version + 1, fp=fp, chunk=256)
    static_tree(nginx.root, SKETCH_MAC, payload, version + 1, fp=fp)
    out = tmp_path / "weights.out"
    with Proxy(nginx.port, cut_first_download) as px:
        stdout = run_sketch(wifipull, px.port, out)
    assert f"device id {SKETCH_MAC}" in stdout
    assert "fleet pull: Ok (HTTP 206)" in stdout, stdout
    assert f"model version {version + 1}" in stdout
    assert out.read_bytes() == new
    assert len(px.payload_requests()) == 2


def sketch_update(fleet: Fleet, line: str, mac: str, step: int) -> tuple[bytes, bytes, int, str]:
    """Uploads new weights for the sketch's model (version + 1) to `line`,
    registers `mac` and assigns it the line: (factory, new, version, secret)."""
    factory, fp, version = sketch_model()
    new = bytes((b + step * i) & 0xFF for i, b in enumerate(factory))
    fleet.admin("POST", f"/admin/payloads?line={line}",
                full_payload(new, version + 1, fp=fp, chunk=256))  # fmt: skip
    key = fleet.register(mac)
    fleet.admin("PUT", f"/admin/assignments/device/{mac}", {"line": line})
    return factory, new, version, key


def test_wifi_pull_sketch_signs_its_requests_to_the_fleet_server(
    fleet: Fleet, wifipull: Path, tmp_path: Path
) -> None:
    """The sketch with the secret `fleet register` printed (FLEET_SECRET),
    against `modelota serve` through a proxy that cuts the download once:
    its first request (no clock yet) gets the signed server time, every
    request is signed, the download resumes, the server records the report.
    With another secret the server refuses it and nothing changes."""
    factory, new, version, key = sketch_update(fleet, "sketch-line", SKETCH_MAC, 11)
    out = tmp_path / "weights.out"
    with Proxy(fleet.port, passthrough) as px:
        stdout = run_sketch(wifipull, px.port, out, "22" * 32)
    assert "fleet pull: HttpUnauthorized (HTTP 401)" in stdout, stdout
    assert out.read_bytes() == factory and not px.payload_requests()
    with Proxy(fleet.port, cut_first_download) as px:
        stdout = run_sketch(wifipull, px.port, out, key)
    assert "fleet pull: Ok (HTTP 206)" in stdout, stdout
    assert out.read_bytes() == new
    assert all(b"\r\nAuthorization: MOTA id=" in e.request for e in px.exchanges)
    assert [e.response_head.split(b" ")[1] for e in px.exchanges] == [
        b"401", b"200", b"200", b"206", b"204"  # time, check, payload (cut), rest, report
    ]
    report = fleet.admin("GET", f"/admin/reports?device={SKETCH_MAC}")[0]
    assert (report["status_name"], report["version"]) == ("Ok", version + 1)


def test_wifi_pull_sketch_posts_its_quality_summary(
    fleet: Fleet, wifipull: Path, tmp_path: Path
) -> None:
    """The sketch (built with QUALITY_WINDOW 5, an inference per loop) runs
    six loops: the first updates it to the new version, which restarts the
    counts, and the sixth completes a window of five inferences of the new
    model: ModelOTAHttp::postQuality sends it, signed, and /admin/quality
    shows the numbers the sketch printed, under the new version. With
    another secret it is refused (401) and nothing is stored."""
    mac = "24:6F:28:00:00:02"
    _, _, version, key = sketch_update(fleet, "sketch-quality", mac, 13)
    with Proxy(fleet.port, passthrough) as px:
        stdout = run_sketch(wifipull, px.port, tmp_path / "w.out", key, loops=6, mac=mac)
    assert "fleet pull: Ok (HTTP 200)" in stdout, stdout
    m = re.search(r"^quality summary: Ok \(HTTP 204\) (\{.*\})$", stdout, re.M)
    assert m is not None, stdout
    sent = json.loads(m[1])
    assert (sent["version"], sent["n"], sum(sent["counts"])) == (version + 1, 5, 5), sent
    post = px.exchanges[-1]
    assert post.request.startswith(f"POST /v1/devices/{mac}/quality ".encode())
    assert b"\r\nAuthorization: MOTA id=" in post.request
    assert post.request.endswith(m[1].encode())
    rows = quality_of(fleet, "sketch-quality")
    assert len(rows) == 1, rows
    assert (rows[0]["version"], rows[0]["n"], rows[0]["counts"]) == (
        version + 1, sent["n"], sent["counts"])  # fmt: skip
    assert rows[0]["conf"] == sent["conf_bp"] / 10000
    before = fleet.admin("GET", "/admin/quality")
    stdout = run_sketch(wifipull, fleet.port, tmp_path / "x.out", "55" * 32, loops=5, mac=mac)
    assert "quality summary: HttpUnauthorized (HTTP 401) {" in stdout, stdout
    assert fleet.admin("GET", "/admin/quality") == before


def test_arduino_glue_builds_with_and_without_a_client_header(tmp_path: Path) -> None:
    """A sketch including ModelOTAHttp.h gets class ModelOTAHttp when Client.h
    exists (strict flags) and still compiles, without the class, on a core
    with neither Client.h nor api/Client.h. src/ModelOTAHttp.cpp, which the
    Arduino builder compiles for EVERY ModelOTA sketch, never includes
    Client.h (on AVR its IPAddress global would cost every sketch 358 bytes
    of flash): here a Client.h that is an #error proves it."""
    assert GXX is not None
    probe = tmp_path / "probe.cpp"
    probe.write_text(
        "#include <ModelOTAHttp.h>\n"
        "#if MODELOTA_HAVE_CLIENT\n"
        "int probe_pull(Client& c, modelota_updater* u) {\n"
        '    ModelOTAHttp fleet(c, "h", 80, "id");\n'
        "    return fleet.pull(u);\n"
        "}\n"
        "#endif\n"
    )
    poison = tmp_path / "poison"
    poison.mkdir()
    (poison / "Client.h").write_text('#error "ModelOTAHttp.cpp must not include Client.h"\n')
    base = [
        GXX,
        *STRICT,
        "-c",
        "-I",
        str(ARDUINO_HOST),
        "-I",
        str(ROOT / "src"),
        "-include",
        "Arduino.h",
        "-include",
        str(HOST / "arduino" / "host_sketch.h"),
    ]
    builds = {
        "with": [*base, "-I", str(HOST / "arduino"), str(probe)],
        "without": [*base, str(probe)],
        "library unit": [*base, "-I", str(poison), str(ROOT / "src" / "ModelOTAHttp.cpp")],
    }  # fmt: skip
    symbols = {}
    for name, cmd in builds.items():
        obj = tmp_path / f"{name.replace(' ', '_')}.o"
        proc = subprocess.run([*cmd, "-o", str(obj)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{name}: {' '.join(cmd)}\n{proc.stderr}"
        nm = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True, check=True)
        symbols[name] = nm.stdout
    assert "ModelOTAHttp::readCb(" in symbols["with"], symbols["with"]
    assert "ModelOTAHttp" not in symbols["without"]
    assert "modelota_http_pull" in symbols["library unit"]
    assert "ModelOTAHttp" not in symbols["library unit"]


def test_a_server_dripping_headers_is_cut_off_after_one_timeout(
    built: Built, tmp_path: Path
) -> None:
    """Silence is bounded per read, and the whole head of a response by the
    same timeout: one header byte every 50 ms never goes silent, yet the
    device gives up after --timeout ms (HttpTimeout), not after reading 4 KiB
    of drips (MODELOTA_HTTP_HEAD_MAX, which would end in another status after
    200 s). Counted in bytes the server got to send, not in seconds."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    stop_event = threading.Event()
    dripped = [0]

    def drip() -> None:
        conn, _ = srv.accept()
        with conn:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop_event.wait(0.05):
                try:
                    conn.sendall(b"X")
                except OSError:
                    return
                dripped[0] += 1

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    r = run_device(built, srv.getsockname()[1], b"\0" * 200, 1, tmp_path, "--timeout", "600")[0]
    stop_event.set()
    t.join(timeout=10)
    srv.close()
    assert (r.status, r.name) == (-102, "HttpTimeout"), r.fields
    assert 0 < dripped[0] < 4096 // 4, dripped[0]  # far from the head limit
