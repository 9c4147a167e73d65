"""Serial updates over a noisy line: completions and throughput against bit error rate and baud.

A native simulated board (the real C++ link + Updater on a RAM model,
``python -m modelota.sim.board``) behind the link simulator (modelota.link.linksim: line
rate at 10 bits per byte, a round trip of --rtt, random bit errors both ways
at the given BER, fixed seeds). For each baud rate and BER, --runs pushes of a
full update (each one version up, a --size byte model), one LinkSim
connection each. After every push the board is asked (HELLO, no noise) until
its transfer is closed, and its (version, weights CRC32) must be the new
pair, the one it had, or its factory pair (a RAM board restores a failed
update from its factory image); never anything mixed.

  done   pushes that completed (RESULT OK) out of --runs
  rate   payload bytes / (seconds from opening the port to the RESULT * baud / 10),
         the mean over completed pushes: the fraction of the line rate, handshake
         and COMMIT included (pyserial's 0.3 s sleep when closing a socket is not)
  data   the same over the DATA phase only (START's ACK to the last ACK)

``--ref REF`` (a git commit, e.g. 7b08b2a, the last protocol 1 tree) also
measures that tree: its sources are extracted with ``git archive``, its native
module built, and its board and host run in subprocesses from it; then a
compatibility table pushes across the two trees (old host -> new device, new
host -> old device). ``--nagle`` adds a row per baud with TCP_NODELAY left off
on the host's socket (pyserial's socket:// default), to show what it costs.
``--windows`` prints the clean-line table of window x frame size too.

    python bench/bench_link.py [--runs 16] [--size 16384] [--rtt 0.02] [--ref 7b08b2a]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from modelota.link.linksim import LinkSim
from modelota.link.ports import open_port
from modelota.link.push import Session
from modelota.sim.board import demo_model

ROOT = Path(__file__).resolve().parent.parent
BERS = (0.0, 1e-5, 1e-4, 2e-4, 5e-4)
BAUDS = (115200, 1_000_000)

# Runs in a subprocess with the tree under test on its path: reads one job per
# line (JSON), pushes, answers one line (JSON). Uses only the API both
# protocol versions have: push(url, payload, baud=...), pack, demo_model.
DRIVER = r"""
import json, sys
from modelota.format.payload import pack
from modelota.sim.board import demo_model
from modelota.status import CliError
import modelota.link.push as push_mod
import modelota.link.ports as ports_mod

if len(sys.argv) > 1 and sys.argv[1] == "nagle" and hasattr(ports_mod, "set_nodelay"):
    ports_mod.set_nodelay = lambda port: None
