"""Power-cut sweeps over the native Store (MCUboot / littlefs style).

For one scenario (geometry, model size, full or delta payload, flash or RAM
model, wire format v1 or v2): count the storage operations N of a clean update; then for every
i in 1..N cut power during operation i (lost, or torn), optionally cut again
during the recovery at the next boot, reboot, and check that the device holds
exactly the old or exactly the new weights with the matching version, and
that a following update succeeds.

The weights look like a quantized model (peaked int8 values, zero runs, a
stretch of noise), and the delta changes some bytes by one and rewrites
others, so a v2 payload carries every chunk encoding (raw, runs, range coder,
differences with the base): the Store decodes them again from its log while
it rewrites the region, and recovery does it once more after a cut.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..format.payload import Payload, pack
from ..status import Status
from .device import FlashModelDevice, Layout, RamModelDevice
from .flash import SimFlash

FP = bytes.fromhex("706f7765722d6375742d737765657021")  # "power-cut-sweep!"


@dataclass(frozen=True)
class Geometry:
    block_size: int
    prog_size: int
    erased_value: int

    def __str__(self) -> str:
        return f"{self.block_size}B/{self.prog_size}B/{self.erased_value:#04x}"


GEOMETRIES = (
    Geometry(256, 1, 0xFF),
    Geometry(512, 4, 0x00),
    Geometry(1024, 8, 0xFF),
    Geometry(4096, 16, 0x00),
)


@dataclass(frozen=True)
class Scenario:
    geometry: Geometry
    model_size: int
    delta: bool
    mode: str  # "flash" or "ram"
    seed: int = 0
    format_version: int = 2
    every_encoding: bool = False  # the delta is every_encoding_payload (delta, v2)

    def __str__(self) -> str:
        kind = "every-encoding delta" if self.every_encoding else "delta" if self.delta else "full"
        return f"{self.mode} {self.geometry} {self.model_size}B {kind} v{self.format_version}"


@dataclass
class Report:
    scenario: Scenario
    ops: int = 0  # storage operations of a clean update
    cuts: int = 0  # power cuts tried
    ended_old: int = 0
    ended_new: int = 0
    mixed: int = 0  # weights neither old nor new, or version not matching them
    bricked: int = 0  # boot failed after power came back, or the next update failed
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mixed == 0 and self.bricked == 0


def weights_like(rnd: random.Random, size: int) -> bytes:
    """Bytes shaped like a quantized model: mostly small signed int8 values
    (a peaked distribution), a run of zeros (padding, a zero bias) and a
    stretch of noise (a float tensor), in random proportions."""
    out = bytearray()
    while len(out) < size:
        kind = rnd.random()
        n = rnd.randint(16, 600)
        if kind < 0.6:
            out += bytes(int(rnd.gauss(0, 6)) & 0xFF for _ in range(n))
        elif kind < 0.8:
            out += bytes(n)
        else:
            out += rnd.randbytes(n)
    return bytes(out[:size])


def successor(rnd: random.Random, old: bytes, block: int) -> bytes:
    """A retrained ``old``: some stretches nudged by one (a fine-tune, shipped
    as differences), some rewritten (new values)."""
    new = bytearray(old)
    size = len(old)
    for i in range(4):
        at = rnd.randrange(size)
        run = min(size - at, rnd.choice([1, 7, 60, block + 3, 400]))
        if i % 2:
            step = rnd.choice((1, 255))
            new[at : at + run] = bytes((b + step) & 0xFF for b in new[at : at + run])
        else:
            new[at : at + run] = weights_like(rnd, run)
    return bytes(new)


# Every v2 chunk encoding (method and flags) in one delta payload, chunk by
# chunk as given: the packer chooses by size, so the sweep and the tests that
# must meet each encoding build it this way (the codec and the packer's framing).
EVERY_ENCODING = (
    ("raw", 0x00),
    ("raw+diff", 0x04),
    ("runs", 0x01),
    ("runs+diff", 0x05),
    ("rc", 0x02),
    ("rc+lanes", 0x0A),
    ("rc+diff", 0x06),
    ("rc+diff+lanes", 0x0E),
    # KEEP and PRED: float32 values predicted from earlier new values (divided
    # by PRED_DIVISOR), the source kept from the chunk before or in the chunk
    ("rc+lanes+keep", 0x1A),
    ("runs+diff+pred", 0x25),
    ("rc+pred", 0x22),
    ("raw+diff+pred", 0x24),
)
PRED_DIVISOR = 0x3C4A0EE3  # float32 0.012332..., an input scale


def _pieces_for(rnd: object, name: str, piece: int) -> tuple[bytes, bytes]:
    """(old, new) bytes of one chunk that the named encoding compresses."""
    import struct

    r = rnd  # random.Random

    def int8s(n: int) -> bytes:
        return bytes(int(r.gauss(0, 6)) & 0xFF for _ in range(n))  # type: ignore[attr-defined]

    def floats(n: int) -> bytes:  # float32 weights on a 1/256 grid: low mantissa bytes zero
        values = (round(r.gauss(0, 12)) / 256 for _ in range(n // 4))  # type: ignore[attr-defined]
        return struct.pack(f"<{n // 4}f", *values) + bytes(n % 4)

    if name.startswith("runs"):
        old = int8s(piece)
        if name == "runs":  # pruned: mostly zeros
            new = bytes(b if r.random() < 0.1 else 0 for b in int8s(piece))  # type: ignore[attr-defined]
        else:  # a few bytes moved: differences are mostly zero runs
            new = bytes((b + 1) & 0xFF if r.random() < 0.05 else b for b in old)  # type: ignore[attr-defined]
        return old, new
    if "pred" in name:  # float32 values; the predicted ones are laid over them
        old = floats(piece)
        if "diff" in name:  # the rest is a fine-tune of the base
            return old, bytes((b + r.choice((0, 0, 0, 1))) & 0xFF if i % 4 == 0 else b  # type: ignore[attr-defined]
                              for i, b in enumerate(old))  # fmt: skip
        return old, floats(piece)
    if "lanes" in name:
        old = floats(piece)
        if "diff" in name:  # a fine-tune: the low mantissa bytes move
            new = bytes((b + r.choice((0, 1, 255))) & 0xFF if i % 4 == 0 else b  # type: ignore[attr-defined]
                        for i, b in enumerate(old))  # fmt: skip
        else:
            new = floats(piece)
        return old, new
    old = int8s(piece)
    if "diff" in name:
        return old, bytes((b + r.choice((0, 0, 1, 255))) & 0xFF for b in old)  # type: ignore[attr-defined]
    return old, int8s(piece) if name.startswith("rc") else r.randbytes(piece)  # type: ignore[attr-defined]


def every_encoding_payload(
    seed: int = 1,
    piece: int = 256,
    gap: int = 5,
    digest: str = "crc32",
    fingerprint: bytes = FP,
    base_version: int = 1,
    version: int = 2,
) -> tuple[bytes, bytes, Payload]:
    """(old, new, payload): a v2 delta with one chunk in each encoding of
    EVERY_ENCODING (built with the codec and the packer's framing), ``gap``
    unchanged bytes between chunks; the bytes are shaped so each encoding
    compresses (int8 weights, float32 weights, pruned zeros, fine-tunes).
    Chunks are ``piece`` bytes (at least 16) but the one after the KEEP
    chunk, shorter by the kept bytes (they share the device's buffer)."""
    import random

    from ..format import codec
    from ..format.payload import Chunk2, Header, Pred, crc32, final_digest

    if piece < 16:
        raise ValueError("every_encoding_payload needs pieces of at least 16 bytes")
    rnd = random.Random(seed)
    old = bytearray(rnd.randbytes(gap))
    new = bytearray(old)
    model = codec.Model()
    chunks = []
    half = 4 * (piece // 8)  # predicted or kept bytes: whole float32s, at most half a piece
    kept_at = 0
    for name, enc in EVERY_ENCODING:
        at = len(old)
        keep = pred = None
        length = piece - half if name == "runs+diff+pred" else piece
        o, n = _pieces_for(rnd, name, length)
        if enc & codec.KEEP:
            keep, kept_at = (piece - half, half), at + piece - half
        if enc & codec.PRED:
            # from the kept bytes (right after the KEEP chunk) or this chunk's first half
            start = 0 if name == "runs+diff+pred" else half
            source = bytes(new[kept_at : kept_at + half]) if start == 0 else n[:half]
            guess = bytearray(codec.predict(source, PRED_DIVISOR))
            if name != "runs+diff+pred":  # a value or two off by an ulp: a residual to add
                for k in range(0, half, 12):
                    guess[k] = (guess[k] + 1) & 0xFF
            n = n[:start] + bytes(guess) + n[start + half :]
            back = at + start - (kept_at if start == 0 else at)
            pred = Pred(start, half // 4, back, PRED_DIVISOR)
        old += o
        new += n
        stream = bytearray(codec.sub_base(n, o) if enc & codec.DIFF else n)
        if pred is not None:
            span = slice(pred.start, pred.start + half)
            stream[span] = codec.sub_base(n[span], codec.predict(
                source, PRED_DIVISOR))  # fmt: skip
        method = enc & codec.METHOD_MASK
        if method == codec.RC:
            body = codec.rc_encode(stream, at, bool(enc & codec.LANES), model)
        elif method == codec.RUNS:
            body = codec.runs_encode(stream)
        else:
            body = bytes(stream)
        if len(n) != length or (method != codec.RAW and len(body) >= length):
            raise AssertionError(f"{name}: {len(body)} encoded bytes for {len(n)}")
        chunks.append(Chunk2(at, length, enc, body, gap, n, keep, pred))
        tail = rnd.randbytes(gap)
        old += tail
        new += tail
    digest_type = 2 if digest == "sha256" else 1
    header = Header(
        fingerprint=fingerprint, model_version=version, weights_size=len(new),
        data_size=sum(c.length for c in chunks), chunk_count=len(chunks), segment_count=0,
        max_chunk=piece, digest=final_digest(digest_type, bytes(new)), digest_type=digest_type,
        flags=1, base_version=base_version, base_crc32=crc32(bytes(old)), format_version=2,
    )  # fmt: skip
    return bytes(old), bytes(new), Payload(header, tuple(chunks))


class _Bench:
    """Builds devices for one scenario over one simulated flash."""

    def __init__(self, sc: Scenario) -> None:
        g = sc.geometry
        rnd = random.Random(sc.seed)
        self.sc = sc
        fmt = sc.format_version
        self.v1 = weights_like(rnd, sc.model_size)
        self.v2 = weights_like(rnd, sc.model_size)
        if sc.every_encoding:
            piece = min(1000, max(16, (sc.model_size - 5) // len(EVERY_ENCODING) - 5))
            self.v2, self.v3, every = every_encoding_payload(
                sc.seed, piece, fingerprint=FP, base_version=2, version=3
            )
            self.v1 = weights_like(rnd, len(self.v2))
            self.payload = every.encode()
        elif sc.delta:
            self.v3 = successor(rnd, self.v2, g.block_size)
            self.payload = pack(
                self.v3, fingerprint=FP, version=3, chunk_size=200, base=self.v2, base_version=2,
                format_version=fmt,
            ).encode()  # fmt: skip
        else:
            self.v3 = weights_like(rnd, sc.model_size)
            self.payload = pack(
                self.v3, fingerprint=FP, version=3, chunk_size=200, format_version=fmt
            ).encode()
        v2 = pack(self.v2, fingerprint=FP, version=2, chunk_size=200, format_version=fmt).encode()
        # the update after a recovery that ended on v3
        self.v4 = bytes(x ^ 0x5A for x in self.v3)
        self.v4_payload = pack(
            self.v4, fingerprint=FP, version=4, chunk_size=200, format_version=fmt
        ).encode()
        largest = max(len(v2), len(self.payload), len(self.v4_payload))
        self.layout = Layout.plan(g.block_size, g.prog_size, len(self.v2), largest)
        self.flash = SimFlash(g.block_size, self.layout.block_count, g.prog_size, g.erased_value)
        if sc.mode == "flash":
            self.flash.load(0, self.v1)  # the factory model flashed with the firmware
        dev = self.device()
        assert dev.boot() == Status.Ok
        assert dev.update(v2) == Status.Ok
        self.start = self.flash.data  # device at v2: the state every cut starts from

    def device(self) -> FlashModelDevice | RamModelDevice:
        if self.sc.mode == "flash":
            return FlashModelDevice(self.flash, self.layout, FP, factory_version=1)
        return RamModelDevice(self.flash, self.layout, FP, self.v1, factory_version=1)

    def reset(self) -> None:
        self.flash.reboot()
        self.flash.load(0, self.start)

    @staticmethod
    def held(dev: FlashModelDevice | RamModelDevice) -> tuple[bytes, int]:
        if isinstance(dev, FlashModelDevice):
            return dev.weights(), dev.version
        return bytes(dev.ram), dev.version


def count_ops(sc: Scenario) -> int:
    b = _Bench(sc)
    dev = b.device()
    assert dev.boot() == Status.Ok
    start = b.flash.ops
    assert dev.update(b.payload) == Status.Ok
    return b.flash.ops - start


def run(
    sc: Scenario,
    cuts: Iterable[int] | None = None,
    tear_modes: Iterable[bool] = (False, True),
    recovery_cuts: int = 1,
) -> Report:
    """Sweeps cuts at operations ``cuts`` (1-based; all of 1..N by default).

    ``recovery_cuts``: after each cut, how many further cuts to try during
    the recovery at the next boot (at random operations of it)."""
    b = _Bench(sc)
    rep = Report(sc)
    dev = b.device()
    assert dev.boot() == Status.Ok
    base = b.flash.ops
    assert dev.update(b.payload) == Status.Ok
    rep.ops = b.flash.ops - base
    rnd = random.Random(sc.seed + 1)
    points = range(1, rep.ops + 1) if cuts is None else cuts
    for i in points:
        for tear in tear_modes:
            for again in range(recovery_cuts + 1):
                rep.cuts += 1
                _one(b, rep, i, tear, again > 0, rnd)
    return rep


def _one(
    b: _Bench, rep: Report, i: int, tear: bool, cut_recovery: bool, rnd: random.Random
) -> None:
    b.reset()
    dev = b.device()
    if dev.boot() != Status.Ok:
        rep.bricked += 1
        rep.failures.append(f"cut {i}: boot before the update failed")
        return
    b.flash.cut_power(b.flash.ops + i - 1, tear=tear, seed=rnd.randrange(1, 2**32))
    dev.update(b.payload)
    b.flash.reboot()
    if cut_recovery:
        # power fails again while the next boot recovers: measure how many
        # operations that recovery takes, rewind, and cut inside it
        after_cut = b.flash.data
        start = b.flash.ops
        b.device().boot()
        recovery_ops = b.flash.ops - start
        b.flash.load(0, after_cut)
        if recovery_ops > 0:
            b.flash.cut_power(
                b.flash.ops + rnd.randrange(recovery_ops), tear=tear, seed=rnd.randrange(1, 2**32)
            )
            b.device().boot()
            b.flash.reboot()
    dev = b.device()
    if dev.boot() != Status.Ok:
        rep.bricked += 1
        rep.failures.append(f"cut {i} tear={tear}: boot after the cut failed")
        return
    weights, version = b.held(dev)
    if (weights, version) == (b.v2, 2):
        rep.ended_old += 1
        follow = dev.update(b.payload)
        expect = b.v3
    elif (weights, version) == (b.v3, 3):
        rep.ended_new += 1
        follow = dev.update(b.v4_payload)
        expect = b.v4
    else:
        rep.mixed += 1
        rep.failures.append(f"cut {i} tear={tear}: version {version}, weights neither old nor new")
        return
    if follow != Status.Ok or b.held(dev)[0] != expect:
        rep.bricked += 1
        rep.failures.append(f"cut {i} tear={tear}: the update after recovery gave {follow.name}")


def table(reports: list[Report]) -> str:
    head = ("scenario", "ops N", "cuts", "old", "new", "mixed", "bricked")
    rows = [
        (
            str(r.scenario),
            str(r.ops),
            str(r.cuts),
            str(r.ended_old),
            str(r.ended_new),
            str(r.mixed),
            str(r.bricked),
        )
        for r in reports
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
