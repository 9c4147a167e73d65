"""docs/FORMAT.md is the source of truth: its tables and its worked examples
(versions 1 and 2) are checked against the packer and the native parser."""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from pathlib import Path

from modelota import Status
from modelota.format import codec
from modelota.format.payload import Chunk2, Header, Pred, pack
from modelota.sim.native import Updater

DOC = (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").read_text()


def doc_table(title: str) -> list[tuple[int, int, str]]:
    """(offset, size, field) rows of the table under the heading `title`."""
    section = DOC.split(f"## {title}", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*`(\w+)`", section, flags=re.M)
    return [(int(o), int(s), f) for o, s, f in rows]


def test_header_table_matches_the_packer() -> None:
    rows = doc_table("Header (v1, 96 bytes)")
    assert [r[2] for r in rows][:3] == ["magic", "format_version", "digest_type"]
    # contiguous, 96 bytes in all
    assert rows[0][0] == 0 and all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(rows))
    assert rows[-1][0] + rows[-1][1] == 96
    values = {
        "fingerprint": bytes(range(100, 116)),
        "model_version": 0x11223344,
        "base_version": 0x55667788,
        "base_crc32": 0x99AABBCC,
        "weights_size": 0x01020304,
        "data_size": 0x05060708,
        "chunk_count": 0x090A0B0C,
        "segment_count": 0x0D0E0F10,
        "max_chunk": 0x11121314,
        "digest": bytes(range(200, 232)),
        "flags": 0x0201,
        "digest_type": 0x7E,
        "reserved": 0x31323334,
    }
    h = Header(**values)  # type: ignore[arg-type]
    raw = h.encode()
    for offset, size, name in rows:
        field = raw[offset : offset + size]
        if name == "magic":
            assert field == b"MOTA"
        elif name == "format_version":
            assert field == b"\x01"
        elif name == "header_crc":
            assert field == struct.pack("<I", zlib.crc32(raw[:92]))
        else:
            v = values[name]
            expected = v if isinstance(v, bytes) else v.to_bytes(size, "little")
            assert field == expected, name


def test_chunk_table_matches_the_packer() -> None:
    rows = doc_table("Chunk (v1, 16 + length bytes)")
    assert [r[2] for r in rows] == ["seq", "offset", "length"]
    p = pack(bytes(range(50)), fingerprint=bytes(16), version=1, chunk_size=20, format_version=1)
    c = p.chunks[1]
    raw = c.encode(p.header.crc)
    expected = {"seq": c.seq, "offset": c.offset, "length": len(c.data)}
    for offset, size, name in rows:
        assert raw[offset : offset + size] == expected[name].to_bytes(size, "little"), name
    assert raw[12:-4] == c.data
    assert raw[-4:] == struct.pack("<I", zlib.crc32(raw[:-4], p.header.crc))


def walk_rows(rows: list[list[str]], raw: bytes, known: dict[str, int]) -> dict[str, object]:
    """Reads ``raw`` field by field as a v2 table says (sizes: a number,
    "varint", "4 or 32" (the digest), or a field name (the data))."""
    out: dict[str, object] = {}
    pos = 0
    for _, size, name, _ in rows:
        if size.endswith("varints") or "varints +" in size:  # e.g. "2 varints", "3 varints + 4"
            names = [x.strip(" `") for x in name.split(",")]
            count = int(size.split()[0])
            for sub in names[:count]:
                value, pos, ok = codec.read_varint(raw, pos)
                assert ok and value is not None, sub
                out[sub] = value
            for sub in names[count:]:
                out[sub] = raw[pos : pos + int(size.split("+")[1])]
                pos += int(size.split("+")[1])
            continue
        name = name.strip("`")
        if size == "varint":
            value, pos, ok = codec.read_varint(raw, pos)
            assert ok and value is not None, name
            out[name] = value
            continue
        if size == "4 or 32":
            n = 4 if out["digest_type"] == 1 else 32
        elif size.strip("`") in out:
            n = int(out[size.strip("`")])  # type: ignore[call-overload]
        else:
            n = int(size)
        field = raw[pos : pos + n]
        assert len(field) == n, name
        out[name] = field[0] if n == 1 else field
        pos += n
    assert pos == len(raw), "the table does not cover every byte"
    for k, v in known.items():
        assert out[k] == v, k
    return out


def test_v2_header_table_matches_the_packer() -> None:
    rows = doc_rows("### Header (v2, 37 to 96 bytes)")
    assert [r[2].strip("`") for r in rows][:3] == ["magic", "format_version", "header_len"]
    values = {
        "fingerprint": bytes(range(100, 116)),
        "model_version": 0x11223344,
        "base_version": 300,
        "base_crc32": 0x99AABBCC,
        "weights_size": 0x01020304,
        "data_size": 0x0506,
        "chunk_count": 7,
        "segment_count": 0,
        "max_chunk": 1024,
        "digest": bytes(range(200, 232)),
        "flags": 0x03,  # DELTA and SIGNED: every optional field present
        "digest_type": 2,
        "reserved": 0x31323334,
        "format_version": 2,
    }
    raw = Header(**values).encode()  # type: ignore[arg-type]
    got = walk_rows(rows, raw, {"magic": b"MOTA", "format_version": 2, "header_len": len(raw)})
    assert got["key_id"] == struct.pack("<I", values["reserved"])
    assert got["base_crc32"] == struct.pack("<I", values["base_crc32"])
    assert got["header_crc"] == struct.pack("<I", zlib.crc32(raw[:-4]))
    for name in ("fingerprint", "model_version", "base_version", "weights_size", "data_size",
                 "chunk_count", "max_chunk", "digest", "flags", "digest_type"):  # fmt: skip
        assert got[name] == values[name], name
    # a full, unsigned, CRC32 header leaves out what it does not need
    lean = Header(**{**values, "flags": 0, "digest_type": 1, "reserved": 0,  # type: ignore[arg-type]
                     "base_version": 0, "base_crc32": 0}).encode()  # fmt: skip
    assert len(lean) == len(raw) - (2 + 4) - 28 - 4


def test_v2_chunk_table_matches_the_packer() -> None:
    rows = doc_rows("### Chunk (v2)")
    assert [r[2].strip("`") for r in rows] == [
        "enc", "gap", "length", "size", "keep_start`, `keep_len",
        "pred_start`, `pred_count`, `pred_back`, `divisor", "data", "crc"]  # fmt: skip
    enc = codec.RUNS | codec.KEEP | codec.PRED  # every optional field present
    pred = Pred(start=8, count=5, back=300, divisor=0x3C010204)
    c = Chunk2(offset=70, length=300, enc=enc, body=codec.runs_encode(bytes(300)), gap=20,
               keep=(130, 170), pred=pred)  # fmt: skip
    raw = c.encode(0x12345678)
    got = walk_rows(rows, raw, {"enc": enc, "gap": 20, "length": 300, "size": len(c.body),
                                "keep_start": 130, "keep_len": 170, "pred_start": 8,
                                "pred_count": 5, "pred_back": 300, "data": c.body,
                                "divisor": struct.pack("<I", pred.divisor)})  # fmt: skip
    assert got["crc"] == struct.pack("<I", zlib.crc32(raw[:-4], 0x12345678))


def test_worked_example_byte_by_byte() -> None:
    weights = bytes([1, 2, 3, 4, 5])
    fp = bytes(range(16))
    u32 = lambda v: struct.pack("<I", v)  # noqa: E731
    body = (
        b"MOTA" + b"\x01\x01" + b"\x00\x00" + fp
        + u32(2) + u32(0) + u32(0)
        + u32(5) + u32(5) + u32(2) + u32(1) + u32(4)
        + u32(zlib.crc32(weights)) + bytes(28) + u32(0)
    )  # fmt: skip
    hcrc = zlib.crc32(body)
    header = body + u32(hcrc)
    head0 = u32(0) + u32(0) + u32(4) + weights[:4]
    head1 = u32(1) + u32(4) + u32(1) + weights[4:]
    expected = header + head0 + u32(zlib.crc32(head0, hcrc)) + head1 + u32(zlib.crc32(head1, hcrc))
    assert pack(weights, fingerprint=fp, version=2, chunk_size=4, format_version=1).encode() \
        == expected  # fmt: skip
    dev = Updater(bytearray(5), fingerprint=fp, current_version=1)
    assert dev.apply(expected) == Status.Ok and bytes(dev.weights) == weights


def test_v2_worked_examples_byte_by_byte() -> None:
    weights = bytes([1, 2, 3, 4, 5])
    fp = bytes(range(16))
    u32 = lambda v: struct.pack("<I", v)  # noqa: E731
    body = b"MOTA" + bytes([2, 37, 1, 0]) + fp + bytes([2, 5, 5, 2, 4]) + u32(zlib.crc32(weights))
    assert len(body) + 4 == 37
    hcrc = zlib.crc32(body)
    chunk0 = bytes([0, 0, 4]) + weights[:4]
    crc0 = zlib.crc32(chunk0, hcrc)
    chunk1 = bytes([0, 0, 1]) + weights[4:]
    expected = body + u32(hcrc) + chunk0 + u32(crc0) + chunk1 + u32(zlib.crc32(chunk1, crc0))
    assert pack(weights, fingerprint=fp, version=2, chunk_size=4).encode() == expected
    dev = Updater(bytearray(5), fingerprint=fp, current_version=1)
    assert dev.apply(expected) == Status.Ok and bytes(dev.weights) == weights
    # the RUNS example: 16 zeros then 8 x 07 in one chunk
    runs = bytes(16) + b"\x07" * 8
    p = pack(runs, fingerprint=fp, version=2, chunk_size=24)
    raw = p.encode()
    chunk = bytes([1, 0, 24, 4, 0x1F, 0x00, 0x0F, 0x07])
    assert raw[p.chunks_start :] == chunk + u32(zlib.crc32(chunk, p.header.crc))
    dev = Updater(bytearray(24), fingerprint=fp, current_version=1)
    assert dev.apply(raw) == Status.Ok and bytes(dev.weights) == runs


def test_status_table_in_the_doc_matches_the_enum() -> None:
    for name, value in re.findall(r"`(\w+)` \((-\d+)\)", DOC):
        assert Status[name] == int(value), name


def doc_rows(title: str) -> list[list[str]]:
    """Cells of every data row of the first table under the heading `title`."""
    section = DOC.split(title, 1)[1].split("\n#", 1)[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    return [r for r in rows[2:] if r]  # skip the header row and the |---| line


def test_digest_types_table_matches_both_sides() -> None:
    from modelota.format.payload import DIGEST_CRC32, DIGEST_NAMES, DIGEST_SHA256

    rows = {int(r[0]): r[1] for r in doc_rows("### Digest types")}
    assert rows == {DIGEST_CRC32: "CRC32", DIGEST_SHA256: "SHA-256"}
    assert set(DIGEST_NAMES) == set(rows)
    h = (Path(__file__).resolve().parent.parent / "firmware_lib/modelota/format.h").read_text()
    assert re.search(r"#define MODELOTA_DIGEST_SHA256 2u", h)
    assert re.search(r"#define MODELOTA_FLAG_SIGNED 0x0002u", h)
    assert "bit 1 `SIGNED`" in DOC


def test_signed_worked_example_with_an_independent_ed25519() -> None:
    """The signature block as documented, made with PyNaCl (libsodium), not the
    packer's library: the packer's output and the native device agree."""
    import hashlib

    import nacl.signing as nacl_signing

    from modelota.format.payload import SIGNATURE_LEN, pack

    rows = doc_table("Signature block (64 bytes, flag SIGNED)")
    assert rows == [(96, 64, "signature")] and SIGNATURE_LEN == 64
    seed = bytes(range(32))
    sk = nacl_signing.SigningKey(seed)
    pub = bytes(sk.verify_key)
    weights = bytes([1, 2, 3, 4, 5])
    fp = bytes(range(16))
    u32 = lambda v: struct.pack("<I", v)  # noqa: E731
    body = (
        b"MOTA" + b"\x01\x02" + b"\x02\x00" + fp
        + u32(2) + u32(0) + u32(0)
        + u32(5) + u32(5) + u32(2) + u32(1) + u32(4)
        + hashlib.sha256(weights).digest() + hashlib.sha256(pub).digest()[:4]
    )  # fmt: skip
    hcrc = zlib.crc32(body)
    header = body + u32(hcrc)
    signature = sk.sign(header).signature
    head0 = u32(0) + u32(0) + u32(4) + weights[:4]
    head1 = u32(1) + u32(4) + u32(1) + weights[4:]
    expected = (
        header + signature
        + head0 + u32(zlib.crc32(head0, hcrc)) + head1 + u32(zlib.crc32(head1, hcrc))
    )  # fmt: skip
    packed = pack(weights, fingerprint=fp, version=2, chunk_size=4, sign_key=seed,
                  format_version=1)  # fmt: skip
    assert packed.encode() == expected
    dev = Updater(bytearray(5), fingerprint=fp, current_version=1, public_key=pub)
    assert dev.apply(expected) == Status.Ok and bytes(dev.weights) == weights


def test_status_code_table_is_complete() -> None:
    from modelota.sim.native import status_name

    rows = {int(r[0]): r[1].strip("`") for r in doc_rows("## Status codes")}
    assert rows == {int(s): s.name for s in Status}, "docs/FORMAT.md status table vs status.py"
    for value, name in rows.items():
        assert status_name(value) == name, "C status names vs the doc"
