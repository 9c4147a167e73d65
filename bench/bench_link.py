"""Serial update throughput as a fraction of line rate.

A native simulated board (the real C++ link + Updater) behind the link
simulator at 115200 baud (10 bits per byte) with a 20 ms round trip; the
host pushes a 64 KiB full payload for each window size and DATA frame size.
Efficiency = payload bytes / (elapsed seconds * baud / 10), elapsed from
opening the port to the device's RESULT (handshake and COMMIT included).

    python bench/bench_link.py [--baud 115200] [--rtt 0.02] [--size 65536]
"""

from __future__ import annotations

import argparse

from modelota.format.payload import pack
from modelota.link.linksim import LinkSim
from modelota.link.push import push
from modelota.sim.board import SimBoard, demo_model


def run(size: int, baud: int, rtt: float, window: int, frame: int) -> float:
    weights, fp = demo_model(size)
    new = bytes((b * 7 + 3) % 256 for b in weights)
    payload = pack(new, fingerprint=fp, version=2, chunk_size=1024).encode()
    board = SimBoard(weights, fingerprint=fp, version=1, frame_data=frame, window=window)
    port = board.serve_tcp()
    try:
        with LinkSim(("127.0.0.1", port), baud=baud, rtt=rtt) as sim:
            r = push(sim.url, payload, window=window, baud=baud)
        # pyserial's socket close sleeps 0.3 s after the RESULT; r.seconds stops before it
        return len(payload) * 10 / baud / r.seconds
    finally:
        board.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--rtt", type=float, default=0.02)
    ap.add_argument("--size", type=int, default=65536)
    a = ap.parse_args()
    frames = (128, 256, 1024)
    windows = (1, 2, 4, 8)
    print(f"line {a.baud} baud, RTT {a.rtt * 1000:.0f} ms, payload of a {a.size}-byte model")
    print("window " + "".join(f"{f:>10}B" for f in frames))
    best = 0.0
    for w in windows:
        effs = [run(a.size, a.baud, a.rtt, w, f) for f in frames]
        best = max(best, *effs)
        print(f"{w:>6} " + "".join(f"{e:>11.3f}" for e in effs), flush=True)
    print(f"best efficiency {best:.3f} (goal 0.95)")
    return 0 if best >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
