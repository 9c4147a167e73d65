"""link.cpp builds with the strict flags for AVR (ATmega2560) and Cortex-M4,
and its RAM on AVR is small (the link struct; the frame buffer is lent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_lib"
STRICT = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-fno-exceptions"]
STRICT += ["-fno-rtti", "-Os"]
TARGETS = {
    "avr": ("avr-g++", "avr-nm", ["-mmcu=atmega2560"]),
    "cortex-m4": ("arm-none-eabi-g++", "arm-none-eabi-nm", ["-mcpu=cortex-m4", "-mthumb"]),
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_link_cross_compiles(target: str, tmp_path: Path) -> None:
    cxx, nm, flags = TARGETS[target]
    if shutil.which(cxx) is None:
        pytest.skip(f"{cxx} not installed")
    probe = tmp_path / "probe.cpp"
    probe.write_text('#include "modelota.h"\nmodelota_link probe;\n')
    for src in (FIRMWARE / "modelota" / "link.cpp", probe):
        obj = tmp_path / (src.stem + ".o")
        cmd = [cxx, *STRICT, *flags, "-I", str(FIRMWARE), "-c", str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stderr}"
    out = subprocess.run(
        [nm, "-S", str(tmp_path / "probe.o")], capture_output=True, text=True, check=True
    ).stdout
    size = next(
        int(p[1], 16) for p in (line.split() for line in out.splitlines()) if p[-1] == "probe"
    )
    print(f"{target}: sizeof(modelota_link) = {size}")
    assert size <= 192, size
