#!/usr/bin/env bash
# One table of the running testnet: per node and chain, its health, peers, next round and its
# keeper, last settlement and webhook backlog (from every node's /status.json).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
M="$RUN/testnet.json"
[ -f "$M" ] || { echo "no testnet running: ./testnet/up.sh first" >&2; exit 1; }
python3 - "$M" <<'PY'
import json, sys, urllib.request
m = json.load(open(sys.argv[1]))
nodes = m["nodes"]
n = len(nodes)
rows = [("node", "chain", "health", "peers", "chain head/processed", "next round", "its keeper", "last settlement", "webhook backlog", "halted")]
for node in nodes:
    try:
        s = json.load(urllib.request.urlopen(node["api_url"] + "/status.json", timeout=3))
    except Exception as e:
        rows.append((node["name"], "-", "DOWN", "-", "-", "-", "-", "-", "-", "-"))
        continue
    for ch in s["health"].get("chains", []):
        c = ch["checks"]
        peers = c.get("peers", {})
        chain = c.get("chain", {})
        mine = [x for x in s["settlements"] if x.get("chain_id") == ch["chain_id"]]
        last = mine[0] if mine else None
        r = next((x["next_round"] for x in s.get("chains", []) if x["chain_id"] == ch["chain_id"]), 0)
        rows.append((
            node["name"],
            f'{ch["name"]} ({ch["chain_id"]})',
            f'{ch["status"]} (node {s["health"]["status"]})',
            f'{peers.get("connected", "?")}/{peers.get("expected", "?")}',
            f'{chain.get("head", "?")}/{chain.get("checkpoint", "?")}',
            str(r),
            nodes[r % n]["name"],
            f'round {last["round"]} at block {last["block_number"]}' if last else "none",
            str(c.get("webhooks", {}).get("pending")),
            "yes" if c.get("settlement", {}).get("halted") else "no",
        ))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
for row in rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
PY
