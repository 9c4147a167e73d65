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


ENC_PART = re.compile(r"([a-z+]+) (\d+) B(?: \((\d+) chunks?, (\d+) weight bytes\))?")


def encodings_of_line(line: str) -> dict[str, dict[str, int]]:
    """"rc+diff 459 B (12 chunks, 4096 weight bytes), header 45 B" as
    describe_encodings gives it."""
    out = {}
    for name, wire, n, data in ENC_PART.findall(line):
        out[name] = {"chunks": int(n or 0), "bytes": int(wire), "weight_bytes": int(data or 0)}
    return out


def test_diff_and_inspect_show_bytes_over_the_air_per_encoding(tmp_path: Path) -> None:
    """`diff` (text and --json) gives, for the full and the delta payload, v1
    and v2 sizes and the v2 bytes per chunk encoding; they are the sizes of
    the payloads `pack` writes, and `inspect` splits a payload file the same
    way: every byte of the file in one encoding (or the header), chunk counts
    as the chunks' own encoding bytes say."""
    from modelota.format.payload import parse

    bad, good, _, _ = digits_models(0)
    old, new = tmp_path / "bad.tflite", tmp_path / "good.tflite"
    old.write_bytes(bad)
    new.write_bytes(good)
    r = modelota("diff", old, new, "--json")
    assert r.returncode == 0, r.stderr
    air = json.loads(r.stdout)["over_the_air"]
    text = modelota("diff", old, new).stdout
    for kind, extra in (("full", []), ("delta", ["--delta", "--base-version", "1"])):
        out = {}
        for fmt in (1, 2):
            out[fmt] = tmp_path / f"{kind}{fmt}.mota"
            r = modelota("pack", "--base", old, new, "-o", out[fmt], "--version", "2",
                         "--format-version", str(fmt), *extra)  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert air[kind][f"v{fmt}"] == out[fmt].stat().st_size, (kind, fmt)
        raw = out[2].read_bytes()
        payload = parse(raw)
        want: dict[str, int] = {}
        for c in payload.chunks:
            want[c.encoding] = want.get(c.encoding, 0) + 1  # type: ignore[union-attr]
        encs = air[kind]["v2_encodings"]
        assert {k: v["chunks"] for k, v in encs.items() if k != "header"} == want
        assert sum(v["bytes"] for v in encs.values()) == len(raw)
        assert encs["header"]["bytes"] == payload.header.length
        assert sum(v["weight_bytes"] for v in encs.values()) == payload.header.data_size
        # the text line of `diff` says the same
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{kind} "))
        assert f"v1 {air[kind]['v1']} B, v2 {air[kind]['v2']} B" in line, line
        assert encodings_of_line(line.split(":", 1)[1]) == encs, line
        # inspect: --json and text
        info = json.loads(modelota("inspect", out[2], "--json").stdout)
        assert info["encodings"] == encs
        r = modelota("inspect", out[2])
        shown = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("encodings:"))
        assert encodings_of_line(shown.split(":", 1)[1]) == encs, shown
        # v1 ships every chunk raw, behind a 96-byte header
        v1 = json.loads(modelota("inspect", out[1], "--json").stdout)["encodings"]
        assert set(v1) == {"raw", "header"} and v1["header"]["bytes"] == 96
        assert v1["raw"]["bytes"] + 96 == out[1].stat().st_size
    # a delta of a retrain codes its chunks: something besides raw is used
    assert set(air["delta"]["v2_encodings"]) - {"raw", "header"}, air["delta"]
    assert air["delta"]["v2"] < air["delta"]["v1"] and air["full"]["v2"] < air["full"]["v1"]
