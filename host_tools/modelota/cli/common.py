"""Pieces several command groups share: model identity options, C arrays."""

from __future__ import annotations

import argparse

from ..format.constants import FINGERPRINT_LEN
from ..status import CliError


def add_model_id(sp: argparse.ArgumentParser) -> None:
    """``--model NAME`` | ``--fingerprint HEX``: what identifies a raw model."""
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--model", help="model name; the fingerprint is derived from it and the size")
    g.add_argument("--fingerprint", help=f"{FINGERPRINT_LEN}-byte fingerprint as hex")


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
