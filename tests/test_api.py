"""The Python API a notebook uses (docs/API.md): ``modelota.pack``, ``inspect``,
``fingerprint`` and ``simulate`` take what a user has at hand (bytes, str and
pathlib paths, numpy arrays, hex strings), and simulated devices report the
state the native C++ core left them in."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import modelota
from modelota import Device, Status, apply_reference
from modelota.models.raw import raw_fingerprint
from payloads import modelota as run_cli
from tflite_builder import Arch, pair


def test_pack_takes_a_name_a_hex_fingerprint_arrays_and_paths(tmp_path: Path) -> None:
    w = np.arange(256, dtype=np.float32)
    fp = raw_fingerprint("kws", w.nbytes)
    by_name = modelota.pack(w, version=2, model="kws").encode()
    assert by_name == modelota.pack(w.tobytes(), version=2, fingerprint=fp).encode()
    as_hex = modelota.pack(bytearray(w.tobytes()), version=2, fingerprint=fp.hex())
    assert as_hex.encode() == by_name
    np.save(tmp_path / "w.npy", w)
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    assert modelota.pack(str(tmp_path / "w.npy"), version=2, model="kws").encode() == by_name
    assert modelota.pack(tmp_path / "w.bin", version=2, model="kws").encode() == by_name
    assert bytes(modelota.pack(w, version=2, model="kws")) == by_name


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "give fingerprint="),
        ({"model": "kws", "fingerprint": bytes(16)}, "give fingerprint="),
        ({"fingerprint": "zz"}, "not hex"),
        ({"fingerprint": "ab"}, "16 bytes"),
        ({"model": "kws", "base": b"\0" * 8}, "base_version="),
        ({"model": "kws", "base_version": 1}, "base="),
    ],
)
def test_pack_mistakes_are_one_line_value_errors(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words) as e:
        modelota.pack(b"\1" * 8, version=2, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_pack_refuses_what_is_not_weights(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        modelota.pack(str(tmp_path / "missing.bin"), version=2, model="m")
    with pytest.raises(ValueError, match="is a directory"):
        modelota.pack(tmp_path, version=2, model="m")
    with pytest.raises(TypeError, match="expected bytes"):
        modelota.pack(3.5, version=2, model="m")


def test_inspect_is_what_the_command_prints_as_json(tmp_path: Path) -> None:
    rnd = np.random.default_rng(1)
    old = rnd.integers(0, 256, 3000, dtype=np.uint8)
    new = old.copy()
    new[100:120] = 7
    p = modelota.pack(new, version=5, model="m", base=old, base_version=4, chunk_size=512)
    path = tmp_path / "d.mota"
    assert p.save(path) == len(p.encode())
    r = run_cli("inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    for source in (p, p.encode(), str(path), path):
        assert modelota.inspect(source) == json.loads(r.stdout)
    info = modelota.inspect(path)
    assert info["kind"] == "delta" and info["base_version"] == 4 and info["segments"] == [[100, 20]]
    bad = bytearray(p.encode())
    bad[-1] ^= 1
    with pytest.raises(modelota.ModelOTAError) as e:
        modelota.inspect(bytes(bad))
    assert e.value.status == Status.ChunkCrc


def test_fingerprints_raw_tflite_and_mistakes(tmp_path: Path) -> None:
    assert modelota.fingerprint("kws", size=1024) == raw_fingerprint("kws", 1024)
    arch = Arch((6, 12, 3), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    old, new = pair(arch, 5)
    (tmp_path / "m.tflite").write_bytes(old)
    fp = modelota.fingerprint(tmp_path / "m.tflite")
    assert fp == modelota.fingerprint(str(tmp_path / "m.tflite")) == modelota.fingerprint(new)
    r = run_cli("fingerprint", tmp_path / "m.tflite", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["fingerprint"] == fp.hex()
    (tmp_path / "raw.bin").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="no graph to hash"):
        modelota.fingerprint(tmp_path / "raw.bin")
    with pytest.raises(ValueError, match=r"fingerprint\('kws', size=N\)"):
        modelota.fingerprint("kws")


def test_simulated_device_reports_its_real_state() -> None:
    v1 = bytes(range(256)) * 4
    v2 = bytes(255 - b for b in v1)
    dev = modelota.simulate(v1, model="kws")
    assert (dev.version, dev.weights, dev.booted_from) == (1, v1, "factory")
    payload = modelota.pack(v2, version=2, model="kws", chunk_size=256)
    assert dev.apply(payload) == Status.Ok
    assert dev.version == 2 and dev.stored_version == 2 and dev.weights == v2
    again = dev.apply(payload.encode())
    assert again == Status.AlreadyCurrent and dev.version == 2
    bad = bytearray(modelota.pack(v1, version=3, model="kws", chunk_size=256).encode())
    bad[300] ^= 0x10
    assert dev.apply(bytes(bad)) == Status.ChunkCrc
    assert dev.version == 2 and dev.weights == v2  # the last good weights, not the factory's
    assert dev.reboot() == "store" and dev.version == 2 and dev.weights == v2
    s = dev.state()
    assert s["weights_crc32"] == f"0x{zlib.crc32(v2):08x}" and s["last_status"] == "ChunkCrc"
    wrong = modelota.pack(v2, version=9, model="other", chunk_size=256)
    assert dev.apply(wrong) == Status.WrongModel and dev.version == 2


def test_simulated_tflite_device(tmp_path: Path) -> None:
    arch = Arch((6, 12, 3), ("relu", "none"), "int8", per_channel=True, tail="softmax")
    old, new = pair(arch, 6)
    dev = modelota.simulate(old)
    payload = modelota.pack(new, version=2, base=old)
    assert dev.apply(payload) == Status.Ok and dev.version == 2 and dev.weights != old
    delta = modelota.pack(new, version=2, base=old, base_version=1)
    fresh = modelota.simulate(old)
    assert fresh.apply(delta) == Status.Ok and fresh.weights == dev.weights


def test_reference_device_version_follows_a_successful_apply() -> None:
    fp = bytes(16)
    old, new = b"\1" * 100, b"\2" * 100
    payload = modelota.pack(new, version=4, fingerprint=fp).encode()
    dev = Device(fp, 1, bytearray(old))
    assert apply_reference(payload, dev).status == Status.Ok
    assert dev.current_version == 4 and bytes(dev.weights) == new
    assert apply_reference(payload, dev).status == Status.AlreadyCurrent


def test_importing_modelota_loads_nothing_heavy() -> None:
    code = (
        "import sys, modelota; modelota.__version__; "
        "print(sorted(m for m in ('numpy', 'tflite', 'cffi', 'modelota.api', 'aiohttp')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
