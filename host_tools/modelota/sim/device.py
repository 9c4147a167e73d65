"""Simulated devices that persist their model through the native Store.

Both run the real firmware_lib code (Updater + Store) over any storage that
exposes a ``modelota_storage*`` (the simulated NOR flash in the tests):

* :class:`FlashModelDevice` — the model lives in flash and is rewritten in
  place (a flash-resident / XIP model);
* :class:`RamModelDevice` — the model runs from RAM, the Store keeps the last
  committed weights; at boot they are loaded, or the factory weights when the
  store is empty or invalid.

"Rebooting" is building a new device object over the same storage: nothing
but the storage survives, as on a board.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..status import Status
from .native import load


class Storage(Protocol):
    """What the devices need from a storage: the HAL struct and its geometry."""

    @property
    def storage(self) -> Any: ...  # modelota_storage* cdata

    block_size: int
    block_count: int


@dataclass(frozen=True)
class Layout:
    """Block numbers of each Store area (see docs/PORTING.md)."""

    region_block: int
    region_size: int
    meta_block: int
    backup_block: int
    journal_block: int
    journal_blocks: int
    log_block: int
    log_blocks: int

    @property
    def block_count(self) -> int:
        return self.log_block + self.log_blocks

    @classmethod
    def plan(cls, block_size: int, prog_size: int, region_size: int, max_payload: int) -> Layout:
        """A compact layout: region, 2 meta blocks, backup, journal, log.

        The journal gets one entry slot per region block plus spares; the log
        holds a payload of up to ``max_payload`` bytes."""
        region_blocks = -(-region_size // block_size)
        slot = -(-16 // prog_size) * prog_size
        per_block = block_size // slot
        journal_blocks = -(-(region_blocks + 8) // per_block)
        log_blocks = max(1, -(-max_payload // block_size))
        meta = region_blocks
        return cls(
            region_block=0,
            region_size=region_size,
            meta_block=meta,
            backup_block=meta + 2,
            journal_block=meta + 3,
            journal_blocks=journal_blocks,
            log_block=meta + 3 + journal_blocks,
            log_blocks=log_blocks,
        )


class _StoreHandle:
    """modelota_store over a storage, with its lent block buffer."""

    def __init__(self, flash: Storage, layout: Layout) -> None:
        n = load()
        self._n = n
        self.layout = layout
        cfg = n.ffi.new("modelota_store_config*")
        cfg.storage = flash.storage
        for name in (
            "region_block",
            "region_size",
            "meta_block",
            "backup_block",
            "journal_block",
            "journal_blocks",
            "log_block",
            "log_blocks",
        ):
            setattr(cfg, name, getattr(layout, name))
        self._block_buf = n.ffi.new("uint8_t[]", flash.block_size)
        cfg.block_buf = self._block_buf
        self._cfg = cfg
        self._flash = flash  # keeps the storage cdata alive
        self.st = n.ffi.new("modelota_store*")
        self.init_status = Status(n.lib.modelota_store_init(self.st, cfg))

    def recover(self) -> Status:
        return Status(self._n.lib.modelota_store_recover(self.st))

    def format(self, weights: bytes | None, version: int) -> Status:
        ffi = self._n.ffi
        ptr = ffi.NULL if weights is None else ffi.from_buffer(weights)
        return Status(self._n.lib.modelota_store_format(self.st, ptr, version))

    @property
    def state(self) -> int:
        return int(self._n.lib.modelota_store_state_of(self.st))

    @property
    def version(self) -> int:
        return int(self._n.lib.modelota_store_version(self.st))

    @property
    def min_version(self) -> int:
        """The anti-rollback floor kept in the store's records."""
        return int(self._n.lib.modelota_store_min_version(self.st))

    def raise_min_version(self, version: int) -> Status:
        return Status(self._n.lib.modelota_store_raise_min_version(self.st, version))

    def read_region(self) -> bytes:
        n = self._n
        size = self.layout.region_size
        out = n.ffi.new("uint8_t[]", size)
        rc = n.lib.modelota_store_region_read(self.st, 0, out, size)
        if rc != 0:
            raise OSError("store region not readable")
        return bytes(n.ffi.buffer(out, size))


