#!/usr/bin/env bash
# Builds everything and runs `ferry-bench durable`: 1 KiB durable messages, unsettled, producer
# window 256, 1→1 and 16→16, against Ferry (`[store] sync = "always"`, plus the transient rate
# for reference) and RabbitMQ's durable queues, with the disk's synced write bandwidth, fsyncs
# per second, messages per fsync and publish-to-accepted latency, all in one run. The Markdown
# report is printed at the end and written with durable.json to target/durable-report/ (or
# --out DIR).
#
#   bash benches/durable.sh              the full run (300,000 messages per Ferry cell)
#   bash benches/durable.sh --quick      a smoke run: 20,000 per Ferry cell, 5,000 per RabbitMQ
#   bash benches/durable.sh --help       every option of `ferry-bench durable`
#
# Idempotent: the peers' installer skips what is installed, cargo rebuilds only what changed,
# and every run uses fresh queue names and data directories. Set COMPARE_SKIP_INSTALL=1 to skip
# the installer (RabbitMQ is then left out with a note if it is missing). Exits non-zero when a
# Ferry cell fails or the report cannot be written; goals that are not met are reported, not
# failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { echo "durable.sh: $*" >&2; }

for arg in "$@"; do
    case "$arg" in
    -h | --help)
        cargo build --release -q -p ferry-bench
        exec target/release/ferry-bench durable --help
        ;;
    esac
done

if [ "${COMPARE_SKIP_INSTALL:-0}" != 1 ]; then
    # A failed install leaves RabbitMQ missing; the run then reports it as skipped.
    bash benches/peers/install.sh || say "peer installation failed; RabbitMQ may be skipped"
fi

cargo build --release -p ferry -p ferry-bench

# 16→16 opens 32 connections per cell; RabbitMQ's node wants many descriptors too. Raise the
# soft limit as far as the hard one allows.
want=65536
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$hard" 2>/dev/null || true
else
    ulimit -n "$hard" 2>/dev/null || true
fi
say "open-file limit $(ulimit -n); load average $(cut -d' ' -f1-3 /proc/loadavg)"

exec target/release/ferry-bench durable "$@"
