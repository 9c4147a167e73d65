"""The command line for signed payloads, run as a user would:
`modelota keygen`, `pack --sign` / `--digest sha256`, `inspect --key`."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

from modelota import Status, parse
from modelota.format import signing as keys
from modelota.format.payload import DIGEST_SHA256, HEADER_LEN, SIGNATURE_LEN
from modelota.sim.native import Updater
from payloads import modelota


def keygen(tmp_path: Path, name: str = "release.key") -> Path:
    key = tmp_path / name
    r = modelota("keygen", key)
    assert r.returncode == 0, r.stderr
    return key


def test_keygen_writes_private_public_and_c_header(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    pub = tmp_path / "release.key.pub"
    hdr = tmp_path / "release.key.h"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    seed = keys.load_private(key)
    public = keys.load_public(pub)
    assert keys.public_from_private(seed) == public
    text = hdr.read_text()
    assert "MODELOTA_PUBLIC_KEY[32]" in text and keys.key_id(public).hex() in text
    arr = bytes(int(x, 16) for x in text.split("{", 1)[1].split("}")[0].replace(",", " ").split())
    assert arr == public
    again = modelota("keygen", key)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert keys.load_private(key) == seed


def test_pack_sign_then_inspect_with_the_right_and_the_wrong_key(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    other = keygen(tmp_path, "other.key")
    rnd = random.Random(1)
    old, new = rnd.randbytes(3000), rnd.randbytes(3000)
    (tmp_path / "new.bin").write_bytes(new)
    out = tmp_path / "v2.mota"
    r = modelota(
        "pack",
        tmp_path / "new.bin",
        "-o",
        out,
        "--version",
        "2",
        "--fingerprint",
        "00" * 16,
        "--sign",
        key,
        "--chunk-size",
        "512",
    )
    assert r.returncode == 0, r.stderr
    assert "signed (Ed25519, key id" in r.stdout
    raw = out.read_bytes()
    p = parse(raw, keys.load_public(tmp_path / "release.key.pub"))
    assert p.header.digest_type == DIGEST_SHA256 and len(p.signature) == SIGNATURE_LEN
    # the device with the public key takes it
    dev = Updater(
        bytearray(old),
        fingerprint=bytes(16),
        current_version=1,
        buffer_len=512,
        public_key=keys.load_public(tmp_path / "release.key.pub"),
    )
    assert dev.apply(raw) == Status.Ok and bytes(dev.weights) == new

    ok = modelota("inspect", out, "--key", tmp_path / "release.key.pub", "--json")
    assert ok.returncode == 0, ok.stderr
    info = json.loads(ok.stdout)
    kid = keys.key_id(keys.load_public(tmp_path / "release.key.pub")).hex()
    assert info["signed"] is True and info["key_id"] == kid
    assert info["digest"]["type"] == "sha256" and info["signature"].startswith("valid")
    bad = modelota("inspect", out, "--key", f"{other}.pub")
    assert bad.returncode == 1 and "BadSignature" in bad.stderr and "key id" in bad.stderr
    assert bad.stderr.count("\n") == 1

    tampered = bytearray(raw)
    tampered[HEADER_LEN + 5] ^= 1  # inside the signature
    (tmp_path / "t.mota").write_bytes(bytes(tampered))
    bad = modelota("inspect", tmp_path / "t.mota", "--key", tmp_path / "release.key.pub")
    assert bad.returncode == 1 and "BadSignature" in bad.stderr
    plain = modelota("inspect", out)  # no key: shown, not checked
    assert plain.returncode == 0 and "not checked" in plain.stdout


def test_digest_sha256_without_signing_and_errors(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "s.mota"
    r = modelota(
        "pack",
        tmp_path / "w.bin",
        "-o",
        out,
        "--version",
        "3",
        "--model",
        "m",
        "--digest",
        "sha256",
    )
    assert r.returncode == 0 and "digest sha256" in r.stdout
    assert not parse(out.read_bytes()).header.is_signed
    key = keygen(tmp_path)
    unsigned = modelota("inspect", out, "--key", f"{key}.pub")
    assert unsigned.returncode == 1 and "Unsigned" in unsigned.stderr
    r = modelota(
        "pack",
        tmp_path / "w.bin",
        "-o",
        out,
        "--version",
        "3",
        "--model",
        "m",
        "--digest",
        "crc32",
        "--sign",
        key,
    )
    assert r.returncode == 1 and "SHA-256" in r.stderr
    (tmp_path / "junk.key").write_text("not a key\n")
    r = modelota(
        "pack",
        tmp_path / "w.bin",
        "-o",
        out,
        "--version",
        "3",
        "--model",
        "m",
        "--sign",
        tmp_path / "junk.key",
    )
    assert r.returncode == 1 and "not an Ed25519 private key" in r.stderr


def test_signed_delta_and_tflite_pack(tmp_path: Path) -> None:
    """Deltas sign like full payloads; a .tflite pack is sealed after packing."""
    from tflite_builder import Arch, pair

    key = keygen(tmp_path)
    pub = keys.load_public(f"{key}.pub")
    old_m, new_m = pair(Arch((4, 8, 3), ("relu", "none")), seed=1)
    (tmp_path / "old.tflite").write_bytes(old_m)
    (tmp_path / "new.tflite").write_bytes(new_m)
    out = tmp_path / "m.mota"
    r = modelota(
        "pack",
        "--base",
        tmp_path / "old.tflite",
        tmp_path / "new.tflite",
        "-o",
        out,
        "--version",
        "2",
        "--delta",
        "--base-version",
        "1",
        "--sign",
        key,
    )
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    p = parse(raw, pub)
    assert p.header.is_delta and p.header.is_signed
    dev = Updater(
        bytearray(old_m),
        fingerprint=p.header.fingerprint,
        current_version=1,
        buffer_len=1024,
        public_key=pub,
    )
    assert dev.apply(raw) == Status.Ok and bytes(dev.weights) != old_m
    unsigned_dev = Updater(
        bytearray(old_m), fingerprint=p.header.fingerprint, current_version=1, buffer_len=1024
    )
    plain = modelota(
        "pack",
        "--base",
        tmp_path / "old.tflite",
        tmp_path / "new.tflite",
        "-o",
        tmp_path / "u.mota",
        "--version",
        "2",
        "--delta",
        "--base-version",
        "1",
    )
    assert plain.returncode == 0, plain.stderr
    assert unsigned_dev.apply((tmp_path / "u.mota").read_bytes()) == Status.Ok
    assert bytes(unsigned_dev.weights) == bytes(dev.weights)  # same weights, signed or not


def test_signed_edge_impulse_pack(tmp_path: Path) -> None:
    """`pack --ei OLD NEW --sign KEY`: the Edge Impulse packer's payload, sealed
    over the old export's weight region, applies on a keyed device."""
    from test_edgeimpulse import FORMS, _expected_new_region

    from modelota.models import edgeimpulse as E

    key = keygen(tmp_path)
    pub = keys.load_public(f"{key}.pub")
    old = FORMS["eon2024_g0_hex"](tmp_path / "old", "old")
    new = FORMS["eon2024_g0_hex"](tmp_path / "new", "new")
    out = tmp_path / "v2.mota"
    r = modelota(
        "pack",
        "--ei",
        old.export.root,
        new.export.root,
        "-o",
        out,
        "--version",
        "2",
        "--chunk-size",
        "256",
        "--sign",
        key,
    )
    assert r.returncode == 0, r.stderr
    assert "signed (Ed25519" in r.stdout
    raw = out.read_bytes()
    assert parse(raw, pub).header.is_signed
    dev = Updater(
        bytearray(old.region),
        buffer_len=256,
        current_version=1,
        public_key=pub,
        fingerprint=E.read_export(old.export.root).fingerprint(),
    )
    assert dev.apply(raw) == Status.Ok
    assert bytes(dev.weights) == _expected_new_region(old, new)
