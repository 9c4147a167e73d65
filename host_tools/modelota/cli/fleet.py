"""``modelota serve``, ``modelota export`` and ``modelota fleet ...`` (admin
client): the fleet update server of docs/FLEET.md."""

from __future__ import annotations

import argparse

from ..status import CliError

TYPE_CHECKING = False  # as typing's, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
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

    for name in ("max_connections", "quota_windows", "quota_window_bytes", "quota_reports"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1")
    if args.header_timeout <= 0 or args.device_rate <= 0:
        raise CliError("--header-timeout and --device-rate must be above 0")
    token = _token(args, False)
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"admin token (pass --token or MODELOTA_TOKEN to choose one): {token}", flush=True)

    def ready(url: str) -> None:
        print(f"modelota serve: {url} (data in {args.data}); Ctrl-C stops", flush=True)

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


def _server_default() -> str:
    import os

    return os.environ.get("MODELOTA_SERVER", "http://127.0.0.1:8080")


def net_error(server: str, e: BaseException) -> CliError:
    """One line for a failure to talk to ``server`` (refused, unknown host,
    timeout, TLS...), saying what to check."""
    import http.client
    import socket
    import ssl

    if isinstance(e, ssl.SSLCertVerificationError):
        why = e.verify_message or e.reason or str(e)
        return CliError(
            f"{server}: the server's TLS certificate is not trusted ({why});"
            " give its CA with --cacert FILE"
        )
    if isinstance(e, ssl.SSLError):
        return CliError(f"{server}: TLS failed ({e.reason or e}): is it an https:// server?")
    if isinstance(e, ConnectionRefusedError):
        return CliError(f"cannot reach {server}: connection refused (is modelota serve running?)")
    if isinstance(e, socket.gaierror):
        return CliError(f"cannot reach {server}: unknown host ({e.strerror or e})")
    if isinstance(e, TimeoutError | socket.timeout):
        return CliError(f"cannot reach {server}: no answer (timed out)")
    if isinstance(e, http.client.HTTPException | ConnectionError):
        return CliError(
            f"{server}: the connection broke ({type(e).__name__}); is it an http:// server"
            " (not https://), and a modelota one?"
        )
    return CliError(f"cannot reach {server}: {getattr(e, 'strerror', None) or e}")


def _fleet_call(args: argparse.Namespace, admin: Any) -> Any:
    """The admin request of ``modelota fleet ACTION``; its JSON answer."""
    if args.action == "upload":
        return admin.upload(args.line, args.payload_bytes)
    if args.action == "register":
        out = admin.register(args.device, args.group, args.fingerprint, args.rotate_secret)
        if args.secret_file and out.get("secret"):
            _write_secret(args.secret_file, out["secret"])
            out = {**out, "secret_file": str(args.secret_file)}
        elif args.secret_file:
            raise CliError(f"device {args.device} exists: no new secret was issued for"
                           f" {args.secret_file} (add --rotate-secret to issue one)")  # fmt: skip
        return out
    if args.action == "assign":
        kind, target = ("group", args.group) if args.group else ("device", args.device)
        return admin.assign(kind, target, args.line, args.version)
    if args.action == "payloads":
        return admin.payloads()
    if args.action == "devices":
        return admin.devices()
    return admin.reports(args.device, args.limit)


def _check_upload(args: argparse.Namespace) -> None:
    """Reads and checks the payload to upload before anything is sent."""
    from ..format.payload import parse
    from ..status import ModelOTAError
    from .common import read_input

    data = read_input(args.payload, "payload file")
    try:
        parse(data)
    except ModelOTAError as e:
        raise CliError(f"{args.payload}: not a valid payload: {e}") from e
    args.payload_bytes = data


def _version_text(v: Any) -> str:
    return "-" if v is None else f"v{v}"


