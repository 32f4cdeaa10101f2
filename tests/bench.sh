#!/usr/bin/env bash
# Runs every benchmark and writes docs/benchmarks.md with its plots (docs/benchmarks/*.png) and
# the raw numbers (docs/benchmarks/results.json). Release build; the measurements take about
# 5 minutes on 2 cores (the first build adds a few). Benchmarks are not tests: nothing here
# fails on a slow number.
# Every figure more than 15% worse than docs/benchmarks/baseline.json is printed at the end,
# with a one-line verdict against the goals (tests/bench/compare.py).
# Usage: ./tests/bench.sh [--quick]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

[ -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] || npm ci --no-audit --no-fund --loglevel=error
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "matplotlib==3.11.2"

echo "building (release)"
cargo build --release --quiet --bin settleproof -p settleproof-node
cargo build --release --quiet --bin bench -p settleproof-tests
started=$(date +%s)

echo "crypto and batching (criterion)"
quick=()
[ "${1:-}" = "--quick" ] && quick=(--warm-up-time 0.2 --measurement-time 0.5)
rm -rf "$TARGET/criterion"
cargo bench --quiet -p settleproof-consensus --bench crypto -- "${quick[@]}" >"$TARGET/criterion.log" 2>&1 \
  || { cat "$TARGET/criterion.log" >&2; echo "criterion failed" >&2; exit 1; }
grep -E "^[a-z_]+/|time:" "$TARGET/criterion.log" || true

echo "testnet measurements"
SETTLEPROOF_BIN="$TARGET/release/settleproof" "$TARGET/release/bench" --criterion "$TARGET/criterion" "$@"

python3 tests/bench/report.py
python3 tests/bench/compare.py docs/benchmarks/results.json
echo "benchmarks done in $(( $(date +%s) - started )) s (after the build): docs/benchmarks.md"
