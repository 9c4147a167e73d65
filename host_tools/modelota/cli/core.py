"""The core commands: ``pack``, ``inspect``, ``keygen``, ``fingerprint``."""

from __future__ import annotations

import argparse

from ..format.constants import DIGEST_NAMES, U32_MAX
from ..status import CliError, ModelOTAError
from .common import add_model_id, c_array, fingerprint_from

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from ..format.payload import Payload


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from ..models.raw import read_weights
    from .tflite import is_tflite

    if len(args.weights or []) == 1 and is_tflite(args.weights[0]):
        from .tflite import print_fingerprint

        return print_fingerprint(args)
    if args.size is None and not args.weights:
        raise CliError("give weight files or --size")
    size = args.size if args.size is not None else len(read_weights(args.weights))
    fp = fingerprint_from(args, size)
    print(fp.hex())
    print(c_array("MODEL_FINGERPRINT", fp))
    return 0


def signing_key(args: argparse.Namespace) -> bytes | None:
    """The private key of ``pack --sign KEY`` (32-byte seed), or None."""
    if not getattr(args, "sign", None):
        return None
    from ..format import signing as keys

    if args.digest == "crc32":
        raise CliError("--sign needs the SHA-256 digest (a CRC32 digest can be forged)")
    try:
        return keys.load_private(args.sign)
    except (keys.KeyFileError, ValueError) as e:
        raise CliError(str(e)) from e


def reseal_output(args: argparse.Namespace, region: bytes, seed: bytes | None) -> None:
    """Rewrites the payload a model packer wrote with the asked digest/signature."""
    from pathlib import Path

    from ..format.payload import parse, seal

    out = Path(args.output)
    try:
        payload = seal(parse(out.read_bytes()), region, digest=args.digest, sign_key=seed)
    except (ModelOTAError, ValueError) as e:
        raise CliError(f"{out}: cannot seal: {e}") from e
    out.write_bytes(payload.encode())
    print(f"{out}: {seal_note(payload)}")


def seal_note(payload: Payload) -> str:
    h = payload.header
    note = f"digest {DIGEST_NAMES[h.digest_type]}"
    if h.is_signed:
        note += f", signed (Ed25519, key id {h.key_id.hex()})"
    return note


def cmd_pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..format.payload import pack
    from ..models.raw import read_weights
    from . import edgeimpulse as edgeimpulse_cli
    from . import tflite as tflite_cli

    seed = signing_key(args)
    if args.digest is None:
        args.digest = "sha256" if seed is not None else "crc32"
    if args.ei:
        if args.weights or args.base:
            raise CliError("--ei OLD NEW takes the two exports; give no other weight files")
        rc = edgeimpulse_cli.cmd_pack_ei(args)
        if rc == 0 and (seed is not None or args.digest != "crc32"):
            from ..models.edgeimpulse import read_export

            reseal_output(args, read_export(args.ei[0]).weights_bytes(), seed)
        return rc
    if not args.weights:
        raise CliError("give the new weights (files, a .tflite with --base, or --ei OLD NEW)")
    if tflite_cli.wants_tflite(args):
        rc = tflite_cli.cmd_pack_tflite(args)
        if rc == 0 and (seed is not None or args.digest != "crc32"):
            reseal_output(args, Path(args.base).read_bytes(), seed)
        return rc
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
            digest=args.digest,
            sign_key=seed,
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
        f" {h.weights_size} weight bytes in {h.segment_count} segment(s), {h.chunk_count} chunk(s),"
        f" {seal_note(payload)}"
    )
    if h.is_delta:
        full = len(
            pack(
                new,
                fingerprint=fp,
                version=args.version,
                chunk_size=args.chunk_size,
                digest=args.digest,
                sign_key=seed,
            ).encode()
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
        "digest": {"type": DIGEST_NAMES[h.digest_type], "value": digest_text(payload)},
        "signed": h.is_signed,
        "key_id": h.key_id.hex() if h.is_signed else None,
        "header_crc32": f"0x{h.crc:08x}",
        "chunk_crcs": "all valid",
    }


