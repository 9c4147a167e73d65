"""``modelota serve``, ``modelota export`` and ``modelota fleet ...`` (admin
client): the fleet update server of docs/FLEET.md."""

from __future__ import annotations

import argparse

from ..status import CliError

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


def _token(args: argparse.Namespace, required: bool) -> str:
    import os

    token = args.token or os.environ.get("MODELOTA_TOKEN", "")
    if required and not token:
        raise CliError("an admin token is needed: --token or the MODELOTA_TOKEN variable")
    return str(token)


def cmd_serve(args: argparse.Namespace) -> int:
    import secrets
    from pathlib import Path

    from ..fleet.db import FleetError, Quotas
    from ..fleet.guard import Limits
    from ..fleet.server import serve

    token = _token(args, False)
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"admin token (pass --token or MODELOTA_TOKEN to choose one): {token}", flush=True)

    def ready(url: str) -> None:
        print(f"modelota serve: {url} (data in {args.data}); Ctrl-C stops", flush=True)

    for name in ("max_connections", "quota_windows", "quota_window_bytes", "quota_reports"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1")
    if args.header_timeout <= 0:
        raise CliError("--header-timeout must be above 0")
    limits = Limits(
        header_timeout=args.header_timeout, max_connections=args.max_connections,
        device_rate=args.device_rate, device_burst=max(args.device_rate * 10, 1.0),
    )  # fmt: skip
    quotas = Quotas(window_bytes=args.quota_window_bytes, windows=args.quota_windows,
                    reports=args.quota_reports)  # fmt: skip
    try:
        serve(
            Path(args.data), args.host, args.port, token, args.db, args.max_payload,
            args.access_log, ready,
            Path(args.device_key_file) if args.device_key_file else None, limits, quotas,
            frozenset(args.trust_proxy or ()), args.payloads,
        )  # fmt: skip
    except FleetError as e:
        raise CliError(e.message) from e
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..fleet.db import Fleet, FleetError
    from ..fleet.export import export

    if not (Path(args.data) / "payloads").is_dir() and args.db is None:
        raise CliError(f"{args.data}: not a modelota serve data directory")
    try:
        fleet = Fleet(Path(args.data), args.db)
    except FleetError as e:
        raise CliError(e.message) from e
    try:
        s = export(fleet, Path(args.out))
    finally:
        fleet.close()
    print(
        f"exported {s.devices} device manifests and {s.payloads} payloads to {args.out}"
        f" ({s.removed} stale manifests removed); serve it with any static file server"
    )
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ..fleet.client import AdminClient, FleetClientError

    admin = AdminClient(args.server, _token(args, True))
    out: Any
    try:
        if args.action == "upload":
            out = admin.upload(args.line, Path(args.payload).read_bytes())
        elif args.action == "register":
            out = admin.register(args.device, args.group, args.fingerprint, args.rotate_secret)
        elif args.action == "assign":
            kind, target = ("group", args.group) if args.group else ("device", args.device)
            out = admin.assign(kind, target, args.line, args.version)
        elif args.action == "payloads":
            out = admin.payloads()
        elif args.action == "devices":
            out = admin.devices()
        elif args.action == "windows":
            return _windows(admin, args)
        else:
            out = admin.reports(args.device, args.limit)
    except FleetClientError as e:
        raise CliError(str(e)) from e
    except OSError as e:
        raise CliError(f"{args.server}: {e}") from e
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def _windows(admin: Any, args: argparse.Namespace) -> int:
    """``fleet windows OUT``: the stored sample windows as Edge Impulse files."""
    from pathlib import Path

    from ..fleet.export import write_windows

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a directory")
    key = args.hmac_key.encode() if args.hmac_key else None
    after, written, seen = args.after, 0, 0
    while True:
        rows = admin.windows(after, args.device)
        if not rows:
            break
        written += write_windows(out, rows, key, args.device_type)
        seen += len(rows)
        after = rows[-1]["id"]
    print(f"{seen} windows, {written} new files in {out} (last id {after})")
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    """A simulated device (native core, RAM model, Store on simulated flash)
    polling a fleet server: the Python twin of examples/WiFiPull."""
    import os
    import re
    import time
    from pathlib import Path

    from tqdm import tqdm

    from ..fleet.client import FleetClientError, Signer, poll
    from ..models.raw import read_weights
    from ..sim.device import Layout, RamModelDevice
    from ..sim.flash import SimFlash
    from ..status import Status
    from .common import fingerprint_from

    factory = read_weights([args.factory])
    if args.factory.endswith(".tflite"):
        from ..models.tflite import read_tflite

        fp = read_tflite(factory).fingerprint()
    else:
        fp = fingerprint_from(args, len(factory))
    layout = Layout.plan(256, 4, len(factory), args.max_payload)
    flash = SimFlash(256, layout.block_count, 4)
    state = Path(args.state) if args.state else None
    if state is not None and state.is_file():
        image = state.read_bytes()
        if len(image) != len(flash.data):
            raise CliError(f"{state}: not the flash image of this model (size differs)")
        flash.load(0, image)
    dev = RamModelDevice(flash, layout, fp, factory, args.version, buffer_len=args.buffer)
    st = dev.boot()
    if st != Status.Ok:
        raise CliError(f"boot failed: {st.name}")
    print(f"device {args.id}: model {fp.hex()}, v{dev.version} from {dev.booted_from}")
    secret = args.secret or os.environ.get("MODELOTA_DEVICE_SECRET", "")
    if secret and not re.fullmatch(r"[0-9a-fA-F]{64}", secret):
        raise CliError("--secret is the 64 hex digits `modelota fleet register` printed")
    signer = Signer(args.id, secret) if secret else None
    bad = 0
    for i in range(args.polls):
        if i:
            time.sleep(args.interval)
        bar = tqdm(total=0, desc="  download", unit="B", unit_scale=True, leave=False)

        def progress(done: int, total: int, bar: Any = bar) -> None:
            bar.total = total
            bar.update(done - bar.n)

        before = dev.version
        try:
            res = poll(dev, args.server, args.id, progress, secret=signer)
        except FleetClientError as e:
            raise CliError(str(e)) from e
        except OSError as e:
            raise CliError(f"{args.server}: {e}") from e
        finally:
            bar.close()
        if state is not None:
            state.write_bytes(flash.data)
        if res.outcome == "current":
            print(f"poll {i + 1}: current at v{dev.version}")
            continue
        bad += res.outcome != "updated"
        print(
            f"poll {i + 1}: {res.outcome} ({res.what}): v{before} -> v{dev.version},"
            f" {res.payload_size} bytes over {res.attempts} connection(s)"
            + (f", resumed at {res.resumed_at}" if res.resumed_at else "")
        )
    return 1 if bad else 0


def add_commands(sub: Any) -> None:
    sp = sub.add_parser(
        "serve",
    )
    sp.add_argument("--data", default="modelota-data", help="payload files and the SQLite db")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sp.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    sp.add_argument("--token", help="admin bearer token (default: $MODELOTA_TOKEN, or random)")
    sp.add_argument("--db", help="database URL: a SQLite path (default DATA/fleet.db) or"
                    " postgresql://... (needs psycopg)")  # fmt: skip
    sp.add_argument("--max-payload", type=int, default=64 * 1024 * 1024,
                    help="largest accepted upload in bytes (default 64 MiB)")  # fmt: skip
    sp.add_argument("--access-log", action="store_true", help="log every request")
    sp.add_argument("--device-key-file", help="the key device secrets derive from (64 hex"
                    " digits); default DATA/device.key, created on first start. Every"
                    " replica needs the same one")  # fmt: skip
    sp.add_argument("--payloads", choices=("disk", "db"),
                    help="where payload bytes live (default: disk with SQLite, db with"
                    " PostgreSQL, which every replica can read)")  # fmt: skip
    sp.add_argument("--trust-proxy", action="append", metavar="ADDR",
                    help="address of a reverse proxy whose X-Forwarded-For names the client"
                    " (repeatable); no per-address connection cap for it")  # fmt: skip
    sp.add_argument("--max-connections", type=int, default=1024,
                    help="open connections at most (within the open-file limit)")  # fmt: skip
    sp.add_argument("--header-timeout", type=float, default=10.0,
                    help="seconds a client may take to send a request head")  # fmt: skip
    sp.add_argument("--device-rate", type=float, default=5.0,
                    help="requests per second per device (bursts of 10x); 429 beyond")  # fmt: skip
    sp.add_argument("--quota-windows", type=int, default=5000,
                    help="sample windows a device may store per UTC day")  # fmt: skip
    sp.add_argument("--quota-window-bytes", type=int, default=16 * 1024 * 1024,
                    help="bytes of sample windows a device may store per UTC day")  # fmt: skip
    sp.add_argument("--quota-reports", type=int, default=2000,
                    help="reports a device may send per UTC day")  # fmt: skip
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser(
        "export",
    )
    sp.add_argument("out", help="directory to write (v1/devices/..., v1/payloads/...)")
    sp.add_argument("--data", default="modelota-data", help="the server's data directory")
    sp.add_argument("--db", help="database URL when not DATA/fleet.db")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser(
        "device",
    )
    sp.add_argument("factory", help="the weights it ships with (.tflite, .bin, .npy)")
    sp.add_argument("--server", default="http://127.0.0.1:8080")
    sp.add_argument("--id", required=True, help="device id (e.g. its MAC address)")
    sp.add_argument("--secret", help="the device's secret from `modelota fleet register`"
                    " (default: $MODELOTA_DEVICE_SECRET)")  # fmt: skip
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--model", help="raw weights: model name the fingerprint is derived from")
    g.add_argument("--fingerprint", help="raw weights: 16-byte fingerprint as hex")
    sp.add_argument("--version", type=int, default=1, help="factory model version (default 1)")
    sp.add_argument("--state", help="file keeping the simulated flash between runs (reboots)")
    sp.add_argument("--polls", type=int, default=1, help="checks to make (default 1)")
    sp.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    sp.add_argument("--buffer", type=int, default=1024, help="chunk buffer the device lends")
    sp.add_argument("--max-payload", type=int, default=1 << 20,
                    help="largest payload its flash log holds (default 1 MiB)")  # fmt: skip
    sp.set_defaults(func=cmd_device)

    sp = sub.add_parser(
        "fleet",
    )
    sp.add_argument("--server", default="http://127.0.0.1:8080")
    sp.add_argument("--token", help="admin bearer token (default: $MODELOTA_TOKEN)")
    acts = sp.add_subparsers(dest="action", required=True)
    a = acts.add_parser("upload", help="upload a payload (.mota) to a model line")
    a.add_argument("line")
    a.add_argument("payload")
    a = acts.add_parser("register", help="register a device (by its id, e.g. its MAC)")
    a.add_argument("device")
    a.add_argument("--group")
    a.add_argument("--fingerprint", help="32 hex digits: refuse other models for it")
    a.add_argument("--rotate-secret", action="store_true",
                   help="revoke the device's secret and print a new one")  # fmt: skip
    a = acts.add_parser("assign", help="assign a line (and version) to a device or group")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--device")
    g.add_argument("--group")
    a.add_argument("line")
    a.add_argument("--version", type=int, help="default: the line's latest")
    acts.add_parser("payloads", help="list payloads")
    acts.add_parser("devices", help="list devices with their state")
    a = acts.add_parser("windows", help="write the sample windows devices sent as Edge"
                        " Impulse files")  # fmt: skip
    a.add_argument("out", help="directory (files already there are kept)")
    a.add_argument("--device", help="only this device's")
    a.add_argument("--after", type=int, default=0, help="only windows with a larger id")
    a.add_argument("--hmac-key", help="Edge Impulse project HMAC key: sign the files")
    a.add_argument("--device-type", default="modelota", help="device_type of the files")
    a = acts.add_parser("reports", help="reports devices sent, newest first")
    a.add_argument("--device")
    a.add_argument("--limit", type=int, default=50)
    sp.set_defaults(func=cmd_fleet)
