"""Chunk encodings of wire format v2 (docs/FORMAT.md, "Chunk encodings").

Pure Python, written from the specification and independent of the C++
decoder (firmware_lib/modelota/decode.cpp); the tests hold the two against
each other. Three methods:

* RAW: the bytes as they are;
* RUNS: tokens ``varint t``: ``t`` even, ``t/2 + 1`` literal bytes follow;
  ``t`` odd, one byte follows, repeated ``t//2 + 1`` times;
* RC: an adaptive binary range coder over byte values (LZMA's literal coder:
  a bit tree of probabilities, adapted by 1/32 per bit, here 16-bit ones and
  a 16 x 16-bit multiply for the split, cheap on 8-bit CPUs), with a second
  tree for the first seven bits of bytes at region offsets 3 mod 4 (flag
  LANES: the sign and exponent byte of little-endian float32, the top byte
  of int32). The probabilities live for the whole payload; every chunk
  starts a fresh range coder.

Every decoder is total: the input past a chunk's encoded bytes reads as 0x00
and input left over once ``length`` bytes are out is ignored, so any bytes
decode to exactly ``length`` bytes. The chunk CRC (over the encoded bytes)
is what refuses damage, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

RAW = 0
RUNS = 1
RC = 2
METHODS = {RAW: "raw", RUNS: "runs", RC: "rc"}
METHOD_MASK = 0x03
DIFF = 0x04  # the decoded bytes are added (mod 256) to the base bytes at the same offsets
LANES = 0x08  # RC: bytes at offsets 3 mod 4 start in the lane tree
KEEP = 0x10  # the head names a range of the decoded chunk the device keeps for a later PRED
PRED = 0x20  # the head names float32 values predicted from earlier new bytes (a residual follows)
KNOWN_ENC = METHOD_MASK | DIFF | LANES | KEEP | PRED

PROB_BITS = 16  # probabilities of a 0 bit in 1/65536; the split is (range >> 16) * p
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE // 2
MOVE_BITS = 5
TOP = 1 << 24
LIT_NODES = 256  # tree A: nodes 1..255
LANE_NODES = 128  # tree B: nodes 1..127 (bits 7..1 of a lane byte; bit 0 uses tree A)
RUNS_TOKEN_BYTES = 3  # a RUNS token is at most 3 varint bytes (21 bits)

U32 = 0xFFFFFFFF


# ---------------------------------------------------------------- varints


def varint(value: int) -> bytes:
    """Unsigned LEB128 of a 32-bit value (1..5 bytes)."""
    if not 0 <= value <= U32:
        raise ValueError(f"varint value {value} outside 0..2**32-1")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(data: bytes | bytearray, pos: int) -> tuple[int | None, int, bool]:
    """(value, next position, well_formed) of the varint at ``pos``.

    value is None when the bytes end first. Not well formed: more than five
    bytes, a value above 2**32-1, or a non-minimal encoding (a last byte of
    0x00 after a continuation), the rules the device applies.
    """
    value = 0
    for i in range(5):
        if pos + i >= len(data):
            return None, len(data), True
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            ok = value <= U32 and (i == 0 or b != 0)
            return value, pos + i + 1, ok
    return value, pos + 5, False


# ---------------------------------------------------------------- model


class Model:
    """The adaptive probabilities of one payload (tree A and the lane tree B)."""

    __slots__ = ("lane", "lit")

    def __init__(self) -> None:
        self.lit = [PROB_INIT] * LIT_NODES
        self.lane = [PROB_INIT] * LANE_NODES

    def copy(self) -> Model:
        m = Model.__new__(Model)
        m.lit = list(self.lit)
        m.lane = list(self.lane)
        return m


def _lane_mask(offset: int, n: int, lanes: bool) -> Sequence[bool]:
    if not lanes:
        return [False] * n
    return [(offset + i) & 3 == 3 for i in range(n)]


# ---------------------------------------------------------------- range coder


def rc_encode(values: bytes | bytearray, offset: int, lanes: bool, model: Model) -> bytes:
    """Range-codes ``values`` (the decoded stream of one chunk), updating ``model``."""
    lit, lane = model.lit, model.lane
    low = 0
    rng = U32
    cache = 0
    cache_size = 1
    out = bytearray()
    is_lane = _lane_mask(offset, len(values), lanes)

    def shift_low() -> None:
        """LZMA's ShiftLow: the top byte of low goes out, carries into the cache."""
        nonlocal low, cache, cache_size
        if low < 0xFF000000 or low > U32:
            carry = low >> 32
            temp = cache
            while True:
                out.append((temp + carry) & 0xFF)
                temp = 0xFF
                cache_size -= 1
                if not cache_size:
                    break
            cache = (low >> 24) & 0xFF
        cache_size += 1
        low = (low & 0x00FFFFFF) << 8

    for i, v in enumerate(values):
        node = 1
        tree_b = is_lane[i]
        for shift in (7, 6, 5, 4, 3, 2, 1, 0):
            probs = lane if tree_b and node < LANE_NODES else lit
            p = probs[node]
            bound = (rng >> PROB_BITS) * p
            if (v >> shift) & 1:
                low += bound
                rng -= bound
                probs[node] = p - (p >> MOVE_BITS)
                node = node + node + 1
            else:
                rng = bound
                probs[node] = p + ((PROB_ONE - p) >> MOVE_BITS)
                node = node + node
            while rng < TOP:
                rng = (rng << 8) & U32
                shift_low()

    # flush: the value in [low, low + range) with the most trailing zero bits,
    # so that stripping zero bytes (the decoder reads zeros past the end) saves most
    for bits in range(32, -1, -1):
        mask = (1 << bits) - 1
        v = (low + mask) & ~mask
        if v < low + rng:
            low = v
            break
    for _ in range(5):
        shift_low()
    if not out or out[0] != 0:
        raise AssertionError("range coder: the first byte must be 0")
    return bytes(out[1:]).rstrip(b"\x00")


