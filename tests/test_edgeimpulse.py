"""Edge Impulse Arduino exports (modelota.models.edgeimpulse): every form since 2020.

The exports are written by tests/ei_fixtures.py from numpy arrays. For every
form the tests check that

1. read_export recognises it and picks the active model(s), never a stale one,
   and finds exactly the weight region the fixture wrote;
2. pack_ei packs old -> new (full and delta);
3. the payload applied by the NATIVE core (modelota.sim.native, the real
   firmware_lib) onto the old weight bytes gives exactly the new weights;
4. prepare_ei patches the library idempotently, the patched library still
   reads as the same model, and the patched model + generated glue compile
   with host g++ (-Wall -Wextra -Werror) against stub SDK/Arduino headers,
   linked with the real firmware_lib; the binary then runs an update from a
   stream, a restore and a corrupted payload, and the model's own tensor
   table sees the old, new, old, old weights.

Plus refusals: unrecognised exports, broken arrays, architecture changes, and
an arduino-builder build of a patched fake library for the Mega 2560.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ei_fixtures as F
import pytest

from modelota.format.payload import pack
from modelota.models import edgeimpulse as E
from modelota.models.tflite import read_tflite, rebase
from modelota.sim import native
from modelota.sim.emulated import arduino_builder_command
from modelota.status import Status

ROOT = Path(__file__).resolve().parent.parent
ARDUINO_HOST = ROOT / "tests" / "arduino_host"  # Arduino.h stand-in shared with test_arduino_glue
GXX = shutil.which("g++")
BUILDER = shutil.which("arduino-builder")
CHUNK = 128  # >= 96: the chunk buffer also holds the header

# ---------------------------------------------------------------- forms


@dataclass
class Built:
    export: F.Export
    region: bytes  # expected weight region
    probes: list[tuple[str, int]]  # (C expression, expected CRC32) per model


Builder = Callable[[Path, str], Built]


def _eon(
    style: F.EonStyle,
    sizes: tuple[int, ...] = (12, 16, 3),
    dtype: str = "int8",
    reshape: bool = False,
) -> Builder:
    def build(root: Path, variant: str) -> Built:
        seed = {"old": 1, "new": 2, "arch": 3}[variant]
        sz = (sizes[0], sizes[1] + 4, *sizes[2:]) if variant == "arch" else sizes
        em = F.eon_source(F.mlp_graph(seed, sz, dtype=dtype, reshape=reshape), style)
        exp = F.write_export(root, [F.ModelSpec(em.name, eon=em)], year=style.year)
        return Built(exp, em.region, [(f"{em.name}_fixture_probe()", em.probe)])

    return build


def _fb(array: str, year: int, buffer_seed: int | None = None) -> Builder:
    def build(root: Path, variant: str) -> Built:
        seed = {"old": 1, "new": 2, "arch": 3}[variant]
        sizes = (12, 20, 3) if variant == "arch" else (12, 16, 3)
        data = F.tflite_model(seed, sizes, buffer_seed if variant == "new" else None)
        spec = F.ModelSpec(array, flatbuffer=data, fb_year=year)
        exp = F.write_export(root, [spec], year=year)
        return Built(exp, data, [(f"crc32_of({array}, {array}_len)", zlib.crc32(data))])

    return build


def _multi_eon(root: Path, variant: str) -> Built:
    seed = {"old": 1, "new": 2, "arch": 3}[variant]
    a = F.eon_source(
        F.mlp_graph(seed, (12, 16, 3)), F.EonStyle(year=2024, name="tflite_learn_5", namespace="g0")
    )
    # the anomaly model: float32, another shape
    b_sizes = (12, 8, 1) if variant != "arch" else (12, 9, 1)
    b = F.eon_source(
        F.mlp_graph(seed + 10, b_sizes, dtype="float32"),
        F.EonStyle(year=2024, name="tflite_learn_7", namespace="g0", floats="exp_f"),
    )
    exp = F.write_export(root, [F.ModelSpec(a.name, eon=a), F.ModelSpec(b.name, eon=b)], year=2024)
    return Built(
        exp,
        a.region + b.region,
        [(f"{a.name}_fixture_probe()", a.probe), (f"{b.name}_fixture_probe()", b.probe)],
    )


def _multi_tflite(root: Path, variant: str) -> Built:
    seed = {"old": 1, "new": 2, "arch": 3}[variant]
    a = F.tflite_model(seed, (12, 16, 3))
    b = F.tflite_model(seed + 10, (12, 8, 2) if variant != "arch" else (12, 8, 3))
    exp = F.write_export(
        root,
        [F.ModelSpec("tflite_learn_5", flatbuffer=a), F.ModelSpec("tflite_learn_7", flatbuffer=b)],
        year=2023,
    )
    return Built(
        exp,
        a + b,
        [
            ("crc32_of(tflite_learn_5, tflite_learn_5_len)", zlib.crc32(a)),
            ("crc32_of(tflite_learn_7, tflite_learn_7_len)", zlib.crc32(b)),
        ],
    )


def _stale_eon(root: Path, variant: str) -> Built:
    """A 2024 export that still holds the files of two earlier exports."""
    seed = {"old": 1, "new": 2, "arch": 3}[variant]
    em = F.eon_source(
        F.mlp_graph(seed, (12, 16 if variant != "arch" else 18, 3)),
        F.EonStyle(year=2024, name="tflite_learn_12", namespace="g0"),
    )
    old5 = F.eon_source(F.mlp_graph(99, (12, 30, 3)), F.EonStyle(year=2022, name="tflite_learn_5"))
    old20 = F.eon_source(F.mlp_graph(98, (12, 10, 3)), F.EonStyle(year=2020, name="trained_model"))
    stale = {
        "src/tflite-model/tflite_learn_5_compiled.cpp": old5.source,
        "src/tflite-model/tflite_learn_5_compiled.h": old5.header,
        "src/edge-impulse-sdk/tensorflow/lite/micro/trained_model_compiled.cpp": old20.source,
        "src/tflite-model/tflite_learn_12.h": F.flatbuffer_header(
            "tflite_learn_12", F.tflite_model(5), 2023
        ),
    }
    exp = F.write_export(root, [F.ModelSpec(em.name, eon=em)], year=2024, stale=stale)
    return Built(exp, em.region, [(f"{em.name}_fixture_probe()", em.probe)])


def _stale_2021(root: Path, variant: str) -> Built:
    """An old export (no model_variables.h): EI_CLASSIFIER_COMPILED 0 makes the
    flatbuffer active; a trained_model_compiled.cpp from an EON export lingers."""
    seed = {"old": 1, "new": 2, "arch": 3}[variant]
    data = F.tflite_model(seed, (12, 16, 3) if variant != "arch" else (12, 17, 3))
    lingering = F.eon_source(F.mlp_graph(97), F.EonStyle(year=2020, name="trained_model"))
    stale = {
        "src/tflite-model/trained_model_compiled.cpp": lingering.source,
        "src/tflite-model/trained_model_compiled.h": lingering.header,
    }
    exp = F.write_export(
        root, [F.ModelSpec("trained_tflite", flatbuffer=data, fb_year=2020)], year=2020, stale=stale
    )
    return Built(exp, data, [("crc32_of(trained_tflite, trained_tflite_len)", zlib.crc32(data))])


FORMS: dict[str, Builder] = {
    "eon2020_trained_model": _eon(F.EonStyle(year=2020, name="trained_model", align=8)),
    "eon2022_align8_rows": _eon(F.EonStyle(year=2022, align=8, literals="rows")),
    "eon2024_g0_hex": _eon(
        F.EonStyle(year=2024, namespace="g0", table_const=False, literals="hex", floats="exp_f")
    ),
    "eon2025_section_shared_zero": _eon(F.eon2025("tflite_learn_123456_5", wrapped=True)),
    # 2024+ node form: TfLiteNode tflNodes twice (#ifndef TF_LITE_STATIC_MEMORY),
    # operators in used_ops, subgraph index tables; a RESHAPE without builtin
    # data takes the shape constant (a fixed constant: not writable)
    "eon2025_tflnodes": _eon(
        F.eon2025("tflite_learn_123456_3", literals="rows", nodes="tflNodes"), reshape=True
    ),
    "eon2024_tflnodes_float32": _eon(
        F.EonStyle(year=2024, floats="exp_f", nodes="tflNodes"), dtype="float32", reshape=True
    ),
    "eon_float32": _eon(F.EonStyle(year=2023, floats="exp_f"), dtype="float32"),
    "eon_big_tensor": _eon(
        F.EonStyle(year=2024, namespace="g0", literals="rows"), sizes=(300, 240, 4)
    ),
    "tflite2020_trained_tflite": _fb("trained_tflite", 2020),
    "tflite2023_learn_n": _fb("tflite_learn_5", 2023),
    "tflite2025_section_projectid": _fb("tflite_learn_123456_7", 2025, buffer_seed=7),
    "multi_eon_classifier_anomaly": _multi_eon,
    "multi_tflite": _multi_tflite,
    "stale_eon_files": _stale_eon,
    "stale_2021_compiled0": _stale_2021,
}
EXPECTED_STALE = {
    "stale_eon_files": [
        "src/edge-impulse-sdk/tensorflow/lite/micro/trained_model_compiled.cpp",
        "src/tflite-model/tflite_learn_12.h",
        "src/tflite-model/tflite_learn_5_compiled.cpp",
    ],
    "stale_2021_compiled0": ["src/tflite-model/trained_model_compiled.cpp"],
}


@pytest.fixture(params=sorted(FORMS), scope="module")
def form(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Built, Built]:
    name = request.param
    d = tmp_path_factory.mktemp(name)
    return name, FORMS[name](d / "old", "old"), FORMS[name](d / "new", "new")


def _model_names(b: Built) -> list[str]:
    return [m.name for m in b.export.models]


# ---------------------------------------------------------------- 1-3: read, pack, apply


def test_recognises_the_active_models(form: tuple[str, Built, Built]) -> None:
    name, old, _new = form
    exp = E.read_export(old.export.root)
    assert [m.name for m in exp.models] == _model_names(old)
    assert [m.form for m in exp.models] == [m.form for m in old.export.models]
    assert exp.stale == EXPECTED_STALE.get(name, [])
    assert exp.weights_bytes() == old.region
    assert exp.region_size == len(old.region)
    for m in exp.models:
        assert not m.prepared
        assert len(m.fingerprint()) == 16
        assert m.source.startswith("src/")
        if m.form == "tflite":
            assert m.fingerprint() == read_tflite(m.weights_bytes()).fingerprint()


def _expected_new_region(old: Built, new: Built) -> bytes:
    parts = []
    for mo, mn in zip(old.export.models, new.export.models, strict=True):
        if mo.eon is not None:
            assert mn.eon is not None
            parts.append(mn.eon.region)
        else:
            assert mo.flatbuffer is not None and mn.flatbuffer is not None
            parts.append(rebase(read_tflite(mo.flatbuffer), read_tflite(mn.flatbuffer)))
    return b"".join(parts)


@pytest.mark.parametrize("delta", [False, True], ids=["full", "delta"])
def test_pack_applies_through_the_native_core(form: tuple[str, Built, Built], delta: bool) -> None:
    _name, old, new = form
    old_exp = E.read_export(old.export.root)
    new_exp = E.read_export(new.export.root)
    assert old_exp.fingerprint() == new_exp.fingerprint()
    payload = E.pack_ei(old_exp, new_exp, version=2, delta=delta, base_version=1, chunk_size=CHUNK)
    assert payload.header.is_delta == delta
    weights = bytearray(old.region)
    dev = native.Updater(
        weights,
        fingerprint=old_exp.fingerprint(),
        current_version=1,
        buffer_len=CHUNK,
        target_mode="callback",
    )
    assert dev.apply(payload.encode()) == Status.Ok
    expected = _expected_new_region(old, new)
    assert bytes(weights) == expected
    if all(m.eon is not None for m in old.export.models):
        assert expected == new.region  # EON: exactly the arrays the new export declares
    # a full payload of a flatbuffer ships only the weight ranges
    if not delta:
        assert payload.header.data_size <= len(old.region)


def test_zip_reads_like_the_folder(tmp_path: Path) -> None:
    b = FORMS["eon2022_align8_rows"](tmp_path / "lib", "old")
    z = F.zip_export(b.export, tmp_path / "ei_fixture-arduino-1.0.1.zip")
    from_zip = E.read_export(z)
    from_dir = E.read_export(b.export.root)
    assert from_zip.root == "ei_fixture_inferencing/"
    assert from_zip.fingerprint() == from_dir.fingerprint()
    assert from_zip.weights_bytes() == from_dir.weights_bytes() == b.region
    assert from_zip.models[0].source == "src/tflite-model/tflite_learn_5_compiled.cpp"
    new = FORMS["eon2022_align8_rows"](tmp_path / "new", "new")
    payload = E.pack_ei(z, F.zip_export(new.export, tmp_path / "new.zip"), version=3)
    weights = bytearray(b.region)
    dev = native.Updater(weights, fingerprint=from_zip.fingerprint(), current_version=1)
    assert dev.apply(payload.encode()) == Status.Ok
    assert bytes(weights) == new.region
    with pytest.raises(E.EIExportError, match="extracted library folder"):
        E.prepare_ei(z)


# ---------------------------------------------------------------- 4: prepare, compile, run

DRIVER = r"""#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include "Arduino.h"
#include "@MAIN@"
@INCLUDES@

