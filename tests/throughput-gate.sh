#!/usr/bin/env bash
# The throughput gate of CI: a release build, then the benchmark's throughput step at 200
# invoices/s for 10 s (4 process nodes, 3 providers each, anvil with 1 s blocks), held against
# the committed baseline (docs/benchmarks/baseline.json). It fails when sustained/offered or the
# nodes' CPU seconds per 1,000 invoices is more than 2x worse than the baseline: far above this
# machine's noise, far below a collapse. A ratio against a committed figure, not a timed assert.
# A run over the limit is measured a second time, which decides.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
[ -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] || npm ci --no-audit --no-fund --loglevel=error
cargo build --release --locked --quiet --bin settleproof -p settleproof-node
cargo build --release --locked --quiet --bin bench -p settleproof-tests
out="$TARGET/throughput-gate.json"
# A 10 s window on a shared 2-core machine now and then catches a burst of other work: a run
# over the limit is measured once more, and the gate holds the second run. A real regression
# past 2x fails both.
for attempt in 1 2; do
  SETTLEPROOF_BIN="$TARGET/release/settleproof" "$TARGET/release/bench" --only throughput --rates 200 --out "$out"
  if python3 tests/bench/compare.py "$out" --gate; then
    exit 0
  fi
  [ "$attempt" = 1 ] && echo "throughput gate: over the limit once; measuring again"
done
exit 1
