"""Ed25519 signing keys for signed payloads (docs/FORMAT.md, "Signature block").

``modelota keygen NAME`` writes three files:

* ``NAME``      the private key, PEM PKCS#8, mode 0600: keep it off the devices;
* ``NAME.pub``  the public key, PEM SubjectPublicKeyInfo (what ``inspect --key`` takes);
* ``NAME.h``    the public key as a C array for the firmware
  (``modelota_ed25519_verifier(MODELOTA_PUBLIC_KEY)``).

Keys load from PEM, from 32 raw bytes, or from 64 hex digits, so a key kept
in a secrets store as hex works too. The key id is the first 4 bytes of
SHA-256 of the 32-byte public key; a signed payload carries it in the
header's ``reserved`` field so a reader can tell *which* key signed it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

KEY_LEN = 32
SIGNATURE_LEN = 64
KEY_ID_LEN = 4


class KeyFileError(ValueError):
    """A key file that cannot be read as an Ed25519 key."""


def key_id(public_key: bytes) -> bytes:
    """The 4-byte id of a 32-byte public key: SHA-256(public_key)[:4]."""
    if len(public_key) != KEY_LEN:
        raise ValueError(f"an Ed25519 public key is {KEY_LEN} bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:KEY_ID_LEN]


def generate() -> bytes:
    """A new private key as its 32-byte seed."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def public_from_private(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte private seed."""
    return (
        _private(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _private(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != KEY_LEN:
        raise ValueError(f"an Ed25519 private key is a {KEY_LEN}-byte seed, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def sign(seed: bytes, message: bytes) -> bytes:
    """Ed25519 signature (RFC 8032, pure) of ``message``."""
    return _private(seed).sign(message)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    if len(public_key) != KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _raw_or_hex(data: bytes) -> bytes | None:
    if len(data) == KEY_LEN:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_LEN:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
    return None


def load_private(path: str | Path) -> bytes:
    """A private key file (PEM PKCS#8, 32 raw bytes or 64 hex digits) as its seed."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{path}: not a readable unencrypted PEM private key ({e})") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 private key")
        return key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    raw = _raw_or_hex(data)
    if raw is None:
        raise KeyFileError(f"{path}: not an Ed25519 private key (PEM, 32 bytes or 64 hex digits)")
    return raw


def load_public(path: str | Path) -> bytes:
    """A public key file as 32 raw bytes. A private key file is accepted too
    (its public half is used)."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        return public_from_private(load_private(path))
    if b"PUBLIC KEY" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise KeyFileError(f"{path}: not a readable PEM public key ({e})") from e
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path}: not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = _raw_or_hex(data)
    if raw is None:
        raise KeyFileError(f"{path}: not an Ed25519 public key (PEM, 32 bytes or 64 hex digits)")
    return raw


def c_header(public_key: bytes, name: str = "MODELOTA_PUBLIC_KEY") -> str:
    """A C header holding the public key for the firmware."""
    kid = key_id(public_key).hex()
    rows = [
        "    " + ", ".join(f"0x{b:02x}" for b in public_key[i : i + 8]) + ","
        for i in range(0, KEY_LEN, 8)
    ]
    guard = f"{name}_H"
    return "\n".join(
        [
            f"/* Ed25519 public key for signed ModelOTA payloads, key id {kid}.",
            " * Generated by `modelota keygen`. Pass it to the Updater with",
            f" *   cfg.verifier = modelota_ed25519_verifier({name});",
            " * The private key never goes on the device. */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "#include <stdint.h>",
            f"static const uint8_t {name}[32] = {{",
            *rows,
            "};",
            f"#endif /* {guard} */",
            "",
        ]
    )


def write_keypair(path: str | Path, seed: bytes | None = None) -> tuple[Path, Path, Path]:
    """Writes the private key (0600), NAME.pub and NAME.h; returns the three paths.
    Refuses to overwrite an existing private key."""
    priv_path = Path(path)
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    hdr_path = priv_path.with_name(priv_path.name + ".h")
    seed = generate() if seed is None else seed
    key = _private(seed)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = key.public_key()
    pub_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    raw_pub = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hdr_path.write_text(c_header(raw_pub))
    return priv_path, pub_path, hdr_path
