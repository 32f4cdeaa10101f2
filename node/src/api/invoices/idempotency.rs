//! `Idempotency-Key` on `POST /v1/invoices`: the same key and body return the same invoice on
//! any node, for 24 h.
//!
//! - A retry reaches the invoice the key made at a node that holds it: the one that made it,
//!   or any other once it replicated (within a second on a healthy network). To build the same
//!   invoice at a node that has not heard of the first attempt, the request names its `nonce`
//!   (and an absolute `expires_at`): the invoice is the merchant's signed request, and the
//!   header is not part of what the merchant signs, so it cannot choose the invoice.
//! - The key (hashed with the merchant id) and the request travel inside the invoice, so they
//!   replicate with it; every node indexes them when it stores the invoice.
//! - The same key with another body is a 409 naming the first field that differs.

use crate::api::ApiError;
use crate::merchants::invoice_record::SignedInvoice;
use crate::store::{IdempotencyRecord, Invoice, key_hash};
use alloy::primitives::B256;
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

/// The record of `key` used with the request `signed`.
pub fn record(key: B256, signed: &SignedInvoice) -> IdempotencyRecord {
    IdempotencyRecord { key_hash: key, request: signed.idempotency_request() }
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
        "nonce" => "nonce",
        _ => "body",
    }
}
