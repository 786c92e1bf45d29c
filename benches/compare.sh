#!/usr/bin/env bash
# Builds everything and runs `ferry-bench compare`: Ferry, RabbitMQ (AMQP 1.0 plugin) and the
# Qpid Proton C example broker, driven by ferry-bench and by the Proton C load client. The
# Markdown report is printed at the end and written with results.json and the SVG charts to
# target/bench-report/ (or --out DIR).
#
#   bash benches/compare.sh              the full matrix (tens of minutes on 2 cores)
#   bash benches/compare.sh --quick      a smoke run: small counts, 1,000 idle connections
#   bash benches/compare.sh --help       every option of `ferry-bench compare`
#
# Idempotent: the peers' installer skips what is installed, cargo rebuilds only what changed,
# and every run uses fresh queue names. Set COMPARE_SKIP_INSTALL=1 to skip the installer (the
# run then skips the peers that are missing). Exits non-zero when compare fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { echo "compare.sh: $*" >&2; }

for arg in "$@"; do
    case "$arg" in
    -h | --help)
        cargo build --release -q -p ferry-bench
        exec target/release/ferry-bench compare --help
        ;;
    esac
done

if [ "${COMPARE_SKIP_INSTALL:-0}" != 1 ]; then
    # A failed install leaves the peers missing; compare then reports them as skipped.
    bash benches/peers/install.sh || say "peer installation failed; missing peers will be skipped"
fi

cargo build --release -p ferry -p ferry-bench

# The idle cell holds 10,000 connections: this process, the brokers it starts (they inherit
# the limit) and the client each need a descriptor per connection. Raise the soft limit as
# far as the hard one allows; compare reports (rather than fails) if it is still too low.
want=65536
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$hard" 2>/dev/null || true
else
    ulimit -n "$hard" 2>/dev/null || true
fi
say "open-file limit $(ulimit -n)"

exec target/release/ferry-bench compare "$@"
