//! The webhook outbox: events are written in the same transaction as the settlement that
//! causes them, before any HTTP call, and stay pending until delivered, dead-lettered, or
//! acknowledged as delivered by another operator. Every attempt is kept.
//!
//! Tables: `outbox` (id → event, its delivery state), `outbox_bodies` (id → the JSON body sent),
//! `outbox_pending` with its indexes (the queue of pending
//! deliveries, see `outbox_queue.rs`), `outbox_dead` (id → when it was dead-lettered, ms), `outbox_attempts` ((id, n) → attempt),
//! and the endpoints' delivery state in `endpoint_state.rs`. Acknowledgements by other operators
//! are in `acks.rs`.
//!
//! A body is written once, when its event is queued, and read only to deliver or show it: the
//! delivery state changes (attempts, acknowledgements, replays) rewrite a row of a few hundred
//! bytes instead of one that holds the body (a receipt makes it kilobytes), escaped as a JSON
//! string inside the row's JSON. Rows written before bodies had their table hold the body
//! inline, and are read as they are.

use super::outbox_queue::{self, OUTBOX_DUE, OUTBOX_ORDER, Queue};
use super::rounds::SettlementRecord;
use super::{
    ACKS, ATTEMPTS, DEAD, OUTBOX, OUTBOX_BODIES, OUTBOX_PENDING, PROVISIONAL, SETTLEMENTS, Store, StoreError, decode,
    encode,
};
use alloy::primitives::B256;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// The idempotency key of the event for one payment: the same on every node and attempt.
pub fn webhook_id(invoice_id: B256, tx_hash: B256, log_index: u64) -> String {
    let digest =
        alloy::primitives::keccak256([invoice_id.as_slice(), tx_hash.as_slice(), &log_index.to_be_bytes()].concat());
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// One webhook event and its delivery state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Idempotency key, sent as `webhook-id` on every attempt.
    pub id: String,
    /// Merchant to notify.
    pub merchant_id: String,
    /// Event type, e.g. `invoice.paid`.
    pub event_type: String,
    /// The JSON body sent. Stored in `outbox_bodies`, not in the row (rows of earlier versions
    /// hold it inline).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Attempts made so far, in all.
    pub attempts: u32,
    /// Attempts since the event was last (re)queued: the position in the retry schedule.
    #[serde(default)]
    pub schedule_index: u32,
    /// Outcome of the last attempt (HTTP status or error).
    pub last_outcome: Option<String>,
    /// When it was delivered (unix ms).
    pub delivered_at_ms: Option<u64>,
    /// When it was dead-lettered (unix ms).
    #[serde(default)]
    pub dead_at_ms: Option<u64>,
    /// Invoice the event is about, for per-invoice ordering.
    #[serde(default)]
    pub invoice_id: Option<B256>,
    /// Position among the invoice's events (from 1).
    #[serde(default)]
    pub sequence: u64,
    /// When the event was created (unix ms).
    #[serde(default)]
    pub created_at_ms: u64,
    /// The merchant's own endpoint this delivery is for; `None`: the registry's primary
    /// endpoint. The delivery's `id` is then `<webhook-id>.<endpoint id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// Times it was replayed. An attempt begun before the latest replay is kept in the log but
    /// cannot settle the replayed delivery (see [`AttemptOn`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replays: u32,
    /// When it was last replayed (unix ms): other operators' acknowledgements of deliveries
    /// made before then do not close it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at_ms: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The delivery an attempt was made on, as it was when the attempt began: its id and how many
/// times it had been replayed. A replay that lands while an attempt is under way thereby
/// outlives it: the attempt's answer is recorded, but the replayed delivery stays due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOn {
    /// The delivery's id.
    pub id: String,
    /// [`OutboxEvent::replays`] when the attempt began.
    pub replays: u32,
}

impl AttemptOn {
    /// An attempt on delivery `id` never replayed.
    #[cfg(test)]
    pub(crate) fn first(id: &str) -> Self {
        Self { id: id.into(), replays: 0 }
    }
}

