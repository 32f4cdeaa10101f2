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
        // One signed request makes one invoice: the one its nonce made is the answer.
        let made = super::invoices::nonce_taken(&tx.open_table(super::INVOICE_NONCES)?, invoice)?;
        if let Some(existing) = made.map(|id| Self::invoice_in(&tx, id)).transpose()?.flatten() {
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
