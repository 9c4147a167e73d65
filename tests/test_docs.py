"""Every code block of README.md and docs/*.md is tested, as it is at test time
(the convention is docs/CONTRIBUTING.md, "Code blocks in the docs"):

* ``sh``/``bash``/``shell``: run with bash (``set -euo pipefail``), the blocks of
  a page in order in one fresh directory, as a reader following the page
  would, in a private network namespace (so ``--port 8080`` is free) with the
  emulated boards (``sim://``) and the ``modelota`` of this tree;
* ``python``: run in one interpreter per page, in page order with the shell
  blocks (each block sees what the earlier ones defined);
* ``c``/``cpp``: an Arduino sketch (``setup``/``loop``, or any code using the
  Arduino library) is built for the Mega 2560 with arduino-builder; core code
  is compiled for the host and for a Cortex-M4 (``-Wall -Wextra -Werror``),
  ``c`` as C99 with gcc and arm-none-eabi-gcc, ``cpp`` as C++11 with g++ and
  arm-none-eabi-g++;
* ``json``/``toml``/``ini``: parsed;
* ``text`` or no language: output, diagrams and grammars, not run; such a
  block that looks like commands or C must say its language;
* anything else, or a block that cannot run: marked on the line before it
  with ``<!-- illustrative: REASON -->``, ``<!-- doc-test: tested-by=FILE -->``
  (a test that reads the block from the page and runs it) or
  ``<!-- doc-test: excerpt=FILE -->`` (the block's lines are in that file).

Also here: every ``modelota`` command and option the docs name exists in the
parser, and no page speaks of internal issue numbers.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docblocks import ROOT, Block, blocks, pages

SHELL = {"sh", "bash", "shell"}
PYTHON = {"python", "py"}
C_LANGS = {"c", "cpp", "c++", "arduino", "ino"}
NOT_CODE = {"", "text", "output"}
OPTIONS = {"tested-by", "excerpt", "setup", "exit", "needs", "timeout", "wrap", "compile"}

# words that make an untagged block look like code that should say its language
_CODE_LOOK = re.compile(r"^\s*(\$ |modelota |pip |python3? |bash |#include |int main\()")


# ------------------------------------------------------------------ checks


def check_markers(b: Block) -> str:
    if b.marker_error:
        return b.marker_error
    unknown = set(b.options) - OPTIONS
    if unknown:
        return f"unknown doc-test option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}"
    if b.lang in NOT_CODE and not b.options and b.illustrative is None:
        for line in b.text.splitlines():
            if _CODE_LOOK.match(line):
                return f"looks like code ({line.strip()!r}): give the block its language"
    return ""


def check_tested_by(b: Block) -> str:
    test = ROOT / b.options["tested-by"]
    if not test.is_file():
        return f"tested-by={b.options['tested-by']}: no such file"
    text = test.read_text()
    if b.page not in text or "marked_tested_by" not in text:
        return f"{b.options['tested-by']} does not read its blocks from {b.page}"
    return ""


def _code_lines(text: str) -> list[str]:
    """Lines of C-like or config code without comments, whitespace collapsed."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out = []
    for line in text.splitlines():
        line = re.sub(r"//.*$", "", line)
        line = re.sub(r"(^|\s)#\s.*$", "", line) if not line.lstrip().startswith("#") else line
        line = " ".join(line.split())
        if line and line not in ("...", "/* ... */"):
            out.append(line)
    return out


def check_excerpt(b: Block) -> str:
    src = ROOT / b.options["excerpt"]
    if not src.is_file():
        return f"excerpt={b.options['excerpt']}: no such file"
    whole = " ".join(_code_lines(src.read_text(errors="replace")))
    missing = [line for line in _code_lines(b.text) if line not in whole]
    if missing:
        return f"not in {b.options['excerpt']}: {missing[:3]}"
    return ""


def check_data(b: Block) -> str:
    try:
        if b.lang == "json":
            json.loads(b.text)
        elif b.lang == "toml":
            import tomllib  # Python 3.11+

            tomllib.loads(b.text)
        else:
            configparser.ConfigParser().read_string(b.text)
    except (ValueError, configparser.Error) as e:
        return f"does not parse as {b.lang}: {e}"
    return ""


