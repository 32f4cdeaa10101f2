//! The webhook outbox: events are written in the same transaction as the settlement that
//! causes them, before any HTTP call, and stay pending until delivered.

use super::rounds::SettlementRecord;
use super::{OUTBOX, OUTBOX_PENDING, SETTLEMENTS, Store, StoreError, decode, encode};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One webhook event and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Idempotency key, sent as `webhook-id` on every attempt.
    pub id: String,
    /// Merchant to notify.
    pub merchant_id: String,
    /// Event type, e.g. `invoice.paid`.
    pub event_type: String,
    /// The JSON body sent.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Outcome of the last attempt (HTTP status or error).
    pub last_outcome: Option<String>,
    /// When it was delivered (unix ms).
    pub delivered_at_ms: Option<u64>,
}

impl Store {
    /// Records a settlement and enqueues its webhook events atomically. Events already in the
    /// outbox (same id) are left as they are.
    pub fn record_settlement(
        &self,
        record: &SettlementRecord,
        events: &[OutboxEvent],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        {
            let mut settled = tx.open_table(SETTLEMENTS)?;
            if settled.get(record.round)?.is_none() {
                settled.insert(record.round, encode(record).as_slice())?;
            }
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut pending = tx.open_table(OUTBOX_PENDING)?;
            for e in events {
                if outbox.get(e.id.as_str())?.is_none() {
                    outbox.insert(e.id.as_str(), encode(e).as_slice())?;
                    pending.insert(e.id.as_str(), now_ms)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Pending events whose next attempt is due at `now_ms`, oldest first, at most `limit`.
    pub fn due_events(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        let tx = self.read()?;
        let pending = tx.open_table(OUTBOX_PENDING)?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut due = Vec::new();
        for entry in pending.iter()? {
            let (id, at) = entry?;
            if at.value() <= now_ms
                && let Some(v) = outbox.get(id.value())?
            {
                due.push((at.value(), decode::<OutboxEvent>("outbox", v.value())?));
            }
        }
        due.sort_by_key(|(at, _)| *at);
        Ok(due.into_iter().take(limit).map(|(_, e)| e).collect())
    }

    /// Number of events not yet delivered.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        let tx = self.read()?;
        Ok(redb::ReadableTableMetadata::len(&tx.open_table(OUTBOX_PENDING)?)?)
    }

    /// Records an attempt: delivered (`next_attempt_ms` = None) or to retry at `next_attempt_ms`.
    pub fn record_attempt(
        &self,
        id: &str,
        outcome: String,
        now_ms: u64,
        next_attempt_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut pending = tx.open_table(OUTBOX_PENDING)?;
            let current: Option<OutboxEvent> = outbox.get(id)?.map(|v| decode("outbox", v.value())).transpose()?;
            if let Some(mut e) = current {
                e.attempts = e.attempts.saturating_add(1);
                e.last_outcome = Some(outcome);
                match next_attempt_ms {
                    None => {
                        e.delivered_at_ms = Some(now_ms);
                        pending.remove(id)?;
                    }
                    Some(at) => {
                        pending.insert(id, at)?;
                    }
                }
                outbox.insert(id, encode(&e).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One outbox event by id.
    pub fn outbox_event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(OUTBOX)?;
        t.get(id)?.map(|v| decode("outbox", v.value())).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use alloy::primitives::{Address, B256, U256};

    fn event(id: &str) -> OutboxEvent {
        OutboxEvent {
            id: id.into(),
            merchant_id: "m".into(),
            event_type: "invoice.paid".into(),
            body: "{}".into(),
            attempts: 0,
            last_outcome: None,
            delivered_at_ms: None,
        }
    }

    #[test]
    fn settlement_and_events_are_written_together_and_retried_until_delivered() {
        let (_dir, store) = temp_store();
        let record = SettlementRecord {
            round: 1,
            root: B256::ZERO,
            signer_bitmap: U256::from(7),
            tx_hash: B256::ZERO,
            block_number: 9,
            submitter: Address::ZERO,
        };
        store.record_settlement(&record, &[event("a"), event("b")], 100).expect("record");
        store.record_settlement(&record, &[event("a")], 200).expect("idempotent");
        assert!(store.settlement(1).expect("read").is_some());
        assert_eq!(store.due_events(99, 10).expect("due").len(), 0);
        assert_eq!(store.due_events(100, 10).expect("due").len(), 2);
        store.record_attempt("a", "500".into(), 100, Some(5000)).expect("fail");
        store.record_attempt("b", "200".into(), 100, None).expect("ok");
        assert_eq!(store.due_events(4999, 10).expect("due").len(), 0);
        let due = store.due_events(5000, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].attempts, due[0].last_outcome.as_deref()), (1, Some("500")));
        assert_eq!(store.pending_count().expect("count"), 1);
        assert_eq!(store.outbox_event("b").expect("get").and_then(|e| e.delivered_at_ms), Some(100));
    }
}
