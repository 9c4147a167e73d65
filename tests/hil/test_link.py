"""The serial update protocol end to end: host push.py against a board.

Model-agnostic (see conftest.py): payloads are built for the fingerprint and
region size the board reports, at versions above the one it reports.
"""

from __future__ import annotations

import random
import time
import zlib

import pytest
import serial
from conftest import Board, read_info

from modelota.format.payload import pack
from modelota.link.linksim import LinkSim
from modelota.link.push import (
    ACK,
    DATA,
    HELLO,
    INFO,
    NAK,
    RESULT,
    START,
    Session,
    frame,
    push,
    transfer_id,
)
from modelota.status import CliError

# Payload chunks the smallest board's chunk buffer takes (the Mega 2560
# sketch has 128 bytes).
CHUNK = 128
NOISE = b"\x00\xa5\x13"  # a byte, then a SYNC0 that no SYNC1 follows
# Bytes sent up in the BER 1e-4 test: about 8 bit errors expected up alone
NOISY_BYTES = 10_000


def _await(s: Session, want: int, resend: bytes = b"", tries: int = 5) -> bytes:
    """Body of the board's next ``want`` frame. INFO and ACK frames before it
    are answers to a HELLO or START sent twice (the first answer came late)
    and are passed over; any other frame fails. Without an answer in 2 s,
    ``resend`` goes again, as a host does: a board under a loaded emulator
    may forget a frame its bytes paused in (MODELOTA_LINK_GAP_MS)."""
    for _ in range(tries):
        end = time.monotonic() + 2.0
        while (left := end - time.monotonic()) > 0:
            got = s.recv(left)
            if got is None:
                break
            if got[0] == want:
                return got[1]
            seen = f"0x{got[0]:02x} {got[1].hex()}"
            assert got[0] in (INFO, ACK), f"expected 0x{want:02x}, got {seen}"
        if resend:
            s.port.write(resend)
    raise AssertionError(f"no 0x{want:02x} frame from the board after {tries} tries")


def new_weights(b: Board, version: int) -> bytes:
    """Weights of the board's size, different for every version."""
    return bytes((((i * 7 + version * 13 + 3) ^ (i >> 4)) & 0xFF) for i in range(b.size))


def payload(b: Board, step: int = 1) -> tuple[bytes, int, bytes]:
    """A full update ``step`` versions above the board's: (payload, version, weights)."""
    v = b.version + step
    w = new_weights(b, v)
    return pack(w, fingerprint=b.fingerprint, version=v, chunk_size=CHUNK).encode(), v, w


def test_full_update_reports_crc_of_new_weights(board: Board) -> None:
    before = board.info
    if board.factory is not None:
        assert before.weights_crc == zlib.crc32(board.factory)
    pl, v, new = payload(board)
    assert zlib.crc32(new) != before.weights_crc
    r = push(board.url, pl)
    assert r.version == v
    assert r.weights_crc == zlib.crc32(new)  # the device's CRC is the host's
    after = read_info(board.url)
    assert after.version == v and after.weights_crc == zlib.crc32(new)
    assert after.state == 0 and after.transfer_id == 0
    assert after.probe != before.probe  # the inference sees the new weights
    if board.sim is not None:
        assert bytes(board.sim.weights) == new


def test_corrupted_chunk_is_naked_and_resent(board: Board) -> None:
    pl, v, new = payload(board)
    # flip one bit inside the body of the third DATA frame (after HELLO and
    # START), and a few more at random
    fs = 13 + min(256, board.info.max_data)
    at = len(frame(HELLO)) + 17 + 2 * fs + 20
    with LinkSim(board.addr, baud=0, corrupt_at={at}, ber=2e-6, seed=3) as sim:
        r = push(sim.url, pl, max_data=256)
    assert sim.stats.flipped_bits >= 1
    assert r.naks >= 1 and r.retransmitted_bytes > 0
    assert r.version == v and r.weights_crc == zlib.crc32(new)


