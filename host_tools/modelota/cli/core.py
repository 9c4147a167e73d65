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

    one = len(args.weights or []) == 1
    if one and is_tflite(args.weights[0]) and not args.json:
        from .tflite import print_fingerprint

        return print_fingerprint(args)
    model_file = one and _is_model(args.weights[0])
    if model_file and (args.model or args.fingerprint or args.size is not None):
        raise CliError(
            f"{args.weights[0]} brings its own fingerprint (its graph's): give no --model,"
            " --fingerprint or --size"
        )
    info: dict[str, object] = {}
    if model_file:
        from ..api import fingerprint

        try:
            fp = fingerprint(args.weights[0])
        except ValueError as e:
            raise CliError(f"{args.weights[0]}: {e}") from e
        if is_tflite(args.weights[0]):
            from .tflite import load

            ranges = load(args.weights[0])[1].writable_ranges()
            info["writable_ranges"] = [[o, n] for o, n in ranges]
    else:
        if args.size is None and not args.weights:
            raise CliError("give weight files or --size (or a .tflite model, an EI export)")
        if args.size is not None and args.size < 0:
            raise CliError("--size must not be negative")
        size = args.size if args.size is not None else len(read_weights(args.weights))
        fp = fingerprint_from(args, size)
    if args.json:
        from .common import print_json

        print_json({"fingerprint": fp.hex(), "c_array": c_array("MODEL_FINGERPRINT", fp), **info})
        return 0
    print(fp.hex())
    print(c_array("MODEL_FINGERPRINT", fp))
    return 0


def _is_model(path: str) -> bool:
    """A .tflite file, an Edge Impulse export folder or .zip: models that
    carry their own fingerprint."""
    from pathlib import Path

    p = Path(path)
    return p.suffix.lower() in (".tflite", ".zip") or p.is_dir()


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
    if not args.json:
        return _pack(args)
    import contextlib
    import io
    from pathlib import Path

    with contextlib.redirect_stdout(io.StringIO()):  # the packers' text lines
        rc = _pack(args)
    _pack_json(args.output, Path(args.output).read_bytes())
    return rc


def _pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..format.payload import pack
    from ..models.raw import read_weights
    from . import edgeimpulse as edgeimpulse_cli
    from . import tflite as tflite_cli

    seed = signing_key(args)
    if args.digest is None:
        args.digest = "sha256" if seed is not None else "crc32"
    if args.base_version is not None and not args.delta:
        raise CliError("--base-version is for --delta payloads: add --delta or drop it")
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
    for w in args.weights:
        _not_a_payload(w)
    new = read_weights(args.weights)
    fp = fingerprint_from(args, len(new))
    if not 0 <= args.version <= U32_MAX:
        raise CliError(f"--version must be between 0 and {U32_MAX}")
    if args.chunk_size < 1:
        raise CliError("--chunk-size must be at least 1")
    base = None
    if args.delta and not args.base:
        raise CliError("--delta needs --base: the weights the devices run now")
    if args.base:
        _not_a_payload(args.base)
        base = read_weights([args.base])
        if len(base) != len(new):
            raise CliError(
                f"--base has {len(base)} bytes, new weights {len(new)}: not the same model"
            )
    if args.delta:
        if args.base_version is None:
            raise CliError("--delta needs --base-version: the device checks it runs that version")
        if args.base_version >= args.version:
            raise CliError(
                f"--version {args.version} must be above --base-version {args.base_version}"
            )
    else:
        base = None  # --base alone: a full payload, checked against the base's size
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
            format_version=args.format_version,
        )
    except ValueError as e:
        raise CliError(str(e)) from e
    out = Path(args.output)
    data = payload.encode()
    out.write_bytes(data)
    h = payload.header
    kind = "delta" if h.is_delta else "full"
    full = len(data)
    if h.is_delta:
        full = len(
            pack(
                new,
                fingerprint=fp,
                version=args.version,
                chunk_size=args.chunk_size,
                digest=args.digest,
                sign_key=seed,
                format_version=args.format_version,
            ).encode()
        )
    from ..api import encodings_text

    print(
        f"{out}: {kind} payload v{h.model_version}, {len(data)} bytes, {h.data_size} of"
        f" {h.weights_size} weight bytes in {len(payload.segments)} segment(s),"
        f" {h.chunk_count} chunk(s), {seal_note(payload)}"
    )
    print(f"bytes over the air (format v{h.format_version}): {encodings_text(payload)}")
    if h.is_delta:
        saved = full - len(data)
        pct = 100.0 * saved / max(full, 1)
        print(f"delta saves {saved} bytes ({pct:.1f}%) against a full payload")
    return 0


