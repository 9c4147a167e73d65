#!/usr/bin/env bash
# The README's first command: install what is needed, then update a simulated
# device end to end through the real C++ core.
set -euo pipefail
MODELOTA_EXTRAS="${MODELOTA_EXTRAS:-demo}"
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
log "modelota demo"
modelota demo
