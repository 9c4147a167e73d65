"""Signed payloads and SHA-256 digests end to end: the packer, the native C++
Updater (built-in Ed25519 verifier and a pluggable one), the Python reference
applier, the Store (verify-only flash model, commit, recovery) and the
anti-rollback floor across reboots and power cuts.

The threats themselves have their own file (test_attacks.py); this one proves
the machinery: every valid signed payload applies, every damaged one is
refused with the same status by C++ and Python and leaves the weights intact.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelota import Device, Status, apply_reference, pack, parse
from modelota.format import signing as keys
from modelota.format.payload import (
    DIGEST_SHA256,
    FLAG_SIGNED,
    HEADER_LEN,
    SIGNATURE_LEN,
    Header,
    Payload,
    seal,
)
from modelota.sim.device import FlashModelDevice, Layout, RamModelDevice
from modelota.sim.flash import SimFlash
from modelota.sim.native import Updater, load
from modelota.status import ModelOTAError
from payloads import FP, Case, cases, splits

SEED = hashlib.sha256(b"modelota test signing key").digest()
PUB = keys.public_from_private(SEED)
OTHER_SEED = hashlib.sha256(b"another key").digest()
BUF = 1024


def signed(case: Case) -> Payload:
    base = {"base": case.old, "base_version": case.current_version} if case.delta else {}
    return pack(
        case.new,
        fingerprint=FP,
        version=case.new_version,
        chunk_size=case.chunk_size,
        sign_key=SEED,
        format_version=case.format_version,
        **base,  # type: ignore[arg-type]
    )


def device(case: Case, **kw: object) -> Updater:
    kw.setdefault("buffer_len", max(HEADER_LEN + SIGNATURE_LEN, case.chunk_size))
    kw.setdefault("public_key", PUB)
    return Updater(
        bytearray(case.old),
        fingerprint=FP,
        current_version=case.current_version,
        **kw,  # type: ignore[arg-type]
    )


def reference(case: Case, stream: bytes, key: bytes | None = PUB) -> Status:
    dev = Device(
        FP,
        case.current_version,
        bytearray(case.old),
        max(HEADER_LEN + SIGNATURE_LEN, case.chunk_size),
        public_key=key,
    )
    return apply_reference(stream, dev).status


def small() -> st.SearchStrategy[Case]:
    return cases(max_size=4000)


# ---------------------------------------------------------------- format


def test_signed_layout_header_signature_then_chunks() -> None:
    p = pack(bytes(range(200)), fingerprint=FP, version=3, chunk_size=64, sign_key=SEED,
             format_version=1)  # fmt: skip
    raw = p.encode()
    h, _ = Header.decode(raw[:HEADER_LEN])
    assert h.digest_type == DIGEST_SHA256 and h.flags & FLAG_SIGNED
    assert h.digest == hashlib.sha256(bytes(range(200))).digest()
    assert raw[88:92] == keys.key_id(PUB) == hashlib.sha256(PUB).digest()[:4]
    assert keys.verify(PUB, raw[:HEADER_LEN], raw[HEADER_LEN : HEADER_LEN + SIGNATURE_LEN])
    assert p.chunk_spans()[0][0] == HEADER_LEN + SIGNATURE_LEN
    assert parse(raw, PUB).signature == raw[HEADER_LEN : HEADER_LEN + SIGNATURE_LEN]


def test_signed_v2_layout_header_signature_then_chunks() -> None:
    """v2: the signature signs the header_len header bytes and follows them;
    the key id is the header's last field before its CRC."""
    p = pack(bytes(range(200)), fingerprint=FP, version=3, chunk_size=64, sign_key=SEED)
    raw = p.encode()
    n = raw[5]
    assert raw[4] == 2 and n == p.header.length and raw[6] == DIGEST_SHA256
    assert raw[7] == FLAG_SIGNED
    assert raw[n - 8 : n - 4] == keys.key_id(PUB)
    assert raw[n - 40 : n - 8] == hashlib.sha256(bytes(range(200))).digest()
    assert keys.verify(PUB, raw[:n], raw[n : n + SIGNATURE_LEN])
    assert p.chunk_spans()[0][0] == n + SIGNATURE_LEN
    assert parse(raw, PUB).signature == raw[n : n + SIGNATURE_LEN]


