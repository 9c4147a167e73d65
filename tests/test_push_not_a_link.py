"""`modelota push` tells a raw-payload sketch from silence in one line.

The pure classification (host_tools/modelota/link/push.py: not_a_link,
explain_silence) on the bytes a device sends back to HELLO. The sketches
themselves answer in tests/test_quickstart_board.py (qemu-system-avr) and
tests/test_arduino_glue.py (the glue on the host).
"""

from __future__ import annotations

import random
import struct

from modelota.link.push import HELLO, INFO, RESULT, explain_silence, frame, not_a_link


def result(status: int) -> tuple[int, bytes]:
    return RESULT, struct.pack("<bII", status, 1, 0)


def test_a_result_frame_saying_bad_magic_is_a_raw_payload_sketch() -> None:
    hint = not_a_link(result(-1), frame(*result(-1)))
    assert hint is not None and "reads raw payloads" in hint and "in text" not in hint
    assert "examples/SerialUpdate" in hint and "\n" not in hint


def test_the_status_name_in_text_is_a_raw_payload_sketch() -> None:
    hint = not_a_link(None, b"version 1, weights crc32 AD6DD57C\r\nupdate: BadMagic\r\n")
    assert hint is not None and "in text" in hint


def test_other_answers_are_not_classified() -> None:
    assert not_a_link(result(-20), frame(*result(-20))) is None  # a link's RESULT{Timeout}
    assert not_a_link((INFO, bytes(45)), b"") is None
    assert not_a_link(None, b"hello world\r\n") is None
    assert not_a_link((RESULT, b""), b"") is None  # a short body is not a status


def test_silence_and_text_get_their_own_line() -> None:
    assert explain_silence(b"").startswith("no answer from the device")
    assert explain_silence(frame(HELLO) * 3).startswith("no answer from the device")
    noise = random.Random(5).randbytes(512)
    assert explain_silence(noise).startswith("no answer from the device"), noise
    msg = explain_silence(b"\x00\xffBooting sensor hub v3.2\r\nready\r\n")
    assert msg.startswith("the device sends text, not ModelOTA link frames")
    assert "'Booting sensor hub v3.2'" in msg and "\n" not in msg
    long = explain_silence(b"x" * 10 + b"abcdefghij" * 20)
    assert "..." in long and len(long) < 260
