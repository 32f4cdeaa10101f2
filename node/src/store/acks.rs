//! Delivery acknowledgements: `delivery_acks` ((id, operator) → when that operator says it
//! delivered it, ms) with `delivery_ack_times` ((received ms, id, operator)) to expire them.
//!
//! An acknowledgement is a claim by one operator. An event counts as delivered by the others
//! only once [`Store::ack_quorum`] distinct operators (f + 1, so at least one honest one) claim
//! it; until then this node delivers it itself when its turn comes, and a merchant may see the
//! same `webhook-id` twice (delivery is at least once). Acknowledgements of events this node
//! does not hold yet (a peer delivered before this node saw the settlement) wait for the event
//! for [`ACK_TTL_MS`] at most, and the table holds at most [`MAX_ACKS`] of them: a flood of
//! acknowledgements, sent in advance or for events that never come, expires and is bounded.

use super::outbox::OutboxEvent;
use super::outbox_queue::Queue;
use super::{ACK_TIMES, ACKS, OUTBOX, Store, StoreError, decode, encode};
use redb::ReadableTable;

/// How long an acknowledgement is kept, ms.
pub const ACK_TTL_MS: u64 = 30 * 60 * 1000;
/// Most acknowledgements kept; the oldest go first.
pub const MAX_ACKS: u64 = 200_000;
/// Expired acknowledgements removed per write, so one write stays cheap.
const ACK_PRUNE_BATCH: usize = 512;

