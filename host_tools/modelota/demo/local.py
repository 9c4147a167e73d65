"""End-to-end demo on a simulated board running the real C++ core.

A digits classifier (scikit-learn's bundled 8x8 digits, 64-32-10, exported to
TFLite) runs from the board's RAM: the interpreter reads its weights straight
from the .tflite flatbuffer held there. The board keeps its last good model in
a ModelOTA Store on a simulated NOR flash and restores from it on any failure.
Accuracy is measured by running the board's bytes in the TFLM interpreter.

1. boot with the barely trained ("bad") model;
2. stream the well trained ("good") weights in 64-byte pieces, as a serial
   link would deliver them: accuracy goes up;
3. a payload with one bit flipped in transit: refused (ChunkCrc), good kept;
4. a replay of the old bad model: refused (Rollback);
5. the link drops half way through an update: refused (Timeout), good kept;
6. power is cut while an update is written to flash; the reboot finds a whole
   model (old or new, never a mix).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from ..format.payload import crc32
from ..models.tflite import pack_tflite, read_tflite, rebase
from ..sim.device import Layout, RamModelDevice
from ..sim.flash import SimFlash
from ..status import Status
from . import digits

PIECE = 64  # bytes per read, like a UART driver's buffer
CHUNK = 256  # payload chunk size: the board lends a 256-byte chunk buffer


class Board:
    """A simulated board: RAM model + ModelOTA Store on a simulated NOR flash.

    A reboot builds a new device over the same flash, as a board would after
    power-on: only the flash survives."""

    def __init__(self, factory: bytes, max_payload: int) -> None:
        self.factory = factory
        self.fingerprint = read_tflite(factory).fingerprint()
        self.layout = Layout.plan(256, 4, len(factory), max_payload)
        self.flash = SimFlash(256, self.layout.block_count, 4)
        self.boot()

    def boot(self) -> None:
        self.flash.reboot()
        self.dev = RamModelDevice(
            self.flash, self.layout, self.fingerprint, self.factory, 1, buffer_len=CHUNK
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
        self, stream: bytes, label: str, stop_after: int | None = None, cut_at: int | None = None
    ) -> Status:
        if cut_at is not None:
            self.flash.cut_power(self.flash.ops + cut_at, tear=True, seed=7)
        with tqdm(total=len(stream), desc=label, unit="B", unit_scale=True, leave=True,
                  file=sys.stdout, ncols=78) as bar:  # fmt: skip

            def advance(done: int) -> None:
                bar.update(done - bar.n)

            return self.dev.update(stream, piece=PIECE, stop_after=stop_after, progress=advance)

    def ops_of(self, stream: bytes) -> int:
        """Storage operations a clean update takes (measured, then undone)."""
        before, start = self.flash.data, self.flash.ops
        dev = RamModelDevice(self.flash, self.layout, self.fingerprint, self.factory, 1)
        dev.boot()
        dev.update(stream)
        n = self.flash.ops - start
        self.flash.load(0, before)
        self.boot()
        return n


def run() -> int:
    x_tr, y_tr, x_te, y_te = digits.load(0)
    bad = digits.export(digits.train(x_tr, y_tr, digits.BAD_STEPS, 0), "digits: barely trained")
    good = digits.export(digits.train(x_tr, y_tr, digits.GOOD_STEPS, 0), "digits: trained")
    newer = digits.export(digits.train(x_tr, y_tr, digits.GOOD_STEPS + 40, 0), "digits: v3")

    def acc(model: bytes) -> float:
        return digits.tflm_accuracy(model, x_te, y_te)

    print("ModelOTA demo: the real firmware_lib C++ core, compiled natively, on a simulated board")
    print(
        f"model: digits classifier 64-32-10 as a {len(bad)}-byte .tflite in RAM; accuracy is"
        f" measured in the TFLM interpreter on {len(y_te)} held-out digits\n"
    )
    v2 = pack_tflite(bad, good, version=2, chunk_size=CHUNK).encode()
    board = Board(bad, max_payload=2 * len(v2))
    acc_bad = acc(board.weights)
    print(f"[{'boot':<8}] version {board.version}, accuracy {acc_bad:6.1%}  (barely trained)")

    ok = True

    def expect(step: str, got: Status, want: Status, weights: bytes, version: int) -> None:
        nonlocal ok
        kept = board.weights == weights and board.version == version
        verdict = "as expected" if got == want and kept else "UNEXPECTED"
        ok = ok and got == want and kept
        print(
            f"[{step:<8}] status {got.name}: version {board.version},"
            f" accuracy {acc(board.weights):6.1%},"
            f" model crc32 {crc32(board.weights):#010x} ({verdict})\n"
        )

    print(f"[{'update':<8}] good weights as version 2: {len(v2)}-byte payload")
    st = board.update(v2, "  streaming")
    good_here = board.weights
    expect("update", st, Status.Ok, good_here, 2)
    acc_good = acc(good_here)

    v3 = pack_tflite(good_here, newer, version=3, chunk_size=CHUNK).encode()
    damaged = bytearray(v3)
    damaged[len(damaged) // 2] ^= 0x04  # one bit flipped on the wire, mid payload
    print(f"[{'corrupt':<8}] version 3 with one bit flipped in transit")
    expect("corrupt", board.update(bytes(damaged), "  streaming"), Status.ChunkCrc, good_here, 2)

    replay = pack_tflite(good_here, bad, version=1, chunk_size=CHUNK).encode()
    print(f"[{'rollback':<8}] replay of the old bad model as version 1")
    expect("rollback", board.update(replay, "  streaming"), Status.Rollback, good_here, 2)

    print(f"[{'dropped':<8}] version 3, link lost after 60% of the payload")
    st = board.update(v3, "  streaming", stop_after=len(v3) * 6 // 10)
    expect("dropped", st, Status.Timeout, good_here, 2)

    n = board.ops_of(v3)
    print(f"[{'cut':<8}] version 3, power lost at storage operation {n * 9 // 10} of {n}")
    st = board.update(v3, "  streaming", cut_at=n * 9 // 10)
    print(f"[{'cut':<8}] status {st.name}: the board lost power mid-write; rebooting")
    board.boot()
    # exactly the old bytes, or exactly the old file with the new weights laid in
    whole = {2: good_here, 3: rebase(read_tflite(good_here), read_tflite(newer))}
    held = "the new v3" if board.version == 3 else "the good v2"
    kept = st == Status.StorageIo and board.weights == whole.get(board.version)
    print(
        f"[{'reboot':<8}] booted {held} model from flash: version {board.version},"
        f" accuracy {acc(board.weights):6.1%} ({'as expected' if kept else 'UNEXPECTED'})\n"
    )
    ok = ok and kept

    print(
        f"accuracy: {acc_bad:.1%} (bad, v1) -> {acc_good:.1%} (good, v2);"
        " corrupted, replayed and interrupted updates refused with the good model kept;"
        " a power cut left a whole model"
    )
    if not ok:
        print("demo FAILED: a step did not behave as expected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
