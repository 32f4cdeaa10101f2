//! Idempotency keys of `POST /v1/invoices`: which invoice a merchant's key created. The record
//! travels inside the invoice (so it replicates with it) and is indexed here by merchant and
//! key hash, in the transaction that stores the invoice.

use super::{IDEMPOTENCY, Invoice, Store, StoreError};
use alloy::primitives::{B256, keccak256};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// How long a key names its invoice, seconds (24 h); past it the key creates a new invoice.
pub const IDEMPOTENCY_TTL_S: u64 = 24 * 3600;

/// The request an idempotency key was first used with, as the invoice carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of the merchant id and the key ([`key_hash`]); the key itself is not kept.
    pub key_hash: B256,
    /// The request's fields, in the order a conflict is named.
    pub request: Vec<(String, serde_json::Value)>,
}

/// The hash under which `merchant`'s `key` is kept.
pub fn key_hash(merchant: &str, key: &str) -> B256 {
    keccak256([b"settleproof/idempotency-key/v1\0".as_slice(), merchant.as_bytes(), b"\0", key.as_bytes()].concat())
}

/// The invoice nonce a key implies: the same on every node, so that a retry on a node that has
/// not yet heard of the first attempt builds the same invoice (same id) from the same request.
pub fn key_nonce(key_hash: B256) -> B256 {
    keccak256([b"settleproof/idempotency-nonce/v1\0".as_slice(), key_hash.as_slice()].concat())
}

/// What a node knows of a merchant's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Never seen: a new invoice takes the key's nonce.
    Unknown,
    /// It named an invoice more than 24 h ago: a new invoice takes a random nonce (the key's
    /// would rebuild the old invoice).
    Expired,
    /// It names this invoice.
    Live(Box<Invoice>),
}

impl Store {
    /// What this node knows of `merchant`'s key (by hash) at `now_s`.
    pub fn idempotency_key(&self, merchant: &str, key: B256, now_s: u64) -> Result<KeyState, StoreError> {
        let tx = self.read()?;
        let Some((id, seen_at)) = tx.open_table(IDEMPOTENCY)?.get((merchant, key.0))?.map(|v| v.value()) else {
            return Ok(KeyState::Unknown);
        };
        if seen_at.saturating_add(IDEMPOTENCY_TTL_S) <= now_s {
            return Ok(KeyState::Expired);
        }
        drop(tx);
        Ok(self.invoice(B256::from(id))?.map_or(KeyState::Unknown, |i| KeyState::Live(Box::new(i))))
    }

    /// The invoice `merchant`'s key (by hash) created, while the key is live at `now_s`.
    pub fn idempotent_invoice(&self, merchant: &str, key: B256, now_s: u64) -> Result<Option<Invoice>, StoreError> {
        Ok(match self.idempotency_key(merchant, key, now_s)? {
            KeyState::Live(i) => Some(*i),
            _ => None,
        })
    }

    /// Stores `invoice`, which carries an idempotency record, unless its key already names a
    /// live invoice or its id is stored, in one write transaction (redb runs one at a time), so
    /// two requests racing on one node store one invoice; a new one is marked not yet announced
    /// ([`Store::unannounced_invoices`]). Returns the invoice the request gets and whether it is
    /// this one, new.
    pub fn put_idempotent_invoice(&self, invoice: &Invoice, now_s: u64) -> Result<(Invoice, bool), StoreError> {
        let tx = self.db().begin_write()?;
        if let Some(record) = &invoice.idempotency {
            let entry =
                tx.open_table(IDEMPOTENCY)?.get((invoice.merchant_id.as_str(), record.key_hash.0))?.map(|v| v.value());
            if let Some((id, seen_at)) = entry
                && seen_at.saturating_add(IDEMPOTENCY_TTL_S) > now_s
                && let Some(existing) = Self::invoice_in(&tx, B256::from(id))?
            {
                return Ok((existing, false));
            }
        }
        if let Some(existing) = Self::invoice_in(&tx, invoice.id)? {
            return Ok((existing, false));
        }
        Self::insert_invoices(&tx, std::slice::from_ref(invoice), now_s, true)?;
        Self::mark_created(&tx, [invoice])?;
        tx.commit()?;
        Ok((invoice.clone(), true))
    }
}

/// Indexes the key of `invoice` (seen at `now_s`) in `tx`, keeping a live entry for another
/// invoice (the first one wins); `replace_expired` lets a new invoice take an expired key.
pub(super) fn index(
    tx: &redb::WriteTransaction,
    invoice: &Invoice,
    now_s: u64,
    replace_expired: bool,
) -> Result<(), StoreError> {
    let Some(record) = &invoice.idempotency else { return Ok(()) };
    let mut t = tx.open_table(IDEMPOTENCY)?;
    let key = (invoice.merchant_id.as_str(), record.key_hash.0);
    let current = t.get(key)?.map(|v| v.value());
    let take = match current {
        None => true,
        Some((_, seen_at)) => replace_expired && seen_at.saturating_add(IDEMPOTENCY_TTL_S) <= now_s,
    };
    if take {
        t.insert(key, (invoice.id.0, now_s))?;
    }
    Ok(())
}

impl IdempotencyRecord {
    /// The request field `name`.
    fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.request.iter().find(|(f, _)| f == name).map(|(_, v)| v)
    }

    /// Whether `invoice` (of chain `chain_id`) is what this record's request creates: its nonce
    /// is the key's and its terms are the request's. A replicated invoice whose record fails
    /// this is refused, so no operator can attach a key to an invoice of other terms; `Err`
    /// names the field that does not match.
    pub fn check(&self, invoice: &Invoice, chain_id: u64) -> Result<(), &'static str> {
        use serde_json::Value;
        let num = |name| self.field(name).and_then(Value::as_u64);
        if invoice.nonce != key_nonce(self.key_hash) {
            return Err("nonce");
        }
        if num("chain_id") != Some(chain_id) {
            return Err("chain_id");
        }
        if self.field("amount").and_then(Value::as_str) != Some(invoice.amount.to_string().as_str()) {
            return Err("amount");
        }
        if self.field("token").and_then(Value::as_str) != Some(invoice.token.to_string().to_lowercase().as_str()) {
            return Err("token");
        }
        let metadata = invoice.metadata.clone().unwrap_or(Value::Null);
        if self.field("metadata") != Some(&metadata) {
            return Err("metadata");
        }
        let expiry_ok = match (num("expires_at"), num("expires_in")) {
            (Some(at), None) => invoice.expires_at == Some(at),
            (None, Some(within)) => invoice.expires_at == Some(invoice.created_at.saturating_add(within)),
            (None, None) => invoice.expires_at.is_none(),
            (Some(_), Some(_)) => false,
        };
        if !expiry_ok {
            return Err("expires_at");
        }
        if self.field("redirect_url").and_then(Value::as_str) != invoice.redirect_url.as_deref() {
            return Err("redirect_url");
        }
        Ok(())
    }
}
