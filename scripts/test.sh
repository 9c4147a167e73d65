#!/usr/bin/env bash
# The README's second command (and .ci/run): install everything the suite
# needs, then run it. Extra arguments go to pytest (e.g. --run-slow).
set -euo pipefail
MODELOTA_APT_EXTRA="${MODELOTA_APT_EXTRA:-} gcc-avr avr-libc arduino-core-avr arduino-builder \
qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-misc clang \
nginx-light postgresql chromium chromium-driver"
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# libFuzzer runtime for tests/test_fuzz.py, in its own apt call so that a
# name this Debian does not have cannot stop the packages above
if command -v clang >/dev/null 2>&1; then
    apt_install "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
fi
log "ruff"
ruff check host_tools sim tests bench
log "pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating as failure" >&2
    exit 1
fi
exit "$rc"
