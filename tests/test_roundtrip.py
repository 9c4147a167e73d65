"""(a) Packed in Python, applied by the native C++ core: the weights become the new ones."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelota import Status, parse
from payloads import FP, Case, cases, splits


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
