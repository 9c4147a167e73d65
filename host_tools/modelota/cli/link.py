"""Link commands: ``modelota push`` (a payload to a board) and ``modelota collect``
(sample windows from a board to Edge Impulse files). The work is done in
:mod:`modelota.link.push` and :mod:`modelota.collect`, imported when a command runs."""

from __future__ import annotations

import argparse

from ..status import CliError

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


def cmd_collect(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1")
    if args.timeout <= 0:
        raise CliError("--timeout must be positive")
    key = None
    if args.hmac_key is not None:
        if not args.hmac_key:
            raise CliError("--hmac-key is empty")
        key = args.hmac_key.encode("utf-8")
    if not args.device_type:
        raise CliError("--device-type must not be empty (Edge Impulse requires it)")
    from ..collect.receive import collect

    r = collect(args.port, Path(args.outdir), count=args.count, timeout=args.timeout,
                hmac_key=key, device_name=args.device_name, device_type=args.device_type,
                csv=args.csv, label=args.label, baud=args.baud,
                progress=not args.quiet)  # fmt: skip
    why = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items()))
    bad = f"rejected {r.rejected} damaged frames ({why})" if r.rejected else "no damaged frames"
    skipped = f", {r.unwritable} with NaN/infinity not written" if r.unwritable else ""
    print(f"wrote {r.windows} windows ({len(r.files)} files) to {args.outdir}; {bad}{skipped};"
          f" {r.garbage_bytes} other bytes skipped")  # fmt: skip
    if r.windows == 0:
        raise CliError(f"no window received from {args.port} in {args.timeout:g} s")
    if args.count is not None and r.windows < args.count:
        raise CliError(
            f"received only {r.windows} of {args.count} windows (no window for {args.timeout:g} s)"
        )
    return 0


def add_collect(sub: Any) -> None:
    """Registers ``collect`` on the cli's subparsers."""
    p = sub.add_parser(
        "collect",
        description="Receive sample windows (docs/COLLECT.md) over a serial port and write"
        " each as an Edge Impulse data acquisition JSON file (+ CSV). Damaged frames"
        " are counted and never written.",
    )
    p.add_argument("--port", required=True, help="serial port or pyserial URL (socket://, sim://)")
    p.add_argument("outdir", help="directory for the files (created if missing)")
    p.add_argument("--count", type=int, default=None, help="stop after N windows")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="stop when no window came for this many seconds")  # fmt: skip
    p.add_argument(
        "--hmac-key",
        default=None,
        help="Edge Impulse project HMAC key: sign files with HS256 (its UTF-8 text)",
    )
    p.add_argument("--device-name", default="",
                   help="globally unique device id (MAC...); left out when empty")  # fmt: skip
    p.add_argument("--device-type", default="ModelOTA", help="device model (required by EI)")
    p.add_argument(
        "--label",
        default="field",
        help="file name prefix; Edge Impulse takes it as the label",
    )
    p.add_argument("--csv", action=argparse.BooleanOptionalAction, default=True,
                   help="also write a CSV per window")  # fmt: skip
    p.add_argument("--baud", type=int, default=115200, help="serial line speed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_collect)


def cmd_push(args: argparse.Namespace) -> int:
    from ..format.payload import parse
    from ..status import ModelOTAError
    from .common import print_json, read_input

    payload = read_input(args.payload, "payload file")
    try:
        parse(payload)  # a damaged or wrong file is refused before the port is opened
    except ModelOTAError as e:
        raise CliError(f"{args.payload}: not a valid payload: {e}") from e
    if args.max_data is not None and args.max_data < 1:
        raise CliError("--max-data must be at least 1")
    from ..link.push import push

    r = push(args.port, payload, window=args.window, timeout=args.timeout, baud=args.baud,
             retries=args.retries, progress=not (args.quiet or args.json),
             max_data=args.max_data)  # fmt: skip
    if args.json:
        print_json({
            "port": args.port, "version": r.version, "weights_crc32": f"{r.weights_crc:08x}",
            "resumed_from": r.resumed_from, "data_frames": r.data_frames,
            "retransmitted_bytes": r.retransmitted_bytes, "naks": r.naks,
            "timeouts": r.timeouts, "frame_sizes": list(r.frame_sizes),
            "seconds": round(r.seconds, 3),
        })  # fmt: skip
        return 0
    resumed = f", resumed at byte {r.resumed_from}" if r.resumed_from else ""
    print(f"updated to version {r.version}, weights CRC32 {r.weights_crc:08x}{resumed}")
    return 0


def add_push(sub: Any) -> None:
    """Registers ``push`` on the cli's subparsers."""
    p = sub.add_parser(
        "push",
    )
    p.add_argument("--port", required=True, help="serial port or pyserial URL (socket://, sim://)")
    p.add_argument("payload", help="payload file (.mota)")
    p.add_argument("--window", type=int, default=None, metavar="FRAMES",
                   help="DATA frames in flight (default: what the device offers)")  # fmt: skip
    p.add_argument("--max-data", type=int, default=None, metavar="BYTES",
                   help="largest DATA frame body (default: what the device offers)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=1.0,
                   help="longest wait for an answer, seconds (the retransmission timeout adapts"
                        " below it)")  # fmt: skip
    p.add_argument("--baud", type=int, default=115200, help="serial line speed")
    p.add_argument("--retries", type=int, default=8,
                   help="resends of an unanswered HELLO/START; the push gives up after"
                        " (retries + 1) x timeout seconds without progress")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    p.set_defaults(func=cmd_push)


def add_commands(sub: Any) -> None:
    add_push(sub)
    add_collect(sub)
