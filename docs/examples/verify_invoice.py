#!/usr/bin/env python3
"""Checks an invoice a node answered with, trusting no node (what `settleproof verify-invoice` does).

    pip install "pyjwt[crypto]" pycryptodome
    python3 verify_invoice.py ANSWER.json --payments 0x… --payout 0x… --key merchant.pem [--id 0x…]

ANSWER.json is a POST or GET /v1/invoices answer, or a webhook body. With what you know on your
own (the chain's InvoicePayments contract, your payout address, your key) it checks that:
- your key signed the request the invoice was made from (`signed_request`), and every term the
  answer shows is that request's;
- the payout address is yours, and the id commits to those terms on that contract;
- the payment instructions (when present) pay exactly that, to that contract;
- with --id, that it is the invoice you asked for.
Prints each failed check and exits 1 when any fails.
"""

import argparse
import hashlib
import json
import sys

import jwt
from Crypto.Hash import keccak

from invoice_id import canonical_json, invoice_id, keccak256
from merchant_client import load_key

ZERO = "0x" + "00" * 20


def selector(signature: str) -> str:
    return keccak256(signature.encode())[:4].hex()


def words(*values) -> str:
    out = ""
    for v in values:
        out += (v.to_bytes(32, "big") if isinstance(v, int) else bytes.fromhex(v[2:]).rjust(32, b"\0")).hex()
    return out


def signed_terms(statement: dict, merchant_key, alg: str, kid: str, problems: list) -> dict:
    """The terms your signed request sets, after checking your signature over it."""
    token, body = statement["jwt"], statement["body"]
    if jwt.get_unverified_header(token).get("kid") != kid:
        problems.append("signed by another key than yours")
    try:
        # The id commits to the chain and contract you pin (--payments): `aud` needs no check.
        claims = jwt.decode(token, merchant_key.public_key(), algorithms=[alg],
                            options={"verify_exp": False, "verify_nbf": False, "verify_aud": False})
    except jwt.InvalidTokenError as e:
        problems.append(f"your signature does not hold: {e}")
        claims = jwt.decode(token, options={"verify_signature": False})
    method, target = claims["uri"].split(" ", 1)
    if method != "POST" or target[target.find("/"):] != "/v1/invoices":
        problems.append(f"the signed request is {claims['uri']}, not an invoice's creation")
    if claims.get("reqHash") != hashlib.sha256(body.encode()).hexdigest():
        problems.append("the body is not the one you signed")
    req = json.loads(body)
    if req.get("expires_at") is not None:
        expires = req["expires_at"]
    elif req.get("expires_in") is not None:
        expires = claims["nbf"] + req["expires_in"]
    else:
        expires = None
    if req.get("nonce"):
        nonce = req["nonce"].lower()
    else:
        h = keccak.new(digest_bits=256)
        h.update(b"settleproof/invoice-nonce/1\0" + token.rsplit(".", 1)[0].encode())
        nonce = "0x" + h.hexdigest()
    return {
        "merchant_id": claims["iss"],
        "chain_id": req["chain_id"],
        "amount": req["amount"],
        "token": "native" if req["token"] == "native" else req["token"].lower(),
        "expires_at": expires,
        "metadata": req.get("metadata"),
        "redirect_url": req.get("redirect_url"),
        "nonce": nonce,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("answer")
    p.add_argument("--payments", required=True)
    p.add_argument("--payout", required=True)
    p.add_argument("--key", required=True, help="your private key (PKCS#8 PEM)")
    p.add_argument("--id")
    a = p.parse_args()
    with open(a.answer) as f:
        doc = json.load(f)
    inv = doc["data"]["invoice"] if isinstance(doc.get("data"), dict) and "invoice" in doc["data"] else doc
    key, alg, kid = load_key(a.key)
    problems = []
    if not inv.get("signed_request"):
        print("FAIL no signed_request: nothing shows you made this invoice")
        return 1
    t = signed_terms(inv["signed_request"], key, alg, kid, problems)
    shown = {**t, "payout_address": a.payout.lower()}
    for field, want in shown.items():
        got = inv.get(field)
        if field in ("token", "payout_address", "nonce") and isinstance(got, str):
            got = got.lower()
        if got != want:
            problems.append(f"{field} is {json.dumps(got)}, but you signed {json.dumps(want)}")
    mh = keccak256(canonical_json(t["metadata"]).encode())
    if t["redirect_url"] is not None:
        mh = keccak256(mh + keccak256(t["redirect_url"].encode()))
    token_address = ZERO if t["token"] == "native" else t["token"]
    iid = invoice_id({
        "chain_id": t["chain_id"], "payments_contract": a.payments, "merchant_id": t["merchant_id"],
        "payout_address": a.payout, "token": token_address, "amount": t["amount"],
        "expires_at": t["expires_at"] or 0, "nonce": t["nonce"], "metadata_hash": "0x" + mh.hex(),
    })
    if str(inv.get("id", "")).lower() != iid:
        problems.append(f"id is {inv.get('id')}, but your signed terms make {iid}")
    if a.id and a.id.lower() != iid:
        problems.append(f"the answer is invoice {iid}, not the one you asked for ({a.id})")
    pi = doc.get("payment_instructions")
    if pi is not None:
        if pi.get("contract", "").lower() != a.payments.lower() or pi.get("chain_id") != t["chain_id"]:
            problems.append("payment_instructions name another contract or chain")
        amount = int(t["amount"])
        if t["token"] == "native":
            want = [(a.payments, amount, selector("payNative(bytes32,address)") + words(iid, a.payout))]
        else:
            want = [
                (t["token"], 0, selector("approve(address,uint256)") + words(a.payments, amount)),
                (a.payments, 0, selector("payToken(bytes32,address,address,uint256)")
                 + words(iid, a.payout, t["token"], amount)),
            ]
        got = [(x["to"].lower(), int(x["value"]), x["data"][2:].lower()) for x in pi.get("transactions", [])]
        if got != [(to.lower(), v, d) for to, v, d in want]:
            problems.append("the payment transactions do not pay this invoice to your payout address")
    for pr in problems:
        print(f"FAIL {pr}")
    if not problems:
        print(f"ok: invoice {iid} asks {t['amount']} ({t['token']}) on chain {t['chain_id']}, paid to {a.payout}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
