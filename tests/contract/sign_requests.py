"""Schemathesis hooks for the API contract test: every request is signed with the demo
merchant's key, over the exact bytes sent, by the Python example client's own signing code.

Loaded with SCHEMATHESIS_HOOKS=<this file>; reads SETTLEPROOF_MERCHANT_ID and
SETTLEPROOF_MERCHANT_KEY (a PKCS#8 PEM file), as docs/examples/merchant_client.py does.
"""

import hashlib
import os
import sys

import requests
import schemathesis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "examples"))
from merchant_client import authorization, load_key  # noqa: E402

KEY, ALG, KID = load_key(os.environ["SETTLEPROOF_MERCHANT_KEY"])
MERCHANT = os.environ["SETTLEPROOF_MERCHANT_ID"]
# A chain the node serves: a generated invoice names it half the time, so some creates reach the
# node's logic (a random chain id is a 400 naming `chain_id`, and stays one the other half).
CHAIN_ID = int(os.environ["SETTLEPROOF_CHAIN_ID"])


class Signed(requests.auth.AuthBase):
    """Runs last in request preparation, so it sees the final URL and body bytes."""

    def __call__(self, r):
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        r.headers["Authorization"] = authorization(r.method, r.url, body, MERCHANT, KEY, ALG, KID)
        return r


@schemathesis.hook
def before_call(ctx, case, kwargs):
    # `kwargs` positional: the very dict handed to the transport.
    # The body is the case's, edited in place (schemathesis then checks what is sent).
    body = case.body
    if case.method.upper() == "POST" and case.path == "/v1/invoices" and isinstance(body, dict):
        if hashlib.sha256(repr(sorted(body.items(), key=str)).encode()).digest()[0] % 2 == 0:
            body["chain_id"] = CHAIN_ID
    kwargs["auth"] = Signed()
