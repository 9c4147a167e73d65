"""The device side of the serial protocol (link.cpp), frame by frame,
through the native build: no sockets, a hand-driven clock."""

from __future__ import annotations

import struct
import zlib

import pytest

from modelota.format.payload import pack
from modelota.link.push import (
    ABORT,
    ACK,
    COMMIT,
    DATA,
    HELLO,
    INFO,
    NAK,
    RESULT,
    START,
    STATUS,
    FrameReader,
    Info,
    frame,
    transfer_id,
)
from modelota.sim.board import SimBoard, demo_model, probe_of
from modelota.status import Status

SIZE = 2048


class Dev:
    def __init__(self, **kw: int) -> None:
        self.weights, self.fp = demo_model(SIZE, seed=7)
        self.board = SimBoard(self.weights, fingerprint=self.fp, version=1, frame_data=256, **kw)
        self.board.record = True
        self.board.fake_ms = 0
        self.reader = FrameReader()

    def send(self, ftype: int, body: bytes = b"") -> list[tuple[int, bytes]]:
        return self.raw(frame(ftype, body))

    def raw(self, data: bytes) -> list[tuple[int, bytes]]:
        self.board.sent.clear()
        self.board.rx(data)
        return self.reader.feed(bytes(self.board.sent))

    def data(self, off: int, chunk: bytes) -> list[tuple[int, bytes]]:
        return self.send(DATA, struct.pack("<I", off) + chunk)


def new_of(w: bytes) -> bytes:
    return bytes((b + 1) % 256 for b in w)


def payload(d: Dev, version: int = 2) -> bytes:
    return pack(new_of(d.weights), fingerprint=d.fp, version=version, chunk_size=128).encode()


def start(d: Dev, pl: bytes) -> list[tuple[int, bytes]]:
    return d.send(START, struct.pack("<II", len(pl), transfer_id(pl)))


def ack(off: int) -> tuple[int, bytes]:
    return (ACK, struct.pack("<Ib", off, 0))


def nak(off: int, reason: int) -> tuple[int, bytes]:
    return (NAK, struct.pack("<IB", off, reason))


def test_info_describes_the_board() -> None:
    d = Dev(window=3)
    [(t, body)] = d.send(HELLO)
    info = Info.decode(body)
    assert t == INFO and info.proto == 2 and info.state == 0 and len(body) == 49
    assert info.fingerprint == d.fp and info.version == 1 and info.region_size == SIZE
    assert info.max_data == 256 and info.window == 3
    assert info.weights_crc == zlib.crc32(d.weights) and info.probe == probe_of(d.weights)
    assert info.resume_timeout_ms == 2000  # protocol 2: the host keeps the transfer open


def test_in_order_gap_duplicate_and_commit() -> None:
    d = Dev()
    pl = payload(d)
    assert start(d, pl) == [ack(0)]
    assert d.data(0, pl[:200]) == [ack(200)]
    assert d.data(400, pl[400:600]) == [nak(200, 2)]  # a frame was lost
    assert d.data(600, pl[600:800]) == []  # one NAK per gap
    assert d.data(0, pl[:200]) == [ack(200)]  # duplicate
    assert d.data(100, pl[100:300]) == [ack(300)]  # overlap: only the new bytes count
    assert d.send(COMMIT) == [nak(300, 5)]  # not everything yet
    for off in range(300, len(pl), 256):
        assert d.data(off, pl[off : off + 256]) == [ack(min(off + 256, len(pl)))]
    assert d.data(len(pl), b"x") == [nak(len(pl), 4)]  # past the end
    [(t, body)] = d.send(COMMIT)
    st, version, crc = struct.unpack("<bII", body)
    assert (t, st, version) == (RESULT, 0, 2)
    assert crc == zlib.crc32(new_of(d.weights)) == zlib.crc32(bytes(d.board.weights))
    assert d.send(COMMIT) == [(t, body)]  # a lost RESULT is repeated


def test_bad_crc_and_noise() -> None:
    d = Dev()
    pl = payload(d)
    assert d.raw(b"\x00\xa5\xa5\x11garbage") == []  # not answered, nothing open
    start(d, pl)
    bad = bytearray(frame(DATA, struct.pack("<I", 0) + pl[:100]))
    bad[-1] ^= 0xFF
    assert d.raw(bytes(bad)) == [nak(0, 1)]
    too_long = b"\xa5\x5a\x03\xff\xff"  # longer than the frame buffer: dropped
    assert d.raw(too_long + frame(DATA, struct.pack("<I", 0) + pl[:100])) == [ack(100)]
    assert d.board.frames_bad == 2


