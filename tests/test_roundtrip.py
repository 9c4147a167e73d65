"""(a) Packed in Python, applied by the native C++ core: the weights become the new ones.

Cases are wire format v1 and v2, random and weight-like bytes (so v2 chunks are
raw, runs and range coded, with differences in deltas); a v2 delta with one
chunk in every encoding is applied to every kind of target, through the Store
too, in any split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelota import Device, Status, apply_reference, parse
from modelota.sim.native import Updater
from payloads import EVERY_ENCODING, FP, Case, cases, every_encoding_payload, splits


@given(data=st.data(), case=cases())
def test_pack_then_native_apply_gives_new_weights(data: st.DataObject, case: Case) -> None:
    payload = case.payload()
    raw = payload.encode()
    cut = data.draw(splits(len(raw)), label="splits")
    target_mode = data.draw(st.sampled_from(["ram", "callback"]), label="target")
    backup_mode = data.draw(st.sampled_from(["image", "callback"]), label="backup")
    dev = case.device(target_mode=target_mode, backup_mode=backup_mode)
    assert dev.init_status == Status.Ok

    assert dev.apply(raw, cut) == Status.Ok
    assert bytes(dev.weights) == case.new
    assert dev.current_version == case.new_version
    assert dev.bytes_in == len(raw)
    assert dev.weights_intact
    # the Python reader agrees and sees the same layout
    assert case.reference(raw) == Status.Ok
    assert parse(raw) == payload


@given(case=cases(max_size=5000))
def test_delta_ships_only_changed_ranges(case: Case) -> None:
    case.delta = True
    payload = case.payload()
    changed = sum(a != b for a, b in zip(case.old, case.new, strict=True))
    assert payload.header.data_size >= changed
    for off, length in payload.segments:
        # every shipped range starts and ends on a changed byte
        assert case.old[off] != case.new[off]
        assert case.old[off + length - 1] != case.new[off + length - 1]


def test_bytes_wanted_never_reads_past_the_payload() -> None:
    """A pull loop that reads only bytes_wanted stops exactly at the payload's end."""
    import random

    rnd = random.Random(7)
    old, new = rnd.randbytes(3000), rnd.randbytes(3000)
    case = Case(old, new, 200, False, 1, 2)
    stream = case.payload().encode() + b"NEXT-MESSAGE"
    dev = case.device()
    assert dev.begin() == Status.Ok
    pos = 0
    while dev.bytes_wanted:
        n = min(dev.bytes_wanted, rnd.randint(1, 50))
        assert dev.feed(stream[pos : pos + n]) == Status.Ok
        pos += n
    assert stream[pos:] == b"NEXT-MESSAGE"
    assert dev.verified and dev.finish() == Status.Ok
    assert bytes(dev.weights) == new


def test_successive_updates_chain_versions() -> None:
    import random

    rnd = random.Random(3)
    weights = [rnd.randbytes(1000) for _ in range(4)]
    dev = Case(weights[0], weights[1], 128, False, 1, 2).device()
    for version, w in enumerate(weights[1:], start=2):
        raw = Case(weights[0], w, 128, False, version - 1, version).payload().encode()
        assert dev.apply(raw) == Status.Ok
        assert bytes(dev.weights) == w and dev.current_version == version
    # the fingerprint used throughout is the test model's
    assert FP != bytes(16)


