"""Every storage port in docs/PORTING.md works, as printed, on its medium.

The ports are files (docs/ports/*.h) that the doc shows verbatim: the first
test checks each marked block of PORTING.md equals its file, and that every
file is shown. Each port is then compiled with the host compiler against a
stand-in with the real library's behaviour (tests/port_standins: AVR
EEPROM, ESP-IDF partition on NOR flash, STM32L4 HAL flash; the SD library
stand-in in tests/arduino_shims/SD) and driven by tests/ports/port_driver.cpp
through the Store: a medium formatted with v1 reads back v1; a payload
applied reads back v2, version 2, after a reboot; the same update with the
power cut after k storage operations, for every k (every 7th of the EEPROM's
byte writes; all of them with --run-slow), reboots to exactly v1 or exactly
v2, and from v1
the update done again gives v2. Both a RAM model (the Store keeps its copy)
and a model living in the storage (rewritten in place).

The SD port's bug of old (FILE_WRITE, whose O_APPEND sends every write to
the end of the file) is shown to fail the read-back against the stand-in.
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from docblocks import marked_tested_by

from modelota import pack
from modelota.sim.device import Layout

ROOT = Path(__file__).resolve().parent.parent
PORTS = ROOT / "docs" / "ports"
DRIVER = ROOT / "tests" / "ports"
STANDINS = ROOT / "tests" / "port_standins"
SD_SHIM = ROOT / "tests" / "arduino_shims" / "SD" / "src"
CORE = ROOT / "firmware_lib" / "modelota"
FINGERPRINT = b"port-test-finger"
REGION = 1024
CHUNK = 128


@dataclass(frozen=True)
class Port:
    name: str  # docs/ports/NAME.h, tests/ports/adapt_NAME.{c,cpp}
    block_size: int
    prog_size: int
    standin: tuple[Path, ...]  # stand-in sources to link
    cut_step: int  # every k-th operation is cut in the default run


PORT_LIST = [
    Port("avr_eeprom", 64, 1, (), 7),
    Port("esp32_partition", 4096, 4, (STANDINS / "esp_partition.c",), 1),
    Port("sd_file", 512, 1, (SD_SHIM / "SD.cpp",), 1),
    Port("stm32_flash", 2048, 8, (STANDINS / "stm32l4xx_hal.c",), 1),
]

GXX = shutil.which("g++")
GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GXX is None or GCC is None, reason="gcc/g++ not installed")


def doc_blocks() -> dict[str, str]:
    """docs/ports/NAME -> PORTING.md's block marked
    <!-- doc-test: tested-by=tests/test_porting_doc.py excerpt=docs/ports/NAME -->."""
    found = {}
    for b in marked_tested_by("tests/test_porting_doc.py"):
        assert b.page == "docs/PORTING.md", b.where
        name = b.options.get("excerpt")
        if name is not None:
            assert name not in found, f"{name} is shown twice"
            found[name] = b.text
    return found


def config_snippet() -> str:
    """PORTING.md's C configuration block (marked tested-by, no excerpt)."""
    snippets = [b.text for b in marked_tested_by("tests/test_porting_doc.py")
                if "excerpt" not in b.options]  # fmt: skip
    assert len(snippets) == 1, snippets
    assert "modelota_config_init(&cfg" in snippets[0]
    return snippets[0]


def test_the_doc_shows_every_port_file_verbatim() -> None:
    blocks = doc_blocks()
    files = {f"docs/ports/{p.name}": p.read_text() for p in sorted(PORTS.glob("*.h"))}
    assert set(blocks) == set(files), (sorted(blocks), sorted(files))
    for name, text in files.items():
        assert blocks[name] == text, f"PORTING.md's block for {name} differs from the file"
    assert len(files) == len(PORT_LIST)


INCLUDES = [
    f"-I{p}"
    for p in (DRIVER, STANDINS, SD_SHIM, ROOT / "tests" / "arduino_host", ROOT / "src",
              ROOT / "firmware_lib", CORE)
]  # fmt: skip
WARN = ["-Wall", "-Wextra", "-Werror", "-Wconversion", "-O1"]
CORE_UNITS = ("crc32", "status", "decode", "updater", "store", "sha256", "sha512", "ed25519")