unsigned long millis(void) { static unsigned long t = 0; return ++t; }
void yield(void) {}

namespace {
std::vector<uint8_t> slurp(const char* path) {
    std::vector<uint8_t> out;
    FILE* f = fopen(path, "rb");
    if (f == NULL) { exit(2); }
    int c;
    while ((c = fgetc(f)) != EOF) out.push_back(static_cast<uint8_t>(c));
    fclose(f);
    return out;
}
class MemStream : public Stream {
public:
    explicit MemStream(const std::vector<uint8_t>& d) : d_(d), pos_(0) {}
    int available() override { return static_cast<int>(d_.size() - pos_); }
    int read() override { return pos_ < d_.size() ? d_[pos_++] : -1; }
    int peek() override { return pos_ < d_.size() ? d_[pos_] : -1; }
    size_t write(uint8_t) override { return 0; }
    size_t left() const { return d_.size() - pos_; }
private:
    const std::vector<uint8_t>& d_;
    size_t pos_;
};
__attribute__((unused)) uint32_t crc32_of(const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}
void probes(const char* tag) {
    printf("%s version=%u intact=%d", tag, static_cast<unsigned>(ei_weights_version()),
           ei_weights_intact() ? 1 : 0);
@PROBES@
    printf("\n");
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) return 2;
    probes("boot");
    std::vector<uint8_t> good = slurp(argv[1]);
    MemStream a(good);
    String r = ei_update_weights(a, 0);
    printf("update=%s left=%u\n", r.c_str(), static_cast<unsigned>(a.left()));
    probes("updated");
    r = ei_restore_weights();
    printf("restore=%s\n", r.c_str());
    probes("restored");
    std::vector<uint8_t> bad = slurp(argv[2]);
    MemStream b(bad);
    r = ei_update_weights(b, 0);
    printf("corrupt=%s\n", r.c_str());
    probes("refused");
    std::vector<uint8_t> wrong = slurp(argv[3]);
    MemStream w(wrong);
    r = ei_update_weights(w, 0);
    printf("structure=%s\n", r.c_str());
    probes("kept");
    return 0;
}
"""


@pytest.fixture(scope="module")
def host_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """src/ModelOTA.cpp + src/modelota_store.cpp (the real firmware_lib sources
    they #include) compiled once against the host Arduino stand-in."""
    if GXX is None:
        pytest.skip("host g++ is not installed")
    d = tmp_path_factory.mktemp("host")
    for unit in ("ModelOTA", "modelota_store"):
        cmd = [
            GXX,
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            "-I",
            str(ARDUINO_HOST),
            "-I",
            str(ROOT / "src"),
            "-c",
            str(ROOT / "src" / f"{unit}.cpp"),
            "-o",
            str(d / f"{unit}.o"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    return d


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_prepare_is_idempotent_and_the_result_compiles_and_runs(
    form: tuple[str, Built, Built], host_build: Path, tmp_path: Path
) -> None:
    name, old, new = form
    lib = tmp_path / "lib"
    shutil.copytree(old.export.root, lib)
    pristine = E.read_export(lib)
    before = _snapshot(lib)
    report = E.prepare_ei(lib, version=1)
    assert not report.already_prepared and report.changed
    assert report.main_header == lib / "src" / old.export.main_header
    assert report.fingerprint == pristine.fingerprint()
    after = _snapshot(lib)
    for stale in EXPECTED_STALE.get(name, []):
        assert after[stale] == before[stale], f"prepare-ei touched the stale {stale}"
    # idempotent: a second run changes nothing
    again = E.prepare_ei(lib, version=1)
    assert again.already_prepared and again.changed == []
    assert _snapshot(lib) == after
    # the prepared library still reads as the same model, same weights
    prepared = E.read_export(lib)
    assert all(m.prepared for m in prepared.models)
    assert prepared.fingerprint() == pristine.fingerprint()
    assert prepared.weights_bytes() == pristine.weights_bytes()
    assert prepared.prepared_version == 1
    header = (lib / "src" / E.GLUE_HEADER).read_text()
    assert f'MODELOTA_EI_FINGERPRINT_HEX "{pristine.fingerprint().hex()}"' in header
    assert f"MODELOTA_EI_REGION_SIZE {len(old.region)}u" in header

    # compile the patched model(s), the generated glue and a driver; link the real core
    payload = E.pack_ei(prepared, E.read_export(new.export.root), version=2, chunk_size=CHUNK)
    good = payload.encode()
    (tmp_path / "good.mota").write_bytes(good + b"NEXT")
    bad = bytearray(good)
    spans = payload.chunk_spans()
    _start, end = spans[len(spans) // 2]
    bad[end - 5] ^= 0x10  # the last data byte of a middle chunk: its CRC fails
    (tmp_path / "bad.mota").write_bytes(bytes(bad))
    # right fingerprint and CRCs, but it changes a byte outside the writable
    # ranges (a fixed constant, the flatbuffer's structure): the glue's
    # cfg.writable table must make the device refuse it
    writable = prepared.writable_ranges()
    assert writable and sum(n for _, n in writable) < prepared.region_size
    outside = next(
        o for o in range(prepared.region_size) if not any(a <= o < a + n for a, n in writable)
    )
    touched = bytearray(_expected_new_region(old, new))
    touched[outside] ^= 0x01
    wrong = pack(bytes(touched), fingerprint=prepared.fingerprint(), version=3, chunk_size=CHUNK)
    (tmp_path / "wrong.mota").write_bytes(wrong.encode())
    glue = (lib / "src" / E.GLUE_SOURCE).read_text()
    assert f"modelota_writable_flash(modelota_ei_writable, {len(writable)}u);" in glue
    includes = []
    for m in old.export.models:
        if m.eon is not None:
            includes.append(f'#include "{m.dir}/{m.name}_compiled.h"')
        else:
            fname = "tflite-trained.h" if m.name == "trained_tflite" else f"{m.name}.h"
            includes.append(f'#include "{m.dir}/{fname}"')
    probe_lines = "\n".join(
        f'    printf(" p{i}=%08x", static_cast<unsigned>({expr}));'
        for i, (expr, _) in enumerate(old.probes)
    )
    driver = (
        DRIVER.replace("@MAIN@", old.export.main_header)
        .replace("@INCLUDES@", "\n".join(includes))
        .replace("@PROBES@", probe_lines)
    )
    (tmp_path / "driver.cpp").write_text(driver)
    sources = [
        p
        for p in (lib / "src").rglob("*.cpp")
        if p.relative_to(lib).as_posix() not in EXPECTED_STALE.get(name, [])
    ]
    exe = tmp_path / "driver"
    assert GXX is not None
    cmd = [
        GXX,
        "-std=c++11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O1",
        "-I",
        str(ARDUINO_HOST),
        "-I",
        str(ROOT / "src"),
        "-I",
        str(lib / "src"),
        *map(str, sources),
        str(tmp_path / "driver.cpp"),
        str(host_build / "ModelOTA.o"),
        str(host_build / "modelota_store.o"),
        "-o",
        str(exe),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stderr[-4000:]
    run = subprocess.run(
        [str(exe), *(str(tmp_path / f) for f in ("good.mota", "bad.mota", "wrong.mota"))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = dict(ln.split(" ", 1) if " " in ln else (ln, "") for ln in run.stdout.splitlines())

    def probes(version: int, built: list[tuple[str, int]]) -> str:
        return f"version={version} intact=1" + "".join(
            f" p{i}={crc:08x}" for i, (_, crc) in enumerate(built)
        )

    expected_new = _expected_new_region(old, new)
    new_probes = [
        (e, zlib.crc32(expected_new[o : o + n]) if e.startswith("crc32_of") else c)
        for (e, c), (o, n) in zip(new.probes, _spans(new), strict=True)
    ]
    assert lines["boot"] == probes(1, old.probes), run.stdout
    assert run.stdout.splitlines()[1] == "update= left=4", run.stdout  # never read past the end
    assert lines["updated"] == probes(2, new_probes), run.stdout
    assert lines["restored"] == probes(1, old.probes), run.stdout
    assert "corrupt=ChunkCrc" in run.stdout.splitlines(), run.stdout
    assert lines["refused"] == probes(1, old.probes), run.stdout
    assert "structure=WrongModel" in run.stdout.splitlines(), run.stdout
    assert lines["kept"] == probes(1, old.probes), run.stdout


def _spans(b: Built) -> list[tuple[int, int]]:
    """(offset, length) of each model's part of the region, for the flatbuffer probes."""
    out = []
    off = 0
    for m in b.export.models:
        n = len(m.eon.region) if m.eon is not None else len(m.flatbuffer or b"")
        out.append((off, n))
        off += n
    return out


def test_prepare_keeps_a_version_and_rewrites_only_the_header(tmp_path: Path) -> None:
    b = FORMS["eon2024_g0_hex"](tmp_path / "lib", "old")
    E.prepare_ei(b.export.root, version=3)
    r = E.prepare_ei(b.export.root, version=4)
    assert [p.name for p in r.changed] == [E.GLUE_HEADER]
    assert E.read_export(b.export.root).prepared_version == 4
    # a delta against a prepared library takes its version as the base
    new = FORMS["eon2024_g0_hex"](tmp_path / "new", "new")
    payload = E.pack_ei(b.export.root, new.export.root, version=5, delta=True)
    assert payload.header.base_version == 4
    with pytest.raises(ValueError, match="above the base version"):
        E.pack_ei(b.export.root, new.export.root, version=4, delta=True)
    with pytest.raises(ValueError, match="base_version"):
        E.pack_ei(new.export.root, b.export.root, version=5, delta=True)


# ---------------------------------------------------------------- refusals


def test_not_an_export_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "sketch.cpp").write_text("int x;\n")
    with pytest.raises(E.EIExportError, match=r"no model-parameters/model_metadata\.h"):
        E.read_export(tmp_path)
    with pytest.raises(E.EIExportError, match="no such file or folder"):
        E.read_export(tmp_path / "missing")
    (tmp_path / "x.zip").write_text("not a zip")
    with pytest.raises(E.EIExportError, match=r"not a folder or a \.zip"):
        E.read_export(tmp_path / "x.zip")


def test_export_without_its_model_file_is_refused(tmp_path: Path) -> None:
    b = FORMS["eon2022_align8_rows"](tmp_path / "lib", "old")
    (b.export.src / "tflite-model" / "tflite_learn_5_compiled.cpp").unlink()
    with pytest.raises(E.EIExportError, match=r"no tflite_learn_5_compiled\.cpp") as e:
        E.read_export(b.export.root)
    assert "\n" not in str(e.value)
    b = FORMS["eon2020_trained_model"](tmp_path / "lib20", "old")
    (b.export.src / "tflite-model" / "trained_model_compiled.cpp").unlink()
    with pytest.raises(E.EIExportError, match="no active model"):
        E.read_export(b.export.root)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("= { \n  ", "= { \n  zz, ", r"tensor_data\d+: 'zz' is not an integer literal"),
        (
            "const ALIGN(8) int8_t tensor_data2",
            "const ALIGN(8) weird int8_t tensor_data2",
            "is not a weight array declaration",
        ),
        (
            "(TfLiteIntArray*)&quant2_zero",
            "(TfLiteIntArray*)&quant2_zerox",
            "refers to quant2_zerox",
        ),
        (
            "tensor_data1[2] = { \n  1, ",
            "tensor_data1[2] = { \n  4294967296, ",
            "value 4294967296 does not fit int32_t",
        ),
        ("/* [0][] */ ", "/* [0][] */ 5, ", "193 values for 192 elements"),
    ],
)
def test_broken_arrays_are_refused_naming_the_file(
    tmp_path: Path, old: str, new: str, match: str
) -> None:
    b = FORMS["eon2022_align8_rows"](tmp_path / "lib", "old")
    src = b.export.src / "tflite-model" / "tflite_learn_5_compiled.cpp"
    text = src.read_text()
    assert old in text
    src.write_text(text.replace(old, new, 1))
    with pytest.raises(E.EIExportError, match=match) as e:
        E.read_export(b.export.root)
    assert "tflite_learn_5_compiled.cpp" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_architecture_change_is_refused_naming_the_difference(tmp_path: Path, name: str) -> None:
    old = FORMS[name](tmp_path / "old", "old")
    arch = FORMS[name](tmp_path / "arch", "arch")
    with pytest.raises(E.EIArchitectureError, match="not the architecture of") as e:
        E.pack_ei(old.export.root, arch.export.root, version=2)
    msg = str(e.value)
    assert "\n" not in msg
    if all(m.eon is not None for m in old.export.models):
        assert "in the old export" in msg and "in the new one" in msg, msg


def test_activation_and_label_changes_are_refused(tmp_path: Path) -> None:
    style = F.EonStyle(year=2022)
    a = F.eon_source(F.mlp_graph(1), style)
    b = F.eon_source(F.mlp_graph(2, activation="kTfLiteActRelu6"), style)
    old = F.write_export(tmp_path / "a", [F.ModelSpec(a.name, eon=a)], year=2022)
    new = F.write_export(tmp_path / "b", [F.ModelSpec(b.name, eon=b)], year=2022)
    with pytest.raises(E.EIArchitectureError, match=r"opdata0 is TfLiteFullyConnectedParams"):
        E.pack_ei(old.root, new.root, version=2)
    c = F.eon_source(F.mlp_graph(2), style)
    relabel = F.write_export(
        tmp_path / "c", [F.ModelSpec(c.name, eon=c)], year=2022, labels=("idle", "snake", "wave")
    )
    with pytest.raises(E.EIArchitectureError, match=r"labels is .*\(compiled into the firmware"):
        E.pack_ei(old.root, relabel.root, version=2)
    rescale = F.write_export(
        tmp_path / "d", [F.ModelSpec(c.name, eon=c)], year=2022, input_scale="0.0078125"
    )
    with pytest.raises(E.EIArchitectureError, match="EI_CLASSIFIER_TFLITE_INPUT_SCALE"):
        E.pack_ei(old.root, rescale.root, version=2)


class _Work:
    """Counts the work a parse does, deterministically (no clock): Python
    lines run in the module under test, and characters handed to the regex
    engine (every compiled pattern of the module and every ``re`` call in it
    go through counting proxies)."""

    def __init__(self, module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lines = 0
        self.regex_chars = 0
        self.file = module.__file__
        work = self

        class Pattern:
            def __init__(self, pat: re.Pattern[str]) -> None:
                self.pat = pat

            def __getattr__(self, name: str) -> Any:
                attr = getattr(self.pat, name)
                if name not in ("search", "match", "fullmatch", "finditer", "findall", "sub",
                                "split", "subn"):  # fmt: skip
                    return attr

                def counted(*args: Any, **kw: Any) -> Any:
                    text = args[1] if name in ("sub", "subn") else args[0]
                    pos = args[1] if len(args) > 1 and name not in ("sub", "subn") else 0
                    work.regex_chars += len(text) - (pos if isinstance(pos, int) else 0)
                    return attr(*args, **kw)

                return counted

        class Re:
            def __getattr__(self, name: str) -> Any:
                return getattr(re, name)

            def compile(self, pattern: str, flags: int = 0) -> Pattern:
                return Pattern(re.compile(pattern, flags))

        def via(name: str) -> Callable[..., Any]:
            def call(pattern: str, *args: Any, flags: int = 0, **kw: Any) -> Any:
                return getattr(Pattern(re.compile(pattern, flags)), name)(*args, **kw)

            return call

        proxy = Re()
        for fn in ("search", "match", "fullmatch", "finditer", "findall", "sub", "split"):
            setattr(proxy, fn, via(fn))
        monkeypatch.setattr(module, "re", proxy)
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                monkeypatch.setattr(module, name, Pattern(value))

    def run(self, fn: Callable[[], Any]) -> Any:
        def trace(frame: Any, event: str, arg: Any) -> Any:
            if frame.f_code.co_filename != self.file:
                return None
            if event == "line":
                self.lines += 1
            return trace

        sys.settrace(trace)
        try:
            return fn()
        finally:
            sys.settrace(None)


def test_parsing_work_is_linear_in_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four times the weights (the input dimension grows, the layers and
    channels stay) cost the same Python work (no per-element loop in Python:
    tensor bodies go to numpy whole) and at most four times the regex
    scanning (no pass that rescans the text per element or per line). Work is
    counted, not timed: the count is the same on a loaded machine. Measured:
    8026 lines both; 4.0 M and 13.5 M regex characters; a per-element Python
    path counts 344 k -> 1.3 M lines, a rescan per 4 KiB 10x the characters."""
    work = []
    for scale in (1, 4):
        em = F.eon_source(F.mlp_graph(4, (100 * scale, 400, 2)),
                          F.EonStyle(year=2024, namespace="g0"))  # fmt: skip
        exp = F.write_export(tmp_path / f"x{scale}", [F.ModelSpec(em.name, eon=em)], year=2024)
        w = _Work(E, monkeypatch)
        m = w.run(lambda root=exp.root: E.read_export(root).models[0])
        monkeypatch.undo()
        assert m.weights_bytes() == em.region
        assert max(a.count for a in m.arrays) == 40_000 * scale
        work.append(w)
    small, big = work
    assert small.lines > 100 and small.regex_chars > 40_000 * 4  # the counters see the parse
    assert big.lines <= small.lines * 1.05, (small.lines, big.lines)
    assert big.regex_chars <= small.regex_chars * 4.2, (small.regex_chars, big.regex_chars)


def test_a_million_weight_tensor_parses(tmp_path: Path) -> None:
    """A 1.2 MB weight tensor (about 6 MB of source) parses, bit-exact."""
    em = F.eon_source(F.mlp_graph(4, (1000, 1200, 2)), F.EonStyle(year=2024, namespace="g0"))
    exp = F.write_export(tmp_path / "big", [F.ModelSpec(em.name, eon=em)], year=2024)
    m = E.read_export(exp.root).models[0]
    assert m.weights_bytes() == em.region
    assert max(a.count for a in m.arrays) == 1_200_000


# ---------------------------------------------------------------- CLI


def test_cli_prepare_and_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelota.cli import edgeimpulse as C
    from modelota.status import CliError

    old = FORMS["tflite2023_learn_n"](tmp_path / "old", "old")
    new = FORMS["tflite2023_learn_n"](tmp_path / "new", "new")
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    C.add_commands(sub)
    args = p.parse_args(["prepare-ei", str(old.export.root), "--version", "1"])
    assert args.func(args) == 0
    assert "prepared for in-place weight updates" in capsys.readouterr().out
    out = tmp_path / "v2.mota"
    ns = argparse.Namespace(
        ei=[str(old.export.root), str(new.export.root)],
        output=str(out),
        version=2,
        chunk_size=256,
        base=None,
        base_version=None,
        delta=False,
    )
    assert C.cmd_pack_ei(ns) == 0
    assert "full payload v2" in capsys.readouterr().out
    weights = bytearray(old.region)
    dev = native.Updater(
        weights,
        fingerprint=E.read_export(old.export.root).fingerprint(),
        current_version=1,
        buffer_len=256,
    )
    assert dev.apply(out.read_bytes()) == Status.Ok
    arch = FORMS["tflite2023_learn_n"](tmp_path / "arch", "arch")
    ns.ei = [str(old.export.root), str(arch.export.root)]
    with pytest.raises(CliError, match="not the architecture of"):
        C.cmd_pack_ei(ns)
    ns.ei = [str(old.export.root), str(tmp_path / "nowhere")]
    with pytest.raises(CliError, match="no such file or folder"):
        C.cmd_pack_ei(ns)
    args = p.parse_args(["prepare-ei", str(tmp_path / "nowhere")])
    with pytest.raises(CliError, match="extracted library folder"):
        args.func(args)


# ---------------------------------------------------------------- arduino-builder


@pytest.mark.skipif(BUILDER is None, reason="arduino-builder is not installed")
def test_patched_library_builds_with_arduino_builder_for_the_mega(tmp_path: Path) -> None:
    """A patched fake library with two EON models (2025 forms: MODEL_SECTION,
    shared zero points, nodeData in one, tflNodes twice + used_ops in the
    other; on AVR int is 16 bits, so zero points take the int32 path) and an
    embedded flatbuffer, used by a sketch written for edgeimpulse-ota. The
    glue's writable-range table (the fixed RESHAPE shape and the flatbuffer's
    structure are outside it) is compiled in."""
    em = F.eon_source(
        F.mlp_graph(1, (6, 5, 2)),
        F.EonStyle(
            year=2025, name="tflite_learn_5", namespace="g0", model_section=True, shared_zero=True
        ),
    )
    tn = F.eon_source(
        F.mlp_graph(2, (6, 4, 2), reshape=True), F.eon2025("tflite_learn_6", nodes="tflNodes")
    )
    fb = F.tflite_model(1, (6, 5, 2))
    book = tmp_path / "sketchbook"
    libs = book / "libraries"
    libs.mkdir(parents=True)
    (libs / "ModelOTA").symlink_to(ROOT, target_is_directory=True)
    exp = F.write_export(
        libs / "ei_fixture_inferencing",
        [
            F.ModelSpec(em.name, eon=em),
            F.ModelSpec(tn.name, eon=tn),
            F.ModelSpec("tflite_learn_7", flatbuffer=fb),
        ],
        year=2025,
    )
    report = E.prepare_ei(exp.root)
    assert report.models == ["tflite_learn_5", "tflite_learn_6", "tflite_learn_7"]
    writable = E.read_export(exp.root).writable_ranges()
    assert sum(n for _, n in writable) < report.region_size
    sketch = tmp_path / "OtaSketch"
    sketch.mkdir()
    (sketch / "OtaSketch.ino").write_text(
        "#include <ei_fixture_inferencing.h>\n"
        "void setup() {\n"
        "  Serial.begin(115200);\n"
        "  String err = ei_update_weights(Serial);\n"
        '  if (err != "") { Serial.println(err); err = ei_restore_weights(); }\n'
        "  Serial.println(ei_weights_version());\n"
        "}\n"
        "void loop() {}\n"
    )
    build = tmp_path / "build"
    build.mkdir()
    assert BUILDER is not None
    cmd = arduino_builder_command(BUILDER, sketch / "OtaSketch.ino", libs, build)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    elf = build / "OtaSketch.ino.elf"
    assert elf.is_file()
    nm = shutil.which("avr-nm")
    if nm is not None:
        syms = subprocess.run([nm, "-C", str(elf)], capture_output=True, text=True).stdout
        table = [ln.split(maxsplit=2) for ln in syms.splitlines()]
        kinds = {parts[2].split(".")[0]: parts[1] for parts in table if len(parts) == 3}
        assert any(k.startswith("ei_update_weights(Stream&") for k in kinds), syms
        assert kinds.get("modelota_ei_fingerprint") in ("d", "D"), syms
        # the writable ranges the Updater gets as cfg.writable: 2 words per range
        sizes = subprocess.run(
            [nm, "-S", str(elf)], capture_output=True, text=True, check=True
        ).stdout
        (size,) = [
            int(ln.split()[1], 16) for ln in sizes.splitlines() if "modelota_ei_writable" in ln
        ]
        assert size == 8 * len(writable), sizes
        assert kinds.get("modelota_ei_writable") in ("t", "T"), "the table is not in flash"
        assert kinds.get("tflite_learn_7") == "B", "the flatbuffer's RAM copy is not in .bss"
        # factory copies stay in flash (PROGMEM): text, not data
        factories = {k: v for k, v in kinds.items() if "_factory" in k}
        assert len(factories) > 10 and set(factories.values()) <= {"T", "t"}, factories
    ours = [ln for ln in out.splitlines() if "warning:" in ln and "modelota_ei" in ln]
    assert not ours, "\n".join(ours)


def test_modelota_command_line_prepare_ei_and_pack_ei(tmp_path: Path) -> None:
    """The same through the installed `modelota` command, as a user types it."""
    from payloads import modelota as run

    old = FORMS["eon2024_g0_hex"](tmp_path / "old", "old")
    new = FORMS["eon2024_g0_hex"](tmp_path / "new", "new")

    r = run("prepare-ei", old.export.root)
    assert r.returncode == 0, r.stderr
    assert run("prepare-ei", old.export.root).returncode == 0  # idempotent
    out = tmp_path / "v2.mota"
    r = run("pack", "--ei", old.export.root, new.export.root, "-o", out, "--version", "2",
            "--chunk-size", "256")  # fmt: skip
    assert r.returncode == 0, r.stderr
    dev = native.Updater(bytearray(old.region), buffer_len=256, current_version=1,
                         fingerprint=E.read_export(old.export.root).fingerprint())  # fmt: skip
    assert dev.apply(out.read_bytes()) == Status.Ok
    assert bytes(dev.weights) == _expected_new_region(old, new)
    r = run("pack", "--ei", old.export.root, tmp_path / "nowhere", "-o", out, "--version", "3")
    assert r.returncode == 1 and r.stderr.startswith("modelota: error:")