/// When the `needed`-th distinct operator acknowledged `id` (the latest of the earliest
/// `needed` claims), counting only claims of deliveries after `after_ms`, or `None` while
/// fewer did.
pub(super) fn acked_by_quorum(
    acks: &impl ReadableTable<(&'static str, u32), u64>,
    id: &str,
    needed: usize,
    after_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let mut at: Vec<u64> = Vec::new();
    for e in acks.range((id, 0u32)..=(id, u32::MAX))? {
        let claimed = e?.1.value();
        if claimed > after_ms {
            at.push(claimed);
        }
    }
    if at.len() < needed {
        return Ok(None);
    }
    at.sort_unstable();
    Ok(at.get(needed.saturating_sub(1)).copied())
}

/// Removes acknowledgements older than [`ACK_TTL_MS`] (a batch at a time) and, past
/// [`MAX_ACKS`], the oldest.
fn prune_acks(
    acks: &mut redb::Table<(&'static str, u32), u64>,
    times: &mut redb::Table<(u64, &'static str, u32), ()>,
    now_ms: u64,
) -> Result<(), StoreError> {
    let cutoff = now_ms.saturating_sub(ACK_TTL_MS);
    let over = redb::ReadableTableMetadata::len(times)?.saturating_sub(MAX_ACKS) as usize;
    let mut gone: Vec<(u64, String, u32)> = Vec::new();
    for e in times.iter()? {
        let (k, _) = e?;
        let (at, id, op) = k.value();
        if at >= cutoff && gone.len() >= over {
            break;
        }
        gone.push((at, id.to_string(), op));
        if gone.len() >= ACK_PRUNE_BATCH.max(over) {
            break;
        }
    }
    for (at, id, op) in gone {
        times.remove((at, id.as_str(), op))?;
        acks.remove((id.as_str(), op))?;
    }
    Ok(())
}

impl Store {
    /// Records operator `operator`'s claim that it delivered event `id` at `at_ms` (its
    /// acknowledgement arrived over gossip, signed by it), received at `now_ms`; closes the
    /// event once enough distinct operators claim it. Expired acknowledgements are pruned.
    /// Returns whether a pending event was closed.
    pub fn acknowledge(&self, id: &str, operator: u32, at_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.acknowledge_many(&[(id, at_ms)], operator, now_ms)? == 1)
    }

    /// [`Store::acknowledge`] for each `(id, at_ms)` of one operator's message, in one write
    /// transaction; returns how many pending events were closed.
    pub fn acknowledge_many(&self, acks_of: &[(&str, u64)], operator: u32, now_ms: u64) -> Result<usize, StoreError> {
        let tx = self.begin_bookkeeping()?;
        let mut closed = 0;
        {
            let mut acks = tx.open_table(ACKS)?;
            let mut times = tx.open_table(ACK_TIMES)?;
            prune_acks(&mut acks, &mut times, now_ms)?;
            let mut queue = Queue::open(&tx)?;
            let mut outbox = tx.open_table(OUTBOX)?;
            for &(id, at_ms) in acks_of {
                if acks.get((id, operator))?.is_none() {
                    acks.insert((id, operator), at_ms)?;
                    times.insert((now_ms, id, operator), ())?;
                }
                // The event is read only once enough operators claim it.
                let Some(acked) = acked_by_quorum(&acks, id, self.ack_quorum(), 0)? else { continue };
                let current: Option<OutboxEvent> = outbox.get(id)?.map(|v| decode("outbox", v.value())).transpose()?;
                // A replayed event closes only when enough operators each claim a delivery after
                // the replay: one operator's late claim cannot lift an earlier one past it.
                let acked = match current.as_ref().and_then(|e| e.replayed_at_ms) {
                    Some(replayed) => acked_by_quorum(&acks, id, self.ack_quorum(), replayed)?,
                    None => Some(acked),
                };
                if let (Some(mut e), Some(acked)) = (current, acked)
                    && e.delivered_at_ms.is_none()
                {
                    e.delivered_at_ms = Some(acked);
                    e.last_outcome = Some("delivered by other operators".into());
                    outbox.insert(id, encode(&e).as_slice())?;
                    queue.unschedule(&e)?;
                    closed += 1;
                }
            }
        }
        tx.commit()?;
        Ok(closed)
    }

    /// The operators that acknowledged event `id`, ascending.
    pub fn acknowledgements(&self, id: &str) -> Result<Vec<u32>, StoreError> {
        let tx = self.read()?;
        let acks = tx.open_table(ACKS)?;
        let mut out = Vec::new();
        for e in acks.range((id, 0u32)..=(id, u32::MAX))? {
            out.push(e?.0.value().1);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::tests::{event, record};
    use crate::store::temp_store;

    #[test]
    fn acknowledgements_of_enough_operators_close_events_even_before_they_exist_here() {
        let (_dir, store) = temp_store();
        store.set_ack_quorum(2);
        store.record_settlement(&record(), &[event("a", 1, 1)], 0).expect("record");
        assert!(!store.acknowledge("a", 1, 50, 50).expect("ack"), "one operator's claim is not enough");
        assert!(!store.acknowledge("a", 1, 55, 55).expect("ack"), "nor is the same claim twice");
        assert!(store.acknowledge("a", 2, 60, 60).expect("ack"), "a second operator closes it");
        assert_eq!(store.outbox_event("a").expect("get").and_then(|e| e.delivered_at_ms), Some(60));
        // Claims that arrive before this node holds the event wait for it.
        assert!(!store.acknowledge("b", 1, 70, 70).expect("ack of an unknown event"));
        assert!(!store.acknowledge("b", 3, 80, 80).expect("ack of an unknown event"));
        store.record_settlement(&record(), &[event("b", 2, 1)], 90).expect("record");
        assert_eq!(store.outbox_event("b").expect("get").and_then(|e| e.delivered_at_ms), Some(80));
        // One operator's claims in advance close nothing.
        assert!(!store.acknowledge("c", 1, 100, 100).expect("ack in advance"));
        store.record_settlement(&record(), &[event("c", 3, 1)], 110).expect("record");
        assert_eq!(store.outbox_event("c").expect("get").map(|e| e.state()), Some("pending"));
        assert_eq!(store.acknowledgements("c").expect("read"), vec![1]);
    }

    #[test]
    fn acknowledgements_expire() {
        let (_dir, store) = temp_store();
        store.set_ack_quorum(2);
        assert!(!store.acknowledge("d", 1, 0, 0).expect("ack"));
        assert!(!store.acknowledge("d", 2, 0, 0).expect("ack"));
        let later = ACK_TTL_MS + 1;
        assert!(!store.acknowledge("e", 1, later, later).expect("ack"));
        assert!(store.acknowledgements("d").expect("read").is_empty(), "expired");
        store.record_settlement(&record(), &[event("d", 4, 1)], later).expect("record");
        assert_eq!(store.outbox_event("d").expect("get").map(|e| e.state()), Some("pending"));
    }

    /// One operator's batch closes nothing by itself, however many events it names; a second
    /// operator's batch closes the events both claim, in one write.
    #[test]
    fn batches_of_acknowledgements_close_only_what_a_quorum_claims() {
        let (_dir, store) = temp_store();
        store.set_ack_quorum(2);
        store.record_settlement(&record(), &[event("a", 1, 1), event("b", 2, 1), event("c", 3, 1)], 0).expect("record");
        assert_eq!(store.acknowledge_many(&[("a", 5), ("b", 5), ("c", 5), ("x", 5)], 1, 10).expect("batch"), 0);
        assert_eq!(store.pending_count().expect("count"), 3);
        assert_eq!(store.acknowledge_many(&[("a", 6), ("b", 7)], 2, 11).expect("batch"), 2);
        assert_eq!(store.pending_count().expect("count"), 1);
        let due: Vec<String> = store.due_events(100, 10, &[]).expect("due").into_iter().map(|e| e.id).collect();
        assert_eq!(due, vec!["c"], "closed events leave the queue's indexes too");
    }
}
