//! The outbox over a real store file: settlement and events written together, retries,
//! per-invoice order, the queue's indexes, and what a delivery pass reads.

use super::*;
use crate::store::temp_store;
use alloy::primitives::{Address, U256};

pub(crate) fn event(id: &str, invoice: u8, sequence: u64) -> OutboxEvent {
    OutboxEvent {
        id: id.into(),
        merchant_id: "m".into(),
        event_type: "invoice.paid".into(),
        body: "{}".into(),
        invoice_id: Some(B256::repeat_byte(invoice)),
        sequence,
        ..OutboxEvent::default()
    }
}

fn attempt(at_ms: u64, outcome: &str) -> Attempt {
    Attempt {
        n: 0,
        at_ms,
        status: Some(500),
        outcome: outcome.into(),
        latency_ms: 3,
        excerpt: "oops".into(),
        node: "node-0".into(),
    }
}

pub(crate) fn record() -> SettlementRecord {
    SettlementRecord {
        round: 1,
        root: B256::ZERO,
        signer_bitmap: U256::from(7),
        tx_hash: B256::ZERO,
        block_number: 9,
        submitter: Address::ZERO,
        ..Default::default()
    }
}

/// The events of a settlement read before a rewind removed it are not queued, and the record
/// does not come back; those of a record still held are.
#[test]
fn events_of_a_settlement_a_rewind_removed_meanwhile_are_not_queued() {
    let (_dir, store) = temp_store();
    let held = record();
    store.record_settlement(&held, &[], 0).expect("record");
    store.rewind(Some(0), 0).expect("rewind");
    assert!(store.settlement(held.round).expect("read").is_none(), "the rewind removed it");
    store.queue_events_of_stored_settlement(&held, &[event("a", 1, 1)], 0).expect("queue");
    assert!(store.settlement(held.round).expect("read").is_none(), "not written back");
    assert!(store.outbox_event("a").expect("get").is_none(), "nothing announced");
    store.record_settlement(&held, &[], 0).expect("record again");
    store.queue_events_of_stored_settlement(&held, &[event("a", 1, 1)], 0).expect("queue");
    assert!(store.outbox_event("a").expect("get").is_some(), "held: queued");
}

#[test]
fn settlement_and_events_are_written_together_and_retried_until_delivered() {
    let (_dir, store) = temp_store();
    store.record_settlement(&record(), &[event("a", 1, 1), event("b", 2, 1)], 100).expect("record");
    store.record_settlement(&record(), &[event("a", 1, 1)], 200).expect("idempotent");
    assert!(store.settlement(1).expect("read").is_some());
    assert_eq!(store.due_events(99, 10, &[]).expect("due").len(), 0);
    assert_eq!(store.due_events(100, 10, &[]).expect("due").len(), 2);
    store.record_attempt(AttemptOn::first("a"), attempt(100, "retry"), &AttemptEffect::RetryAt(5000)).expect("fail");
    store.record_attempt(AttemptOn::first("b"), attempt(100, "delivered"), &AttemptEffect::Delivered).expect("ok");
    assert_eq!(store.due_events(4999, 10, &[]).expect("due").len(), 0);
    let due = store.due_events(5000, 10, &[]).expect("due");
    assert_eq!((due.len(), due[0].attempts, due[0].last_outcome.as_deref()), (1, 1, Some("retry")));
    assert_eq!(store.pending_count().expect("count"), 1);
    assert_eq!(store.attempts("a").expect("attempts").len(), 1);
    assert_eq!(store.outbox_event("b").expect("get").map(|e| e.state()), Some("delivered"));
    assert!(store.due_events(5000, 10, &["m".to_string()]).expect("due").is_empty(), "paused merchant");
}

