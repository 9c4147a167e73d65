"""The Store's edges: layout checks, boot fallbacks, capacity limits, storage
faults and decay. Power cuts themselves are swept in test_power_cut.py."""

from __future__ import annotations

import random

import pytest

from modelota import Status, pack
from modelota.sim.device import FlashModelDevice, Layout, RamModelDevice
from modelota.sim.flash import SimFlash
from modelota.sim.native import load
from modelota.sim.sweep import FP


def flash_for(layout: Layout, block: int = 256, prog: int = 4, erased: int = 0xFF) -> SimFlash:
    return SimFlash(block, layout.block_count, prog, erased)


def full(weights: bytes, version: int, chunk: int = 200) -> bytes:
    return pack(weights, fingerprint=FP, version=version, chunk_size=chunk).encode()


def test_layouts_that_overlap_or_overflow_are_refused() -> None:
    good = Layout.plan(256, 4, 1000, 2000)
    flash = flash_for(good)
    assert FlashModelDevice(flash, good, FP, 1).store.init_status == Status.Ok
    bad = [
        Layout(**{**good.__dict__, "backup_block": good.meta_block + 1}),  # inside meta
        Layout(**{**good.__dict__, "log_block": 0}),  # on the region
        Layout(**{**good.__dict__, "log_blocks": good.log_blocks + 1}),  # past the end
        Layout(**{**good.__dict__, "journal_blocks": 0}),
    ]
    for layout in bad:
        assert FlashModelDevice(flash, layout, FP, 1).store.init_status == Status.InvalidArgument
    huge_prog = SimFlash(256, good.block_count, 64)
    assert FlashModelDevice(huge_prog, good, FP, 1).store.init_status == Status.InvalidArgument


def test_ram_model_boots_factory_then_store_then_factory_when_the_store_decays() -> None:
    rnd = random.Random(1)
    factory, v2 = rnd.randbytes(1500), rnd.randbytes(1500)
    layout = Layout.plan(256, 4, 1500, 2000)
    flash = flash_for(layout)
    dev = RamModelDevice(flash, layout, FP, factory, 1)
    assert dev.boot() == Status.Ok and dev.booted_from == "factory" and dev.version == 1
    assert dev.update(full(v2, 2)) == Status.Ok
    dev = RamModelDevice(flash, layout, FP, factory, 1)
    assert dev.boot() == Status.Ok and dev.booted_from == "store"
    assert (bytes(dev.ram), dev.version) == (v2, 2)
    # one bit of the stored weights flips (retention): never run it
    raw = bytearray(flash.data)
    raw[700] ^= 0x01
    flash.load(0, bytes(raw))
    dev = RamModelDevice(flash, layout, FP, factory, 1)
    assert dev.boot() == Status.Ok and dev.booted_from == "factory"
    assert (bytes(dev.ram), dev.version) == (factory, 1)


def test_flash_model_reports_a_decayed_region() -> None:
    rnd = random.Random(2)
    factory = rnd.randbytes(1000)
    layout = Layout.plan(256, 4, 1000, 2000)
    flash = flash_for(layout)
    flash.load(0, factory)
    assert FlashModelDevice(flash, layout, FP, 1).boot() == Status.Ok
    raw = bytearray(flash.data)
    raw[10] ^= 0x80
    flash.load(0, bytes(raw))
    assert FlashModelDevice(flash, layout, FP, 1).boot() == Status.StorageIo


