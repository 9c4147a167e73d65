"""``modelota`` commands for TensorFlow Lite models.

* ``modelota diff OLD.tflite NEW.tflite``: which tensors change, bytes changed
  per tensor, totals and the payload sizes (registered by :func:`add_commands`);
* :func:`cmd_pack_tflite`: ``modelota pack --base old.tflite new.tflite -o x.mota
  --version N [--delta --base-version M]``, called by ``pack`` for .tflite inputs;
* :func:`describe_tflite`: the tensor table ``modelota inspect model.tflite`` prints.

Errors are :class:`modelota.status.CliError` with one-line messages. This module imports
``modelota.cli`` as a module, so ``cli.py`` can import it at its top.
"""

from __future__ import annotations

import argparse

from ..format.constants import U32_MAX
from ..status import CliError
from .common import c_array, table

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from pathlib import Path  # the model reader (numpy, tflite) loads when a command runs

    from ..format.payload import Payload
    from ..models.tflite import TensorInfo, TFLiteModel

SUFFIX = ".tflite"


def is_tflite(path: str | Path) -> bool:
    """True for a path ending in .tflite (what ``pack`` and ``inspect`` dispatch on)."""
    from pathlib import Path

    return Path(path).suffix.lower() == SUFFIX


def wants_tflite(args: argparse.Namespace) -> bool:
    """True when a ``pack`` command line names a .tflite model (new weights or --base)."""
    paths = [*(getattr(args, "weights", None) or []), getattr(args, "base", None) or ""]
    return any(is_tflite(p) for p in paths if p)


def load(path: str | Path) -> tuple[bytes, TFLiteModel]:
    """A .tflite file's bytes and parsed model; CliError naming the file on any problem."""

    from ..models.tflite import TFLiteError, read_tflite
    from .common import read_input

    data = read_input(str(path), ".tflite model")
    try:
        return data, read_tflite(data)
    except TFLiteError as e:
        raise CliError(f"{path}: {e}") from e


def _same_architecture(old_path: str, old: TFLiteModel, new_path: str, new: TFLiteModel) -> None:
    from ..models.tflite import first_difference

    if old.fingerprint() != new.fingerprint():
        diff = first_difference(old, new) or "fingerprints differ"
        raise CliError(
            f"not the same architecture: {old_path} (old) vs {new_path} (new): {diff}"
            " (a payload only changes weights)"
        )


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _kind(t: TensorInfo) -> str:
    parts = []
    if t.constant:
        parts.append("constant")
    if t.quantization is not None:
        q = t.quantization
        if q.num_scales > 1:
            parts.append(f"quantized per-channel ({q.num_scales} on dim {q.quantized_dimension})")
        else:
            parts.append("quantized per-tensor")
    if t.is_variable:
        parts.append("variable")
    return ", ".join(parts) or "activation"


def describe_tflite(path: str | Path) -> str:
    """What ``modelota inspect model.tflite`` prints: fingerprint, weight ranges and a
    table of tensors (index, name, shape, type, bytes, constant/quantized)."""
    data, m = load(path)
    n_sg = len({t.subgraph for t in m.tensors} | {o.subgraph for o in m.operators}) or 1
    fp = m.fingerprint()
    pct = 100.0 * m.weight_bytes / max(len(data), 1)
    lines = [
        f"{path}: TFLite model, {len(data)} bytes, schema v{m.version}, {n_sg} subgraph(s),"
        f" {len(m.operators)} operator(s), {len(m.tensors)} tensor(s)",
        f"fingerprint: {fp.hex()}",
        c_array("MODEL_FINGERPRINT", fp),
        f"weights: {m.weight_bytes} bytes in {len(m.weight_ranges())} range(s) ({pct:.1f}% of"
        " the file); a payload rewrites only these",
        "",
    ]
    multi = n_sg > 1
    head = ["sg"] if multi else []
    rows = [[*head, "#", "name", "shape", "type", "bytes", "weights", "kind"]]
    for t in m.tensors:
        rows.append(
            [
                *([str(t.subgraph)] if multi else []),
                str(t.index),
                t.name,
                _shape(t.shape),
                t.dtype,
                str(t.data_length) if t.constant else "-",
                str(t.weight_bytes) if t.weight_bytes else "-",
                _kind(t),
            ]
        )
    k = len(head)
    lines += table(rows, {k, k + 4, k + 5})
    lines.append("")
    for o in m.operators:
        where = f"subgraph {o.subgraph} " if multi else ""
        lines.append(f"{where}op {o.index}: {o.op} in {list(o.inputs)} out {list(o.outputs)}")
    return "\n".join(lines)


