//! Catching up on the invoices other operators created while this node was away.
//!
//! Replication announces an invoice at once and, for operators that joined around then, again
//! up to 32 s later ([`crate::replication`]). A node down for longer (a restart, a partition)
//! would learn what was created meanwhile only when a payment made a keeper or a delivery
//! fetch it: until then its API answered 404 for those invoices and its checkout could not
//! show them. So when an operator connects, this node asks it, a page at a time, for the
//! invoices *it* created since it was first away from this node and not caught up on since
//! (less [`MARGIN_S`]); one not seen since this node started, since this node's last processed
//! block; never more than [`WINDOW_S`] back, and each operator at most once a [`COOLDOWN`]. Each
//! operator answers from its own index of what it created (`created_invoices`), whose times
//! come from its own clock, oldest first: a catch-up cut short (refused, timed out, past
//! [`MAX_PAGES`]) leaves the time away in place for the next connection.
//!
//! What comes back is judged as gossip is: every invoice must be one the answering operator
//! created (its own name) and commit to its terms, or the whole answer is dropped and the
//! operator penalised; one whose merchant this node's registry does not hold yet waits for it
//! with the announced ones ([`super::parked`]). Nothing is trusted for being asked for: a page
//! adds only checked invoices, and an operator that answers without end is stopped after
//! [`MAX_PAGES`] pages, or at the first page that does not move forward.

