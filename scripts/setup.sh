# Sourced by demo.sh and test.sh: installs what ModelOTA needs on a fresh
# Debian machine (as root) and activates a virtual environment in .venv.
#   MODELOTA_APT_EXTRA  extra Debian packages to try to install
#   MODELOTA_VENV       where the virtual environment lives (default .venv)
#   MODELOTA_EXTRAS     the package extras to install (default test: all of them)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MODELOTA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages that are missing. Failure is not fatal: a
# test that needs a missing tool skips itself and says why.
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "not root or no apt-get: cannot install ${missing[*]}"
        return 0
    fi
    log "apt-get install ${missing[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null; }; then
        log "warning: could not install some of: ${missing[*]} (tests needing them will skip)"
    fi
}

# A C++ compiler and Python's headers build the native core at pip install.
base_packages=()
command -v g++ >/dev/null 2>&1 || base_packages+=(g++)
"$PY" - <<'PYEOF' 2>/dev/null || base_packages+=(python3-dev)
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PYEOF
"$PY" -c "import ensurepip, venv" 2>/dev/null || base_packages+=(python3-venv)
# shellcheck disable=SC2086
apt_install "${base_packages[@]}" ${MODELOTA_APT_EXTRA:-}

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
EXTRAS="${MODELOTA_EXTRAS:-test}"
log "pip install -e .[$EXTRAS] (builds the native core from firmware_lib/)"
python -m pip install -q --disable-pip-version-check -e "$ROOT[$EXTRAS]"
cd "$ROOT"