def test_unsigned_crc32_payloads_are_unchanged_byte_for_byte() -> None:
    """Format v1 is still written byte for byte as before when asked for:
    CRC32, no flag, no signature block; v2 (the default) likewise has none."""
    p = pack(bytes(range(100)), fingerprint=FP, version=2, chunk_size=40, format_version=1)
    raw = p.encode()
    assert raw[5] == 1 and raw[6:8] == b"\0\0" and raw[88:92] == bytes(4)
    assert len(raw) == HEADER_LEN + 3 * 16 + 100
    p2 = pack(bytes(range(100)), fingerprint=FP, version=2, chunk_size=40)
    v2 = p2.encode()
    assert v2[4:8] == bytes([2, 37, 1, 0])  # 37-byte header, CRC32, no flags
    assert p2.chunk_spans()[0][0] == 37  # chunk 0 right after it: no signature block


def test_seal_equals_packing_signed() -> None:
    rnd = random.Random(3)
    old, new = rnd.randbytes(900), rnd.randbytes(900)
    plain = pack(new, fingerprint=FP, version=4, chunk_size=100, base=old, base_version=3)
    sealed = seal(plain, old, sign_key=SEED)
    direct = pack(
        new, fingerprint=FP, version=4, chunk_size=100, base=old, base_version=3, sign_key=SEED
    )
    assert sealed.encode() == direct.encode()


def test_parse_with_a_key_refuses_unsigned_and_foreign_signatures() -> None:
    new = bytes(300)
    with pytest.raises(ModelOTAError) as e:
        parse(pack(new, fingerprint=FP, version=2, digest="sha256").encode(), PUB)
    assert e.value.status == Status.Unsigned
    foreign = pack(new, fingerprint=FP, version=2, sign_key=OTHER_SEED).encode()
    with pytest.raises(ModelOTAError) as e:
        parse(foreign, PUB)
    assert e.value.status == Status.BadSignature and "key id" in str(e.value)
    assert parse(foreign).header.is_signed  # without a key: read, not checked


# ---------------------------------------------------------------- round trips


@given(data=st.data(), case=small(), mode=st.sampled_from(["ram", "callback"]))
def test_signed_payloads_apply_in_any_split(data: st.DataObject, case: Case, mode: str) -> None:
    raw = signed(case).encode()
    dev = device(case, target_mode=mode)
    assert dev.init_status == Status.Ok
    assert dev.apply(raw, data.draw(splits(len(raw)), label="splits")) == Status.Ok
    assert bytes(dev.weights) == case.new
    assert dev.current_version == dev.min_version == case.new_version
    assert reference(case, raw) == Status.Ok


@given(case=small())
def test_sha256_unsigned_payloads_apply_without_a_key(case: Case) -> None:
    base = {"base": case.old, "base_version": case.current_version} if case.delta else {}
    raw = pack(
        case.new,
        fingerprint=FP,
        version=case.new_version,
        chunk_size=case.chunk_size,
        digest="sha256",
        **base,  # type: ignore[arg-type]
    ).encode()
    dev = device(case, public_key=None)
    assert dev.apply(raw) == Status.Ok and bytes(dev.weights) == case.new
    assert reference(case, raw, key=None) == Status.Ok


@given(case=small())
def test_a_device_without_a_key_skips_the_signature_block(case: Case) -> None:
    raw = signed(case).encode()
    dev = device(case, public_key=None, buffer_len=max(96, case.chunk_size))
    assert dev.apply(raw) == Status.Ok and bytes(dev.weights) == case.new


# ---------------------------------------------------------------- damage


def region(payload: Payload, pos: int) -> set[Status]:
    n = payload.header.length
    if pos < 4:
        return {Status.BadMagic}
    if pos == 4:
        return {Status.UnsupportedVersion}
    if pos == 5 and payload.v2:  # the header length: another length, another CRC
        return {Status.BadHeaderCrc, Status.Truncated}
    if pos < n:
        return {Status.BadHeaderCrc}
    if pos < n + SIGNATURE_LEN:
        return {Status.BadSignature}
    return {
        Status.ChunkCrc,
        Status.BadSequence,
        Status.BadChunk,
        Status.OutOfBounds,
        Status.LayoutMismatch,
        Status.Truncated,
    }


