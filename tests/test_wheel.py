"""The wheel is what users get: built from a copy of the tree, installed into
a fresh virtual environment without ``-e`` and without extras, it packs,
inspects and pushes to ``sim://native``; its package data is all there; the
base install pulls no ML training stack; and a command that needs an extra
says which in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    "pyproject.toml",
    "setup.py",
    "README.md",
    "LICENSE",
    "host_tools",
    "sim",
    "firmware_lib",
]
# what the base install must not bring (extras: fleet, sign, tflm, demo)
NOT_IN_BASE = ["scikit-learn", "scipy", "tflite-micro", "tflite_micro", "aiohttp", "cryptography",
               "psycopg", "pytest", "hypothesis"]  # fmt: skip


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds the wheel from a copy of the tracked sources (so that a second
    suite running at the same time never shares a build directory)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.so", "*.egg-info", "build"))  # fmt: skip
        else:
            shutil.copy2(p, src / name)
    out = tmp_path_factory.mktemp("dist")
    r = run([sys.executable, "-m", "pip", "wheel", "--no-deps",
             "--disable-pip-version-check", "-q", "-w", str(out), str(src)])  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("modelota-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("venv")
    r = run([sys.executable, "-m", "venv", str(d)])
    assert r.returncode == 0, r.stderr
    pip = [str(d / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    r = run([*pip, "install", str(wheel)])
    if r.returncode != 0 and ("Could not find a version" in r.stderr or "connection" in r.stderr):
        pytest.skip(f"the base dependencies cannot be installed here: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stdout + r.stderr
    yield d


def modelota(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MODELOTA_"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return run([str(venv / "bin" / "modelota"), *args], cwd=cwd, env=env)


def test_wheel_holds_the_whole_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    src = ROOT / "host_tools" / "modelota"
    want = {f"modelota/{p.relative_to(src).as_posix()}" for p in src.rglob("*.py")}
    assert want - names == set(), f"modules missing from the wheel: {sorted(want - names)}"
    assert "modelota/py.typed" in names
    assert any(n.startswith("modelota/_native") and n.endswith(".so") for n in names), names
    assert "modelota/sim/handlers/protocol_sim.py" in names


def test_base_install_pulls_no_training_stack(venv: Path) -> None:
    r = run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"])
    installed = {line.split("==")[0].lower() for line in r.stdout.splitlines()}
    assert not installed & {n.lower() for n in NOT_IN_BASE}, sorted(installed)
    size = sum(f.stat().st_size for f in (venv / "lib").rglob("*") if f.is_file())
    print(f"base install: {len(installed)} packages, {size / 1e6:.0f} MB in the venv")


def test_pack_inspect_push_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    py = str(venv / "bin" / "python")
    # the weights of the board sim://native?size=1024&seed=5 boots with
    make = ("import sys; from modelota.sim.board import demo_model; "
            "w, fp = demo_model(1024, 5); open(sys.argv[1], 'wb').write(bytes(255 - b for b in w));"
            " print(fp.hex())")  # fmt: skip
    r = run([py, "-c", make, str(tmp_path / "new.bin")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fp = r.stdout.strip()
    r = modelota(venv, "pack", "new.bin", "--fingerprint", fp, "--version", "2", "-o", "u.mota",
                 cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = modelota(venv, "inspect", "u.mota", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"model_version": 2' in r.stdout
    r = modelota(venv, "push", "--quiet", "--port", "sim://native?size=1024&seed=5", "u.mota",
                 cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "updated to version 2" in r.stdout


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["serve", "--data", "d", "--port", "0"], "fleet"),
        (["keygen", "k"], "sign"),
        (["demo"], "demo"),
    ],
)
def test_missing_extra_is_one_line(venv: Path, tmp_path: Path, argv: list[str], extra: str) -> None:
    r = modelota(venv, *argv, cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"modelota[{extra}]" in lines[0], lines[0]


def test_emulated_boards_say_they_need_a_checkout(venv: Path, tmp_path: Path) -> None:
    from modelota import pack  # a valid payload: push checks the file before the port

    (tmp_path / "x.mota").write_bytes(pack(bytes(512), fingerprint=bytes(16), version=2).encode())
    r = modelota(venv, "push", "--quiet", "--port", "sim://qemu-m4", "x.mota", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "source checkout" in r.stderr, r.stderr