#[test]
fn one_invoice_goes_in_sequence_without_blocking_others() {
    let (_dir, store) = temp_store();
    store.record_settlement(&record(), &[event("a1", 1, 1), event("a2", 1, 2), event("b1", 2, 1)], 0).expect("record");
    let ids = |v: Vec<OutboxEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(store.due_events(0, 10, &[]).expect("due")), vec!["a1", "b1"]);
    store.record_attempt(AttemptOn::first("a1"), attempt(0, "retry"), &AttemptEffect::RetryAt(1000)).expect("fail");
    assert_eq!(ids(store.due_events(10, 10, &[]).expect("due")), vec!["b1"], "a2 waits for a1");
    store.record_attempt(AttemptOn::first("a1"), attempt(1000, "dead"), &AttemptEffect::Dead).expect("dead");
    let mut due = ids(store.due_events(1000, 10, &[]).expect("due"));
    due.sort();
    assert_eq!(due, vec!["a2", "b1"], "a1 dead: a2 may go");
    assert_eq!(store.dead_since(0, Some("m"), None).expect("dead"), vec!["a1"]);
    assert_eq!(store.replay(&["a1".to_string()], 2000).expect("replay"), 1);
    assert_eq!(store.outbox_event("a1").expect("get").map(|e| (e.state(), e.schedule_index)), Some(("pending", 0)));
}

/// A replay that lands while an attempt is under way outlives it: the attempt's answer is
/// kept, but the replayed delivery stays due, and acknowledgements of earlier deliveries by
/// other operators do not close it either.
#[test]
fn a_replay_during_an_attempt_or_before_late_acknowledgements_is_still_delivered() {
    let (_dir, store) = temp_store();
    store.record_settlement(&record(), &[event("a1", 1, 1)], 0).expect("record");
    store.record_attempt(AttemptOn::first("a1"), attempt(10, "delivered"), &AttemptEffect::Delivered).expect("ok");
    store.replay(&["a1".to_string()], 20).expect("replay");
    // The second attempt begins, the merchant replays again, then its answer arrives.
    let begun = store.outbox_event("a1").expect("get").expect("held");
    assert_eq!(store.replay(&["a1".to_string()], 30).expect("replay"), 1);
    store.record_attempt(&begun, attempt(40, "delivered"), &AttemptEffect::Delivered).expect("ok");
    let after = store.outbox_event("a1").expect("get").expect("held");
    assert_eq!((after.state(), after.attempts), ("pending", 2), "{after:?}");
    assert_eq!(store.attempts("a1").expect("attempts").len(), 2, "the answer is kept");
    assert!(store.due_events(40, 10, &[]).expect("due").iter().any(|e| e.id == "a1"));
    // Other operators acknowledge deliveries made before the replay: still due, also when one
    // more claims a delivery after it (one claim cannot lift the earlier ones past the replay).
    store.set_ack_quorum(2);
    store.acknowledge("a1", 1, 25, 45).expect("ack");
    store.acknowledge("a1", 2, 45, 45).expect("ack");
    assert_eq!(store.outbox_event("a1").expect("get").map(|e| e.state()), Some("pending"));
    // An attempt begun after the replay settles it.
    store.record_attempt(&after, attempt(50, "delivered"), &AttemptEffect::Delivered).expect("ok");
    assert_eq!(store.outbox_event("a1").expect("get").map(|e| e.state()), Some("delivered"));
}

fn event_of(id: String, merchant: &str, invoice: u64, sequence: u64) -> OutboxEvent {
    OutboxEvent {
        id,
        merchant_id: merchant.into(),
        event_type: "invoice.paid".into(),
        body: format!("{{\"invoice\":{{\"id\":\"{invoice}\",\"memo\":\"{}\"}}}}", "x".repeat(600)),
        invoice_id: Some(B256::from(alloy::primitives::U256::from(invoice))),
        sequence,
        ..OutboxEvent::default()
    }
}