def writable_array(name: str, ranges: list[tuple[int, int]]) -> str:
    """The writable ranges as the C array ``modelota_config.writable`` points at,
    kept in flash (``MODELOTA_FLASH``: PROGMEM on AVR) and handed over with
    ``modelota_writable_flash``, which reads it from there."""
    body = ", ".join(f"{o}u, {n}u" for o, n in ranges)
    return f"const uint32_t {name}[{2 * len(ranges)}] MODELOTA_FLASH = {{{body}}};"


def print_fingerprint(args: argparse.Namespace) -> int:
    """``modelota fingerprint model.tflite``: the fingerprint, and the writable
    ranges a device sets so it refuses payloads that change anything else."""
    if getattr(args, "size", None) is not None or getattr(args, "model", None):
        raise CliError("a .tflite model's fingerprint is its graph's: drop --size/--model")
    data, m = load(args.weights[0])
    fp = m.fingerprint()
    ranges = m.writable_ranges()
    print(fp.hex())
    print(c_array("MODEL_FINGERPRINT", fp))
    print(
        f"/* {sum(n for _, n in ranges)} of {len(data)} bytes in {len(ranges)} range(s) may"
        " change: cfg.writable = modelota_writable_flash(MODEL_WRITABLE_RANGES), or"
        " ota.setWritableRanges(modelota_writable_flash(MODEL_WRITABLE_RANGES)) with the"
        " ModelOTA class; include modelota.h or ModelOTA.h first */"
    )
    print(writable_array("MODEL_WRITABLE_RANGES", ranges))
    return 0


def _sizes(payload: Payload) -> str:
    h = payload.header
    return (
        f"{len(payload.encode())} bytes, {h.data_size} of {h.weights_size} file bytes in"
        f" {len(payload.segments)} segment(s), {h.chunk_count} chunk(s)"
    )


