//! The store's group commit: the API's invoice writes and the deliveries' attempt records,
//! written by one thread in groups.
//!
//! An invoice the API answers 201 for must be on disk first. One commit per request made every
//! create wait for an fsync of its own, on a runtime worker, behind every other writer of the
//! file (redb has one writer at a time): under a burst, creates queued behind each other's
//! fsyncs and the worker could run nothing else meanwhile. Each delivery attempt likewise
//! opened a transaction of its own, and at a few hundred deliveries a second those commits
//! were the largest single cost of delivering a webhook. Here one thread takes every write
//! waiting when it is free and commits them in one transaction, durable when it holds an
//! invoice (attempt records alone are bookkeeping, committed without an fsync: a crash can
//! only repeat a delivery, never lose one). Each caller is answered once that transaction is
//! committed, so nothing is answered that a crash could lose, and a delivery's slot is only
//! released once its attempt is recorded.
//!
//! A group whose transaction fails is written again one write at a time, so one bad record
//! fails only its own caller.
//!
//! Hand-written: this is the store's own group commit (a channel, a thread and one redb
//! transaction); no crate offers it for redb.

use super::{Attempt, AttemptEffect, Invoice, Store, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most writes in one transaction.
const MAX_GROUP: usize = 256;
/// Writes waiting for the writer before a caller waits for room.
const QUEUE: usize = 4_096;

type Reply<T> = oneshot::Sender<Result<T, Arc<StoreError>>>;

/// One write the thread takes.
enum Write {
    /// A new invoice (durable); answers whether its id was new.
    Invoice(Invoice, Reply<bool>),
    /// A delivery attempt and its effect ([`Store::record_attempt`]).
    Attempt { id: String, attempt: Attempt, effect: AttemptEffect, reply: Reply<()> },
}

/// Writes invoices and attempt records in groups; cheap to clone. The thread ends when every
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct GroupWriter {
    queue: mpsc::Sender<Write>,
}

impl GroupWriter {
    /// Starts the writer thread of `store`.
    pub fn spawn(store: Store) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::channel::<Write>(QUEUE);
        start(store, rx)?;
        Ok(Self { queue })
    }

    /// Stores `invoice` durably unless its id is stored; returns whether it was new. Answers
    /// once the transaction holding it is committed.
    pub async fn put(&self, invoice: Invoice) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Write::Invoice(invoice, reply)).await.map_err(|_| StoreError::WriterStopped)?;
        settled(answer.await)
    }

    /// [`Store::record_attempt`], in the next group; answers once it is committed.
    pub async fn record_attempt(&self, id: &str, attempt: Attempt, effect: AttemptEffect) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = Write::Attempt { id: id.to_string(), attempt, effect, reply };
        self.queue.send(write).await.map_err(|_| StoreError::WriterStopped)?;
        settled(answer.await)
    }
}

/// The writer thread: takes every write waiting, writes them as one group, and again.
fn start(store: Store, mut rx: mpsc::Receiver<Write>) -> std::io::Result<()> {
    std::thread::Builder::new().name("store-writer".into()).spawn(move || {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            write_group(&store, group);
        }
    })?;
    Ok(())
}

fn settled<T>(answer: Result<Result<T, Arc<StoreError>>, oneshot::error::RecvError>) -> Result<T, StoreError> {
    match answer {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::GroupWrite { reason: e.to_string() }),
        Err(_) => Err(StoreError::WriterStopped),
    }
}