print(json.dumps({"module": push_mod.__file__}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    weights, fp = demo_model(job["size"])
    v = job["version"]
    new = bytes((b * 7 + v) % 256 for b in weights)
    kw = {"format_version": job["format"]} if "format" in job else {}
    payload = pack(new, fingerprint=fp, version=v, chunk_size=1024, **kw).encode()
    try:
        r = push_mod.push(job["url"], payload, baud=job["baud"])
        out = {"ok": True, "seconds": r.seconds, "data": r.data_seconds, "bytes": len(payload)}
    except CliError as e:
        out = {"ok": False, "error": str(e), "bytes": len(payload)}
    print(json.dumps(out), flush=True)
"""


def weights_of(size: int, version: int) -> bytes:
    """What the driver pushes as ``version`` (version 1: the factory weights)."""
    weights, _ = demo_model(size)
    return weights if version == 1 else bytes((b * 7 + version) % 256 for b in weights)


@dataclass
class Tree:
    """Where the code under test comes from: this checkout, or a built git ref."""

    name: str
    env: dict[str, str]

    def popen(self, args: list[str], stdin: bool = False) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args],
            env=self.env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )


def this_tree() -> Tree:
    return Tree("this tree", dict(os.environ))


def build_ref(ref: str, into: Path) -> Tree:
    """Extracts ``ref`` with git archive and builds its native module in place."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
    # the old build script writes modelota/_native*.so under the current directory
    subprocess.run([sys.executable, str(into / "sim" / "build_native.py")],
                   cwd=into / "host_tools", check=True, capture_output=True)  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = str(into / "host_tools")
    env.pop("MODELOTA_NATIVE", None)
    return Tree(ref, env)


class Driver:
    def __init__(self, tree: Tree, nagle: bool = False) -> None:
        self.proc = tree.popen(["-c", DRIVER, *(["nagle"] if nagle else [])], stdin=True)
        assert self.proc.stdout is not None
        self.stdout: IO[str] = self.proc.stdout
        self.module = json.loads(self.stdout.readline())["module"]

    def push(self, **job: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.stdout.readline()
        if not line:
            raise RuntimeError("the push driver died")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def board(tree: Tree, size: int) -> Iterator[tuple[str, int]]:
    proc = tree.popen(["-m", "modelota.sim.board", "--port", "0", "--size", str(size)])
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # socket://127.0.0.1:PORT
        if not url.startswith("socket://"):
            raise RuntimeError(f"the board of {tree.name} did not start")
        host, port = url[len("socket://") :].rsplit(":", 1)
        yield host, int(port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def settled_info(addr: tuple[str, int], limit_s: float = 15.0) -> Any:
    """The board's INFO once it has no open transfer (straight to it, no noise)."""
    end = time.monotonic() + limit_s
    while True:
        port = open_port(f"socket://{addr[0]}:{addr[1]}")
        try:
            info = Session(port).hello(1.0, 3)
        finally:
            port.close()
        if info.state == 0 or time.monotonic() > end:
            return info


@dataclass
class Cell:
    runs: int = 0
    done: int = 0
    rates: list[float] = field(default_factory=list)
    data_rates: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        if not self.rates:
            return f"{self.done:>2}/{self.runs:<2}     -     -"
        rate = sum(self.rates) / len(self.rates)
        data = sum(self.data_rates) / len(self.data_rates)
        return f"{self.done:>2}/{self.runs:<2} {rate:5.0%} {data:5.0%}"


def series(host: Tree, dev: Tree, *, size: int, baud: int, rtt: float, ber: float, runs: int,
           nagle: bool = False, fmt: int | None = None) -> Cell:  # fmt: skip
    """``runs`` pushes from ``host``'s code to a board running ``dev``'s; ``fmt``: the
    payload format the host packs (its packer's default when None)."""
    cell = Cell()
    driver = Driver(host, nagle)
    try:
        with board(dev, size) as addr:
            version = 1
            for i in range(runs):
                v = version + 1
                with LinkSim(addr, baud=baud, rtt=rtt, ber=ber, seed=1000 + i, lifetime=600) as sim:
                    job = {"format": fmt} if fmt is not None else {}
                    got = driver.push(url=sim.url, size=size, version=v, baud=baud, **job)
                info = settled_info(addr)
                allowed = {(u, zlib.crc32(weights_of(size, u))) for u in (1, version, v)}
                if (info.version, info.weights_crc) not in allowed or info.state != 0:
                    raise SystemExit(f"MIXED WEIGHTS after push {i} ({host.name} -> {dev.name})")
                if got["ok"] and info.version != v:
                    raise SystemExit(f"push {i} reported success, the board has the old weights")
                version = info.version
                cell.runs += 1
                if got["ok"]:
                    cell.done += 1
                    cell.rates.append(got["bytes"] * 10 / baud / got["seconds"])
                    cell.data_rates.append(got["bytes"] * 10 / baud / got["data"])
                else:
                    cell.errors.append(got["error"])
    finally:
        driver.close()
    return cell


def payload_sizes(size: int) -> str:
    """This tree's payload bytes of one pushed update, per format."""
    from modelota.format.payload import pack

    _, fp = demo_model(size)
    sizes = [len(pack(weights_of(size, 2), fingerprint=fp, version=2, chunk_size=1024,
                      format_version=f).encode()) for f in (2, 1)]  # fmt: skip
    return f"payload {sizes[0]} B in format v2, {sizes[1]} B in v1"


def windows_table(size: int, baud: int, rtt: float) -> None:
    """The clean-line table: window x DATA frame size (this tree, in process)."""
    from modelota.format.payload import pack
    from modelota.link.push import push
    from modelota.sim.board import SimBoard

    frames, windows = (128, 256, 1024), (1, 2, 4, 8)
    print(f"\nclean line, {baud} baud, RTT {rtt * 1000:.0f} ms, a {size}-byte model")
    print("window " + "".join(f"{f:>10}B" for f in frames))
    for w in windows:
        effs = []
        for f in frames:
            weights, fp = demo_model(size)
            payload = pack(weights_of(size, 2), fingerprint=fp, version=2, chunk_size=1024).encode()
            b = SimBoard(weights, fingerprint=fp, version=1, frame_data=f, window=w)
            port = b.serve_tcp()
            try:
                with LinkSim(("127.0.0.1", port), baud=baud, rtt=rtt) as sim:
                    r = push(sim.url, payload, window=w, baud=baud)
                effs.append(len(payload) * 10 / baud / r.seconds)
            finally:
                b.stop()
        print(f"{w:>6} " + "".join(f"{e:>11.3f}" for e in effs), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--size", type=int, default=16384, help="weight bytes of the model")
    ap.add_argument("--rtt", type=float, default=0.02)
    ap.add_argument("--ref", help="also measure this git commit (e.g. the last protocol 1 tree)")
    ap.add_argument("--nagle", action="store_true", help="add rows with TCP_NODELAY off")
    ap.add_argument("--windows", action="store_true", help="also the clean-line window table")
    a = ap.parse_args()

    new = this_tree()
    tmp = Path(tempfile.mkdtemp(prefix="bench-link-"))
    try:
        old = build_ref(a.ref, tmp / "ref") if a.ref else None
        print(f"a {a.size}-byte model ({payload_sizes(a.size)}),"
              f" RTT {a.rtt * 1000:.0f} ms, {a.runs} pushes per cell"
              f" (seeds 1000..{999 + a.runs}); cell: completed/runs, rate, data-phase rate"
              " (fractions of the line rate)")  # fmt: skip
        cols = [new.name] + ([old.name] if old else [])
        print(f"{'baud':>8} {'BER':>7}  " + "".join(f"{c:>20}" for c in cols), flush=True)
        goal = True
        for baud in BAUDS:
            for ber in BERS:
                cells = [series(new, new, size=a.size, baud=baud, rtt=a.rtt, ber=ber, runs=a.runs)]
                if old:
                    cells.append(series(old, old, size=a.size, baud=baud, rtt=a.rtt, ber=ber,
                                        runs=a.runs))  # fmt: skip
                if ber in (1e-4, 2e-4) and cells[0].done < a.runs - a.runs // 16:
                    goal = False
                print(f"{baud:>8} {ber:>7g}  " + "".join(f"{c.text():>20}" for c in cells),
                      flush=True)  # fmt: skip
            if a.nagle:
                c = series(new, new, size=a.size, baud=baud, rtt=a.rtt, ber=0.0, runs=a.runs,
                           nagle=True)  # fmt: skip
                print(f"{baud:>8} {0:>7g}  {c.text():>20}  (TCP_NODELAY off on the host)")
        if old:
            print(
                f"\ncompatibility at BER 1e-4, 115200 baud ({a.runs} pushes each;"
                " format v1 payloads: a version 1 device reads no other)"
            )
            for host, dev in ((old, new), (new, old)):
                c = series(host, dev, size=a.size, baud=115200, rtt=a.rtt, ber=1e-4, runs=a.runs,
                           fmt=1 if dev is old else None)  # fmt: skip
                print(f"  host {host.name:>9} -> device {dev.name:>9}: {c.text()}", flush=True)
        if a.windows:
            windows_table(65536, 115200, a.rtt)
        verdict = "met" if goal else "NOT met"
        print(f"goal (>= 15/16 complete at 1e-4 and 2e-4, both bauds): {verdict}")
        return 0 if goal else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
