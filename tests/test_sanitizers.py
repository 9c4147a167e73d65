"""The property tests again, against an ASan+UBSan build of the same sources.

The variant also uses the 16-entry CRC table (the AVR default), so both CRC
implementations run the full suite; a third build checks the bitwise CRC.
"""

from __future__ import annotations

import os
import subprocess
import zlib

import pytest

from native_variants import ROOT, build_variant, python, sanitizer_runtime

PROPERTY_TESTS = [
    "tests/test_roundtrip.py",
    "tests/test_mutations.py",
    "tests/test_stream_failure.py",
    "tests/test_core_api.py",
    "tests/test_quality.py",
]


def sanitized_env() -> dict[str, str]:
    runtime = sanitizer_runtime()
    if runtime is None:
        pytest.skip("gcc's libasan.so not found: cannot preload AddressSanitizer into Python")
    module = build_variant("_modelota_asan", sanitize=True, defines={"MODELOTA_CRC32_TABLE": "1"})
    env = dict(os.environ)
    env.update(
        MODELOTA_NATIVE=str(module),
        LD_PRELOAD=runtime,
        # CPython itself is not leak-clean; everything else aborts on the first report
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        MODELOTA_EXAMPLES=os.environ.get("MODELOTA_ASAN_EXAMPLES", "60"),
    )
    return env


def test_sanitizer_build_catches_a_real_overflow() -> None:
    """Proof the variant is instrumented: an out-of-bounds read must abort the process."""
    env = sanitized_env()
    code = (
        "from modelota.sim.native import load\n"
        "n = load()\n"
        "src = n.ffi.new('uint8_t[8]'); dst = n.ffi.new('uint8_t[64]')\n"
        "n.lib.modelota_memory_read(src, 4, dst, 32)\n"
    )
    r = subprocess.run([python(), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "AddressSanitizer" in r.stderr


def test_property_suite_under_asan_and_ubsan() -> None:
    env = sanitized_env()
    r = subprocess.run(
        [python(), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *PROPERTY_TESTS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and "AddressSanitizer" not in r.stderr, tail


def test_bitwise_crc_variant_matches_zlib() -> None:
    module = build_variant("_modelota_crc0", sanitize=False, defines={"MODELOTA_CRC32_TABLE": "0"})
    code = (
        "import sys, os\n"
        "from modelota.sim.native import crc32\n"
        "data = bytes(range(256)) * 41 + b'tail'\n"
        "print(crc32(data), crc32(data, 12345))\n"
    )
    env = dict(os.environ, MODELOTA_NATIVE=str(module))
    r = subprocess.run([python(), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = bytes(range(256)) * 41 + b"tail"
    assert r.stdout.split() == [str(zlib.crc32(data)), str(zlib.crc32(data, 12345))]