def test_resume_same_id_restart_other_id() -> None:
    d = Dev()
    pl = payload(d)
    start(d, pl)
    d.data(0, pl[:256])
    assert start(d, pl) == [ack(256)]  # same transfer: resume
    [(t, body)] = d.send(HELLO)
    info = Info.decode(body)
    assert info.state == 1 and info.acked == 256 and info.transfer_id == transfer_id(pl)
    pl3 = payload(d, version=3)
    assert start(d, pl3) == [ack(0)]  # another payload: the old one is aborted
    assert bytes(d.board.weights) == d.weights  # restored
    [(t, body)] = d.send(ABORT)
    assert t == RESULT and struct.unpack_from("<b", body)[0] == Status.Aborted


def test_cut_frame_is_forgotten_after_a_gap() -> None:
    d = Dev()
    pl = payload(d)
    start(d, pl)
    d.raw(frame(DATA, struct.pack("<I", 0) + pl[:200])[:50])  # the link died mid-frame
    d.board.fake_ms += 100
    got = d.send(HELLO)
    assert got[0] == nak(0, 1)  # the cut frame was a lost one (protocol 2)
    assert got[1][0] == INFO and len(got) == 2


def test_cut_frame_is_naked_by_poll() -> None:
    """A frame whose bytes stop (here: a corrupted length made the device wait
    for more) is NAKed by poll() after MODELOTA_LINK_GAP_MS, not only when
    the host's retransmission timeout sends more bytes."""
    d = Dev()
    pl = payload(d)
    start(d, pl)
    good = frame(DATA, struct.pack("<I", 0) + pl[:100])
    cut = bytearray(good)
    cut[3] = 200  # length 200 instead of 104: the device waits for 96 more bytes
    assert d.raw(bytes(cut)) == []
    d.board.sent.clear()
    d.board.fake_ms += 49
    d.board.poll()
    assert d.board.sent == b""
    d.board.fake_ms += 1
    d.board.poll()
    assert d.reader.feed(bytes(d.board.sent)) == [nak(0, 1)]
    assert d.raw(good) == [ack(100)]  # heard at once: the receiver hunts for SYNC again
    d.board.sent.clear()
    d.board.fake_ms += 1000
    d.board.poll()  # nothing pending: nothing sent
    assert d.board.sent == b"" and d.board.frames_bad == 1


def test_timeout_restores_and_reports() -> None:
    d = Dev(resume_timeout_ms=1000)
    pl = payload(d)
    start(d, pl)
    d.data(0, pl[:256])
    assert bytes(d.board.weights) != d.weights
    d.board.fake_ms = 999
    assert d.board.poll() == 0 and d.board.busy
    d.board.fake_ms = 1000
    assert d.board.poll() == Status.Timeout
    assert not d.board.busy and bytes(d.board.weights) == d.weights
    assert d.board.last_result == Status.Timeout


def test_updater_failure_ends_transfer_with_result() -> None:
    d = Dev()
    pl = bytearray(payload(d))
    pl[300] ^= 0x01  # inside a chunk: frame CRC fine, chunk CRC not
    start(d, bytes(pl))
    got = []
    for off in range(0, len(pl), 256):
        got += d.data(off, bytes(pl[off : off + 256]))
        if got and got[-1][0] == RESULT:
            break
    assert got[-1][0] == RESULT
    assert struct.unpack_from("<b", got[-1][1])[0] == Status.ChunkCrc
    assert bytes(d.board.weights) == d.weights and not d.board.busy


@pytest.mark.parametrize("store", [False, True])
def test_whole_update_with_and_without_store(store: bool) -> None:
    d = Dev(store=store)
    pl = payload(d)
    start(d, pl)
    for off in range(0, len(pl), 256):
        d.data(off, pl[off : off + 256])
    [(_, body)] = d.send(COMMIT)
    assert struct.unpack_from("<bI", body) == (0, 2)
    if store:
        assert d.board.store is not None and d.board.store.version == 2
        assert d.board.store.read_region() == new_of(d.weights)


# --- protocol 2: a noisy line --------------------------------------------------


def bad(ftype: int, body: bytes) -> bytes:
    """The frame with one bit of its body flipped: fails its CRC."""
    b = bytearray(frame(ftype, body))
    b[7] ^= 0x04
    return bytes(b)


