#!/usr/bin/env bash
# Starts a local settleproof testnet: anvil, the contracts, N nodes and a demo merchant.
# Usage: ./testnet/up.sh [--nodes N] [--chains C] [--webhook-url URL] [--block-time S] [--confirmations K]
#   --chains C: C anvils (chain ids 31337, 31338, ...), the contracts on each, every node serving all.
#   An https:// webhook URL is verified against the system roots; export SSL_CERT_FILE=ca.pem
#   (the CA that signed the endpoint) before starting, and the nodes trust it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NODES=4 CHAINS=1 WEBHOOK_URL="" BLOCK_TIME=1 CONFIRMATIONS=2
ANVIL_PORT=${ANVIL_PORT:-8545} API_PORT=${API_PORT:-8700} P2P_PORT=${P2P_PORT:-9700} MERCHANT_PORT=${MERCHANT_PORT:-9999}
ADMIN_PORT=${ADMIN_PORT:-8800}
PROXY_PORT=${PROXY_PORT:-8600} PROVIDERS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --chains) CHAINS=$2; shift 2 ;;
    --webhook-url) WEBHOOK_URL=$2; shift 2 ;;
    --block-time) BLOCK_TIME=$2; shift 2 ;;
    --confirmations) CONFIRMATIONS=$2; shift 2 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 64 ] || { echo "--nodes must be 1..64" >&2; exit 2; }
[[ "$CHAINS" =~ ^[0-9]+$ ]] && [ "$CHAINS" -ge 1 ] && [ "$CHAINS" -le 4 ] || { echo "--chains must be 1..4" >&2; exit 2; }

if alive "$RUN/anvil.pid"; then
  echo "a testnet is already running (see $RUN/testnet.json); stop it with ./testnet/down.sh" >&2
  exit 1
fi

cd "$ROOT"
[ -x "$ANVIL" ] || { echo "installing the pinned anvil, cast and solc (npm ci)"; npm ci --no-audit --no-fund --loglevel=error; }
echo "building settleproof"
cargo build --quiet --bin settleproof --bin settleproof-rpc-proxy --bin settleproof-drill --bin settleproof-devnet

rm -rf "$RUN"
mkdir -p "$RUN/merchant"

echo "starting anvil on 127.0.0.1:$ANVIL_PORT (block time ${BLOCK_TIME}s)"
nohup "$ANVIL" --host 127.0.0.1 --port "$ANVIL_PORT" --block-time "$BLOCK_TIME" --config-out "$RUN/anvil.json" \
  >"$RUN/anvil.log" 2>&1 &
echo $! >"$RUN/anvil.pid"
RPC="http://127.0.0.1:$ANVIL_PORT"
wait_rpc "$RPC" 20 || { echo "anvil did not start; see $RUN/anvil.log" >&2; exit 1; }

# Further chains: anvil k on ANVIL_PORT + k with chain id 31337 + k; nodes read them directly.
MORE_CHAINS=()
for ((k = 1; k < CHAINS; k++)); do
  port=$((ANVIL_PORT + k))
  echo "starting anvil of chain $((31337 + k)) on 127.0.0.1:$port"
  nohup "$ANVIL" --host 127.0.0.1 --port "$port" --chain-id $((31337 + k)) --block-time "$BLOCK_TIME" \
    --config-out "$RUN/anvil-$k.json" >"$RUN/anvil-$k.log" 2>&1 &
  echo $! >"$RUN/anvil-$k.pid"
  wait_rpc "http://127.0.0.1:$port" 20 || { echo "anvil $k did not start; see $RUN/anvil-$k.log" >&2; exit 1; }
  MORE_CHAINS+=(--more-chain "http://127.0.0.1:$port,$RUN/anvil-$k.json")
done

echo "starting $((PROVIDERS * NODES)) fault-injecting RPC proxies from 127.0.0.1:$PROXY_PORT ($PROVIDERS per node)"
nohup "$PROXY" --upstream "$RPC" --listen "127.0.0.1:$PROXY_PORT" --count $((PROVIDERS * NODES)) >"$RUN/proxies.log" 2>&1 &
echo $! >"$RUN/proxies.pid"
for ((p = 0; p < PROVIDERS * NODES; p++)); do
  wait_rpc "http://127.0.0.1:$((PROXY_PORT + p))" 20 || { echo "proxy $p did not start; see $RUN/proxies.log" >&2; exit 1; }
done

DEMO_MERCHANT=0
if [ -z "$WEBHOOK_URL" ]; then
  WEBHOOK_URL="http://127.0.0.1:$MERCHANT_PORT/webhooks"
  DEMO_MERCHANT=1
fi

