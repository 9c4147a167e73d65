"""Attacks on a device that accepts only payloads signed by its vendor.

One test per threat (the names follow the threat list of issue [6] and
docs/SECURITY.md). The attacker controls the link (or the server): they can
send any bytes, replay any payload the vendor ever signed, splice payloads
and answer with stale data. They do not have the vendor's private key.

Every case runs against three victims, all real firmware_lib code, each
holding version 3 of a model and the vendor's public key:

* ``updater`` — the bare Updater on a RAM model (its result is also held
  against the Python reference applier, which must give the same status);
* ``flash``   — a flash-resident model behind the Store on a simulated NOR flash;
* ``ram``     — a RAM model persisted by the Store on the same flash.

Each case asserts the specific status *and* that nothing changed: the
weights, the version and the anti-rollback floor, and for the Store victims
the region and both commit-record blocks on the flash, byte for byte. (The
Store's log and journal areas are scratch space: a refused payload may have
been logged there, which is never read without a commit record.)

Every test runs with payloads of wire format v1 and of v2 (the ``fmt``
fixture): the threats and the answers are the same, v2 chains its chunk
CRCs from the signed header's CRC instead of seeding each with it.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from modelota import Device, Status, apply_reference, pack
from modelota.format import codec
from modelota.format import signing as keys
from modelota.format.payload import (
    SIGNATURE_LEN,
    Chunk,
    Payload,
    crc32,
)
from modelota.sim.device import FlashModelDevice, Layout, RamModelDevice
from modelota.sim.flash import SimFlash
from modelota.sim.native import Updater
from payloads import FP, OTHER_FP

VENDOR = hashlib.sha256(b"vendor signing key").digest()
VENDOR_PUB = keys.public_from_private(VENDOR)
ATTACKER = hashlib.sha256(b"attacker's own key").digest()
SIZE, CHUNK, BUF, BLOCK, PROG = 2000, 200, 512, 256, 4
L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order

_rnd = random.Random(2026)
WEIGHTS = {v: _rnd.randbytes(SIZE) for v in range(1, 7)}
EVIL = _rnd.randbytes(SIZE)
FMT = 2  # wire format of the payloads built here; the fmt fixture sets it


@pytest.fixture(autouse=True, params=[1, 2], ids=["v1", "v2"])
def fmt(request: pytest.FixtureRequest) -> int:
    global FMT
    FMT = request.param
    return FMT


def signed(
    version: int, weights: bytes | None = None, key: bytes | None = VENDOR, **kw: object
) -> Payload:
    new = WEIGHTS[version] if weights is None else weights
    return pack(
        new, fingerprint=FP, version=version, chunk_size=CHUNK, sign_key=key,
        format_version=FMT, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def unsigned(weights: bytes, version: int, **kw: object) -> Payload:
    return pack(weights, fingerprint=FP, version=version, chunk_size=CHUNK, format_version=FMT,
                **kw)  # type: ignore[arg-type]  # fmt: skip


def rebuild(
    p: Payload, key: bytes | None = None, signature: bytes | None = None, **changes: object
) -> bytes:
    """The payload with header fields changed and every CRC made right again
    (anyone can compute CRCs). The signature is the old one, or made with
    ``key`` (the attacker's, or the vendor's to model a buggy release)."""
    h = replace(p.header, **changes)  # type: ignore[arg-type]
    if signature is None:
        signature = p.signature if key is None else keys.sign(key, h.encode())
    return Payload(h, p.chunks, signature).encode()


# ---------------------------------------------------------------- victims


@dataclass
class Victim:
    kind: str
    apply: Callable[[bytes], Status]
    snapshot: Callable[[], tuple[object, ...]]
    reference: Callable[[bytes], Status] | None = None


def make_updater() -> Victim:
    weights = bytearray(WEIGHTS[3])
    dev = Updater(
        weights,
        fingerprint=FP,
        current_version=3,
        buffer_len=BUF,
        public_key=VENDOR_PUB,
        min_version=3,
    )

    def reference(raw: bytes) -> Status:
        d = Device(FP, 3, bytearray(WEIGHTS[3]), BUF, public_key=VENDOR_PUB, min_version=3)
        return apply_reference(raw, d).status

    return Victim(
        "updater",
        dev.apply,
        lambda: (bytes(weights), dev.current_version, dev.min_version, dev.weights_intact),
        reference,
    )


def make_store_victim(kind: str) -> Victim:
    layout = Layout.plan(BLOCK, PROG, SIZE, 3 * SIZE)
    flash = SimFlash(BLOCK, layout.block_count, PROG)
    if kind == "flash":
        flash.load(0, WEIGHTS[1])
        dev: FlashModelDevice | RamModelDevice = FlashModelDevice(
            flash, layout, FP, 1, buffer_len=BUF, public_key=VENDOR_PUB
        )
    else:
        dev = RamModelDevice(
            flash, layout, FP, WEIGHTS[1], 1, buffer_len=BUF, public_key=VENDOR_PUB
        )
    assert dev.boot() == Status.Ok
    for v in (2, 3):
        assert dev.update(signed(v).encode()) == Status.Ok
    region_blocks = -(-SIZE // BLOCK)

    def snapshot() -> tuple[object, ...]:
        weights = dev.weights() if isinstance(dev, FlashModelDevice) else bytes(dev.ram)
        meta = flash.block(layout.meta_block) + flash.block(layout.meta_block + 1)
        region = b"".join(flash.block(layout.region_block + i) for i in range(region_blocks))
        return (weights, dev.version, dev.store.version, dev.store.min_version, meta, region)

    assert snapshot()[:4] == (WEIGHTS[3], 3, 3, 3)
    return Victim(kind, lambda raw: dev.update(raw), snapshot)


VICTIMS = {
    "updater": make_updater,
    "flash": lambda: make_store_victim("flash"),
    "ram": lambda: make_store_victim("ram"),
}


@pytest.fixture(params=list(VICTIMS))
def victim(request: pytest.FixtureRequest) -> Victim:
    return VICTIMS[request.param]()


def refused(victim: Victim, raw: bytes, expected: Status, then_update: bool = True) -> None:
    before = victim.snapshot()
    assert victim.apply(raw) == expected
    assert victim.snapshot() == before, "a refused payload changed the device"
    if victim.reference is not None:
        assert victim.reference(raw) == expected, "the Python reference disagrees"
    if then_update:  # and the device still takes the next genuine update
        assert victim.apply(signed(4).encode()) == Status.Ok


# ---------------------------------------------------------------- threats


def arbitrary_payloads() -> dict[str, tuple[bytes, Status]]:
    rnd = random.Random(1)
    plain = unsigned(EVIL, 9)
    garbage_sig = rebuild(signed(9, EVIL), signature=rnd.randbytes(SIGNATURE_LEN))
    noise = rnd.randbytes(3000)
    return {
        "unsigned_crc32": (plain.encode(), Status.Unsigned),
        "unsigned_sha256": (unsigned(EVIL, 9, digest="sha256").encode(), Status.Unsigned),
        "signed_by_the_attackers_key": (
            signed(9, EVIL, key=ATTACKER).encode(),
            Status.BadSignature,
        ),
        "random_signature_block": (garbage_sig, Status.BadSignature),
        "random_bytes": (b"XOTA" + noise, Status.BadMagic),
        "random_bytes_after_magic": (b"MOTA" + bytes([FMT]) + noise, Status.BadHeaderCrc),
    }


@pytest.mark.parametrize("case", list(arbitrary_payloads()))
def test_arbitrary_payload(victim: Victim, case: str) -> None:
    """Threat: arbitrary payload. Whatever the attacker builds, without the
    vendor's key it is never applied."""
    raw, expected = arbitrary_payloads()[case]
    refused(victim, raw, expected)


