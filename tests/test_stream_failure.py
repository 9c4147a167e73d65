"""(c) The stream stops (timeout, abort, storage error) at any byte: the old weights come back."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelota import Status
from modelota.sim.native import Faults, Updater
from payloads import FP, Case, cases, every_encoding_payload

RESTORE_NONE, RESTORE_RANGES, RESTORE_FULL, RESTORE_FAILED = 0, 1, 2, 3


def fixed_cases() -> list[Case]:
    rnd = random.Random(21)
    old = rnd.randbytes(1500)
    delta_new = bytearray(old)
    delta_new[100:130] = rnd.randbytes(30)
    delta_new[900:1400] = rnd.randbytes(500)
    return [
        Case(old, rnd.randbytes(1500), 128, False, 3, 4),
        Case(old, bytes(delta_new), 64, True, 3, 4),
    ]


@pytest.mark.parametrize("case", fixed_cases(), ids=["full", "delta"])
@pytest.mark.parametrize("reason", [Status.Timeout, Status.Aborted])
def test_stop_at_every_byte_restores_then_retry_succeeds(case: Case, reason: Status) -> None:
    """Exhaustive: for every prefix length, stop there, then run the whole update again."""
    raw = case.payload().encode()
    for stop in range(len(raw) + 1):
        dev = case.device(target_mode="callback" if stop % 2 else "ram")
        assert dev.begin() == Status.Ok
        assert dev.feed(raw[:stop]) == Status.Ok
        assert dev.abort(reason) == reason, stop
        assert bytes(dev.weights) == case.old, f"stop at byte {stop}: weights not restored"
        assert dev.current_version == case.current_version
        assert dev.weights_intact
        # the device is still updatable
        assert dev.apply(raw) == Status.Ok, stop
        assert bytes(dev.weights) == case.new


@pytest.mark.parametrize("reason", [Status.Timeout, Status.Aborted])
def test_stop_at_every_byte_of_a_payload_in_every_encoding(reason: Status) -> None:
    """Exhaustive over a v2 delta with one chunk in each encoding: wherever the
    stream stops, mid-varint, mid-range-coder, the old weights come back and
    the whole update then goes through."""
    old, new, payload = every_encoding_payload(9)
    raw = payload.encode()
    for stop in range(len(raw) + 1):
        dev = Updater(bytearray(old), fingerprint=FP, current_version=1,
                      target_mode="callback" if stop % 2 else "ram")  # fmt: skip
        assert dev.begin() == Status.Ok
        assert dev.feed(raw[:stop]) == Status.Ok
        assert dev.abort(reason) == reason, stop
        assert bytes(dev.weights) == old, f"stop at byte {stop}: weights not restored"
        assert dev.weights_intact
        assert dev.apply(raw) == Status.Ok, stop
        assert bytes(dev.weights) == new


@given(data=st.data(), case=cases(max_size=20_000))
def test_stop_anywhere_random(data: st.DataObject, case: Case) -> None:
    raw = case.payload().encode()
    stop = data.draw(st.integers(0, len(raw)))
    backup_mode = data.draw(st.sampled_from(["image", "callback"]))
    dev = case.device(backup_mode=backup_mode)
    assert dev.begin() == Status.Ok
    assert dev.feed(raw[:stop]) == Status.Ok
    assert dev.abort(Status.Timeout) == Status.Timeout
    assert bytes(dev.weights) == case.old
    # nothing was committed and nothing is committed later by mistake
    assert dev.finish() == Status.Timeout
    assert dev.feed(b"x") == Status.Timeout
    assert bytes(dev.weights) == case.old


@given(data=st.data(), case=cases(max_size=8000).filter(lambda c: len(c.new) > 0))
def test_target_write_failure_restores(data: st.DataObject, case: Case) -> None:
    p = case.payload()
    fail_at = data.draw(st.integers(0, max(0, p.header.chunk_count - 1)))
    dev = case.device(target_mode="callback", faults=Faults(fail_write_at=fail_at))
    status = dev.apply(p.encode())
    if p.header.chunk_count == 0:
        assert status == Status.Ok
        return
    assert status == Status.StorageIo
    assert bytes(dev.weights) == case.old
    assert dev.weights_intact


def test_backup_unreadable_during_restore_is_reported_and_blocks_updates() -> None:
    rnd = random.Random(5)
    case = Case(rnd.randbytes(1000), rnd.randbytes(1000), 100, False, 1, 2)
    raw = bytearray(case.payload().encode())
    raw[-10] ^= 0x40  # the last chunk is damaged: restore needed
    dev = case.device(backup_mode="callback", faults=Faults(backup_fail_read_at=0))
    assert dev.apply(bytes(raw)) == Status.ChunkCrc
    assert dev.restore == RESTORE_FAILED
    assert not dev.weights_intact
    assert dev.begin() == Status.StorageIo


def test_backup_of_another_version_reloads_the_whole_region() -> None:
    """The device runs v2 but only has the v1 factory image to restore from."""
    rnd = random.Random(6)
    factory, v2, v3 = (rnd.randbytes(1200) for _ in range(3))
    dev = Updater(
        bytearray(v2), fingerprint=FP, current_version=2, backup=factory, backup_version=1
    )
    raw = bytearray(Case(v2, v3, 100, False, 2, 3).payload().encode())
    raw[-3] ^= 1
    assert dev.apply(bytes(raw)) == Status.ChunkCrc
    assert dev.restore == RESTORE_FULL
    assert bytes(dev.weights) == factory
    assert dev.current_version == 1
    # a refusal before any write keeps v2: nothing was touched
    dev2 = Updater(
        bytearray(v2), fingerprint=FP, current_version=2, backup=factory, backup_version=1
    )
    assert dev2.apply(bytes(raw[:50])) == Status.Truncated
    assert dev2.restore == RESTORE_NONE and bytes(dev2.weights) == v2


def test_abort_after_the_last_chunk_but_before_finish_restores() -> None:
    rnd = random.Random(8)
    case = Case(rnd.randbytes(500), rnd.randbytes(500), 100, False, 1, 2)
    dev = case.device()
    assert dev.begin() == Status.Ok
    assert dev.feed(case.payload().encode()) == Status.Ok
    assert dev.verified
    assert dev.abort() == Status.Aborted
    assert dev.restore == RESTORE_RANGES
    assert bytes(dev.weights) == case.old