@given(data=st.data(), case=small())
def test_a_bit_flip_anywhere_in_a_signed_payload_is_refused(
    data: st.DataObject, case: Case
) -> None:
    p = signed(case)
    raw = bytearray(p.encode())
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    dev = device(case)
    status = dev.apply(bytes(raw), data.draw(splits(len(raw)), label="splits"))
    assert status in region(p, pos)
    assert reference(case, bytes(raw)) == status, "C++ and Python disagree"
    assert bytes(dev.weights) == case.old and dev.current_version == case.current_version


@given(data=st.data(), case=small())
def test_truncated_signed_payloads(data: st.DataObject, case: Case) -> None:
    raw = signed(case).encode()
    end = data.draw(st.integers(0, len(raw) - 1), label="end")
    dev = device(case)
    assert dev.apply(raw[:end]) == Status.Truncated == reference(case, raw[:end])
    assert bytes(dev.weights) == case.old


def test_init_refuses_a_buffer_too_small_for_header_and_signature() -> None:
    dev = Updater(
        bytearray(10),
        fingerprint=FP,
        current_version=1,
        public_key=PUB,
        buffer_len=HEADER_LEN + SIGNATURE_LEN - 1,
    )
    assert dev.init_status == Status.InvalidArgument


# ---------------------------------------------------------------- pluggable verifier


def test_pluggable_verifier_sees_the_header_before_any_write() -> None:
    """A port's own crypto through modelota_config.verifier: called once, with
    the header bytes and the signature, while nothing has been written."""
    rnd = random.Random(5)
    old, new = rnd.randbytes(2000), rnd.randbytes(2000)
    p = pack(new, fingerprint=FP, version=2, chunk_size=256, sign_key=SEED)
    raw = p.encode()
    n = p.header.length
    calls: list[tuple[bytes, bytes, int]] = []
    holder: list[Updater] = []

    def verify(msg: bytes, sig: bytes) -> bool:
        calls.append((msg, sig, int(holder[0].target_region.writes)))
        return keys.verify(PUB, msg, sig)

    dev = Updater(
        bytearray(old),
        fingerprint=FP,
        current_version=1,
        verifier=verify,
        buffer_len=256,
        target_mode="callback",
    )
    holder.append(dev)
    assert dev.apply(raw, list(range(1, len(raw)))) == Status.Ok  # one byte at a time
    assert bytes(dev.weights) == new
    assert calls == [(raw[:n], raw[n : n + SIGNATURE_LEN], 0)]

    dev = Updater(
        bytearray(old),
        fingerprint=FP,
        current_version=1,
        verifier=lambda m, s: False,
        buffer_len=256,
        target_mode="callback",
    )
    assert dev.apply(raw) == Status.BadSignature
    assert bytes(dev.weights) == old and dev.target_region.writes == 0


def test_builtin_verifier_is_compiled_in_the_native_core() -> None:
    lib = load().lib
    assert lib.MODELOTA_SHA256 == 1 and lib.MODELOTA_SIGNATURES == 1


# ---------------------------------------------------------------- store and floor

BLOCK, PROG = 256, 4


def flash_device(kind: str, weights: bytes, key: bytes | None = PUB) -> tuple[object, SimFlash]:
    layout = Layout.plan(BLOCK, PROG, len(weights), 2 * len(weights) + 2000)
    flash = SimFlash(BLOCK, layout.block_count, PROG)
    if kind == "flash":
        flash.load(0, weights)
        dev: object = FlashModelDevice(flash, layout, FP, 1, buffer_len=512, public_key=key)
    else:
        dev = RamModelDevice(flash, layout, FP, weights, 1, buffer_len=512, public_key=key)
    assert dev.boot() == Status.Ok  # type: ignore[attr-defined]
    return dev, flash


def weights_of(dev: object) -> bytes:
    return dev.weights() if isinstance(dev, FlashModelDevice) else bytes(dev.ram)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["flash", "ram"])
