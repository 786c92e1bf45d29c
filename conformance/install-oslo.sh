#!/usr/bin/env bash
# Installs oslo.messaging 14.9.3 and its AMQP 1.0 driver (conformance/oslo-requirements.txt)
# into target/conformance-venv for scenario 15. run.sh calls it; it also runs on its own:
#
#   bash conformance/install-oslo.sh
#
# Idempotent: it does nothing when the venv was made from the same requirements file and its
# imports work. Otherwise it makes the venv again from scratch: /usr/bin/python3 -m venv
# --system-site-packages (so Debian's python3-qpid-proton is the proton module), then
# pip install --no-deps of exactly the pinned list. Installs python3-venv with apt if the
# interpreter has no venv/ensurepip. Prints the venv's python on stdout, and nothing else there
# (progress goes to stderr).
set -euo pipefail
exec 3>&1 1>&2

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY=/usr/bin/python3
REQS="$HERE/oslo-requirements.txt"
VENV="${FERRY_OSLO_VENV:-$ROOT/target/conformance-venv}"
STAMP="$VENV/ferry-oslo-requirements.txt" # the requirements the venv was made from

say() { printf 'install-oslo.sh: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

venv_works() { # the driver, its proton and the pinned versions import
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as md
import warnings
warnings.simplefilter("ignore")
import proton, pyngus  # noqa: F401
from oslo_messaging._drivers import impl_amqp1  # noqa: F401
assert md.version("oslo.messaging") == "14.9.3"
assert md.version("pyngus") == "2.3.1"
EOF
}

if [ -x "$VENV/bin/python" ] && cmp -s "$REQS" "$STAMP" && venv_works; then
    echo "$VENV/bin/python" >&3
    exit 0
fi

if ! "$PY" -c 'import proton' 2>/dev/null; then
    say "$PY cannot import proton: install python3-qpid-proton first (run.sh does)"
    exit 1
fi
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    say "installing python3-venv"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
fi

if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
    say "$VENV exists and is not a venv: not touching it"
    exit 1
fi
say "making $VENV (oslo.messaging 14.9.3, pinned in $(basename "$REQS"))"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-deps -r "$REQS"
if ! venv_works; then
    say "the venv at $VENV does not import oslo.messaging's AMQP 1.0 driver"
    exit 1
fi
cp "$REQS" "$STAMP"
echo "$VENV/bin/python" >&3
