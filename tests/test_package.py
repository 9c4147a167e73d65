"""The package's shape (docs/DESIGN.md, "The Python package"): no import
circles, the library never imports the CLI, subpackages depend only downward,
and ``modelota --help`` starts without the heavy libraries.

The import graph is read from the source with :mod:`ast` (every ``import``
and ``from ... import`` anywhere in a module, function bodies included, so a
lazy import counts as a dependency too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import modelota

PKG = Path(modelota.__file__).resolve().parent

# subpackage -> the subpackages it may import (besides itself, status, format)
ALLOWED = {
    "status": set(),
    "format": set(),
    "models": set(),
    "link": set(),
    "collect": {"link"},
    "sim": {"link"},
    "fleet": {"sim", "collect"},
    "demo": {"fleet", "sim", "models"},
    "cli": {"models", "link", "collect", "fleet", "sim", "demo", "api"},
    "api": {"models", "sim"},  # modelota.pack/inspect/fingerprint/simulate (docs/API.md)
}
BASE = {"status", "format", "__init__", "_native"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Fully qualified modelota modules that ``path`` imports."""
    name = module_name(path)
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "modelota")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "modelota":
                continue
            out.add(mod)
            for a in node.names:  # from .pkg import module
                if (
                    (PKG.parent / (mod + "." + a.name).replace(".", "/"))
                    .with_suffix(".py")
                    .exists()
                ):
                    out.add(mod + "." + a.name)
                elif (PKG.parent / (mod + "." + a.name).replace(".", "/") / "__init__.py").exists():
                    out.add(mod + "." + a.name)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_circles() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d not in g:
                continue
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_the_cli() -> None:
    bad = sorted(
        f"{m} imports {d}"
        for m, deps in graph().items()
        if area(m) != "cli" and m != "modelota.__main__"
        for d in deps
        if area(d) == "cli"
    )
    assert not bad, bad


def test_subpackages_depend_only_downward() -> None:
    bad = []
    for m, deps in graph().items():
        a = area(m)
        if a not in ALLOWED:
            continue
        for d in deps:
            b = area(d)
            if b in BASE or b == a:
                continue
            if b not in ALLOWED[a]:
                bad.append(f"{m} -> {d}")
    assert not bad, "imports against the layering of docs/DESIGN.md: " + ", ".join(sorted(bad))


def test_every_module_is_in_a_known_area() -> None:
    """A new top-level module must be placed in the map (and in ALLOWED)."""
    known = set(ALLOWED) | {"__init__", "__main__", "demo"}
    stray = sorted({area(m) for m in graph()} - known)
    assert not stray, f"modules outside the documented layout: {stray} (update docs/DESIGN.md)"


HEAVY = ("numpy", "tflite", "flatbuffers", "aiohttp", "cryptography", "serial", "cffi",
         "sklearn", "tflite_micro", "tqdm", "psycopg")  # fmt: skip


@pytest.mark.parametrize("argv", [["--help"], ["pack", "--help"], ["serve", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from modelota.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_docs_map_names_every_module() -> None:
    """docs/DESIGN.md's tree lists every module file of the package."""
    doc = (PKG.parents[1] / "docs" / "DESIGN.md").read_text()
    missing = [
        p.relative_to(PKG).as_posix()
        for p in PKG.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and p.name not in doc
    ]
    assert not missing, f"docs/DESIGN.md does not place: {missing}"
