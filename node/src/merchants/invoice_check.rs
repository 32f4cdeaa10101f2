//! The merchant's check of an invoice a node answered with, trusting no node: pure, no I/O
//! (`settleproof verify-invoice`, and the same steps in docs/examples/invoice_id.py).
//!
//! Given what the merchant knows on its own (the `InvoicePayments` contract of the chain, its
//! payout address and its public keys), it checks that:
//! - the merchant's key signed the request the invoice was made from (`signed_request`), and
//!   every term the answer shows is that request's;
//! - the payout address is the merchant's;
//! - the id is the commitment to those terms on that chain and contract;
//! - the payment instructions (when the answer has them) pay exactly that: to that contract,
//!   with that id, payout address, token and amount.
//!
//! So a node that invents, alters or redirects an invoice, or hands out instructions that pay
//! someone else, is caught before the merchant shows anything to a payer.

use super::invoice_record::{INVOICES_PATH, read};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::SolCall;
use serde_json::Value;
use settleproof_consensus::{InvoiceTerms, extras_hash};
use settleproof_contracts::{IERC20, InvoicePayments};
use settleproof_merchant_auth::{MerchantKey, SignedStatement};

/// What the merchant knows without asking a node.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The `InvoicePayments` contract of the invoice's chain.
    pub payments: Address,
    /// The merchant's payout address.
    pub payout: Address,
    /// The merchant's public keys that may create invoices.
    pub keys: Vec<MerchantKey>,
    /// The id of the invoice the merchant asked for, when it knows it (it computes it from the
    /// request it sent: docs/merchants.md, "What to trust, exactly"): an answer with any other invoice
    /// the merchant signed, an older one say, fails.
    pub id: Option<B256>,
}

/// A checked invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its id.
    pub id: B256,
    /// Its chain.
    pub chain_id: u64,
    /// Amount due.
    pub amount: U256,
    /// Token; zero for the native coin.
    pub token: Address,
    /// The key that signed it.
    pub key_id: String,
}

/// The invoice of `answer` (a `POST`/`GET /v1/invoices` answer, or a webhook body carrying one
/// in `data.invoice`), checked against `expected`; `Err` lists every check that failed.
pub fn check(answer: &Value, expected: &Expected) -> Result<Checked, Vec<String>> {
    let invoice = if answer["data"]["invoice"].is_object() { &answer["data"]["invoice"] } else { answer };
    let mut problems = Vec::new();
    let statement: Option<SignedStatement> = serde_json::from_value(invoice["signed_request"].clone()).ok();
    let Some(statement) = statement else {
        return Err(vec!["no `signed_request`: nothing shows the merchant made this invoice".into()]);
    };
    let signed = match read(&statement) {
        Ok(s) => s,
        Err(e) => return Err(vec![format!("signed_request makes no invoice: {e}")]),
    };
    // The signature, by a key the merchant holds.
    match expected.keys.iter().find(|k| k.key_id() == signed.key_id) {
        None => problems.push(format!("signed by key {}, none of the keys given", signed.key_id)),
        Some(key) => {
            // The id commits to the chain and contract the merchant pins: no network check needed.
            if let Err(e) = statement.verify(key, &signed.merchant_id, "POST", INVOICES_PATH, None) {
                problems.push(format!("the merchant's signature does not hold: {e}"));
            }
        }
    }
    // Every term shown is the signed one.
    let shown = |field: &str| invoice[field].clone();
    let token_label =
        if signed.token.is_zero() { "native".to_string() } else { signed.token.to_string().to_lowercase() };
    let terms: [(&str, Value); 9] = [
        ("merchant_id", signed.merchant_id.clone().into()),
        ("chain_id", signed.chain_id.into()),
        ("amount", signed.amount.to_string().into()),
        ("token", token_label.into()),
        ("expires_at", signed.expires_at.map_or(Value::Null, Into::into)),
        ("metadata", signed.metadata.clone().unwrap_or(Value::Null)),
        ("redirect_url", signed.redirect_url.clone().map_or(Value::Null, Into::into)),
        ("nonce", signed.nonce.to_string().into()),
        ("payout_address", expected.payout.to_string().to_lowercase().into()),
    ];
    for (field, want) in terms {
        let got = match (field, shown(field)) {
            ("token" | "payout_address", Value::String(s)) => Value::String(s.to_lowercase()),
            (_, v) => v,
        };
        if got != want {
            problems.push(format!("{field} is {got}, but the merchant signed {want}"));
        }
    }
    // The id commits to those terms on this contract.
    let id = InvoiceTerms {
        chain_id: signed.chain_id,
        payments_contract: expected.payments,
        merchant_id: signed.merchant_id.clone(),
        payout_address: expected.payout,
        token: signed.token,
        amount: signed.amount,
        expires_at: signed.expires_at.unwrap_or(0),
        nonce: signed.nonce,
        metadata_hash: extras_hash(signed.metadata.as_ref(), signed.redirect_url.as_deref()),
    }
    .id();
    if invoice["id"].as_str().and_then(|s| s.parse::<B256>().ok()) != Some(id) {
        problems.push(format!("id is {}, but the signed terms make {id}", invoice["id"]));
    }
    if let Some(asked) = expected.id
        && asked != id
    {
        problems.push(format!("the answer is invoice {id}, not the one you asked for ({asked})"));
    }
    if answer["payment_instructions"].is_object() {
        problems.extend(instruction_problems(&answer["payment_instructions"], id, &signed, expected));
    }
    if problems.is_empty() {
        Ok(Checked { id, chain_id: signed.chain_id, amount: signed.amount, token: signed.token, key_id: signed.key_id })
    } else {
        Err(problems)
    }
}

