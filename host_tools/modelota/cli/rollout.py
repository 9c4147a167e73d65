"""``modelota rollout ...``: staged rollouts on a running ``modelota serve``
(docs/FLEET.md "Rollouts")."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def percent(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share (e.g. 5% or 0.05)") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0% and 100%")
    return v


def waves(text: str) -> list[float]:
    """'1%,10%,50%,100%' (the % is optional) -> [1, 10, 50, 100]."""
    out = []
    for part in text.split(","):
        p = part.strip().removesuffix("%")
        try:
            out.append(float(p))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a percentage") from None
    return out


def duration(text: str) -> float:
    """'90s', '30m', '1h', '2d' or plain seconds."""
    t = text.strip().lower()
    mult = _UNITS.get(t[-1:], 0)
    try:
        v = float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 30m, 1h, 2d)") from None
    if v < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return v


def describe(r: dict[str, Any]) -> str:
    """A rollout as an operator reads it: state, waves, decisions."""
    p = r["policy"]
    lines = [
        f"rollout {r['id']}: {r['line']} v{r['from_version']} -> v{r['version']} on group"
        f" {r['group']!r}: {r['state'].upper()}, wave {r['wave']} of {len(r['waves'])}",
        f"  policy: waves {','.join(f'{w:g}%' for w in p['waves'])}; advance at"
        f" {p['success']:.0%} updated after {p['soak']:g} s; pause above {p['error']:.0%}"
        f" failing, confidence drop > {p['max_conf_drop']:g}, class shift > {p['max_shift']:g},"
        f" accuracy drop > {p['max_acc_drop']:g} (from {p['min_inferences']} inferences"
        f"{', required' if p['require_quality'] else ''})",
    ]
    for w in r["waves"]:
        mark = ">" if w["wave"] == r["wave"] and r["state"] == "running" else " "
        bar_n = 20
        done = 0 if not w["devices"] else round(bar_n * w["updated"] / w["devices"])
        lines.append(
            f"  {mark} wave {w['wave']} ({w['percent']:g}%): [{'#' * done}{'.' * (bar_n - done)}]"
            f" {w['updated']}/{w['devices']} updated, {w['failed']} failing"
            + ("" if w["open"] else " (not open)")
        )
    if r.get("pending"):
        lines.append(f"  now: {r['pending']}")
    for e in r.get("events", []):
        lines.append(f"  [{e['step']}] {e['actor']} {e['action']}: {e['reason']}")
    return "\n".join(lines)


def cmd_rollout(args: argparse.Namespace) -> int:
    from .common import print_json
    from .fleet import admin_call

    def call(admin: Any) -> Any:
        if args.action == "create":
            policy: dict[str, Any] = {}
            for key in ("waves", "success", "error", "soak", "min_inferences",
                        "max_conf_drop", "max_shift", "max_acc_drop"):  # fmt: skip
                v = getattr(args, key)
                if v is not None:
                    policy[key] = v
            if args.require_quality:
                policy["require_quality"] = True
            return admin.create_rollout(args.line, args.version, args.group, policy, args.start)
        if args.action == "list":
            return admin.rollouts()
        if args.action == "show":
            return admin.rollout(args.id)
        return admin.rollout_action(args.id, args.action, args.note or "")

    out = admin_call(args, call)
    if args.json:
        print_json(out)
    elif isinstance(out, list):
        for r in out:
            print(describe(r | {"events": []}))
        if not out:
            print("no rollouts")
    else:
        print(describe(out))
    return 0


def add_commands(sub: Any) -> None:
    from .fleet import client_actions

    sp = sub.add_parser("rollout")
    action = client_actions(sp)

    a = action("create", "a staged rollout of a line's version to a group")
    a.add_argument("line")
    a.add_argument("version", type=int)
    a.add_argument("--group", required=True)
    a.add_argument("--waves", type=waves, help="cumulative shares of the group, the last 100%%"
                   " (default 1%%,10%%,50%%,100%%)")  # fmt: skip
    a.add_argument("--success", type=percent,
                   help="share of a wave on the new version before the next opens (default 95%%)")
    a.add_argument("--error", type=percent,
                   help="share of a wave failing that pauses the rollout (default 5%%)")
    a.add_argument("--soak", type=duration, help="least time a wave stays open (default 1h)")
    a.add_argument("--min-inferences", type=int,
                   help="inferences on each side before the quality gate judges (default 100)")
    a.add_argument("--require-quality", action="store_true",
                   help="a wave waits for quality summaries before the next opens")
    a.add_argument("--max-conf-drop", type=float,
                   help="pause when mean top-1 confidence drops more (default 0.05)")
    a.add_argument("--max-shift", type=float, help="pause when the class distribution shifts"
                   " more (total variation beyond sampling noise, default 0.15)")  # fmt: skip
    a.add_argument("--max-acc-drop", type=float,
                   help="pause when accuracy on labelled inferences drops more (default 0.05)")
    a.add_argument("--start", action="store_true", help="start it now")
    action("list", "every rollout with its waves")
    a = action("show", "a rollout: waves, what it waits for, every decision")
    a.add_argument("id", type=int)
    for name, text in (
        ("start", "start a created rollout"),
        ("pause", "stop offering the new version (devices that have it keep it)"),
        ("resume", "go on (the wave's soak and failure count start anew)"),
        ("abort", "end it; the group stays on the version it ran before"),
    ):
        a = action(name, text)
        a.add_argument("id", type=int)
        a.add_argument("--note", help="why (recorded with the event)")
    sp.set_defaults(func=cmd_rollout)