impl From<&OutboxEvent> for AttemptOn {
    fn from(e: &OutboxEvent) -> Self {
        Self { id: e.id.clone(), replays: e.replays }
    }
}

impl OutboxEvent {
    /// The `webhook-id` sent: the same for the event's deliveries to every endpoint.
    pub fn webhook_id(&self) -> &str {
        self.id.split('.').next().unwrap_or(&self.id)
    }

    /// The key of the delivery state (and concurrency bound) of the endpoint it goes to.
    pub fn endpoint_key(&self) -> String {
        match &self.endpoint_id {
            Some(ep) => super::endpoint_state_key(&self.merchant_id, ep),
            None => self.merchant_id.clone(),
        }
    }

    /// This event's delivery to endpoint `endpoint_id`.
    pub fn for_endpoint(&self, endpoint_id: &str) -> OutboxEvent {
        OutboxEvent {
            id: format!("{}.{endpoint_id}", self.webhook_id()),
            endpoint_id: Some(endpoint_id.to_string()),
            ..self.clone()
        }
    }

    /// `pending`, `delivered` or `dead`.
    pub fn state(&self) -> &'static str {
        if self.delivered_at_ms.is_some() {
            "delivered"
        } else if self.dead_at_ms.is_some() {
            "dead"
        } else {
            "pending"
        }
    }
}

/// A due delivery as the queue's index names it, before its event is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// Delivery id.
    pub id: String,
    /// Merchant.
    pub merchant_id: String,
    /// Its endpoint's delivery state key ([`OutboxEvent::endpoint_key`]).
    pub endpoint_key: String,
}

/// What a delivery pass's `accept` did with a due delivery ([`Store::due_deliveries`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// A slot was taken for it.
    Taken,
    /// Passed over alone (already under way).
    Passed,
    /// Its endpoint has every slot in use: the pass steps over the endpoint's other deliveries.
    EndpointFull,
    /// Its merchant has every slot in use: the pass steps over all of the merchant's.
    MerchantFull,
    /// Every slot of the node is in use: the pass ends.
    AllFull,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// Number, from 1.
    pub n: u32,
    /// When, unix ms.
    pub at_ms: u64,
    /// HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// `delivered`, `retry`, `dead`, `endpoint_disabled`, or the transport error.
    pub outcome: String,
    /// Time to the answer, ms.
    pub latency_ms: u64,
    /// The start of the answer's body (at most 256 characters).
    pub excerpt: String,
    /// Operator that made the attempt.
    pub node: String,
}

/// What an attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEffect {
    /// Delivered.
    Delivered,
    /// Try again at this time, unix ms.
    RetryAt(u64),
    /// Give up: move to the dead-letter queue.
    Dead,
    /// The endpoint asked to stop (410): pause the merchant's deliveries; the event waits.
    DisableEndpoint(String),
}

impl Store {
    /// Records a settlement and enqueues its webhook events atomically, to be attempted first at
    /// `first_attempt_ms`. Events already in the outbox (same id) are left as they are; events a
    /// peer already delivered are stored as delivered.
    pub fn record_settlement(
        &self,
        record: &SettlementRecord,
        events: &[OutboxEvent],
        first_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.record_settlement_events(record, events, first_attempt_ms, false)
    }

    /// [`Store::record_settlement`] of a record the store held when `events` were made: they are
    /// queued only if it still holds that very record (a rewind may have removed it meanwhile,
    /// and it must not come back).
    pub fn queue_events_of_stored_settlement(
        &self,
        record: &SettlementRecord,
        events: &[OutboxEvent],
        first_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.record_settlement_events(record, events, first_attempt_ms, true)
    }