def rc_decode(body: bytes, length: int, offset: int, lanes: bool, model: Model) -> bytearray:
    """Decodes ``length`` bytes from ``body`` (zeros past its end), updating ``model``."""
    lit, lane = model.lit, model.lane
    n = len(body)
    pos = 0
    code = 0
    for _ in range(4):
        code = ((code << 8) | (body[pos] if pos < n else 0)) & U32
        pos += 1
    rng = U32
    out = bytearray(length)
    is_lane = _lane_mask(offset, length, lanes)
    for i in range(length):
        node = 1
        tree_b = is_lane[i]
        for _ in range(8):
            probs = lane if tree_b and node < LANE_NODES else lit
            p = probs[node]
            while rng < TOP:  # twice when a rare bit left less than 2**16
                rng = (rng << 8) & U32
                code = ((code << 8) | (body[pos] if pos < n else 0)) & U32
                pos += 1
            bound = (rng >> PROB_BITS) * p
            if code < bound:
                rng = bound
                probs[node] = p + ((PROB_ONE - p) >> MOVE_BITS)
                node = node + node
            else:
                code -= bound
                rng -= bound
                probs[node] = p - (p >> MOVE_BITS)
                node = node + node + 1
        out[i] = node - 256
    return out


# ---------------------------------------------------------------- runs

MIN_RUN = 3
_MAX_COUNT = 1 << 20  # (t >> 1) + 1 with t below 2**21


def _token(kind: int, count: int) -> bytes:
    return varint(((count - 1) << 1) | kind)


def runs_encode(values: bytes | bytearray) -> bytes:
    """Greedy RUNS encoding: runs of MIN_RUN or more equal bytes, literals between."""
    out = bytearray()
    n = len(values)
    i = 0
    lit_start = 0

    def flush_literals(end: int) -> None:
        s = lit_start
        while s < end:
            k = min(end - s, _MAX_COUNT)
            out.extend(_token(0, k))
            out.extend(values[s : s + k])
            s += k

    while i < n:
        b = values[i]
        j = i + 1
        while j < n and values[j] == b:
            j += 1
        if j - i >= MIN_RUN:
            flush_literals(i)
            left = j - i
            while left:
                k = min(left, _MAX_COUNT)
                out.extend(_token(1, k))
                out.append(b)
                left -= k
            lit_start = j
        i = j
    flush_literals(n)
    return bytes(out)


