"""Builds variants of the native module (sanitizers, other CRC tables) for tests.

Each variant is compiled once per source hash into build/native-variants/ and
reused by later runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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


def build_variant(name: str, sanitize: bool, defines: dict[str, str]) -> Path:
    """Path of the compiled extension for this variant (built if missing)."""
    b = build_module()
    out = CACHE / f"{name}-{b.source_hash()}"
    found = sorted(out.glob(f"{name}*.so"))
    if found:
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    ffi = b.make_ffi(name, sanitize=sanitize, defines=defines, absolute_paths=True)
    return Path(ffi.compile(tmpdir=str(out), verbose=False))


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