Progress = Callable[[int], None]  # called with the bytes fed so far


def _verifier(n: Any, cfg: Any, public_key: bytes | None) -> list[Any]:
    """Installs the built-in Ed25519 verifier when the device has a public key
    (it then refuses unsigned payloads); returns the cdata to keep alive."""
    if public_key is None:
        return []
    key = n.ffi.new("uint8_t[]", bytes(public_key))
    cfg.verifier = n.lib.modelota_ed25519_verifier(key)
    return [key]


class StreamLost(Exception):
    """Raised by a piece iterator that gave up (the link is gone for good):
    the update is aborted with ``status`` and the region restored."""

    def __init__(self, status: Status = Status.Timeout, message: str = "") -> None:
        super().__init__(message or status.name)
        self.status = status


class _Updating:
    """Shared update loop: begin the store, feed payload to store log + Updater."""

    _n: Any
    store: _StoreHandle
    _u: Any

    def _run(
        self, payload: bytes, piece: int, stop_after: int | None, progress: Progress | None = None
    ) -> Status:
        end = len(payload) if stop_after is None else min(stop_after, len(payload))
        pieces = (payload[pos : min(pos + piece, end)] for pos in range(0, end, piece))
        short = Status.Timeout if stop_after is not None else None
        return self._run_stream(pieces, progress, short)

    def _run_stream(
        self,
        pieces: Iterable[bytes],
        progress: Progress | None = None,
        cut_short: Status | None = None,
    ) -> Status:
        """Feeds the pieces to the store log and the Updater as they come (a
        network download, a serial link...). When the iterable raises
        ``StreamLost`` (or ``cut_short`` is given) the update is aborted with
        that status and the region restored; otherwise it is finished."""
        lib = self._n.lib
        st = Status(lib.modelota_store_begin(self.store.st))
        if st != Status.Ok:
            return st
        st = Status(lib.modelota_begin(self._u))
        if st != Status.Ok:
            lib.modelota_store_cancel(self.store.st)
            return st
        ffi = self._n.ffi
        done = 0
        try:
            for part in pieces:
                buf = ffi.from_buffer(part)
                rc = lib.modelota_store_log(self.store.st, buf, len(part))
                if rc != 0:
                    lib.modelota_store_cancel(self.store.st)
                    return Status(lib.modelota_abort(self._u, rc))
                st = Status(lib.modelota_feed(self._u, buf, len(part)))
                done += len(part)
                if progress is not None:
                    progress(done)
                if st != Status.Ok:
                    lib.modelota_store_cancel(self.store.st)
                    return st
        except StreamLost as e:
            cut_short = e.status
        if cut_short is not None:
            lib.modelota_store_cancel(self.store.st)
            return Status(lib.modelota_abort(self._u, cut_short))
        st = Status(lib.modelota_finish(self._u))
        if st != Status.Ok:
            lib.modelota_store_cancel(self.store.st)
        return st


