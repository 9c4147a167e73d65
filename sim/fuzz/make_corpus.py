"""Seed corpus for sim/fuzz/fuzz_updater.cpp, made by the real packer.

    python sim/fuzz/make_corpus.py DIR

writes one file per (device configuration, payload): 4 control bytes (see
the comment at the top of fuzz_updater.cpp) then a payload for the fuzz
target's model (600 bytes, fingerprint "modelota-fuzz-fp", version 1): wire
format v1 and v2 (v2 with weight-like bytes, so its chunks are range coded,
run-length coded and differences with the base), full and delta, CRC32 and
SHA-256, unsigned and signed with the fuzz key, an empty delta, and a few
damaged ones; and seeds for the chunk decoder alone (control byte 3 bit 7).
libFuzzer mutates from there, so it starts with inputs that pass every check
instead of stopping at the magic.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from modelota.format import codec
from modelota.format import signing as keys
from modelota.format.payload import pack
from modelota.sim.sweep import weights_like

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
    for start in (200, 300):  # a fine-tune: bytes nudged by one, shipped as differences
        new[start : start + 60] = bytes((b + 1) & 0xFF for b in new[start : start + 60])
    new = new[:REGION]
    out: dict[str, bytes] = {}
    for fmt in (1, 2):
        # v1 ships bytes as they are: random ones; v2 compresses: weight-like ones
        full_new = rnd.randbytes(REGION) if fmt == 1 else weights_like(rnd, REGION)
        v = "" if fmt == 1 else "v2-"
        for digest in ("crc32", "sha256"):
            for chunk in (64, 256):
                out[f"{v}full-{digest}-{chunk}"] = pack(
                    full_new, fingerprint=FP, version=2, chunk_size=chunk, digest=digest,
                    format_version=fmt,
                ).encode()  # fmt: skip
                out[f"{v}delta-{digest}-{chunk}"] = pack(
                    bytes(new), fingerprint=FP, version=2, chunk_size=chunk, digest=digest,
                    base=old, base_version=1, format_version=fmt,
                ).encode()  # fmt: skip
        for chunk in (100, 256):
            out[f"signed-{v}full-{chunk}"] = pack(
                full_new, fingerprint=FP, version=3, chunk_size=chunk, sign_key=FUZZ_KEY,
                format_version=fmt,
            ).encode()  # fmt: skip
            out[f"signed-{v}delta-{chunk}"] = pack(
                bytes(new), fingerprint=FP, version=2, chunk_size=chunk, sign_key=FUZZ_KEY,
                base=old, base_version=1, format_version=fmt,
            ).encode()  # fmt: skip
        out[f"signed-{v}empty-delta"] = pack(
            old, fingerprint=FP, version=2, sign_key=FUZZ_KEY, base=old, base_version=1,
            format_version=fmt,
        ).encode()  # fmt: skip
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


def decoder_seeds() -> dict[str, bytes]:
    """Inputs for fuzz_decoder: chunks of enc, length-1, offset, body length, body."""
    rnd = random.Random(9)
    out: dict[str, bytes] = {}
    model = codec.Model()
    stream = bytearray()
    for i in range(6):
        data = weights_like(rnd, rnd.randint(20, 256))
        lanes = i % 2 == 1
        enc = codec.RC | (codec.LANES if lanes else 0)
        body = codec.rc_encode(data, i, lanes, model)[:255]
        stream += bytes([enc, len(data) - 1, i, len(body)]) + body
        runs = codec.runs_encode(data)[:255]
        stream += bytes([codec.RUNS | codec.DIFF, len(data) - 1, 0, len(runs)]) + runs
    out["decoder-rc-runs"] = bytes(stream)
    out["decoder-raw"] = bytes([codec.RAW | codec.DIFF, 99, 3, 100]) + rnd.randbytes(100)
    return out


def write(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, seed in decoder_seeds().items():
        (directory / f"seed-{name}").write_bytes(bytes([0, 5, 0, 0x80]) + seed)
        count += 1
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
