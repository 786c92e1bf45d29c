#!/usr/bin/env bash
# Re-record codec/tests/vectors/{proton,rhea,quirks}.vectors from the real
# libraries.  Safe to run again: it installs only what is missing and
# rewrites both vector files.
#
#   bash codec/tests/vectors/record/record.sh
#
# Needs: apt (as root, for python3-qpid-proton), node + npm (for rhea@3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VECTORS="$(dirname "$HERE")"
PY=/usr/bin/python3   # Debian's interpreter: python3-qpid-proton installs for it only

if ! "$PY" -c 'import proton' 2>/dev/null; then
    echo "record.sh: installing python3-qpid-proton" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-qpid-proton
fi

if [ ! -f "$HERE/node_modules/rhea/package.json" ]; then
    echo "record.sh: installing rhea@3 into $HERE/node_modules" >&2
    (cd "$HERE" && npm install --no-audit --no-fund)
fi

PROTON_DEB_VERSION="$(dpkg-query -W -f='${Version}' python3-qpid-proton 2>/dev/null || true)"
export PROTON_DEB_VERSION

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Each recorder stops its own servers; `timeout` is only a last resort.
timeout 180 "$PY" "$HERE/record_proton.py" "$tmp/proton.vectors" "$tmp/proton-quirks.vectors"
(cd "$HERE" && timeout 180 node "$HERE/record_rhea.js" "$tmp/rhea.json")
timeout 60 "$PY" "$HERE/vectorlib.py" emit "$tmp/rhea.json" "$tmp/rhea.vectors" "$tmp/rhea-quirks.vectors"
timeout 60 "$PY" "$HERE/vectorlib.py" merge "$tmp/quirks.vectors" "$tmp/proton-quirks.vectors" "$tmp/rhea-quirks.vectors"

"$PY" "$HERE/vectorlib.py" check "$tmp/proton.vectors" "$tmp/rhea.vectors" "$tmp/quirks.vectors"

mv "$tmp/proton.vectors" "$VECTORS/proton.vectors"
mv "$tmp/rhea.vectors" "$VECTORS/rhea.vectors"
mv "$tmp/quirks.vectors" "$VECTORS/quirks.vectors"
echo "record.sh: wrote proton.vectors, rhea.vectors and quirks.vectors in $VECTORS" >&2