use crate::gossip::{CreatedSince, GossipRejection, InvoiceScope, SyncRequest, SyncResponse, check_invoice_terms};
use crate::store::Store;
use settleproof_p2p::{NetworkHandle, PeerId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Where invoices of merchants this node's registry does not hold yet go: the round loop keeps
/// them with the announced ones that wait ([`super::parked`], bounded per operator).
pub(super) type Park = tokio::sync::mpsc::Sender<(PeerId, Vec<crate::store::Invoice>)>;

/// Most pages asked of one operator per connection (8,192 invoices).
pub(super) const MAX_PAGES: usize = 32;
/// How far back a node asks an operator it has not seen since it started.
pub(super) const WINDOW_S: u64 = 3_600;
/// How far before an operator's disconnection a node asks from when it connects again: the
/// answerer's index is keyed by its own clock, which may differ from this node's by as much as
/// gossip tolerates ([`crate::gossip::MESSAGE_MAX_AGE_MS`]), and an invoice created just
/// before the link broke may not have been announced yet.
pub(super) const MARGIN_S: u64 = 300;
/// Least time between two catch-ups of one operator: one that reconnects in a loop is asked
/// once a minute, not at every connection.
pub(super) const COOLDOWN: Duration = Duration::from_secs(60);
/// The pause before the first page: the merchant registry's catch-up, asked at the same
/// connection, comes first, so invoices of merchants registered meanwhile are taken.
const FIRST_PAGE_AFTER: Duration = Duration::from_secs(2);
/// How long one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read: 256 invoices of the largest an API takes (4 KiB of metadata, a
/// 2 KiB redirect URL, an idempotency record) fit in well under it; a larger one is not parsed.
const MAX_PAGE_BYTES: usize = 4 << 20;

/// Where a catch-up asks from: since the operator was last connected, less [`MARGIN_S`], never
/// more than [`WINDOW_S`] back and never ahead of now.
pub(super) fn since_s(gone_at_s: Option<u64>, now_s: u64) -> u64 {
    let floor = now_s.saturating_sub(WINDOW_S);
    gone_at_s.map_or(floor, |gone| gone.saturating_sub(MARGIN_S).clamp(floor, now_s))
}

/// What a chain's round loop keeps of the catch-ups: since when each operator has been away
/// (the first disconnection not yet caught up on: a catch-up cut short asks from there again),
/// and when each was last asked. Bounded by the operators: only they are recorded.
#[derive(Debug)]
pub(super) struct Tracker {
    /// Per operator, the first disconnection (Unix seconds) no complete catch-up followed;
    /// shared with the catch-up tasks, which clear it once they got the last page.
    gone_at_s: Arc<Mutex<HashMap<PeerId, u64>>>,
    /// When this node was last alive before it started (the last block it processed), for
    /// operators it has not seen since.
    alive_before_start_s: Option<u64>,
    /// When each operator was last asked.
    asked_at: HashMap<PeerId, Instant>,
}

impl Tracker {
    pub(super) fn new(alive_before_start_s: Option<u64>) -> Self {
        Self { gone_at_s: Arc::default(), alive_before_start_s, asked_at: HashMap::new() }
    }

    /// `peer`'s last connection closed at `now_s`.
    pub(super) fn disconnected(&self, peer: PeerId, now_s: u64) {
        if let Ok(mut gone) = self.gone_at_s.lock() {
            gone.entry(peer).or_insert(now_s);
        }
    }

    /// `peer` connected: where to ask it from, unless it was asked less than [`COOLDOWN`] ago.
    pub(super) fn connected(&mut self, peer: PeerId, now_s: u64, now: Instant) -> Option<u64> {
        if self.asked_at.get(&peer).is_some_and(|at| now.saturating_duration_since(*at) < COOLDOWN) {
            return None;
        }
        self.asked_at.insert(peer, now);
        let gone = self.gone_at_s.lock().ok().and_then(|g| g.get(&peer).copied());
        Some(since_s(gone.or(self.alive_before_start_s), now_s))
    }

    /// What a catch-up task clears once it got `peer`'s last page.
    fn completion(&self, peer: PeerId) -> Completion {
        Completion { gone_at_s: self.gone_at_s.clone(), peer }
    }
}

/// Clears an operator's time away once a catch-up of it is complete.
struct Completion {
    gone_at_s: Arc<Mutex<HashMap<PeerId, u64>>>,
    peer: PeerId,
}

impl Completion {
    fn done(self) {
        if let Ok(mut gone) = self.gone_at_s.lock() {
            gone.remove(&self.peer);
        }
    }
}

/// Asks `peer` (the operator named `author`) for the invoices it created since `since_s`, in the
/// background, and stores what checks out.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn(
    tracker: &Tracker,
    net: NetworkHandle,
    store: Store,
    scope: InvoiceScope,
    park: Park,
    peer: PeerId,
    author: String,
    since_s: u64,
) {
    let completion = tracker.completion(peer);
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_PAGE_AFTER).await;
        let (stored, complete) = catch_up(&net, &store, &scope, &park, peer, &author, since_s).await;
        if complete {
            completion.done();
        }
        if stored > 0 {
            metrics::counter!("invoices_caught_up_total", "chain_id" => scope.chain_id.to_string())
                .increment(stored as u64);
            info!(%peer, operator = %author, stored, "took the invoices an operator created while this node was away");
        }
    });
}