@pytest.mark.parametrize("delta", [False, True])
def test_signed_updates_through_the_store(kind: str, delta: bool) -> None:
    rnd = random.Random(7)
    v1 = rnd.randbytes(3000)
    v2 = bytearray(v1)
    v2[100:400] = rnd.randbytes(300)
    dev, _ = flash_device(kind, v1)
    base = {"base": v1, "base_version": 1} if delta else {}
    raw = pack(bytes(v2), fingerprint=FP, version=2, chunk_size=200, sign_key=SEED, **base).encode()  # type: ignore[arg-type]
    assert dev.update(raw) == Status.Ok  # type: ignore[attr-defined]
    assert weights_of(dev) == bytes(v2)
    assert dev.store.version == dev.store.min_version == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["flash", "ram"])
def test_floor_survives_reboot_and_factory_fallback(kind: str) -> None:
    rnd = random.Random(8)
    v1, v2, v3 = (rnd.randbytes(2000) for _ in range(3))
    dev, flash = flash_device(kind, v1)
    p2 = pack(v2, fingerprint=FP, version=2, chunk_size=200, sign_key=SEED).encode()
    p3 = pack(v3, fingerprint=FP, version=3, chunk_size=200, sign_key=SEED).encode()
    assert dev.update(p2) == Status.Ok and dev.update(p3) == Status.Ok  # type: ignore[attr-defined]
    layout = dev.store.layout  # type: ignore[attr-defined]
    if kind == "ram":
        raw = bytearray(flash.data)
        raw[10] ^= 0x40  # the stored weights decay: the device boots its factory v1
        flash.load(0, bytes(raw))
        dev = RamModelDevice(flash, layout, FP, v1, 1, buffer_len=512, public_key=PUB)
        assert dev.boot() == Status.Ok and dev.booted_from == "factory" and dev.version == 1
    else:
        dev = FlashModelDevice(flash, layout, FP, 1, buffer_len=512, public_key=PUB)
        assert dev.boot() == Status.Ok
    assert dev.store.min_version == 3
    assert dev.update(p2) == Status.Rollback
    if kind == "ram":
        assert dev.update(p3) == Status.Ok  # reinstalling the floor's own version is allowed
        assert bytes(dev.ram) == v3


def test_raise_min_version_revokes_and_never_lowers() -> None:
    rnd = random.Random(9)
    v1, v4 = rnd.randbytes(1000), rnd.randbytes(1000)
    dev, _ = flash_device("flash", v1)
    store = dev.store  # type: ignore[attr-defined]
    assert store.min_version == 1
    assert store.raise_min_version(5) == Status.Ok and store.min_version == 5
    assert store.raise_min_version(2) == Status.Ok and store.min_version == 5
    p4 = pack(v4, fingerprint=FP, version=4, chunk_size=200, sign_key=SEED).encode()
    assert dev.update(p4) == Status.Rollback  # type: ignore[attr-defined]
    assert store.version == 1 and weights_of(dev) == v1


@pytest.mark.parametrize("kind", ["flash", "ram"])
def test_power_cut_at_every_operation_keeps_the_floor_with_its_weights(kind: str) -> None:
    """A cut anywhere in a signed update leaves (old weights, old floor) or
    (new weights, new floor) after recovery: the floor moves with the commit."""
    rnd = random.Random(10)
    v1, v2 = rnd.randbytes(1500), rnd.randbytes(1500)
    raw = pack(v2, fingerprint=FP, version=2, chunk_size=300, sign_key=SEED).encode()
    dev, flash = flash_device(kind, v1)
    start = flash.ops
    assert dev.update(raw) == Status.Ok  # type: ignore[attr-defined]
    total = flash.ops - start
    assert total > 10
    ends = set()
    for cut in range(total):
        dev, flash = flash_device(kind, v1)
        layout = dev.store.layout  # type: ignore[attr-defined]
        flash.cut_power(flash.ops + cut, tear=True, seed=cut)
        assert dev.update(raw) != Status.Ok  # type: ignore[attr-defined]
        flash.reboot()
        if kind == "flash":
            dev = FlashModelDevice(flash, layout, FP, 1, buffer_len=512, public_key=PUB)
        else:
            dev = RamModelDevice(flash, layout, FP, v1, 1, buffer_len=512, public_key=PUB)
        assert dev.boot() == Status.Ok  # type: ignore[attr-defined]
        got = (weights_of(dev), dev.store.version, dev.store.min_version)  # type: ignore[attr-defined]
        assert got in ((v1, 1, 1), (v2, 2, 2)), f"cut {cut}: version/floor {got[1:]}"
        ends.add(got[1])
    assert ends == {1, 2}


