"""``modelota demo --fleet``: staged rollouts that stop a worse model.

300 simulated devices (the real C++ core each, the digits classifier in
RAM, run in the TFLM interpreter on held-out digits) pull from a real
``modelota serve`` over HTTP and report the firmware accumulator's
model-quality summaries. A better model rolls out in waves to every device;
a barely trained one, released next, is paused by the server in wave 1.
Soak periods pass on a simulated clock. The dashboard URL is printed; with
``--serve`` the server stays up after the story until Ctrl-C.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..fleet.client import AdminClient
from ..fleet.server import ServerThread
from ..models.tflite import pack_tflite
from .simfleet import SimClock, SimFleet, rollout_models

TOKEN = "demo-admin-token"
LINE = "digits"
GROUP = "field"
DEVICES = 300
SOAK = 3600.0
POLICY: dict[str, Any] = {"waves": [1, 10, 50, 100], "soak": SOAK, "success": 0.95,
                          "error": 0.05, "min_inferences": 100}  # fmt: skip
INFERENCES = 50  # per device between two checks (its accumulator's window)


def run(serve: bool = False) -> int:
    ok = True

    def say(tag: str, text: str, passed: bool = True) -> None:
        nonlocal ok
        ok = ok and passed
        print(f"[{tag:<9}] {text}{'' if passed else '   <-- UNEXPECTED'}", flush=True)

    print("ModelOTA rollout demo: `modelota serve` on loopback and 300 simulated devices (real")
    print("firmware_lib core each, the digits model in RAM, run in TFLM). Simulated clock.\n")
    m = rollout_models()
    clock = SimClock()
    with tempfile.TemporaryDirectory(prefix="modelota-rollout-") as tmp:
        t = ServerThread(Path(tmp), TOKEN, clock=clock, rollout_interval=1.0)
        url = t.start()
        try:
            ok = _story(url, m, clock, say) and ok
            print(f"\ndashboard: {url}/dashboard  (admin token: {TOKEN})")
            if serve:
                print("serving until Ctrl-C", flush=True)
                try:
                    threading.Event().wait()
                except KeyboardInterrupt:
                    pass
            else:
                print("(it stops with this demo: `modelota demo --fleet --serve` keeps it up)")
        finally:
            t.stop()
    if not ok:
        print("demo FAILED: a step did not behave as expected", file=sys.stderr)
        return 1
    return 0


def _story(url: str, m: Any, clock: SimClock, say: Any) -> bool:
    admin = AdminClient(url, TOKEN)
    say("server", f"{url}; dashboard {url}/dashboard")
    for v, w, what in ((1, m.factory, "factory model"), (2, m.better, "200 more training steps"),
                       (3, m.worse, "barely trained: the model that must not ship")):  # fmt: skip
        rec = admin.upload(LINE, pack_tflite(m.factory, w, version=v).encode())
        say("upload", f"{LINE} v{v} ({what}): {rec['size']} bytes")
    fleet = SimFleet(url, admin, GROUP, DEVICES, m.factory, 1, m.x, m.y, window=INFERENCES)
    admin.assign("group", GROUP, LINE, 1)
    fleet.step(INFERENCES)
    q = {x["version"]: x for x in admin.quality()}
    say("fleet", f"{DEVICES} devices in group '{GROUP}' run v1; their quality summaries:"
        f" confidence {q[1]['conf']:.3f}, accuracy {q[1]['accuracy']:.1%}\n")  # fmt: skip

    def rollout(version: int) -> dict[str, Any]:
        r = admin.create_rollout(LINE, version, GROUP, POLICY, start=True)
        say("rollout", f"{r['id']}: v{r['from_version']} -> v{version} in waves"
            f" 1%,10%,50%,100%; a wave soaks {SOAK / 3600:g} h; pause above 5% failing or on"
            " a worse model")  # fmt: skip
        return r

    r1 = rollout(2)
    for _ in range(6):
        doc = admin.rollout(r1["id"])
        w = doc["wave"]
        got = fleet.step(INFERENCES)
        clock.advance(SOAK + 1)
        admin.evaluate()
        doc = admin.rollout(r1["id"])
        last = doc["events"][-1]
        why = last["reason"].split(";")[0].split(": ", 1)[-1]
        say(f"wave {w}", f"{got.outcomes.get('Ok', 0)} devices updated; +1 h; server:"
            f" {last['action']} ({why})")  # fmt: skip
        if doc["state"] != "running":
            break
    versions = fleet.versions()
    say("done", f"rollout {r1['id']} {doc['state']}: {versions[2]} of {DEVICES} devices on v2\n",
        doc["state"] == "done" and versions[2] == DEVICES)

    r2 = rollout(3)
    got = fleet.step(INFERENCES)
    admin.evaluate()
    doc = admin.rollout(r2["id"])
    say("wave 1", f"{got.outcomes.get('Ok', 0)} devices updated to v3, ran {INFERENCES}"
        " inferences each and reported")  # fmt: skip
    pause = doc["events"][-1]
    say("PAUSED", f"by the server: {pause['reason']}",
        doc["state"] == "paused" and pause["actor"] == "server" and doc["wave"] == 1)
    fleet.step(INFERENCES)
    clock.advance(SOAK + 1)
    admin.evaluate()
    versions = fleet.versions()
    say("check", f"a check and an hour later: {versions[2]} devices on v2, {versions[3]} on v3;"
        f" rollout {r2['id']} is {admin.rollout(r2['id'])['state']}",
        versions[3] == got.outcomes.get("Ok", 0) and versions[2] + versions[3] == DEVICES)
    return True
