//! Invoices as merchants created them.

use super::{
    CREATED, EXPIRIES, INVOICE_NONCES, INVOICES, MERCHANT_INVOICES, Store, StoreError, UNANNOUNCED, decode, encode,
};
use alloy::primitives::{Address, B256, U256};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use settleproof_consensus::{InvoiceTerms, extras_hash};

/// An invoice as created through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Invoice id (also the on-chain `invoiceId`).
    pub id: B256,
    /// Merchant that created it.
    pub merchant_id: String,
    /// Merchant payout address the payment must go to.
    pub payout_address: Address,
    /// Amount due, in the token's base units.
    pub amount: U256,
    /// ERC-20 token, or the zero address for the native coin.
    pub token: Address,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// Free-form merchant data, returned as given.
    pub metadata: Option<serde_json::Value>,
    /// Node that took the request.
    pub created_by: String,
    /// Creation nonce, part of what the id commits to: the merchant's, or derived from its signed
    /// request.
    #[serde(default)]
    pub nonce: B256,
    /// The idempotency key the invoice was created under, and the request it came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<super::IdempotencyRecord>,
    /// Where the checkout page sends the payer once the invoice is settled (the id commits to
    /// it, so no relaying node can change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// The merchant's signed request the invoice was made from: every term above but the payout
    /// address (the registry's) is read from it, and every node checks its signature
    /// (`crate::merchants::invoice_record`). Absent only in invoices stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<settleproof_merchant_auth::SignedStatement>,
}

/// Largest metadata an invoice may carry, as JSON: the API refuses more, and so does a node
/// that hears an invoice from another operator.
pub const MAX_METADATA_BYTES: usize = 4096;

impl Invoice {
    /// The terms the id commits to, on chain `chain_id` through `payments`.
    pub fn terms(&self, chain_id: u64, payments: Address) -> InvoiceTerms {
        InvoiceTerms {
            chain_id,
            payments_contract: payments,
            merchant_id: self.merchant_id.clone(),
            payout_address: self.payout_address,
            token: self.token,
            amount: self.amount,
            expires_at: self.expires_at.unwrap_or(0),
            nonce: self.nonce,
            metadata_hash: extras_hash(self.metadata.as_ref(), self.redirect_url.as_deref()),
        }
    }

    /// Whether the id is the commitment to these terms.
    pub fn id_matches(&self, chain_id: u64, payments: Address) -> bool {
        self.terms(chain_id, payments).id() == self.id
    }
}

/// Where an invoice stands among those its node created: (creation time in seconds, id).
pub type CreatedKey = (u64, B256);

impl Store {
    /// Stores an invoice; an existing invoice with the same id is kept (idempotent replication).
    /// Returns whether it was new.
    pub fn put_invoice(&self, invoice: &Invoice) -> Result<bool, StoreError> {
        // Replication repeats each announcement: a read answers the repeats without a write
        // transaction (and its fsync).
        if self.invoice(invoice.id)?.is_some() {
            return Ok(false);
        }
        Ok(self.put_invoices(std::slice::from_ref(invoice))? == 1)
    }

    /// Stores invoices in one transaction (bulk import); existing ids are kept. Returns how many
    /// were new.
    pub fn put_invoices(&self, invoices: &[Invoice]) -> Result<usize, StoreError> {
        self.put_invoices_at(invoices, crate::time::now_s(), false)
    }

    /// Stores invoices this node created (through its API) durably in one transaction, each new
    /// one marked not yet announced ([`Store::unannounced_invoices`]); for each, whether it was
    /// new (an id stored before, or earlier in `invoices`, is kept as it was).
    pub fn put_created_invoices(&self, invoices: &[Invoice]) -> Result<Vec<bool>, StoreError> {
        let tx = self.db().begin_write()?;
        let new = Self::insert_invoices_each(&tx, invoices, crate::time::now_s(), false)?;
        Self::mark_created(&tx, invoices.iter().zip(&new).filter(|(_, new)| **new).map(|(i, _)| i))?;
        tx.commit()?;
        Ok(new)
    }

