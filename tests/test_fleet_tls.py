"""``modelota serve`` behind nginx with TLS, as docs/FLEET.md shows it, and the
admin client and the simulated device talking to it through ``https://``.

The nginx server block and the client commands are the very blocks of
docs/FLEET.md ("TLS: modelota serve behind nginx"), with the placeholders
(certificate paths, ports, host name, files) replaced by the ones made here:
a CA and a server certificate generated for this run, a real ``modelota
serve`` process on loopback, nginx (Debian's nginx-light) in front of it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shlex
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docblocks import marked_tested_by

from fleet_util import TOKEN, nginx_server, stop
from modelota import pack
from modelota.fleet.server import spawn
from modelota.models.raw import raw_fingerprint
from payloads import modelota

PLACEHOLDER = "fleet.example.com"


def _write_pki(d: Path) -> tuple[Path, Path, Path, Path]:
    """A private CA, a certificate for localhost/127.0.0.1 signed by it, and a
    second CA nobody trusts. Returns (ca.pem, server.crt, server.key, other-ca.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        return key, cert

    ca_key, ca_cert = ca("ModelOTA test CA")
    _, other_cert = ca("Someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        ]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    paths = d / "ca.pem", d / "fleet.crt", d / "fleet.key", d / "other-ca.pem"
    paths[0].write_bytes(ca_cert.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[3].write_bytes(other_cert.public_bytes(pem))
    return paths


@dataclass
class Tls:
    url: str  # https://localhost:PORT, nginx in front of modelota serve
    plain: str  # the server itself, http://127.0.0.1:PORT
    ca: Path
    other_ca: Path
    d: Path
    access: object  # Nginx (its access log)


def _doc_blocks() -> tuple[str, str]:
    found = marked_tested_by("tests/test_fleet_tls.py")
    nginx = [b for b in found if b.lang == "nginx"]
    sh = [b for b in found if b.lang == "sh"]
    assert len(nginx) == 1 and len(sh) == 1, [b.where for b in found]
    assert nginx[0].page == "docs/FLEET.md" and sh[0].page == "docs/FLEET.md"
    return nginx[0].text, sh[0].text


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    pytest.importorskip("cryptography", reason="pip install -e .[test] brings cryptography")
    d = tmp_path_factory.mktemp("tls")
    ca, crt, key, other = _write_pki(d)
    proc, plain = spawn(d / "data", TOKEN)
    server_block, _ = _doc_blocks()
    conf = server_block
    for doc, real in (
        ("listen 443 ssl;", "listen 127.0.0.1:{port} ssl;"),
        ("/etc/ssl/modelota/fleet.crt", str(crt)),
        ("/etc/ssl/modelota/fleet.key", str(key)),
        ("http://127.0.0.1:8080", plain),
    ):
        assert doc in conf, f"docs/FLEET.md's nginx block no longer has {doc!r}"
        conf = conf.replace(doc, real)
    try:
        with nginx_server(d / "nginx", d, server=conf) as ng:
            yield Tls(f"https://localhost:{ng.port}", plain, ca, other, d, ng)
    finally:
        stop(proc)


def test_docs_commands_run_through_tls(tls: Tls) -> None:
    """The FLEET.md client commands, run against the TLS front: the admin
    client lists devices, the simulated device downloads and applies its
    update through nginx."""
    weights = bytes(range(256)) * 8
    fp = raw_fingerprint("kws", len(weights))
    (tls.d / "factory.bin").write_bytes(weights)
    new = bytes(255 - b for b in weights)
    (tls.d / "v2.mota").write_bytes(pack(new, fingerprint=fp, version=2, chunk_size=256).encode())
    admin = ["fleet", "--server", tls.url, "--cacert", str(tls.ca), "--token", TOKEN]
    for argv in (
        [*admin, "upload", "kws", str(tls.d / "v2.mota")],
        [*admin, "register", "dev-1"],
        [*admin, "assign", "--device", "dev-1", "kws"],
    ):
        r = modelota(*argv)
        assert r.returncode == 0, (argv, r.stderr)
    _, commands = _doc_blocks()
    ran = 0
    for line in commands.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line.replace(f"https://{PLACEHOLDER}", tls.url))
        assert argv[0] == "modelota", line
        argv = [
            {"fleet-ca.pem": str(tls.ca), "factory.bin": str(tls.d / "factory.bin")}.get(a, a)
            for a in argv[1:]
        ]
        r = modelota(*argv, *(["--token", TOKEN] if argv[0] == "fleet" else []))
        assert r.returncode == 0, (line, r.stderr)
        assert "Traceback" not in r.stderr
        ran += 1
        if argv[0] == "device":
            assert "poll 1: updated (Ok): v1 -> v2" in r.stdout, r.stdout
    assert ran == 2
    r = modelota(*admin, "devices", "--json")
    dev = json.loads(r.stdout)[0]
    assert dev["id"] == "dev-1" and dev["last_version"] == 2
    assert dev["last_report"]["status_name"] == "Ok"
    # every request went through nginx, over TLS
    log = tls.access.access()  # type: ignore[attr-defined]
    assert any("/v1/payloads/" in line and " 200 " in line for line in log), log
    assert any(line.startswith("PUT /admin/devices/dev-1") for line in log), log


def test_range_requests_pass_through_the_proxy(tls: Tls) -> None:
    """A resumed download asks for bytes N- through nginx and gets them (206)."""
    import http.client

    r = modelota("fleet", "--server", tls.url, "--cacert", str(tls.ca), "--token", TOKEN,
                 "payloads", "--json")  # fmt: skip
    if r.returncode != 0 or not json.loads(r.stdout):
        weights = bytes(1000)
        data = pack(weights, fingerprint=bytes(16), version=1).encode()
        (tls.d / "p.mota").write_bytes(data)
        assert modelota("fleet", "--server", tls.url, "--cacert", str(tls.ca), "--token", TOKEN,
                        "upload", "range", str(tls.d / "p.mota")).returncode == 0  # fmt: skip
        r = modelota("fleet", "--server", tls.url, "--cacert", str(tls.ca), "--token", TOKEN,
                     "payloads", "--json")  # fmt: skip
    rec = json.loads(r.stdout)[0]
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    port = int(tls.url.rsplit(":", 1)[1])
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        c.request("GET", rec["url"], headers={"Range": "bytes=100-"})
        resp = c.getresponse()
        body = resp.read()
    finally:
        c.close()
    assert resp.status == 206, resp.status
    assert resp.getheader("Content-Range") == f"bytes 100-{rec['size'] - 1}/{rec['size']}"
    assert len(body) == rec["size"] - 100


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "certificate is not trusted"),  # the system CAs do not know the test CA
        (["--cacert", "OTHER"], "certificate is not trusted"),
    ],
)
def test_an_untrusted_certificate_is_one_line_error(
    tls: Tls, extra: list[str], words: str
) -> None:
    extra = [str(tls.other_ca) if a == "OTHER" else a for a in extra]
    for argv in (
        ["fleet", "--server", tls.url, *extra, "--token", TOKEN, "devices"],
        ["device", str(tls.d / "factory.bin"), "--model", "kws", "--id", "dev-2",
         "--server", tls.url, *extra],
    ):  # fmt: skip
        if argv[0] == "device":
            (tls.d / "factory.bin").write_bytes(bytes(2048))
        r = modelota(*argv)
        err = r.stderr.strip()
        assert r.returncode == 1 and len(err.splitlines()) == 1, err
        assert words in err and "--cacert" in err and "Traceback" not in err, err


def test_plain_http_to_the_tls_port_is_one_line_error(tls: Tls) -> None:
    url = tls.url.replace("https://", "http://")
    r = modelota("fleet", "--server", url, "--token", TOKEN, "devices")
    err = r.stderr.strip()
    assert r.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
