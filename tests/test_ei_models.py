"""Edge Impulse exports: every model model-parameters references, damaged files.

* classifier + anomaly model (EON ``tflite_anomaly_<N>_compiled.cpp`` or an
  embedded ``tflite_anomaly_<N>.h`` flatbuffer, referenced from
  model_variables.h through its learning blocks): both found, both in the
  payload, both rewritten on the (native) device;
* K-means anomaly blocks (model_variables.h ``run_kmeans_anomaly``, or the
  2021 form with only ``EI_CLASSIFIER_HAS_ANOMALY 1``): refused in one line
  naming the block, never skipped;
* every model file cut at every structural boundary (end of each
  declaration and line) and at positions hypothesis picks: refused naming the
  file, prepare-ei writes nothing, no payload.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import ei_fixtures as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelota.models import edgeimpulse as E
from modelota.sim.native import Updater
from modelota.status import Status

BLOCKS = """
const ei_learning_block_t ei_learning_blocks[ei_learning_blocks_size] = {{
{rows}
}};
"""


def _with_blocks(exp: F.Export, rows: list[str], extra: str = "") -> None:
    path = exp.src / "model-parameters" / "model_variables.h"
    text = path.read_text()
    i = text.rindex("#endif")
    path.write_text(text[:i] + extra + BLOCKS.format(rows="\n".join(rows)) + text[i:])


def _row(fn: str, cfg: str) -> str:
    return f"    {{ 4, false, &{fn}, (void*)&{cfg}, EI_CLASSIFIER_IMAGE_SCALING_NONE, }},"


def _classifier(seed: int) -> F.ModelSpec:
    em = F.eon_source(F.mlp_graph(seed), F.EonStyle(year=2025, name="tflite_learn_3"))
    return F.ModelSpec("tflite_learn_3", eon=em)


def _anomaly(seed: int, form: str) -> F.ModelSpec:
    if form == "eon":
        g = F.mlp_graph(seed + 50, (12, 8, 1), dtype="float32")
        em = F.eon_source(g, F.EonStyle(year=2025, name="tflite_anomaly_4"))
        return F.ModelSpec("tflite_anomaly_4", eon=em)
    return F.ModelSpec(
        "tflite_anomaly_4", flatbuffer=F.tflite_model(seed + 50, (12, 8, 1)), fb_year=2025
    )


def export_with_anomaly(root: Path, seed: int, form: str) -> F.Export:
    exp = F.write_export(root, [_classifier(seed), _anomaly(seed, form)], year=2025)
    _with_blocks(
        exp,
        [
            _row("run_nn_inference", "ei_learning_block_config_5"),
            _row("run_gmm_anomaly", "ei_learning_block_config_7"),
        ],
    )
    return exp


@pytest.mark.parametrize("form", ["eon", "tflite"])
def test_classifier_and_anomaly_model_are_both_updated(tmp_path: Path, form: str) -> None:
    old = export_with_anomaly(tmp_path / "old", 1, form)
    new = export_with_anomaly(tmp_path / "new", 2, form)
    eo, en = E.read_export(old.root), E.read_export(new.root)
    assert [m.name for m in eo.models] == ["tflite_learn_3", "tflite_anomaly_4"]
    assert [m.form for m in eo.models] == ["eon", form]
    assert eo.fingerprint() == en.fingerprint()
    payload = E.pack_ei(eo, en, version=2).encode()
    region = bytearray(eo.weights_bytes())
    u = Updater(
        region,
        fingerprint=eo.fingerprint(),
        current_version=1,
        buffer_len=1024,
        writable=eo.writable_ranges(),
    )
    assert u.apply(payload) == Status.Ok
    # each model's part of the region now holds the new export's weights
    start = 0
    for mo, mn in zip(eo.models, en.models, strict=True):
        part = bytes(region[start : start + mo.region_size])
        assert part == mn.region_in_layout_of(mo)
        assert part != mo.weights_bytes()
        start += mo.region_size


def test_kmeans_block_is_refused_naming_it(tmp_path: Path) -> None:
    exp = F.write_export(tmp_path / "km", [_classifier(1)], year=2025)
    _with_blocks(
        exp,
        [
            _row("run_nn_inference", "ei_learning_block_config_5"),
            _row("run_kmeans_anomaly", "ei_learning_block_config_kmeans"),
        ],
        extra="const ei_learning_block_config_anomaly_kmeans_t ei_learning_block_config_kmeans"
        " = {\n    .implementation_version = 1,\n    .anom_clusters = ei_classifier_anom_clusters,"
        "\n};\n",
    )
    with pytest.raises(E.EIExportError) as e:
        E.read_export(exp.root)
    msg = str(e.value)
    assert "\n" not in msg
    assert "ei_learning_block_config_kmeans" in msg and "run_kmeans_anomaly" in msg
    assert "K-means" in msg
    before = _snapshot(exp.root)
    with pytest.raises(E.EIExportError):
        E.prepare_ei(exp.root)
    assert _snapshot(exp.root) == before


def test_2021_kmeans_form_is_refused(tmp_path: Path) -> None:
    exp = F.write_export(tmp_path / "km21", [_classifier(1)], year=2021)
    meta = exp.src / "model-parameters" / "model_metadata.h"
    meta.write_text(
        meta.read_text().replace(
            "#define EI_CLASSIFIER_HAS_ANOMALY                0",
            "#define EI_CLASSIFIER_HAS_ANOMALY                1",
        )
    )
    with pytest.raises(E.EIExportError, match="EI_CLASSIFIER_HAS_ANOMALY 1, K-means"):
        E.read_export(exp.root)


def test_block_whose_graph_has_no_model_file_is_refused(tmp_path: Path) -> None:
    exp = export_with_anomaly(tmp_path / "x", 1, "eon")
    (exp.src / "tflite-model" / "tflite_anomaly_4_compiled.cpp").unlink()
    with pytest.raises(E.EIExportError, match="tflite_anomaly_4"):
        E.read_export(exp.root)


# ---------------------------------------------------------------- damaged files


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _model_files(exp: F.Export) -> list[Path]:
    out = []
    for m in exp.models:
        if m.form == "eon":
            out.append(exp.src / m.dir / f"{m.name}_compiled.cpp")
        else:
            out.append(
                exp.src
                / m.dir
                / ("tflite-trained.h" if m.name == "trained_tflite" else f"{m.name}.h")
            )
    return out


def _boundaries(text: str) -> list[int]:
    """Every place a cut leaves whole statements behind: after each ';', '}' and
    line end, and half way."""
    cuts = {m.end() for m in re.finditer(r"[;}]|\n", text)}
    cuts.add(len(text) // 2)
    return sorted(c for c in cuts if 0 < c < len(text.rstrip()))


def _refused(exp: F.Export, path: Path, cut: int, original: str) -> None:
    path.write_text(original[:cut])
    try:
        with pytest.raises(E.EIExportError) as e:
            E.read_export(exp.root)
        msg = str(e.value)
        assert "\n" not in msg and path.name in msg, msg
    finally:
        path.write_text(original)


TFLNODES = F.eon2025("tflite_learn_3", nodes="tflNodes")

EXPORTS = {
    "eon+eon": lambda root: export_with_anomaly(root, 1, "eon"),
    "eon+tflite": lambda root: export_with_anomaly(root, 1, "tflite"),
    "eon2022": lambda root: F.write_export(
        root,
        [F.ModelSpec("tflite_learn_5", eon=F.eon_source(F.mlp_graph(3), F.EonStyle()))],
        year=2022,
    ),
    # 2024+: tflNodes twice (#ifndef TF_LITE_STATIC_MEMORY / #else), used_ops,
    # subgraph index tables; plus an embedded flatbuffer
    "tflnodes+tflite": lambda root: F.write_export(
        root,
        [
            F.ModelSpec("tflite_learn_3", eon=F.eon_source(F.mlp_graph(3, reshape=True), TFLNODES)),
            _anomaly(3, "tflite"),
        ],
        year=2025,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_every_structural_cut_of_every_model_file_is_refused(tmp_path: Path, name: str) -> None:
    exp = EXPORTS[name](tmp_path / name)
    E.read_export(exp.root)  # whole: fine
    for path in _model_files(exp):
        original = path.read_text()
        cuts = _boundaries(original)
        assert len(cuts) > 20
        for cut in cuts:
            _refused(exp, path, cut, original)


def test_a_cut_export_is_neither_prepared_nor_packed(tmp_path: Path) -> None:
    old = export_with_anomaly(tmp_path / "old", 1, "eon")
    new = export_with_anomaly(tmp_path / "new", 2, "eon")
    for path in _model_files(new):
        original = path.read_text()
        text = original[: len(original) // 2]
        path.write_text(text)
        before = _snapshot(new.root)
        with pytest.raises(E.EIExportError):
            E.prepare_ei(new.root)
        assert _snapshot(new.root) == before
        with pytest.raises(E.EIExportError):
            E.pack_ei(old.root, new.root, version=2)
        path.write_text(original)


_SWEEP: dict[str, F.Export] = {}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_cut_of_a_model_file_is_refused(tmp_path: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["eon+tflite", "tflnodes+tflite"]))
    root = tmp_path / name
    if name not in _SWEEP or _SWEEP[name].root != root:
        _SWEEP[name] = EXPORTS[name](root)
    exp = _SWEEP[name]
    path = data.draw(st.sampled_from(_model_files(exp)))
    original = path.read_text()
    cut = data.draw(st.integers(1, len(original) - 1))
    if cut >= _code_end(original):
        # only a trailing comment or blank lines go: still the whole model
        whole = E.read_export(root).fingerprint()
        path.write_text(original[:cut])
        try:
            assert E.read_export(root).fingerprint() == whole
        finally:
            path.write_text(original)
        return
    _refused(exp, path, cut, original)


def _code_end(text: str) -> int:
    """Where the last code (not comment, not whitespace) of a C file ends."""
    end = 0
    for m in re.finditer(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/|\S', text, re.S):
        if not m.group(0).startswith(("//", "/*")):
            end = m.end()
    return end


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        # the TF_LITE_STATIC_MEMORY table points a node at other arrays
        (lambda t: _in_second_table(t, "&g0::inputs1,", "&g0::inputs0,"), "differs from the one"),
        (lambda t: t.replace("{OP_FULLY_CONNECTED, ", "{", 1), "used_ops names 3 operators"),
        (lambda t: t.replace("used_ops[] =", "used_opz[] =", 1), "without a used_ops list"),
    ],
    ids=["tables differ", "used_ops short", "no used_ops"],
)
def test_inconsistent_tflnodes_form_is_refused(
    tmp_path: Path, edit: Callable[[str], str], match: str
) -> None:
    exp = EXPORTS["tflnodes+tflite"](tmp_path / "x")
    path = _model_files(exp)[0]
    text = path.read_text()
    path.write_text(edit(text))
    assert path.read_text() != text
    before = _snapshot(exp.root)
    with pytest.raises(E.EIExportError, match=match) as e:
        E.prepare_ei(exp.root)
    assert "\n" not in str(e.value) and path.name in str(e.value)
    assert _snapshot(exp.root) == before


def _in_second_table(text: str, old: str, new: str) -> str:
    at = text.index("#else\nTfLiteNode tflNodes")
    return text[:at] + text[at:].replace(old, new, 1)