/// What is wrong with `instructions` for paying invoice `id`.
fn instruction_problems(
    instructions: &Value,
    id: B256,
    signed: &super::invoice_record::SignedInvoice,
    expected: &Expected,
) -> Vec<String> {
    let mut problems = Vec::new();
    if instructions["contract"].as_str().and_then(|c| c.parse::<Address>().ok()) != Some(expected.payments) {
        problems
            .push(format!("payment_instructions.contract is {}, not {}", instructions["contract"], expected.payments));
    }
    if instructions["chain_id"].as_u64() != Some(signed.chain_id) {
        problems
            .push(format!("payment_instructions.chain_id is {}, not {}", instructions["chain_id"], signed.chain_id));
    }
    let want: Vec<(Address, U256, Bytes)> = if signed.token.is_zero() {
        let pay = InvoicePayments::payNativeCall { invoiceId: id, merchant: expected.payout };
        vec![(expected.payments, signed.amount, pay.abi_encode().into())]
    } else {
        let approve = IERC20::approveCall { spender: expected.payments, value: signed.amount };
        let pay = InvoicePayments::payTokenCall {
            invoiceId: id,
            merchant: expected.payout,
            token: signed.token,
            amount: signed.amount,
        };
        vec![
            (signed.token, U256::ZERO, approve.abi_encode().into()),
            (expected.payments, U256::ZERO, pay.abi_encode().into()),
        ]
    };
    let got: Vec<Option<(Address, U256, Bytes)>> = instructions["transactions"]
        .as_array()
        .map(|txs| {
            txs.iter()
                .map(|t| {
                    Some((
                        t["to"].as_str()?.parse().ok()?,
                        U256::from_str_radix(t["value"].as_str()?, 10).ok()?,
                        t["data"].as_str()?.parse().ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if got.len() != want.len() {
        problems.push(format!("{} payment transactions, where {} pay this invoice", got.len(), want.len()));
        return problems;
    }
    for (k, (got, want)) in got.iter().zip(&want).enumerate() {
        if got.as_ref() != Some(want) {
            problems.push(format!(
                "payment transaction {k} is not the one that pays this invoice to your payout address through {}",
                expected.payments
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use settleproof_merchant_auth::{KeyAlg, MerchantSigner};

    fn answer(signer: &MerchantSigner, payments: Address, payout: Address) -> Value {
        let inv = super::super::invoice_record::testing::signed_invoice(
            signer,
            json!({"amount": "1000", "token": "native", "metadata": {"order": "A-1"}}),
            (31337, payments),
            payout,
            "node-0",
        );
        let pay = InvoicePayments::payNativeCall { invoiceId: inv.id, merchant: payout };
        json!({
            "id": inv.id.to_string(), "merchant_id": inv.merchant_id, "chain_id": 31337,
            "amount": "1000", "token": "native", "payout_address": payout.to_string(),
            "expires_at": null, "metadata": {"order": "A-1"}, "nonce": inv.nonce.to_string(),
            "signed_request": inv.statement,
            "payment_instructions": {"chain_id": 31337, "contract": payments.to_string(), "transactions": [
                {"to": payments.to_string(), "value": "1000", "data": Bytes::from(pay.abi_encode()).to_string()}
            ]},
        })
    }

    #[test]
    fn an_honest_answer_passes_and_every_falsification_is_named() {
        let signer = crate::merchants::test_network::signer("shop", KeyAlg::EdDsa);
        let (payments, payout) = (Address::repeat_byte(0x22), Address::repeat_byte(0x33));
        let expected = Expected { payments, payout, keys: vec![signer.public_key().clone()], id: None };
        let honest = answer(&signer, payments, payout);
        assert!(check(&honest, &expected).is_ok(), "{:?}", check(&honest, &expected));
        assert!(check(&json!({"data": {"invoice": honest.clone()}}), &expected).is_ok(), "a webhook body");

        let evil = Address::repeat_byte(0x66);
        // (what a lying node changes, a word the problem names)
        let mut cases: Vec<(Value, &str)> = Vec::new();
        // Its own payout address and a matching id: the payout is not the merchant's.
        cases.push((answer(&signer, payments, evil), "payout_address"));
        // Its own contract: the id does not commit to the merchant's contract.
        cases.push((answer(&signer, evil, payout), "id is"));
        // The instructions alone redirected.
        let mut redirected = honest.clone();
        redirected["payment_instructions"]["transactions"][0]["to"] = json!(evil.to_string());
        cases.push((redirected, "payment transaction 0"));
        // The contract named beside the transactions.
        let mut contract = honest.clone();
        contract["payment_instructions"]["contract"] = json!(evil.to_string());
        cases.push((contract, "payment_instructions.contract"));
        // A term changed.
        let mut altered = honest.clone();
        altered["amount"] = json!("1");
        cases.push((altered, "amount"));
        // Signed by a key that is not the merchant's.
        let impostor = crate::merchants::test_network::signer("shop", KeyAlg::EdDsa);
        cases.push((answer(&impostor, payments, payout), "none of the keys"));
        // No signed request at all.
        let mut unsigned = honest.clone();
        unsigned["signed_request"] = Value::Null;
        cases.push((unsigned, "signed_request"));
        for (answer, named) in cases {
            let problems = check(&answer, &expected).expect_err(named);
            assert!(problems.iter().any(|p| p.contains(named)), "{named}: {problems:?}");
        }
        // Another invoice the merchant did sign, answered in place of the one it asked for.
        let older = answer(&signer, payments, payout);
        let asked = Expected { id: honest["id"].as_str().and_then(|s| s.parse().ok()), ..expected };
        let problems = check(&older, &asked).expect_err("another invoice");
        assert!(problems.iter().any(|p| p.contains("not the one you asked for")), "{problems:?}");
    }
}