def forged_signatures() -> dict[str, bytes]:
    genuine = signed(4)
    sig = bytearray(genuine.signature)
    flipped = bytes(sig[:10]) + bytes([sig[10] ^ 0x01]) + bytes(sig[11:])
    s_value = int.from_bytes(sig[32:], "little")
    malleated = bytes(sig[:32]) + (s_value + L).to_bytes(32, "little")
    evil = unsigned(EVIL, 4, digest="sha256")
    return {
        # the attacker's weights under a genuine header's signature
        "tampered_digest": Payload(
            replace(evil.header, flags=genuine.header.flags, reserved=genuine.header.reserved),
            evil.chunks,
            genuine.signature,
        ).encode(),
        "tampered_version": rebuild(genuine, model_version=99),
        "flipped_signature_bit": rebuild(genuine, signature=flipped),
        "signature_of_another_release": rebuild(genuine, signature=signed(5).signature),
        "s_plus_group_order": rebuild(genuine, signature=malleated),
        "attacker_key_with_vendor_key_id": rebuild(
            signed(4, EVIL, key=ATTACKER), key=ATTACKER, reserved=genuine.header.reserved
        ),
    }


@pytest.mark.parametrize("case", list(forged_signatures()))
def test_forged_signature(victim: Victim, case: str) -> None:
    """Threat: forged signature. A header changed after signing, a signature
    moved, flipped or malleated (S + L), or made with another key behind the
    vendor's key id: refused before any chunk is written."""
    refused(victim, forged_signatures()[case], Status.BadSignature)


