"""Builds variants of the native module (sanitizers, other CRC tables) for tests.

Each variant is compiled once per source hash into build/native-variants/ and
reused by later runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "native-variants"


def build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_native", ROOT / "sim" / "build_native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compiled(out: Path, name: str, build: Callable[[Path], Path]) -> Path:
    """The extension cached in ``out``, compiled by ``build(tmpdir)`` into a
    private directory that is then renamed into place: two test runs that
    need the same variant at once never compile into one directory."""
    found = sorted(out.glob(f"{name}*.so"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    try:
        so = build(tmp)
        with contextlib.suppress(OSError):  # another run may have won the race
            tmp.rename(out)
        found = sorted(out.glob(f"{name}*.so"))
        if found:
            return found[0]
        raise RuntimeError(f"{so.name} was built but is not in {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_variant(name: str, sanitize: bool, defines: dict[str, str]) -> Path:
    """Path of the compiled extension for this variant (built if missing)."""
    b = build_module()

    def build(tmp: Path) -> Path:
        ffi = b.make_ffi(name, sanitize=sanitize, defines=defines, absolute_paths=True)
        return Path(ffi.compile(tmpdir=str(tmp), verbose=False))

    return _compiled(CACHE / f"{name}-{b.source_hash()}", name, build)


def build_patched(name: str, files: dict[str, str], cdef: str = "") -> Path:
    """The native module built from a copy of firmware_lib in which each
    ``files`` entry (path under firmware_lib -> its new text) is replaced,
    with ``cdef`` added to the declarations. For mutation proofs
    (tests/bounds_mutants.py). Cached by the edited texts."""
    b = build_module()
    firmware = ROOT / "firmware_lib"
    h = hashlib.sha256(b.source_hash().encode() + cdef.encode())
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel].encode())

    def build(tmp: Path) -> Path:
        tree = tmp / "firmware_lib"
        shutil.copytree(firmware, tree)
        for rel, text in files.items():
            (tree / rel).write_text(text)
        b.FIRMWARE = tree
        b.CORE_SOURCES = [
            tree / p.relative_to(firmware) if p.is_relative_to(firmware) else p
            for p in b.CORE_SOURCES
        ]
        b.CDEF_TYPES += cdef
        ffi = b.make_ffi(name, absolute_paths=True)
        return Path(ffi.compile(tmpdir=str(tmp), verbose=False))

    return _compiled(CACHE / f"{name}-{h.hexdigest()[:16]}", name, build)


def sanitizer_runtime() -> str | None:
    """The ASan runtime the host compiler links against, for LD_PRELOAD."""
    try:
        path = subprocess.run(
            ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return path if Path(path).is_absolute() and Path(path).exists() else None


def python() -> str:
    return sys.executable
