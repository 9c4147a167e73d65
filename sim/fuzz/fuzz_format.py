"""atheris (libFuzzer for Python) target over the host's payload parsers.

    python sim/fuzz/fuzz_format.py CORPUS_DIR -max_total_time=600

The property is format_check.check (parse raises only ModelOTAError;
apply_reference never raises, restores on failure, and accepts only what
the device would). The modelota package is imported inside atheris's
instrumentation so libFuzzer sees its coverage. The corpus can be the one
of fuzz_updater.cpp (``python sim/fuzz/make_corpus.py DIR``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["modelota", "format_check", "make_corpus"]):
    import format_check


def main() -> None:
    atheris.Setup(sys.argv, format_check.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
