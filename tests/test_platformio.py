"""The PlatformIO side of the library: platformio.ini and library.json.

PlatformIO cannot download platforms or toolchains here (only PyPI is
reachable), so nothing is compiled. What is checked, offline, with the real
``pio`` CLI:

* ``pio project config --json-output`` parses platformio.ini and reports the
  four envs (native, megaatmega2560, nano33ble, esp32dev) with the expected
  platform, board and framework, the Arduino envs pulling the library in
  from this repository (``symlink://.``), the native env building the
  portable core from firmware_lib/.
* library.json matches library.properties (name, version) and its build
  section compiles only src/*.cpp, which #include every firmware_lib .cpp
  exactly once between them; firmware_lib/ is only an include dir.
* ``pio pkg pack`` validates the manifest and produces a tarball holding the
  library (manifests, src/, firmware_lib/, examples/) and none of the Python
  tooling, tests, simulators or CI state.

Skipped only when ``pio`` (pip package ``platformio``, in the test extras) is
not installed.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ENVS = {
    # env: (platform, board, framework)
    "native": ("native", None, None),
    "megaatmega2560": ("atmelavr", "megaatmega2560", ["arduino"]),
    "nano33ble": ("nordicnrf52", "nano33ble", ["arduino"]),
    "esp32dev": ("espressif32", "esp32dev", ["arduino"]),
}


def _find_pio() -> str | None:
    exe = "pio.exe" if os.name == "nt" else "pio"
    beside = Path(sys.executable).parent / exe
    if beside.is_file():
        return str(beside)
    return shutil.which("pio")


PIO = _find_pio()
pytestmark = pytest.mark.skipif(
    PIO is None, reason="pio not installed (pip install platformio, or the test extras)"
)


def _pio(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        PLATFORMIO_SETTING_ENABLE_TELEMETRY="no",
        PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650",
        PLATFORMIO_NO_ANSI="true",
    )
    assert PIO is not None
    proc = subprocess.run(
        [PIO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (
        f"pio {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def project_config() -> dict[str, dict[str, object]]:
    out = _pio("project", "config", "--json-output").stdout
    # The JSON is the last line; anything before it is pio chatter.
    data = json.loads(out.strip().splitlines()[-1])
    return {section: dict(options) for section, options in data}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((ROOT / "library.json").read_text())


def _library_properties() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string("[lib]\n" + (ROOT / "library.properties").read_text())
    return dict(parser["lib"])


def test_envs_have_expected_platform_board_framework(project_config):
    envs = {s.removeprefix("env:"): o for s, o in project_config.items() if s.startswith("env:")}
    assert set(envs) == set(EXPECTED_ENVS)
    for name, (platform, board, framework) in EXPECTED_ENVS.items():
        opts = envs[name]
        assert opts.get("platform") == platform, name
        assert opts.get("board") == board, name
        assert opts.get("framework") == framework, name


def test_arduino_envs_build_this_repository_as_the_library(project_config):
    src_dir = Path(project_config["platformio"]["src_dir"])
    assert src_dir.resolve().parent == (ROOT / "examples").resolve()
    assert list(src_dir.glob("*.ino")), f"src_dir {src_dir} holds no sketch"
    for name in ("megaatmega2560", "nano33ble", "esp32dev"):
        assert project_config[f"env:{name}"].get("lib_deps") == ["symlink://."], name


def test_native_env_builds_the_core_sources(project_config):
    opts = project_config["env:native"]
    assert "ModelOTA" in opts.get("lib_ignore", [])
    src_dir = Path(project_config["platformio"]["src_dir"])
    patterns = re.findall(r"([+-])<([^>]*)>", " ".join(opts["build_src_filter"]))
    included = set()
    for sign, pattern in patterns:
        if sign == "+":
            included |= {p.resolve() for p in src_dir.glob(pattern)}
    expected = {p.resolve() for p in (ROOT / "firmware_lib" / "modelota").glob("*.cpp")}
    assert expected and included == expected
    assert "-I firmware_lib" in " ".join(opts["build_flags"])


def test_manifest_matches_library_properties(manifest):
    props = _library_properties()
    assert manifest["name"] == props["name"] == "ModelOTA"
    assert manifest["version"] == props["version"]
    assert manifest["frameworks"] == ["arduino"]
    assert manifest["platforms"] == "*"
    assert manifest["keywords"]


def test_core_sources_compiled_exactly_once(manifest):
    """library.json compiles src/*.cpp only; those #include each core .cpp once."""
    fs = pytest.importorskip("platformio.fs")
    build = manifest["build"]
    src_dir = ROOT / build["srcDir"]
    compiled = {
        (src_dir / p).resolve()
        for p in fs.match_src_files(str(src_dir), build["srcFilter"], ["c", "cpp", "S"])
    }
    assert compiled == {p.resolve() for p in (ROOT / "src").glob("*.cpp")}
    assert (ROOT / build["includeDir"] / "modelota.h").is_file()

    counts: dict[Path, int] = {}
    for unit in compiled:
        for inc in re.findall(r'#include\s+"([^"]+\.cpp)"', unit.read_text()):
            target = (unit.parent / inc).resolve()
            counts[target] = counts.get(target, 0) + 1
    core = {p.resolve() for p in (ROOT / "firmware_lib" / "modelota").glob("*.cpp")}
    assert core, "no core sources found"
    assert {p: counts.get(p, 0) for p in core} == dict.fromkeys(core, 1)


def test_pkg_pack_contents(tmp_path):
    _pio("pkg", "pack", "--output", str(tmp_path), str(ROOT))
    tarballs = list(tmp_path.glob("*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    version = _library_properties()["version"]
    assert tarballs[0].name == f"ModelOTA-{version}.tar.gz"
    with tarfile.open(tarballs[0]) as tar:
        names = set(tar.getnames())

    for required in (
        "library.json",
        "library.properties",
        "src/ModelOTA.h",
        "src/ModelOTA.cpp",
        "firmware_lib/modelota.h",
        "firmware_lib/modelota/decode.cpp",
        "firmware_lib/modelota/updater.cpp",
        "firmware_lib/modelota/store.cpp",
        "examples/UpdateFromSerial/UpdateFromSerial.ino",
    ):
        assert required in names, f"{required} missing from the package"

    excluded = ("tests", "sim", "host_tools", "bench", ".ci", "build", "scripts")
    leaked = sorted(n for n in names if n.split("/", 1)[0] in excluded)
    assert not leaked, f"excluded paths packed: {leaked}"
    assert not any(n.endswith((".pyc", ".so", ".o")) or "__pycache__" in n for n in names)
    assert "platformio.ini" not in names and "pyproject.toml" not in names