    fn record_settlement_events(
        &self,
        record: &SettlementRecord,
        events: &[OutboxEvent],
        first_attempt_ms: u64,
        only_if_stored: bool,
    ) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        {
            let mut settled = tx.open_table(SETTLEMENTS)?;
            let known: Option<SettlementRecord> =
                settled.get(record.round)?.map(|v| decode("settlements", v.value())).transpose()?;
            // The same settlement (its transaction and root): a record completed meanwhile with
            // its signature is still it.
            if only_if_stored && !known.as_ref().is_some_and(|k| k.tx_hash == record.tx_hash && k.root == record.root) {
                return Ok(());
            }
            // Keep the first record, but complete it with the signature when it lacked one.
            if known.is_none_or(|k| k.signature.is_empty() && !record.signature.is_empty()) {
                settled.insert(record.round, encode(record).as_slice())?;
                if record.provisional {
                    tx.open_table(PROVISIONAL)?.insert(record.round, ())?;
                }
            }
            drop(settled);
            self.enqueue(&tx, events, first_attempt_ms)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Enqueues events that are not in the outbox yet (for example a merchant's test event).
    pub fn enqueue_events(&self, events: &[OutboxEvent], first_attempt_ms: u64) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        self.enqueue(&tx, events, first_attempt_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// Enqueues `events` for the primary endpoint and, fanned out, for each of the merchant's
    /// own endpoints whose filter takes them: one delivery each, with its own state.
    pub(super) fn enqueue(
        &self,
        tx: &redb::WriteTransaction,
        events: &[OutboxEvent],
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let mut outbox = tx.open_table(OUTBOX)?;
        let mut bodies = tx.open_table(OUTBOX_BODIES)?;
        let mut queue = Queue::open(tx)?;
        let acks = tx.open_table(ACKS)?;
        // Each event, then its fan-out to the merchant's own endpoints; an event is cloned only
        // for a delivery that is new.
        let mut fanned = Vec::new();
        for e in events {
            if e.endpoint_id.is_none() {
                for ep in self.endpoint_targets(&e.merchant_id, &e.event_type) {
                    fanned.push(e.for_endpoint(&ep));
                }
            }
        }
        for e in events.iter().chain(&fanned) {
            if outbox.get(e.id.as_str())?.is_some() {
                continue;
            }
            bodies.insert(e.id.as_str(), e.body.as_bytes())?;
            let mut e = OutboxEvent { body: String::new(), ..e.clone() };
            e.created_at_ms = at_ms;
            match super::acks::acked_by_quorum(&acks, &e.id, self.ack_quorum(), 0)? {
                Some(acked) => {
                    e.delivered_at_ms = Some(acked);
                    e.last_outcome = Some("delivered by other operators".into());
                }
                None => queue.schedule(&e, at_ms)?,
            }
            outbox.insert(e.id.as_str(), encode(&e).as_slice())?;
        }
        Ok(())
    }

    /// Pending deliveries due at `now_ms`, oldest first, that `accept` takes (it takes a
    /// delivery slot, and says which bound refused one: see [`Take`]), until it took `limit`,
    /// skipping endpoints whose [`OutboxEvent::endpoint_key`] is in `paused` (`<merchant>/*`:
    /// all of a merchant's) and any delivery whose invoice has an earlier event still pending
    /// to the same endpoint (events of one invoice go out in sequence; a failing event holds
    /// back only its own invoice at its own endpoint).
    ///
    /// Reads only the due part of the queue's index and decodes no event: deliveries not yet
    /// due (waiting for their failover turn or a retry), delivered or dead ones cost nothing.
    /// Due entries of paused endpoints, and of endpoints or merchants `accept` found full in
    /// this pass, are stepped over (an index entry each, no other read, no event).
    pub fn due_deliveries(
        &self,
        now_ms: u64,
        limit: usize,
        paused: &[String],
        mut accept: impl FnMut(&DueDelivery) -> Take,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Deliveries `accept` took hold slots: a read that fails midway hands out those taken
        // (their attempts release the slots) instead of dropping them with the error.
        match self.due_deliveries_into(now_ms, limit, paused, &mut accept, &mut out) {
            Err(e) if !out.is_empty() => {
                tracing::warn!(error = %e, taken = out.len(), "delivery pass cut short by a store error");
                Ok(out)
            }
            r => r.map(|()| out),
        }
    }

    fn due_deliveries_into(
        &self,
        now_ms: u64,
        limit: usize,
        paused: &[String],
        accept: &mut impl FnMut(&DueDelivery) -> Take,
        out: &mut Vec<DueDelivery>,
    ) -> Result<(), StoreError> {
        let tx = self.read()?;
        let due = tx.open_table(OUTBOX_DUE)?;
        let order = tx.open_table(OUTBOX_ORDER)?;
        let paused_merchant = |m: &str| paused.iter().any(|p| p.strip_suffix("/*") == Some(m));
        // Found full in this pass: few, so a list.
        let (mut full_endpoints, mut full_merchants) = (Vec::<String>::new(), Vec::<String>::new());
        for entry in due.range(..(now_ms.saturating_add(1), ""))? {
            let (k, v) = entry?;
            let (_, id) = k.value();
            let (merchant, endpoint_key, invoice, sequence) = v.value();
            if paused.iter().any(|p| p == endpoint_key)
                || paused_merchant(merchant)
                || full_endpoints.iter().any(|e| e == endpoint_key)
                || full_merchants.iter().any(|m| m == merchant)
            {
                continue;
            }
            if let Some(inv) = invoice
                && outbox_queue::earlier_pending(&order, inv, endpoint_key, sequence)?
            {
                continue;
            }
            let d = DueDelivery {
                id: id.to_string(),
                merchant_id: merchant.to_string(),
                endpoint_key: endpoint_key.to_string(),
            };
            match accept(&d) {
                Take::Taken => {
                    out.push(d);
                    if out.len() >= limit {
                        break;
                    }
                }
                Take::Passed => {}
                Take::EndpointFull => full_endpoints.push(d.endpoint_key),
                Take::MerchantFull => full_merchants.push(d.merchant_id),
                Take::AllFull => break,
            }
        }
        Ok(())
    }

    /// The events of [`Store::due_deliveries`] (none skipped), decoded.
    pub fn due_events(&self, now_ms: u64, limit: usize, paused: &[String]) -> Result<Vec<OutboxEvent>, StoreError> {
        let due = self.due_deliveries(now_ms, limit, paused, |_| Take::Taken)?;
        let tx = self.read()?;
        let (outbox, bodies) = (tx.open_table(OUTBOX)?, tx.open_table(OUTBOX_BODIES)?);
        let mut out = Vec::with_capacity(due.len());
        for d in due {
            if let Some(v) = outbox.get(d.id.as_str())? {
                out.push(with_body(&bodies, decode("outbox", v.value())?)?);
            }
        }
        Ok(out)
    }

    /// Delivery `id` when it is still pending and due at `now_ms` (not delivered, dead-lettered
    /// or moved to a later attempt since it was read as due).
    pub fn due_event(&self, id: &str, now_ms: u64) -> Result<Option<OutboxEvent>, StoreError> {
        let tx = self.read()?;
        if tx.open_table(OUTBOX_PENDING)?.get(id)?.is_none_or(|at| at.value() > now_ms) {
            return Ok(None);
        }
        let (outbox, bodies) = (tx.open_table(OUTBOX)?, tx.open_table(OUTBOX_BODIES)?);
        outbox.get(id)?.map(|v| with_body(&bodies, decode("outbox", v.value())?)).transpose()
    }

    /// Number of events not yet delivered (nor dead).
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        let tx = self.read()?;
        Ok(redb::ReadableTableMetadata::len(&tx.open_table(OUTBOX_PENDING)?)?)
    }

    /// Records an attempt and its effect, atomically.
    pub fn record_attempt(
        &self,
        on: impl Into<AttemptOn>,
        attempt: Attempt,
        effect: &AttemptEffect,
    ) -> Result<(), StoreError> {
        self.record_attempts(&[(on.into(), attempt, effect.clone())])
    }

    /// Records attempts (the delivery as it was, attempt, effect) and their effects in one
    /// transaction (see [`super::AttemptWriter`]). An attempt whose delivery is not in the
    /// outbox is skipped.
    pub fn record_attempts(&self, attempts: &[(AttemptOn, Attempt, AttemptEffect)]) -> Result<(), StoreError> {
        let tx = self.begin_bookkeeping()?;
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut queue = Queue::open(&tx)?;
            let mut log = tx.open_table(ATTEMPTS)?;
            let mut dead = tx.open_table(DEAD)?;
            for (on, attempt, effect) in attempts {
                let id = on.id.as_str();
                let current: Option<OutboxEvent> = outbox.get(id)?.map(|v| decode("outbox", v.value())).transpose()?;
                let Some(mut e) = current else { continue };
                // An attempt that raced a delivery (or a dead-lettering) elsewhere is recorded,
                // but cannot put the event back in the queue; one that began before a replay
                // cannot settle the replayed delivery.
                let settled = (e.delivered_at_ms.is_some() || e.dead_at_ms.is_some()) && queue.due_at(id)?.is_none()
                    || on.replays != e.replays;
                e.attempts = e.attempts.saturating_add(1);
                let n = e.attempts;
                if !settled {
                    e.schedule_index = e.schedule_index.saturating_add(1);
                    e.last_outcome = Some(attempt.outcome.clone());
                    match effect {
                        AttemptEffect::Delivered => {
                            e.delivered_at_ms = Some(attempt.at_ms);
                            queue.unschedule(&e)?;
                        }
                        AttemptEffect::RetryAt(at) => queue.schedule(&e, *at)?,
                        AttemptEffect::Dead => {
                            e.dead_at_ms = Some(attempt.at_ms);
                            queue.unschedule(&e)?;
                            dead.insert(id, attempt.at_ms)?;
                        }
                        AttemptEffect::DisableEndpoint(_) => {
                            // Undo the schedule step: the event waits for the endpoint, it did
                            // not fail.
                            e.schedule_index = e.schedule_index.saturating_sub(1);
                        }
                    }
                }
                outbox.insert(id, encode(&e).as_slice())?;
                log.insert((id, n), encode(&Attempt { n, ..attempt.clone() }).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Puts events back in the queue for an immediate attempt (dead or delivered alike) and
    /// restarts their retry schedule. Returns how many were requeued.
    pub fn replay(&self, ids: &[String], now_ms: u64) -> Result<usize, StoreError> {
        let tx = self.db().begin_write()?;
        let mut n = 0;
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut queue = Queue::open(&tx)?;
            let mut dead = tx.open_table(DEAD)?;
            let mut acks = tx.open_table(ACKS)?;
            for id in ids {
                let current: Option<OutboxEvent> =
                    outbox.get(id.as_str())?.map(|v| decode("outbox", v.value())).transpose()?;
                if let Some(mut e) = current {
                    e.delivered_at_ms = None;
                    e.dead_at_ms = None;
                    e.schedule_index = 0;
                    e.replays = e.replays.saturating_add(1);
                    e.replayed_at_ms = Some(now_ms);
                    outbox.insert(id.as_str(), encode(&e).as_slice())?;
                    queue.schedule(&e, now_ms)?;
                    dead.remove(id.as_str())?;
                    let claimed: Vec<u32> = acks
                        .range((id.as_str(), 0u32)..=(id.as_str(), u32::MAX))?
                        .map(|e| e.map(|(k, _)| k.value().1))
                        .collect::<Result<_, _>>()?;
                    for op in claimed {
                        acks.remove((id.as_str(), op))?;
                    }
                    n += 1;
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Events, optionally of one merchant, invoice, state and endpoint (`Some(None)`: the
    /// primary one), newest first, at most `limit`.
    pub fn events(
        &self,
        merchant: Option<&str>,
        invoice: Option<B256>,
        state: Option<&str>,
        endpoint: Option<Option<&str>>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let tx = self.read()?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in outbox.iter()? {
            let (_, v) = entry?;
            let e: OutboxEvent = decode("outbox", v.value())?;
            if merchant.is_none_or(|m| m == e.merchant_id)
                && invoice.is_none_or(|i| Some(i) == e.invoice_id)
                && state.is_none_or(|s| s == e.state())
                && endpoint.is_none_or(|ep| ep == e.endpoint_id.as_deref())
            {
                out.push(e);
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse((e.created_at_ms, e.sequence)));
        out.truncate(limit);
        let bodies = tx.open_table(OUTBOX_BODIES)?;
        out.into_iter().map(|e| with_body(&bodies, e)).collect()
    }

    /// Dead-lettered event ids since `since_ms`, optionally of one merchant and of one endpoint
    /// (`Some(None)`: the primary one).
    pub fn dead_since(
        &self,
        since_ms: u64,
        merchant: Option<&str>,
        endpoint: Option<Option<&str>>,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        let dead = tx.open_table(DEAD)?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in dead.iter()? {
            let (id, at) = entry?;
            if at.value() < since_ms {
                continue;
            }
            if let Some(v) = outbox.get(id.value())? {
                let e: OutboxEvent = decode("outbox", v.value())?;
                if merchant.is_none_or(|m| m == e.merchant_id)
                    && endpoint.is_none_or(|ep| ep == e.endpoint_id.as_deref())
                {
                    out.push(e.id);
                }
            }
        }
        Ok(out)
    }

    /// Attempts of one event, in order.
    pub fn attempts(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(ATTEMPTS)?;
        let mut out = Vec::new();
        for entry in t.range((id, 0u32)..=(id, u32::MAX))? {
            let (_, v) = entry?;
            out.push(decode("outbox_attempts", v.value())?);
        }
        Ok(out)
    }

    /// Replaces the type and body of a pending event (a bare `payment.settled` rendered again
    /// once its invoice is known); its id, sequence and delivery state stay. Returns whether an
    /// undelivered event was updated.
    pub fn rerender_event(&self, id: &str, event_type: &str, body: &str) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let updated = {
            let mut outbox = tx.open_table(OUTBOX)?;
            let current: Option<OutboxEvent> = outbox.get(id)?.map(|v| decode("outbox", v.value())).transpose()?;
            match current {
                Some(mut e) if e.delivered_at_ms.is_none() => {
                    e.event_type = event_type.to_string();
                    e.body = String::new();
                    outbox.insert(id, encode(&e).as_slice())?;
                    tx.open_table(OUTBOX_BODIES)?.insert(id, body.as_bytes())?;
                    true
                }
                _ => false,
            }
        };
        tx.commit()?;
        Ok(updated)
    }

    /// One outbox event by id.
    pub fn outbox_event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let tx = self.read()?;
        let (outbox, bodies) = (tx.open_table(OUTBOX)?, tx.open_table(OUTBOX_BODIES)?);
        outbox.get(id)?.map(|v| with_body(&bodies, decode("outbox", v.value())?)).transpose()
    }
}

/// `e` with its body: from `outbox_bodies`, or as read from a row that holds it inline. A row
/// without either is refused: sending or showing it would sign and show an empty body.
fn with_body(
    bodies: &impl ReadableTable<&'static str, &'static [u8]>,
    mut e: OutboxEvent,
) -> Result<OutboxEvent, StoreError> {
    if e.body.is_empty() {
        let corrupt = |reason: String| StoreError::Corrupt { table: "outbox_bodies", reason };
        let body = bodies.get(e.id.as_str())?.ok_or_else(|| corrupt(format!("no body for {}", e.id)))?;
        e.body = String::from_utf8(body.value().to_vec())
            .map_err(|_| corrupt(format!("the body of {} is not UTF-8", e.id)))?;
    }
    Ok(e)
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
pub(super) mod tests;