/// A delivery pass reads the due part of the queue: with 10,000 delivered events, 10,000
/// pending ones not due yet (waiting for their failover turn) and 1,000 due ones of a paused
/// endpoint, it decodes only the 100 it hands out.
#[test]
fn a_delivery_pass_decodes_only_the_events_it_hands_out() {
    let (_dir, store) = temp_store();
    let tx = store.db().begin_write().expect("tx");
    {
        let mut outbox = tx.open_table(OUTBOX).expect("outbox");
        for i in 0..10_000u64 {
            let mut e = event_of(format!("delivered{i}"), "m", i, 1);
            e.delivered_at_ms = Some(5);
            outbox.insert(e.id.as_str(), encode(&e).as_slice()).expect("insert");
        }
    }
    tx.commit().expect("commit");
    let later: Vec<OutboxEvent> = (0..10_000u64).map(|i| event_of(format!("later{i}"), "m", 20_000 + i, 1)).collect();
    store.enqueue_events(&later, 1_000_000).expect("not due yet");
    let paused: Vec<OutboxEvent> = (0..1_000u64).map(|i| event_of(format!("paused{i}"), "p", 40_000 + i, 1)).collect();
    store.enqueue_events(&paused, 0).expect("paused endpoint");
    let due: Vec<OutboxEvent> = (0..100u64).map(|i| event_of(format!("due{i}"), "m", 60_000 + i, 1)).collect();
    store.enqueue_events(&due, 10).expect("due");
    crate::store::decodes::take("outbox");
    let take = |d: &crate::store::DueDelivery| if d.id == "due0" { Take::Passed } else { Take::Taken };
    let names = store.due_deliveries(1_000, 64, &["p".to_string()], take).expect("due");
    assert_eq!((names.len(), names.iter().any(|d| d.id == "due0")), (64, false), "the limit counts what is taken");
    assert_eq!(crate::store::decodes::take("outbox"), 0, "naming due deliveries decodes no event");
    let handed = store.due_events(1_000, 512, &["p".to_string()]).expect("due");
    assert_eq!(handed.len(), 100);
    assert!(handed.iter().all(|e| e.id.starts_with("due")));
    assert_eq!(crate::store::decodes::take("outbox"), 100, "decoded rows other than the due ones");
    assert_eq!(store.pending_count().expect("count"), 11_100);
}

/// A pass that finds a merchant's slots all in use asks about none of its other due deliveries,
/// and still hands out another merchant's; one that finds the node's slots all in use stops.
#[test]
fn a_delivery_pass_steps_over_what_a_full_bound_holds_back() {
    let (_dir, store) = temp_store();
    let busy: Vec<OutboxEvent> = (0..500u64).map(|i| event_of(format!("busy{i}"), "busy", i, 1)).collect();
    store.enqueue_events(&busy, 10).expect("busy merchant");
    let other: Vec<OutboxEvent> = (0..5u64).map(|i| event_of(format!("other{i}"), "other", 1_000 + i, 1)).collect();
    store.enqueue_events(&other, 20).expect("other merchant");
    let mut asked = Vec::new();
    let names = store
        .due_deliveries(1_000, 64, &[], |d| {
            asked.push(d.id.clone());
            if d.merchant_id == "busy" { Take::MerchantFull } else { Take::Taken }
        })
        .expect("due");
    assert_eq!(
        names.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["other0", "other1", "other2", "other3", "other4"]
    );
    assert_eq!(asked.len(), 6, "one of the full merchant's, then the other's: {asked:?}");
    let mut asked = 0;
    let none = store
        .due_deliveries(1_000, 64, &[], |_| {
            asked += 1;
            Take::AllFull
        })
        .expect("due");
    assert_eq!((none.len(), asked), (0, 1));
    let mut asked = 0;
    store
        .due_deliveries(1_000, 64, &[], |d| {
            asked += 1;
            if d.endpoint_key == "busy" { Take::EndpointFull } else { Take::Passed }
        })
        .expect("due");
    assert_eq!(asked, 6, "an endpoint found full is asked about once");
}

/// A store whose queue indexes are missing or disagree with the queue (an earlier version
/// ran on it, a restored backup) has them made again when it opens.
#[test]
fn the_queue_indexes_are_rebuilt_when_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("settleproof.redb");
    let store = Store::open(&path).expect("open");
    store.record_settlement(&record(), &[event("a1", 1, 1), event("a2", 1, 2), event("b1", 2, 1)], 0).expect("record");
    let tx = store.db().begin_write().expect("tx");
    tx.delete_table(OUTBOX_DUE).expect("drop due");
    tx.delete_table(OUTBOX_ORDER).expect("drop order");
    tx.commit().expect("commit");
    drop(store);
    let (store, ids) = reopened_due(&path);
    assert_eq!(ids, vec!["a1", "b1"], "a2 still waits for a1");
    // An earlier version delivered b1 and queued c1 behind the indexes' back: as many
    // pending as indexed, but not the same ones.
    let tx = store.db().begin_write().expect("tx");
    {
        let mut pending = tx.open_table(OUTBOX_PENDING).expect("pending");
        pending.remove("b1").expect("delivered");
        pending.insert("c1", 0).expect("queued");
        tx.open_table(OUTBOX).expect("outbox").insert("c1", encode(&event("c1", 3, 1)).as_slice()).expect("event");
    }
    tx.commit().expect("commit");
    drop(store);
    let (_store, ids) = reopened_due(&path);
    assert_eq!(ids, vec!["a1", "c1"], "the delivered one is gone, the queued one due");
}

