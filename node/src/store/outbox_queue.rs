//! The outbox's delivery queue: which deliveries are pending, when each is due, and which one
//! of an invoice's deliveries to an endpoint goes next, all answerable without decoding an
//! event.
//!
//! Tables:
//! - `outbox_pending`: delivery id → when it is due, ms (every pending delivery, once);
//! - `outbox_due`: (due ms, delivery id) → (merchant, endpoint key, invoice, sequence): the
//!   same deliveries ordered by due time, so a delivery pass reads only the due ones and skips
//!   a paused endpoint's without decoding them;
//! - `outbox_order`: (invoice, endpoint key, sequence, delivery id): the pending deliveries of
//!   each invoice to each endpoint, so "is an earlier one still pending" is one range read.
//!
//! The two indexes are derived from `outbox_pending` and the events: [`rebuild`] makes them
//! again when their size disagrees with `outbox_pending` (a store of an earlier version, or a
//! restored backup, which does not copy them).

use super::outbox::OutboxEvent;
use super::{OUTBOX, OUTBOX_PENDING, StoreError, decode};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

/// What a due entry says of its delivery: merchant, endpoint key
/// ([`OutboxEvent::endpoint_key`]), invoice and sequence.
pub(super) type DueInfo<'a> = (&'a str, &'a str, Option<[u8; 32]>, u64);

pub(crate) const OUTBOX_DUE: TableDefinition<(u64, &str), DueInfo> = TableDefinition::new("outbox_due");
type OrderKey<'a> = ([u8; 32], &'a str, u64, &'a str);
pub(crate) const OUTBOX_ORDER: TableDefinition<OrderKey, ()> = TableDefinition::new("outbox_order");

/// The queue's tables, open in one write transaction; every change to what is pending goes
/// through it, so the indexes never drift from `outbox_pending`.
pub(super) struct Queue<'t> {
    pending: redb::Table<'t, &'static str, u64>,
    due: redb::Table<'t, (u64, &'static str), DueInfo<'static>>,
    order: redb::Table<'t, OrderKey<'static>, ()>,
}

impl<'t> Queue<'t> {
    pub(super) fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            pending: tx.open_table(OUTBOX_PENDING)?,
            due: tx.open_table(OUTBOX_DUE)?,
            order: tx.open_table(OUTBOX_ORDER)?,
        })
    }

    /// When delivery `id` is due, if it is pending.
    pub(super) fn due_at(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.pending.get(id)?.map(|v| v.value()))
    }

    /// Makes `e` pending, due at `at_ms` (moved there when it was pending already).
    pub(super) fn schedule(&mut self, e: &OutboxEvent, at_ms: u64) -> Result<(), StoreError> {
        let key = e.endpoint_key();
        if let Some(before) = self.pending.insert(e.id.as_str(), at_ms)?.map(|v| v.value()) {
            self.due.remove((before, e.id.as_str()))?;
        }
        let invoice = e.invoice_id.map(|i| i.0);
        self.due.insert((at_ms, e.id.as_str()), (e.merchant_id.as_str(), key.as_str(), invoice, e.sequence))?;
        if let Some(inv) = invoice {
            self.order.insert((inv, key.as_str(), e.sequence, e.id.as_str()), ())?;
        }
        Ok(())
    }

    /// Takes `e` out of the queue (delivered, dead, or delivered by others).
    pub(super) fn unschedule(&mut self, e: &OutboxEvent) -> Result<(), StoreError> {
        if let Some(at) = self.pending.remove(e.id.as_str())?.map(|v| v.value()) {
            self.due.remove((at, e.id.as_str()))?;
        }
        if let Some(inv) = e.invoice_id {
            self.order.remove((inv.0, e.endpoint_key().as_str(), e.sequence, e.id.as_str()))?;
        }
        Ok(())
    }
}

/// Whether a delivery of `invoice` to `endpoint_key` with a sequence below `sequence` is still
/// pending (it goes first).
pub(super) fn earlier_pending(
    order: &impl ReadableTable<OrderKey<'static>, ()>,
    invoice: [u8; 32],
    endpoint_key: &str,
    sequence: u64,
) -> Result<bool, StoreError> {
    Ok(order.range((invoice, endpoint_key, 0u64, "")..(invoice, endpoint_key, sequence, ""))?.next().is_some())
}

/// Whether the indexes hold exactly the pending deliveries: every due entry at its delivery's
/// due time, as many entries as deliveries, and an order entry for each one with an invoice.
/// A store written by a version without the indexes (which may have delivered and queued as
/// many deliveries as it found) fails this; no event is decoded.
fn agrees(tx: &redb::WriteTransaction) -> Result<bool, StoreError> {
    let pending = tx.open_table(OUTBOX_PENDING)?;
    let due = tx.open_table(OUTBOX_DUE)?;
    if due.len()? != pending.len()? {
        return Ok(false);
    }
    let mut with_invoice = 0u64;
    for entry in due.iter()? {
        let (k, v) = entry?;
        let (at, id) = k.value();
        if pending.get(id)?.map(|p| p.value()) != Some(at) {
            return Ok(false);
        }
        if v.value().2.is_some() {
            with_invoice += 1;
        }
    }
    Ok(tx.open_table(OUTBOX_ORDER)?.len()? == with_invoice)
}

/// Makes the indexes again from `outbox_pending` unless they agree with it; returns how many
/// deliveries were indexed (0: nothing to do).
pub(super) fn rebuild(tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
    if agrees(tx)? {
        return Ok(0);
    }
    tx.open_table(OUTBOX_DUE)?.retain(|_, _| false)?;
    tx.open_table(OUTBOX_ORDER)?.retain(|_, _| false)?;
    let mut pending: Vec<(String, u64)> = Vec::new();
    for entry in tx.open_table(OUTBOX_PENDING)?.iter()? {
        let (id, at) = entry?;
        pending.push((id.value().to_string(), at.value()));
    }
    let outbox = tx.open_table(OUTBOX)?;
    let mut queue = Queue::open(tx)?;
    let mut n = 0;
    for (id, at) in pending {
        match outbox.get(id.as_str())? {
            Some(v) => {
                let e: OutboxEvent = decode("outbox", v.value())?;
                queue.schedule(&e, at)?;
                n += 1;
            }
            // A pending id without its event cannot be sent: it leaves the queue.
            None => {
                queue.pending.remove(id.as_str())?;
            }
        }
    }
    Ok(n)
}