/// The pages, one after the other; returns how many new invoices were stored, and whether the
/// last page came (not an answer cut short, refused or over the page limit).
async fn catch_up(
    net: &NetworkHandle,
    store: &Store,
    scope: &InvoiceScope,
    park: &Park,
    peer: PeerId,
    author: &str,
    since_s: u64,
) -> (usize, bool) {
    let (mut after, mut stored) = (None, 0);
    for _ in 0..MAX_PAGES {
        let request = SyncRequest { created_since: Some(CreatedSince { since_s, after }), ..Default::default() };
        let Ok(request) = serde_json::to_string(&request) else { return (stored, false) };
        let answer = match tokio::time::timeout(PAGE_TIMEOUT, net.request(peer, request)).await {
            Ok(Ok(answer)) if answer.len() > MAX_PAGE_BYTES => {
                warn!(%peer, bytes = answer.len(), "invoice catch-up answer too large; not read");
                return (stored, false);
            }
            Ok(Ok(answer)) if !answer.is_empty() => answer,
            // Refused (asked too often) or not understood.
            Ok(Ok(_)) => return (stored, false),
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "invoice catch-up request failed");
                return (stored, false);
            }
            Err(_) => {
                debug!(%peer, "no invoice catch-up answer in time");
                return (stored, false);
            }
        };
        let page = match serde_json::from_str::<SyncResponse>(&answer) {
            Ok(page) => page,
            Err(e) => {
                warn!(%peer, error = %e, "malformed invoice catch-up answer");
                return (stored, false);
            }
        };
        let next = page.created_next;
        match judge(page, scope, author) {
            Ok(Judged { taken, waiting }) => {
                if !waiting.is_empty() && park.try_send((peer, waiting)).is_err() {
                    debug!(%peer, "caught-up invoices of merchants not yet in the registry dropped: the round loop is busy");
                }
                let (store, chain_id) = (store.clone(), scope.chain_id);
                stored +=
                    tokio::task::spawn_blocking(move || super::announced::store_replicated(&store, taken, chain_id))
                        .await
                        .unwrap_or(0);
            }
            Err(e) => {
                metrics::counter!("invoice_conflicts_total", "chain_id" => scope.chain_id.to_string(), "reason" => e.reason())
                    .increment(1);
                warn!(%peer, error = %e, "invoice catch-up answer rejected");
                net.penalize(peer).await;
                return (stored, false);
            }
        }
        // Each page must start past the last one: an operator cannot keep this node asking.
        match next {
            Some(key) if key.0 >= since_s && after.is_none_or(|a| key > a) => after = Some(key),
            Some(_) => return (stored, false),
            None => return (stored, true),
        }
    }
    (stored, false)
}

/// The invoices of one page this node takes: all of them must be `author`'s and commit to their
/// terms (else the page is refused: an honest operator never answers another one); those of a
/// merchant the registry does not hold (yet) wait for it, as announced ones do
/// ([`super::parked`]); those refused for what the invoice alone says are left out.
fn judge(page: SyncResponse, scope: &InvoiceScope, author: &str) -> Result<Judged, GossipRejection> {
    let mut judged = Judged::default();
    for inv in page.invoices.into_iter().take(SyncRequest::MAX_INVOICES) {
        if inv.created_by != author {
            return Err(GossipRejection::ForeignCreator(inv.id));
        }
        match check_invoice_terms(&inv, scope) {
            Ok(()) => judged.taken.push(inv),
            Err(e @ GossipRejection::InvoiceIdMismatch(_)) => return Err(e),
            Err(GossipRejection::NotInRegistry(_)) => judged.waiting.push(inv),
            Err(e) => debug!(invoice_id = %inv.id, error = %e, "an invoice of a catch-up page left out"),
        }
    }
    Ok(judged)
}

/// A page's invoices this node takes now, and those that wait for its merchant registry.
#[derive(Debug, Default, PartialEq)]
struct Judged {
    taken: Vec<crate::store::Invoice>,
    waiting: Vec<crate::store::Invoice>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Invoice;
    use alloy::primitives::{Address, B256, U256};
    use settleproof_config::{EXAMPLE, NodeConfig};

    fn scope() -> InvoiceScope {
        let config = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example config");
        InvoiceScope {
            merchants: crate::merchants::Registry::fixed(config.merchants),
            chain_id: 31337,
            payments: Address::repeat_byte(7),
        }
    }

    /// Invoice `i` of `merchant` (of the example config's payout address when known), created
    /// by `by`, with the id of its terms.
    fn invoice(i: u8, merchant: &str, by: &str, scope: &InvoiceScope) -> Invoice {
        let payout =
            scope.merchants.list().iter().find(|m| m.id == merchant).map_or(Address::ZERO, |m| m.payout_address);
        let mut inv = Invoice {
            id: B256::ZERO,
            merchant_id: merchant.into(),
            payout_address: payout,
            amount: U256::from(1000 + u64::from(i)),
            token: Address::ZERO,
            created_at: u64::from(i),
            expires_at: None,
            metadata: None,
            created_by: by.into(),
            nonce: B256::repeat_byte(i),
            idempotency: None,
            redirect_url: None,
        };
        inv.id = inv.terms(scope.chain_id, scope.payments).id();
        inv
    }

