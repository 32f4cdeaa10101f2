#!/usr/bin/env python3
"""Send one merchant API request signed with your own key (PyJWT).

    pip install "pyjwt[crypto]"
    export SETTLEPROOF_MERCHANT_ID=shop-2 SETTLEPROOF_MERCHANT_KEY=merchant.pem
    export SETTLEPROOF_AUDIENCE=settleproof:31337:0x...   # `audience` of any node's /health/ready
    python3 merchant_client.py POST http://127.0.0.1:8700/v1/invoices '{"amount": "1000", "token": "native", "chain_id": 31337}'

Each request gets a JWT of its own: header alg, kid, typ and a fresh nonce; claims iss (the
merchant), sub (the key id), nbf/exp one minute apart, uri ("METHOD host[:port]/path") and
reqHash (SHA-256 of the exact body bytes), and aud (the network, SETTLEPROOF_AUDIENCE, which
nodes require): no other network where the key is registered takes the request or what it
makes.
Prints the status and the answer; exits 1 on an error status.
"""

import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def load_key(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        alg = "ES256"
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:
        sys.exit("the key must be Ed25519 or P-256 (settleproof merchant keygen makes one)")
    # The key id names the key: mk_ and 20 bytes of SHA-256 over the algorithm, a zero byte and the key.
    kid = "mk_" + hashlib.sha256(alg.encode() + b"\0" + public).hexdigest()[:40]
    return key, alg, kid


def authorization(method, url, body, merchant_id, key, alg, kid):
    """The Authorization header of one request: a JWT bound to its method, URL and body bytes."""
    parts = urllib.parse.urlsplit(url)
    # The host as nodes name it: lower case, IPv6 in brackets, the scheme's default port left out.
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default_port = 443 if parts.scheme == "https" else 80
    netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
    now = int(time.time())
    claims = {
        "iss": merchant_id,
        "sub": kid,
        "nbf": now,
        "exp": now + 60,
        "uri": f"{method.upper()} {netloc}{parts.path or '/'}",
    }
    if body:
        claims["reqHash"] = hashlib.sha256(body).hexdigest()
    claims["aud"] = os.environ["SETTLEPROOF_AUDIENCE"]
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "nonce": secrets.token_hex(16)})
    return f"Bearer {token}"


def signed_request(method, url, body, merchant_id, key, alg, kid):
    req = urllib.request.Request(url, data=body or None, method=method.upper())
    req.add_header("Authorization", authorization(method, url, body, merchant_id, key, alg, kid))
    if body:
        req.add_header("Content-Type", "application/json")
    return req


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    method, url = sys.argv[1], sys.argv[2]
    body = json.dumps(json.loads(sys.argv[3])).encode() if len(sys.argv) > 3 else b""
    key, alg, kid = load_key(os.environ["SETTLEPROOF_MERCHANT_KEY"])
    req = signed_request(method, url, body, os.environ["SETTLEPROOF_MERCHANT_ID"], key, alg, kid)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            print(resp.status)
            print(resp.read().decode())
    except urllib.error.HTTPError as e:
        print(e.code)
        print(e.read().decode())
        sys.exit(1)


if __name__ == "__main__":
    main()
