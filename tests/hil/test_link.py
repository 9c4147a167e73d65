"""The serial update protocol end to end: host push.py against a board."""

from __future__ import annotations

import time
import zlib

import pytest
from conftest import Board

from modelota.format import pack
from modelota.linksim import LinkSim
from modelota.push import DATA, HELLO, Info, Session, frame, push, transfer_id
from modelota.status import CliError


def new_weights(b: Board) -> bytes:
    return bytes((x * 7 + 3) % 256 for x in b.weights)


def payload(b: Board, version: int = 2, chunk: int = 512) -> bytes:
    return pack(
        new_weights(b), fingerprint=b.fingerprint, version=version, chunk_size=chunk
    ).encode()


def info(url: str) -> Info:
    import serial

    port = serial.serial_for_url(url, timeout=0.05)
    try:
        return Session(port).hello(1.0, 5)
    finally:
        port.close()


def test_full_update_reports_crc_of_new_weights(board: Board) -> None:
    before = info(board.url)
    assert before.version == board.version
    assert before.weights_crc == zlib.crc32(board.weights)
    r = push(board.url, payload(board))
    assert r.version == 2
    assert r.weights_crc == zlib.crc32(new_weights(board))
    after = info(board.url)
    assert after.version == 2 and after.weights_crc == zlib.crc32(new_weights(board))
    assert after.state == 0 and after.transfer_id == 0
    if board.sim is not None:
        assert bytes(board.sim.weights) == new_weights(board)


def test_corrupted_chunk_is_naked_and_resent(board: Board) -> None:
    pl = payload(board)
    # flip one bit inside the third DATA frame, and a few more at random
    with LinkSim(board.addr, baud=0, corrupt_at={2500}, ber=2e-6, seed=3) as sim:
        r = push(sim.url, pl, max_data=256)
    assert sim.stats.flipped_bits >= 1
    assert r.naks >= 1 and r.retransmitted_bytes > 0
    assert r.weights_crc == zlib.crc32(new_weights(board))


def test_injected_bad_frame_gets_nak_and_update_succeeds(board: Board) -> None:
    """A DATA frame with a wrong CRC, sent by hand, is answered by NAK."""
    import serial

    pl = payload(board)
    port = serial.serial_for_url(board.url, timeout=0.05)
    try:
        s = Session(port)
        from modelota.push import ACK, NAK, START

        s.hello(1.0, 3)
        tid = transfer_id(pl)
        got = s.request(START, len(pl).to_bytes(4, "little") + tid.to_bytes(4, "little"),
                        {ACK}, 1.0, 3)  # fmt: skip
        assert got is not None
        bad = bytearray(frame(DATA, (0).to_bytes(4, "little") + pl[:64]))
        bad[20] ^= 0x01
        s.send(HELLO)  # noise before: the receiver hunts for SYNC
        port.write(b"\x00\xa5\x13" + bytes(bad))
        kinds = []
        end = time.monotonic() + 2
        while time.monotonic() < end and NAK not in kinds:
            got = s.recv(0.5)
            if got is not None:
                kinds.append(got[0])
        assert NAK in kinds
    finally:
        port.close()
    r = push(board.url, pl)  # resumes the same transfer (acked 0) and completes
    assert r.weights_crc == zlib.crc32(new_weights(board))


def test_drop_mid_update_resumes_from_acked_offset(board: Board) -> None:
    pl = payload(board)
    with LinkSim(board.addr, baud=0, drop_after=len(pl) // 2) as sim, pytest.raises(CliError):
        push(sim.url, pl, max_data=256, timeout=0.5, retries=2)
    mid = info(board.url)
    assert mid.state == 1 and mid.transfer_id == transfer_id(pl)
    assert 0 < mid.acked < len(pl)
    assert mid.version == 1
    r = push(board.url, pl, max_data=256)
    assert r.resumed_from == mid.acked > 0
    assert r.version == 2 and r.weights_crc == zlib.crc32(new_weights(board))


def test_drop_without_reconnect_times_out_to_good_weights(board: Board) -> None:
    pl = payload(board)
    with LinkSim(board.addr, baud=0, drop_after=len(pl) // 2) as sim, pytest.raises(CliError):
        push(sim.url, pl, max_data=256, timeout=0.5, retries=1)
    time.sleep(board.resume_timeout_s + 0.5)
    after = info(board.url)
    assert after.state == 0 and after.acked == 0
    assert after.version == 1
    assert after.weights_crc == zlib.crc32(board.weights)
    if board.sim is not None:
        assert bytes(board.sim.weights) == board.weights
        assert board.sim.last_result == -20  # Timeout


@pytest.mark.parametrize(
    ("kind", "expect"),
    [("wrong model", "wrong model"), ("rollback", "rollback"), ("same", "already current")],
)
def test_refused_before_any_data(board: Board, kind: str, expect: str) -> None:
    push(board.url, payload(board, version=5))  # device now at version 5
    new = new_weights(board)
    if kind == "wrong model":
        pl = pack(new, fingerprint=bytes(16), version=9).encode()
    elif kind == "rollback":
        pl = pack(new, fingerprint=board.fingerprint, version=3).encode()
    else:
        pl = pack(new, fingerprint=board.fingerprint, version=5).encode()
    with LinkSim(board.addr, baud=0) as sim, pytest.raises(CliError, match=expect):
        push(sim.url, pl)
    # only HELLO went up: no START, no DATA
    assert sim.stats.up_bytes == len(frame(HELLO))
    assert info(board.url).version == 5


def test_delta_update_and_wrong_base_refused(board: Board) -> None:
    new = bytearray(board.weights)
    new[100:140] = bytes(40)
    new[3000] ^= 0xFF
    delta = pack(
        bytes(new), fingerprint=board.fingerprint, version=2, base=board.weights, base_version=1
    ).encode()
    assert len(delta) < len(board.weights) // 4
    r = push(board.url, delta)
    assert r.version == 2 and r.weights_crc == zlib.crc32(bytes(new))
    stale = pack(
        bytes(new), fingerprint=board.fingerprint, version=3, base=board.weights, base_version=1
    ).encode()
    with pytest.raises(CliError, match="wrong base"):
        push(board.url, stale)


def test_update_over_slow_noisy_link(board: Board) -> None:
    """115200 baud, 20 ms round trip, random bit errors both ways (lost ACKs
    and NAKs too): the update still lands, bit-exact."""
    pl = payload(board)
    with LinkSim(board.addr, baud=115200, rtt=0.02, ber=5e-5, seed=11) as sim:
        r = push(sim.url, pl, max_data=256, timeout=0.3, retries=20)
    assert sim.stats.flipped_bits >= 1
    assert r.version == 2 and r.weights_crc == zlib.crc32(new_weights(board))
    assert info(board.url).weights_crc == zlib.crc32(new_weights(board))
