#!/usr/bin/env bash
# Walks through the whole flow on a running testnet: creates an invoice on node 1, pays it
# on chain from the payer account, and waits until the demo merchant receives the signed webhook.
# Usage: ./testnet/demo.sh [AMOUNT_WEI]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
M="$RUN/testnet.json"
[ -f "$M" ] || { echo "no testnet running: ./testnet/up.sh first" >&2; exit 1; }
AMOUNT=${1:-1000000000000000}
API=$(json "$M" "d['nodes'][min(1, len(d['nodes'])-1)]['api_url']")
RPC=$(json "$M" "d['rpc_url']")
PAYER=$(json "$M" "d['payer_private_key']")
CHAIN_ID=$(json "$M" "d['chains'][0]['chain_id']")
AUDIENCE=$(json "$M" "d['merchant']['audience']")

echo "1. creating an invoice for $AMOUNT wei on $API"
# Signed by the demo merchant's own key (written by up.sh); the answer's second line is the body.
INVOICE=$(SETTLEPROOF_MERCHANT_ID=demo SETTLEPROOF_MERCHANT_KEY="$RUN/merchant/key.pem" SETTLEPROOF_AUDIENCE="$AUDIENCE" \
  "$BIN" merchant request POST "$API/v1/invoices" --data "{\"amount\": \"$AMOUNT\", \"token\": \"native\", \"chain_id\": $CHAIN_ID, \"metadata\": {\"demo\": true}}" | sed -n 2p)
ID=$(python3 -c "import json,sys;print(json.loads(sys.argv[1])['id'])" "$INVOICE")
echo "   invoice $ID"

echo "2. paying it on chain"
python3 -c "import json,sys;[print(t['to'],t['data'],t['value']) for t in json.loads(sys.argv[1])['payment_instructions']['transactions']]" "$INVOICE" |
  while read -r to data value; do
    "$CAST" send "$to" "$data" --value "$value" --private-key "$PAYER" --rpc-url "$RPC" --json >/dev/null
  done
echo "   paid"

echo "3. waiting for the settlement and the webhook"
for _ in $(seq 1 120); do
  if [ -f "$RUN/merchant/webhooks.jsonl" ] && grep -q "$ID" "$RUN/merchant/webhooks.jsonl"; then
    grep "$ID" "$RUN/merchant/webhooks.jsonl" | tail -n 1 | python3 -c "
import json,sys
e=json.loads(sys.stdin.read()); s=e['body']['data']['settlement']
print('   webhook', e['webhook_id'], e['body']['type'], 'signature verified:', e['verified'])
print('   settled in round', s['round'], 'root', s['root'], 'tx', s['tx_hash'])"
    exit 0
  fi
  sleep 0.5
done
echo "no webhook after 60 s; see $RUN/node-*/node.log" >&2
exit 1
