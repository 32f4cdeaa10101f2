//! `Idempotency-Key` on `POST /v1/invoices`: the same key and body return the same invoice on
//! any node, for 24 h.
//!
//! - The invoice's nonce is derived from the key, so every node builds the same invoice (the
//!   same id) from the same request, even one that has not heard of the first attempt. Only an
//!   expiry given as `expires_in` depends on the time of the request; see [`super::create`].
//! - The key (hashed with the merchant id) and the request travel inside the invoice, so they
//!   replicate with it; every node indexes them when it stores the invoice.
//! - The same key with another body is a 409 naming the first field that differs.

use super::CreateInvoice;
use crate::api::ApiError;
use crate::store::{IdempotencyRecord, Invoice, key_hash};
use alloy::primitives::{Address, B256, U256};
use axum::http::HeaderMap;

/// The header.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// The hash of the request's key (`None`: no key); 400 naming the header when it is not 1 to
/// 255 printable ASCII characters.
pub fn requested_key(headers: &HeaderMap, merchant: &str) -> Result<Option<B256>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    match key {
        Some(k) => Ok(Some(key_hash(merchant, k))),
        None => Err(ApiError::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header must be 1 to 255 printable ASCII characters (a UUID, say)",
        )),
    }
}

/// The fields a key is bound to, parsed (so `"0x00…"` and `"native"` are one token), in the
/// order a conflict is reported.
pub fn record(key: B256, req: &CreateInvoice, chain_id: u64, amount: U256, token: Address) -> IdempotencyRecord {
    let mut record = IdempotencyRecord {
        key_hash: key,
        request: vec![
            ("chain_id".into(), json(&chain_id)),
            ("amount".into(), json(&amount.to_string())),
            ("token".into(), json(&token.to_string().to_lowercase())),
            ("expires_at".into(), json(&req.expires_at)),
            ("expires_in".into(), json(&req.expires_in)),
            ("metadata".into(), req.metadata.clone().unwrap_or(serde_json::Value::Null)),
        ],
    };
    // Only when given, so that records made before the field existed still match.
    if let Some(url) = &req.redirect_url {
        record.request.push(("redirect_url".into(), json(url)));
    }
    record
}

/// A value as JSON (`to_value` cannot fail for these types: numbers, strings, options).
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// `Ok` when `existing` was created by the same request as `wanted`, else the 409 naming the
/// first field that differs.
pub fn check_same(existing: &Invoice, wanted: &IdempotencyRecord) -> Result<(), ApiError> {
    let Some(first) = &existing.idempotency else {
        return Err(ApiError::internal("an invoice indexed under an idempotency key has no record"));
    };
    // Every field either request named: one that only the first had differs too.
    let only_first = first.request.iter().filter(|(f, _)| !wanted.request.iter().any(|(w, _)| w == f));
    let named = wanted.request.iter().map(|(f, v)| (f, Some(v))).chain(only_first.map(|(f, _)| (f, None)));
    for (field, value) in named {
        let before = first.request.iter().find(|(f, _)| f == field).map(|(_, v)| v);
        if before != value {
            return Err(ApiError::idempotency_conflict(
                static_field(field),
                format!(
                    "this Idempotency-Key created invoice {} with another `{field}` ({}); send a new key for a new invoice, or the same body to get that invoice",
                    existing.id,
                    before.map_or("none".into(), |v| v.to_string())
                ),
            ));
        }
    }
    Ok(())
}

fn static_field(field: &str) -> &'static str {
    match field {
        "chain_id" => "chain_id",
        "amount" => "amount",
        "token" => "token",
        "expires_at" => "expires_at",
        "expires_in" => "expires_in",
        "metadata" => "metadata",
        "redirect_url" => "redirect_url",
        _ => "body",
    }
}