def runs_decode(body: bytes, length: int) -> bytearray:
    """Decodes ``length`` bytes of RUNS tokens (zeros past the end of ``body``)."""
    n = len(body)
    pos = 0
    out = bytearray()

    def byte() -> int:
        nonlocal pos
        b = body[pos] if pos < n else 0
        pos += 1
        return b

    while len(out) < length:
        t = 0
        for i in range(RUNS_TOKEN_BYTES):
            b = byte()
            t |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                break
        count = min((t >> 1) + 1, length - len(out))
        if t & 1:
            out.extend(bytes([byte()]) * count)
        else:
            for _ in range(count):
                out.append(byte())
    return out


# ---------------------------------------------------------------- prediction


def fdiv(a: int, d: int) -> int:
    """float32 ``a / d`` rounded to nearest even, on bit patterns, in integer
    arithmetic (docs/FORMAT.md, "KEEP and PRED"): 0 unless both operands
    and the quotient are normal finite numbers. Equal, bit for bit, to IEEE
    single-precision division wherever it returns a nonzero value."""
    ea = (a >> 23) & 0xFF
    ed = (d >> 23) & 0xFF
    if ea in (0, 0xFF) or ed in (0, 0xFF):
        return 0
    ma = (a & 0x7FFFFF) | 0x800000
    md = (d & 0x7FFFFF) | 0x800000
    e = ea - ed + 127
    if ma < md:
        ma <<= 1
        e -= 1
    q = 0
    r = ma
    for _ in range(24):  # restoring division: 24 quotient bits, the first one 1
        q <<= 1
        if r >= md:
            r -= md
            q |= 1
        r <<= 1
    # round to nearest: r is twice the remainder. Never a tie (md * (2q + 1) =
    # ma * 2**24 would need 24 factors of 2 in md, which is below 2**24), and
    # never up to 2**24 (ma <= 2 md - 1, so the quotient is below 2**24 - 1/2)
    if r > md:
        q += 1
    if not 0 < e < 0xFF:
        return 0
    return ((a ^ d) & 0x80000000) | (e << 23) | (q & 0x7FFFFF)


def predict(source: bytes | bytearray, divisor: int) -> bytes:
    """The PRED prediction: each little-endian float32 of ``source`` divided by ``divisor``."""
    out = bytearray()
    for k in range(0, len(source) - 3, 4):
        out += fdiv(int.from_bytes(source[k : k + 4], "little"), divisor).to_bytes(4, "little")
    return bytes(out)


# ---------------------------------------------------------------- chunk level


def decode(enc: int, body: bytes, length: int, offset: int, model: Model) -> bytearray:
    """The decoded stream of one chunk (new bytes, or differences with DIFF)."""
    method = enc & METHOD_MASK
    if method == RAW:
        return bytearray(body[:length]) + bytearray(max(0, length - len(body)))
    if method == RUNS:
        return runs_decode(body, length)
    return rc_decode(body, length, offset, bool(enc & LANES), model)


def apply_diff(decoded: bytes | bytearray, base: bytes | bytearray) -> bytes:
    """Adds ``decoded`` to ``base`` byte by byte, mod 256 (flag DIFF)."""
    import numpy as np

    a = np.frombuffer(bytes(decoded), dtype=np.uint8)
    b = np.frombuffer(bytes(base), dtype=np.uint8)
    return bytes((a + b).astype(np.uint8))


def sub_base(new: bytes | bytearray, base: bytes | bytearray) -> bytes:
    """``new - base`` byte by byte, mod 256: the stream a DIFF chunk carries."""
    import numpy as np

    a = np.frombuffer(bytes(new), dtype=np.uint8)
    b = np.frombuffer(bytes(base), dtype=np.uint8)
    return bytes((a - b).astype(np.uint8))
