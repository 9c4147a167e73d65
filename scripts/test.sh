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
# The whole suite, then the files that share emulated boards, servers and
# ports run again each on its own: each must pass alone as well as in the
# suite (docs/DESIGN.md). Every run counts; pytest's 5 (no test collected)
# is a failure.
status=0
run_pytest() {
    local rc
    set +e
    python -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests ($*): treating as failure" >&2
    fi
    [ "$rc" -eq 0 ] || status=1
}
slow=()
for arg in "$@"; do
    [ "$arg" = "--run-slow" ] && slow=(--run-slow)
done
log "pytest: the whole suite"
run_pytest "$@"
for file in tests/hil/test_link.py tests/test_fleet_server.py; do
    log "pytest: $file alone"
    run_pytest "${slow[@]}" "$file"
done
exit "$status"
