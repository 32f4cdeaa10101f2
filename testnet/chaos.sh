#!/usr/bin/env bash
# Runs a payment load through a fault on the running testnet, heals it, and prints the verdict:
# payments made, settled exactly once on chain, webhooks delivered (distinct webhook-ids),
# duplicates, lost, wrong. Exit code 0 only when nothing was lost or wrong.
# Usage: ./testnet/chaos.sh SCENARIO|all [--quick] [--invoices K] [--rate PER_S] [--fault-s S]
#        [--settle-timeout-s S] [--report FILE] [--markdown docs/reliability.md]
# Scenarios: kill-keeper restart-all provider-lies providers-down partition merchant-down reorg byzantine
#            rotate-operators (changes the operator set for good: `all` runs it last)
#            chain-down (needs ./testnet/up.sh --chains 2; not part of `all`)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] || { sed -n 2,8p "$0" >&2; exit 2; }
[ -f "$RUN/testnet.json" ] || { echo "no testnet running: ./testnet/up.sh first" >&2; exit 1; }
cd "$ROOT"
cargo build --quiet --bin settleproof --bin settleproof-drill
exec "$DRILL" --testnet "$RUN/testnet.json" chaos "$@"