def _not_a_payload(path: str) -> None:
    """Refuses a payload given where weights belong (packing it would ship
    its bytes as weights)."""
    from pathlib import Path

    p = Path(path)
    if p.is_file():
        with p.open("rb") as f:
            if f.read(4) == b"MOTA":
                raise CliError(f"{path} is a ModelOTA payload, not weights")


def _pack_json(out: object, data: bytes) -> None:
    """``pack --json``: the written payload as ``inspect --json`` describes it."""
    from ..api import describe_payload
    from ..format.payload import parse
    from .common import print_json

    info = {"output": str(out), **describe_payload(parse(data), len(data))}
    print_json(info)


def digest_text(payload: Payload) -> str:
    h = payload.header
    if h.digest_type == 1:
        return f"0x{h.digest_crc32():08x}"
    return h.digest.hex()


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..api import describe_payload, is_tflite
    from ..format.payload import final_digest, parse
    from ..models.raw import read_weights
    from .common import print_json, read_input

    raw = read_input(args.payload, "payload or model file")
    if is_tflite(raw):
        from . import tflite as tflite_cli

        if args.weights or args.deployed or args.key:
            raise CliError(
                f"{args.payload} is a .tflite model: --weights, --deployed and --key are for"
                " payloads"
            )
        if args.json:
            from ..api import describe_tflite

            print_json(describe_tflite(tflite_cli.load(args.payload)[1]))
        else:
            print(tflite_cli.describe_tflite(args.payload))
        return 0
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
    info = describe_payload(payload, len(raw))
    if key is not None:
        from ..format import signing as keys

        info["signature"] = f"valid (key id {keys.key_id(key).hex()})"
    elif payload.header.is_signed:
        info["signature"] = "not checked (give --key PUB)"
    tensors = ""
    if args.deployed:
        from . import tflite as tflite_cli

        tensors = tflite_cli.payload_tensors(payload, args.deployed)
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
        print_json(info)
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
            elif key == "encodings":
                from ..api import encodings_text

                print(f"{'encodings':>14}: {encodings_text(payload)}")
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
    sp.add_argument(
        "weights",
        nargs="*",
        help="the new weights: raw files (.bin, .npy; concatenated in order) or one .tflite",
    )
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
        help="bytes per chunk; the device's chunk buffer must be at least this",
    )
    sp.add_argument(
        "--format-version",
        type=int,
        choices=[1, 2],
        default=2,
        help="wire format: 2 compresses each chunk (docs/FORMAT.md); 1 for devices whose"
        " firmware predates it",
    )
    sp.add_argument(
        "--base",
        metavar="FILE",
        help="what the devices run now: raw weights (needed with --delta) or the deployed"
        " .tflite (always needed for .tflite)",
    )
    sp.add_argument(
        "--delta",
        action="store_true",
        help="ship only the bytes that differ from --base (or from the OLD export); devices"
        " refuse it unless they run exactly that",
    )
    sp.add_argument(
        "--base-version",
        type=int,
        help="with --delta: the version of --base (for --ei: default, the prepared library's)",
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
        help="digest of the final weights: crc32, or sha256 (the only one with --sign)",
    )
    sp.add_argument(
        "--json", action="store_true", help="print the written payload as `inspect --json` does"
    )
    add_model_id(sp)
    sp.set_defaults(func=cmd_pack)

    sp = sub.add_parser(
        "inspect",
    )
    sp.add_argument("payload", help="a payload (.mota) or a .tflite model")
    sp.add_argument("--weights", nargs="+", help="expected final weights: check the digest")
    sp.add_argument("--json", action="store_true", help="print one JSON document")
    sp.add_argument(
        "--deployed",
        metavar="MODEL.tflite",
        help="the .tflite the devices run: show how many bytes of each tensor the payload"
        " rewrites",
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
        help="raw weight files (for their size; with --model), or one .tflite model (its"
        " fingerprint and the writable ranges for modelota_config.writable) or Edge Impulse"
        " export",
    )
    sp.add_argument("--size", type=int, help="size of the raw weights instead of files")
    sp.add_argument("--json", action="store_true", help="print one JSON document")
    add_model_id(sp)
    sp.set_defaults(func=cmd_fingerprint)
