#!/usr/bin/env python3
"""A minimal settleproof merchant webhook receiver.

Verifies every delivery with the Standard Webhooks reference library, deduplicates on
`webhook-id` (deliveries are at-least-once), checks the per-invoice event chain
(`sequence`, `previous_event_hash`) and saves each event's receipt for
`settleproof verify-receipt`.

    pip install standardwebhooks==1.1.0
    WEBHOOK_SECRET=whsec_... python3 docs/examples/merchant_receiver.py 127.0.0.1:9999

Point the merchant's `webhook_url` at http://127.0.0.1:9999/webhooks.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ["WEBHOOK_SECRET"]
RECEIPTS = Path(os.environ.get("RECEIPTS_DIR", "receipts"))
seen_ids: set[str] = set()
last_event: dict[str, tuple[int, str]] = {}  # invoice id -> (sequence, event hash)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = Webhook(SECRET).verify(body, dict(self.headers))
        except WebhookVerificationError as e:
            self.send_response(400)
            self.end_headers()
            print("rejected:", e, file=sys.stderr)
            return
        webhook_id = self.headers["webhook-id"]
        if webhook_id in seen_ids:  # a retry of an event already processed
            self.send_response(204)
            self.end_headers()
            return
        seen_ids.add(webhook_id)
        data = event.get("data", {})
        invoice = (data.get("invoice") or {}).get("id")
        if invoice and "sequence" in data:
            previous = last_event.get(invoice)
            if previous and data.get("previous_event_hash") != previous[1]:
                print(f"gap or reordering before event {data['sequence']} of {invoice}", file=sys.stderr)
            last_event[invoice] = (data["sequence"], data["event_hash"])
        if data.get("receipt"):
            RECEIPTS.mkdir(exist_ok=True)
            (RECEIPTS / f"{webhook_id}.json").write_text(json.dumps(data["receipt"], indent=2))
        print(event["type"], invoice, webhook_id)
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9999").split(":")
    HTTPServer((host, int(port)), Handler).serve_forever()
