#!/usr/bin/env bash
# Stops everything ./testnet/up.sh started, by PID (TERM, then KILL after 10 s). Keeps the logs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

shopt -s nullglob
pids=()
for f in "$RUN"/node-*.pid "$RUN"/merchant.pid "$RUN"/proxies.pid "$RUN"/anvil.pid "$RUN"/anvil-*.pid; do
  if alive "$f"; then pids+=("$(cat "$f")"); fi
  rm -f "$f"
done
[ ${#pids[@]} -eq 0 ] && { echo "no testnet process is running"; exit 0; }
kill -TERM "${pids[@]}" 2>/dev/null || true
for _ in $(seq 1 50); do
  left=()
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
  [ ${#left[@]} -eq 0 ] && { echo "testnet stopped (${#pids[@]} processes)"; exit 0; }
  sleep 0.2
done
kill -KILL "${left[@]}" 2>/dev/null || true
echo "testnet stopped (${#left[@]} of ${#pids[@]} processes needed KILL)"
