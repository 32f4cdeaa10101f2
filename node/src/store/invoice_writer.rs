//! The API's invoice writes, committed durably in groups.
//!
//! An invoice the API answers 201 for must be on disk first. One commit per request made every
//! create wait for an fsync of its own, on a runtime worker, behind every other writer of the
//! file (redb has one writer at a time): under a burst, creates queued behind each other's
//! fsyncs and the worker could run nothing else meanwhile. Here a [`GroupWriter`] thread takes
//! every create waiting when it is free and writes them in one durable transaction; each request
//! is answered once that transaction is committed, so nothing is answered that a crash could
//! lose.

use super::group_writer::GroupWriter;
use super::{Invoice, Store, StoreError};

/// The most invoices in one transaction.
const MAX_GROUP: usize = 256;
/// Creates waiting for the writer before `put` waits for room.
const QUEUE: usize = 4_096;

/// Writes invoices durably, in groups; cheap to clone. The thread ends when every clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct InvoiceWriter {
    writer: GroupWriter<Invoice, bool>,
}

impl InvoiceWriter {
    /// Starts the writer thread of `store`.
    pub fn spawn(store: Store) -> std::io::Result<Self> {
        let writer = GroupWriter::spawn("invoice-writer", MAX_GROUP, QUEUE, move |invoices: &[Invoice]| {
            let new = store.put_created_invoices(invoices)?;
            metrics::histogram!("store_invoice_group_size").record(invoices.len() as f64);
            Ok(new)
        })?;
        Ok(Self { writer })
    }

    /// Stores `invoice` durably unless its id is stored; returns whether it was new. Answers
    /// once the transaction holding it is committed.
    pub async fn put(&self, invoice: Invoice) -> Result<bool, StoreError> {
        self.writer.submit(invoice).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use alloy::primitives::{B256, U256};

    fn invoice(i: u64) -> Invoice {
        Invoice {
            id: B256::from(U256::from(i)),
            nonce: B256::ZERO,
            merchant_id: "m".into(),
            payout_address: alloy::primitives::Address::ZERO,
            amount: U256::from(i),
            token: alloy::primitives::Address::ZERO,
            created_at: i,
            expires_at: Some(i + 3_600),
            metadata: None,
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
        }
    }

    /// Creates made at once are each answered, each stored once, and a repeated id is not new.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_made_together_are_each_stored_and_answered() {
        let (_dir, store) = temp_store();
        let writer = InvoiceWriter::spawn(store.clone()).expect("thread");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..300u64 {
            let w = writer.clone();
            tasks.spawn(async move { (i, w.put(invoice(i)).await.expect("put")) });
        }
        let mut answered = 0;
        while let Some(r) = tasks.join_next().await {
            let (i, new) = r.expect("task");
            assert!(new, "invoice {i} was new");
            answered += 1;
        }
        assert_eq!(answered, 300);
        for i in 0..300u64 {
            assert!(store.invoice(B256::from(U256::from(i))).expect("read").is_some(), "invoice {i} stored");
        }
        assert!(!writer.put(invoice(7)).await.expect("again"), "a stored id is not new");
    }
}