def test_nak_repeated_once_per_host_round() -> None:
    """Go-back-N: the frames after a lost one are dropped without a word, but
    when the host has gone back and its resent frame is lost as well (the
    offsets go back), the device NAKs again instead of leaving the host to
    its timeout (protocol 1 NAKed once per gap)."""
    d = Dev()
    pl = payload(d)
    start(d, pl)
    assert d.data(0, pl[:256]) == [ack(256)]
    # round 1: 256 is lost, 512 and 768 arrive
    assert d.data(512, pl[512:768]) == [nak(256, 2)]
    assert d.data(768, pl[768:1024]) == []
    # round 2 (the host went back to 256): 256 is corrupted, 512 arrives again
    assert d.raw(bad(DATA, struct.pack("<I", 256) + pl[256:512])) == []
    assert d.data(512, pl[512:768]) == [nak(256, 2)]  # offsets went back: NAK again
    assert d.data(768, pl[768:1024]) == []
    # round 3 arrives whole
    assert d.data(256, pl[256:512]) == [ack(512)]
    assert d.data(512, pl[512:768]) == [ack(768)]
    # progress re-arms the NAK: the next loss is NAKed at once
    assert d.raw(bad(DATA, struct.pack("<I", 768) + pl[768:1024])) == [nak(768, 1)]


@pytest.mark.parametrize("window", [1, 2, 3])
def test_nak_repeated_after_a_window_of_losses(window: int) -> None:
    """With no offsets to tell rounds apart (every copy fails its CRC), the
    NAK comes again once ``window`` more frames were lost after it than the
    rest of one round can hold; with a window of 1 (the Mega sketch) every
    loss is NAKed."""
    d = Dev(window=window)
    pl = payload(d)
    start(d, pl)
    copy = bad(DATA, struct.pack("<I", 0) + pl[:256])
    got = [d.raw(copy) for _ in range(3 * window + 1)]
    naked = [i for i, g in enumerate(got) if g]
    assert naked == [0, window, 2 * window, 3 * window]
    assert all(g == [nak(0, 1)] for g in got if g)


def test_any_data_of_the_transfer_keeps_it_open() -> None:
    """The resume timer restarts on every DATA frame of the open transfer, in
    order or not, and on START; HELLO/STATUS (a poller that does not own the
    transfer) do not keep a half-written model alive."""
    d = Dev(resume_timeout_ms=1000)
    pl = payload(d)
    start(d, pl)
    assert d.data(0, pl[:256]) == [ack(256)]
    for t in (800, 1600, 2400):  # only out-of-order frames get through, for 2.4 s
        d.board.fake_ms = t
        d.data(768, pl[768:1024])
        assert d.board.poll() == 0 and d.board.busy
    d.board.fake_ms = 3200
    start(d, pl)  # a START of the same transfer: resumes, and is a keep-alive
    d.board.fake_ms = 4100
    d.send(HELLO)
    d.send(STATUS)
    assert d.board.poll() == 0 and d.board.busy
    d.board.fake_ms = 4200
    assert d.board.poll() == Status.Timeout  # 1000 ms after the START
    assert bytes(d.board.weights) == d.weights


def test_no_nak_once_everything_is_in() -> None:
    """With every byte acked a lost frame is a duplicate or a COMMIT the host
    repeats: a NAK then could only be taken for an answer to COMMIT (a
    protocol 1 host reports `did not receive the whole payload`)."""
    d = Dev()
    pl = payload(d)
    start(d, pl)
    for off in range(0, len(pl), 256):
        d.data(off, pl[off : off + 256])
    assert d.raw(bad(DATA, struct.pack("<I", 0) + pl[:256])) == []
    assert d.raw(bad(COMMIT, b"")) == []
    [(t, body)] = d.send(COMMIT)
    assert t == RESULT and body[0] == 0


def test_corrupt_length_is_naked_at_once() -> None:
    d = Dev()
    pl = payload(d)
    start(d, pl)
    assert d.raw(b"\xa5\x5a\x03\xff\xff") == [nak(0, 1)]  # longer than the frame buffer
    assert d.data(0, pl[:100]) == [ack(100)]


def test_info_v2_fields_and_tx_bound() -> None:
    """INFO grew by the resume timeout (49 bytes); every device frame still
    fits the 64-byte transmit buffer the host bounds lengths by."""
    from modelota.link.push import DEVICE_MAX_BODY

    d = Dev(resume_timeout_ms=12345)
    [(t, body)] = d.send(HELLO)
    assert t == INFO and Info.decode(body).resume_timeout_ms == 12345
    assert len(body) <= DEVICE_MAX_BODY
    old = Info.decode(body[:45])  # a protocol 1 INFO still decodes (timeout unknown)
    assert old.resume_timeout_ms == 0 and old.fingerprint == d.fp