# ------------------------------------------------------------------ C and C++


def is_sketch(b: Block) -> bool:
    if b.options.get("compile") in ("sketch", "core"):
        return b.options["compile"] == "sketch"
    t = b.text
    return b.lang in ("arduino", "ino") or bool(
        re.search(r"\bvoid\s+(setup|loop)\s*\(", t)
        or re.search(r"#include\s*<(ModelOTA\w*|Arduino|EEPROM|SD|WiFi\w*)\.h>", t)
    )


def _wrapped(b: Block) -> str:
    """The block as a translation unit: ``wrap=function`` puts its statements
    in a function (its #include lines stay in front)."""
    if b.options.get("wrap") != "function":
        return b.text
    head = [ln for ln in b.text.splitlines() if ln.lstrip().startswith("#")]
    body = [ln for ln in b.text.splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join([*head, "void doc_example(void) {", *body, "}"]) + "\n"


WARN = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-function", "-Wno-unused-parameter",
        "-Wno-unused-variable", "-Wno-unused-but-set-variable"]  # fmt: skip
INCLUDES = ["-I", str(ROOT / "firmware_lib"), "-I", str(ROOT / "src")]


def compile_core(b: Block, work: Path) -> str:
    """A ``c`` block as C99 with gcc and arm-none-eabi-gcc (Cortex-M4), a ``cpp``
    block as C++11 with g++ and arm-none-eabi-g++; warnings are errors."""
    c = b.lang == "c"
    src = work / f"block{b.line}.{'c' if c else 'cpp'}"
    src.write_text(_wrapped(b))
    std = "-std=c99" if c else "-std=c++11"
    host, cross = ("gcc", "arm-none-eabi-gcc") if c else ("g++", "arm-none-eabi-g++")
    runs: list[list[str]] = [[host, std, *WARN, *INCLUDES, "-c", str(src)]]
    if shutil.which(cross):
        runs.append([cross, std, "-mcpu=cortex-m4", "-mthumb", "-Os", *WARN, *INCLUDES, "-c",
                     str(src)])  # fmt: skip
    for cmd in runs:
        r = subprocess.run([*cmd, "-o", os.devnull], capture_output=True, text=True, cwd=work,
                           timeout=300, check=False)  # fmt: skip
        if r.returncode != 0:
            return f"{cmd[0]} failed:\n{r.stderr[-3000:]}"
    return ""


@dataclass
class Sketchbook:
    root: Path
    libraries: Path
    cache: Path


@pytest.fixture(scope="module")
def sketchbook(tmp_path_factory: pytest.TempPathFactory) -> Sketchbook:
    root = tmp_path_factory.mktemp("doc-sketches")
    libraries = root / "libraries"
    libraries.mkdir()
    (libraries / "ModelOTA").symlink_to(ROOT, target_is_directory=True)
    # compile-only stand-ins of the ESP32 WiFi API and the SD library (as
    # tests/test_arduino_examples.py uses when no real one is installed)
    for shim in ("WiFi", "SD"):
        (libraries / shim).symlink_to(ROOT / "tests" / "arduino_shims" / shim)
    (root / "cache").mkdir()
    return Sketchbook(root, libraries, root / "cache")


def build_sketch(b: Block, book: Sketchbook) -> str:
    from modelota.sim.emulated import arduino_builder_command

    builder = shutil.which("arduino-builder")
    if builder is None:
        return "SKIP arduino-builder is not installed (scripts/test.sh installs it)"
    name = "Doc" + re.sub(r"\W", "_", Path(b.page).stem) + str(b.line)
    d = book.root / name
    d.mkdir(exist_ok=True)
    text = b.text
    if not re.search(r"\bvoid\s+setup\s*\(", text):
        text += "\nvoid setup() {}\nvoid loop() {}\n"
    (d / f"{name}.ino").write_text(text)
    build = book.root / "build" / name
    build.mkdir(parents=True, exist_ok=True)
    cmd = arduino_builder_command(builder, d / f"{name}.ino", book.libraries, build, book.cache)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        errors = [ln for ln in out.splitlines() if "error" in ln]
        return "arduino-builder failed:\n" + "\n".join(errors[-20:] or out.splitlines()[-20:])
    ours = [ln for ln in out.splitlines()
            if ": warning: " in ln and not ln.startswith("/usr/share/arduino")]  # fmt: skip
    if ours:
        return "compiler warnings:\n" + "\n".join(ours[:10])
    return ""


