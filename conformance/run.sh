#!/usr/bin/env bash
# The real third-party client conformance suite (see conformance/README.md).
#
#   bash conformance/run.sh              every scenario, then the throughput probe
#   bash conformance/run.sh s05 s11      only scenarios whose file name contains an argument
#                                        (add "throughput" for the probe)
#
# Installs what it needs (Debian's python3-qpid-proton, rhea from npm, oslo.messaging from PyPI
# into a venv under target/: install-oslo.sh), builds the release
# broker, runs each scenario against its own broker process and ends with the line
# "N passed, N failed"; exits non-zero if any scenario failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY=/usr/bin/python3   # Debian's interpreter: python3-qpid-proton installs for it, not for pyenv's
SCENARIO_LIMIT="${FERRY_CONFORMANCE_LIMIT:-180}" # seconds per scenario (each normally takes a few)
PROBE_LIMIT=300

say() { printf '%s\n' "$*"; }

# --- processes the scenarios start are listed here (PID -> start time); killed on exit -----------
PIDDIR="$(mktemp -d "${TMPDIR:-/tmp}/ferry-conformance-pids.XXXXXX")"
export FERRY_CONFORMANCE_PIDDIR="$PIDDIR"
export PYTHONDONTWRITEBYTECODE=1
CHILD=""
kill_leftovers() {
    local f pid want have
    for f in "$PIDDIR"/*; do
        [ -e "$f" ] || continue
        pid="$(basename "$f")"
        want="$(cat "$f" 2>/dev/null)"
        # Field 22 of /proc/PID/stat (start time) must match, so a reused PID is left alone.
        have="$(sed -E 's/.*\) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)"
        if [ -n "$have" ] && [ "$have" = "$want" ]; then
            kill -CONT "$pid" 2>/dev/null
            kill -KILL "$pid" 2>/dev/null && say "run.sh: killed leftover process $pid" >&2
        fi
        rm -f "$f"
    done
}
cleanup() {
    local rc=$?
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null # timeout passes it on; the scenario stops its processes
        sleep 2
        kill -KILL "$CHILD" 2>/dev/null
    fi
    kill_leftovers
    rm -rf "$PIDDIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- dependencies ----------------------------------------------------------------------------------
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

if ! dpkg-query -W -f='${Status}' python3-qpid-proton 2>/dev/null | grep -q "install ok installed"; then
    say "run.sh: installing python3-qpid-proton"
    as_root apt-get update -q || exit 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-qpid-proton || exit 1
fi
if ! "$PY" -c 'import proton' 2>/dev/null; then
    say "run.sh: $PY cannot import proton after installing python3-qpid-proton" >&2
    exit 1
fi

rhea_ok() {
    (cd "$HERE" && node -e '
        const want = require("./package-lock.json").packages["node_modules/rhea"].version;
        const have = require("./node_modules/rhea/package.json").version;
        process.exit(want === have ? 0 : 1);' 2>/dev/null)
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "run.sh: node and npm are needed for the rhea scenarios" >&2
    exit 1
fi
if ! rhea_ok; then
    say "run.sh: installing rhea into conformance/node_modules"
    (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error) || exit 1
    rhea_ok || { say "run.sh: rhea did not install as locked" >&2; exit 1; }
fi

# oslo.messaging 14.9.3 (scenario 15): a venv in target/ pinned by oslo-requirements.txt;
# install-oslo.sh does nothing when it is already there, and prints its python.
FERRY_OSLO_PYTHON="$(bash "$HERE/install-oslo.sh")" || { say "run.sh: install-oslo.sh failed" >&2; exit 1; }
export FERRY_OSLO_PYTHON

# --- the broker -------------------------------------------------------------------------------------
say "run.sh: cargo build --release"
(cd "$ROOT" && cargo build --release --quiet) || exit 1
export FERRY_BIN="$ROOT/target/release/ferry"

# --- scenarios --------------------------------------------------------------------------------------
FILTERS=("$@")
selected() { # NAME: whether the command line selects it (everything when no arguments)
    local a
    [ "${#FILTERS[@]}" -eq 0 ] && return 0
    for a in "${FILTERS[@]}"; do
        case "$1" in *"$a"*) return 0 ;; esac
    done
    return 1
}

run_bounded() { # LIMIT SCRIPT: runs it in the background (so traps fire at once), output indented
    timeout -k 10 "$1" "$PY" "$2" > >(sed -u 's/^/   /') 2>&1 &
    CHILD=$!
    wait "$CHILD"
    local rc=$?
    CHILD=""
    sleep 0.05 # let the output filter flush
    return "$rc"
}

passed=0
failed=0
failures=()
suite_start=$(date +%s)
for script in "$HERE"/scenarios/s[0-9][0-9]_*.py; do
    name="$(basename "$script" .py)"
    selected "$name" || continue
    say ""
    say "== $name"
    start=$(date +%s.%N)
    run_bounded "$SCENARIO_LIMIT" "$script"
    rc=$?
    kill_leftovers # only if the scenario itself was killed before it could stop them
    elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        say "PASS $name (${elapsed}s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            say "FAIL $name: exceeded the ${SCENARIO_LIMIT}s limit (${elapsed}s)"
        else
            say "FAIL $name (exit $rc, ${elapsed}s)"
        fi
    fi
done

# --- throughput probe: printed, not asserted, not counted -------------------------------------------
if selected throughput; then
    say ""
    say "== throughput probe (not counted)"
    run_bounded "$PROBE_LIMIT" "$HERE/probes/throughput.py" || say "   (the probe did not complete; see above)"
fi

kill_leftovers
say ""
say "conformance: $(( $(date +%s) - suite_start ))s${failures[*]:+; failed: ${failures[*]}}"
say "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
