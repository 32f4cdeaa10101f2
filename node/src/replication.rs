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
//! announced. Each is durable in its store before the answer, so on its next start the node
//! announces again the invoices it created in the last [`RESUME_WINDOW_S`] seconds before the
//! newest invoice it holds ([`resume`]), at most [`RESUME_MAX`]: the first send finds no peer yet
//! and the sends at 2, 8 and 32 s reach them as they connect. An invoice is not on a payment's critical path: its payment needs
//! confirmations, seconds after the announcement. A node that still missed an invoice settles
//! its payment all the same: batches are built from chain data alone. As keeper it fetches the
//! invoice from its peers before recording the settlement (`rounds::invoice_fetch`); otherwise
//! only its `GET` of the invoice answers 404.

use crate::gossip::{self, InvoiceAnnouncements};
use crate::store::Invoice;
use crate::time::now_ms;
use settleproof_p2p::NetworkHandle;
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
/// message a second instead of four. An invoice is not on its payment's critical path (the
/// payment needs confirmations first), so waiting up to a second costs no latency.
const TICK: Duration = Duration::from_secs(1);
/// New invoices that go out at once, without waiting for the tick: under load, messages of a
/// few dozen invoices spread evenly rather than one larger burst per tick.
const EARLY: usize = 32;
/// Invoices created up to this long before the newest one the store holds are announced again
/// when the node starts: far more than a tick and the resends after it, so a node that stopped
/// at once announces what it may not have.
pub const RESUME_WINDOW_S: u64 = 60;
/// At most this many invoices are announced again at start (the newest): a minute of the
/// node's share of the chain's capacity.
pub const RESUME_MAX: usize = 8_192;

/// The invoices this node (`node`, its configured name) created last before it stopped, to
/// announce again ([`InvoiceReplicator::spawn`]); none when the store cannot be read (logged).
pub fn resume(store: &crate::store::Store, node: &str) -> Vec<Invoice> {
    match store.recent_invoices_created_by(node, RESUME_WINDOW_S, RESUME_MAX) {
        Ok(recent) => {
            if !recent.is_empty() {
                tracing::info!(
                    invoices = recent.len(),
                    "announcing again the invoices this node created last before it stopped"
                );
            }
            recent
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the invoices this node created last; peers fetch them when they need them");
            Vec::new()
        }
    }
}

/// Queues invoices for replication.
#[derive(Debug, Clone)]
pub struct InvoiceReplicator {
    tx: mpsc::Sender<Invoice>,
}

impl InvoiceReplicator {
    /// Starts the replication task with `resumed` due at once ([`resume`]); `single`: each
    /// invoice also in a message of its own on [`gossip::INVOICES`] (`p2p.single_messages`,
    /// while nodes of an earlier version remain).
    pub fn spawn(net: NetworkHandle, single: bool, resumed: Vec<Invoice>, shutdown: watch::Receiver<bool>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(net, rx, single, resumed, shutdown));
        Self { tx }
    }

    /// Queues `invoice`; never blocks the caller (drops with a log line when the queue is full).
    pub fn replicate(&self, invoice: Invoice) {
        match self.tx.try_send(invoice) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("invoice replication queue full; peers learn the invoice from its payment")
            }
            Err(mpsc::error::TrySendError::Closed(inv)) => {
                tracing::warn!(invoice_id = %inv.id, "invoice created as the node stops; peers fetch it from this node when they need it")
            }
        }
    }
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
}

async fn run(
    net: NetworkHandle,
    mut rx: mpsc::Receiver<Invoice>,
    single: bool,
    resumed: Vec<Invoice>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut queue: Vec<Queued> = resumed
        .into_iter()
        .map(|invoice| Queued { invoice, next: Instant::now(), sent: 0, first_sent_ms: None })
        .collect();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A new invoice waits for the tick (at most `TICK`), with the others of that tick, unless
        // a message's worth is waiting already: one message a tick, not one an invoice.
        let mut fresh = 0;
        loop {
            tokio::select! {
                Some(inv) = rx.recv() => {
                    queue.push(Queued { invoice: inv, next: Instant::now(), sent: 0, first_sent_ms: None });
                    fresh += 1;
                    if fresh >= EARLY {
                        break;
                    }
                }
                _ = tick.tick() => break,
                _ = shutdown.changed() => {
                    // What was created but not yet announced goes out once before the node stops.
                    rx.close();
                    let mut unsent: Vec<Invoice> =
                        queue.drain(..).filter(|q| q.sent == 0).map(|q| q.invoice).collect();
                    while let Ok(inv) = rx.try_recv() {
                        unsent.push(inv);
                    }
                    publish(&net, &unsent, single).await;
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
        if !publish(&net, &due, single).await {
            for q in queue.iter_mut().filter(|q| q.sent == 1) {
                q.first_sent_ms = None;
            }
        }
        queue.retain(|q| q.sent as usize <= RESEND_GAPS_S.len());
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
