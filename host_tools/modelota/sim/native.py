"""The firmware_lib C++ core, compiled natively through cffi, as a simulated device.

``modelota._native`` is built from the real firmware_lib sources at
``pip install`` (sim/build_native.py). Setting ``MODELOTA_NATIVE`` to the path
of another build of the same module (the tests' ASan+UBSan variant) loads that
one instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..status import Status

_module: ModuleType | None = None


def load() -> ModuleType:
    """The native module (cached): ``MODELOTA_NATIVE`` if set, else the installed build."""
    global _module
    if _module is None:
        path = os.environ.get("MODELOTA_NATIVE")
        if path:
            name = os.path.basename(path).split(".")[0]
            loader = importlib.machinery.ExtensionFileLoader(name, path)
            spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            if spec is None:
                raise ImportError(f"cannot load native module from {path}")
            mod = importlib.util.module_from_spec(spec)
            loader.exec_module(mod)
            _module = mod
        else:
            import modelota._native as _native  # type: ignore[import-not-found]

            _module = _native
    return _module


def crc32(data: bytes, start: int = 0) -> int:
    """The device's CRC32 (modelota_crc32)."""
    n = load()
    return int(n.lib.modelota_crc32(start, n.ffi.from_buffer(data), len(data)))


def status_name(status: int) -> str:
    n = load()
    return str(n.ffi.string(n.lib.modelota_status_str(status)).decode())


# A pluggable signature check written in Python (modelota_config.verifier
# through the modelota_py_verify callback): (header bytes, signature) -> valid.
PyVerifier = Callable[[bytes, bytes], bool]
_py_verifiers: dict[int, PyVerifier] = {}
_py_callback: Any = None


def _py_verify_callback(n: ModuleType) -> Any:
    """The cffi callback behind every Python verifier (one per native module)."""
    global _py_callback
    if _py_callback is None:

        @n.ffi.def_extern(name="modelota_py_verify")  # type: ignore[untyped-decorator]
        def _verify(ctx: Any, msg: Any, length: int, sig: Any) -> int:
            fn = _py_verifiers.get(int(n.ffi.cast("uintptr_t", ctx)))
            if fn is None:
                return 0
            ok = fn(bytes(n.ffi.buffer(msg, length)), bytes(n.ffi.buffer(sig, 64)))
            return 1 if ok else 0

        _py_callback = n.ffi.addressof(n.lib, "modelota_py_verify")
    return _py_callback


def signatures_compiled() -> bool:
    """True when the native core has the built-in Ed25519 verifier."""
    return bool(load().lib.MODELOTA_SIGNATURES)


@dataclass
class Faults:
    """Storage failure injection for the callback paths (sim_region)."""

    fail_write_at: int = -1
    fail_read_at: int = -1
    backup_fail_read_at: int = -1