# ------------------------------------------------------------------ running a page


def _netns() -> list[str] | None:
    """The command that runs a process in a fresh network namespace with its
    own loopback, or None where namespaces are not available."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip") or ("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else None)
    if unshare is None or ip is None:
        return None
    cmd = [unshare, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*cmd, ip, "link", "set", "lo", "up"], capture_output=True,
                           check=False, timeout=30)  # fmt: skip
    return cmd if probe.returncode == 0 else None


_WAIT = r"""
__doc_wait_port() {  # what a reader does: wait for 'modelota serve: http://...'
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "doc-test: nothing listens on port $1" >&2; return 1
}
"""


def shell_script(text: str) -> str:
    """The block for bash: after a ``modelota serve ... &`` line, wait for its port."""
    out = ["set -euo pipefail", _WAIT]
    for line in text.splitlines():
        out.append(line)
        s = line.split("#", 1)[0].strip()
        if s.endswith("&") and re.search(r"\bmodelota\s+serve\b", s):
            m = re.search(r"--port[ =](\d+)", s)
            out.append(f"__doc_wait_port {m.group(1) if m else 8080}")
    return "\n".join(out) + "\n"


_DRIVER = r"""
import contextlib, json, sys, traceback
ns = {"__name__": "__main__"}
for line in sys.stdin:
    req = json.loads(line)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            exec(compile(req["code"], req["where"], "exec"), ns)
        res = {"ok": True}
    except BaseException:
        res = {"ok": False, "error": traceback.format_exc(limit=-3)}
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
"""


@dataclass
class Page:
    """One page's blocks run as a reader would: one directory, one network
    namespace (held open by a sleeping process), one Python interpreter."""

    work: Path
    env: dict[str, str]
    ns_pid: int | None = None
    holder: subprocess.Popen[bytes] | None = None
    groups: list[int] = field(default_factory=list)
    py: subprocess.Popen[str] | None = None
    py_log: Path | None = None

    def prefix(self) -> list[str]:
        if self.ns_pid is None:
            return []
        user = [f"--user=/proc/{self.ns_pid}/ns/user", "--preserve-credentials"]
        return ["nsenter", f"--net=/proc/{self.ns_pid}/ns/net"] + (
            [] if os.geteuid() == 0 else user
        )

    def start(self, netns: list[str] | None) -> None:
        if netns is None:
            return
        ip = shutil.which("ip") or "/usr/sbin/ip"
        self.holder = subprocess.Popen(
            [*netns, "sh", "-c", f'"{ip}" link set lo up && echo up && exec sleep 3600'],
            stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"up":
            raise RuntimeError("could not start a network namespace")
        self.ns_pid = self.holder.pid

    def sh(self, b: Block) -> str:
        timeout = float(b.options.get("timeout", "600"))
        want = int(b.options.get("exit", "0"))
        log = self.work / f".doc-sh-{b.line}.log"
        with log.open("w") as out_file:  # a file, not a pipe: background servers keep it open
            p = subprocess.Popen(
                [*self.prefix(), "bash", "-c", shell_script(b.text)], cwd=self.work,
                env=self.env, stdout=out_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.groups.append(p.pid)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(p.pid)
            p.wait()
            return f"did not finish in {timeout:g} s:\n{log.read_text()[-3000:]}"
        out = log.read_text()
        if p.returncode != want:
            return f"exit code {p.returncode} (want {want}):\n{out[-3000:]}"
        if "Traceback (most recent call last)" in out:
            return f"a command printed a traceback:\n{out[-3000:]}"
        return ""

    def python(self, b: Block) -> str:
        if self.py is None:
            self.py_log = self.work / ".doc-python.log"
            self.py = subprocess.Popen(
                [*self.prefix(), sys.executable, "-c", _DRIVER], cwd=self.work, env=self.env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self.py_log.open("w"), text=True, start_new_session=True,
            )  # fmt: skip
            self.groups.append(self.py.pid)
        assert self.py.stdin is not None and self.py.stdout is not None
        self.py.stdin.write(json.dumps({"code": b.text, "where": b.where}) + "\n")
        self.py.stdin.flush()
        line = self.py.stdout.readline()
        if not line:
            log = self.py_log.read_text() if self.py_log else ""
            return f"the interpreter died:\n{log[-3000:]}"
        res = json.loads(line)
        return "" if res["ok"] else f"raised:\n{res['error']}"

    @staticmethod
    def _kill(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self.py is not None and self.py.stdin is not None:
            self.py.stdin.close()
        for g in self.groups:  # servers a block left running in the background
            self._kill(g)
        if self.py is not None:
            try:
                self.py.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.py.kill()
        if self.holder is not None:
            self._kill(self.holder.pid)
            self.holder.wait(timeout=30)


# ------------------------------------------------------------------ setups


def setup_tflite_pair(work: Path) -> None:
    """model_v1.tflite and model_v2.tflite: one architecture, two trainings."""
    from tflite_builder import Arch, pair

    arch = Arch((8, 16, 4), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    old, new = pair(arch, 11)
    (work / "model_v1.tflite").write_bytes(old)
    (work / "model_v2.tflite").write_bytes(new)


def setup_ei_exports(work: Path) -> None:
    """ei-myproject-arduino/ (an extracted Edge Impulse Arduino export) and
    old-export.zip / new-export.zip (that export and a retrained one)."""
    from ei_fixtures import zip_export
    from test_edgeimpulse import FORMS

    build = FORMS["eon2024_g0_hex"]
    old = build(work / ".ei-old", "old").export
    new = build(work / ".ei-new", "new").export
    zip_export(old, work / "old-export.zip")
    zip_export(new, work / "new-export.zip")
    shutil.copytree(old.root, work / "ei-myproject-arduino")


def setup_weights(work: Path) -> None:
    """old.bin and new.bin: 2048 bytes of raw weights, and a retrained copy."""
    import random

    rnd = random.Random(7)
    old = rnd.randbytes(2048)
    new = bytearray(old)
    new[100:164] = rnd.randbytes(64)
    (work / "old.bin").write_bytes(old)
    (work / "new.bin").write_bytes(bytes(new))


SETUPS = {
    "weights": setup_weights,
    "tflite-pair": setup_tflite_pair,
    "ei-exports": setup_ei_exports,
}


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(work / ".home")
    env.setdefault(
        "MODELOTA_BOARD_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "modelota-boards")
    )
    for name in ("MODELOTA_TOKEN", "MODELOTA_SERVER"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def _page_ids() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages()]


@pytest.fixture(scope="module")
def netns() -> list[str] | None:
    return _netns()


@pytest.mark.parametrize("page", _page_ids())
def test_code_blocks_of_page(
    page: str, tmp_path: Path, sketchbook: Sketchbook, netns: list[str] | None
) -> None:
    failures, skipped = run_page(ROOT / page, tmp_path, sketchbook, netns)
    assert not failures, "\n\n".join(failures)
    if skipped:
        pytest.skip("; ".join(skipped))


def run_page(
    page: Path, tmp_path: Path, sketchbook: Sketchbook, netns: list[str] | None
) -> tuple[list[str], list[str]]:
    """Runs a page's blocks as a reader would; (failures, skips), one line each."""
    work = tmp_path / "reader"
    work.mkdir()
    (work / ".home").mkdir()
    runner = Page(work, _env(work))
    failures: list[str] = []
    skipped: list[str] = []
    try:
        for b in blocks(page):
            problem = check_markers(b)
            if not problem and b.illustrative is not None:
                continue
            if not problem:
                problem = run_block(b, runner, sketchbook, netns, skipped)
            if problem.startswith("SKIP "):
                skipped.append(f"{b.where}: {problem[5:]}")
            elif problem:
                failures.append(f"{b.where} [{b.lang or 'no language'}]: {problem}")
    finally:
        runner.close()
    return failures, skipped