def test_rollback(victim: Victim) -> None:
    """Threat: rollback. Every older release carries a valid vendor signature;
    replaying one is refused."""
    refused(victim, signed(1).encode(), Status.Rollback, then_update=False)
    refused(victim, signed(2).encode(), Status.Rollback)


def test_rollback_after_reboot_to_factory_weights() -> None:
    """Threat: rollback after a reboot where the device fell back to its
    factory weights (the stored copy decayed): the floor in the Store's
    records still refuses the replayed v2, and nothing changes."""
    layout = Layout.plan(BLOCK, PROG, SIZE, 3 * SIZE)
    flash = SimFlash(BLOCK, layout.block_count, PROG)
    dev = RamModelDevice(flash, layout, FP, WEIGHTS[1], 1, buffer_len=BUF, public_key=VENDOR_PUB)
    assert dev.boot() == Status.Ok
    for v in (2, 3):
        assert dev.update(signed(v).encode()) == Status.Ok
    raw = bytearray(flash.data)
    raw[5] ^= 0x10  # retention error in the stored weights
    flash.load(0, bytes(raw))
    dev = RamModelDevice(flash, layout, FP, WEIGHTS[1], 1, buffer_len=BUF, public_key=VENDOR_PUB)
    assert dev.boot() == Status.Ok and dev.booted_from == "factory" and dev.version == 1
    before = (bytes(dev.ram), dev.version, dev.store.version, dev.store.min_version, flash.data)
    assert dev.store.min_version == 3
    assert dev.update(signed(2).encode()) == Status.Rollback
    after = (bytes(dev.ram), dev.version, dev.store.version, dev.store.min_version)
    assert after == before[:4]
    meta = slice(layout.meta_block * BLOCK, (layout.meta_block + 2) * BLOCK)
    assert flash.data[meta] == before[4][meta] and flash.data[:SIZE] == before[4][:SIZE]
    assert dev.update(signed(3).encode()) == Status.Ok  # the floor's own release is fine