def digest_text(payload: Payload) -> str:
    h = payload.header
    if h.digest_type == 1:
        return f"0x{h.digest_crc32():08x}"
    return h.digest.hex()


def cmd_inspect(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..format.payload import final_digest, parse
    from ..models.raw import read_weights
    from . import tflite as tflite_cli

    if tflite_cli.is_tflite(args.payload):
        print(tflite_cli.describe_tflite(args.payload))
        return 0
    path = Path(args.payload)
    if not path.is_file():
        raise CliError(f"{args.payload}: no such file")
    raw = path.read_bytes()
    key = None
    if args.key:
        from ..format import signing as keys

        try:
            key = keys.load_public(args.key)
        except (keys.KeyFileError, ValueError) as e:
            raise CliError(str(e)) from e
    try:
        payload = parse(raw, public_key=key)
    except ModelOTAError as e:
        raise CliError(f"{args.payload}: {e}") from e
    info = describe(payload, raw)
    if key is not None:
        from ..format import signing as keys

        info["signature"] = f"valid (key id {keys.key_id(key).hex()})"
    elif payload.header.is_signed:
        info["signature"] = "not checked (give --key PUB)"
    tensors = ""
    if args.model:
        from . import tflite as tflite_cli

        tensors = tflite_cli.payload_tensors(payload, args.model)
        if args.json:
            info["tensors"] = tensors.splitlines()
            tensors = ""
    if args.weights:
        final = read_weights(args.weights)
        ok = (
            len(final) == payload.header.weights_size
            and final_digest(payload.header.digest_type, final) == payload.header.digest
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
                name = DIGEST_NAMES[payload.header.digest_type]
                print(f"{'digest':>14}: {name} {digest_text(payload)}")
            elif value is not None:
                print(f"{key:>14}: {value}")
    if tensors:
        print(tensors)
    if info.get("weights_check") == "MISMATCH":
        raise CliError("the given weights do not match the payload's digest")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..format import signing as keys

    if Path(args.key).exists():
        raise CliError(f"{args.key} exists: refusing to overwrite a private key")
    try:
        priv, pub, hdr = keys.write_keypair(args.key)
    except OSError as e:
        raise CliError(f"{args.key}: {e.strerror or e}") from e
    kid = keys.key_id(keys.load_public(pub)).hex()
    print(f"{priv}: Ed25519 private key (keep it secret; `modelota pack --sign {priv}`)")
    print(f"{pub}: public key, key id {kid} (`modelota inspect --key {pub}`)")
    print(f"{hdr}: public key as a C array for the firmware (cfg.verifier)")
    return 0


def add_commands(sub: Any) -> None:
    """Registers pack, inspect, keygen and fingerprint."""
    sp = sub.add_parser(
        "pack",
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
    sp.add_argument(
        "--sign",
        metavar="KEY",
        help="sign the header with this Ed25519 private key (`modelota keygen`); implies"
        " --digest sha256. Devices holding the public key accept only such payloads",
    )
    sp.add_argument(
        "--digest",
        choices=["crc32", "sha256"],
        help="digest of the final weights (default crc32, or sha256 with --sign)",
    )
    add_model_id(sp)
    sp.set_defaults(func=cmd_pack)

    sp = sub.add_parser(
        "inspect",
    )
    sp.add_argument("payload")
    sp.add_argument("--weights", nargs="+", help="expected final weights: check the digest")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument(
        "--model",
        help="the deployed .tflite: show how many bytes of each tensor the payload rewrites",
    )
    sp.add_argument(
        "--key",
        metavar="PUB",
        help="public key (.pub): the payload must carry a valid signature by it (else exit 1)",
    )
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser(
        "keygen",
    )
    sp.add_argument("key", help="private key file to create (never overwritten)")
    sp.set_defaults(func=cmd_keygen)

    sp = sub.add_parser(
        "fingerprint",
    )
    sp.add_argument(
        "weights",
        nargs="*",
        help="weight files (for their size), or one .tflite model: its fingerprint and the"
        " writable ranges for modelota_config.writable",
    )
    sp.add_argument("--size", type=int, help="region size instead of weight files")
    add_model_id(sp)
    sp.set_defaults(func=cmd_fingerprint)