def fleet_text(action: str, out: Any) -> list[str]:
    """The human form of an admin answer: tables for listings, one line for
    changes; times as UTC and how long ago."""
    from .common import table, when

    if action == "upload":
        base = f" (delta over v{out['base_version']})" if out.get("base_version") else ""
        return [
            f"uploaded {out['line']} v{out['version']}{base}: {out['size']} bytes,"
            f" model {out['fingerprint']}, sha256 {out['sha256']}"
        ]
    if action == "register":
        extra = "".join(
            f", {k} {out[k]}" for k in ("group", "fingerprint") if out.get(k) is not None
        )
        lines = [f"registered device {out['id']}{extra}"]
        if out.get("secret_file"):  # shown once, and kept in the file
            path = out["secret_file"]
            lines.append(f"secret {out['secret']}  (written to {path}, mode 0600; give it to"
                         f" the device: --secret-file {path}, FLEET_SECRET or --secret;"
                         " the server does not show it again)")  # fmt: skip
        elif out.get("secret"):  # shown once: when the device is new or its secret rotated
            lines.append(f"secret {out['secret']}  (give it to the device: FLEET_SECRET,"
                         " --secret; it is not shown again)")  # fmt: skip
        return lines
    if action == "assign":
        version = "latest" if out.get("version") is None else f"v{out['version']}"
        return [f"assigned {out['line']} {version} to {out['kind']} {out['target']}"]
    if action == "payloads":
        rows = [["line", "version", "base", "bytes", "uploaded", "sha256"]]
        for p in out:
            rows.append([
                p["line"], f"v{p['version']}",
                _version_text(p["base_version"]) if p.get("base_version") else "full",
                str(p["size"]), when(p.get("uploaded_at")), p["sha256"],
            ])  # fmt: skip
        return table(rows, {3}) if out else ["no payloads"]
    if action == "devices":
        rows = [["device", "group", "runs", "assigned", "last check", "last report"]]
        for d in out:
            a = d.get("assigned")
            r = d.get("last_report")
            rows.append([
                d["id"], d.get("group") or "-", _version_text(d.get("last_version")),
                f"{a['line']} v{a['version']}" if a else "-", when(d.get("last_check")),
                f"{r.get('status_name') or r.get('event')} {when(r.get('at'))}" if r else "-",
            ])  # fmt: skip
        return table(rows) if out else ["no devices"]
    if action == "reports":
        rows = [["at", "device", "event", "version", "status", "bytes", "message"]]
        for r in out:
            rows.append([
                when(r.get("at")), r["device"], r.get("event") or "-",
                _version_text(r.get("version")), r.get("status_name") or str(r.get("status")),
                "-" if r.get("bytes") is None else str(r["bytes"]), r.get("message") or "",
            ])  # fmt: skip
        return table(rows, {5}) if out else ["no reports"]
    import json

    return [json.dumps(out, indent=2)]


def admin_call(args: argparse.Namespace, call: Callable[[Any], Any]) -> Any:
    """``call(admin)`` with an AdminClient of ``--server``/``--token``/
    ``--cacert``; every failure as one line (``fleet``, ``rollout``)."""
    import http.client

    from ..fleet.client import AdminClient, FleetClientError, FleetURLError

    try:
        return call(AdminClient(args.server, _token(args, True), cacert=args.cacert))
    except FleetURLError as e:
        raise CliError(str(e)) from e
    except FleetClientError as e:
        raise CliError(f"{args.server}: {e}") from e
    except (OSError, http.client.HTTPException) as e:
        raise net_error(args.server, e) from e


def cmd_fleet(args: argparse.Namespace) -> int:
    from .common import print_json

    if args.action == "upload":
        _check_upload(args)
    if args.action == "windows":
        return int(admin_call(args, lambda admin: _windows(admin, args)))
    out = admin_call(args, lambda admin: _fleet_call(args, admin))
    if args.json:
        print_json(out)
    else:
        print("\n".join(fleet_text(args.action, out)))
    return 0


def _write_secret(path: str, secret: str) -> None:
    """The device's secret into a file only its owner reads (0600)."""
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise CliError(f"{path}: cannot write the secret ({e.strerror})") from e
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


