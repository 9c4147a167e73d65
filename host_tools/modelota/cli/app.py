"""``modelota`` command line: one module per command group.

Every failure ends with one line ``modelota: error: ...`` on stderr and a
non-zero exit code (1 for bad input, 2 for bad usage). A library a command
needs and an extra provides (``modelota[fleet]``...) is named in that line.

Start-up: ``modelota --help`` lists every command but builds the options of
none, and ``modelota CMD ...`` builds only CMD's; the library modules a
command uses are imported when it runs (``bench/bench_cli.py`` measures it).
"""

from __future__ import annotations

import sys

from .. import __version__

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

# extra -> the top-level modules it installs (pyproject.toml's optional-dependencies)
EXTRAS = {
    "fleet": ("aiohttp", "psycopg"),
    "sign": ("cryptography",),
    "tflm": ("tflite_micro",),
    "demo": ("sklearn", "tflite_micro", "aiohttp"),
}
# a command whose own extra is the one to name when a module of it is missing
COMMAND_EXTRA = {"serve": "fleet", "demo": "demo", "keygen": "sign"}


def missing_extra(command: str, module: str) -> str | None:
    """The extra that installs ``module`` for ``command``, or None."""
    own = COMMAND_EXTRA.get(command)
    if own is not None and module in EXTRAS[own]:
        return own
    for extra, modules in EXTRAS.items():
        if module in modules:
            return extra
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    if args.serve and not args.fleet:
        from ..status import CliError

        raise CliError("--serve keeps the rollout demo's server up: use it with --fleet")
    if args.fleet:
        from ..demo.rollout import run as rollout_demo

        return rollout_demo(args.serve)
    if args.board:
        from ..demo.local import run
    else:
        from ..demo.fleet import run
    return run()


# command -> (module of modelota.cli that registers it, one-line help).
# The one place a command's summary is written; ``modelota --help`` reads it
# without importing the modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "pack": ("core", "build a payload from raw weights, two .tflite models or two EI exports"),
    "inspect": ("core", "print and verify a payload (.mota), or list a model's tensors"),
    "keygen": ("core", "create an Ed25519 signing key: KEY (private), KEY.pub, KEY.h"),
    "fingerprint": ("core", "print a model's fingerprint (and a .tflite's writable ranges) for C"),
    "diff": ("tflite", "which tensors of a .tflite model change, and by how many bytes"),
    "prepare-ei": ("edgeimpulse", "patch an Edge Impulse Arduino library for in-place updates"),
    "push": ("link", "send a payload to a board over a serial link"),
    "collect": ("link", "receive sample windows from a device as Edge Impulse files"),
    "serve": ("fleet", "run the fleet update server (docs/FLEET.md)"),
    "export": ("fleet", "write the fleet's device answers as a static tree"),
    "fleet": ("fleet", "admin client of a running modelota serve"),
    "device": ("fleet", "a simulated device polling a fleet server"),
    "rollout": ("rollout", "staged rollouts that pause themselves: create, start, pause, show..."),
    "demo": ("app", "end-to-end update of a simulated device (real C++ core)"),
}


class _Sink:
    """Stands in for the parser of a command that is not being run: takes
    add_argument(), groups and set_defaults() and builds nothing."""

    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: self


class _Commands:
    """Subparsers that list every command of :data:`COMMANDS` with its help
    and build the options of ``keep`` only (of all when ``keep`` is None)."""

    def __init__(self, sub: argparse._SubParsersAction, keep: str | None) -> None:  # type: ignore[type-arg]
        self.sub = sub
        self.keep = keep

    def add_parser(self, name: str, **kw: object) -> object:
        if self.keep is not None and name != self.keep:
            return _Sink()
        kw.setdefault("help", COMMANDS[name][1])
        from .argparsing import HelpFormatter

        kw.setdefault("formatter_class", HelpFormatter)
        return self.sub.add_parser(name, **kw)  # type: ignore[arg-type]


def add_commands(sub: _Commands) -> None:
    sp = sub.add_parser("demo")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--board", action="store_true", help="the board-level demo (power cut...)")
    g.add_argument("--fleet", action="store_true", help="staged rollouts to 300 simulated"
                   " devices: a better model completes, a worse one pauses itself")  # fmt: skip
    sp.add_argument("--serve", action="store_true",
                    help="with --fleet: keep the server and its dashboard up until Ctrl-C")
    sp.set_defaults(func=cmd_demo)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` given, only that command gets its options
    (an unknown one gets none, and argparse names the choices)."""
    import importlib

    from .argparsing import Parser

    p = Parser(prog="modelota", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"modelota {__version__}")
    real = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = _Commands(real, command)
    modules: list[str] = []
    for name, (module, summary) in COMMANDS.items():
        if command is None or name == command:
            if module not in modules:
                modules.append(module)
        else:
            real.add_parser(name, help=summary, add_help=False)
    for module in modules:
        mod = importlib.import_module(f"{__package__}.{module}")
        mod.add_commands(sub)
    return p


def _command(argv: Sequence[str]) -> str:
    """The command word of argv ("" when there is none: top-level help)."""
    for a in argv:
        if not a.startswith("-"):
            return a
    return ""


DESCRIPTION = (
    "Pack, inspect and deliver ModelOTA payloads: streamed, CRC-checked,"
    " in-place model weight updates (docs/FORMAT.md)."
)


def top_help() -> str:
    """``modelota --help``, written from :data:`COMMANDS` without argparse
    (which alone costs about as much as the interpreter's start)."""
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: modelota [-h] [--version] COMMAND ...",
        "",
        DESCRIPTION.replace(" in-place", "\nin-place"),
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this help message and exit",
        "  --version   show program's version number and exit",
        "",
        "`modelota COMMAND --help` shows a command's options and their defaults.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["-h"], ["--help"]):
        print(top_help())
        return 0
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    from ..status import CliError

    try:
        return int(args.func(args))
    except CliError as e:
        print(f"modelota: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        extra = missing_extra(args.command, top)
        if extra is None:
            return _internal(e)
        print(
            f"modelota: error: {args.command} needs {top}, which the '{extra}' extra"
            f" installs: pip install 'modelota[{extra}]'",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:  # `modelota ... | head`: the reader left, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        print(f"modelota: error: {_os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelota: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, still told in one line
        return _internal(e)


def _os_error(e: OSError) -> str:
    """One line for an OSError: the file first, as the other errors do."""
    what = e.strerror or str(e)
    if e.filename is not None:
        return f"{e.filename}: {what[:1].lower()}{what[1:]}"
    return what


def _internal(e: BaseException) -> int:
    """An exception no command turned into a message: a bug. One line, unless
    MODELOTA_DEBUG is set, which shows the traceback."""
    import os

    if os.environ.get("MODELOTA_DEBUG"):
        raise e
    text = str(e).splitlines()[0] if str(e) else ""
    print(
        f"modelota: error: internal error ({type(e).__name__}: {text}); please report it"
        " with the command line (MODELOTA_DEBUG=1 shows the traceback)",
        file=sys.stderr,
    )
    return 1
