#!/usr/bin/env bash
# The throughput gate of CI: a release build, then the benchmark's throughput step at 200
# invoices/s for 10 s (4 process nodes, 3 providers each, anvil with 1 s blocks), held against
# the committed baseline (docs/benchmarks/baseline.json). It fails when sustained/offered or the
# nodes' CPU seconds per 1,000 invoices is more than 2x worse than the baseline: far above this
# machine's noise, far below a collapse. A ratio against a committed figure, not a timed assert.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
[ -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] || npm ci --no-audit --no-fund --loglevel=error
cargo build --release --locked --quiet --bin settleproof -p settleproof-node
cargo build --release --locked --quiet --bin bench -p settleproof-tests
out="$TARGET/throughput-gate.json"
SETTLEPROOF_BIN="$TARGET/release/settleproof" "$TARGET/release/bench" --only throughput --rates 200 --out "$out"
python3 tests/bench/compare.py "$out" --gate