    fn page(invoices: Vec<Invoice>) -> SyncResponse {
        SyncResponse { invoices, ..Default::default() }
    }

    #[test]
    fn a_page_is_taken_only_whole_and_in_its_authors_name() {
        let scope = scope();
        let merchant = scope.merchants.list()[0].id.clone();
        let (a, b) = (invoice(1, &merchant, "node-1", &scope), invoice(2, &merchant, "node-1", &scope));
        let taken = judge(page(vec![a.clone(), b.clone()]), &scope, "node-1").expect("its own, intact");
        assert_eq!(taken, Judged { taken: vec![a.clone(), b.clone()], waiting: vec![] });
        // Another operator's invoice, even an intact one, refuses the page.
        let foreign = invoice(3, &merchant, "node-2", &scope);
        assert!(matches!(
            judge(page(vec![a.clone(), foreign.clone()]), &scope, "node-1"),
            Err(GossipRejection::ForeignCreator(id)) if id == foreign.id
        ));
        // An altered one refuses the page.
        let altered = Invoice { amount: U256::from(1), ..b.clone() };
        assert!(matches!(
            judge(page(vec![a.clone(), altered]), &scope, "node-1"),
            Err(GossipRejection::InvoiceIdMismatch(_))
        ));
        // One of a merchant this registry does not hold waits for it, the rest are taken.
        let unknown = invoice(4, "no-such-merchant", "node-1", &scope);
        assert_eq!(
            judge(page(vec![unknown.clone(), a.clone()]), &scope, "node-1").expect("taken"),
            Judged { taken: vec![a.clone()], waiting: vec![unknown] }
        );
        // So is one dated far ahead of this node's clock (it would head every listing).
        let ahead = Invoice { created_at: crate::time::now_s() + 3_600, ..b.clone() };
        assert_eq!(judge(page(vec![ahead, a.clone()]), &scope, "node-1").expect("taken").taken, vec![a]);
        let near = Invoice { created_at: crate::time::now_s() + 60, ..b.clone() };
        assert_eq!(judge(page(vec![near.clone()]), &scope, "node-1").expect("taken").taken, vec![near], "within skew");
    }

    #[test]
    fn since_is_the_disconnection_less_a_margin_within_the_window() {
        let now = 1_000_000;
        // (last seen, expected start)
        let table = [
            (None, now - WINDOW_S),
            (Some(now - 10), now - 10 - MARGIN_S),
            (Some(now - WINDOW_S * 5), now - WINDOW_S),
            (Some(now + 500), now),
            (Some(5), now - WINDOW_S),
        ];
        for (gone, want) in table {
            assert_eq!(since_s(gone, now), want, "{gone:?}");
        }
        assert_eq!(since_s(None, 10), 0, "early clocks do not wrap");
    }

    #[test]
    fn an_operator_is_asked_from_its_first_disconnection_until_a_catch_up_completes() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let (now, t0) = (1_000_000, Instant::now());
        let mut tracker = Tracker::new(Some(now - 100));
        // Not seen since this node started: from its last block, less the margin.
        assert_eq!(tracker.connected(peer, now, t0), Some(now - 100 - MARGIN_S));
        tracker.disconnected(peer, now + 10);
        // Back within the cooldown: not asked again.
        assert_eq!(tracker.connected(peer, now + 20, t0 + Duration::from_secs(20)), None);
        tracker.disconnected(peer, now + 30);
        let later = t0 + COOLDOWN;
        // The first disconnection counts until a catch-up got the last page.
        assert_eq!(tracker.connected(peer, now + 70, later), Some(now + 10 - MARGIN_S));
        tracker.completion(peer).done();
        tracker.disconnected(peer, now + 80);
        assert_eq!(tracker.connected(peer, now + 200, later + COOLDOWN), Some(now + 80 - MARGIN_S));
        // Another operator has its own record.
        assert_eq!(tracker.connected(other, now, t0), Some(now - 100 - MARGIN_S));
        // Without a last block, the window.
        assert_eq!(Tracker::new(None).connected(peer, now, t0), Some(now - WINDOW_S));
    }
}