/// Writes `group` in one transaction and answers each caller; a group that fails is written
/// again one write at a time. A panic fails the writes it touched, not the writer: the next
/// groups are written as before.
fn write_group(store: &Store, group: Vec<Write>) {
    let invoices: Vec<Invoice> =
        group.iter().filter_map(|w| if let Write::Invoice(inv, _) = w { Some(inv.clone()) } else { None }).collect();
    let together = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.write_group(&invoices, &group)))
        .unwrap_or_else(|_| Err(StoreError::GroupWrite { reason: "the write panicked".into() }));
    match together {
        Ok(new) => {
            metrics::histogram!("store_write_group_size").record(group.len() as f64);
            let mut new = new.into_iter();
            for w in group {
                match w {
                    Write::Invoice(_, reply) => {
                        let _ = reply.send(Ok(new.next().unwrap_or(false)));
                    }
                    Write::Attempt { reply, .. } => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
        Err(e) if group.len() == 1 => {
            let e = Arc::new(e);
            for w in group {
                match w {
                    Write::Invoice(_, reply) => drop(reply.send(Err(e.clone()))),
                    Write::Attempt { reply, .. } => drop(reply.send(Err(e.clone()))),
                }
            }
        }
        Err(e) => {
            tracing::warn!(writes = group.len(), error = %e, "a grouped write failed; writing its parts one at a time");
            for w in group {
                write_group(store, vec![w]);
            }
        }
    }
}

impl Store {
    /// `invoices` (durably) and the attempt records of `writes`, in one transaction; for each
    /// invoice, whether it was new.
    fn write_group(&self, invoices: &[Invoice], writes: &[Write]) -> Result<Vec<bool>, StoreError> {
        let tx = if invoices.is_empty() { self.begin_bookkeeping()? } else { self.db().begin_write()? };
        let new = Self::insert_invoices_each(&tx, invoices, crate::time::now_s(), false)?;
        for w in writes {
            if let Write::Attempt { id, attempt, effect, .. } = w {
                Self::record_attempt_in(&tx, id, attempt.clone(), effect)?;
            }
        }
        tx.commit()?;
        Ok(new)
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
        }
    }

    fn attempt(at_ms: u64) -> Attempt {
        Attempt {
            n: 0,
            at_ms,
            status: Some(200),
            outcome: "delivered".into(),
            latency_ms: 1,
            excerpt: String::new(),
            node: "node-0".into(),
        }
    }

    /// Creates and attempt records sent at once share transactions, and each is answered
    /// with its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_and_attempts_made_together_are_each_written_and_answered() {
        let (_dir, store) = temp_store();
        let events: Vec<_> = (0..100u8).map(|i| crate::store::outbox::tests::event(&format!("e{i}"), i, 1)).collect();
        store.record_settlement(&crate::store::outbox::tests::record(), &events, 0).expect("settle");
        let writer = GroupWriter::spawn(store.clone()).expect("thread");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100u64 {
            let w = writer.clone();
            tasks.spawn(async move { w.put(invoice(i)).await.map(|_| ()) });
            let w = writer.clone();
            tasks.spawn(async move { w.record_attempt(&format!("e{i}"), attempt(5), AttemptEffect::Delivered).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("written");
        }
        for i in 0..100u64 {
            assert!(store.invoice(B256::from(U256::from(i))).expect("read").is_some(), "invoice {i} stored");
            let e = store.outbox_event(&format!("e{i}")).expect("read").expect("event");
            assert_eq!((e.delivered_at_ms, e.attempts), (Some(5), 1), "event e{i} recorded as delivered");
        }
        assert_eq!(store.pending_count().expect("count"), 0);
    }

    /// One write that fails (a corrupt outbox record) fails only its caller: the group is
    /// written again one write at a time and the others land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_fails_only_its_caller() {
        let (_dir, store) = temp_store();
        store
            .record_settlement(
                &crate::store::outbox::tests::record(),
                &[crate::store::outbox::tests::event("good", 1, 1)],
                0,
            )
            .expect("settle");
        {
            let tx = store.db().begin_write().expect("tx");
            tx.open_table(crate::store::OUTBOX).expect("table").insert("bad", b"not json".as_slice()).expect("insert");
            tx.commit().expect("commit");
        }
        // All three are queued before the thread starts, so they make one group.
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = GroupWriter { queue };
        let (w1, w2, w3) = (writer.clone(), writer.clone(), writer.clone());
        let bad = tokio::spawn(async move { w1.record_attempt("bad", attempt(5), AttemptEffect::Delivered).await });
        let good = tokio::spawn(async move { w2.record_attempt("good", attempt(5), AttemptEffect::Delivered).await });
        let inv = tokio::spawn(async move { w3.put(invoice(1)).await });
        while writer.queue.capacity() > QUEUE - 3 {
            tokio::task::yield_now().await;
        }
        start(store.clone(), rx).expect("thread");
        let (bad, good, inv) = (bad.await.expect("task"), good.await.expect("task"), inv.await.expect("task"));
        assert!(matches!(bad, Err(StoreError::GroupWrite { .. })), "the corrupt record's attempt fails: {bad:?}");
        good.expect("the other attempt is recorded");
        assert!(inv.expect("the invoice is stored"), "new");
        assert_eq!(store.outbox_event("good").expect("read").and_then(|e| e.delivered_at_ms), Some(5));
        assert!(store.invoice(B256::from(U256::from(1u64))).expect("read").is_some());
    }

    /// Creates made at once are each answered, each stored once, and a repeated id is not new.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_made_together_are_each_stored_and_answered() {
        let (_dir, store) = temp_store();
        let writer = GroupWriter::spawn(store.clone()).expect("thread");
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

    /// A writer whose thread is gone says so instead of hanging.
    #[tokio::test]
    async fn a_stopped_writer_is_an_error() {
        let (queue, rx) = mpsc::channel(1);
        drop(rx);
        let writer = GroupWriter { queue };
        assert!(matches!(writer.put(invoice(1)).await, Err(StoreError::WriterStopped)));
    }
}