def _read_secret(args: argparse.Namespace) -> str:
    """--secret, --secret-file or $MODELOTA_DEVICE_SECRET: 64 hex digits or ""."""
    import os
    import re

    secret = args.secret or ""
    if args.secret_file:
        try:
            with open(args.secret_file) as f:
                secret = f.read().strip()
        except OSError as e:
            raise CliError(f"{args.secret_file}: {e.strerror}") from e
    secret = secret or os.environ.get("MODELOTA_DEVICE_SECRET", "")
    if secret and not re.fullmatch(r"[0-9a-fA-F]{64}", secret):
        raise CliError("a device secret is the 64 hex digits `modelota fleet register` printed")
    return secret


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
    import http.client
    import time
    from pathlib import Path

    from tqdm import tqdm

    from ..fleet.client import (
        FleetClientError,
        FleetURLError,
        Signer,
        check_id,
        check_server,
        poll,
    )  # fmt: skip
    from ..models.raw import read_weights
    from ..sim.device import Layout, RamModelDevice
    from ..sim.flash import SimFlash
    from ..status import Status
    from .common import fingerprint_from, print_json

    try:
        check_id("device", args.id)
        check_server(args.server, args.cacert)  # before booting
    except FleetURLError as e:
        raise CliError(str(e)) from e
    secret = _read_secret(args)
    signer = Signer(args.id, secret) if secret else None  # keeps a learnt clock between polls
    if args.polls < 1:
        raise CliError("--polls must be at least 1")
    if args.interval < 0:
        raise CliError("--interval must not be negative")
    factory = read_weights([args.factory])
    if factory[:4] == b"MOTA":
        raise CliError(f"{args.factory} is a ModelOTA payload, not the factory weights")
    if args.factory.endswith(".tflite"):
        from ..models.tflite import TFLiteError, read_tflite

        if args.model or args.fingerprint:
            raise CliError(
                f"{args.factory} brings its own fingerprint: give no --model/--fingerprint"
            )
        try:
            fp = read_tflite(factory).fingerprint()
        except TFLiteError as e:
            raise CliError(f"{args.factory}: {e}") from e
    else:
        fp = fingerprint_from(args, len(factory))
    layout = Layout.plan(256, 4, len(factory), args.max_payload)
    flash = SimFlash(256, layout.block_count, 4)
    state = Path(args.state) if args.state else None
    if state is not None and state.is_dir():
        raise CliError(f"{state}: is a directory, not a flash image file")
    if state is not None and state.is_file():
        image = state.read_bytes()
        if len(image) != len(flash.data):
            raise CliError(f"{state}: not the flash image of this model (size differs)")
        flash.load(0, image)
    dev = RamModelDevice(flash, layout, fp, factory, args.version, buffer_len=args.buffer)
    st = dev.boot()
    if st != Status.Ok:
        raise CliError(f"boot failed: {st.name}")
    if not args.json:
        print(f"device {args.id}: model {fp.hex()}, v{dev.version} from {dev.booted_from}")
    bad = 0
    results = []
    for i in range(args.polls):
        if i:
            time.sleep(args.interval)
        # a bar on a terminal only (None: tqdm's own check), never with --json
        bar = tqdm(total=0, desc="  download", unit="B", unit_scale=True, leave=False,
                   disable=True if args.json else None)  # fmt: skip

        def progress(done: int, total: int, bar: Any = bar) -> None:
            bar.total = total
            bar.update(done - bar.n)

        before = dev.version
        try:
            res = poll(dev, args.server, args.id, progress, cacert=args.cacert, secret=signer)
        except FleetClientError as e:
            raise CliError(f"{args.server}: {e}") from e
        except (OSError, http.client.HTTPException) as e:  # before ValueError: TLS errors are both
            raise net_error(args.server, e) from e
        except ValueError as e:  # a manifest the device refuses
            raise CliError(f"{args.server}: bad answer: {e}") from e
        finally:
            bar.close()
        if state is not None:
            state.write_bytes(flash.data)
        results.append({
            "poll": i + 1, "outcome": res.outcome, "status": res.what, "from_version": before,
            "version": dev.version, "offered": res.offered, "payload_size": res.payload_size,
            "connections": res.attempts, "resumed_at": res.resumed_at,
        })  # fmt: skip
        if res.outcome == "current":
            if not args.json:
                print(f"poll {i + 1}: current at v{dev.version}")
            continue
        bad += res.outcome != "updated"
        if not args.json:
            print(
                f"poll {i + 1}: {res.outcome} ({res.what}): v{before} -> v{dev.version},"
                f" {res.payload_size} bytes over {res.attempts} connection(s)"
                + (f", resumed at {res.resumed_at}" if res.resumed_at else "")
            )
    if args.json:
        print_json({"device": args.id, "fingerprint": fp.hex(), "polls": results})
    return 1 if bad else 0


def client_actions(sp: Any) -> Callable[[str, str], Any]:
    """Makes ``sp`` a client command with actions (``fleet``, ``rollout``):
    the client options before the action, and a function that adds an
    action taking them again after it."""
    client_options(sp, top=True)
    acts = sp.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> Any:
        a = acts.add_parser(name, help=help, description=help, formatter_class=sp.formatter_class)
        client_options(a, top=False)
        return a

    return action