BROKEN_PAGE = """
```sh
echo one > one.txt
```

```python
assert open("one.txt").read() == "one\\n"   # the sh block ran first, same directory
x = 41
```

```python
assert x == 42, "x is 41"
```

```sh
modelota inspect does-not-exist.mota
```

<!-- doc-test: exit=1 -->
```sh
modelota inspect does-not-exist.mota
```

```c
#include "modelota.h"
int f(void) { return undeclared_name; }
```

```json
{"a": 1,}
```

```
modelota pack w.bin -o x.mota
```

<!-- illustrative: -->
```sh
true
```

<!-- doc-test: excerpt=firmware_lib/modelota/crc32.h -->
```c
uint32_t modelota_crc32_not_there(uint32_t crc);
```

```yaml
a: 1
```
"""


def test_the_harness_reports_broken_blocks(
    tmp_path: Path, sketchbook: Sketchbook, netns: list[str] | None
) -> None:
    """The runner above fails what a reader would find broken, block by block,
    and passes what works (the python block sees the shell block's file)."""
    page = tmp_path / "BROKEN.md"
    page.write_text(BROKEN_PAGE)
    failures, _ = run_page(page, tmp_path, sketchbook, netns)
    fences = [b.line for b in blocks(page)]
    failed = [int(f.split(":", 1)[1].split(" ", 1)[0]) for f in failures]
    broken = [fences[i] for i in (2, 3, 5, 6, 7, 8, 9, 10)]  # not 0, 1, 4: they work
    assert failed == broken, "\n".join(failures)
    assert any("x is 41" in f for f in failures), failures
    assert any("undeclared_name" in f for f in failures), failures
    assert any("does not parse as json" in f for f in failures), failures
    assert any("give the block its language" in f for f in failures), failures
    assert any("needs the reason" in f for f in failures), failures
    assert any("not in firmware_lib/modelota/crc32.h" in f for f in failures), failures
    assert any("a yaml block is not run" in f for f in failures), failures