class FlashModelDevice(_Updating):
    """A model that lives in flash and is updated in place, power-loss safe.

    At first boot the region holds the factory model (flashed with the
    firmware); ``boot()`` formats the store around it."""

    def __init__(
        self,
        flash: Storage,
        layout: Layout,
        fingerprint: bytes,
        factory_version: int,
        buffer_len: int = 1024,
        public_key: bytes | None = None,
    ) -> None:
        n = load()
        self._n = n
        self.flash = flash
        self.public_key = public_key
        self.store = _StoreHandle(flash, layout)
        self.fingerprint = fingerprint
        self.factory_version = factory_version
        self.buffer_len = buffer_len
        self._u = n.ffi.new("modelota_updater*")
        self._keep: list[Any] = []

    def boot(self) -> Status:
        """Power-on: recover the store (format it on first boot)."""
        if self.store.init_status != Status.Ok:
            return self.store.init_status
        st = self.store.recover()
        if st == Status.Ok and self.store.state == self._n.lib.MODELOTA_STORE_EMPTY:
            st = self.store.format(None, self.factory_version)
        return st

    @property
    def version(self) -> int:
        return self.store.version

    def weights(self) -> bytes:
        return self.store.read_region()

    def update(self, payload: bytes, piece: int = 256, stop_after: int | None = None) -> Status:
        n = self._n
        cfg = n.ffi.new("modelota_config*")
        n.lib.modelota_store_attach_flash(cfg, self.store.st)
        fp = n.ffi.new("uint8_t[]", self.fingerprint)
        buf = n.ffi.new("uint8_t[]", self.buffer_len)
        cfg.fingerprint = fp
        cfg.current_version = self.store.version
        cfg.buffer = buf
        cfg.buffer_len = self.buffer_len
        self._keep = [cfg, fp, buf, *_verifier(n, cfg, self.public_key)]
        st = Status(n.lib.modelota_init(self._u, cfg))
        if st != Status.Ok:
            return st
        return self._run(payload, piece, stop_after)


class RamModelDevice(_Updating):
    """A model that runs from RAM, persisted by the Store across reboots."""

    def __init__(
        self,
        flash: Storage,
        layout: Layout,
        fingerprint: bytes,
        factory: bytes,
        factory_version: int,
        buffer_len: int = 1024,
        public_key: bytes | None = None,
    ) -> None:
        n = load()
        self._n = n
        self.public_key = public_key
        self.store = _StoreHandle(flash, layout)
        self.fingerprint = fingerprint
        self.factory = factory
        self.factory_version = factory_version
        self.buffer_len = buffer_len
        self.ram = bytearray(len(factory))
        self.version = 0
        self.booted_from = ""
        self._u = n.ffi.new("modelota_updater*")
        self._keep: list[Any] = []

    def boot(self) -> Status:
        """Power-on: recover, then load the committed weights or the factory ones."""
        lib = self._n.lib
        if self.store.init_status != Status.Ok:
            return self.store.init_status
        st = self.store.recover()
        if st == Status.Ok and self.store.state == lib.MODELOTA_STORE_CLEAN:
            ram = self._n.ffi.from_buffer(self.ram)
            if lib.modelota_store_load(self.store.st, ram, len(self.ram)) == 0:
                self.version = self.store.version
                self.booted_from = "store"
                return Status.Ok
        # empty, invalid or unreadable store: run the factory weights and
        # make the store mirror them (a cut here leaves it empty, not wrong)
        self.ram[:] = self.factory
        self.version = self.factory_version
        self.booted_from = "factory"
        return self.store.format(self.factory, self.factory_version)

    def update(
        self,
        payload: bytes,
        piece: int = 256,
        stop_after: int | None = None,
        progress: Progress | None = None,
    ) -> Status:
        st = self._configure()
        if st != Status.Ok:
            return st
        return self._finished(self._run(payload, piece, stop_after, progress))

    def update_stream(self, pieces: Iterable[bytes], progress: Progress | None = None) -> Status:
        """Applies a payload that arrives in pieces (see ``_run_stream``)."""
        st = self._configure()
        if st != Status.Ok:
            return st
        return self._finished(self._run_stream(pieces, progress))

    def _configure(self) -> Status:
        n = self._n
        cfg = n.ffi.new("modelota_config*")
        wbuf = n.ffi.from_buffer("uint8_t[]", self.ram, require_writable=True)
        n.lib.modelota_store_attach_ram(cfg, self.store.st, wbuf)
        fp = n.ffi.new("uint8_t[]", self.fingerprint)
        buf = n.ffi.new("uint8_t[]", self.buffer_len)
        cfg.fingerprint = fp
        cfg.current_version = self.version
        cfg.buffer = buf
        cfg.buffer_len = self.buffer_len
        self._keep = [cfg, wbuf, fp, buf, *_verifier(n, cfg, self.public_key)]
        return Status(n.lib.modelota_init(self._u, cfg))

    def _finished(self, st: Status) -> Status:
        if st == Status.Ok:
            self.version = int(self._n.lib.modelota_current_version(self._u))
        return st


