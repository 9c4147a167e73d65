"""The v2 chunk encodings: the Python codec (format/codec.py) and the C++
decoder (firmware_lib/modelota/decode.cpp), written apart from the spec in
docs/FORMAT.md, agree byte for byte and probability for probability.

* every encoder output decodes back to its input (hypothesis, all methods);
* the C++ decoder, fed any bytes in any pieces and output windows, produces
  exactly what the Python decoder produces from the same bytes, and leaves the
  range coder's model in the same state: for valid encodings and for noise
  (the decoders are total functions; the chunk CRC refuses damage).
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from modelota.format import codec
from modelota.sim.native import load
from modelota.sim.sweep import weights_like
from payloads import fdiv_ieee


def shaped(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    return weights_like(rnd, n) if seed % 3 else rnd.randbytes(n)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 3000), offset=st.integers(0, 7),
       lanes=st.booleans())  # fmt: skip
def test_python_round_trip(seed: int, n: int, offset: int, lanes: bool) -> None:
    data = shaped(seed, n)
    enc, dec = codec.Model(), codec.Model()
    body = codec.rc_encode(data, offset, lanes, enc)
    assert bytes(codec.rc_decode(body, n, offset, lanes, dec)) == data
    assert (enc.lit, enc.lane) == (dec.lit, dec.lane)
    assert not body.endswith(b"\x00"), "trailing zeros are implied: never sent"
    assert bytes(codec.runs_decode(codec.runs_encode(data), n)) == data


def test_weight_like_bytes_compress_and_noise_does_not() -> None:
    rnd = random.Random(1)
    like = weights_like(rnd, 20_000)
    assert len(codec.rc_encode(like, 0, False, codec.Model())) < 0.8 * len(like)
    noise = rnd.randbytes(4096)
    assert len(codec.rc_encode(noise, 0, False, codec.Model())) > len(noise)
    zeros = bytes(5000)
    assert len(codec.runs_encode(zeros)) <= 3
    assert len(codec.rc_encode(zeros, 0, False, codec.Model())) < 30


def test_varints() -> None:
    for v in (0, 1, 127, 128, 300, 2**21, 2**32 - 1):
        raw = codec.varint(v)
        assert codec.read_varint(raw, 0) == (v, len(raw), True)
    assert codec.read_varint(b"\x80\x00", 0)[2] is False  # not minimal
    assert codec.read_varint(b"\xff\xff\xff\xff\x10", 0)[2] is False  # above 2**32-1
    assert codec.read_varint(b"\xff\xff\xff\xff\x8f\x01", 0)[2] is False  # 6 bytes
    assert codec.read_varint(b"\x80", 0)[0] is None  # more bytes needed


class NativeDecoder:
    """modelota_decode through cffi, fed in pieces and windows."""

    def __init__(self) -> None:
        self.n = load()
        self.d = self.n.ffi.new("modelota_decoder*")
        self.n.lib.modelota_decoder_reset(self.d)

    def chunk(self, enc: int, body: bytes, length: int, offset: int, base: bytes,
              rnd: random.Random) -> bytes:  # fmt: skip
        lib, ffi = self.n.lib, self.n.ffi
        out = ffi.new("uint8_t[]", base or b"\0" * length)  # DIFF adds to the base bytes
        lib.modelota_decode_begin(self.d, enc, offset, length)
        src = ffi.from_buffer(body) if body else ffi.NULL
        at = 0
        for _ in range(4 * (len(body) + length) + 8):
            done = lib.modelota_decoded(self.d)
            if done == length:
                break
            to = rnd.randint(done + 1, length)
            window = out + done
            if at == len(body):
                lib.modelota_decode(self.d, ffi.NULL, 0, window, done, to)
                continue
            k = rnd.randint(1, len(body) - at)
            used = lib.modelota_decode(self.d, src + at, k, window, done, to)
            assert used <= k
            at += used
        assert lib.modelota_decoded(self.d) == length
        return bytes(ffi.buffer(out, length))

    def model(self) -> tuple[list[int], list[int]]:
        return list(self.d.lit), list(self.d.lane)


chunk_plan = st.lists(
    st.tuples(
        st.sampled_from([codec.RAW, codec.RUNS, codec.RC]),
        st.booleans(),  # DIFF
        st.booleans(),  # LANES (RC)
        st.integers(1, 700),  # length
        st.integers(0, 2**20),  # offset
        st.sampled_from(["valid", "noise", "cut", "flipped"]),
        st.integers(0, 2**32 - 1),  # seed
    ),
    min_size=1,
    max_size=6,
)


@given(plan=chunk_plan, split_seed=st.integers(0, 2**32 - 1))
def test_cpp_decoder_agrees_with_python(plan: list[tuple], split_seed: int) -> None:  # type: ignore[type-arg]
    native = NativeDecoder()
    model = codec.Model()  # lives across the chunks, as in a payload
    rnd = random.Random(split_seed)
    for method, diff, lanes, length, offset, kind, seed in plan:
        r = random.Random(seed)
        data = shaped(seed, length)
        lanes = lanes and method == codec.RC
        enc = method | (codec.DIFF if diff else 0) | (codec.LANES if lanes else 0)
        if method == codec.RC:
            body = codec.rc_encode(data, offset, lanes, model.copy())
        elif method == codec.RUNS:
            body = codec.runs_encode(data)
        else:
            body = data
        if kind == "noise":
            body = r.randbytes(r.randint(0, length))
        elif kind == "cut":
            body = body[: r.randint(0, len(body))]
        elif kind == "flipped" and body:
            b = bytearray(body)
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
            body = bytes(b)
        decoded = codec.decode(enc, body, length, offset, model)
        assert len(decoded) == length
        if kind == "valid":
            assert bytes(decoded) == data
        base = r.randbytes(length) if diff else b""
        expected = codec.apply_diff(decoded, base) if diff else bytes(decoded)
        got = native.chunk(enc, body, length, offset, base, rnd)
        assert got == expected, (enc, kind, length)
        assert native.model() == (model.lit, model.lane), "the range coder models drifted apart"


# ---------------------------------------------------------------- PRED's fdiv

finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def f32_bits(x: float) -> int:
    import struct

    return int.from_bytes(struct.pack("<f", x), "little")


@given(a=st.one_of(finite_f32, st.integers(0, 2**32 - 1).map(float)),
       d=st.one_of(finite_f32, st.sampled_from([3e-3, 1.0, 0.5, 2.0**-126, 3.4e38])),
       raw=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)) | st.none())  # fmt: skip
def test_fdiv_is_ieee_division_bit_for_bit_in_python_and_cpp(
    a: float, d: float, raw: tuple[int, int] | None
) -> None:
    """fdiv (format/codec.py and decode.cpp, written apart) equals IEEE single
    division wherever the operands and quotient are normal, is 0 elsewhere,
    and the two implementations agree on every pair of bit patterns."""
    x, y = raw if raw is not None else (f32_bits(a), f32_bits(d))
    got = codec.fdiv(x, y)
    assert got == fdiv_ieee(x, y)
    assert load().lib.modelota_fdiv(x, y) == got


def test_fdiv_rounds_to_nearest_and_leaves_out_what_is_not_normal() -> None:
    one, three = f32_bits(1.0), f32_bits(3.0)
    assert codec.fdiv(one, three) == f32_bits(1.0 / 3.0)  # 0x3EAAAAAB: rounded up
    assert codec.fdiv(f32_bits(2.0), three) == f32_bits(2.0 / 3.0)
    # the largest significand quotient there is: (2 - ulp) over (1 + ulp)
    a, d = f32_bits(2.0 - 2**-23), f32_bits(1.0 + 2**-23)
    assert codec.fdiv(a, d) == fdiv_ieee(a, d) == f32_bits(2.0 - 3 * 2**-23)
    assert codec.fdiv(0, three) == 0  # zero
    assert codec.fdiv(one, 0x7F800000) == 0  # infinity
    assert codec.fdiv(f32_bits(2.0**-120), f32_bits(2.0**10)) == 0  # subnormal quotient
    # just below the smallest normal: IEEE rounds it up to 2^-126, fdiv predicts nothing
    a, d = f32_bits(2.0**-125 * (1 - 2**-24)), f32_bits(2.0)
    assert a >> 23 & 0xFF and codec.fdiv(a, d) == 0 == load().lib.modelota_fdiv(a, d)
    assert codec.fdiv(f32_bits(3e38), f32_bits(1e-3)) == 0  # overflow
    assert codec.fdiv(f32_bits(-6.0), three) == f32_bits(-2.0)


@given(values=st.lists(finite_f32, min_size=1, max_size=40), d=finite_f32,
       seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_predict_add_agrees(values: list[float], d: float, seed: int) -> None:
    import struct

    n = load()
    src = struct.pack(f"<{len(values)}f", *values)
    out = random.Random(seed).randbytes(len(src))
    want = codec.apply_diff(out, codec.predict(src, f32_bits(d)))
    buf = n.ffi.new("uint8_t[]", out)
    n.lib.modelota_predict_add(buf, src, len(values), f32_bits(d))
    assert bytes(n.ffi.buffer(buf, len(src))) == want
