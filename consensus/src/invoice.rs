//! Invoice ids as commitments to the invoice's terms.
//!
//! An invoice id is `keccak256(abi.encode(INVOICE_TYPEHASH, chainId, payments, keccak256(merchant),
//! payout, token, amount, expiresAt, nonce, metadataHash))`, so no operator can change the terms
//! of an invoice another node created (or that a merchant holds the id of) without changing its
//! id. Every node recomputes the id of every invoice it receives, and so do the receipt
//! verifier and a merchant following docs/merchants.md.
//!
//! The metadata is committed through the keccak256 of its canonical JSON: object keys sorted by
//! their UTF-8 bytes, no whitespace, strings escaped as JSON requires and nothing more (the
//! output of Python's `json.dumps(m, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)` for metadata of strings, integers, booleans, arrays and objects).
//! Invoices without metadata commit to the canonical JSON `null`.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::SolValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type string hashed into [`INVOICE_TYPEHASH`].
pub const INVOICE_TYPE: &str = "SettleproofInvoice(uint256 chainId,address payments,bytes32 merchant,address payout,address token,uint256 amount,uint64 expiresAt,bytes32 nonce,bytes32 metadataHash)";
/// keccak256 of [`INVOICE_TYPE`] (`InvoicePayments.INVOICE_TYPEHASH`), hashed once.
pub static INVOICE_TYPEHASH: std::sync::LazyLock<B256> =
    std::sync::LazyLock::new(|| keccak256(INVOICE_TYPE.as_bytes()));

/// What an invoice id commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceTerms {
    /// Chain the invoice is payable on.
    pub chain_id: u64,
    /// The `InvoicePayments` contract it is paid through.
    pub payments_contract: Address,
    /// The merchant's id in the configuration.
    pub merchant_id: String,
    /// Where the payment must go.
    pub payout_address: Address,
    /// ERC-20 token, or the zero address for the native coin.
    pub token: Address,
    /// Amount due, base units.
    pub amount: U256,
    /// Expiry, unix seconds (0: none).
    pub expires_at: u64,
    /// Random creation nonce: two invoices with equal terms still have distinct ids.
    pub nonce: B256,
    /// keccak256 of the metadata's canonical JSON ([`metadata_hash`]), bound with the
    /// checkout's redirect URL when there is one ([`extras_hash`]).
    pub metadata_hash: B256,
}

impl InvoiceTerms {
    /// The invoice id these terms commit to.
    pub fn id(&self) -> B256 {
        let typehash = *INVOICE_TYPEHASH;
        let encoded = (
            typehash,
            U256::from(self.chain_id),
            self.payments_contract,
            keccak256(self.merchant_id.as_bytes()),
            self.payout_address,
            self.token,
            self.amount,
            self.expires_at,
            self.nonce,
            self.metadata_hash,
        )
            .abi_encode();
        keccak256(encoded)
    }
}

/// keccak256 of the canonical JSON of `metadata` (`null` when there is none).
pub fn metadata_hash(metadata: Option<&Value>) -> B256 {
    keccak256(canonical_json(metadata.unwrap_or(&Value::Null)).as_bytes())
}

/// What an id commits to of an invoice's metadata and its checkout redirect URL: the
/// metadata's hash alone without a URL (so ids of invoices without one are as before), and with
/// one `keccak256(metadata_hash ‖ keccak256(url))`.
pub fn extras_hash(metadata: Option<&Value>, redirect_url: Option<&str>) -> B256 {
    let meta = metadata_hash(metadata);
    match redirect_url {
        None => meta,
        Some(url) => keccak256([meta.as_slice(), keccak256(url.as_bytes()).as_slice()].concat()),
    }
}

/// `value` as canonical JSON: object keys sorted by their bytes, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn terms() -> InvoiceTerms {
        InvoiceTerms {
            chain_id: 31337,
            payments_contract: Address::repeat_byte(0x11),
            merchant_id: "demo".into(),
            payout_address: Address::repeat_byte(0x22),
            token: Address::ZERO,
            amount: U256::from(1_000_000_000_000_000u64),
            expires_at: 1_800_000_000,
            nonce: B256::repeat_byte(0x33),
            metadata_hash: metadata_hash(Some(&json!({"order": "A-1"}))),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [1, {"z": true, "a": null}], "a": "é\n" }"#).expect("json");
        assert_eq!(canonical_json(&v), r#"{"a":"é\n","b":[1,{"a":null,"z":true}]}"#);
        assert_eq!(canonical_json(&Value::Null), "null");
    }

    #[test]
    fn every_term_changes_the_id() {
        let base = terms();
        let id = base.id();
        let changed: Vec<InvoiceTerms> = vec![
            InvoiceTerms { chain_id: 1, ..base.clone() },
            InvoiceTerms { payments_contract: Address::repeat_byte(0x12), ..base.clone() },
            InvoiceTerms { merchant_id: "other".into(), ..base.clone() },
            InvoiceTerms { payout_address: Address::repeat_byte(0x23), ..base.clone() },
            InvoiceTerms { token: Address::repeat_byte(0x44), ..base.clone() },
            InvoiceTerms { amount: U256::from(1), ..base.clone() },
            InvoiceTerms { expires_at: 0, ..base.clone() },
            InvoiceTerms { nonce: B256::repeat_byte(0x34), ..base.clone() },
            InvoiceTerms { metadata_hash: metadata_hash(Some(&json!({"order": "A-2"}))), ..base.clone() },
        ];
        for (i, t) in changed.iter().enumerate() {
            assert_ne!(t.id(), id, "term {i} is not committed");
        }
        assert_eq!(terms().id(), id, "deterministic");
    }

    #[test]
    fn metadata_key_order_does_not_change_the_hash() {
        let a: Value = serde_json::from_str(r#"{"x": 1, "y": 2}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"y": 2, "x": 1}"#).expect("json");
        assert_eq!(metadata_hash(Some(&a)), metadata_hash(Some(&b)));
        assert_ne!(metadata_hash(Some(&a)), metadata_hash(None));
        assert_eq!(extras_hash(Some(&a), None), metadata_hash(Some(&a)), "no URL: the hash of before");
        let with = extras_hash(Some(&a), Some("https://shop.example/done"));
        assert_ne!(with, metadata_hash(Some(&a)));
        assert_ne!(with, extras_hash(Some(&a), Some("https://evil.example/done")));
    }

    /// The vector docs/merchants.md gives, so a merchant's own implementation can be checked.
    #[test]
    fn documented_vector() {
        let t = terms();
        assert_eq!(format!("{}", t.metadata_hash), format!("{}", keccak256(br#"{"order":"A-1"}"#)),);
        assert_eq!(t.id().to_string().len(), 66);
    }
}
