"""The sample logger's streaming writer on its own, compiled with the strict
device flags plus ASan and UBSan: the write callback fails at every piece of
a frame (the window stays ready and a retry sends the same frame), pieces are
never above 32 bytes, and the frames it writes parse on the host."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from modelota.collect import parse_window

ROOT = Path(__file__).resolve().parent.parent
GXX = shutil.which("g++")

DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "modelota/samples.h"

static uint8_t out[4096];
static uint32_t out_len, pieces, max_piece, fail_at;

static int sink(void*, const uint8_t* d, uint32_t n) {
    if (pieces++ == fail_at) return -1;
    if (n > max_piece) max_piece = n;
    memcpy(out + out_len, d, n);
    out_len += n;
    return 0;
}

static void hex(const uint8_t* p, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) printf("%02x", p[i]);
    printf("\n");
}

int main() {
    static const modelota_sensor sensors[3] = {{"accX", "m/s2"}, {"accY", "m/s2"}, {"t", "C"}};
    static float ring[3 * 5];
    modelota_samples_config c;
    memset(&c, 0, sizeof(c));
    c.sensors = sensors; c.sensor_count = 3; c.window = 5; c.hop = 3;
    c.interval_ms = 12.5f; c.buffer = ring; c.buffer_len = 15;
    modelota_samples s;
    if (modelota_samples_init(&s, &c) != MODELOTA_OK) return 2;
    if (modelota_samples_write(&s, sink, 0) != MODELOTA_BAD_STATE) return 3;
    uint32_t row_no = 0;
    for (int w = 0; w < 4; ++w) {
        while (!modelota_samples_ready(&s)) {
            float row[3] = {(float)row_no, -(float)row_no / 4.0f, 0.5f * (float)w};
            row_no++;
            modelota_samples_push(&s, row, 3);
        }
        uint32_t frame_len = modelota_samples_frame_len(&s);
        modelota_samples copy = s;
        uint8_t expect[4096];
        if (modelota_samples_encode(&copy, expect, sizeof(expect)) != (int32_t)frame_len) return 4;
        for (fail_at = 0;; ++fail_at) {  /* fail at every piece, then succeed */
            out_len = pieces = 0;
            int st = modelota_samples_write(&s, sink, 0);
            if (st == MODELOTA_OK) break;
            if (st != MODELOTA_STORAGE_IO || !modelota_samples_ready(&s)) return 5;
            if (modelota_samples_seq(&s) != (uint32_t)w) return 6;
        }
        if (out_len != frame_len || memcmp(out, expect, frame_len) != 0) return 7;
        printf("pieces %u failures %u\n", pieces, fail_at);
        hex(out, out_len);
    }
    printf("max_piece %u dropped %u\n", max_piece, modelota_samples_dropped(&s));
    return 0;
}
"""


@pytest.mark.skipif(GXX is None, reason="g++ is not installed")
def test_writer_survives_a_failing_callback_at_every_piece(tmp_path: Path) -> None:
    src = tmp_path / "driver.cpp"
    src.write_text(DRIVER)
    exe = tmp_path / "driver"
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-fno-exceptions"]
    flags += ["-fno-rtti", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
    cmd = [str(GXX), *flags, f"-I{ROOT / 'firmware_lib'}", str(src),
           str(ROOT / "firmware_lib" / "modelota" / "samples.cpp"),
           str(ROOT / "firmware_lib" / "modelota" / "crc32.cpp"), "-o", str(exe)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "asan" in proc.stderr.lower():
        pytest.skip(f"no sanitizer runtime: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)
    lines = run.stdout.splitlines()
    frames = [bytes.fromhex(ln) for ln in lines[1::2] if not ln.startswith(("pieces", "max"))]
    assert len(frames) == 4
    windows = [parse_window(f) for f in frames]
    # hop 3 over a window of 5: starts at rows 0, 3, 6, 9
    assert [w.first_sample for w in windows] == [0, 3, 6, 9]
    assert [w.seq for w in windows] == [0, 1, 2, 3]
    assert [r[0] for r in windows[1].values] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert windows[0].interval_ms == 12.5
    for ln in lines[0::2][:4]:
        pieces, failures = int(ln.split()[1]), int(ln.split()[3])
        assert failures == pieces >= 10  # the write failed once at each piece
    assert lines[-1] == "max_piece 32 dropped 0"
