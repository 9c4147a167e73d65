"""The code blocks of README.md and docs/*.md, with the markers that say how
each is tested (docs/CONTRIBUTING.md, "Code blocks in the docs"):

    <!-- illustrative: REASON -->        the block cannot run; REASON says why
    <!-- doc-test: KEY[=VALUE] ... -->   how the block runs (setup, exit code...)

on the line before the block's opening fence (blank lines may separate them).
Used by tests/test_docs.py, and by the tests that run a block themselves
(``tested-by=``), which find it with :func:`marked_tested_by`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ILLUSTRATIVE = re.compile(r"^<!--\s*illustrative:(?P<reason>.*?)-->\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*doc-test:(?P<body>.*?)-->\s*$")


@dataclass
class Block:
    page: str  # path relative to the repository root
    line: int  # line of the opening fence, 1-based
    lang: str  # first word of the info string, lower case ("" when none)
    text: str
    illustrative: str | None = None  # the reason, when marked illustrative
    options: dict[str, str] = field(default_factory=dict)  # doc-test KEY=VALUE
    marker_error: str = ""  # a malformed marker

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every docs/*.md, as they are at test time."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _options(body: str) -> dict[str, str]:
    out = {}
    for word in body.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of one page, in order, with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    rel = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        info = m.group("info").strip()
        body = []
        j = i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        block = Block(rel, i + 1, info.split()[0].lower() if info else "", "\n".join(body) + "\n")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        prev = lines[k].strip() if k >= 0 else ""
        if (ill := _ILLUSTRATIVE.match(prev)) is not None:
            block.illustrative = ill.group("reason").strip()
            if not block.illustrative:
                block.marker_error = "<!-- illustrative: --> needs the reason beside it"
        elif (d := _DIRECTIVE.match(prev)) is not None:
            block.options = _options(d.group("body"))
        elif prev.startswith("<!--") and ("doc-test" in prev or "illustrative" in prev):
            block.marker_error = f"malformed marker {prev!r}"
        out.append(block)
        i = j + 1
    return out


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks(p)]


def marked_tested_by(test_file: str) -> list[Block]:
    """The blocks marked ``<!-- doc-test: tested-by=TEST_FILE -->`` (a path
    relative to the repository root), in page order."""
    return [b for b in all_blocks() if b.options.get("tested-by") == test_file]
