#!/usr/bin/env bash
# One table of the running testnet: each node's health, peers, next round and its keeper, last
# settlement and webhook backlog (from every node's /status.json).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
M="$RUN/testnet.json"
[ -f "$M" ] || { echo "no testnet running: ./testnet/up.sh first" >&2; exit 1; }
python3 - "$M" <<'PY'
import json, sys, urllib.request
m = json.load(open(sys.argv[1]))
nodes = m["nodes"]
n = len(nodes)
rows = [("node", "health", "peers", "chain head/processed", "next round", "its keeper", "last settlement", "webhook backlog", "halted")]
for node in nodes:
    try:
        s = json.load(urllib.request.urlopen(node["api_url"] + "/status.json", timeout=3))
    except Exception as e:
        rows.append((node["name"], "DOWN", "-", "-", "-", "-", "-", "-", "-"))
        continue
    c = s["health"]["checks"]
    peers = c.get("peers", {})
    chain = c.get("chain", {})
    last = s["settlements"][0] if s["settlements"] else None
    r = s["next_round"]
    rows.append((
        node["name"],
        s["health"]["status"],
        f'{peers.get("connected", "?")}/{peers.get("expected", "?")}',
        f'{chain.get("head", "?")}/{chain.get("checkpoint", "?")}',
        str(r),
        nodes[r % n]["name"],
        f'round {last["round"]} at block {last["block_number"]}' if last else "none",
        str(s.get("webhook_backlog")),
        "yes" if c.get("settlement", {}).get("halted") else "no",
    ))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
for row in rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
PY
