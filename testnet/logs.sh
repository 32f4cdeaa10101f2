#!/usr/bin/env bash
# Follows one node's log, one readable line per JSON event. Usage: ./testnet/logs.sh NODE [--raw]
# NODE is a name (node-0) or an index (0).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
node=${1:?usage: ./testnet/logs.sh NODE [--raw]}
[[ "$node" =~ ^[0-9]+$ ]] && node="node-$node"
log="$RUN/$node/node.log"
[ -f "$log" ] || { echo "no log at $log (is the testnet up, and is $node one of its nodes?)" >&2; exit 1; }
if [ "${2:-}" = "--raw" ]; then exec tail -n 50 -F "$log"; fi
PROG=$(cat <<'PY'
import json, sys
skip = {"timestamp", "level", "message", "target"}
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        print(line, end="")
        continue
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
    ts, level, msg = e.get("timestamp", "")[11:23], e.get("level", ""), e.get("message", "")
    print(f"{ts} {level:5} {msg}  {rest}")
PY
)
tail -n 50 -F "$log" | python3 -u -c "$PROG"