@pytest.mark.parametrize("mode", ["flash", "ram"])
def test_payload_larger_than_the_log_is_refused_and_old_weights_stay(mode: str) -> None:
    rnd = random.Random(3)
    factory, v2 = rnd.randbytes(3000), rnd.randbytes(3000)
    layout = Layout.plan(256, 4, 3000, 1000)  # log for ~1 KB payloads only
    flash = flash_for(layout)
    flash.load(0, factory)
    dev: FlashModelDevice | RamModelDevice
    if mode == "flash":
        dev = FlashModelDevice(flash, layout, FP, 1)
    else:
        dev = RamModelDevice(flash, layout, FP, factory, 1)
    assert dev.boot() == Status.Ok
    assert dev.update(full(v2, 2)) == Status.TooLarge
    held = dev.weights() if isinstance(dev, FlashModelDevice) else bytes(dev.ram)
    assert held == factory and dev.version == 1
    # a delta small enough for the log still goes through
    v3 = bytearray(factory)
    v3[100:120] = rnd.randbytes(20)
    delta = pack(
        bytes(v3), fingerprint=FP, version=3, chunk_size=200, base=factory, base_version=1
    ).encode()
    assert dev.update(delta) == Status.Ok


def test_update_touching_more_blocks_than_the_journal_holds_is_refused() -> None:
    rnd = random.Random(4)
    factory, v2 = rnd.randbytes(8000), rnd.randbytes(8000)
    layout = Layout.plan(256, 16, 8000, 9000)
    small = Layout(**{**layout.__dict__, "journal_blocks": 1})  # 16 slots of 16 B
    flash = flash_for(small, prog=16)
    flash.load(0, factory)
    dev = FlashModelDevice(flash, small, FP, 1)
    assert dev.boot() == Status.Ok
    assert dev.update(full(v2, 2)) == Status.TooLarge
    assert dev.weights() == factory and dev.version == 1


def test_read_error_during_recovery_then_a_clean_boot_recovers() -> None:
    rnd = random.Random(5)
    factory, v2 = rnd.randbytes(2000), rnd.randbytes(2000)
    layout = Layout.plan(256, 4, 2000, 2500)
    flash = flash_for(layout)
    flash.load(0, factory)
    dev = FlashModelDevice(flash, layout, FP, 1)
    assert dev.boot() == Status.Ok
    # count a clean update, then cut two thirds of the way in (inside the apply)
    before = flash.data
    start = flash.ops
    assert dev.update(full(v2, 2)) == Status.Ok
    n = flash.ops - start
    flash.load(0, before)
    dev = FlashModelDevice(flash, layout, FP, 1)
    assert dev.boot() == Status.Ok
    flash.cut_power(flash.ops + 2 * n // 3, tear=True, seed=7)
    assert dev.update(full(v2, 2)) != Status.Ok
    flash.reboot()
    flash.fail_read(flash.reads + 3)
    assert FlashModelDevice(flash, layout, FP, 1).boot() == Status.StorageIo
    dev = FlashModelDevice(flash, layout, FP, 1)
    assert dev.boot() == Status.Ok
    assert (dev.weights(), dev.version) in [(factory, 1), (v2, 2)]


def test_a_decayed_log_is_never_applied() -> None:
    """Cut right after the COMMITTED record, flip a log bit: recovery refuses to
    apply a payload it cannot vouch for, rather than write garbage."""
    rnd = random.Random(6)
    factory, v2 = rnd.randbytes(1000), rnd.randbytes(1000)
    layout = Layout.plan(256, 4, 1000, 1500)
    flash = flash_for(layout)
    flash.load(0, factory)
    dev = FlashModelDevice(flash, layout, FP, 1)
    assert dev.boot() == Status.Ok
    before = flash.data
    lib = load().lib
    # find the first operation after which the store reads as PENDING
    for cut in range(1, 400):
        flash.load(0, before)
        flash.reboot()
        dev = FlashModelDevice(flash, layout, FP, 1)
        assert dev.boot() == Status.Ok
        flash.cut_power(flash.ops + cut, tear=False, seed=1)
        dev.update(full(v2, 2))
        flash.reboot()
        probe = FlashModelDevice(flash, layout, FP, 1)
        if probe.store.state == lib.MODELOTA_STORE_PENDING:
            break
    else:
        pytest.fail("never saw a committed, unapplied update")
    raw = bytearray(flash.data)
    raw[layout.log_block * 256 + 150] ^= 0x04  # inside the logged payload
    flash.load(0, bytes(raw))
    assert FlashModelDevice(flash, layout, FP, 1).boot() == Status.StorageIo
