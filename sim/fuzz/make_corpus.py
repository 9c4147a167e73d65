"""Seed corpus for sim/fuzz/fuzz_updater.cpp, made by the real packer.

    python sim/fuzz/make_corpus.py DIR

writes one file per (device configuration, payload): 4 control bytes (see
the comment at the top of fuzz_updater.cpp) then a payload for the fuzz
target's model (600 bytes, fingerprint "modelota-fuzz-fp", version 1): full
and delta, CRC32 and SHA-256, unsigned and signed with the fuzz key, an empty
delta, and a few damaged ones. libFuzzer mutates from there, so it starts
with inputs that pass every check instead of stopping at the magic.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from modelota.format import signing as keys
from modelota.format.payload import pack

REGION = 600
FP = b"modelota-fuzz-fp"
FUZZ_KEY = hashlib.sha256(b"modelota fuzz key").digest()
# must equal kPublicKey in fuzz_updater.cpp (tests/test_fuzz.py checks it)
FUZZ_PUBLIC_KEY = keys.public_from_private(FUZZ_KEY)


def factory() -> bytes:
    return bytes((i * 31 + 7) & 0xFF for i in range(REGION))


def payloads() -> dict[str, bytes]:
    old = factory()
    rnd = random.Random(6)
    new = bytearray(old)
    for start in (3, 120, 121, 400, 590):
        new[start : start + rnd.randint(1, 40)] = rnd.randbytes(40)[: len(new[start : start + 40])]
    new = new[:REGION]
    full_new = rnd.randbytes(REGION)
    out: dict[str, bytes] = {}
    for digest in ("crc32", "sha256"):
        for chunk in (64, 256):
            out[f"full-{digest}-{chunk}"] = pack(
                full_new, fingerprint=FP, version=2, chunk_size=chunk, digest=digest
            ).encode()
            out[f"delta-{digest}-{chunk}"] = pack(
                bytes(new), fingerprint=FP, version=2, chunk_size=chunk, digest=digest,
                base=old, base_version=1,
            ).encode()  # fmt: skip
    for chunk in (100, 256):
        out[f"signed-full-{chunk}"] = pack(
            full_new, fingerprint=FP, version=3, chunk_size=chunk, sign_key=FUZZ_KEY
        ).encode()
        out[f"signed-delta-{chunk}"] = pack(
            bytes(new), fingerprint=FP, version=2, chunk_size=chunk, sign_key=FUZZ_KEY,
            base=old, base_version=1,
        ).encode()  # fmt: skip
    out["signed-empty-delta"] = pack(
        old, fingerprint=FP, version=2, sign_key=FUZZ_KEY, base=old, base_version=1
    ).encode()
    signed = out["signed-full-100"]
    flipped = bytearray(signed)
    flipped[200] ^= 0x04
    out["signed-chunk-bit-flip"] = bytes(flipped)
    out["signed-truncated"] = signed[:-7]
    out["signed-trailing"] = signed + b"\x00"
    return out


CONTROLS = {
    "ram": bytes([0x30, 0, 0, 0]),
    "ram-split": bytes([0x20, 7, 0, 0]),
    "callback-backupcb": bytes([0x19, 3, 1, 0]),
    "ram-keyed": bytes([0x34, 0, 0, 0]),
    "callback-keyed-split": bytes([0x15, 9, 2, 0]),
    "storeflash": bytes([0x32, 0, 0, 0]),
    "storeflash-keyed-split": bytes([0x26, 5, 2, 0]),
    "storeram-keyed": bytes([0x37, 0, 3, 0]),
    "storeram-split": bytes([0x13, 11, 0, 0]),
}


def write(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for cname, control in CONTROLS.items():
        keyed = bool(control[0] & 4)
        for pname, payload in payloads().items():
            if keyed != pname.startswith("signed"):
                continue  # a keyed device refuses unsigned seeds at once: little to learn
            (directory / f"seed-{cname}-{pname}").write_bytes(control + payload)
            count += 1
    return count


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py DIR")
    print(f"{write(Path(sys.argv[1]))} seeds in {sys.argv[1]}")
