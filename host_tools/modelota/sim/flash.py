"""A simulated NOR flash for the storage HAL, with power-loss injection.

:class:`SimFlash` owns the memory of a ``sim_flash`` (sim/sim_flash.h) and
hands the C core a ``modelota_storage*`` working on it::

    flash = SimFlash(block_size=4096, block_count=16, prog_size=16)
    cfg.storage = flash.storage              # a modelota_store_config, say
    start = flash.ops
    flash.cut_power(start + 7, tear=True)    # power lost during the 8th prog/erase from now
    ...                                      # the core fails with a storage error
    flash.reboot()                           # power back, memory as the cut left it

Semantics (enforced in C): erase sets a block to ``erased_value``; prog only
moves bits away from it (AND for 0xFF, OR for 0x00) and, when ``strict``,
refuses bytes that are not erased; prog offsets and sizes are multiples of
``prog_size``; nothing crosses a block. ``ops`` numbers progs and erases (not
reads or syncs); the op numbered ``cut_at`` is torn or lost and the flash is
``dead`` until :meth:`SimFlash.reboot`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from .native import load

_U32 = 0xFFFFFFFF


class FlashCode(IntEnum):
    """Return codes of the sim_flash callbacks (SIM_FLASH_* in sim/sim_flash.h)."""

    OK = 0
    EINVAL = -1  # out of range, misaligned, size 0, NULL buffer
    ENOTERASED = -2  # strict mode: prog over bytes that are not erased
    ECUT = -3  # power was lost during this operation
    EDEAD = -4  # power is off since a cut: reboot first
    EREAD = -5  # injected read error


class FlashError(Exception):
    """A simulated flash call returned an error code."""

    def __init__(self, op: str, code: int) -> None:
        try:
            self.code: FlashCode | int = FlashCode(code)
            name = self.code.name
        except ValueError:
            self.code = code
            name = str(code)
        super().__init__(f"{op}: {name}")


class SimFlash:
    """``block_count`` blocks of ``block_size`` bytes, programmed ``prog_size`` at a time.

    The memory starts erased (every byte ``erased_value``). Per-block erase
    counts are always kept (:attr:`erase_counts`).
    """

    def __init__(
        self,
        block_size: int,
        block_count: int,
        prog_size: int,
        erased_value: int = 0xFF,
        strict: bool = True,
    ) -> None:
        n = load()
        self._ffi = n.ffi
        self._lib = n.lib
        self.size = block_size * block_count
        if block_size <= 0 or block_count <= 0 or prog_size <= 0 or self.size > _U32:
            raise ValueError("block_size, block_count and prog_size must be positive")
        self._mem: Any = n.ffi.new("uint8_t[]", self.size)
        self._erase_counts: Any = n.ffi.new("uint32_t[]", block_count)
        self._bad_read: Any = n.ffi.new("uint8_t[]", block_count)
        self._f: Any = n.ffi.new("sim_flash*")
        rc = n.lib.sim_flash_init(
            self._f, self._mem, block_size, block_count, prog_size, erased_value
        )
        if rc != 0:
            raise ValueError(
                f"bad geometry: block_size {block_size} must be a multiple of prog_size"
                f" {prog_size}, erased_value {erased_value:#x} must be 0xff or 0x00"
            )
        self._f.erase_counts = self._erase_counts
        self._f.bad_read = self._bad_read
        self._f.strict = 1 if strict else 0
        self._storage: Any = n.ffi.new("modelota_storage*")
        n.lib.sim_flash_storage(self._f, self._storage)
        self.block_size = block_size
        self.block_count = block_count
        self.prog_size = prog_size
        self.erased_value = erased_value

    # --- handles for the C core ---------------------------------------------

    @property
    def storage(self) -> Any:
        """The ``modelota_storage*`` working on this flash (valid while ``self`` lives)."""
        return self._storage

    @property
    def raw(self) -> Any:
        """The ``sim_flash*`` itself, for fields without a property here."""
        return self._f

    # --- contents, bypassing flash semantics --------------------------------

    @property
    def data(self) -> bytes:
        """A snapshot of the whole memory."""
        return bytes(self._ffi.buffer(self._mem, self.size))

    def block(self, index: int) -> bytes:
        """A snapshot of one block."""
        if not 0 <= index < self.block_count:
            raise IndexError(index)
        start = index * self.block_size
        return bytes(self._ffi.buffer(self._mem, self.size)[start : start + self.block_size])

    def load(self, offset: int, data: bytes) -> None:
        """Writes ``data`` at byte ``offset`` of the memory as a programmer would
        (factory image): no erase needed, no counters, any alignment."""
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"{len(data)} bytes at {offset} do not fit in {self.size}")
        self._ffi.buffer(self._mem, self.size)[offset : offset + len(data)] = bytes(data)

    # --- the storage callbacks, from Python ---------------------------------

    def read(self, block: int, off: int, size: int) -> bytes:
        buf = self._ffi.new("uint8_t[]", max(size, 1))
        self._check("read", self._lib.sim_flash_read(self._storage, block, off, buf, size))
        return bytes(self._ffi.buffer(buf, size))

    def prog(self, block: int, off: int, data: bytes) -> None:
        buf = self._ffi.new("uint8_t[]", bytes(data) or b"\0")
        self._check("prog", self._lib.sim_flash_prog(self._storage, block, off, buf, len(data)))

    def erase(self, block: int) -> None:
        self._check("erase", self._lib.sim_flash_erase(self._storage, block))

    def sync(self) -> None:
        self._check("sync", self._lib.sim_flash_sync(self._storage))

    @staticmethod
    def _check(op: str, rc: int) -> None:
        if rc != 0:
            raise FlashError(op, rc)

    # --- faults ----------------------------------------------------------------

    def cut_power(self, at_op: int, tear: bool = True, seed: int = 1) -> None:
        """Power is lost during op number ``at_op`` (absolute, 0-based over
        :attr:`ops`; pass ``flash.ops + i`` for the i-th op from now; negative
        disarms). ``tear`` programs or erases a random subset of the op's bits
        (xorshift32 seeded with ``seed``), otherwise the op has no effect."""
        self._lib.sim_flash_cut_power(self._f, max(at_op, -1), 1 if tear else 0, seed & _U32)

    def reboot(self) -> None:
        """Power comes back: not dead, no cut armed; memory, counters and read faults kept."""
        self._lib.sim_flash_reboot(self._f)

    def fail_read(self, at: int) -> None:
        """The read numbered ``at`` (absolute, 0-based over :attr:`reads`) fails
        once with EREAD; negative disarms."""
        self._f.fail_read_at = max(at, -1)

    def set_bad_read(self, block: int, bad: bool = True) -> None:
        """Every read in ``block`` fails with EREAD while ``bad``."""
        if not 0 <= block < self.block_count:
            raise IndexError(block)
        self._bad_read[block] = 1 if bad else 0

    @property
    def dead(self) -> bool:
        return bool(self._f.dead)

    @property
    def cut_at(self) -> int:
        return int(self._f.cut_at)

    @property
    def strict(self) -> bool:
        return bool(self._f.strict)

    @strict.setter
    def strict(self, on: bool) -> None:
        self._f.strict = 1 if on else 0

    # --- counters ----------------------------------------------------------------

    @property
    def ops(self) -> int:
        """Progs and erases that reached the medium: the numbering of :meth:`cut_power`."""
        return int(self._f.ops)

    @property
    def reads(self) -> int:
        return int(self._f.reads)

    @property
    def progs(self) -> int:
        return int(self._f.progs)

    @property
    def erases(self) -> int:
        return int(self._f.erases)

    @property
    def syncs(self) -> int:
        return int(self._f.syncs)

    @property
    def errors(self) -> int:
        """Calls that returned an error, for any reason."""
        return int(self._f.errors)

    @property
    def bytes_programmed(self) -> int:
        """Bytes of the progs that completed."""
        return int(self._f.bytes_programmed)

    @property
    def erase_counts(self) -> list[int]:
        """Erases per block, torn ones included."""
        return list(self._erase_counts)