@pytest.mark.parametrize("kind", ["flash", "ram"])
def test_rollback_below_a_revoked_release(kind: str) -> None:
    """Threat: rollback to a release the vendor revoked after signing it: the
    raised floor is persisted and survives reboot."""
    layout = Layout.plan(BLOCK, PROG, SIZE, 3 * SIZE)
    flash = SimFlash(BLOCK, layout.block_count, PROG)
    flash.load(0, WEIGHTS[1])

    def boot() -> FlashModelDevice | RamModelDevice:
        if kind == "flash":
            d: FlashModelDevice | RamModelDevice = FlashModelDevice(
                flash, layout, FP, 1, buffer_len=BUF, public_key=VENDOR_PUB
            )
        else:
            d = RamModelDevice(
                flash, layout, FP, WEIGHTS[1], 1, buffer_len=BUF, public_key=VENDOR_PUB
            )
        assert d.boot() == Status.Ok
        return d

    assert boot().store.raise_min_version(5) == Status.Ok
    dev = boot()
    assert dev.store.min_version == 5 and dev.version == 1
    before = (flash.block(layout.meta_block), flash.block(layout.meta_block + 1))
    assert dev.update(signed(4).encode()) == Status.Rollback
    assert (flash.block(layout.meta_block), flash.block(layout.meta_block + 1)) == before
    assert dev.store.version == 1 and dev.update(signed(5).encode()) == Status.Ok


def endless_payloads() -> dict[str, tuple[bytes, Status]]:
    genuine = signed(4)
    raw = genuine.encode()
    last = raw[genuine.chunk_spans()[-1][0] :]
    u32 = 0xFFFFFFFF
    # a chunk head announcing 4 GiB of data after a valid header and signature
    if FMT == 1:
        huge_head = struct.pack("<III", 0, 0, u32)
    else:
        huge_head = bytes([codec.RAW]) + codec.varint(0) + codec.varint(u32)
    huge_chunk = raw[: genuine.chunks_start] + huge_head
    return {
        "junk_after_the_last_chunk": (raw + bytes(100_000), Status.TrailingData),
        "one_chunk_more_than_declared": (raw + last, Status.TrailingData),
        "huge_chunk_length": (huge_chunk + bytes(1000), Status.BadChunk),
        # headers only a buggy (or stolen-key) release could carry: still refused
        "huge_data_size": (rebuild(genuine, key=VENDOR, data_size=u32), Status.TooLarge),
        "huge_max_chunk": (rebuild(genuine, key=VENDOR, max_chunk=u32), Status.TooLarge),
        "huge_weights_size": (rebuild(genuine, key=VENDOR, weights_size=u32), Status.WrongSize),
        "huge_chunk_count": (rebuild(genuine, key=VENDOR, chunk_count=u32), Status.LayoutMismatch),
    }


@pytest.mark.parametrize("case", list(endless_payloads()))
def test_endless_data(victim: Victim, case: str) -> None:
    """Threat: endless data. More bytes than the header declares, or sizes
    far beyond the device: refused, nothing allocated or written past bounds."""
    raw, expected = endless_payloads()[case]
    refused(victim, raw, expected)


def test_endless_stream_is_cut_at_the_first_byte_past_the_payload() -> None:
    """A stream that never ends: the Updater consumes exactly the payload plus
    one byte, then refuses; a pull loop using bytes_wanted never reads it."""
    weights = bytearray(WEIGHTS[3])
    dev = Updater(weights, fingerprint=FP, current_version=3, buffer_len=BUF, public_key=VENDOR_PUB)
    raw = signed(4).encode()

    def forever() -> Iterator[bytes]:
        yield from (raw[i : i + 97] for i in range(0, len(raw), 97))
        yield from itertools.repeat(b"\xa5" * 97)

    assert dev.begin() == Status.Ok
    fed = 0
    for piece in forever():
        st = dev.feed(piece)
        fed += len(piece)
        if st != Status.Ok:
            break
        assert fed < len(raw) + 1000, "the device kept reading an endless stream"
    assert st == Status.TrailingData and dev.bytes_in == len(raw) + 1
    assert bytes(weights) == WEIGHTS[3]
    # pulled the way the Arduino helper does, nothing past the payload is read
    dev = Updater(
        bytearray(WEIGHTS[3]),
        fingerprint=FP,
        current_version=3,
        buffer_len=BUF,
        public_key=VENDOR_PUB,
    )
    stream = raw + b"\xa5" * 10_000
    pos = 0
    assert dev.begin() == Status.Ok
    while dev.bytes_wanted > 0:
        n = dev.bytes_wanted
        assert dev.feed(stream[pos : pos + n]) == Status.Ok
        pos += n
    assert pos == len(raw) and dev.finish() == Status.Ok


