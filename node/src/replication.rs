//! Replication of new invoices to the other operators over gossip.
//!
//! Gossipsub does not deliver to peers that have not yet announced their subscription (right
//! after start-up, or while reconnecting), so an invoice is published again at 2, 8 and 32 s
//! after its first send when an operator connected or announced a subscription since about
//! then ([`RESEND_MARGIN_MS`]): a peer back within half a minute hears it, and a keeper that
//! still lacks one fetches it (below). After a first send that failed, every later one goes
//! out. While every operator stays connected each invoice goes out once: a peer that heard it
//! but cannot take it yet (its copy of the merchant registry behind) keeps it until its
//! registry holds the merchant (`rounds::parked`), so nobody announces every invoice again for
//! it. What is due at a tick (every second; a new invoice waits for the next one, unless 32 are
//! waiting) goes out packed in as few messages as fit ([`gossip::InvoiceAnnouncements`]): at
//! 10 invoices a second 1 message a second instead of 10, at 100 a second about 3 of 32
//! instead of 100 (each message costs every receiver a signature check per copy it gets, and
//! each copy of an invoice a decode and a lookup). Receivers store invoices idempotently, so
//! repeats are harmless.
//!
//! A node that stops at once (a crash, `kill -9`) may hold invoices it answered but never
//! announced. Each is written with a mark in its durable create (`unannounced_invoices`), and
//! the mark is removed once a send of it went out (without an fsync: a crash before the next
//! durable commit only announces it once more); one whose every send failed stays marked. On
//! its next start the node announces whatever is still marked ([`InvoiceReplicator::spawn`]):
//! the first send finds no peer yet, and the sends at 2, 8 and 32 s reach them as they connect.
//! Nothing an invoice carries (its creator, its creation time) decides it. A clean stop sends
//! what was never sent and leaves it marked (the process may end before the bytes leave): the
//! next start announces those few once more. `invoices_unannounced` counts what is still
//! marked. An operator away for longer than the resends asks for what it missed when it is back
//! (`rounds::invoice_catch_up`).

use crate::epochs::Epochs;
use crate::gossip::{self, InvoiceAnnouncements};
use crate::store::{Invoice, Store};
use crate::time::now_ms;
use settleproof_p2p::NetworkHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

/// When an invoice is published again after its first send, in seconds after the previous one
/// (sends at 0, 2, 8 and 32 s).
const RESEND_GAPS_S: [u64; 3] = [2, 6, 24];
/// A peer that joined up to this long before an invoice's first send may not have been known
/// subscribed yet when it went out: the invoice is sent again for it.
const RESEND_MARGIN_MS: u64 = 2_000;
/// How often what is due goes out. Each message costs every receiver a signature check per
/// copy, its transport's decryption and framing: at 12 invoices a second a node sends one
/// message a second instead of four. Another node learns an invoice up to a second later (its
/// `GET` answers 404 until then, and a retry of a keyed create there builds the invoice again
/// rather than finding it); the payment needs confirmations first, so settlement is not slowed.
const TICK: Duration = Duration::from_secs(1);
/// New invoices that go out at once, without waiting for the tick: under load, messages of a
/// few dozen invoices spread evenly rather than one larger burst per tick.
const EARLY: usize = 32;
/// At most this many invoices left unannounced are announced when the node starts.
const RESUME_MAX: usize = 8_192;

/// Queues invoices for replication.
#[derive(Debug, Clone)]
pub struct InvoiceReplicator {
    tx: mpsc::Sender<Invoice>,
    /// Invoices a full queue dropped (still marked in the store), for the gauge.
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl InvoiceReplicator {
    /// Starts the replication task of `chain`; the invoices its store holds marked
    /// unannounced are due at once.
    pub fn spawn(net: NetworkHandle, chain: ReplicatedChain, shutdown: watch::Receiver<bool>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(run(net, chain, rx, dropped.clone(), shutdown));
        Self { tx, dropped }
    }

    /// Queues `invoice`; never blocks the caller (drops with a log line when the queue is full).
    pub fn replicate(&self, invoice: Invoice) {
        match self.tx.try_send(invoice) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "invoice replication queue full; the invoice is announced when the node next starts, or fetched by a keeper when paid"
                )
            }
            Err(mpsc::error::TrySendError::Closed(inv)) => {
                tracing::warn!(invoice_id = %inv.id, "invoice created as the node stops; it is announced when the node next starts")
            }
        }
    }
}

