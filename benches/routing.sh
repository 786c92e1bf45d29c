#!/usr/bin/env bash
# Builds the harness and runs `ferry-bench routing`: what routing costs, against Ferry's own
# 1→1 queue rate at the same message size and settle mode, all in one run:
#   fan-out   1 producer → fanout exchange → 10 subscribers: total deliveries/s vs 1→1
#             (64 B and 1 KiB, pre-settled; goal ≥ 80 %)
#   topic     4→4 through a topic exchange with 10,000 bindings (half with * or #), each
#             message matching exactly one: vs the same links on queues addressed directly
#             (goal ≥ 80 %)
#   selector  a subscriber with `color = 'red' AND size > 10`, half the messages matching:
#             published/s vs the same subscriber without it (goal ≥ 50 %); the same on a
#             queue, with a second consumer holding the complement, is opt-in:
#             --cells fanout:64:presettled,…,selector-queue:1024:unsettled
# The broker's config (benches/ferry-bench.toml plus the generated exchanges, queues and
# bindings) is written to the output directory with the report (routing.md, routing.json);
# every cell runs on a fresh broker process. The Markdown report is printed at the end.
#
#   bash benches/routing.sh              the full run (1,000,000 deliveries per cell)
#   bash benches/routing.sh --quick      a smoke run: 20,000 deliveries per cell
#   bash benches/routing.sh --repeat 5   every cell five times; the report keeps the medians
#   bash benches/routing.sh --help       every option of `ferry-bench routing`
#
# FERRY_BIN=PATH measures that broker binary and builds only the harness; by default the
# broker is built here and target/release/ferry is measured (under CARGO_TARGET_DIR if set).
# Exits non-zero when a cell does not move exactly the messages it should or the report
# cannot be written; goals that are not met are reported, not failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { echo "routing.sh: $*" >&2; }

target_dir=${CARGO_TARGET_DIR:-target}
bench="$target_dir/release/ferry-bench"

for arg in "$@"; do
    case "$arg" in
    -h | --help)
        cargo build --release -q -p ferry-bench
        exec "$bench" routing --help
        ;;
    esac
done

if [ -n "${FERRY_BIN:-}" ]; then
    ferry=$FERRY_BIN
    cargo build --release -p ferry-bench
else
    ferry="$target_dir/release/ferry"
    cargo build --release -p ferry -p ferry-bench
fi
if [ ! -x "$ferry" ]; then
    say "no broker binary at $ferry"
    exit 1
fi
say "broker $ferry; load average $(cut -d' ' -f1-3 /proc/loadavg)"

exec "$bench" routing --ferry "$ferry" "$@"