def mix_and_match() -> dict[str, tuple[bytes, Status]]:
    a = signed(4)
    b = signed(4, EVIL)  # same layout, other weights (say, from a compromised build box)
    c = signed(5)
    start = a.chunks_start
    head_a = a.encode()[:start]
    # the attacker recomputes B's chunk CRCs with A's header CRC (CRCs are no secret)
    b_rechained = Payload(a.header, b.chunks, a.signature).encode()[start:]
    # half A's chunks, half B's, all CRCs made to match A's header
    half = len(a.chunks) // 2
    spliced = Payload(a.header, (*a.chunks[:half], *b.chunks[half:]), a.signature).encode()[start:]
    return {
        "header_of_one_chunks_of_another": (head_a + b.encode()[start:], Status.ChunkCrc),
        "chunks_of_the_next_release": (head_a + c.encode()[start:], Status.ChunkCrc),
        "chunk_crcs_recomputed": (head_a + b_rechained, Status.DigestMismatch),
        "half_and_half_crcs_recomputed": (head_a + spliced, Status.DigestMismatch),
    }


@pytest.mark.parametrize("case", list(mix_and_match()))
def test_mix_and_match(victim: Victim, case: str) -> None:
    """Threat: mix and match. A genuine signed header with another payload's
    chunks: the chunk CRCs (seeded with the header CRC) catch plain splices;
    recomputed CRCs are caught by the signed SHA-256 digest before the
    commit, and the bytes already written are restored."""
    raw, expected = mix_and_match()[case]
    refused(victim, raw, expected)


def test_wrong_model(victim: Victim) -> None:
    """Threat: wrong model. A genuine release of another of the vendor's
    models (other fingerprint, or other region size) is refused before the
    signature is even checked and before anything is written."""
    other = pack(WEIGHTS[4], fingerprint=OTHER_FP, version=4, chunk_size=CHUNK, sign_key=VENDOR,
                 format_version=FMT)  # fmt: skip
    refused(victim, other.encode(), Status.WrongModel, then_update=False)
    bigger = signed(4, WEIGHTS[4] + b"\0")
    refused(victim, bigger.encode(), Status.WrongSize)


def test_freeze(victim: Victim) -> None:
    """Threat: freeze. A server (or a man in the middle) keeps answering with
    the release the device already runs, or an older one, to hold it back:
    each is refused and the device stays as it is (and the host sees why)."""
    refused(victim, signed(3).encode(), Status.AlreadyCurrent, then_update=False)
    delta = signed(3, base=WEIGHTS[2], base_version=2)
    refused(victim, delta.encode(), Status.AlreadyCurrent, then_update=False)
    refused(victim, signed(2).encode(), Status.Rollback)


def test_every_threat_has_a_test() -> None:
    names = {n for n in globals() if n.startswith("test_")}
    for threat in (
        "arbitrary_payload",
        "forged_signature",
        "rollback",
        "endless_data",
        "mix_and_match",
        "wrong_model",
        "freeze",
    ):
        assert f"test_{threat}" in names


def test_chunk_crc_seed_is_the_signed_header_crc() -> None:
    """Why a plain splice fails: chunk CRCs continue the header's CRC (v2:
    chunk 0 continues it, each later chunk the CRC before), and the header
    (with its CRC) is what the vendor signed."""
    p = signed(4)
    raw = p.encode()
    head_crc = crc32(raw[: p.header.length - 4])
    assert head_crc == p.header.crc
    c = p.chunks[0]
    body = c.data if isinstance(c, Chunk) else c.body
    assert c.crc(head_crc) == crc32(c.head() + body, head_crc)
    assert c.crc(head_crc) != c.crc(signed(5).header.crc)
    _start, end = p.chunk_spans()[0]
    assert raw[end - 4 : end] == struct.pack("<I", c.crc(head_crc))