/// What the replication task of one chain works with.
#[derive(Debug, Clone)]
pub struct ReplicatedChain {
    /// The chain's store, which holds the marks of invoices not yet announced.
    pub store: Store,
    /// The chain, for the metrics.
    pub chain_id: u64,
    /// Its operator sets: with no other operator, nothing can be announced, and marks are not
    /// kept.
    pub epochs: Arc<Epochs>,
    /// Each invoice also in a message of its own on [`gossip::INVOICES`]
    /// (`p2p.single_messages`, while nodes of an earlier version remain).
    pub single: bool,
}

/// An invoice waiting for its next send.
struct Queued {
    invoice: Invoice,
    /// When it is due again.
    next: Instant,
    /// Sends so far (first included).
    sent: u32,
    /// Wall clock of its first send, ms; `None` before it, or when it failed.
    first_sent_ms: Option<u64>,
    /// Still marked unannounced in the store: until a send of it went out.
    marked: bool,
}

impl Queued {
    fn new(invoice: Invoice) -> Self {
        Self { invoice, next: Instant::now(), sent: 0, first_sent_ms: None, marked: true }
    }
}

async fn run(
    net: NetworkHandle,
    chain: ReplicatedChain,
    mut rx: mpsc::Receiver<Invoice>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut queue: Vec<Queued> = resume(&chain).await.into_iter().map(Queued::new).collect();
    // Marked invoices no longer queued: every send of them failed.
    let mut left_marked: u64 = 0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A new invoice waits for the tick (at most `TICK`), with the others of that tick, unless
        // a message's worth is waiting already: one message a tick, not one an invoice.
        let mut fresh = 0;
        loop {
            tokio::select! {
                Some(inv) = rx.recv() => {
                    queue.push(Queued::new(inv));
                    fresh += 1;
                    if fresh >= EARLY {
                        break;
                    }
                }
                _ = tick.tick() => break,
                _ = shutdown.changed() => {
                    // What was never sent goes out once before the node stops. Its marks stay:
                    // the swarm may not get the bytes out before the process ends, and the
                    // next start announces them once more.
                    rx.close();
                    let mut unsent: Vec<Invoice> =
                        queue.drain(..).filter(|q| q.first_sent_ms.is_none()).map(|q| q.invoice).collect();
                    while let Ok(inv) = rx.try_recv() {
                        unsent.push(inv);
                    }
                    publish(&net, &unsent, chain.single).await;
                    return;
                }
            }
        }
        let (now, wall_ms, joined_ms) = (Instant::now(), now_ms(), net.last_peer_joined_ms());
        let mut due = Vec::new();
        for q in queue.iter_mut().filter(|q| q.next <= now) {
            let first = q.sent == 0;
            if first {
                q.first_sent_ms = Some(wall_ms);
            }
            // A first send that failed (no time kept) makes every later one go out.
            if first || q.first_sent_ms.is_none_or(|at| resend_needed(at, joined_ms)) {
                due.push(q.invoice.clone());
            }
            let gap = RESEND_GAPS_S.get(q.sent as usize).copied().unwrap_or(u64::MAX);
            q.next = now.checked_add(Duration::from_secs(gap)).unwrap_or(now);
            q.sent += 1;
        }
        let published = publish(&net, &due, chain.single).await;
        if !published {
            for q in queue.iter_mut().filter(|q| q.sent == 1) {
                q.first_sent_ms = None;
            }
        }
        // A mark goes once a send of its invoice went out (or when there is nobody to send to).
        // One whose every send failed stays marked: the next start announces it.
        if published || chain.epochs.latest().is_some_and(|set| set.len() <= 1) {
            let sent: std::collections::HashSet<_> = due.iter().map(|i| i.id).collect();
            let mut announced = Vec::new();
            for q in queue.iter_mut().filter(|q| q.marked && sent.contains(&q.invoice.id)) {
                q.marked = false;
                announced.push(q.invoice.id);
            }
            mark_announced(&chain.store, announced).await;
        }
        left_marked += queue.iter().filter(|q| q.marked && q.sent as usize > RESEND_GAPS_S.len()).count() as u64;
        queue.retain(|q| q.sent as usize <= RESEND_GAPS_S.len());
        let marked = queue.iter().filter(|q| q.marked).count() as u64
            + left_marked
            + dropped.load(std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("invoices_unannounced", "chain_id" => chain.chain_id.to_string()).set(marked as f64);
    }
}

