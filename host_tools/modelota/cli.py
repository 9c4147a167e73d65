"""``modelota`` command line: pack and inspect payloads.

Every failure ends with one line ``modelota: error: ...`` on stderr and a
non-zero exit code (1 for bad input, 2 for bad usage).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .format import (
    FINGERPRINT_LEN,
    U32_MAX,
    Payload,
    crc32,
    pack,
    parse,
)
from .status import CliError, ModelOTAError


def raw_fingerprint(model: str, size: int) -> bytes:
    """Fingerprint for raw weight files, where no graph is available to hash:
    the model name the user gives plus the region size."""
    h = hashlib.sha256(b"modelota-raw-v1\0" + model.encode() + b"\0" + str(size).encode())
    return h.digest()[:FINGERPRINT_LEN]


def read_weights(paths: Sequence[str]) -> bytes:
    """Concatenates raw weight files in order (.npy arrays as their raw bytes)."""
    parts = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CliError(f"{p}: no such file")
        if path.suffix == ".npy":
            import numpy as np

            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise CliError(f"{p}: not a numpy array file ({e})") from e
            parts.append(np.ascontiguousarray(arr).tobytes())
        else:
            parts.append(path.read_bytes())
    data = b"".join(parts)
    if len(data) > U32_MAX:
        raise CliError("weights exceed 4 GiB, the format's limit")
    return data


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
        return raw_fingerprint(args.model, size)
    raise CliError("give --model NAME or --fingerprint HEX: the device checks it before writing")


def c_array(name: str, data: bytes) -> str:
    body = ", ".join(f"0x{b:02x}" for b in data)
    return f"const uint8_t {name}[{len(data)}] = {{{body}}};"


def cmd_fingerprint(args: argparse.Namespace) -> int:
    if args.size is None and not args.weights:
        raise CliError("give weight files or --size")
    size = args.size if args.size is not None else len(read_weights(args.weights))
    fp = fingerprint_from(args, size)
    print(fp.hex())
    print(c_array("MODEL_FINGERPRINT", fp))
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from . import edgeimpulse_cli, tflite_cli

    if args.ei:
        if args.weights or args.base:
            raise CliError("--ei OLD NEW takes the two exports; give no other weight files")
        return edgeimpulse_cli.cmd_pack_ei(args)
    if not args.weights:
        raise CliError("give the new weights (files, a .tflite with --base, or --ei OLD NEW)")
    if tflite_cli.wants_tflite(args):
        return tflite_cli.cmd_pack_tflite(args)
    new = read_weights(args.weights)
    fp = fingerprint_from(args, len(new))
    if not 0 <= args.version <= U32_MAX:
        raise CliError(f"--version must be between 0 and {U32_MAX}")
    if args.chunk_size < 1:
        raise CliError("--chunk-size must be at least 1")
    base = None
    if args.base:
        base = read_weights([args.base])
        if args.base_version is None:
            raise CliError("--base needs --base-version: the device checks it runs that version")
        if len(base) != len(new):
            raise CliError(
                f"--base has {len(base)} bytes, new weights {len(new)}: not the same model"
            )
        if args.base_version >= args.version:
            raise CliError(
                f"--version {args.version} must be above --base-version {args.base_version}"
            )
    try:
        payload = pack(
            new,
            fingerprint=fp,
            version=args.version,
            chunk_size=args.chunk_size,
            base=base,
            base_version=args.base_version,
        )
    except ValueError as e:
        raise CliError(str(e)) from e
    out = Path(args.output)
    data = payload.encode()
    out.write_bytes(data)
    h = payload.header
    kind = "delta" if h.is_delta else "full"
    print(
        f"{out}: {kind} payload v{h.model_version}, {len(data)} bytes, {h.data_size} of"
        f" {h.weights_size} weight bytes in {h.segment_count} segment(s), {h.chunk_count} chunk(s)"
    )
    if h.is_delta:
        full = len(
            pack(new, fingerprint=fp, version=args.version, chunk_size=args.chunk_size).encode()
        )
        saved = full - len(data)
        pct = 100.0 * saved / max(full, 1)
        print(f"delta saves {saved} bytes ({pct:.1f}%) against a full payload")
    return 0


def describe(payload: Payload, raw: bytes) -> dict[str, object]:
    h = payload.header
    return {
        "size": len(raw),
        "format_version": h.format_version,
        "kind": "delta" if h.is_delta else "full",
        "fingerprint": h.fingerprint.hex(),
        "model_version": h.model_version,
        "base_version": h.base_version if h.is_delta else None,
        "base_crc32": f"0x{h.base_crc32:08x}" if h.is_delta else None,
        "weights_size": h.weights_size,
        "data_size": h.data_size,
        "chunk_count": h.chunk_count,
        "max_chunk": h.max_chunk,
        "segment_count": h.segment_count,
        "segments": [[off, length] for off, length in payload.segments],
        "digest": {"type": "crc32", "value": f"0x{h.digest_crc32():08x}"},
        "header_crc32": f"0x{h.crc:08x}",
        "chunk_crcs": "all valid",
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    from . import tflite_cli

    if tflite_cli.is_tflite(args.payload):
        print(tflite_cli.describe_tflite(args.payload))
        return 0
    path = Path(args.payload)
    if not path.is_file():
        raise CliError(f"{args.payload}: no such file")
    raw = path.read_bytes()
    try:
        payload = parse(raw)
    except ModelOTAError as e:
        raise CliError(f"{args.payload}: {e}") from e
    info = describe(payload, raw)
    tensors = ""
    if args.model:
        from . import tflite_cli

        tensors = tflite_cli.payload_tensors(payload, args.model)
        if args.json:
            info["tensors"] = tensors.splitlines()
            tensors = ""
    if args.weights:
        final = read_weights(args.weights)
        ok = (
            len(final) == payload.header.weights_size
            and crc32(final) == payload.header.digest_crc32()
        )
        info["weights_check"] = "match" if ok else "MISMATCH"
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key == "segments":
                segs = payload.segments
                shown = ", ".join(f"[{o}, {o + n})" for o, n in segs[:8])
                more = f" ... ({len(segs) - 8} more)" if len(segs) > 8 else ""
                print(f"{'segments':>14}: {shown}{more}")
            elif key == "digest":
                print(f"{'digest':>14}: crc32 {payload.header.digest_crc32():#010x}")
            elif value is not None:
                print(f"{key:>14}: {value}")
    if tensors:
        print(tensors)
    if info.get("weights_check") == "MISMATCH":
        raise CliError("the given weights do not match the payload's digest")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.board:
        from .demo import run
    else:
        from .fleet_demo import run
    return run()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelota",
        description="Pack and inspect ModelOTA payloads: streamed, CRC-checked, in-place"
        " model weight updates (docs/FORMAT.md).",
    )
    p.add_argument("--version", action="version", version=f"modelota {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def model_id(sp: argparse.ArgumentParser) -> None:
        g = sp.add_mutually_exclusive_group()
        g.add_argument(
            "--model", help="model name; the fingerprint is derived from it and the size"
        )
        g.add_argument("--fingerprint", help=f"{FINGERPRINT_LEN}-byte fingerprint as hex")

    sp = sub.add_parser(
        "pack",
        help="build a payload from raw weight files (.bin, .npy) or over a deployed .tflite",
    )
    sp.add_argument("weights", nargs="*", help="new weights; several raw files are concatenated")
    sp.add_argument(
        "--ei",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="two Edge Impulse Arduino exports (folders or .zip): the deployed one and the new one",
    )
    sp.add_argument("-o", "--output", required=True, help="payload file to write (.mota)")
    sp.add_argument(
        "--version",
        type=int,
        required=True,
        dest="version",
        help="model version (u32); devices refuse versions not above theirs",
    )
    sp.add_argument(
        "--chunk-size",
        type=int,
        default=1024,
        help="bytes per chunk; the device's chunk buffer must be at least this (default 1024)",
    )
    sp.add_argument(
        "--base", help="weights the devices run now: ship only the changed ranges (delta)"
    )
    sp.add_argument("--base-version", type=int, help="version of --base")
    sp.add_argument(
        "--delta",
        action="store_true",
        help="with .tflite models: ship only the changed bytes (needs --base-version)",
    )
    model_id(sp)
    sp.set_defaults(func=cmd_pack)

    sp = sub.add_parser(
        "inspect", help="print and verify a payload (.mota), or list a model's tensors (.tflite)"
    )
    sp.add_argument("payload")
    sp.add_argument("--weights", nargs="+", help="expected final weights: check the digest")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument(
        "--model",
        help="the deployed .tflite: show how many bytes of each tensor the payload rewrites",
    )
    sp.set_defaults(func=cmd_inspect)

    from . import collect, edgeimpulse_cli, fleet_cli, push, tflite_cli

    tflite_cli.add_commands(sub)
    edgeimpulse_cli.add_commands(sub)
    push.add_commands(sub)
    fleet_cli.add_commands(sub)
    collect.add_commands(sub)

    sp = sub.add_parser("demo", help="end-to-end update of a simulated device (real C++ core)")
    sp.add_argument("--board", action="store_true", help="the board-level demo (power cut...)")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser(
        "fingerprint", help="print the fingerprint of raw weights as hex and C array"
    )
    sp.add_argument("weights", nargs="*", help="weight files (for their size)")
    sp.add_argument("--size", type=int, help="region size instead of weight files")
    model_id(sp)
    sp.set_defaults(func=cmd_fingerprint)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"modelota: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"modelota: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
