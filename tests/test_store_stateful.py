"""Random sequences of updates, aborts, corrupted payloads, power cuts and
reboots against a reference model of what the device must hold.

The reference keeps the committed (weights, version). After a power cut
during an update it accepts exactly the old or exactly the new model at the
next boot, and adopts whichever the device shows; anything else fails.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from modelota import Status, pack
from modelota.sim.device import FlashModelDevice, Layout, RamModelDevice
from modelota.sim.flash import SimFlash
from modelota.sim.sweep import FP, GEOMETRIES

MAX_PAYLOAD = 6000


class DeviceMachine(RuleBasedStateMachine):
    mode = "flash"

    @initialize(g=st.sampled_from(GEOMETRIES), size=st.integers(1, 2500), seed=st.integers(0, 99))
    def setup(self, g, size: int, seed: int) -> None:  # type: ignore[no-untyped-def]
        self.rnd = random.Random(seed)
        self.size = size
        self.layout = Layout.plan(g.block_size, g.prog_size, size, MAX_PAYLOAD)
        self.flash = SimFlash(g.block_size, self.layout.block_count, g.prog_size, g.erased_value)
        self.factory = self.rnd.randbytes(size)
        if self.mode == "flash":
            self.flash.load(0, self.factory)
        self.committed = (self.factory, 1)
        self.powered = False
        self.boot()

    def new_device(self) -> FlashModelDevice | RamModelDevice:
        if self.mode == "flash":
            return FlashModelDevice(self.flash, self.layout, FP, factory_version=1)
        return RamModelDevice(self.flash, self.layout, FP, self.factory, factory_version=1)

    def held(self) -> tuple[bytes, int]:
        d = self.dev
        if isinstance(d, FlashModelDevice):
            return d.weights(), d.version
        return bytes(d.ram), d.version

    def boot(self, candidates: list[tuple[bytes, int]] | None = None) -> None:
        self.flash.reboot()
        self.dev = self.new_device()
        assert self.dev.boot() == Status.Ok
        self.powered = True
        got = self.held()
        allowed = candidates or [self.committed]
        assert got in allowed, f"device holds version {got[1]}, allowed {[v for _, v in allowed]}"
        self.committed = got

    def payload(self, version: int, delta: bool) -> tuple[bytes, bytes]:
        old = self.committed[0]
        if delta:
            new = bytearray(old)
            for _ in range(self.rnd.randint(1, 3)):
                at = self.rnd.randrange(self.size)
                run = min(self.size - at, self.rnd.choice([1, 9, 300]))
                new[at : at + run] = self.rnd.randbytes(run)
            body = pack(
                bytes(new),
                fingerprint=FP,
                version=version,
                chunk_size=self.rnd.choice([64, 200, 1024]),
                base=old,
                base_version=self.committed[1],
            )
            return bytes(new), body.encode()
        new_b = self.rnd.randbytes(self.size)
        body = pack(
            new_b, fingerprint=FP, version=version, chunk_size=self.rnd.choice([64, 200, 1024])
        )
        return new_b, body.encode()

    @precondition(lambda self: self.powered)
    @rule(delta=st.booleans(), jump=st.integers(1, 3))
    def update(self, delta: bool, jump: int) -> None:
        new, raw = self.payload(self.committed[1] + jump, delta)
        assert self.dev.update(raw) == Status.Ok
        self.committed = (new, self.committed[1] + jump)

    @precondition(lambda self: self.powered)
    @rule(delta=st.booleans(), where=st.floats(0, 1))
    def corrupted_update(self, delta: bool, where: float) -> None:
        _, raw = self.payload(self.committed[1] + 1, delta)
        bad = bytearray(raw)
        bad[min(len(bad) - 1, int(where * len(bad)))] ^= 0x20
        assert self.dev.update(bytes(bad)) != Status.Ok

    @precondition(lambda self: self.powered)
    @rule(back=st.integers(0, 2))
    def stale_update(self, back: int) -> None:
        version = self.committed[1] - back
        _, raw = self.payload(max(version, 0), False)
        expected = Status.AlreadyCurrent if back == 0 else Status.Rollback
        if version < 0:
            return
        assert self.dev.update(raw) == expected

    @precondition(lambda self: self.powered)
    @rule(delta=st.booleans(), where=st.floats(0, 1))
    def interrupted_update(self, delta: bool, where: float) -> None:
        _, raw = self.payload(self.committed[1] + 1, delta)
        assert self.dev.update(raw, stop_after=int(where * (len(raw) - 1))) == Status.Timeout

    @precondition(lambda self: self.powered)
    @rule(delta=st.booleans(), at=st.integers(0, 400), tear=st.booleans())
    def power_cut_during_update(self, delta: bool, at: int, tear: bool) -> None:
        new, raw = self.payload(self.committed[1] + 1, delta)
        self.flash.cut_power(self.flash.ops + at, tear=tear, seed=self.rnd.randrange(1, 2**32))
        status = self.dev.update(raw)
        if status == Status.Ok:
            # the update finished before the cut point: it must be committed
            self.flash.cut_power(-1, tear=False, seed=1)
            self.committed = (new, self.committed[1] + 1)
            return
        self.powered = False
        self.candidates = [self.committed, (new, self.committed[1] + 1)]

    @precondition(lambda self: not self.powered)
    @rule(cut_recovery=st.booleans(), at=st.integers(0, 60), tear=st.booleans())
    def reboot_after_cut(self, cut_recovery: bool, at: int, tear: bool) -> None:
        if cut_recovery:
            self.flash.reboot()
            self.flash.cut_power(self.flash.ops + at, tear=tear, seed=self.rnd.randrange(1, 2**32))
            self.new_device().boot()
        self.boot(self.candidates)

    @precondition(lambda self: self.powered)
    @rule()
    def clean_reboot(self) -> None:
        self.boot()

    @invariant()
    def holds_the_committed_model(self) -> None:
        if getattr(self, "powered", False):
            assert self.held() == self.committed


class RamDeviceMachine(DeviceMachine):
    mode = "ram"


DeviceMachine.TestCase.settings = settings(stateful_step_count=25)
RamDeviceMachine.TestCase.settings = settings(stateful_step_count=25)
TestFlashModelDevice = DeviceMachine.TestCase
TestRamModelDevice = RamDeviceMachine.TestCase
