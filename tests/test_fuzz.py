"""Coverage-guided fuzzing of the device core and the host parsers.

* ``sim/fuzz/fuzz_updater.cpp`` — libFuzzer over the Updater and the Store
  (RAM model, callback region, flash-resident and RAM models on a simulated
  flash, with and without a public key, random feed splits), built with
  ``clang++ -fsanitize=fuzzer,address,undefined`` and seeded with valid
  payloads from the packer (``sim/fuzz/make_corpus.py``). Its invariants
  (refused: weights, version and floor untouched; accepted: digest, version,
  signature) abort on violation.
* ``sim/fuzz/fuzz_format.py`` — atheris over ``format.parse`` and
  ``format.apply_reference`` (hypothesis over the same property when atheris
  is not installed).

The default suite replays every file in tests/fuzz_regressions/ through both
and runs each fuzzer for a bounded number of inputs, not seconds, so a loaded
machine does the same work, only slower (MODELOTA_FUZZ_RUNS, default 20000
inputs for C++, about 35 s, and 15000 for Python; fixed seed). A crash found here is copied into
tests/fuzz_regressions/ and the test fails: commit the file with the fix.
``--run-slow`` runs ten minutes more; docs/SECURITY.md has the long run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "sim" / "fuzz"
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
CORE = ROOT / "firmware_lib" / "modelota"
RUNS = int(os.environ.get("MODELOTA_FUZZ_RUNS", "20000"))
PY_RUNS = max(2000, RUNS * 3 // 4)

sys.path.insert(0, str(FUZZ))
import make_corpus  # noqa: E402

SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
# the crypto primitives are fuzzed and tested on their own (tests/test_crypto.py):
# here they run optimised, still under ASan/UBSan, without coverage feedback,
# so a signed-device input costs ~0.5 ms instead of ~5 ms
PLAIN = ["ed25519.cpp", "sha512.cpp"]
COVERED = ["crc32.cpp", "status.cpp", "decode.cpp", "updater.cpp", "store.cpp", "sha256.cpp"]


def regression_inputs() -> list[Path]:
    return sorted(p for p in REGRESSIONS.iterdir() if p.is_file() and p.suffix != ".md")


def build_fuzzer(out: Path, defines: tuple[str, ...] = ()) -> Path:
    cxx = shutil.which("clang++")
    assert cxx is not None
    objs = []
    for name in PLAIN:
        obj = out / (name + ".o")
        if not obj.exists():
            cmd = [cxx, "-std=c++11", "-g", "-O2", *SAN, "-c", str(CORE / name), "-o", str(obj)]
            subprocess.run(cmd, check=True, capture_output=True)
        objs.append(str(obj))
    exe = out / ("fuzz_updater" + "".join(d.replace("-D", "-") for d in defines))
    cmd = [
        cxx, "-std=c++11", "-g", "-O1", "-fsanitize=fuzzer", *SAN, "-Wall", "-Wextra", *defines,
        f"-I{ROOT / 'firmware_lib'}", f"-I{ROOT / 'sim'}", str(FUZZ / "fuzz_updater.cpp"),
        *(str(CORE / n) for n in COVERED), str(ROOT / "sim" / "sim_flash.cpp"), *objs,
        "-o", str(exe),
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f"building the fuzz target failed:\n{p.stderr[-3000:]}"
    return exe


@pytest.fixture(scope="session")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cxx = shutil.which("clang++")
    if cxx is None:
        pytest.skip("clang++ not installed (apt-get install clang)")
    out = tmp_path_factory.mktemp("fuzz")
    probe = out / "probe.cpp"
    probe.write_text(
        "#include <stdint.h>\n#include <stddef.h>\n"
        'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n'
    )
    p = subprocess.run(
        [cxx, "-fsanitize=fuzzer,address,undefined", str(probe), "-o", str(out / "probe")],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        pytest.skip(
            "clang++ has no libFuzzer runtime (apt-get install libclang-rt-14-dev): "
            + p.stderr.strip().splitlines()[-1]
        )
    return build_fuzzer(out)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    assert make_corpus.write(d) > 20
    return d


def test_fuzz_key_matches_the_corpus_key() -> None:
    text = (FUZZ / "fuzz_updater.cpp").read_text()
    body = text.split("kPublicKey[32] = {", 1)[1].split("}", 1)[0]
    key = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body))
    assert key == make_corpus.FUZZ_PUBLIC_KEY


def test_seeds_pass_every_check(fuzzer: Path, corpus: Path) -> None:
    """The seeds reach the end of the Updater (else the fuzzer starts blind):
    replayed, they run clean; and the Python reference accepts the valid ones."""
    p = subprocess.run([str(fuzzer), *map(str, sorted(corpus.iterdir()))], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    import format_check

    from modelota import Status, apply_reference
    from modelota.format.payload import Device

    accepted = 0
    for seed in sorted(corpus.iterdir()):
        data = seed.read_bytes()
        format_check.check(data)
        key = make_corpus.FUZZ_PUBLIC_KEY if data[0] & 4 else None
        dev = Device(make_corpus.FP, 1, bytearray(make_corpus.factory()), 256, public_key=key)
        accepted += apply_reference(data[4:], dev).status == Status.Ok
    assert accepted >= 30


def test_keep_and_pred_seeds_reach_their_checks() -> None:
    """The KEEP/PRED seeds do what they are for: the valid ones are applied,
    each near miss is refused at its KEEP or PRED check (BadChunk) or, when
    the fields are legal but the prediction is another, by the digest; the
    native Updater (RAM and callback region, fed in pieces) and a
    flash-resident model behind the Store end as the Python reference does,
    with the same weights."""
    from modelota import Status, apply_reference
    from modelota.format.payload import Chunk2, Device, parse
    from modelota.sim.device import FlashModelDevice, Layout
    from modelota.sim.flash import SimFlash
    from modelota.sim.native import Updater

    seeds = make_corpus.pred_payloads()
    assert sum(n.startswith("v2-pred-miss-") for n in seeds) >= 12
    factory = make_corpus.factory()
    kinds = set()
    for name, payload in seeds.items():
        key = make_corpus.FUZZ_PUBLIC_KEY if name.startswith("signed") else None
        dev = Device(make_corpus.FP, 1, bytearray(factory), 1024, public_key=key)
        want = apply_reference(payload, dev).status
        assert (want == Status.Ok) == ("-miss-" not in name), (name, want)
        assert want in (Status.Ok, Status.BadChunk, Status.DigestMismatch), (name, want)
        kinds.add(want)
        if want == Status.Ok:
            parsed = {c.encoding for c in parse(payload).chunks if isinstance(c, Chunk2)}
            assert any("keep" in e or "pred" in e for e in parsed), (name, parsed)
        for mode in ("ram", "callback"):
            weights = bytearray(factory)
            u = Updater(weights, fingerprint=make_corpus.FP, current_version=1, buffer_len=1024,
                        target_mode=mode, public_key=key)  # fmt: skip
            got = u.apply(payload, splits=list(range(7, len(payload), 61)))
            assert (got, bytes(weights)) == (want, bytes(dev.weights)), (name, mode, got)
        layout = Layout.plan(128, 4, make_corpus.REGION, 4096)
        flash = SimFlash(128, layout.block_count, 4, 0xFF)
        flash.load(0, factory)
        board = FlashModelDevice(flash, layout, make_corpus.FP, 1, public_key=key)
        assert board.boot() == Status.Ok
        got = board.update(payload, piece=45)
        assert (got, board.weights()) == (want, bytes(dev.weights)), (name, "store", got)
    assert kinds == {Status.Ok, Status.BadChunk, Status.DigestMismatch}


def test_fix_crcs_restores_every_crc_of_a_v2_payload() -> None:
    """Control bit 6's CRC repair (format_check.fix_crcs, the mirror of
    fuzz_updater.cpp's): every v2 seed with its chunk CRCs (and, unsigned,
    its header CRC) zeroed comes back byte for byte; v1 passes unchanged."""
    import format_check

    from modelota import ModelOTAError
    from modelota.format.payload import parse

    fixed = 0
    for name, data in make_corpus.payloads().items():
        broken = bytearray(data)
        try:
            p = parse(data)
        except ModelOTAError:
            continue  # the damaged seeds
        if not p.v2:
            assert format_check.fix_crcs(bytes(broken)) == data, name
            continue
        if not p.header.is_signed:
            broken[p.header.length - 4 : p.header.length] = bytes(4)
        for _, end in p.chunk_spans():
            broken[end - 4 : end] = bytes(4)
        assert bytes(broken) != data or not p.chunks
        assert format_check.fix_crcs(bytes(broken)) == data, name
        fixed += 1
    assert fixed >= 20


def test_regressions_replay(fuzzer: Path) -> None:
    """Every crash ever found (and the hand-made edge cases) stays fixed."""
    inputs = regression_inputs()
    assert len(inputs) >= 5
    p = subprocess.run([str(fuzzer), *map(str, inputs)], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    import format_check

    for f in inputs:
        format_check.check(f.read_bytes())


def run_fuzzer(fuzzer: Path, corpus: Path, tmp: Path, budget: str, seed: int) -> None:
    """``budget``: ``-runs=N`` (the default suite: a count of inputs) or
    ``-max_total_time=S`` (the long run)."""
    work = tmp / "corpus"
    shutil.copytree(corpus, work, dirs_exist_ok=True)
    for f in regression_inputs():
        shutil.copy(f, work / f.name)
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    p = subprocess.run(
        [
            str(fuzzer), str(work), budget, f"-seed={seed}",
            "-timeout=10", "-rss_limit_mb=2048", "-max_len=4096", "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
        ],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", p.stderr))
    print(f"\nfuzz_updater: {stats.get('number_of_executed_units', '?')} inputs ({budget})")
    crashes = sorted(artifacts.iterdir())
    kept = []
    for c in crashes:
        dest = REGRESSIONS / f"updater-{c.name}"
        shutil.copy(c, dest)
        kept.append(dest.relative_to(ROOT).as_posix())
    assert p.returncode == 0 and not crashes, (
        f"the fuzzer found a failure; kept as {kept} (commit them with the fix):\n"
        + p.stderr[-4000:]
    )
    assert int(stats.get("number_of_executed_units", 0)) > 1000


def test_the_harness_catches_an_unrestored_byte(fuzzer: Path, corpus: Path, tmp_path: Path) -> None:
    """Self-test: with a planted restore bug (one byte left changed after a
    ChunkCrc refusal) the fuzzer must find a crash (it does within the first
    few dozen inputs), and the invariant message must name the check."""
    planted = build_fuzzer(fuzzer.parent, ("-DFUZZ_PLANTED_BUG",))
    work = tmp_path / "corpus"
    shutil.copytree(corpus, work)
    p = subprocess.run(
        [str(planted), str(work), "-runs=200000", "-seed=1", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert p.returncode != 0, "the planted bug went unnoticed"
    assert "invariant failed: memcmp(region, factory, kRegion) == 0" in p.stderr
    assert list(tmp_path.glob("crash-*")), "no crash input written"


def test_fuzz_updater_bounded(fuzzer: Path, corpus: Path, tmp_path: Path) -> None:
    run_fuzzer(fuzzer, corpus, tmp_path, f"-runs={RUNS}",
               seed=int(os.environ.get("MODELOTA_FUZZ_SEED", 1)))  # fmt: skip


@pytest.mark.slow
def test_fuzz_updater_long(fuzzer: Path, corpus: Path, tmp_path: Path) -> None:
    run_fuzzer(fuzzer, corpus, tmp_path, "-max_total_time=600",
               seed=int.from_bytes(os.urandom(4), "little"))  # fmt: skip


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris(corpus: Path, tmp: Path, runs: int) -> None:
    work = tmp / "pycorpus"
    shutil.copytree(corpus, work)
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    p = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_format.py"), str(work), f"-runs={runs}",
         "-seed=1", "-timeout=10", "-max_len=4096", f"-artifact_prefix={artifacts}/"],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    crashes = sorted(artifacts.iterdir())
    kept = []
    for c in crashes:
        dest = REGRESSIONS / f"format-{c.name}"
        shutil.copy(c, dest)
        kept.append(dest.relative_to(ROOT).as_posix())
    assert p.returncode == 0 and not crashes, (
        f"atheris found a failure; kept as {kept}:\n" + p.stderr[-4000:]
    )
    done = re.findall(r"Done (\d+) runs", p.stderr)
    assert done and int(done[-1]) > 1000, p.stderr[-2000:]


@pytest.mark.skipif(not atheris_available(), reason="atheris not installed (pip install atheris)")
def test_fuzz_python_parsers_atheris(corpus: Path, tmp_path: Path) -> None:
    run_atheris(corpus, tmp_path, PY_RUNS)


@pytest.mark.skipif(atheris_available(), reason="atheris is installed: the atheris test runs")
def test_fuzz_python_parsers_hypothesis(corpus: Path) -> None:
    """Without atheris: hypothesis mutates the seeds against the same property."""
    import format_check
    from hypothesis import given, settings
    from hypothesis import strategies as st

    seeds = [p.read_bytes() for p in sorted(corpus.iterdir())]

    @settings(max_examples=2000, deadline=None)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        raw = bytearray(data.draw(st.sampled_from(seeds)))
        for _ in range(data.draw(st.integers(0, 6))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255))
        end = data.draw(st.integers(0, len(raw)))
        format_check.check(bytes(raw[:end]) + data.draw(st.binary(max_size=8)))

    prop()
