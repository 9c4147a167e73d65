"""Pieces several command groups share: model identity options, C arrays."""

from __future__ import annotations

import argparse

from ..format.constants import FINGERPRINT_LEN
from ..status import CliError


def add_model_id(sp: argparse.ArgumentParser) -> None:
    """``--model NAME`` | ``--fingerprint HEX``: what identifies a raw model."""
    g = sp.add_mutually_exclusive_group()
    g.add_argument(
        "--model",
        metavar="NAME",
        help="the name you give raw weights; the fingerprint is derived from it and their size",
    )
    g.add_argument(
        "--fingerprint",
        metavar="HEX",
        help=f"the {FINGERPRINT_LEN}-byte fingerprint as {2 * FINGERPRINT_LEN} hex digits",
    )


def fingerprint_from(args: argparse.Namespace, size: int) -> bytes:
    if args.fingerprint:
        try:
            fp = bytes.fromhex(args.fingerprint)
        except ValueError as e:
            raise CliError(f"--fingerprint is not hex: {args.fingerprint}") from e
        if len(fp) != FINGERPRINT_LEN:
            raise CliError(
                f"--fingerprint must be {FINGERPRINT_LEN} bytes ({2 * FINGERPRINT_LEN} hex digits)"
            )
        return fp
    if args.model:
        from ..models.raw import raw_fingerprint

        return raw_fingerprint(args.model, size)
    raise CliError("give --model NAME or --fingerprint HEX: the device checks it before writing")


def c_array(name: str, data: bytes) -> str:
    body = ", ".join(f"0x{b:02x}" for b in data)
    return f"const uint8_t {name}[{len(data)}] = {{{body}}};"


def read_input(path: str, what: str = "file") -> bytes:
    """The bytes of a file the user named; a one-line CliError that says what
    is wrong with the path (missing, a directory, unreadable)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise CliError(f"{path}: is a directory, not a {what}")
    if not p.exists():
        raise CliError(f"{path}: no such file")
    try:
        return p.read_bytes()
    except OSError as e:
        raise CliError(f"{path}: {e.strerror or e}") from e


def table(rows: list[list[str]], right: frozenset[int] | set[int] = frozenset()) -> list[str]:
    """Rows (the first one is the heading) as aligned text lines; columns in
    ``right`` are right-aligned. Cells are never cut."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def when(epoch: float | None, now: float | None = None) -> str:
    """A time the server recorded (seconds since 1970) as UTC ISO 8601 and how
    long ago: ``2026-03-01 12:00:05Z (4 min ago)``; ``-`` for never."""
    import time
    from datetime import datetime, timezone

    if epoch is None:
        return "-"
    now = time.time() if now is None else now
    iso = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    ago = max(0.0, now - epoch)
    if ago < 60:
        rel = f"{int(ago)} s ago"
    elif ago < 3600:
        rel = f"{int(ago // 60)} min ago"
    elif ago < 86400:
        rel = f"{ago / 3600:.1f} h ago"
    else:
        rel = f"{ago / 86400:.1f} days ago"
    return f"{iso} ({rel})"


def print_json(value: object) -> None:
    """What ``--json`` prints: one JSON document on stdout."""
    import json
    import sys

    json.dump(value, sys.stdout, indent=2)
    print()
