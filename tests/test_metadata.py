"""One version and real metadata everywhere a user or a package index reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import tomllib

import modelota

ROOT = Path(__file__).resolve().parent.parent


def _properties() -> dict[str, str]:
    out = {}
    for line in (ROOT / "library.properties").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def test_one_version_everywhere() -> None:
    py = modelota.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", py), py
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "modelota.__version__"
    assert _properties()["version"] == py
    assert json.loads((ROOT / "library.json").read_text())["version"] == py
    h = (ROOT / "firmware_lib" / "modelota" / "version.h").read_text()
    major, minor, patch = (int(x) for x in py.split("."))
    assert f'#define MODELOTA_VERSION_STRING "{py}"' in h
    assert f"#define MODELOTA_VERSION_MAJOR {major}\n" in h
    assert f"#define MODELOTA_VERSION_MINOR {minor}\n" in h
    assert f"#define MODELOTA_VERSION_PATCH {patch}\n" in h


def test_license_is_the_apache_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"]["text"] == "Apache-2.0"


def test_no_placeholder_metadata() -> None:
    props = _properties()
    lib = json.loads((ROOT / "library.json").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    urls = [props["url"], lib["homepage"], lib["repository"]["url"],
            *pyproject["project"]["urls"].values()]  # fmt: skip
    for text in [*urls, props["maintainer"], props["author"], json.dumps(lib["authors"])]:
        assert not re.search(r"example\.(com|org)|\.example\b|TODO|changeme", text), text
    for u in urls:
        assert u.startswith("https://"), u
    assert lib["name"] == props["name"] == "ModelOTA"
