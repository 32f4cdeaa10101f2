#!/usr/bin/env bash
# Creates K invoices on the running testnet and pays them at a given rate (native, ERC-20,
# partial and late payments), then reports how many were settled and notified, with latency
# percentiles. Exit code 0 only when nothing was lost or wrong.
# Usage: ./testnet/pay.sh [--invoices K] [--rate PER_S] [--settle-timeout-s S] [--report FILE]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ -f "$RUN/testnet.json" ] || { echo "no testnet running: ./testnet/up.sh first" >&2; exit 1; }
cd "$ROOT"
cargo build --quiet --bin settleproof --bin settleproof-drill
exec "$DRILL" --testnet "$RUN/testnet.json" pay "$@"
