"""`modelota pack/inspect/diff` on .tflite models, run as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelota import Status
from modelota.demo.digits import digits_models, tflm_accuracy
from modelota.models.tflite import read_tflite
from modelota.sim.native import Updater
from payloads import modelota


def test_pack_over_deployed_tflite_then_device_runs_the_good_model(tmp_path: Path) -> None:
    bad, good, x, y = digits_models(0)
    (tmp_path / "bad.tflite").write_bytes(bad)
    (tmp_path / "good.tflite").write_bytes(good)
    fp = read_tflite(bad).fingerprint()
    for extra in ([], ["--delta", "--base-version", "1"]):
        out = tmp_path / "u.mota"
        r = modelota(
            "pack",
            "--base",
            tmp_path / "bad.tflite",
            tmp_path / "good.tflite",
            "-o",
            out,
            "--version",
            "2",
            *extra,
        )
        assert r.returncode == 0, r.stderr
        info = json.loads(modelota("inspect", out, "--json").stdout)
        assert info["fingerprint"] == fp.hex() and info["weights_size"] == len(bad)
        dev = Updater(bytearray(bad), fingerprint=fp, current_version=1)
        assert dev.apply(out.read_bytes()) == Status.Ok
        assert tflm_accuracy(bytes(dev.weights), x, y) == tflm_accuracy(good, x, y)


def test_diff_and_inspect_list_tensors(tmp_path: Path) -> None:
    bad, good, _, _ = digits_models(0)
    (tmp_path / "bad.tflite").write_bytes(bad)
    (tmp_path / "good.tflite").write_bytes(good)
    r = modelota("diff", tmp_path / "bad.tflite", tmp_path / "good.tflite")
    assert r.returncode == 0, r.stderr
    assert "same architecture" in r.stdout and "sequential/dense/MatMul" in r.stdout
    r = modelota("inspect", tmp_path / "bad.tflite")
    assert r.returncode == 0 and "[32, 64]" in r.stdout and "constant" in r.stdout
    out = tmp_path / "d.mota"
    r = modelota("pack", "--base", tmp_path / "bad.tflite", tmp_path / "good.tflite", "-o", out,
                 "--version", "2", "--delta", "--base-version", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = modelota("inspect", out, "--deployed", tmp_path / "bad.tflite")
    assert r.returncode == 0, r.stderr
    m = re.search(r"payload rewrites (\d+) of (\d+) weight bytes", r.stdout)
    assert m and 0 < int(m.group(1)) <= int(m.group(2)), r.stdout
    assert re.search(r"sequential/dense/MatMul\s+\[32, 64\]\s+8192\s+\d+", r.stdout)
    r = modelota("inspect", out, "--deployed", tmp_path / "good.tflite")  # other layout
    assert r.returncode == 1 and "not the model this payload was made for" in r.stderr


def test_other_architecture_is_refused_naming_the_difference(tmp_path: Path) -> None:
    import numpy as np

    from modelota.models.tflite_build import Dense, build_mlp

    rng = np.random.default_rng(1)

    def layer(n_out: int, n_in: int) -> Dense:
        return Dense(
            rng.normal(size=(n_out, n_in)).astype(np.float32),
            rng.normal(size=n_out).astype(np.float32),
        )

    a = build_mlp([layer(4, 8)])
    b = build_mlp([layer(5, 8)])
    (tmp_path / "a.tflite").write_bytes(a)
    (tmp_path / "b.tflite").write_bytes(b)
    r = modelota(
        "pack",
        "--base",
        tmp_path / "a.tflite",
        tmp_path / "b.tflite",
        "-o",
        tmp_path / "x.mota",
        "--version",
        "2",
    )
    assert r.returncode == 1
    assert r.stderr.startswith("modelota: error:") and "shape" in r.stderr
    assert not (tmp_path / "x.mota").exists()
