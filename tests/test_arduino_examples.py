"""Every sketch under examples/ compiles with the real Arduino toolchain, as a
user who installed this repository as the ModelOTA library would build it.

How: a temporary sketchbook whose ``libraries/ModelOTA`` is a symlink to the
repository root (arduino-builder follows it; nothing is copied, so the build
uses this tree's src/ and firmware_lib/). Each sketch folder is copied to the
temporary directory and built with Debian's arduino-builder for the Arduino
Mega 2560 (``arduino:avr:mega:cpu=atmega2560``), with ``-warnings all``. A
sketch passes when the builder exits 0, the .elf exists, and no compiler
warning points into this repository's code (the Arduino core's own warnings
are left out: they are not ours).

The SD library: Debian packages only EEPROM, HID, SPI, SoftwareSerial and
Wire, and these tests download nothing. When a real SD library is installed
(``~/Arduino/libraries/SD``, ``/usr/share/arduino/libraries/SD`` or the AVR
platform's ``libraries/SD``), UpdateFromSD is compiled against it. Otherwise
it is compiled against ``tests/arduino_shims/SD``, a compile-only stand-in
that declares the official API (same signatures) and reports "no card". The
test says loudly which one it used (a printed banner and a pytest warning),
and checks in the builder's include cache that ``SD.h`` really came from
there.

The builder needs, on Debian (verified with arduino-builder 1.3.25 and
arduino-core-avr 1.8.7): ``-hardware /usr/share/arduino-builder`` (its
platform.txt holds the ctags recipe; without it the build stops with "ctags
pattern is missing"), ``-tools /usr/bin`` (``/usr/share/arduino/hardware/tools``
does not exist) and ``-DDECIMAL_DIG=17`` (Debian's avr-libc lacks it and the
core's WString.cpp needs it).

Skipped only when arduino-builder is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelota.sim.emulated import arduino_builder_command

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SD_SHIM = ROOT / "tests" / "arduino_shims" / "SD"
# WiFiPull is an ESP32 sketch; no ESP32 core can be installed here, so it is
# built for the Mega against this compile-only stand-in of the ESP32 WiFi API
# (its WiFiClient is a real Arduino Client of the AVR core). It runs for real
# on the host in tests/test_http_pull.py.
WIFI_SHIM = ROOT / "tests" / "arduino_shims" / "WiFi"

HARDWARE = Path("/usr/share/arduino/hardware")
AVR_PLATFORM = HARDWARE / "arduino" / "avr"
FQBN = "arduino:avr:mega:cpu=atmega2560"
REQUIRED_EXAMPLES = (
    "Quickstart",
    "CApi",
    "UpdateFromSerial",
    "UpdateFromSD",
    "SampleLogger",
    "TfliteModel",
)

BUILDER = shutil.which("arduino-builder")
pytestmark = pytest.mark.skipif(BUILDER is None, reason="arduino-builder is not installed")

WARNING_RE = re.compile(r"^(?P<path>[^:\s][^:]*):\d+(?::\d+)?: warning: (?P<msg>.*)$")


def example_sketches() -> list[Path]:
    """examples/<Name>/<Name>.ino, the layout the Arduino IDE requires."""
    return sorted(
        d / f"{d.name}.ino" for d in EXAMPLES.iterdir() if (d / f"{d.name}.ino").is_file()
    )


def real_sd_library() -> Path | None:
    """An installed Arduino SD library, if there is one (never the shim)."""
    candidates = [
        Path.home() / "Arduino" / "libraries" / "SD",
        Path("/usr/share/arduino/libraries/SD"),
        AVR_PLATFORM / "libraries" / "SD",
    ]
    for lib in candidates:
        if (lib / "src" / "SD.h").is_file() or (lib / "SD.h").is_file():
            return lib
    return None


@dataclass
class Sketchbook:
    root: Path
    libraries: Path
    cache: Path
    sd_dir: Path  # the SD library the sketches are compiled against
    sd_is_shim: bool


@dataclass
class Build:
    sketch: Path
    build_path: Path
    returncode: int
    output: str
    command: list[str]

    @property
    def elf(self) -> Path:
        return self.build_path / f"{self.sketch.name}.elf"


@pytest.fixture(scope="module")
def sketchbook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sketchbook]:
    root = tmp_path_factory.mktemp("sketchbook")
    libraries = root / "libraries"
    libraries.mkdir()
    (libraries / "ModelOTA").symlink_to(ROOT, target_is_directory=True)

    real = real_sd_library()
    if real is None:
        (libraries / "SD").symlink_to(SD_SHIM, target_is_directory=True)
        sd_dir, is_shim = SD_SHIM, True
        banner = (
            f"UpdateFromSD is compiled against the COMPILE-ONLY SD STAND-IN {SD_SHIM}"
            " (no real Arduino SD library is installed): it proves the sketch matches the"
            " official SD API, not that it runs with a card"
        )
    else:
        if real.parent != AVR_PLATFORM / "libraries":
            (libraries / "SD").symlink_to(real, target_is_directory=True)
        sd_dir, is_shim = real, False
        banner = f"UpdateFromSD is compiled against the REAL Arduino SD library at {real}"
    print(f"\n{'=' * 78}\n{banner}\n{'=' * 78}")

    (libraries / "WiFi").symlink_to(WIFI_SHIM, target_is_directory=True)
    print(
        f"WiFiPull (ESP32) is compiled against the COMPILE-ONLY WiFi STAND-IN {WIFI_SHIM}:"
        " it proves the sketch and src/ModelOTAHttp build with the real AVR toolchain"
        " and Client.h, not that it runs on an ESP32"
    )

    cache = root / "build-cache"
    cache.mkdir()
    yield Sketchbook(root, libraries, cache, sd_dir, is_shim)


def build(book: Sketchbook, sketch_dir: Path, name: str | None = None) -> Build:
    """Copies the sketch folder into the sketchbook and builds it."""
    name = name or sketch_dir.name
    work = book.root / "sketches" / name
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(sketch_dir, work)
    sketch = work / f"{name}.ino"
    build_path = book.root / "build" / name
    if build_path.exists():
        shutil.rmtree(build_path)
    build_path.mkdir(parents=True)
    assert BUILDER is not None
    cmd = arduino_builder_command(BUILDER, sketch, book.libraries, build_path, book.cache)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, cwd=book.root
    )
    return Build(sketch, build_path, proc.returncode, proc.stdout + proc.stderr, cmd)


def our_warnings(output: str, book: Sketchbook) -> list[str]:
    """Compiler warnings outside the Arduino core and third-party libraries."""
    foreign = [str(HARDWARE)]
    if not book.sd_is_shim:
        foreign.append(str(book.sd_dir))
    found = []
    for line in output.splitlines():
        m = WARNING_RE.match(line)
        if m and not any(m["path"].startswith(p) for p in foreign):
            found.append(line)
    return found


def include_dirs(b: Build) -> dict[str, Path]:
    """Where the builder found each library header (from its include cache)."""
    entries = json.loads((b.build_path / "includes.cache").read_text())
    return {e["Include"]: Path(e["Includepath"]).resolve() for e in entries if e.get("Include")}


def size_report(b: Build) -> str:
    avr_size = shutil.which("avr-size")
    lines = [ln for ln in b.output.splitlines() if ln.startswith(("Sketch uses", "Global"))]
    if avr_size:
        out = subprocess.run(
            [avr_size, "-C", "--mcu=atmega2560", str(b.elf)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines += [ln for ln in out.splitlines() if ln.startswith(("Program:", "Data:"))]
    avr_nm = shutil.which("avr-nm")
    if avr_nm:
        syms = subprocess.run(
            [avr_nm, "-S", "-C", str(b.elf)], capture_output=True, text=True, check=False
        ).stdout
        for ln in syms.splitlines():
            parts = ln.split(maxsplit=3)
            if len(parts) == 4 and parts[2] in "bBdD" and parts[3] == "ota":
                lines.append(f"ModelOTA object `ota`: {int(parts[1], 16)} bytes of RAM")
    return "\n".join(lines)


def test_required_examples_exist() -> None:
    names = [p.parent.name for p in example_sketches()]
    for required in REQUIRED_EXAMPLES:
        assert required in names, f"examples/{required}/{required}.ino is missing ({names})"


def test_every_core_source_reaches_the_arduino_build_once() -> None:
    """The builder compiles only src/: each firmware_lib .cpp must be #included
    by exactly one file there (none forgotten, none twice), and src/ must not
    define any core function itself (no copies)."""
    core = sorted((ROOT / "firmware_lib" / "modelota").glob("*.cpp"))
    assert core, "no firmware_lib sources found"
    definition = re.compile(r'^(?:extern "C"\s+)?[A-Za-z_][\w \t*]*?\b(modelota_\w+)\s*\(', re.M)
    core_functions = {m[1] for c in core for m in definition.finditer(c.read_text())}
    assert "modelota_feed" in core_functions, sorted(core_functions)
    src_files = [p for p in (ROOT / "src").rglob("*") if p.suffix in (".cpp", ".c", ".h")]
    includes: dict[str, list[str]] = {c.name: [] for c in core}
    for f in src_files:
        text = f.read_text()
        for m in re.finditer(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
            target = (f.parent / m[1]).resolve()
            if target.parent == core[0].parent and target.name in includes:
                includes[target.name].append(f.name)
        for name in core_functions:
            assert not re.search(rf"\b{name}\s*\([^;{{]*\)\s*\{{", text), (
                f"{f.relative_to(ROOT)} defines core function {name}: a copy of firmware_lib?"
            )
    bad = {name: users for name, users in includes.items() if len(users) != 1}
    assert not bad, f"firmware_lib sources not #included exactly once from src/: {bad}"


@pytest.mark.parametrize("sketch", example_sketches(), ids=lambda p: p.parent.name)
def test_example_compiles(sketchbook: Sketchbook, sketch: Path) -> None:
    b = build(sketchbook, sketch.parent)
    assert b.returncode == 0, (
        f"arduino-builder failed ({b.returncode}) for {sketch.parent.name}:\n"
        + " ".join(b.command)
        + "\n"
        + b.output[-6000:]
    )
    assert b.elf.is_file(), f"no {b.elf} after a successful build:\n{b.output[-3000:]}"
    ours = our_warnings(b.output, sketchbook)
    assert not ours, "compiler warnings in ModelOTA code:\n" + "\n".join(ours)

    found = include_dirs(b)
    ours_h = [h for h in ("ModelOTA.h", "modelota_core.h") if h in found]
    assert ours_h, f"the sketch includes no ModelOTA header: {found}"
    for h in ours_h:
        assert found[h] == (ROOT / "src").resolve(), f"{h} came from {found[h]}, not this repo"
    if "SD.h" in found:
        expected = (sketchbook.sd_dir / "src").resolve()
        if not expected.is_dir():
            expected = sketchbook.sd_dir.resolve()
        assert found["SD.h"] == expected, f"SD.h came from {found['SD.h']}, expected {expected}"
        which = "COMPILE-ONLY SHIM" if sketchbook.sd_is_shim else "real SD library"
        print(f"\n{sketch.parent.name}: SD.h from {found['SD.h']}  [{which}]")
        if sketchbook.sd_is_shim:
            warnings.warn(
                f"{sketch.parent.name} was compiled against the compile-only SD stand-in"
                f" {SD_SHIM.relative_to(ROOT)}: no real Arduino SD library is installed",
                stacklevel=1,
            )
    if "WiFi.h" in found:
        assert found["WiFi.h"] == (WIFI_SHIM / "src").resolve(), found["WiFi.h"]
        print(f"\n{sketch.parent.name}: WiFi.h from {found['WiFi.h']}  [COMPILE-ONLY SHIM]")
    print(f"\n{sketch.parent.name} ({FQBN}):\n{size_report(b)}")


def test_a_broken_sketch_fails_to_compile(sketchbook: Sketchbook, tmp_path: Path) -> None:
    """The compile test can fail: a sketch calling a method ModelOTA does not
    have must make arduino-builder exit non-zero."""
    d = tmp_path / "MisusesApi"
    d.mkdir()
    (d / "MisusesApi.ino").write_text(
        "#include <ModelOTA.h>\n"
        "uint8_t weights[128];\n"
        "const uint8_t fp[16] = {0};\n"
        "uint8_t buf[128];\n"
        "ModelOTA ota(weights, fp, modelota_backup_ram(weights, 1), buf);\n"
        "void setup() { Serial.begin(9600); ota.updateFromNowhere(Serial); }\n"
        "void loop() {}\n"
    )
    b = build(sketchbook, d)
    assert b.returncode != 0, f"a sketch calling a missing method compiled:\n{b.output[-3000:]}"
    assert "updateFromNowhere" in b.output, b.output[-3000:]
    assert not b.elf.exists()


# PROGMEM factory weights handed over as a plain pointer: on AVR the bytes at
# that address in RAM are not the weights, so a restore would write other
# bytes with no error. Each of these ways of doing it must not compile for
# the Mega (the ArduinoJson way of testing an API: failing builds).
PROGMEM_SKETCH = """#include <ModelOTA.h>
const uint8_t factory[64] PROGMEM = {1, 2, 3};
const uint8_t fp[16] = {0};
const uint32_t table[2] PROGMEM = {0, 8};
uint8_t weights[64];
uint8_t buf[128];
%s
void setup() {}
void loop() {}
"""
PROGMEM_MISUSES = {
    # the field form of ModelOTA <= 0.2 (and of the old README snippet)
    "image-field": (
        "modelota_config cfg;\n"
        "void configure() { memset(&cfg, 0, sizeof(cfg)); cfg.backup.image = factory; }",
        r"has no member named .image.",
    ),
    # the memory-mapped constructor exists only where flash is memory-mapped
    "image-constructor": (
        "modelota_source src = modelota_backup_image(factory, sizeof(factory), 1);",
        "modelota_backup_image",
    ),
    # the class constructor of 0.2 took a bare pointer and guessed
    "old-class-constructor": (
        "ModelOTA ota(weights, sizeof(weights), fp, 1, factory, buf, sizeof(buf));",
        "is gone",
    ),
    # a PROGMEM writable-range table: the same trap (numbers read from RAM)
    "writable-ranges-field": (
        "modelota_config cfg;\n"
        "void configure() { cfg.writable.ranges = table; cfg.writable.count = 1; }",
        r"has no member named .ranges.",
    ),
    "writable-bare-table": (
        "ModelOTA ota(weights, fp, modelota_backup_flash(factory, 1), buf);\n"
        "void configure() { ota.setWritableRanges(table); }",
        "say where the table is",
    ),
}


@pytest.mark.parametrize("misuse", sorted(PROGMEM_MISUSES))
def test_progmem_weights_as_a_plain_pointer_do_not_compile(
    sketchbook: Sketchbook, tmp_path: Path, misuse: str
) -> None:
    code, message = PROGMEM_MISUSES[misuse]
    name = "Misuse" + "".join(w.title() for w in misuse.split("-"))
    d = tmp_path / name
    d.mkdir()
    (d / f"{name}.ino").write_text(PROGMEM_SKETCH % code)
    b = build(sketchbook, d)
    assert b.returncode != 0, f"{misuse} compiled for the Mega:\n{b.output[-3000:]}"
    assert re.search(message, b.output), b.output[-3000:]  # gcc's quotes are UTF-8
    assert not b.elf.exists()


def test_the_named_flash_source_compiles(sketchbook: Sketchbook, tmp_path: Path) -> None:
    """Control for the failing builds above: the same sketch saying where the
    weights and the writable-range table are (modelota_backup_flash,
    modelota_writable_flash; the class and the C config) builds cleanly."""
    d = tmp_path / "NamedFlashSource"
    d.mkdir()
    code = (
        "ModelOTA ota(weights, fp, modelota_backup_flash(factory, 1), buf);\n"
        "modelota_config cfg;\n"
        "void configure() {\n"
        "  ota.setWritableRanges(modelota_writable_flash(table));\n"
        "  modelota_config_init(&cfg, modelota_target_ram(weights),\n"
        "                       modelota_backup_flash(factory, sizeof(factory), 1), fp,\n"
        "                       buf, sizeof(buf));\n"
        "  cfg.writable = modelota_writable_flash(table, 1);\n"
        "}"
    )
    (d / "NamedFlashSource.ino").write_text(PROGMEM_SKETCH % code)
    b = build(sketchbook, d)
    assert b.returncode == 0, b.output[-3000:]
    assert not our_warnings(b.output, sketchbook), b.output[-3000:]


def test_a_warning_in_our_code_is_caught(sketchbook: Sketchbook, tmp_path: Path) -> None:
    """The warning check can fail: an unused variable next to ModelOTA code is
    reported by the builder at -warnings all and found by our_warnings()."""
    d = tmp_path / "HasWarning"
    d.mkdir()
    (d / "HasWarning.ino").write_text(
        "#include <ModelOTA.h>\n"
        "void setup() { int unused_local = modelota_crc32(0, nullptr, 0); }\n"
        "void loop() {}\n"
    )
    b = build(sketchbook, d)
    assert b.returncode == 0, b.output[-3000:]
    ours = our_warnings(b.output, sketchbook)
    assert any("unused_local" in w for w in ours), (
        f"the unused variable was not reported as ours: {ours}\n{b.output[-3000:]}"
    )


def test_symlinked_library_is_this_tree(sketchbook: Sketchbook) -> None:
    lib = sketchbook.libraries / "ModelOTA"
    assert lib.is_symlink() and lib.resolve() == ROOT
    assert (lib / "library.properties").is_file()
    props = dict(
        ln.split("=", 1)
        for ln in (ROOT / "library.properties").read_text().splitlines()
        if "=" in ln and not ln.startswith("#")
    )
    for key in (
        "name",
        "version",
        "author",
        "maintainer",
        "sentence",
        "paragraph",
        "category",
        "url",
        "architectures",
        "includes",
    ):
        assert props.get(key), f"library.properties lacks {key}"
    assert props["name"] == "ModelOTA"
    assert props["includes"] == "ModelOTA.h"
    assert (ROOT / "src" / props["includes"]).is_file()