def cmd_pack_tflite(args: argparse.Namespace) -> int:
    """``modelota pack --base old.tflite new.tflite -o x.mota --version N
    [--delta --base-version M] [--chunk-size K]``.

    The weight region is the whole old file, as the device holds it. Without
    ``--delta`` the payload rewrites every weight range of the old layout; with
    it only the changed bytes, and the device must run exactly ``--base``.
    """
    from pathlib import Path

    from ..models.tflite import TFLiteError, diff_models, pack_tflite

    weights = list(getattr(args, "weights", None) or [])
    if len(weights) != 1 or not is_tflite(weights[0]):
        raise CliError("give exactly one new model (new.tflite) to pack over --base old.tflite")
    if not getattr(args, "base", None):
        raise CliError(
            "a .tflite payload rewrites the model the devices run: give it as --base old.tflite"
        )
    if not is_tflite(args.base):
        raise CliError(f"--base {args.base} is not a .tflite model")
    if getattr(args, "model", None) or getattr(args, "fingerprint", None):
        raise CliError(
            "--model/--fingerprint do not apply to .tflite: the fingerprint is the graph's"
            " (see `modelota inspect old.tflite`)"
        )
    if not 0 <= args.version <= U32_MAX:
        raise CliError(f"--version must be between 0 and {U32_MAX}")
    chunk_size = getattr(args, "chunk_size", 1024)
    if chunk_size < 1:
        raise CliError("--chunk-size must be at least 1")
    delta = bool(getattr(args, "delta", False))
    base_version = getattr(args, "base_version", None)
    if delta:
        if base_version is None:
            raise CliError("--delta needs --base-version: the device checks it runs that version")
        if base_version >= args.version:
            raise CliError(f"--version {args.version} must be above --base-version {base_version}")
    elif base_version is not None:
        raise CliError("--base-version is for --delta payloads: add --delta or drop it")
    old_bytes, old = load(args.base)
    new_bytes, new = load(weights[0])
    _same_architecture(args.base, old, weights[0], new)
    fmt = getattr(args, "format_version", 2)
    try:
        payload = pack_tflite(
            old_bytes,
            new_bytes,
            version=args.version,
            base_version=base_version,
            delta=delta,
            chunk_size=chunk_size,
            format_version=fmt,
        )
        full = (
            pack_tflite(
                old_bytes,
                new_bytes,
                version=args.version,
                chunk_size=chunk_size,
                format_version=fmt,
            )
            if delta
            else payload
        )
    except (TFLiteError, ValueError) as e:
        raise CliError(str(e)) from e
    out = Path(args.output)
    data = payload.encode()
    out.write_bytes(data)
    kind = "delta" if delta else "full"
    print(
        f"{out}: {kind} payload v{args.version} for {args.base}"
        f" (fingerprint {old.fingerprint().hex()}), {_sizes(payload)}"
    )
    from ..api import encodings_text

    print(f"bytes over the air (format v{fmt}): {encodings_text(payload)}")
    changed = diff_models(old, new)
    n_weighted = sum(1 for t in old.tensors if t.weight_bytes)
    print(
        f"weights: {old.weight_bytes} bytes in {len(old.weight_ranges())} range(s) of the"
        f" {len(old_bytes)}-byte model; {len(changed)} of {n_weighted} weight tensors change"
    )
    if delta:
        full_len = len(full.encode())
        saved = full_len - len(data)
        pct = 100.0 * saved / max(full_len, 1)
        print(f"delta saves {saved} bytes ({pct:.1f}%) against a full payload ({full_len} bytes)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """``modelota diff OLD.tflite NEW.tflite``."""
    from ..models.tflite import diff_models, pack_tflite

    old_bytes, old = load(args.old)
    new_bytes, new = load(args.new)
    _same_architecture(args.old, old, args.new, new)
    diffs = diff_models(old, new, include_unchanged=args.all)
    all_diffs = diffs if args.all else diff_models(old, new, include_unchanged=True)
    n_changed = sum(1 for d in all_diffs if d.changed)
    from ..api import describe_encodings, encodings_text

    # bytes over the air, both wire formats (v2 is what pack writes by default)
    sent = {
        (kind, fmt): pack_tflite(old_bytes, new_bytes, version=1, base_version=0 if delta else None,
                                 delta=delta, format_version=fmt)
        for kind, delta in (("full", False), ("delta", True)) for fmt in (1, 2)
    }  # fmt: skip
    full, delta = sent[("full", 2)], sent[("delta", 2)]
    if args.json:
        from .common import print_json

        print_json({
            "old": str(args.old), "new": str(args.new),
            "fingerprint": old.fingerprint().hex(),
            "old_size": len(old_bytes), "new_size": len(new_bytes),
            "tensors": [
                {"subgraph": d.subgraph, "index": d.index, "name": d.name,
                 "shape": list(d.shape), "type": d.dtype,
                 "data_bytes": d.data_bytes, "data_changed": d.data_changed,
                 "quant_bytes": d.quant_bytes, "quant_changed": d.quant_changed,
                 "changed": d.changed}
                for d in diffs
            ],
            "weight_tensors": len(all_diffs), "changed_tensors": n_changed,
            "weight_bytes": old.weight_bytes,
            "changed_bytes": sum(d.changed for d in all_diffs),
            "full_payload_bytes": len(full.encode()),
            "delta_payload_bytes": len(delta.encode()),
            "delta_segments": len(delta.segments),
            "over_the_air": {
                kind: {"v1": len(sent[(kind, 1)].encode()), "v2": len(sent[(kind, 2)].encode()),
                       "v2_encodings": describe_encodings(sent[(kind, 2)])}
                for kind in ("full", "delta")
            },
        })  # fmt: skip
        return 0
    print(
        f"{args.old} -> {args.new}: same architecture (fingerprint {old.fingerprint().hex()}),"
        f" {len(old_bytes)} vs {len(new_bytes)} bytes"
    )
    if diffs:
        rows = [["#", "name", "shape", "type", "data changed", "quant changed", "changed"]]
        for d in diffs:
            rows.append(
                [
                    (f"{d.subgraph}:" if d.subgraph else "") + str(d.index),
                    d.name,
                    _shape(d.shape),
                    d.dtype,
                    f"{d.data_changed}/{d.data_bytes}" if d.data_bytes else "-",
                    f"{d.quant_changed}/{d.quant_bytes}" if d.quant_bytes else "-",
                    str(d.changed),
                ]
            )
        print("\n".join(table(rows, {0, 4, 5, 6})))
    else:
        print("no weight changes")
    changed_bytes = delta.header.data_size
    print(
        f"total: {n_changed} of {len(all_diffs)} weight tensors change;"
        f" {sum(d.changed for d in all_diffs)} of {old.weight_bytes} weight bytes differ"
    )
    print(
        f"payload: full {len(full.encode())} bytes, delta {len(delta.encode())} bytes"
        f" ({changed_bytes} bytes in {len(delta.segments)} segment(s))"
    )
    print("bytes over the air:")
    for kind in ("full", "delta"):
        v1, v2 = (len(sent[(kind, f)].encode()) for f in (1, 2))
        print(f"  {kind:<5}  v1 {v1} B, v2 {v2} B ({v2 / max(v1, 1):.0%} of v1):"
              f" {encodings_text(sent[(kind, 2)])}")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Registers ``diff`` on ``modelota``'s subcommands."""
    sp = sub.add_parser(
        "diff",
    )
    sp.add_argument("old", help="the model devices run (.tflite)")
    sp.add_argument("new", help="the retrained model (.tflite, same architecture)")
    sp.add_argument("--all", action="store_true", help="list unchanged weight tensors too")
    sp.add_argument("--json", action="store_true", help="print one JSON document")
    sp.set_defaults(func=cmd_diff)


def payload_tensors(payload: Payload, model_path: str | Path) -> str:
    """What ``modelota inspect x.mota --deployed deployed.tflite`` adds: for each
    weight tensor of the deployed model, how many of its bytes the payload's
    segments rewrite."""
    data, m = load(model_path)
    h = payload.header
    if h.weights_size != len(data) or h.fingerprint != m.fingerprint():
        raise CliError(
            f"{model_path} is not the model this payload was made for"
            f" (payload: {h.weights_size} bytes, fingerprint {h.fingerprint.hex()})"
        )
    segs = payload.segments
    rows = [["#", "name", "shape", "bytes", "rewritten"]]
    total = 0
    for t in m.tensors:
        ranges = t.ranges()
        if not ranges:
            continue
        hit = sum(max(0, min(o + n, so + sn) - max(o, so)) for o, n in ranges for so, sn in segs)
        total += hit
        rows.append([str(t.index), t.name, _shape(t.shape), str(t.weight_bytes), str(hit)])
    lines = table(rows, {0, 3, 4})
    lines.append(f"payload rewrites {total} of {m.weight_bytes} weight bytes")
    return "\n".join(lines)