def client_options(sp: Any, top: bool) -> None:
    """--server, --token, --cacert and --json of ``fleet``: accepted before
    the action (``top``) and after it (where they override)."""
    kw: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    sp.add_argument(
        "--server",
        help="URL of modelota serve, http:// or https:// (read from $MODELOTA_SERVER if set)",
        **(kw or {"default": _server_default()}),
    )
    sp.add_argument("--token", help="admin bearer token (default: $MODELOTA_TOKEN)", **kw)
    sp.add_argument(
        "--cacert",
        metavar="FILE",
        help="https: trust only the CA certificate(s) in this PEM file (default: the system's)",
        **kw,
    )
    sp.add_argument(
        "--json",
        action="store_true",
        help="print the server's JSON answer instead of text",
        **(kw or {"default": False}),
    )


def add_commands(sub: Any) -> None:
    from .common import add_model_id

    sp = sub.add_parser(
        "serve",
    )
    sp.add_argument("--data", default="modelota-data", help="payload files and the SQLite db")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sp.add_argument("--port", type=_port, default=8080, help="port (0 picks a free one)")
    sp.add_argument("--token", help="admin bearer token (default: $MODELOTA_TOKEN, or random)")
    sp.add_argument("--db", help="database URL: a SQLite path (default DATA/fleet.db) or"
                    " postgresql://... (needs psycopg)")  # fmt: skip
    sp.add_argument("--max-payload", type=int, default=64 * 1024 * 1024,
                    help="largest accepted upload in bytes")  # fmt: skip
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
    sp.add_argument("--server", default=_server_default(),
                    help="URL of the fleet server or static tree, http:// or https://"
                    " (read from $MODELOTA_SERVER if set)")  # fmt: skip
    sp.add_argument("--cacert", metavar="FILE",
                    help="https: trust only the CA certificate(s) in this PEM file"
                    " (default: the system's)")  # fmt: skip
    sp.add_argument("--id", required=True, help="device id (e.g. its MAC address)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--secret", help="the device's secret from `modelota fleet register`"
                   " (default: $MODELOTA_DEVICE_SECRET); none: unsigned requests, which"
                   " only a static tree answers")  # fmt: skip
    g.add_argument("--secret-file", metavar="FILE",
                   help="read the secret from FILE (fleet register --secret-file wrote it)")
    add_model_id(sp)
    sp.add_argument("--version", type=int, default=1, help="factory model version")
    sp.add_argument("--state", help="file keeping the simulated flash between runs (reboots)")
    sp.add_argument("--polls", type=int, default=1, help="checks to make")
    sp.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    sp.add_argument("--buffer", type=int, default=1024, help="chunk buffer the device lends")
    sp.add_argument("--max-payload", type=int, default=1 << 20,
                    help="largest payload its flash log holds, in bytes")  # fmt: skip
    sp.add_argument("--json", action="store_true", help="print one JSON document of the polls")
    sp.set_defaults(func=cmd_device)

    sp = sub.add_parser(
        "fleet",
    )
    action = client_actions(sp)

    a = action("upload", "upload a payload (.mota) to a model line")
    a.add_argument("line", help="model line (e.g. kws); versions rise within a line")
    a.add_argument("payload", help="payload file (.mota)")
    a = action("register", "register a device (by its id, e.g. its MAC)")
    a.add_argument("device", help="device id")
    a.add_argument("--group", help="group it belongs to (assign --group reaches it)")
    a.add_argument("--fingerprint", metavar="HEX", help="32 hex digits: refuse other models for it")
    a.add_argument("--rotate-secret", action="store_true",
                   help="revoke the device's secret and print a new one")  # fmt: skip
    a.add_argument("--secret-file", metavar="FILE",
                   help="also write the secret issued to FILE (mode 0600)")
    a = action("assign", "assign a line (and version) to a device or group")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--device", help="a registered device id")
    g.add_argument("--group", help="a group name")
    a.add_argument("line", help="model line")
    a.add_argument("--version", type=int, help="version of the line (default: its latest)")
    action("payloads", "list payloads")
    action("devices", "list devices with their state")
    a = action("windows", "write the sample windows devices sent as Edge Impulse files")
    a.add_argument("out", help="directory (files already there are kept)")
    a.add_argument("--device", help="only this device's")
    a.add_argument("--after", type=int, default=0, help="only windows with a larger id")
    a.add_argument("--hmac-key", help="Edge Impulse project HMAC key: sign the files")
    a.add_argument("--device-type", default="modelota", help="device_type of the files")
    a = action("reports", "reports devices sent, newest first")
    a.add_argument("--device", help="only this device's")
    a.add_argument("--limit", type=int, default=50, help="at most this many")
    sp.set_defaults(func=cmd_fleet)


def _port(text: str) -> int:
    """A TCP port number for argparse (0 picks a free one)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a port (0-65535)")
    return n