# ---------------------------------------------------------------- serial link


@pytest.mark.parametrize("store", [False, True])
def test_signed_payloads_over_the_serial_link(store: bool) -> None:
    """The link protocol (firmware_lib/modelota/link.cpp) feeds the same
    Updater: a board holding the key takes a signed payload and refuses an
    unsigned one with its status in RESULT. (SimBoard has no key option; the
    test installs the verifier in the board's config and re-inits the Updater,
    as firmware would set it before modelota_init.)"""
    from modelota.link.push import COMMIT, DATA, RESULT, START, FrameReader, frame, transfer_id
    from modelota.sim.board import SimBoard

    rnd = random.Random(11)
    old, new = rnd.randbytes(2048), rnd.randbytes(2048)
    board = SimBoard(old, fingerprint=FP, version=1, frame_data=256, store=store)
    n = load()
    key = n.ffi.new("uint8_t[]", PUB)
    board._keep.append(key)
    board._cfg.verifier = n.lib.modelota_ed25519_verifier(key)
    assert n.lib.modelota_init(board._u, board._cfg) == 0
    board.record, board.fake_ms = True, 0
    reader = FrameReader()

    def send(ftype: int, body: bytes = b"") -> list[tuple[int, bytes]]:
        board.sent.clear()
        board.rx(frame(ftype, body))
        return reader.feed(bytes(board.sent))

    def push(raw: bytes) -> int:
        send(START, struct.pack("<II", len(raw), transfer_id(raw)))
        for off in range(0, len(raw), 200):
            got = send(DATA, struct.pack("<I", off) + raw[off : off + 200])
            if got and got[-1][0] == RESULT:
                return int(struct.unpack_from("<b", got[-1][1])[0])
        [(ftype, body)] = send(COMMIT)
        assert ftype == RESULT
        return int(struct.unpack_from("<b", body)[0])

    unsigned = pack(new, fingerprint=FP, version=2, chunk_size=128, digest="sha256").encode()
    assert push(unsigned) == Status.Unsigned and bytes(board.weights) == old
    raw = pack(new, fingerprint=FP, version=2, chunk_size=128, sign_key=SEED).encode()
    assert push(raw) == Status.Ok and bytes(board.weights) == new
    if store:
        assert board.store is not None and board.store.read_region() == new
        assert board.store.min_version == 2


# ---------------------------------------------------------------- differential


