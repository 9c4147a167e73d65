"""The Updater's own RAM stays within its budget on the host and on AVR.

A probe file defines one ``modelota_updater`` and one ``modelota_decoder``
object (and char arrays of their sizeof as a cross-check); it is compiled
with the real compiler for each target (``avr-g++ -mmcu=atmega2560``, the host
``g++``) and the objects' sizes are read from the symbol table with ``nm -S``,
so the numbers are what the compiler lays out, not sums computed by hand. The
lent chunk buffer is the caller's and is not counted. Budgets: the Updater
without its v2 chunk decoder 320 bytes (MODELOTA_MAX_UPDATER_BYTES), the
decoder 1 KiB (MODELOTA_MAX_DECODER_BYTES: what decoding compressed chunks
costs beyond the chunk buffer).

Run with ``-s`` to see the sizes; they are also in every assertion message.
The AVR half skips when avr-g++ is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_LIB = ROOT / "firmware_lib"
BUDGET = 320  # bytes; MODELOTA_MAX_UPDATER_BYTES's default
DECODER_BUDGET = 1024  # bytes; MODELOTA_MAX_DECODER_BYTES's default

PROBE = """\
#include "modelota.h"
modelota_updater probe;
char size_probe[sizeof(modelota_updater)];
modelota_decoder dprobe;
char dsize_probe[sizeof(modelota_decoder)];
"""


def symbol_sizes(obj: Path, nm: str) -> dict[str, int]:
    out = subprocess.run(
        [nm, "-S", "--size-sort", str(obj)], capture_output=True, text=True, check=True
    ).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def updater_size(tmp_path: Path, cxx: str, nm: str, flags: list[str]) -> tuple[int, int]:
    src = tmp_path / "probe.cpp"
    src.write_text(PROBE)
    obj = tmp_path / "probe.o"
    cmd = [cxx, "-std=c++11", *flags, "-Os", "-I", str(FIRMWARE_LIB), "-c", str(src)]
    cmd += ["-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    sizes = symbol_sizes(obj, nm)
    assert "probe" in sizes and "size_probe" in sizes, f"symbols not found: {sizes}"
    assert sizes["probe"] == sizes["size_probe"], sizes
    assert sizes["dprobe"] == sizes["dsize_probe"], sizes
    return sizes["probe"], sizes["dprobe"]


def check(target: str, size: int, decoder: int) -> None:
    print(f"\nsizeof(modelota_updater) on {target}: {size} bytes, of which the v2 decoder"
          f" {decoder} (budgets {BUDGET} + {DECODER_BUDGET})")
    assert size - decoder <= BUDGET, f"modelota_updater is {size - decoder} bytes on {target}"
    assert decoder <= DECODER_BUDGET, f"modelota_decoder is {decoder} bytes on {target}"


def tool(name: str) -> str | None:
    return shutil.which(name)


@pytest.mark.skipif(
    tool("avr-g++") is None or tool("avr-nm") is None, reason="avr-g++/avr-nm not installed"
)
def test_updater_ram_on_avr(tmp_path: Path) -> None:
    cxx, nm = tool("avr-g++"), tool("avr-nm")
    assert cxx and nm
    check("AVR (atmega2560)", *updater_size(tmp_path, cxx, nm, ["-mmcu=atmega2560"]))


@pytest.mark.skipif(tool("g++") is None or tool("nm") is None, reason="host g++/nm not installed")
def test_updater_ram_on_host(tmp_path: Path) -> None:
    cxx, nm = tool("g++"), tool("nm")
    assert cxx and nm
    check("the host", *updater_size(tmp_path, cxx, nm, []))