def run_block(
    b: Block, runner: Page, book: Sketchbook, netns: list[str] | None, skipped: list[str]
) -> str:
    if "tested-by" in b.options:
        return check_tested_by(b)
    if "excerpt" in b.options:
        return check_excerpt(b)
    missing = [t for t in b.options.get("needs", "").split(",") if t and not shutil.which(t)]
    if missing:
        return f"SKIP needs {', '.join(missing)} (scripts/test.sh installs it)"
    for name in filter(None, b.options.get("setup", "").split(",")):
        if name not in SETUPS:
            return f"unknown setup {name!r}; known: {sorted(SETUPS)}"
        SETUPS[name](runner.work)
    if b.lang in SHELL:
        if netns is None and re.search(r"\bmodelota\s+serve\b", b.text):
            return "SKIP starts a server on a fixed port: needs a private network namespace"
        if runner.holder is None and netns is not None:
            runner.start(netns)
        return runner.sh(b)
    if b.lang in PYTHON:
        return runner.python(b)
    if b.lang in C_LANGS:
        return build_sketch(b, book) if is_sketch(b) else compile_core(b, runner.work)
    if b.lang in ("json", "toml", "ini"):
        return check_data(b)
    if b.lang in NOT_CODE:
        return ""
    return (
        f"a {b.lang} block is not run by this harness: mark it <!-- illustrative: reason -->,"
        " <!-- doc-test: tested-by=FILE --> or <!-- doc-test: excerpt=FILE -->"
    )


# ------------------------------------------------------------------ options the docs name


def _parsers() -> dict[str, Any]:
    """command -> its argparse parser; ``fleet ACTION`` -> the action's."""
    import argparse

    from modelota.cli.app import COMMANDS, build_parser

    out: dict[str, Any] = {}
    for cmd in COMMANDS:
        p = build_parser(cmd)
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        out[cmd] = sub.choices[cmd]
        for a in out[cmd]._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, action_parser in a.choices.items():
                    out[f"{cmd} {name}"] = action_parser
    return out


