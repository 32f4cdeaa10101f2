# Shared helpers of the testnet scripts (sourced, not run).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN="${SETTLEPROOF_TESTNET_DIR:-$ROOT/testnet/.run}"
ANVIL="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
CAST="$ROOT/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/settleproof"
PROXY="${CARGO_TARGET_DIR:-$ROOT/target}/debug/settleproof-rpc-proxy"
DRILL="${CARGO_TARGET_DIR:-$ROOT/target}/debug/settleproof-drill"
DEVNET="${CARGO_TARGET_DIR:-$ROOT/target}/debug/settleproof-devnet"

# json FILE EXPR: evaluates a Python expression over the parsed file bound to `d`.
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# alive PIDFILE: whether the process in PIDFILE runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_http URL SECONDS: waits until URL answers 2xx.
wait_http() {
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if 200 <= r.status < 300:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.3)
sys.exit(1)
PY
}

# wait_rpc URL SECONDS: waits until a JSON-RPC endpoint answers eth_blockNumber.
wait_rpc() {
  python3 - "$1" "$2" <<'PY'
import json, sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
end = time.time() + limit
while time.time() < end:
    try:
        req = urllib.request.Request(url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            if "result" in json.load(r):
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
}