def compile_unit(src: Path, obj: Path) -> str:
    if src.suffix == ".c":
        cmd = [str(GCC), "-std=c11", *WARN, *INCLUDES, "-c", str(src), "-o", str(obj)]
    else:
        cmd = [str(GXX), "-std=c++11", *WARN, *INCLUDES, "-c", str(src), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return str(obj)


@pytest.fixture(scope="module")
def common_objs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The driver and the core, compiled once for every port."""
    out = tmp_path_factory.mktemp("common")
    units = [DRIVER / "port_driver.cpp", *(CORE / f"{n}.cpp" for n in CORE_UNITS)]
    return [compile_unit(src, out / f"{src.stem}.o") for src in units]


def compile_port(port: Port, common: list[str], out: Path, port_text: str | None = None) -> Path:
    """Links tests/ports/port_driver.cpp with the port's adapter and
    stand-in. With ``port_text``, the port's file is replaced by that text."""
    out.mkdir(parents=True, exist_ok=True)
    adapter = next(DRIVER.glob(f"adapt_{port.name}.c*"))
    if port_text is not None:  # the adapter includes ../../docs/ports/NAME.h
        (out / "docs" / "ports").mkdir(parents=True, exist_ok=True)
        (out / "docs" / "ports" / f"{port.name}.h").write_text(port_text)
        (out / "a" / "b").mkdir(parents=True, exist_ok=True)
        shutil.copy(adapter, out / "a" / "b" / adapter.name)
        shutil.copy(DRIVER / "port.h", out / "a" / "b" / "port.h")
        adapter = out / "a" / "b" / adapter.name
    objs = [compile_unit(src, out / f"{src.stem}.o") for src in (adapter, *port.standin)]
    exe = out / "port_driver"
    proc = subprocess.run(
        [str(GXX), *common, *objs, "-o", str(exe)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return exe


def weights(seed: int) -> bytes:
    return bytes(((i * 131 + seed * 17) ^ (i >> 3) ^ seed) & 0xFF for i in range(REGION))


def run_port(
    exe: Path, port: Port, tmp: Path, mode: str, cut_step: int
) -> dict[str, str]:
    v1, v2 = weights(1), weights(2)
    payload = pack(v2, fingerprint=FINGERPRINT, version=2, chunk_size=CHUNK).encode()
    layout = Layout.plan(port.block_size, port.prog_size, REGION, len(payload))
    for name, data in (("v1", v1), ("v2", v2), ("payload", payload)):
        (tmp / name).write_bytes(data)
    fields = [layout.region_block, layout.region_size, layout.meta_block, layout.backup_block,
              layout.journal_block, layout.journal_blocks, layout.log_block, layout.log_blocks]
    args = [str(exe), mode, *map(str, fields), str(tmp / "v1"), str(tmp / "v2"),
            str(tmp / "payload"), str(cut_step)]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    res = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert zlib.crc32(v1) != zlib.crc32(v2)
    return res


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, common_objs: list[str]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ports")
    return {p.name: compile_port(p, common_objs, root / p.name) for p in PORT_LIST}


@pytest.mark.parametrize("mode", ["ram", "flash"])
@pytest.mark.parametrize("port", PORT_LIST, ids=lambda p: p.name)
def test_port_keeps_a_model_through_updates_and_power_cuts(
    driver: dict[str, Path], port: Port, mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    step = 1 if request.config.getoption("--run-slow", default=False) else port.cut_step
    res = run_port(driver[port.name], port, tmp_path, mode, step)
    assert res["format"] == "Ok" and res["format_load"] == "Ok", res
    assert res["format_same"] == "1", "the model written is not what reads back"
    assert res["update"] == "Ok", res
    assert int(res["update_ops"]) > 0
    assert res["update_load"] == "Ok" and res["update_version"] == "2", res
    assert res["update_same"] == "1", "after the update a reboot does not read v2 back"
    cuts = int(res["cuts"])
    assert cuts >= int(res["update_ops"]) // step, res
    assert res["bad"] == "0", f"a power cut left neither v1 nor v2: {res}"
    assert res["retry_bad"] == "0", f"the update failed again after a cut: {res}"
    assert int(res["old"]) > 0 and int(res["new"]) > 0, res  # cuts on both sides of the commit


def test_sd_file_write_mode_appends_and_fails_the_read_back(
    tmp_path: Path, common_objs: list[str]
) -> None:
    """The SD port as PORTING.md printed it before: FILE_WRITE. On the
    stand-in (as on the real library) O_APPEND sends each block's write to
    the end of the file, so what the Store wrote does not read back."""
    port = next(p for p in PORT_LIST if p.name == "sd_file")
    text = (PORTS / "sd_file.h").read_text()
    opened = "SD.open(path, O_READ | O_WRITE | O_CREAT)"
    assert text.count(opened) == 1
    variant = text.replace(opened, "SD.open(path, FILE_WRITE)")
    exe = compile_port(port, common_objs, tmp_path / "build", variant)
    res = run_port(exe, port, tmp_path, "ram", 0)
    assert res["format_same"] != "1" or res["update_same"] != "1", res
    assert res["format_load"] != "Ok" or res["update_load"] != "Ok", res


@pytest.mark.parametrize("compiler", ["gcc", "avr-gcc", "arm-none-eabi-gcc"])
def test_the_config_snippet_compiles_as_c_without_warnings(compiler: str, tmp_path: Path) -> None:
    """PORTING.md's C configuration block, as plain C for the host, for AVR
    (where MODELOTA_FLASH is PROGMEM) and for a Cortex-M4."""
    cc = shutil.which(compiler)
    if cc is None:
        pytest.skip(f"{compiler} not installed")
    (tmp_path / "snippet.c").write_text(config_snippet())
    target = {"avr-gcc": ["-mmcu=atmega2560"], "arm-none-eabi-gcc": ["-mcpu=cortex-m4", "-mthumb"]}
    cmd = [cc, *target.get(compiler, []), "-std=c99", "-Wall", "-Wextra", "-Werror",
           "-Wmissing-field-initializers", "-pedantic", f"-I{ROOT / 'firmware_lib'}", "-c",
           str(tmp_path / "snippet.c"), "-o", str(tmp_path / "snippet.o")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
