"""The ``modelota`` command as a user runs it: pack, inspect, fingerprint, and its errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from modelota import Status
from modelota.models.raw import raw_fingerprint
from modelota.sim.native import Updater
from payloads import modelota


def test_pack_then_device_applies_it(tmp_path: Path) -> None:
    rnd = random.Random(1)
    old, new = rnd.randbytes(10_000), rnd.randbytes(10_000)
    (tmp_path / "new.bin").write_bytes(new)
    out = tmp_path / "u.mota"
    r = modelota(
        "pack",
        tmp_path / "new.bin",
        "-o",
        out,
        "--version",
        "7",
        "--model",
        "kws",
        "--chunk-size",
        "700",
    )
    assert r.returncode == 0, r.stderr
    assert "full payload v7" in r.stdout and "15 chunk(s)" in r.stdout
    dev = Updater(
        bytearray(old),
        fingerprint=raw_fingerprint("kws", 10_000),
        current_version=6,
        buffer_len=700,
    )
    assert dev.apply(out.read_bytes()) == Status.Ok
    assert bytes(dev.weights) == new


def test_npy_files_are_concatenated_in_order(tmp_path: Path) -> None:
    a = np.arange(100, dtype=np.float32)
    b = np.arange(-50, 50, dtype=np.int8).reshape(10, 10)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "u.mota"
    r = modelota(
        "pack",
        tmp_path / "a.npy",
        tmp_path / "b.npy",
        "-o",
        out,
        "--version",
        "2",
        "--fingerprint",
        "ab" * 16,
    )
    assert r.returncode == 0, r.stderr
    dev = Updater(bytearray(500), fingerprint=bytes.fromhex("ab" * 16), current_version=1)
    assert dev.apply(out.read_bytes()) == Status.Ok
    assert bytes(dev.weights) == a.tobytes() + b.tobytes()


def test_delta_reports_savings_and_inspect_shows_segments(tmp_path: Path) -> None:
    rnd = random.Random(2)
    base = rnd.randbytes(50_000)
    new = bytearray(base)
    new[1000:1010] = rnd.randbytes(10)
    new[40_000:40_300] = rnd.randbytes(300)
    (tmp_path / "base.bin").write_bytes(base)
    (tmp_path / "new.bin").write_bytes(bytes(new))
    out = tmp_path / "d.mota"
    r = modelota(
        "pack",
        tmp_path / "new.bin",
        "-o",
        out,
        "--version",
        "3",
        "--model",
        "m",
        "--base",
        tmp_path / "base.bin",
        "--delta",
        "--base-version",
        "2",
    )
    assert r.returncode == 0, r.stderr
    assert "delta payload v3" in r.stdout and "delta saves" in r.stdout
    r = modelota("inspect", out, "--json", "--weights", tmp_path / "new.bin")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "delta" and info["base_version"] == 2
    assert info["segments"] == [[1000, 10], [40_000, 300]]
    assert info["weights_check"] == "match"
    assert info["size"] == out.stat().st_size
    r = modelota("inspect", out)
    assert r.returncode == 0 and "[1000, 1010), [40000, 40300)" in r.stdout


def test_inspect_refuses_a_corrupted_payload_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(range(256)) * 8)
    out = tmp_path / "u.mota"
    assert (
        modelota("pack", tmp_path / "w.bin", "-o", out, "--version", "1", "--model", "m").returncode
        == 0
    )
    raw = bytearray(out.read_bytes())
    raw[200] ^= 0x10
    out.write_bytes(bytes(raw))
    r = modelota("inspect", out)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelota: error:") and "ChunkCrc" in lines[0]


def test_inspect_weights_mismatch_fails(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\x01" * 300)
    (tmp_path / "x.bin").write_bytes(b"\x02" * 300)
    out = tmp_path / "u.mota"
    assert (
        modelota("pack", tmp_path / "w.bin", "-o", out, "--version", "1", "--model", "m").returncode
        == 0
    )
    r = modelota("inspect", out, "--weights", tmp_path / "x.bin")
    assert r.returncode == 1 and "do not match" in r.stderr


def test_bad_usage_gives_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "small.bin").write_bytes(b"\x00" * 9)

    def pack_w(*extra: str | Path) -> list[str | Path]:
        return ["pack", tmp_path / "w.bin", "-o", tmp_path / "o", *extra]

    cases: list[tuple[list[str | Path], str]] = [
        (["pack", tmp_path / "nope.bin", "-o", tmp_path / "o", "--version", "1", "--model", "m"],
         "no such file"),
        (pack_w("--version", "1"), "--model"),
        (pack_w("--version", "1", "--fingerprint", "abcd"), "16 bytes"),
        (pack_w("--version", "2", "--model", "m", "--base", tmp_path / "small.bin",
                "--delta", "--base-version", "1"), "not the same model"),
        (pack_w("--version", "2", "--model", "m", "--base", tmp_path / "w.bin", "--delta"),
         "--delta needs --base-version"),
        (pack_w("--version", "2", "--model", "m", "--base", tmp_path / "w.bin",
                "--base-version", "1"), "add --delta"),
        (pack_w("--version", "2", "--model", "m", "--delta", "--base-version", "1"),
         "--delta needs --base"),
        (["inspect", tmp_path / "w.bin"], "BadMagic"),
        (["inspect", tmp_path / "nope.mota"], "no such file"),
    ]  # fmt: skip
    for args, needle in cases:
        r = modelota(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_fingerprint_command_prints_the_c_array() -> None:
    r = modelota("fingerprint", "--model", "kws", "--size", "1234")
    assert r.returncode == 0
    fp = raw_fingerprint("kws", 1234)
    assert r.stdout.splitlines()[0] == fp.hex()
    assert f"0x{fp[0]:02x}, 0x{fp[1]:02x}" in r.stdout