class Updater:
    """One device: a weight region plus the native Updater that rewrites it.

    ``weights`` is modified in place, as the device's RAM would be.
    ``target_mode`` "ram" hands the core a pointer; "callback" drives it
    through read/write callbacks as a flash or EEPROM port would.
    ``backup_mode`` "image" passes the backup as an addressable image,
    "callback" through a read callback.
    ``public_key`` (32 bytes) installs the built-in Ed25519 verifier;
    ``verifier`` a Python one through the pluggable interface. Either makes
    the device refuse unsigned payloads. ``min_version`` is the anti-rollback floor.
    ``writable`` (offset, length) pairs: the only bytes a payload may change.
    """

    def __init__(
        self,
        weights: bytearray,
        *,
        fingerprint: bytes,
        current_version: int,
        backup: bytes | None = None,
        backup_version: int | None = None,
        buffer_len: int = 1024,
        target_mode: str = "ram",
        backup_mode: str = "image",
        faults: Faults | None = None,
        public_key: bytes | None = None,
        verifier: PyVerifier | None = None,
        min_version: int = 0,
        writable: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        n = load()
        self._n = n
        self.weights = weights
        faults = faults or Faults()
        self._keep: list[Any] = []  # cdata that must outlive the Updater
        cfg = n.ffi.new("modelota_config*")
        wbuf = n.ffi.from_buffer("uint8_t[]", weights, require_writable=True)
        self._keep.append(wbuf)
        if target_mode == "ram":
            cfg.target.ram = wbuf
        elif target_mode == "callback":
            region = self._region(wbuf, len(weights), faults.fail_write_at, faults.fail_read_at)
            cfg.target.read = n.ffi.addressof(n.lib, "sim_region_read")
            cfg.target.write = n.ffi.addressof(n.lib, "sim_region_write")
            cfg.target.ctx = region
            self.target_region = region
        else:
            raise ValueError(f"unknown target_mode {target_mode!r}")
        cfg.target.size = len(weights)
        backup_bytes = bytes(weights) if backup is None else bytes(backup)
        bbuf = n.ffi.new("uint8_t[]", backup_bytes) if backup_bytes else n.ffi.new("uint8_t[1]")
        self._keep.append(bbuf)
        if backup_mode == "image":
            cfg.backup.image = bbuf
        elif backup_mode == "callback":
            region = self._region(bbuf, len(backup_bytes), -1, faults.backup_fail_read_at)
            cfg.backup.read = n.ffi.addressof(n.lib, "sim_region_read")
            cfg.backup.ctx = region
        else:
            raise ValueError(f"unknown backup_mode {backup_mode!r}")
        cfg.backup.version = current_version if backup_version is None else backup_version
        fp = n.ffi.new("uint8_t[]", bytes(fingerprint))
        buf = n.ffi.new("uint8_t[]", max(buffer_len, 1))
        self._keep += [fp, buf]
        cfg.fingerprint = fp
        cfg.current_version = current_version
        cfg.buffer = buf
        cfg.buffer_len = buffer_len
        cfg.min_version = min_version
        if writable is not None:  # the model's writable ranges (docs/FORMAT.md)
            flat = [v for pair in writable for v in pair]
            ranges = n.ffi.new("uint32_t[]", flat or [0])
            self._keep.append(ranges)
            cfg.writable.ranges = ranges
            cfg.writable.count = len(writable)
        if public_key is not None:
            key = n.ffi.new("uint8_t[]", bytes(public_key))
            self._keep.append(key)
            cfg.verifier = n.lib.modelota_ed25519_verifier(key)
        elif verifier is not None:
            cfg.verifier.verify = _py_verify_callback(n)
            token = n.ffi.new("char*")
            self._keep.append(token)
            cfg.verifier.ctx = token
            self._py_token = int(n.ffi.cast("uintptr_t", token))
            _py_verifiers[self._py_token] = verifier
        self._cfg = cfg
        self._u = n.ffi.new("modelota_updater*")
        self.init_status = Status(n.lib.modelota_init(self._u, cfg))

    def _region(self, data: Any, size: int, fail_write: int, fail_read: int) -> Any:
        r = self._n.ffi.new("sim_region*")
        r.bytes = data
        r.size = size
        r.fail_write_at = fail_write
        r.fail_read_at = fail_read
        self._keep.append(r)
        return r

    def begin(self) -> Status:
        return Status(self._n.lib.modelota_begin(self._u))

    def feed(self, data: bytes) -> Status:
        return Status(self._n.lib.modelota_feed(self._u, self._n.ffi.from_buffer(data), len(data)))

    def finish(self) -> Status:
        return Status(self._n.lib.modelota_finish(self._u))

    def abort(self, reason: Status = Status.Aborted) -> Status:
        return Status(self._n.lib.modelota_abort(self._u, int(reason)))

    @property
    def state(self) -> int:
        return int(self._n.lib.modelota_state_of(self._u))

    @property
    def verified(self) -> bool:
        return self.state == self._n.lib.MODELOTA_STATE_VERIFIED

    @property
    def restore(self) -> int:
        return int(self._n.lib.modelota_restore_of(self._u))

    @property
    def current_version(self) -> int:
        return int(self._n.lib.modelota_current_version(self._u))

    @property
    def bytes_in(self) -> int:
        return int(self._n.lib.modelota_bytes_in(self._u))

    @property
    def bytes_wanted(self) -> int:
        return int(self._n.lib.modelota_bytes_wanted(self._u))

    @property
    def data_applied(self) -> int:
        return int(self._n.lib.modelota_data_applied(self._u))

    @property
    def weights_intact(self) -> bool:
        return bool(self._n.lib.modelota_weights_intact(self._u))

    @property
    def min_version(self) -> int:
        return int(self._n.lib.modelota_min_version(self._u))

    def __del__(self) -> None:
        token = getattr(self, "_py_token", None)
        if token is not None and isinstance(_py_verifiers, dict):  # not at interpreter exit
            _py_verifiers.pop(token, None)

    def apply(self, payload: bytes, splits: list[int] | None = None) -> Status:
        """begin, feed ``payload`` cut at ``splits`` (sorted positions), finish.

        Returns the first failure, or the result of finish."""
        st = self.begin()
        if st != Status.Ok:
            return st
        cuts = [0, *(s for s in (splits or []) if 0 < s < len(payload)), len(payload)]
        for a, b in itertools.pairwise(cuts):
            st = self.feed(payload[a:b])
            if st != Status.Ok:
                return st
        return self.finish()