    /// Marks `invoices`, just created here in `tx`, not yet announced, and indexes them by
    /// creation time among this node's own ([`Store::created_since`]).
    pub(super) fn mark_created<'a>(
        tx: &redb::WriteTransaction,
        invoices: impl IntoIterator<Item = &'a Invoice>,
    ) -> Result<(), StoreError> {
        let (mut unannounced, mut created) = (tx.open_table(UNANNOUNCED)?, tx.open_table(CREATED)?);
        for invoice in invoices {
            unannounced.insert(invoice.id.0, ())?;
            created.insert((invoice.created_at, invoice.id.0), ())?;
        }
        Ok(())
    }

    /// Invoices this node created at or after `since_s`, oldest first, starting after the key
    /// `after` (where a previous page ended): at most `limit`, and no more than `max_bytes` of
    /// stored invoices (at least one); with the key to go on from when a bound was reached.
    /// Replicated and fetched copies are not among them: each operator answers for its own.
    pub fn created_since(
        &self,
        since_s: u64,
        after: Option<CreatedKey>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Invoice>, Option<CreatedKey>), StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some((at, id)) if at >= since_s => Bound::Excluded((at, id.0)),
            _ => Bound::Included((since_s, [0u8; 32])),
        };
        let tx = self.read()?;
        let (created, all) = (tx.open_table(CREATED)?, tx.open_table(INVOICES)?);
        let (mut out, mut last, mut keys, mut bytes) = (Vec::new(), None, 0, 0);
        for entry in created.range::<(u64, [u8; 32])>((start, Bound::Unbounded))? {
            if keys == limit || (keys > 0 && bytes >= max_bytes) {
                return Ok((out, last));
            }
            let (at, id) = entry?.0.value();
            let row = all.get(id)?;
            let size = row.as_ref().map_or(0, |v| v.value().len());
            if keys > 0 && bytes + size > max_bytes {
                return Ok((out, last));
            }
            (last, keys, bytes) = (Some((at, B256::from(id))), keys + 1, bytes + size);
            match row.map(|v| decode::<Invoice>("invoices", v.value())) {
                Some(Ok(invoice)) => out.push(invoice),
                Some(Err(e)) => {
                    tracing::warn!(invoice_id = %B256::from(id), error = %e, "an invoice this node created cannot be read; peers catching up do not get it")
                }
                None => {}
            }
        }
        Ok((out, None))
    }

    /// Invoices this node created that no announcement carried yet (it stopped at once after
    /// the create, or every send failed), at most `limit`. An id whose invoice cannot be read
    /// is dropped from the marks (logged): it could never be announced.
    pub fn unannounced_invoices(&self, limit: usize) -> Result<Vec<Invoice>, StoreError> {
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        {
            let tx = self.read()?;
            let (ids, all) = (tx.open_table(UNANNOUNCED)?, tx.open_table(INVOICES)?);
            for entry in ids.iter()?.take(limit) {
                let id = entry?.0.value();
                match all.get(id)?.map(|v| decode::<Invoice>("invoices", v.value())).transpose() {
                    Ok(Some(invoice)) => out.push(invoice),
                    Ok(None) => unreadable.push(B256::from(id)),
                    Err(e) => {
                        tracing::warn!(invoice_id = %B256::from(id), error = %e, "an unannounced invoice cannot be read; it is not announced");
                        unreadable.push(B256::from(id));
                    }
                }
            }
        }
        self.mark_announced(&unreadable)?;
        Ok(out)
    }

    /// Marks `ids` announced, committed without waiting for the disk: a crash before the next
    /// durable commit only announces them once more.
    pub fn mark_announced(&self, ids: &[B256]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.begin_bookkeeping()?;
        {
            let mut unannounced = tx.open_table(UNANNOUNCED)?;
            for id in ids {
                unannounced.remove(id.0)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores invoices other operators announced, in one transaction committed without waiting
    /// for the disk (the next durable commit persists it): a crash before that loses only
    /// copies, which the creating operator holds durably and this node fetches again when it
    /// settles their payments (`rounds::invoice_fetch`). Existing ids are kept; returns how
    /// many were new.
    pub fn put_replicated_invoices(&self, invoices: &[Invoice]) -> Result<usize, StoreError> {
        let tx = self.begin_bookkeeping()?;
        let new = Self::insert_invoices(&tx, invoices, crate::time::now_s(), false)?;
        tx.commit()?;
        Ok(new)
    }

    /// [`Store::put_invoices`], indexing idempotency keys as seen at `now_s`
    /// (`replace_expired`: a new invoice may take a key whose invoice expired as a key).
    pub(super) fn put_invoices_at(
        &self,
        invoices: &[Invoice],
        now_s: u64,
        replace_expired: bool,
    ) -> Result<usize, StoreError> {
        let tx = self.db().begin_write()?;
        let new = Self::insert_invoices(&tx, invoices, now_s, replace_expired)?;
        tx.commit()?;
        Ok(new)
    }

    /// Inserts the invoices whose ids are not stored, in `tx`; returns how many.
    pub(super) fn insert_invoices(
        tx: &redb::WriteTransaction,
        invoices: &[Invoice],
        now_s: u64,
        replace_expired: bool,
    ) -> Result<usize, StoreError> {
        Ok(Self::insert_invoices_each(tx, invoices, now_s, replace_expired)?.into_iter().filter(|n| *n).count())
    }

    /// [`Store::insert_invoices`], saying for each invoice whether it was new.
    fn insert_invoices_each(
        tx: &redb::WriteTransaction,
        invoices: &[Invoice],
        now_s: u64,
        replace_expired: bool,
    ) -> Result<Vec<bool>, StoreError> {
        let mut new = Vec::with_capacity(invoices.len());
        {
            let mut t = tx.open_table(INVOICES)?;
            let mut by_merchant = tx.open_table(MERCHANT_INVOICES)?;
            let mut expiries = tx.open_table(EXPIRIES)?;
            let mut nonces = tx.open_table(INVOICE_NONCES)?;
            for invoice in invoices {
                if t.get(invoice.id.0)?.is_some() {
                    new.push(false);
                    continue;
                }
                if let Some(made) = nonce_taken(&nonces, invoice)? {
                    metrics::counter!("invoices_nonce_taken_total").increment(1);
                    tracing::warn!(invoice_id = %invoice.id, merchant = %invoice.merchant_id, nonce = %invoice.nonce, made = %made, "an invoice from a signed request that made another invoice already (replayed under another payout address or contract) is not kept");
                    new.push(false);
                    continue;
                }
                if invoice.statement.is_some() {
                    nonces.insert((invoice.merchant_id.as_str(), invoice.nonce.0), (invoice.id.0, now_s))?;
                }
                t.insert(invoice.id.0, encode(invoice).as_slice())?;
                by_merchant.insert((invoice.merchant_id.as_str(), invoice.created_at, invoice.id.0), ())?;
                if let Some(at) = invoice.expires_at {
                    expiries.insert((at, invoice.id.0), ())?;
                }
                super::idempotency::index(tx, invoice, now_s, replace_expired)?;
                new.push(true);
            }
        }
        Ok(new)
    }

    /// The invoice with this id, read in the write transaction `tx`.
    pub(super) fn invoice_in(tx: &redb::WriteTransaction, id: B256) -> Result<Option<Invoice>, StoreError> {
        tx.open_table(INVOICES)?.get(id.0)?.map(|v| decode("invoices", v.value())).transpose()
    }

    /// Invoices whose expiry is at or before `until` and not yet handled, soonest first.
    pub fn due_expiries(&self, until: u64, limit: usize) -> Result<Vec<(u64, B256)>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(EXPIRIES)?;
        let mut out = Vec::new();
        for entry in t.range((0u64, [0u8; 32])..=(until, [0xffu8; 32]))?.take(limit) {
            let (k, _) = entry?;
            let (at, id) = k.value();
            out.push((at, B256::from(id)));
        }
        Ok(out)
    }

    /// Marks an invoice's expiry handled.
    pub fn clear_expiry(&self, at: u64, id: B256) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        tx.open_table(EXPIRIES)?.remove((at, id.0))?;
        tx.commit()?;
        Ok(())
    }

    /// When this node first stored `invoice` (unix s), which it holds: for one stored before
    /// it kept that, when it began to (an upper bound); `None` for one without a signed
    /// request, or that its nonce did not make here.
    pub fn invoice_received_s(&self, invoice: &Invoice) -> Result<Option<u64>, StoreError> {
        invoice.statement.as_ref().map_or(Ok(None), |_| {
            let tx = self.read()?;
            let held = tx.open_table(INVOICE_NONCES)?.get((invoice.merchant_id.as_str(), invoice.nonce.0))?;
            Ok(held.map(|v| v.value()).filter(|(id, _)| *id == invoice.id.0).map(|(_, at)| at))
        })
    }

    /// The id of the invoice `merchant`'s signed request with `nonce` made, if one is stored.
    pub fn invoice_of_nonce(&self, merchant: &str, nonce: B256) -> Result<Option<B256>, StoreError> {
        let tx = self.read()?;
        Ok(tx.open_table(INVOICE_NONCES)?.get((merchant, nonce.0))?.map(|v| B256::from(v.value().0)))
    }

    /// The invoice with this id.
    pub fn invoice(&self, id: B256) -> Result<Option<Invoice>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(INVOICES)?;
        t.get(id.0)?.map(|v| decode("invoices", v.value())).transpose()
    }

    /// The invoices with these ids, in their order, read in one transaction.
    pub fn invoices_by_id(&self, ids: impl IntoIterator<Item = B256>) -> Result<Vec<Option<Invoice>>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(INVOICES)?;
        ids.into_iter().map(|id| t.get(id.0)?.map(|v| decode("invoices", v.value())).transpose()).collect()
    }
}

