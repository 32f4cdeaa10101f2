//! What an invoice another operator sent must be before this node keeps it: the commitment
//! of its id, the merchant's signed request it was made from, the registry's merchant and
//! payout address, and the merchant's signature. Which refusals blame the sender is
//! [`GossipRejection::is_altered_invoice`]'s.

use super::{GossipRejection, MESSAGE_MAX_AGE_MS};
use crate::store::Invoice;
use alloy::primitives::Address;

/// What an invoice from another operator is checked against.
#[derive(Debug, Clone)]
pub struct InvoiceScope {
    /// The configured merchants.
    pub merchants: crate::merchants::Registry,
    /// This node's chain.
    pub chain_id: u64,
    /// Its `InvoicePayments` contract.
    pub payments: Address,
}

/// `inv` with the idempotency record its merchant signed, rebuilt from the signed request, and
/// none when it signed no key: a key sent as a header only is the word of the node that took the
/// request and holds only there (one operator could otherwise squat a key the merchant will
/// use), and no relayer can drop a signed one.
pub fn without_unsigned_key(mut inv: Invoice) -> Invoice {
    let signed = inv.statement.as_ref().and_then(|s| crate::merchants::invoice_record::read(s).ok());
    inv.idempotency = signed.and_then(|s| {
        let key = s.request.idempotency_key.as_deref()?;
        Some(crate::store::IdempotencyRecord {
            key_hash: crate::store::key_hash(&s.merchant_id, key),
            request: s.idempotency_request(),
        })
    });
    inv
}

/// Checks an invoice another operator sent: its id must be the commitment to its terms on this
/// node's chain and contract (so terms cannot be altered, nor an invoice of another chain
/// replayed), its terms those of the merchant's signed request it carries, the merchant and
/// payout address the registry's, and the request signed by a key of the merchant that may
/// create invoices.
pub fn check_invoice(inv: Invoice, scope: &InvoiceScope) -> Result<Invoice, GossipRejection> {
    let inv = without_unsigned_key(inv);
    check_invoice_terms(&inv, scope).map(|()| inv)
}

/// [`check_invoice`] of a borrowed invoice. What depends on the invoice alone is checked first:
/// an invoice that is [`GossipRejection::NotInRegistry`] does commit to its terms and is what
/// its signed request says, and only its signature is left to check once the registry holds
/// its merchant.
pub fn check_invoice_terms(inv: &Invoice, scope: &InvoiceScope) -> Result<(), GossipRejection> {
    // The id commits to `expires_at` as 0 when there is none: an expiry of 0 would pass for
    // "none" under the same id, so it is refused.
    if inv.expires_at == Some(0) || !inv.id_matches(scope.chain_id, scope.payments) {
        return Err(GossipRejection::InvoiceIdMismatch(inv.id));
    }
    // Listings run newest first by creation time: one dated far ahead would head its
    // merchant's listing at every node for as long as it is ahead. An honest creator's clock is
    // within the gossip's tolerance of this one.
    let ahead_s = MESSAGE_MAX_AGE_MS / 1000;
    if inv.created_at > crate::time::now_s().saturating_add(ahead_s) {
        return Err(GossipRejection::BadInvoice(format!(
            "created_at is more than {ahead_s} s ahead of this node's clock"
        )));
    }
    // What the API accepts: an honest operator never announces more.
    if let Some(m) = &inv.metadata
        && (!m.is_object() || m.to_string().len() > crate::store::MAX_METADATA_BYTES)
    {
        return Err(GossipRejection::BadInvoice(format!(
            "metadata is not a JSON object of at most {} bytes",
            crate::store::MAX_METADATA_BYTES
        )));
    }
    // The id commits to the redirect URL, but an operator could have made one no node would
    // accept (not http(s)): the checkout would send payers there. A stricter policy of this
    // node (no plain http) is the creating node's business, as for its own invoices.
    if let Some(url) = &inv.redirect_url
        && (url.len() > 2048 || settleproof_config::netpolicy::check_url(url, true).is_err())
    {
        return Err(GossipRejection::BadInvoice(
            "redirect_url is not an http(s) URL of at most 2048 characters".into(),
        ));
    }
    // Every term is the merchant's signed request's. Whether the merchant's key signed it depends
    // on this node's registry ([`crate::merchants::Registry::check_invoice_signature`]), as
    // does an invoice without one (made before invoices carried it).
    let statement = inv.statement.as_ref().ok_or_else(|| {
        metrics::counter!("merchant_records_refused_total", "kind" => "invoice").increment(1);
        GossipRejection::NotTaken("an invoice without its merchant's signed request".into())
    })?;
    let signed = crate::merchants::invoice_record::read(statement)
        .map_err(|e| GossipRejection::NotAsSigned { id: inv.id, field: e.field })?;
    if signed.chain_id != scope.chain_id {
        return Err(GossipRejection::NotAsSigned { id: inv.id, field: "chain_id" });
    }
    if let Some(field) = signed.differs_from(inv) {
        return Err(GossipRejection::NotAsSigned { id: inv.id, field });
    }
    // A key record must name the key the merchant signed ([`without_unsigned_key`] drops any
    // other), bound to the signed request.
    if inv.idempotency.as_ref().is_some_and(|r| !signed.signs_key_of(r) || r.request != signed.idempotency_request()) {
        return Err(GossipRejection::NotAsSigned { id: inv.id, field: "idempotency" });
    }
    let merchants = scope.merchants.list();
    let merchant = merchants
        .iter()
        .find(|m| m.id == inv.merchant_id)
        .ok_or_else(|| GossipRejection::NotInRegistry(format!("unknown merchant `{}`", inv.merchant_id)))?;
    if merchant.payout_address != inv.payout_address {
        return Err(GossipRejection::NotInRegistry("payout address is not the merchant's".into()));
    }
    scope.merchants.check_invoice_signature(inv).map_err(|e| {
        metrics::counter!("merchant_records_refused_total", "kind" => "invoice").increment(1);
        match e {
            crate::merchants::SignatureRefusal::Forged { .. } => {
                GossipRejection::NotAsSigned { id: inv.id, field: "signature" }
            }
            crate::merchants::SignatureRefusal::NotHere(e) => {
                GossipRejection::NotTaken(format!("invoice {}: {e}", inv.id))
            }
        }
    })
}