@given(
    data=st.data(),
    seed=st.integers(0, 2**16),
    digest=st.sampled_from(["crc32", "sha256"]),
    target_mode=st.sampled_from(["ram", "callback"]),
    backup_mode=st.sampled_from(["image", "callback"]),
)
def test_every_encoding_applies_in_any_split(
    data: st.DataObject, seed: int, digest: str, target_mode: str, backup_mode: str
) -> None:
    old, new, payload = every_encoding_payload(seed, digest=digest)
    assert [c.encoding for c in payload.chunks] == [e for e, _ in EVERY_ENCODING]  # type: ignore[union-attr]
    raw = payload.encode()
    dev = Updater(bytearray(old), fingerprint=FP, current_version=1, target_mode=target_mode,
                  backup_mode=backup_mode)  # fmt: skip
    assert dev.apply(raw, data.draw(splits(len(raw)), label="splits")) == Status.Ok
    assert bytes(dev.weights) == new and dev.current_version == 2
    ref = Device(FP, 1, bytearray(old))
    assert apply_reference(raw, ref).status == Status.Ok and bytes(ref.weights) == new
    assert parse(raw) == payload


def test_every_encoding_through_the_store() -> None:
    """The Store logs the encoded bytes and decodes them again while it
    rewrites the region (flash model: verify only while streaming, then
    apply from the log; RAM model: in place, then persisted); a reboot
    finds exactly the new weights."""
    from modelota.sim.device import FlashModelDevice, Layout, RamModelDevice
    from modelota.sim.flash import SimFlash

    old, new, payload = every_encoding_payload(5)
    raw = payload.encode()
    for kind in ("flash", "ram"):
        layout = Layout.plan(256, 4, len(old), 2 * len(raw))
        flash = SimFlash(256, layout.block_count, 4)
        if kind == "flash":
            flash.load(0, old)
            dev: FlashModelDevice | RamModelDevice = FlashModelDevice(flash, layout, FP, 1)
        else:
            dev = RamModelDevice(flash, layout, FP, old, 1)
        assert dev.boot() == Status.Ok
        assert dev.update(raw) == Status.Ok
        flash.reboot()
        again = (FlashModelDevice(flash, layout, FP, 1) if kind == "flash"
                 else RamModelDevice(flash, layout, FP, old, 1))  # fmt: skip
        assert again.boot() == Status.Ok and again.version == 2
        held = again.weights() if isinstance(again, FlashModelDevice) else bytes(again.ram)
        assert held == new, kind


def test_kept_source_beside_small_chunks_sets_max_chunk_to_the_buffer_needed() -> None:
    """Two changed float32 vectors far apart, each its own small chunk: the
    later predicted from the earlier, kept. The header's max_chunk is the
    buffer that needs (the target's chunk beside the kept bytes), not the
    largest chunk. The C++ core applies it with its smallest buffer (96
    bytes); the Python reference's device with exactly that buffer applies
    it, one byte less refuses it before writing."""
    import random
    import struct

    from modelota.format import codec
    from modelota.format.payload import pack

    rnd = random.Random(3)
    old = bytearray(rnd.randbytes(600))
    new = bytearray(old)
    divisor = int.from_bytes(struct.pack("<f", 0.0173), "little")
    src = struct.pack("<10f", *(rnd.uniform(1e-4, 1e-2) for _ in range(10)))
    new[0:40] = src
    new[500:540] = codec.predict(src, divisor)
    p = pack(bytes(new), fingerprint=FP, version=2, chunk_size=256, base=bytes(old),
             base_version=1, predictions=[(500, 10, 0, divisor)])  # fmt: skip
    assert [(c.offset, c.length, c.keep is not None, c.pred is not None)
            for c in p.chunks] == [(0, 40, True, False), (500, 40, False, True)]  # type: ignore[union-attr]  # fmt: skip
    assert p.header.max_chunk == 80
    raw = p.encode()
    for buffer_len, status in ((96, Status.Ok), (256, Status.Ok)):
        dev = Updater(bytearray(old), fingerprint=FP, current_version=1, buffer_len=buffer_len)
        assert dev.apply(raw) == status and bytes(dev.weights) == new
    ref = Device(FP, 1, bytearray(old), 80)
    assert apply_reference(raw, ref).status == Status.Ok and bytes(ref.weights) == new
    short = Device(FP, 1, bytearray(old), 79)
    assert apply_reference(raw, short).status == Status.TooLarge and bytes(short.weights) == old