echo "deploying contracts and writing configs for $NODES nodes"
"$DEVNET" init --rpc "$RPC" --anvil-config "$RUN/anvil.json" --dir "$RUN" --nodes "$NODES" \
  --webhook-url "$WEBHOOK_URL" --api-port "$API_PORT" --p2p-port "$P2P_PORT" --admin-port "$ADMIN_PORT" --confirmations "$CONFIRMATIONS" \
  --proxy-port "$PROXY_PORT" --providers "$PROVIDERS" ${MORE_CHAINS[@]+"${MORE_CHAINS[@]}"}
# The demo merchant's signing key, for `settleproof merchant request` (readable by its owner only).
(umask 077; json "$RUN/testnet.json" "d['merchant']['private_key_pem']" >"$RUN/merchant/key.pem")

if [ "$DEMO_MERCHANT" = 1 ]; then
  nohup "$DEVNET" demo-merchant --listen "127.0.0.1:$MERCHANT_PORT" --testnet "$RUN/testnet.json" \
    --out "$RUN/merchant/webhooks.jsonl" >"$RUN/merchant/merchant.log" 2>&1 &
  echo $! >"$RUN/merchant.pid"
fi

for ((i = 0; i < NODES; i++)); do
  nohup "$BIN" node --config "$RUN/node-$i/config.toml" >"$RUN/node-$i/node.log" 2>&1 &
  echo $! >"$RUN/node-$i.pid"
done

python3 - "$RUN" "$DEMO_MERCHANT" <<'PY'
import json, sys, pathlib
run, demo = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
path = run / "testnet.json"
d = json.loads(path.read_text())
for n in d["nodes"]:
    n["pid"] = int((run / f"{n['name']}.pid").read_text())
d["anvil"] = {"pid": int((run / "anvil.pid").read_text()), "log": str(run / "anvil.log")}
for k, c in enumerate(d["chains"]):
    c["anvil"] = d["anvil"] if k == 0 else {"pid": int((run / f"anvil-{k}.pid").read_text()), "log": str(run / f"anvil-{k}.log")}
d["rpc_proxies"] = {"pid": int((run / "proxies.pid").read_text()), "log": str(run / "proxies.log"),
                    "control": "POST <provider url>/_fault with {\"mode\": \"down\"|\"delay\"|\"error\"|\"hide_logs\"|\"forge_log\"|\"none\"}"}
for n in d["nodes"]:
    import tomllib
    cfg = tomllib.loads(pathlib.Path(n["config"]).read_text())
    n["rpc_endpoints"] = cfg["chains"][0]["rpc_endpoints"]
if demo:
    d["merchant"]["receiver"] = {"pid": int((run / "merchant.pid").read_text()), "log": str(run / "merchant/merchant.log"),
                                 "deliveries": str(run / "merchant/webhooks.jsonl")}
# Whole or not at all: the demo merchant, started above, reads this file as it starts.
# It holds the merchant's private key and tokens: readable by its owner only.
tmp = path.with_suffix(".json.tmp")
tmp.touch(mode=0o600)
tmp.chmod(0o600)
tmp.write_text(json.dumps(d, indent=2) + "\n")
tmp.replace(path)
PY

for ((i = 0; i < NODES; i++)); do
  url=$(json "$RUN/testnet.json" "d['nodes'][$i]['api_url']")
  wait_http "$url/health/ready" 60 || { echo "node-$i is not ready; see $RUN/node-$i/node.log" >&2; exit 1; }
done

API=$(json "$RUN/testnet.json" "d['nodes'][0]['api_url']")
FIRST_CHAIN_ID=$(json "$RUN/testnet.json" "d['chains'][0]['chain_id']")
AUDIENCE=$(json "$RUN/testnet.json" "d['merchant']['audience']")
cat <<TXT

settleproof testnet is up: $NODES nodes, $CHAINS chain(s) (first: $RPC), manifest $RUN/testnet.json

Try it:
  ./testnet/demo.sh                       # create an invoice, pay it, wait for the signed webhook
or by hand:
  export SETTLEPROOF_MERCHANT_ID=demo SETTLEPROOF_MERCHANT_KEY=$RUN/merchant/key.pem   # requests signed by the merchant's key
  export SETTLEPROOF_AUDIENCE=$AUDIENCE   # ... for this network only
  $BIN merchant request POST $API/v1/invoices --data '{"amount":"1000000000000000","token":"native","chain_id":$FIRST_CHAIN_ID}'
  # pay with the returned payment_instructions (e.g. node_modules/.bin/cast send TO DATA --value VALUE ...)
  $BIN merchant request GET $API/v1/invoices/<id>
Webhooks the demo merchant received: $RUN/merchant/webhooks.jsonl
Each node reads the chain through $PROVIDERS providers (fault-injecting proxies, quorum 2); break one with
  curl -X POST http://127.0.0.1:$PROXY_PORT/_fault -d '{"mode":"down"}'      (heal: {"mode":"none"})
Logs: $RUN/node-*/node.log      Stop: ./testnet/down.sh
TXT
