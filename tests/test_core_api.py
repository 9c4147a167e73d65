"""(d) CRC32 equals zlib's, and the C API, status codes and names match the Python mirror."""

from __future__ import annotations

import re
import zlib

from hypothesis import given
from hypothesis import strategies as st

from modelota import Status
from modelota.sim.native import Updater, crc32, load, status_name
from payloads import FP


@given(data=st.binary(max_size=70_000), start=st.integers(0, 2**32 - 1))
def test_crc32_matches_zlib(data: bytes, start: int) -> None:
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data, start) == zlib.crc32(data, start)


@given(a=st.binary(max_size=2000), b=st.binary(max_size=2000))
def test_crc32_chains_like_zlib(a: bytes, b: bytes) -> None:
    assert crc32(b, crc32(a)) == zlib.crc32(a + b)


def snake(name: str) -> str:
    return "MODELOTA_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_status_codes_and_names_match_the_c_header() -> None:
    lib = load().lib
    native = {n: getattr(lib, n) for n in dir(lib) if n.startswith("MODELOTA_")}
    for s in Status:
        assert native[snake(s.name)] == s.value, s
        assert status_name(s.value) == s.name
    c_statuses = {n for n in native if n not in {"MODELOTA_STATUS_MIN"}} & {
        snake(s.name) for s in Status
    }
    assert len(c_statuses) == len(Status)
    assert native["MODELOTA_STATUS_MIN"] == min(Status)
    assert status_name(-999) == "Unknown"


def test_format_constants_match() -> None:
    from modelota.format import payload as f

    lib = load().lib
    assert lib.MODELOTA_HEADER_LEN == f.HEADER_LEN
    assert lib.MODELOTA_HEADER_CRC_OFFSET == f.HEADER_CRC_OFFSET
    assert lib.MODELOTA_FINGERPRINT_LEN == f.FINGERPRINT_LEN
    assert lib.MODELOTA_DIGEST_LEN == f.DIGEST_LEN
    assert lib.MODELOTA_CHUNK_HEAD_LEN == f.CHUNK_HEAD_LEN
    assert lib.MODELOTA_CHUNK_TAIL_LEN == f.CHUNK_TAIL_LEN
    assert lib.MODELOTA_FORMAT_VERSION == f.FORMAT_VERSION
    assert lib.MODELOTA_DIGEST_CRC32 == f.DIGEST_CRC32
    assert lib.MODELOTA_FLAG_DELTA == f.FLAG_DELTA


def test_updater_state_fits_the_ram_budget() -> None:
    ffi = load().ffi
    size = ffi.sizeof("modelota_updater")
    decoder = ffi.sizeof("modelota_decoder")
    print(f"sizeof(modelota_updater) on this host: {size} bytes ({decoder} of them the decoder)")
    assert size - decoder <= 320  # MODELOTA_MAX_UPDATER_BYTES
    assert decoder <= 1024  # MODELOTA_MAX_DECODER_BYTES: what decoding v2 costs beyond the buffer


def test_misuse_is_refused() -> None:
    w = bytearray(100)
    dev = Updater(w, fingerprint=FP, current_version=1)
    assert dev.feed(b"MOTA") == Status.BadState  # before begin
    assert dev.finish() == Status.BadState
    assert dev.begin() == Status.Ok
    assert dev.begin() == Status.BadState  # twice
    small = Updater(bytearray(100), fingerprint=FP, current_version=1, buffer_len=95)
    assert small.init_status == Status.InvalidArgument
    assert small.begin() == Status.BadState


def test_wrong_stream_is_refused_at_the_fourth_byte() -> None:
    w = bytearray(b"\x55" * 64)
    dev = Updater(w, fingerprint=FP, current_version=1)
    assert dev.begin() == Status.Ok
    assert dev.feed(b"GIF") == Status.Ok
    assert dev.feed(b"8") == Status.BadMagic
    assert dev.bytes_in == 4
