//! Webhook attempts, recorded in groups.
//!
//! Every attempt ends in a store write: the attempt, the event's new state and its place in the
//! delivery queue. A delivery pass hands out its events together and their answers come back
//! together; one write transaction each made every delivery task wait for redb's single writer
//! on a runtime worker, and paid a commit and five table opens per attempt. Here a
//! [`GroupWriter`] thread records every attempt waiting in one transaction, with the
//! bookkeeping durability attempts always had (a crash may lose the record of an attempt, never
//! an event: the event is attempted again, at least once). A task is answered once its group
//! is committed, so the slot it holds is released only after the event's new state is readable
//! and no pass hands the event out again before that.

use super::group_writer::GroupWriter;
use super::{Attempt, AttemptEffect, AttemptOn, Store, StoreError};

/// The most attempts in one transaction (it holds the store's one writer, which a durable
/// invoice create may be waiting for).
const MAX_GROUP: usize = 32;
/// Attempts waiting for the writer before `record` waits for room.
const QUEUE: usize = 1_024;

/// Records webhook attempts in groups; cheap to clone. The thread ends when every clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct AttemptWriter {
    writer: GroupWriter<(AttemptOn, Attempt, AttemptEffect), Result<(), StoreError>>,
}

impl AttemptWriter {
    /// Starts the writer thread of `store`.
    pub fn spawn(store: Store) -> std::io::Result<Self> {
        let writer = GroupWriter::spawn("attempt-writer", MAX_GROUP, QUEUE, move |attempts: &[_]| {
            metrics::histogram!("store_attempt_group_size").record(attempts.len() as f64);
            match store.record_attempts(attempts) {
                Ok(()) => Ok(attempts.iter().map(|_| Ok(())).collect()),
                // One attempt that cannot be written fails its own record only: the others are
                // written alone (an unrecorded attempt is made again, a duplicate delivery).
                Err(_) if attempts.len() > 1 => {
                    Ok(attempts.iter().map(|a| store.record_attempts(std::slice::from_ref(a))).collect())
                }
                Err(e) => Err(e),
            }
        })?;
        Ok(Self { writer })
    }

    /// Records `attempt` on delivery `on` and its effect; answers once committed.
    pub async fn record(
        &self,
        on: impl Into<AttemptOn>,
        attempt: Attempt,
        effect: AttemptEffect,
    ) -> Result<(), StoreError> {
        self.writer.submit((on.into(), attempt, effect)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OutboxEvent, Take, temp_store};

    fn attempt(at_ms: u64, outcome: &str) -> Attempt {
        Attempt {
            n: 0,
            at_ms,
            status: Some(200),
            outcome: outcome.into(),
            latency_ms: 1,
            excerpt: String::new(),
            node: "node-0".into(),
        }
    }

    /// Attempts recorded together each land on their own event, with the effect each asked for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_recorded_together_each_take_effect() {
        let (_dir, store) = temp_store();
        let events: Vec<OutboxEvent> = (0..60)
            .map(|i| OutboxEvent { id: format!("msg_{i}"), merchant_id: "m".into(), ..OutboxEvent::default() })
            .collect();
        store.enqueue_events(&events, 0).expect("enqueue");
        let writer = AttemptWriter::spawn(store.clone()).expect("thread");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60u64 {
            let w = writer.clone();
            let effect = match i % 3 {
                0 => AttemptEffect::Delivered,
                1 => AttemptEffect::RetryAt(1_000_000 + i),
                _ => AttemptEffect::Dead,
            };
            let attempt = attempt(500 + i, &format!("outcome {i}"));
            tasks.spawn(async move { w.record(AttemptOn::first(&format!("msg_{i}")), attempt, effect).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("recorded");
        }
        for i in 0..60u64 {
            let e = store.outbox_event(&format!("msg_{i}")).expect("read").expect("stored");
            assert_eq!((e.attempts, e.last_outcome.as_deref()), (1, Some(format!("outcome {i}").as_str())));
            match i % 3 {
                0 => assert_eq!(e.delivered_at_ms, Some(500 + i), "msg_{i} delivered"),
                1 => assert!(e.delivered_at_ms.is_none() && e.dead_at_ms.is_none(), "msg_{i} waits for its retry"),
                _ => assert_eq!(e.dead_at_ms, Some(500 + i), "msg_{i} dead-lettered"),
            }
        }
        assert!(
            store.due_deliveries(999_999, 100, &[], |_| Take::Taken).expect("due").is_empty(),
            "none due before the retries"
        );
        assert_eq!(
            store.due_deliveries(2_000_000, 100, &[], |_| Take::Taken).expect("due").len(),
            20,
            "the retries, due later"
        );
    }

    /// An attempt that cannot be written (its event's row is corrupt) fails alone: the attempts
    /// recorded in the same group are written one by one and each takes effect.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_attempt_that_cannot_be_written_fails_alone() {
        let (_dir, store) = temp_store();
        let events: Vec<OutboxEvent> = (0..40)
            .map(|i| OutboxEvent { id: format!("msg_{i}"), merchant_id: "m".into(), ..OutboxEvent::default() })
            .collect();
        store.enqueue_events(&events, 0).expect("enqueue");
        let tx = store.db().begin_write().expect("write");
        tx.open_table(crate::store::OUTBOX)
            .expect("table")
            .insert("msg_7", b"not an event".as_slice())
            .expect("corrupt");
        tx.commit().expect("commit");
        let writer = AttemptWriter::spawn(store.clone()).expect("thread");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40u64 {
            let w = writer.clone();
            let attempt = attempt(500 + i, "delivered");
            tasks.spawn(async move {
                (i, w.record(AttemptOn::first(&format!("msg_{i}")), attempt, AttemptEffect::Delivered).await)
            });
        }
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                (7, recorded) => assert!(recorded.is_err(), "the corrupt event's attempt fails"),
                (i, recorded) => recorded.unwrap_or_else(|e| panic!("msg_{i}: {e}")),
            }
        }
        for i in (0..40u64).filter(|i| *i != 7) {
            let e = store.outbox_event(&format!("msg_{i}")).expect("read").expect("stored");
            assert_eq!(e.delivered_at_ms, Some(500 + i), "msg_{i} delivered");
        }
    }
}