impl Store {
    /// A merchant's invoices, newest first, strictly older than `before` (created, id) when
    /// given, at most `limit`.
    pub fn invoices_of_merchant(
        &self,
        merchant: &str,
        before: Option<(u64, B256)>,
        limit: usize,
    ) -> Result<Vec<Invoice>, StoreError> {
        let tx = self.read()?;
        let index = tx.open_table(MERCHANT_INVOICES)?;
        let all = tx.open_table(INVOICES)?;
        let lo = (merchant, 0u64, [0u8; 32]);
        let mut out = Vec::new();
        let range = match before {
            Some((created, id)) => index.range(lo..(merchant, created, id.0))?,
            None => index.range(lo..=(merchant, u64::MAX, [0xffu8; 32]))?,
        };
        for entry in range.rev() {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry?;
            let (_, _, id) = key.value();
            if let Some(v) = all.get(id)? {
                out.push(decode("invoices", v.value())?);
            }
        }
        Ok(out)
    }
}

/// The id of another invoice than `invoice` that its merchant's signed request (its nonce)
/// made already, if one is stored.
pub(super) fn nonce_taken(
    nonces: &impl redb::ReadableTable<(&'static str, [u8; 32]), super::MadeAt>,
    invoice: &Invoice,
) -> Result<Option<B256>, StoreError> {
    if invoice.statement.is_none() {
        return Ok(None);
    }
    let made = nonces.get((invoice.merchant_id.as_str(), invoice.nonce.0))?.map(|v| B256::from(v.value().0));
    Ok(made.filter(|id| *id != invoice.id))
}

/// Indexes every stored invoice by its merchant's nonce, once (a file of a version before the
/// index), as received now (an upper bound); returns how many were indexed. Of two stored
/// invoices from one signed request, the earlier created keeps the nonce.
pub(super) fn index_nonces(tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(super::META)?;
    if meta.get(super::INVOICE_NONCES_INDEXED)?.is_some() {
        return Ok(0);
    }
    let now_s = crate::time::now_s();
    // One invoice decoded at a time: a store of any size is indexed in constant memory.
    let invoices = tx.open_table(INVOICES)?;
    let mut nonces = tx.open_table(INVOICE_NONCES)?;
    let mut n = 0;
    for entry in invoices.iter()? {
        let (_, v) = entry?;
        let invoice: Invoice = decode("invoices", v.value())?;
        if invoice.statement.is_none() {
            continue;
        }
        let key = (invoice.merchant_id.as_str(), invoice.nonce.0);
        let held = nonces.get(key)?.map(|v| v.value().0);
        let earlier = match held {
            None => {
                n += 1;
                true
            }
            Some(other) => match invoices.get(other)? {
                Some(o) => {
                    let o: Invoice = decode("invoices", o.value())?;
                    (invoice.created_at, invoice.id) < (o.created_at, o.id)
                }
                None => true,
            },
        };
        if earlier {
            nonces.insert(key, (invoice.id.0, now_s))?;
        }
    }
    meta.insert(super::INVOICE_NONCES_INDEXED, 1)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    /// One signed request makes one invoice: a second invoice from its nonce (the request
    /// replayed after the payout address changed) is not kept, by any write path, and a file
    /// written before the index gets it when opened.
    #[test]
    fn a_second_invoice_from_one_signed_request_is_not_kept() {
        let (dir, store) = temp_store();
        let statement = settleproof_merchant_auth::SignedStatement { jwt: "h.p.s".into(), body: "{}".into() };
        let signed = |i: u8, nonce: u8, merchant: &str| Invoice {
            nonce: B256::repeat_byte(nonce),
            statement: Some(statement.clone()),
            ..make(i, merchant)
        };
        assert_eq!(
            store.put_created_invoices(&[signed(1, 0xa, "m"), signed(2, 0xa, "m")]).expect("put"),
            vec![true, false]
        );
        assert_eq!(store.put_replicated_invoices(&[signed(3, 0xa, "m")]).expect("put"), 0);
        assert!(!store.put_invoice(&signed(4, 0xa, "m")).expect("put"));
        assert!(store.put_invoice(&signed(5, 0xa, "other")).expect("another merchant's nonce"));
        assert!(store.put_invoice(&signed(6, 0xb, "m")).expect("another nonce"));
        assert!(store.put_invoice(&make(7, "m")).expect("no signed request: not indexed"));
        assert_eq!(store.invoice_of_nonce("m", B256::repeat_byte(0xa)).expect("read"), Some(B256::repeat_byte(1)));
        for gone in [2u8, 3, 4] {
            assert_eq!(store.invoice(B256::repeat_byte(gone)).expect("read"), None);
        }
        // A file of a version before the index: indexed when opened, the earliest keeping it.
        {
            let tx = store.db().begin_write().expect("tx");
            tx.delete_table(INVOICE_NONCES).expect("drop");
            tx.open_table(crate::store::META).expect("meta").remove(crate::store::INVOICE_NONCES_INDEXED).expect("rm");
            tx.commit().expect("commit");
        }
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(store.invoice_of_nonce("m", B256::repeat_byte(0xa)).expect("read"), Some(B256::repeat_byte(1)));
        assert_eq!(store.invoice_of_nonce("m", B256::repeat_byte(0xb)).expect("read"), Some(B256::repeat_byte(6)));
        assert!(!store.put_invoice(&signed(8, 0xb, "m")).expect("put"));
    }

    #[test]
    fn put_is_idempotent_and_survives_reopen() {
        let (dir, store) = temp_store();
        let inv = Invoice {
            id: B256::repeat_byte(7),
            merchant_id: "m".into(),
            payout_address: Address::repeat_byte(1),
            amount: U256::from(5),
            token: Address::ZERO,
            created_at: 1,
            expires_at: None,
            metadata: Some(serde_json::json!({"order": 42})),
            created_by: "node-0".into(),
            nonce: B256::ZERO,
            idempotency: None,
            redirect_url: None,
            statement: None,
        };
        assert!(store.put_invoice(&inv).expect("put"));
        assert!(!store.put_invoice(&Invoice { amount: U256::from(6), ..inv.clone() }).expect("put again"));
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(store.invoice(inv.id).expect("get"), Some(inv));
        assert_eq!(store.invoice(B256::ZERO).expect("get"), None);
    }

    /// Invoice `i` (id of bytes `i`, created at `i`) of `merchant`.
    fn make(i: u8, merchant: &str) -> Invoice {
        Invoice {
            id: B256::repeat_byte(i),
            merchant_id: merchant.into(),
            payout_address: Address::repeat_byte(1),
            amount: U256::from(1),
            token: Address::ZERO,
            created_at: u64::from(i),
            expires_at: None,
            metadata: None,
            created_by: "n".into(),
            nonce: B256::ZERO,
            idempotency: None,
            redirect_url: None,
            statement: None,
        }
    }

    #[test]
    fn merchant_listing_pages_newest_first() {
        let (_dir, store) = temp_store();
        for i in 1..=5 {
            store.put_invoice(&make(i, "a")).expect("put");
        }
        store.put_invoice(&make(9, "b")).expect("put");
        let page1 = store.invoices_of_merchant("a", None, 2).expect("list");
        assert_eq!(page1.iter().map(|i| i.created_at).collect::<Vec<_>>(), vec![5, 4]);
        let last = page1.last().map(|i| (i.created_at, i.id));
        let page2 = store.invoices_of_merchant("a", last, 10).expect("list");
        assert_eq!(page2.iter().map(|i| i.created_at).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(store.invoices_of_merchant("b", None, 10).expect("list").len(), 1);
    }

    #[test]
    fn created_invoices_wait_as_unannounced_until_marked_and_across_a_reopen() {
        let (dir, store) = temp_store();
        let make = |i: u8| make(i, "m");
        assert_eq!(store.put_created_invoices(&[make(1), make(2), make(1)]).expect("create"), vec![true, true, false]);
        store.put_replicated_invoices(&[make(3)]).expect("another operator's");
        let ids = |s: &Store| s.unannounced_invoices(10).expect("read").iter().map(|i| i.id.0[0]).collect::<Vec<_>>();
        assert_eq!(ids(&store), vec![1, 2], "only this node's creates");
        assert_eq!(store.unannounced_invoices(1).expect("read").len(), 1, "at most the limit");
        store.mark_announced(&[B256::repeat_byte(1)]).expect("announced");
        assert_eq!(ids(&store), vec![2]);
        store.put_created_invoices(&[make(4)]).expect("create");
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(ids(&store), vec![2, 4], "marks are durable with their invoice");
        store.mark_announced(&[B256::repeat_byte(2), B256::repeat_byte(4)]).expect("announced");
        assert!(ids(&store).is_empty());
    }

    #[test]
    fn created_since_pages_this_nodes_own_invoices_oldest_first() {
        let (_dir, store) = temp_store();
        store.put_created_invoices(&[make(5, "a"), make(2, "b"), make(9, "a"), make(7, "b")]).expect("create");
        store.put_replicated_invoices(&[make(6, "a"), make(8, "b")]).expect("other operators'");
        let at = |page: &[Invoice]| page.iter().map(|i| i.created_at).collect::<Vec<_>>();
        let (page, next) = store.created_since(3, None, 2, usize::MAX).expect("page 1");
        assert_eq!(at(&page), vec![5, 7], "from the time asked, across merchants, never a copy of another operator's");
        assert_eq!(next, Some((7, B256::repeat_byte(7))));
        let (page, next) = store.created_since(3, next, 2, usize::MAX).expect("page 2");
        assert_eq!((at(&page), next), (vec![9], None), "the last page says no more");
        let (page, _) =
            store.created_since(8, Some((5, B256::repeat_byte(5))), 10, usize::MAX).expect("behind the start");
        assert_eq!(at(&page), vec![9], "a resume point before the time asked starts at the time");
        assert!(store.created_since(10, None, 10, usize::MAX).expect("none").0.is_empty());
        // A byte budget ends a page early (one invoice at least), and says where to go on.
        let one = encode(&make(5, "a")).len();
        let (page, next) = store.created_since(0, None, 10, one + 1).expect("bytes");
        assert_eq!((at(&page), next), (vec![2], Some((2, B256::repeat_byte(2)))));
        let (page, next) = store.created_since(0, next, 10, 1).expect("at least one");
        assert_eq!((at(&page), next), (vec![5], Some((5, B256::repeat_byte(5)))));
        let (page, next) = store.created_since(0, next, 10, 3 * one).expect("the rest");
        assert_eq!((at(&page), next), (vec![7, 9], None));
    }
}