/// The invoices this node created and never announced (it stopped at once after creating
/// them, or no send of them went out); none when the store cannot be read (logged).
async fn resume(chain: &ReplicatedChain) -> Vec<Invoice> {
    let store = chain.store.clone();
    match tokio::task::spawn_blocking(move || store.unannounced_invoices(RESUME_MAX)).await {
        Ok(Ok(unannounced)) => {
            metrics::counter!("invoices_resumed_total", "chain_id" => chain.chain_id.to_string())
                .increment(unannounced.len() as u64);
            if !unannounced.is_empty() {
                tracing::info!(
                    invoices = unannounced.len(),
                    "announcing the invoices this node created but never announced"
                );
            }
            unannounced
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the invoices this node never announced; peers fetch them when they need them");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the invoices this node never announced stopped");
            Vec::new()
        }
    }
}

/// Removes the not-yet-announced mark of the invoices `ids`, without an fsync.
async fn mark_announced(store: &Store, ids: Vec<alloy::primitives::B256>) {
    if ids.is_empty() {
        return;
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.mark_announced(&ids)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "announced invoices not marked; a restart announces them once more"),
        Err(e) => debug!(error = %e, "marking announced invoices stopped; a restart announces them once more"),
    }
}

/// Publishes `invoices` packed (and each alone too under `single`); whether every packed
/// message went out.
async fn publish(net: &NetworkHandle, invoices: &[Invoice], single: bool) -> bool {
    if invoices.is_empty() {
        return true;
    }
    let mut all = true;
    for data in InvoiceAnnouncements::pack(invoices, now_ms()) {
        if let Err(e) = net.publish(gossip::INVOICE_BATCHES, data).await {
            debug!(invoices = invoices.len(), error = %e, "invoice announcements not published");
            all = false;
        }
    }
    for inv in invoices.iter().filter(|_| single) {
        let one = gossip::InvoiceAnnouncement { invoice: inv.clone(), sent_at_ms: now_ms() };
        if let Err(e) = net.publish(gossip::INVOICES, serde_json::to_vec(&one).unwrap_or_default()).await {
            debug!(invoice_id = %inv.id, error = %e, "invoice announcement not published");
        }
    }
    all
}

/// Whether an invoice first sent at `first_sent_ms` goes out again: an operator connected or
/// announced a subscription (at `peer_joined_ms`) after, or shortly before, that send.
fn resend_needed(first_sent_ms: u64, peer_joined_ms: u64) -> bool {
    peer_joined_ms.saturating_add(RESEND_MARGIN_MS) >= first_sent_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoice_goes_out_again_only_when_a_peer_joined_around_or_after_its_first_send() {
        assert!(!resend_needed(100_000, 0), "nobody joined since start-up");
        assert!(!resend_needed(100_000, 100_000 - RESEND_MARGIN_MS - 1), "joined well before");
        assert!(resend_needed(100_000, 100_000 - RESEND_MARGIN_MS), "joined just before: maybe not known yet");
        assert!(resend_needed(100_000, 130_000), "joined after: it missed the first send");
    }
}