def test_injected_bad_frame_gets_nak_and_update_succeeds(board: Board) -> None:
    """A DATA frame with a wrong CRC, sent by hand after noise, is answered
    by NAK (reason crc, nothing acked); the update then completes."""
    pl, v, new = payload(board)
    port = serial.serial_for_url(board.url, timeout=0.05)
    try:
        s = Session(port)
        info = s.hello(1.0, 3)
        tid = transfer_id(pl)
        got = s.request(START, len(pl).to_bytes(4, "little") + tid.to_bytes(4, "little"),
                        {ACK}, 1.0, 3)  # fmt: skip
        assert got is not None
        # noise, then HELLO: the receiver hunts through the noise for SYNC
        hello = NOISE + frame(HELLO)
        port.write(hello)
        _await(s, INFO, resend=hello)
        # noise and the bad frame together no longer than one whole frame:
        # with window 1 a board buffers no more (the Mega's 64-byte UART ring)
        n = min(64, info.max_data - len(NOISE))
        bad = bytearray(frame(DATA, (0).to_bytes(4, "little") + pl[:n]))
        bad[20] ^= 0x01
        port.write(NOISE + bytes(bad))
        body = _await(s, NAK, resend=NOISE + bytes(bad))
        assert body[:5] == bytes(4) + bytes([1]), body.hex()  # nothing acked, reason crc
    finally:
        port.close()
    r = push(board.url, pl)  # resumes the same transfer (acked 0) and completes
    assert r.version == v and r.weights_crc == zlib.crc32(new)