def _commands_in(text: str) -> Iterator[list[str]]:
    """Word lists of ``modelota ...`` commands in a text (continuations joined)."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)  # a shell comment
        for m in re.finditer(r"(?:^|[\s`(;|&])modelota\s+([^`|;&#\n]*)", line):
            try:
                words = shlex.split(m.group(1), comments=True)
            except ValueError:
                words = m.group(1).split()
            if words:
                yield words


def _inline_commands(text: str, names: set[str]) -> Iterator[list[str]]:
    """Inline code like `push --max-data N`: a command word, then options."""
    for span in re.findall(r"`([^`\n]+)`", text):
        words = span.split()
        if len(words) > 1 and words[0] in names and any(w.startswith("--") for w in words):
            yield words


def _code_of(page: Path) -> list[str]:
    """The code a page shows: its code blocks and its inline code spans."""
    text = page.read_text()
    out = [b.text for b in blocks(page) if b.lang in SHELL | NOT_CODE]
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    out += re.findall(r"`([^`\n]+)`", prose)
    return out


def named_options() -> list[tuple[str, str, str]]:
    """(page, command, option) for every option the docs' code (and the
    example sketches' comments) give a modelota command; option "" for a
    command word that is not a command."""
    from modelota.cli.app import COMMANDS

    nested = set(_parsers())  # "fleet upload", "rollout create"...
    found = []
    sketches = sorted((ROOT / "examples").glob("*/*.ino"))  # their "On the host:" comments
    for page in [*pages(), *sketches]:
        rel = str(page.relative_to(ROOT))
        for code in _code_of(page) if page.suffix == ".md" else [page.read_text()]:
            cmds = [*_commands_in(code), *_inline_commands(f"`{code}`", set(COMMANDS))]
            for words in cmds:
                if words[0] in ("--help", "-h", "--version", "...") or words[0].isupper():
                    continue  # the program's own options; a placeholder (COMMAND)
                if words[0] not in COMMANDS:
                    found.append((rel, words[0], ""))
                    continue
                cmd = words[0]
                action = next((w for w in words[1:] if not w.startswith("-")), None)
                if f"{cmd} {action}" in nested:
                    cmd = f"{cmd} {action}"
                for w in words[1:]:
                    if w.startswith("--") and len(w) > 2:
                        found.append((rel, cmd, w.split("=", 1)[0]))
    return found


def test_cli_options_named_in_the_docs_exist() -> None:
    parsers = _parsers()
    bad = []
    for page, cmd, opt in named_options():
        parser = parsers.get(cmd)
        if parser is None:
            if " " in cmd:
                continue
            if not opt:
                bad.append(f"{page}: `modelota {cmd}` is not a command")
            continue
        if opt and opt not in parser._option_string_actions:
            top = cmd.split()[0]
            if " " in cmd and opt in parsers[top]._option_string_actions:
                continue
            bad.append(f"{page}: `modelota {cmd}` has no option {opt}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_option_check_sees_the_docs() -> None:
    """The scan above finds options at all, and would catch a wrong one."""
    found = named_options()
    assert len(found) > 30 and any(o == "--chunk-size" for _, _, o in found), found[:5]
    fake = "see `push --no-such-option` and\n\n```sh\nmodelota pack x --nope\n```\n"
    from modelota.cli.app import COMMANDS

    words = [*_commands_in(fake), *_inline_commands(fake, set(COMMANDS))]
    assert ["pack", "x", "--nope"] in words and ["push", "--no-such-option"] in words


# ------------------------------------------------------------------ prose


def _prose(text: str) -> str:
    """The page without code blocks, inline code and HTML comments."""
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


ISSUE_NUMBER = re.compile(r"(?i)\bissues?\s*#?\[?\d+|(?<![\w\]])\[\d+\](?![(:])")


@pytest.mark.parametrize("page", _page_ids())
def test_no_internal_issue_numbers(page: str) -> None:
    """A reader does not have the project's issue tracker: "issue [7]" says nothing."""
    hits = ISSUE_NUMBER.findall(_prose((ROOT / page).read_text()))
    assert not hits, hits


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", page.read_text(), flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.*)$", prose, flags=re.M)}


@pytest.mark.parametrize("page", _page_ids())
def test_relative_links_resolve(page: str) -> None:
    """Every relative link names a file of the tree, and its #anchor a heading there."""
    path = ROOT / page
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", path.read_text(), flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target) or not re.fullmatch(r"[\w./#-]*[./#][\w./#-]*", target):
            continue  # http(s):, mailto:, or not a path (math such as [k](-A))
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor}")
    assert not bad, bad
