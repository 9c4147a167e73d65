"""End-to-end demo on a simulated device running the real C++ core.

A small classifier's weights live in the device's RAM. The device keeps its
last good weights in a ModelOTA Store on a simulated NOR flash and restores
from it on any failure. The demo:

1. boots the device with a barely trained ("bad") model and measures accuracy;
2. packs the well trained ("good") model and streams it in 64-byte pieces, as a
   serial link would deliver it: accuracy goes up;
3. sends a payload corrupted in transit: refused (ChunkCrc), good weights kept;
4. replays the old bad payload: refused (Rollback);
5. drops the link half way through an update: refused (Timeout), good weights kept;
6. cuts power during an update's flash commit, reboots: old or new weights, never a mix.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from .device import Layout, RamModelDevice
from .format import crc32, pack
from .simflash import SimFlash
from .status import Status

FEATURES = 16
CLASSES = 4
FINGERPRINT = bytes.fromhex("6c696e6561722d31362d34636c617373")  # "linear-16-4class"
PIECE = 64  # bytes per read, like a UART driver's buffer


def make_data(seed: int = 0, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian classes in 16 dimensions."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, n)
    x = centers[y] + rng.normal(0, 0.9, (n, FEATURES))
    return x.astype(np.float32), y


def train(x: np.ndarray, y: np.ndarray, steps: int, seed: int = 1) -> bytes:
    """Softmax regression by gradient descent; weights as float32 bytes (W then b)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (FEATURES, CLASSES))
    b = np.zeros(CLASSES)
    onehot = np.eye(CLASSES)[y]
    for _ in range(steps):
        logits = x @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) / len(x)
        w -= 0.5 * (x.T @ grad)
        b -= 0.5 * grad.sum(axis=0)
    return w.astype(np.float32).tobytes() + b.astype(np.float32).tobytes()


def accuracy(weights: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Runs the model straight from the device's weight bytes."""
    arr = np.frombuffer(weights, dtype=np.float32)
    w = arr[: FEATURES * CLASSES].reshape(FEATURES, CLASSES)
    b = arr[FEATURES * CLASSES :]
    return float(((x @ w + b).argmax(axis=1) == y).mean())


class Board:
    """A simulated board: RAM model + ModelOTA Store on a simulated NOR flash.

    Power cuts and reboots are real for the flash: a reboot builds a new
    device over the same flash, as a board would after power-on."""

    def __init__(self, factory: bytes) -> None:
        self.factory = factory
        self.layout = Layout.plan(256, 4, len(factory), 4096)
        self.flash = SimFlash(256, self.layout.block_count, 4)
        self.boot()

    def boot(self) -> None:
        self.flash.reboot()
        self.dev = RamModelDevice(
            self.flash, self.layout, FINGERPRINT, self.factory, 1, buffer_len=256
        )
        if self.dev.boot() != Status.Ok:
            raise RuntimeError("boot failed")

    @property
    def weights(self) -> bytes:
        return bytes(self.dev.ram)

    @property
    def version(self) -> int:
        return self.dev.version

    def update(
        self,
        stream: bytes,
        label: str,
        stop_after: int | None = None,
        cut_power_at: int | None = None,
    ) -> Status:
        if cut_power_at is not None:
            self.flash.cut_power(self.flash.ops + cut_power_at, tear=True, seed=7)
        with tqdm(
            total=len(stream),
            desc=label,
            unit="B",
            unit_scale=True,
            leave=True,
            file=sys.stdout,
            ncols=78,
        ) as bar:

            def advance(done: int) -> None:
                bar.update(done - bar.n)

            # 64-byte pieces, as a UART driver would hand them over
            return self.dev.update(stream, piece=PIECE, stop_after=stop_after, progress=advance)


def run() -> int:
    x, y = make_data()
    bad = train(x, y, steps=0)
    good = train(x, y, steps=300)
    print("ModelOTA demo: the real firmware_lib C++ core, compiled natively, on a simulated device")
    print(
        f"model: linear classifier, {FEATURES}x{CLASSES} float32 weights + bias,"
        f" {len(bad)} bytes in RAM\n"
    )

    device = Board(bad)
    acc_bad = accuracy(device.weights, x, y)
    print(f"[{'boot':<8}] version {device.version}, accuracy {acc_bad:6.1%}  (barely trained)")

    ok = True

    def expect(step: str, got: Status, want: Status, weights: bytes, version: int) -> None:
        nonlocal ok
        kept = device.weights == weights and device.version == version
        acc = accuracy(device.weights, x, y)
        verdict = "as expected" if got == want and kept else "UNEXPECTED"
        ok = ok and got == want and kept
        print(
            f"[{step:<8}] status {got.name}: version {device.version}, accuracy {acc:6.1%},"
            f" weights crc32 {crc32(device.weights):#010x} ({verdict})\n"
        )

    good_payload = pack(good, fingerprint=FINGERPRINT, version=2, chunk_size=128).encode()
    print(f"[{'update':<8}] good model as version 2: {len(good_payload)}-byte payload")
    st = device.update(good_payload, "  streaming")
    expect("update", st, Status.Ok, good, 2)
    acc_good = accuracy(device.weights, x, y)

    newer = train(x, y, steps=310)
    damaged = bytearray(pack(newer, fingerprint=FINGERPRINT, version=3, chunk_size=128).encode())
    damaged[len(damaged) // 2] ^= 0x04  # one bit flipped on the wire, mid payload
    print(f"[{'corrupt':<8}] version 3 with one bit flipped in transit")
    st = device.update(bytes(damaged), "  streaming")
    expect("corrupt", st, Status.ChunkCrc, good, 2)

    old_payload = pack(bad, fingerprint=FINGERPRINT, version=1, chunk_size=128).encode()
    print(f"[{'rollback':<8}] replay of the old version 1 payload")
    st = device.update(old_payload, "  streaming")
    expect("rollback", st, Status.Rollback, good, 2)

    v3 = pack(newer, fingerprint=FINGERPRINT, version=3, chunk_size=128).encode()
    print(f"[{'dropped':<8}] version 3, link lost after 60% of the payload")
    st = device.update(v3, "  streaming", stop_after=len(v3) * 6 // 10)
    expect("dropped", st, Status.Timeout, good, 2)

    print(f"[{'cut':<8}] version 3, power lost while the update is committed to flash")
    # operation 14 of this update's 19 falls in the block-by-block rewrite
    st = device.update(v3, "  streaming", cut_power_at=14)
    print(f"[{'cut':<8}] status {st.name}: the board lost power mid-write")
    device.boot()
    kept = st == Status.StorageIo and (device.weights, device.version) in ((good, 2), (newer, 3))
    held = "the new v3" if device.version == 3 else "the good v2"
    print(
        f"[{'reboot':<8}] booted {held} weights from flash: version {device.version},"
        f" accuracy {accuracy(device.weights, x, y):6.1%}"
        f" ({'as expected' if kept else 'UNEXPECTED'})\n"
    )
    ok = ok and kept

    print(
        f"accuracy: {acc_bad:.1%} (bad, v1) -> {acc_good:.1%} (good, v2);"
        " corrupted, replayed and interrupted updates refused with the good weights kept;"
        " a power cut left a whole model"
    )
    if not ok:
        print("demo FAILED: a step did not behave as expected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