def test_drop_mid_update_resumes_from_acked_offset(board: Board) -> None:
    pl, v, new = payload(board)
    with LinkSim(board.addr, baud=0, drop_after=len(pl) // 2) as sim, pytest.raises(CliError):
        push(sim.url, pl, max_data=256, timeout=0.5, retries=2)
    mid = read_info(board.url)
    assert mid.state == 1 and mid.transfer_id == transfer_id(pl)
    assert 0 < mid.acked < len(pl)
    assert mid.version == board.version
    r = push(board.url, pl, max_data=256)
    assert r.resumed_from == mid.acked > 0
    assert r.version == v and r.weights_crc == zlib.crc32(new)


@pytest.mark.resume_timeout_ms(3000)
def test_drop_without_reconnect_times_out_to_good_weights(board: Board) -> None:
    """The host vanishes mid-update: the board ends the transfer itself after
    its resume timeout (it says so with RESULT Timeout to whoever listens)
    and runs the old weights."""
    pl, _, _ = payload(board)
    with LinkSim(board.addr, baud=0, drop_after=len(pl) // 2) as sim, pytest.raises(CliError):
        push(sim.url, pl, max_data=256, timeout=0.5, retries=1)
    port = serial.serial_for_url(board.url, timeout=0.05)
    try:
        s = Session(port)
        mid = s.hello(1.0, 3)
        assert mid.state == 1 and mid.acked > 0  # open, part of the new weights in
        # the board's own timeout, not ours: wait for its RESULT frame
        body = _await(s, RESULT, tries=int(board.resume_timeout_s * 2) + 5)  # 2 s each
        assert body[0] == 256 - 20, body.hex()  # Timeout (-20)
        after = s.hello(1.0, 3)
    finally:
        port.close()
    assert after.state == 0 and after.acked == 0
    assert after.version == board.version
    assert after.weights_crc == board.info.weights_crc
    assert after.probe == board.info.probe
    if board.sim is not None:
        assert bytes(board.sim.weights) == board.factory
        assert board.sim.last_result == -20  # Timeout


@pytest.mark.parametrize(
    ("kind", "expect"),
    [("wrong model", "wrong model"), ("rollback", "rollback"), ("same", "already current")],
)
def test_refused_before_any_data(board: Board, kind: str, expect: str) -> None:
    first, v, new = payload(board, step=4)
    push(board.url, first)  # the device is now at v
    other = bytes(b ^ 0xFF for b in board.fingerprint)
    if kind == "wrong model":
        pl = pack(new, fingerprint=other, version=v + 4, chunk_size=CHUNK).encode()
    elif kind == "rollback":
        pl = pack(new, fingerprint=board.fingerprint, version=v - 2, chunk_size=CHUNK).encode()
    else:
        pl = pack(new, fingerprint=board.fingerprint, version=v, chunk_size=CHUNK).encode()
    with LinkSim(board.addr, baud=0) as sim, pytest.raises(CliError, match=expect):
        push(sim.url, pl)
    # only HELLO went up: no START, no DATA
    assert sim.stats.up_bytes == len(frame(HELLO))
    assert read_info(board.url).version == v


def test_delta_update_and_wrong_base_refused(board: Board) -> None:
    if board.factory is None:
        pytest.skip(
            "a delta needs the bytes of the board's weights; a real board does not expose them"
        )
    base, v0 = board.factory, board.version
    new = bytearray(base)
    new[100:140] = bytes(40)
    new[len(new) * 3 // 4] ^= 0xFF
    delta = pack(bytes(new), fingerprint=board.fingerprint, version=v0 + 1, base=base,
                 base_version=v0, chunk_size=CHUNK).encode()  # fmt: skip
    assert len(delta) < len(pack(bytes(new), fingerprint=board.fingerprint, version=v0 + 1,
                                 chunk_size=CHUNK).encode()) // 2  # fmt: skip
    r = push(board.url, delta)
    assert r.version == v0 + 1 and r.weights_crc == zlib.crc32(bytes(new))
    stale = pack(bytes(new), fingerprint=board.fingerprint, version=v0 + 2, base=base,
                 base_version=v0, chunk_size=CHUNK).encode()  # fmt: skip
    with pytest.raises(CliError, match="wrong base"):
        push(board.url, stale)


def test_updates_at_ber_1e4_complete(board: Board) -> None:
    """Bit error rate 1e-4 both ways at 115200 baud with a 20 ms round trip:
    before protocol 2 about half of such pushes ended in the device's resume
    timeout. Pushes in a row (each a version up; at least four, and as many
    as it takes to send NOISY_BYTES, so a board with a small weight region
    sees bit errors too) all complete, and after each the device holds
    exactly the new weights."""
    ber = 1e-4
    with LinkSim(board.addr, baud=115200, rtt=0.02, ber=ber, seed=21) as sim:
        step = 0
        while step < 4 or sim.stats.up_bytes < NOISY_BYTES:
            step += 1
            pl, v, new = payload(board, step)
            r = push(sim.url, pl)
            assert r.version == v and r.weights_crc == zlib.crc32(new)
            after = read_info(board.url)
            assert after.state == 0 and after.version == v
            assert after.weights_crc == zlib.crc32(new)
            if board.sim is not None:
                assert bytes(board.sim.weights) == new
    bits = 8 * (sim.stats.up_bytes + sim.stats.down_bytes)
    print(f"{step} pushes, {bits} bits on the line, flipped bits: {sim.stats.flipped_bits}")
    assert sim.stats.flipped_bits >= 2  # the line was noisy (about 8 expected)


def test_update_over_slow_noisy_link(board: Board) -> None:
    """115200 baud, 20 ms round trip, random bit errors both ways (lost ACKs
    and NAKs too): the update still lands, bit-exact."""
    pl, v, new = payload(board)
    ber = max(5e-5, 2 / (8 * len(pl)))  # a few flipped bits, whatever the board's size
    with LinkSim(board.addr, baud=115200, rtt=0.02, ber=ber, seed=11) as sim:
        r = push(sim.url, pl, max_data=256, timeout=0.3, retries=20)
    assert sim.stats.flipped_bits >= 1
    assert r.version == v and r.weights_crc == zlib.crc32(new)
    assert read_info(board.url).weights_crc == zlib.crc32(new)


def peaked_weights(b: Board, version: int) -> bytes:
    """int8 weights of the board's size as training leaves them: most values
    near zero (order-0 entropy about 4.5 bits), different for every version."""
    r = random.Random(version)
    return bytes(max(-127, min(127, round(r.gauss(0, 6)))) & 0xFF for _ in range(b.size))


def test_compressed_update_over_noisy_link(board: Board) -> None:
    """A format v2 payload whose chunks are range coded (the packer's choice
    for int8-like weights) over a noisy line: corrupted compressed chunks are
    resent like any other bytes and the board decodes exactly the new
    weights."""
    v = board.version + 1
    new = peaked_weights(board, v)
    p = pack(new, fingerprint=board.fingerprint, version=v, chunk_size=CHUNK)
    pl = p.encode()
    assert any(name.startswith("rc") for name in p.encoding_stats())
    assert len(pl) < 0.8 * len(new)  # compressed, header and framing included
    ber = max(1e-4, 4 / (8 * len(pl)))  # a few flipped bits, whatever the board's size
    with LinkSim(board.addr, baud=115200, rtt=0.02, ber=ber, seed=5) as sim:
        r = push(sim.url, pl)
    assert sim.stats.flipped_bits >= 1
    assert r.version == v and r.weights_crc == zlib.crc32(new)
    after = read_info(board.url)
    assert after.state == 0 and after.weights_crc == zlib.crc32(new)
    if board.sim is not None:
        assert bytes(board.sim.weights) == new