/// The store at `path` opened again, and the ids of its due deliveries, sorted.
fn reopened_due(path: &std::path::Path) -> (Store, Vec<String>) {
    let store = Store::open(path).expect("reopen");
    let mut ids: Vec<String> = store.due_events(0, 10, &[]).expect("due").into_iter().map(|e| e.id).collect();
    ids.sort();
    (store, ids)
}

/// The row of delivery `id` as stored, decoded.
fn stored_row(store: &Store, id: &str) -> OutboxEvent {
    let tx = store.read().expect("read");
    let row = tx.open_table(OUTBOX).expect("outbox").get(id).expect("get").expect("a row");
    decode("outbox", row.value()).expect("decode")
}

/// A body is written once, beside its row: the state changes of a delivery rewrite a row that
/// does not hold it, and every read that shows or sends the event has it.
#[test]
fn a_body_is_stored_once_beside_its_row_and_read_with_the_event() {
    let (_dir, store) = temp_store();
    let body = r#"{"type":"invoice.paid","data":{"note":"a \"quoted\" word"}}"#;
    let a = OutboxEvent { body: body.into(), ..event("a", 1, 1) };
    store.record_settlement(&record(), &[a], 100).expect("record");
    assert_eq!(stored_row(&store, "a").body, "", "the row holds no body");
    store.record_attempt(AttemptOn::first("a"), attempt(100, "retry"), &AttemptEffect::RetryAt(200)).expect("attempt");
    assert_eq!(stored_row(&store, "a").body, "", "nor after an attempt");
    assert_eq!(store.due_events(200, 10, &[]).expect("due")[0].body, body);
    assert_eq!(store.due_event("a", 200).expect("due").expect("a").body, body);
    assert_eq!(store.outbox_event("a").expect("get").expect("a").body, body);
    assert_eq!(store.events(None, None, None, None, 10).expect("list")[0].body, body);
    // A bare event rendered again: its new body replaces the old one, the row stays without.
    assert!(store.rerender_event("a", "invoice.overpaid", "{\"v\":2}").expect("rerender"));
    assert_eq!(stored_row(&store, "a").body, "");
    let again = store.outbox_event("a").expect("get").expect("a");
    assert_eq!((again.event_type.as_str(), again.body.as_str()), ("invoice.overpaid", "{\"v\":2}"));
}

/// A row whose body is neither inline nor in its table is refused, not sent empty.
#[test]
fn a_row_without_a_body_is_refused() {
    let (_dir, store) = temp_store();
    store.record_settlement(&record(), &[event("a", 1, 1)], 100).expect("record");
    let tx = store.db().begin_write().expect("tx");
    tx.open_table(OUTBOX_BODIES).expect("bodies").remove("a").expect("remove");
    tx.commit().expect("commit");
    assert!(matches!(store.outbox_event("a"), Err(StoreError::Corrupt { table: "outbox_bodies", .. })));
    assert!(store.due_event("a", 100).is_err());
}

/// A store written before bodies had a table of their own holds each body inline in its row:
/// those events are read, delivered and updated as they are.
#[test]
fn a_row_that_holds_its_body_inline_is_read_with_it() {
    let (_dir, store) = temp_store();
    store.record_settlement(&record(), &[event("new", 2, 1)], 100).expect("record");
    let old = OutboxEvent { body: "{\"old\":true}".into(), created_at_ms: 100, ..event("old", 1, 1) };
    let tx = store.db().begin_write().expect("tx");
    {
        let mut queue = super::outbox_queue::Queue::open(&tx).expect("queue");
        queue.schedule(&old, 100).expect("schedule");
        tx.open_table(OUTBOX).expect("outbox").insert("old", encode(&old).as_slice()).expect("row");
    }
    tx.commit().expect("commit");
    let due = store.due_events(100, 10, &[]).expect("due");
    assert_eq!(due.iter().find(|e| e.id == "old").map(|e| e.body.as_str()), Some("{\"old\":true}"));
    store
        .record_attempt(AttemptOn::first("old"), attempt(100, "retry"), &AttemptEffect::RetryAt(300))
        .expect("attempt");
    let read = store.due_event("old", 300).expect("due").expect("old");
    assert_eq!((read.attempts, read.body.as_str()), (1, "{\"old\":true}"));
}
