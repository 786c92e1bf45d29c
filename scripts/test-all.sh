#!/usr/bin/env bash
# The whole test suite, as README.md documents it. Installs what it needs, then runs:
# formatting, lints, every workspace test (codec vectors and fuzz corpora included), docs,
# the real-client conformance suite (conformance/run.sh), a quick run of the benchmark harness
# against its peers, and builds the benchmarks and the fuzz targets so neither can rot.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
# The kill -9 crash test (tests/crash.rs) runs the release broker, 5 kill cycles here; the
# full run is FERRY_CRASH_CYCLES=20 or more.
cargo build --release --bin ferry
FERRY_BIN="$PWD/target/release/ferry" FERRY_CRASH_CYCLES="${FERRY_CRASH_CYCLES:-5}" cargo test --workspace

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "benchmarks build"
cargo bench --workspace --no-run --quiet

step "conformance: real Proton and rhea clients against the release broker"
bash conformance/run.sh

step "benchmark harness: a quick comparison against RabbitMQ and the Proton C broker"
# Installs the peers (apt), builds the Proton C load client, runs the whole matrix with small
# counts, and checks that every broker moved every message with both clients. Figures are
# printed, not asserted.
bash benches/compare.sh --quick --out target/bench-smoke
python3 benches/check-report.py target/bench-smoke/results.json

step "benchmark harness: a quick durable run against RabbitMQ"
# Fails if a Ferry cell fails; the goals are printed, not asserted.
COMPARE_SKIP_INSTALL=1 bash benches/durable.sh --quick --out target/durable-smoke

step "benchmark harness: a quick routing run (fan-out, topic bindings, selectors)"
# Fails if a cell does not move exactly its messages; the figures are printed, not asserted.
bash benches/routing.sh --quick --out target/routing-smoke

step "fuzz targets build"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz needs nightly-only sanitizer flags; the machine has one stable toolchain, which
# accepts them with RUSTC_BOOTSTRAP.
(cd codec && RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none --release)
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none --release)

step "all checks passed"
