"""End-to-end fleet demo (the README's first command).

A real ``modelota serve`` (aiohttp + SQLite) listens on loopback; a simulated
board (the real firmware_lib C++ core through cffi, model in RAM, last good
weights in a Store on simulated NOR flash) polls it over real HTTP through a
proxy that can drop or corrupt the connection. Accuracy is measured by running
the board's bytes in the TFLM interpreter.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from ..fleet.client import AdminClient, FleetClientError, poll
from ..fleet.server import spawn
from ..format.payload import crc32
from ..models.tflite import pack_tflite
from ..sim.faultproxy import Fault, FaultProxy
from ..status import Status
from . import digits
from .local import CHUNK, Board

DEVICE = "24:6F:28:AA:01:02"  # devices are named by their MAC address
TOKEN = "demo-admin-token"
LINE = "digits"


def run() -> int:
    x_tr, y_tr, x_te, y_te = digits.load(0)
    bad = digits.export(digits.train(x_tr, y_tr, digits.BAD_STEPS, 0), "digits: barely trained")
    good = digits.export(digits.train(x_tr, y_tr, digits.GOOD_STEPS, 0), "digits: trained")

    def acc(model: bytes) -> float:
        return digits.tflm_accuracy(model, x_te, y_te)

    ok = True

    def step(name: str, text: str, passed: bool = True) -> None:
        nonlocal ok
        ok = ok and passed
        mark = "" if passed else "   <-- UNEXPECTED"
        print(f"[{name:<9}] {text}{mark}")

    print("ModelOTA fleet demo: `modelota serve` (aiohttp + SQLite) on loopback, and a simulated")
    print("board running the real firmware_lib C++ core that polls it over HTTP.")
    print(
        f"model: digits classifier 64-32-10, a {len(bad)}-byte .tflite in the board's RAM;"
        f" accuracy measured in TFLM on {len(y_te)} held-out digits\n"
    )
    v1 = pack_tflite(bad, bad, version=1, chunk_size=CHUNK).encode()
    v2 = pack_tflite(bad, good, version=2, chunk_size=CHUNK).encode()
    board = Board(bad, max_payload=2 * len(v2))
    with tempfile.TemporaryDirectory(prefix="modelota-demo-") as tmp:
        server, url = spawn(Path(tmp), TOKEN)  # `modelota serve` as its own process
        try:
            host, port = url.removeprefix("http://").split(":")
            with FaultProxy((host, int(port))) as proxy:
                ok = _scenario(url, proxy, board, v1, v2, bad, good, acc, step) and ok
        finally:
            server.terminate()
            server.wait(10)
    if not ok:
        print("demo FAILED: a step did not behave as expected", file=sys.stderr)
        return 1
    return 0


def _scenario(url, proxy, board, v1, v2, bad, good, acc, step) -> bool:  # type: ignore[no-untyped-def]
    admin = AdminClient(url, TOKEN)
    step("server", f"`modelota serve` listens on {url}")
    step("server", f"the board reaches it through a proxy that can drop or corrupt: {proxy.url}")
    r1 = admin.upload(LINE, v1)
    step("upload", f"{LINE} v1 (barely trained): {r1['size']} bytes, id {r1['sha256'][:12]}...")
    r2 = admin.upload(LINE, v2)
    step("upload", f"{LINE} v2 (well trained):   {r2['size']} bytes, id {r2['sha256'][:12]}...")
    secret = admin.register(DEVICE, group="lab")["secret"]  # the board signs every request
    admin.assign("group", "lab", LINE, 2)
    step("assign", f"device {DEVICE} joins group 'lab' (its secret: {secret[:8]}...);"
         f" group 'lab' -> {LINE} v2")  # fmt: skip

    acc_bad = acc(board.weights)
    step("boot", f"board runs v{board.version}, accuracy {acc_bad:.1%} (barely trained)\n")

    def bar(label: str) -> tuple[tqdm, object]:  # type: ignore[type-arg]
        b = tqdm(total=len(v2), desc=label, unit="B", unit_scale=True, file=sys.stdout, ncols=78)

        def progress(done: int, total: int) -> None:
            b.total = total
            b.update(done - b.n)

        return b, progress

    # 1. a transfer corrupted on the wire: the Updater refuses it, v1 stays
    proxy.plan.append(Fault(flip_at=len(v2) // 2))
    b, progress = bar("  download")
    res = poll(board.dev, proxy.url, DEVICE, progress, secret=secret)  # type: ignore[arg-type]
    b.close()
    step(
        "corrupt",
        f"one bit flipped on the wire: {res.what},"
        f" board still v{board.version}, accuracy {acc(board.weights):.1%}"
        f" (crc32 {crc32(board.weights):#010x} = v1's {crc32(bad):#010x})\n",
        res.status == Status.ChunkCrc and board.weights == bad and board.version == 1,
    )

    # 2. the connection drops at 40%: the download resumes with a Range request
    proxy.plan.append(Fault(cut_at=len(v2) * 4 // 10))
    b, progress = bar("  download")
    res = poll(board.dev, proxy.url, DEVICE, progress, secret=secret)  # type: ignore[arg-type]
    b.close()
    ranges = [r.split(b"\r\n") for r in proxy.requests if b"Range: bytes=" in r]
    rng = next((x.decode() for r in ranges for x in r if x.startswith(b"Range")), "none")
    acc_good = acc(board.weights)
    step(
        "update",
        f"link dropped at 40%, resumed with '{rng}' ({res.attempts} connections):"
        f" {res.what}, board runs v{board.version},"
        f" accuracy {acc_bad:.1%} -> {acc_good:.1%}",
        res.status == Status.Ok and board.version == 2 and res.attempts == 2,
    )
    res = poll(board.dev, proxy.url, DEVICE, secret=secret)  # type: ignore[arg-type]
    step("poll", f"next check: {res.outcome} (HTTP 204, nothing downloaded)\n",
         res.outcome == "current")  # fmt: skip

    # 3. a corrupted upload never reaches the fleet
    damaged = bytearray(pack_tflite(bad, good, version=3, chunk_size=2 * CHUNK).encode())
    damaged[len(damaged) // 3] ^= 0x10  # one bit rotted on the way to the server
    try:
        admin.upload(LINE, bytes(damaged))
        step("upload", "a corrupted upload was accepted", False)
    except FleetClientError as e:
        step("upload", f"v3 with one bit flipped, uploaded: refused, HTTP {e.http} {e.name}")

    # 4. rollback: the server refuses an older version, the board an older payload
    replay = pack_tflite(bad, bad, version=1, chunk_size=CHUNK // 2).encode()
    try:
        admin.upload(LINE, replay)
        step("rollback", "an older version was accepted", False)
    except FleetClientError as e:
        step("rollback", f"old model re-uploaded as v1 after v2: HTTP {e.http} {e.name}")
    admin.assign("device", DEVICE, LINE, 1)
    res = poll(board.dev, proxy.url, DEVICE, secret=secret)  # type: ignore[arg-type]
    step(
        "rollback",
        f"device assigned back to v1: the server answers '{res.outcome}' (no downgrade)",
        res.outcome == "current" and board.version == 2,
    )
    st = board.update(v1, "  pushed v1")
    step(
        "rollback",
        f"v1 pushed to the board anyway: {st.name}, board keeps v{board.version}"
        f" at {acc(board.weights):.1%}\n",
        st == Status.Rollback and board.version == 2,
    )

    # 5. reboot: the good model comes back from flash
    board.boot()
    step(
        "reboot",
        f"board rebooted: runs v{board.version} from {board.dev.booted_from},"
        f" accuracy {acc(board.weights):.1%}",
        board.version == 2 and board.dev.booted_from == "store",
    )
    reports = admin.reports(DEVICE)
    shown = ", ".join(f"{r['status_name']}" for r in reversed(reports))
    step("reports", f"the server recorded the board's reports: {shown}")
    print(
        f"\naccuracy: {acc_bad:.1%} (v1) -> {acc_good:.1%} (v2) over HTTP; corrupted transfer"
        " and upload refused, rollback refused, dropped download resumed"
    )
    return True
