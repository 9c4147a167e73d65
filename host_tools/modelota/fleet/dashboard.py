"""The read-only dashboard ``modelota serve`` shows at ``/dashboard``.

Server-rendered HTML, charts as inline SVG drawn here (no script, no build
step, nothing fetched from elsewhere). Every number on the page carries a
``data-k`` attribute naming what it is, so a test can read it back and
compare it with the admin API (tests/test_dashboard.py). The page reloads
itself every 15 seconds.
"""

from __future__ import annotations

import html
import itertools
import time
from collections import Counter, defaultdict
from typing import Any

from .db import Fleet

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip
STATE_COLOURS = {"ready": "#888", "running": "#2a7de1", "paused": "#d9822b",
                 "aborted": "#c23030", "done": "#2e8b57"}  # fmt: skip
REFRESH = 15


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def num(key: str, value: Any, text: str | None = None) -> str:
    """A number the test reads back: <span data-k=KEY>VALUE</span>."""
    return f'<span class="n" data-k="{esc(key)}">{esc(value if text is None else text)}</span>'


def colour(version: Any) -> str:
    return PALETTE[int(version) % len(PALETTE)] if isinstance(version, int) else "#999"


def when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


# -- charts ------------------------------------------------------------------


def hbars(rows: list[tuple[str, float, str, str]], width: int = 420, unit: str = "") -> str:
    """Horizontal bars: (label, value, colour, value text)."""
    if not rows:
        return '<p class="empty">nothing yet</p>'
    top = max(v for _, v, _, _ in rows) or 1.0
    bar_h, gap, label_w = 18, 6, 130
    h = len(rows) * (bar_h + gap)
    out = [f'<svg class="chart" width="{width}" height="{h}" role="img">']
    for i, (label, v, c, text) in enumerate(rows):
        y = i * (bar_h + gap)
        w = (width - label_w - 70) * v / top
        out.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{esc(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{c}">'
            f"<title>{esc(label)}: {esc(text)}{unit}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{esc(text)}{unit}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def stacked(parts: list[tuple[str, int, str]], width: int = 420, height: int = 16) -> str:
    """One bar split in proportion: (label, count, colour)."""
    total = sum(n for _, n, _ in parts)
    if total == 0:
        return ""
    out = [f'<svg class="chart" width="{width}" height="{height}" role="img">']
    x = 0.0
    for label, n, c in parts:
        w = width * n / total
        out.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{c}">'
                   f"<title>{esc(label)}: {n}</title></rect>")  # fmt: skip
        x += w
    out.append("</svg>")
    return "".join(out)


def steps(series: dict[str, list[tuple[float, int]]], colours: dict[str, str],
          width: int = 600, height: int = 200) -> str:  # fmt: skip
    """Step lines over time, one per series: (time, value) points, held
    until the next one and drawn to the right edge."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return '<p class="empty">no versions seen yet</p>'
    t0 = min(t for t, _ in pts)
    t1 = max(t for t, _ in pts)
    t1 = t1 if t1 > t0 else t0 + 1.0
    top = max(max(v for _, v in pts), 1)
    left, right, pad_top, bottom = 40, 90, 10, 22
    iw, ih = width - left - right, height - pad_top - bottom

    def sx(t: float) -> float:
        return left + iw * (t - t0) / (t1 - t0)

    def sy(v: float) -> float:
        return pad_top + ih * (1 - v / top)

    out = [f'<svg class="chart" width="{width}" height="{height}" role="img">',
           f'<line x1="{left}" y1="{sy(0):.1f}" x2="{left + iw}" y2="{sy(0):.1f}" class="axis"/>',
           f'<line x1="{left}" y1="{pad_top}" x2="{left}" y2="{sy(0):.1f}" class="axis"/>',
           f'<text x="{left - 4}" y="{sy(top) + 4:.1f}" text-anchor="end">{top}</text>',
           f'<text x="{left - 4}" y="{sy(0) + 4:.1f}" text-anchor="end">0</text>',
           f'<text x="{left}" y="{height - 4}">{esc(when(t0))}</text>',
           f'<text x="{left + iw}" y="{height - 4}" text-anchor="end">{esc(when(t1))}</text>',
           ]  # fmt: skip
    for name, s in series.items():
        if not s:
            continue
        d = [f"M{sx(s[0][0]):.1f},{sy(s[0][1]):.1f}"]
        for (_, v0), (t, v) in itertools.pairwise(s):
            d.append(f"L{sx(t):.1f},{sy(v0):.1f} L{sx(t):.1f},{sy(v):.1f}")
        d.append(f"L{left + iw},{sy(s[-1][1]):.1f}")
        c = colours.get(name, "#999")
        out.append(f'<path d="{" ".join(d)}" fill="none" stroke="{c}" stroke-width="2">'
                   f"<title>{esc(name)}</title></path>"
                   f'<text x="{left + iw + 6}" y="{sy(s[-1][1]) + 4:.1f}" fill="{c}">'
                   f"{esc(name)}: {s[-1][1]}</text>")  # fmt: skip
    out.append("</svg>")
    return "".join(out)


# -- sections ----------------------------------------------------------------


def section_versions(devices: list[dict[str, Any]]) -> str:
    per: dict[str, Counter[Any]] = defaultdict(Counter)
    for d in devices:
        line = d["assigned"]["line"] if d["assigned"] else "(unassigned)"
        per[line][d["last_version"]] += 1
    out = ['<section id="versions"><h2>Devices per version</h2>']
    if not per:
        out.append('<p class="empty">no devices registered</p>')
    for line in sorted(per):
        c = per[line]
        order = sorted(c, key=lambda v: (v is None, v or 0))
        out.append(f"<h3>line {esc(line)} — {num(f'dev:{line}:total', sum(c.values()))}"
                   " devices</h3><table><tr><th>version</th><th>devices</th></tr>")  # fmt: skip
        for v in order:
            label = "unknown" if v is None else f"v{v}"
            sw = f'<i class="sw" style="background:{colour(v)}"></i>'
            out.append(f"<tr><td>{sw}{label}</td><td>{num(f'dev:{line}:{label}', c[v])}</td></tr>")
        out.append("</table>")
        out.append(stacked([("unknown" if v is None else f"v{v}", c[v], colour(v)) for v in order]))
    out.append("</section>")
    return "".join(out)


def section_rollouts(rollouts: list[dict[str, Any]]) -> str:
    out = ['<section id="rollouts"><h2>Rollouts</h2>']
    if not rollouts:
        out.append('<p class="empty">no rollouts</p>')
    for r in reversed(rollouts):  # newest first
        rid = r["id"]
        st = r["state"]
        out.append(
            f'<div class="rollout" id="rollout-{rid}"><h3>rollout {rid}: {esc(r["line"])}'
            f" v{esc(r['from_version'])} &rarr; v{r['version']} on group {esc(r['group'])} "
            f'<b class="state" style="background:{STATE_COLOURS.get(st, "#888")}">'
            f"{num(f'ro:{rid}:state', st)}</b> wave {num(f'ro:{rid}:wave', r['wave'])} of"
            f" {len(r['waves'])}</h3>"
        )
        out.append("<table><tr><th>wave</th><th>share</th><th>progress</th><th>updated</th>"
                   "<th>devices</th><th>failing</th></tr>")  # fmt: skip
        for w in r["waves"]:
            k = f"ro:{rid}:w{w['wave']}"
            frac = w["updated"] / w["devices"] if w["devices"] else 0.0
            bar = (f'<svg width="160" height="12"><rect width="160" height="12" fill="#eee"/>'
                   f'<rect width="{160 * frac:.1f}" height="12" fill="#59a14f"/>'
                   f'<rect x="{160 * frac:.1f}" width="'
                   f'{160 * (w["failed"] / w["devices"] if w["devices"] else 0):.1f}"'
                   f' height="12" fill="#e15759"/></svg>')  # fmt: skip
            cls = ' class="open"' if w["open"] else ""
            out.append(f"<tr{cls}><td>{w['wave']}</td><td>{w['percent']:g}%</td><td>{bar}</td>"
                       f"<td>{num(k + ':updated', w['updated'])}</td>"
                       f"<td>{num(k + ':devices', w['devices'])}</td>"
                       f"<td>{num(k + ':failed', w['failed'])}</td></tr>")  # fmt: skip
        out.append("</table>")
        if r.get("pending"):
            out.append(f'<p class="pending">now: {esc(r["pending"])}</p>')
        auto = [e for e in r["events"] if e["actor"] == "server"]
        out.append(f"<h4>decisions ({num(f'ro:{rid}:auto', len(auto))} by the server,"
                   f" {num(f'ro:{rid}:events', len(r['events']))} in all)</h4>"
                   '<table class="events"><tr><th>#</th><th>time</th><th>by</th><th>action</th>'
                   "<th>reason</th></tr>")  # fmt: skip
        for e in reversed(r["events"]):
            out.append(f'<tr class="{esc(e["actor"])}"><td>{e["step"]}</td><td>{when(e["at"])}</td>'
                       f"<td>{esc(e['actor'])}</td><td>{esc(e['action'])}</td>"
                       f'<td data-k="ro:{rid}:e{e["step"]}">{esc(e["reason"])}</td>'
                       "</tr>")  # fmt: skip
        out.append("</table></div>")
    out.append("</section>")
    return "".join(out)


def section_failures(reports: list[dict[str, Any]]) -> str:
    failed = [r for r in reports if isinstance(r["status"], int) and r["status"] < 0]
    by = Counter(r["status_name"] or str(r["status"]) for r in failed)
    out = [f'<section id="failures"><h2>Recent failure reports ({num("fail:total", len(failed))}'
           f" of the last {len(reports)} reports)</h2>"]  # fmt: skip
    rows = [(name, float(n), "#e15759", str(n)) for name, n in by.most_common()]
    out.append(hbars(rows))
    if by:
        out.append("<table><tr><th>status</th><th>reports</th></tr>")
        for name, n in by.most_common():
            out.append(f"<tr><td>{esc(name)}</td><td>{num(f'fail:{name}', n)}</td></tr>")
        out.append("</table><h4>latest</h4><table><tr><th>time</th><th>device</th><th>event</th>"
                   "<th>status</th><th>message</th></tr>")  # fmt: skip
        for r in failed[:10]:
            out.append(f"<tr><td>{when(r['at'])}</td><td>{esc(r['device'])}</td>"
                       f"<td>{esc(r['event'])}</td><td>{esc(r['status_name'])}</td>"
                       f"<td>{esc(r['message'] or '')}</td></tr>")  # fmt: skip
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def section_adoption(history: list[dict[str, Any]], devices: list[dict[str, Any]]) -> str:
    line_of = {d["id"]: (d["assigned"]["line"] if d["assigned"] else "(unassigned)")
               for d in devices}  # fmt: skip
    out = ['<section id="adoption"><h2>Version adoption over time</h2>']
    per_line: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in history:
        per_line[line_of.get(h["device"], "(unassigned)")].append(h)
    if not per_line:
        out.append('<p class="empty">no versions seen yet</p>')
    for line in sorted(per_line):
        running: dict[str, int] = {}
        count: Counter[int] = Counter()
        series: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for h in per_line[line]:  # ordered by time
            old = running.get(h["device"])
            if old is not None:
                count[old] -= 1
                series[f"v{old}"].append((h["at"], count[old]))
            running[h["device"]] = h["version"]
            count[h["version"]] += 1
            series[f"v{h['version']}"].append((h["at"], count[h["version"]]))
        colours = {f"v{v}": colour(v) for v in count}
        ordered = dict(sorted(series.items(), key=lambda kv: int(kv[0][1:])))
        out.append(f"<h3>line {esc(line)}</h3>" + steps(ordered, colours))
        out.append('<p class="legend">now: ' + ", ".join(
            f"v{v} {num(f'adopt:{line}:v{v}', n)}" for v, n in sorted(count.items()) if n
        ) + "</p>")  # fmt: skip
    out.append("</section>")
    return "".join(out)


def section_quality(summary: list[dict[str, Any]]) -> str:
    out = ['<section id="quality"><h2>Model quality per version</h2>'
           "<p>From the devices that run each version: their last window of inferences"
           " (docs/FLEET.md, Model quality).</p>"]  # fmt: skip
    if not summary:
        out.append('<p class="empty">no quality summaries yet</p></section>')
        return "".join(out)
    rows = [(f"{q['line']} v{q['version']}", q["conf"] or 0.0, colour(q["version"]),
             f"{q['conf']:.3f}") for q in summary]  # fmt: skip
    out.append("<h4>mean top-1 confidence</h4>" + hbars(rows))
    acc = [(f"{q['line']} v{q['version']}", q["accuracy"], colour(q["version"]),
            f"{q['accuracy']:.1%}") for q in summary if q["accuracy"] is not None]  # fmt: skip
    if acc:
        out.append("<h4>accuracy on labelled inferences</h4>" + hbars(acc))
    out.append("<h4>predicted class distribution</h4><table><tr><th>version</th>"
               "<th>devices</th><th>inferences</th><th>confidence</th><th>accuracy</th>"
               "<th>classes</th></tr>")  # fmt: skip
    for q in summary:
        k = f"q:{q['line']}:v{q['version']}"
        conf = f"{q['conf']:.4f}"
        parts = [(f"class {i}", c, PALETTE[i % len(PALETTE)]) for i, c in enumerate(q["counts"])]
        accuracy = "-" if q["accuracy"] is None else num(k + ":acc", f"{q['accuracy']:.4f}",
                                                         f"{q['accuracy']:.1%}")  # fmt: skip
        out.append(f"<tr><td>{esc(q['line'])} v{q['version']}</td>"
                   f"<td>{num(k + ':devices', q['devices'])}</td><td>{num(k + ':n', q['n'])}</td>"
                   f"<td>{num(k + ':conf', conf)}"
                   f"</td><td>{accuracy}</td><td>{stacked(parts, 180, 14)}</td></tr>")  # fmt: skip
    out.append("</table></section>")
    return "".join(out)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2a38;color:#fff;padding:10px 20px}header h1{margin:0;font-size:20px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px;padding:16px}
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 16px}
#rollouts{grid-column:1/-1}h2{margin:0 0 8px;font-size:17px}h3{font-size:15px;margin:10px 0 6px}
table{border-collapse:collapse;margin:4px 0}td,th{padding:2px 8px;text-align:left;
border-bottom:1px solid #eee;vertical-align:top}th{font-weight:600;color:#555}
.state{color:#fff;padding:1px 8px;border-radius:10px;font-size:13px}
tr.open td:first-child{font-weight:700}tr.server td{background:#fff8e8}
.pending{color:#555;font-style:italic}.empty{color:#888}.chart text{font-size:12px;fill:#333}
.axis{stroke:#999}.sw{display:inline-block;width:10px;height:10px;margin-right:6px}
"""


def render(fleet: Fleet, refresh: int = REFRESH) -> str:
    """The whole page, from the fleet's database now; it reloads itself
    every ``refresh`` seconds (0: never)."""
    devices = fleet.devices()
    rollouts = [fleet.rollout_json(r) for r in fleet.rollouts()]
    reports = fleet.reports(None, 500)
    body = "".join((
        section_rollouts(rollouts),
        section_versions(devices),
        section_failures(reports),
        section_adoption(fleet.version_history(), devices),
        section_quality(fleet.quality_summary()),
    ))  # fmt: skip
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        + (f'<meta http-equiv="refresh" content="{refresh}">' if refresh > 0 else "")
        + "<title>ModelOTA fleet</title>"
        f"<style>{CSS}</style></head><body><header><h1>ModelOTA fleet</h1>"
        f"<small>{len(devices)} devices, {len(rollouts)} rollouts; as of"
        f" {esc(when(fleet.clock()))} UTC; read-only</small></header><main>{body}</main>"
        "</body></html>"
    )


def login_page(message: str) -> str:
    note = f'<p style="color:#c23030">{esc(message)}</p>' if message else ""
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>ModelOTA fleet: sign in</title>"
        f"<style>{CSS}</style></head><body><header><h1>ModelOTA fleet</h1></header><main>"
        '<section><h2>Admin token</h2><form method="post" action="/dashboard/login">'
        '<input type="password" name="token" id="token" size="40" autofocus> '
        f'<button type="submit" id="login">Sign in</button></form>{note}'
        "<p>The token `modelota serve` was started with (--token or MODELOTA_TOKEN).</p>"
        "</section></main></body></html>"
    )
