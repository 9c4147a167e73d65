"""Command line for Edge Impulse exports: ``prepare-ei LIBDIR`` and ``pack --ei OLD NEW``.

:func:`add_commands` registers ``prepare-ei`` on the ``modelota`` subparsers;
:func:`cmd_pack_ei` runs ``modelota pack --ei OLD_EXPORT NEW_EXPORT`` (the
``pack`` parser owns the options: ``-o``, ``--version``, ``--chunk-size``,
``--base-version``, and ``--delta`` when it offers it). Failures are one-line
:class:`modelota.status.CliError`.
"""

from __future__ import annotations

import argparse

from ..format.constants import U32_MAX
from ..status import CliError

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


def cmd_pack_ei(args: argparse.Namespace) -> int:
    """``pack --ei OLD NEW``: a payload turning devices built from OLD into NEW's weights.

    Reads ``args.ei`` (two paths: folders or .zip), ``args.output``,
    ``args.version``, ``args.chunk_size`` and, when present, ``args.delta``
    and ``args.base_version`` (a delta's base; default: the version a
    prepared OLD library was built with).
    """
    from pathlib import Path

    from ..models.edgeimpulse import DEFAULT_CHUNK, EIExportError, pack_ei, read_export

    error = CliError
    paths = list(getattr(args, "ei", None) or [])
    if len(paths) != 2:
        raise error("--ei takes two exports: the one the devices run and the new one")
    version = int(args.version)
    if not 0 <= version <= U32_MAX:
        raise error(f"--version must be between 0 and {U32_MAX}")
    chunk = int(getattr(args, "chunk_size", None) or DEFAULT_CHUNK)
    if chunk < 1:
        raise error("--chunk-size must be at least 1")
    base_version = getattr(args, "base_version", None)
    delta = bool(getattr(args, "delta", False)) or base_version is not None
    try:
        old = read_export(paths[0])
        new = read_export(paths[1])
        payload = pack_ei(
            old, new, version=version, delta=delta, chunk_size=chunk, base_version=base_version,
            format_version=getattr(args, "format_version", 2),
        )  # fmt: skip
    except (EIExportError, ValueError) as e:
        raise error(str(e)) from e
    data = payload.encode()
    out = Path(args.output)
    out.write_bytes(data)
    h = payload.header
    kind = "delta" if h.is_delta else "full"
    base = f" over v{h.base_version}" if h.is_delta else ""
    print(
        f"{out}: {kind} payload v{h.model_version}{base}, {len(data)} bytes, {h.data_size} of"
        f" {h.weights_size} weight bytes in {h.chunk_count} chunks ({len(payload.segments)}"
        f" segments), models {', '.join(m.name for m in old.models)},"
        f" fingerprint {h.fingerprint.hex()}"
    )
    from ..api import encodings_text

    print(f"bytes over the air (format v{h.format_version}): {encodings_text(payload)}")
    return 0


def cmd_prepare_ei(args: argparse.Namespace) -> int:
    from ..models.edgeimpulse import EIExportError, prepare_ei

    error = CliError
    if not 0 <= args.version <= U32_MAX:
        raise error(f"--version must be between 0 and {U32_MAX}")
    try:
        report = prepare_ei(args.libdir, version=args.version)
    except (EIExportError, ValueError) as e:
        raise error(str(e)) from e
    print(report.summary())
    return 0


def add_commands(sub: Any) -> None:
    """Registers ``prepare-ei`` on the ``modelota`` subparsers object."""
    sp = sub.add_parser(
        "prepare-ei",
        description="Keeps the const weight arrays as the factory copy in flash, makes the"
        " model read RAM copies loaded from them at startup, and generates"
        " src/modelota_ei_model.{h,cpp} with ei_update_weights(Stream&) and"
        " ei_restore_weights(). Running it again changes nothing.",
    )
    sp.add_argument("libdir", help="the library folder (extract the .zip first)")
    sp.add_argument(
        "--version",
        type=int,
        default=1,
        help="version of the weights compiled in; payloads must carry a higher one",
    )
    sp.set_defaults(func=cmd_prepare_ei)