@given(data=st.data())
def test_cpp_and_python_agree_on_mutated_payloads(data: st.DataObject) -> None:
    """Differential check over the fuzz seeds (sim/fuzz/make_corpus.py): header
    fields changed with the header CRC made right again (so the deeper checks
    run), bytes overwritten, cut or extended, on devices with and without the
    key and with a floor. The native Updater and the Python reference give
    the same status and the same final weights."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sim" / "fuzz"))
    import make_corpus

    from modelota.format.payload import crc32

    seeds = make_corpus.payloads()
    raw = bytearray(seeds[data.draw(st.sampled_from(sorted(seeds)), label="seed")])
    for _ in range(data.draw(st.integers(0, 3), label="header edits")):
        pos = data.draw(st.integers(5, 91), label="header pos")
        raw[pos] = data.draw(st.integers(0, 255), label="value")
        raw[92:96] = struct.pack("<I", crc32(bytes(raw[:92])))
    for _ in range(data.draw(st.integers(0, 2), label="byte edits")):
        pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        raw[pos] = data.draw(st.integers(0, 255), label="byte")
    end = data.draw(st.integers(0, len(raw)), label="end")
    stream = bytes(raw[:end]) + data.draw(st.binary(max_size=4), label="tail")
    keyed = data.draw(st.booleans(), label="keyed")
    floor = data.draw(st.integers(0, 3), label="floor")
    key = make_corpus.FUZZ_PUBLIC_KEY if keyed else None
    old = make_corpus.factory()
    dev = Updater(bytearray(old), fingerprint=make_corpus.FP, current_version=1, buffer_len=256,
                  public_key=key, min_version=floor)  # fmt: skip
    got = dev.apply(stream, data.draw(splits(len(stream)), label="splits"))
    ref = Device(make_corpus.FP, 1, bytearray(old), 256, public_key=key, min_version=floor)
    assert apply_reference(stream, ref).status == got, "C++ and Python disagree"
    assert bytes(ref.weights) == bytes(dev.weights)


# ---------------------------------------------------------------- cross builds


@pytest.mark.parametrize(
    "cxx, flags",
    [
        ("avr-g++", ["-mmcu=atmega2560"]),
        (
            "arm-none-eabi-g++",
            ["-mcpu=cortex-m4", "-mthumb", "--specs=nosys.specs", "-nodefaultlibs"],
        ),
    ],
    ids=["avr", "cortex-m4"],
)
def test_signatures_build_and_link_for_the_boards(
    cxx: str, flags: list[str], tmp_path: Path
) -> None:
    """With MODELOTA_SIGNATURES=1 (off by default on AVR) the core, the Store
    and the primitives compile warning-free (-Werror -Wconversion) for AVR and
    Cortex-M4 and link into a program that verifies a payload: the
    static_assert on sizeof(modelota_updater) holds with the SHA-256 context."""
    if shutil.which(cxx) is None:
        pytest.skip(f"{cxx} not installed")
    root = Path(__file__).resolve().parent.parent
    core = root / "firmware_lib" / "modelota"
    main = tmp_path / "main.cpp"
    main.write_text(
        '#include "modelota.h"\n'
        "static uint8_t weights[64];\nstatic uint8_t buf[256];\n"
        "static const uint8_t fp[16] = {0};\nstatic const uint8_t key[32] = {1};\n"
        "int main() {\n"
        "  modelota_config cfg;\n"
        "  modelota_config_init(&cfg, modelota_target_ram(weights),\n"
        "                       modelota_backup_ram(weights, 0), fp, buf, sizeof(buf));\n"
        "  cfg.verifier = modelota_ed25519_verifier(key);\n"
        "  modelota_updater u;\n"
        "  if (modelota_init(&u, &cfg) != 0 || modelota_begin(&u) != 0) return 1;\n"
        "  return modelota_feed(&u, buf, sizeof(buf));\n"
        "}\n"
    )
    sources = ["crc32", "status", "decode", "updater", "store", "sha256", "sha512", "ed25519"]
    cmd = [
        cxx, "-std=c++11", "-Os", "-Wall", "-Wextra", "-Werror", "-Wconversion",
        "-fno-exceptions", "-fno-rtti", "-ffunction-sections", "-fdata-sections",
        "-Wl,--gc-sections", "-DMODELOTA_SIGNATURES=1", *flags, f"-I{root / 'firmware_lib'}",
        str(main), *(str(core / f"{s}.cpp") for s in sources), "-o", str(tmp_path / "a.elf"),
        *(["-lc", "-lnosys", "-lgcc"] if "-nodefaultlibs" in flags else []),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]


# ---------------------------------------------------------------- Arduino glue

ARDUINO_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include "ModelOTA.h"

unsigned long g_now = 0;
unsigned long millis(void) { return g_now; }
void yield(void) { ++g_now; }

static std::vector<uint8_t> slurp(const char* path) {
    std::vector<uint8_t> out;
    FILE* f = fopen(path, "rb");
    int c;
    while (f != NULL && (c = fgetc(f)) != EOF) out.push_back(static_cast<uint8_t>(c));
    if (f != NULL) fclose(f);
    return out;
}

class MemStream : public Stream {
public:
    explicit MemStream(const std::vector<uint8_t>& d) : d_(d), pos_(0) {}
    int available() override { return static_cast<int>(d_.size() - pos_); }
    int read() override { return pos_ < d_.size() ? d_[pos_++] : -1; }
    int peek() override { return pos_ < d_.size() ? d_[pos_] : -1; }
    size_t write(uint8_t) override { return 1; }
private:
    std::vector<uint8_t> d_;
    size_t pos_;
};

/* driver FACTORY KEY MIN PAYLOAD... : prints one status name per payload */
int main(int argc, char** argv) {
    std::vector<uint8_t> factory = slurp(argv[1]);
    std::vector<uint8_t> key = slurp(argv[2]);
    std::vector<uint8_t> weights(factory.size());
    static uint8_t buffer[256];
    static const uint8_t fp[16] = {'m','o','d','e','l','o','t','a','-','t','e','s','t','-','f','p'};
    ModelOTA ota(weights.data(), static_cast<uint32_t>(weights.size()), fp,
                 modelota_backup_ram(factory.data(), static_cast<uint32_t>(factory.size()), 1),
                 buffer, sizeof(buffer));
    ota.restoreFactory();
    if (ota.requireSignature(modelota_ed25519_verifier(key.data())) != MODELOTA_OK) return 3;
    if (ota.setMinVersion(static_cast<uint32_t>(atoi(argv[3]))) != MODELOTA_OK) return 4;
    for (int i = 4; i < argc; ++i) {
        MemStream in(slurp(argv[i]));
        int st = ota.update(in, 100);
        printf("%s %u\n", ModelOTA::statusName(st), static_cast<unsigned>(ota.version()));
    }
    ota.restoreFactory();  /* a factory reset keeps the floor the commits raised */
    printf("factory %u\n", static_cast<unsigned>(ota.version()));
    for (int i = 4; i < argc; ++i) {
        MemStream in(slurp(argv[i]));
        printf("%s\n", ModelOTA::statusName(ota.update(in, 100)));
    }
    return 0;
}
"""


