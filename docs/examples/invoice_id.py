#!/usr/bin/env python3
"""Recomputes a settleproof invoice id from its terms, as a merchant checks it.

The id is keccak256 of the ABI encoding of
  (keccak256(INVOICE_TYPE), chainId, payments, keccak256(merchant_id), payout, token, amount,
   expiresAt, nonce, keccak256(canonical JSON of the metadata))
every field one 32-byte word (see docs/merchants.md). Needs `pip install pycryptodome`.

  python3 invoice_id.py receipt.json     checks the terms a receipt (or a webhook body, or the
                                         receipt endpoint's answer) carries against its
                                         payment's invoice id; exits 1 on a mismatch
"""

import json
import sys

from Crypto.Hash import keccak

INVOICE_TYPE = (
    "SettleproofInvoice(uint256 chainId,address payments,bytes32 merchant,address payout,"
    "address token,uint256 amount,uint64 expiresAt,bytes32 nonce,bytes32 metadataHash)"
)


def keccak256(data: bytes) -> bytes:
    h = keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def word(value) -> bytes:
    """One ABI word: an int, a 0x-hex quantity, an address or a 32-byte hex string."""
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value)
    if len(raw) > 32:
        raise ValueError(f"{value} is longer than 32 bytes")
    return raw.rjust(32, b"\0")


def quantity(v) -> int:
    return int(v, 16) if isinstance(v, str) and v.startswith("0x") else int(v)


def canonical_json(metadata) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def metadata_hash(metadata) -> str:
    return "0x" + keccak256(canonical_json(metadata).encode()).hex()


def invoice_id(t: dict) -> str:
    encoded = b"".join(
        [
            keccak256(INVOICE_TYPE.encode()),
            word(quantity(t["chain_id"])),
            word(t["payments_contract"]),
            keccak256(t["merchant_id"].encode()),
            word(t["payout_address"]),
            word(t["token"]),
            word(quantity(t["amount"])),
            word(quantity(t["expires_at"])),
            word(t["nonce"]),
            word(t["metadata_hash"]),
        ]
    )
    return "0x" + keccak256(encoded).hex()


def receipts_in(doc):
    if "receipts" in doc:
        return doc["receipts"]
    if "data" in doc and "receipt" in doc["data"]:
        return [doc["data"]["receipt"]]
    return [doc]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    bad = 0
    for r in receipts_in(doc):
        terms, claimed = r.get("invoice"), r["payment"]["invoice_id"].lower()
        if terms is None:
            print(f"{claimed}: the receipt carries no invoice terms")
            bad += 1
            continue
        got = invoice_id(terms)
        ok = got == claimed
        bad += not ok
        print(f"{claimed}: {'matches its terms' if ok else 'does NOT match its terms (recomputed ' + got + ')'}; "
              f"amount due {quantity(terms['amount'])}, paid {quantity(r['payment']['amount'])}, "
              f"payout {terms['payout_address']}, token {terms['token']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