class SimulatedDevice:
    """A board as a notebook sees it: a model that runs from RAM, its last good
    weights kept in a Store on simulated NOR flash, and payloads applied by
    the real firmware_lib C++ core (the native build), never by Python.

    Everything it reports is read back from the device's state: ``version``
    and ``weights`` after an update are what the core committed; after a
    refused update they are the last good ones (restored by the core);
    :meth:`reboot` rebuilds the device from its flash alone.

        dev = modelota.simulate(factory, model="kws")
        dev.apply(payload)          # Status.Ok
        dev.version, dev.weights    # the new version and bytes
    """

    def __init__(
        self,
        factory: bytes,
        *,
        fingerprint: bytes,
        version: int = 1,
        buffer_len: int = 1024,
        public_key: bytes | None = None,
        max_payload: int | None = None,
        block_size: int = 256,
    ) -> None:
        from .flash import SimFlash

        self.factory = bytes(factory)
        self.fingerprint = bytes(fingerprint)
        self.factory_version = version
        self.buffer_len = buffer_len
        self.public_key = public_key
        # room for a full payload in small chunks (16 bytes of overhead each)
        room = max_payload if max_payload is not None else 2 * len(factory) + 4096
        self.layout = Layout.plan(block_size, 4, len(factory), room)
        self.flash = SimFlash(block_size, self.layout.block_count, 4)
        self.last_status: Status | None = None
        self.updates = 0  # payloads applied successfully since power-on
        self._boot()

    def _boot(self) -> Status:
        self._dev = RamModelDevice(
            self.flash, self.layout, self.fingerprint, self.factory, self.factory_version,
            buffer_len=self.buffer_len, public_key=self.public_key,
        )  # fmt: skip
        st = self._dev.boot()
        if st != Status.Ok:
            raise RuntimeError(f"the simulated device did not boot: {st.name}")
        return st

    def apply(self, payload: Any, piece: int = 256) -> Status:
        """Streams a payload (bytes, a :class:`~modelota.Payload`, or a file
        path) into the device ``piece`` bytes at a time; returns the core's
        status (``Status.Ok``: the new weights are committed)."""
        import os

        from ..format.payload import Payload

        if isinstance(payload, Payload):
            data = payload.encode()
        elif isinstance(payload, (str, os.PathLike)):
            with open(payload, "rb") as f:  # FileNotFoundError names the path
                data = f.read()
        else:
            data = bytes(payload)
        st = self._dev.update(data, piece=max(1, piece))
        self.last_status = st
        self.updates += st == Status.Ok
        return st

    def reboot(self) -> str:
        """Power cycle: a new device over the same flash. Returns where the
        weights came from: ``"store"`` (the last committed update) or ``"factory"``."""
        self._boot()
        return self._dev.booted_from

    @property
    def version(self) -> int:
        """The version of the weights the device runs now."""
        return int(self._dev.version)

    @property
    def weights(self) -> bytes:
        """The weights the device runs now (its RAM)."""
        return bytes(self._dev.ram)

    @property
    def stored_version(self) -> int:
        """The version the Store on flash holds (what a reboot brings back)."""
        return int(self._dev.store.version)

    @property
    def booted_from(self) -> str:
        return self._dev.booted_from

    def state(self) -> dict[str, object]:
        """Everything above as one dict (for printing in a notebook)."""
        import zlib

        return {
            "version": self.version,
            "stored_version": self.stored_version,
            "weights_crc32": f"0x{zlib.crc32(self.weights):08x}",
            "weights_size": len(self._dev.ram),
            "fingerprint": self.fingerprint.hex(),
            "last_status": None if self.last_status is None else self.last_status.name,
            "updates": self.updates,
            "booted_from": self.booted_from,
        }

    def __repr__(self) -> str:
        s = self.state()
        return (
            f"SimulatedDevice(version={s['version']}, weights_crc32={s['weights_crc32']},"
            f" last_status={s['last_status']})"
        )