def test_arduino_class_requires_signatures_and_keeps_the_floor(tmp_path: Path) -> None:
    """src/ModelOTA.{h,cpp} on the host (tests/arduino_host/Arduino.h):
    requireSignature() and setMinVersion() on the ModelOTA class, and a
    factory restore that keeps the floor raised by a committed update."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "driver.cpp").write_text(ARDUINO_DRIVER)
    exe = tmp_path / "driver"
    cmd = [
        gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-O1",
        "-I", str(root / "tests" / "arduino_host"), "-I", str(root / "src"),
        str(root / "src" / "ModelOTA.cpp"), str(root / "src" / "modelota_store.cpp"),
        str(tmp_path / "driver.cpp"), "-o", str(exe),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    rnd = random.Random(12)
    factory, v2, v3 = rnd.randbytes(700), rnd.randbytes(700), rnd.randbytes(700)
    files = {
        "factory": factory,
        "key": PUB,
        "v2-unsigned": pack(v2, fingerprint=FP, version=2, chunk_size=128).encode(),
        "v2-other-key": pack(v2, fingerprint=FP, version=2, chunk_size=128,
                             sign_key=OTHER_SEED).encode(),
        "v2": pack(v2, fingerprint=FP, version=2, chunk_size=128, sign_key=SEED).encode(),
        "v3": pack(v3, fingerprint=FP, version=3, chunk_size=128, sign_key=SEED).encode(),
    }  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def run(floor: int, *payloads: str) -> list[str]:
        args = [str(exe), str(tmp_path / "factory"), str(tmp_path / "key"), str(floor)]
        r = subprocess.run(args + [str(tmp_path / p) for p in payloads], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
        assert r.returncode == 0, (r.returncode, r.stderr)
        return r.stdout.splitlines()

    out = run(0, "v2-unsigned", "v2-other-key", "v3", "v2")
    assert out[:4] == ["Unsigned 1", "BadSignature 1", "Ok 3", "Rollback 3"]
    assert out[4] == "factory 1"
    # after the factory reset the device runs v1 again, but v2 stays below the
    # floor (3): refused by the version check, before its signature is looked at
    assert out[5:] == ["Unsigned", "Rollback", "Ok", "Rollback"]
    assert run(3, "v2")[:1] == ["Rollback 1"]
