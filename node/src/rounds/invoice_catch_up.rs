//! Catching up on the invoices other operators created while this node was away.
//!
//! Replication announces an invoice at once and, for operators that joined around then, again
//! up to 32 s later ([`crate::replication`]). A node down for longer (a restart, a partition)
//! would learn what was created meanwhile only when a payment made a keeper or a delivery
//! fetch it: until then its API answered 404 for those invoices and its checkout could not
//! show them. So each operator this node was apart from owes it what that operator created
//! since it was last heard before it went away (a link that died silently is noticed only when
//! its connection times out), less [`MARGIN_S`]; one not met since this node started owes what
//! it created since this node's last processed block; never more than [`WINDOW_S`] back. While
//! an operator that owes is connected, this node asks it (at its connection and at each
//! heartbeat tick), one catch-up at a time and at most once a [`COOLDOWN`], a page at a time.
//! Each operator answers from its own index of what it created (`created_invoices`), whose
//! times come from its own clock, oldest first. A catch-up cut short (refused, timed out, past
//! [`MAX_PAGES`], a page not kept whole) goes on from its last page kept; only a complete one
//! during which the operator did not go away again clears what it owed ([`Tracker`]).
//!
//! What comes back is judged as gossip is: every invoice must be one the answering operator
//! created (its own name) and commit to its terms, or the whole answer is dropped and the
//! operator penalised; one whose merchant this node's registry does not hold yet waits for it
//! with the announced ones ([`super::parked`]). Nothing is trusted for being asked for: a page
//! adds only checked invoices, and an operator that answers without end is stopped after
//! [`MAX_PAGES`] pages, or at the first page that does not move forward.

use crate::gossip::{CreatedSince, GossipRejection, InvoiceScope, SyncRequest, SyncResponse, check_invoice_terms};
use crate::store::CreatedKey;
use crate::store::Store;
use settleproof_p2p::{NetworkHandle, PeerId};
use std::collections::{HashMap, HashSet};
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
/// How far before an operator was last heard a node asks from when it connects again: the
/// answerer's index is keyed by its own clock, which may differ from this node's by as much as
/// gossip tolerates ([`crate::gossip::MESSAGE_MAX_AGE_MS`]), and an invoice created just
/// before the link broke may not have been announced yet (a minute more).
pub(super) const MARGIN_S: u64 = 360;
/// Least time between two catch-ups of one operator: one that reconnects in a loop is asked
/// once a minute, not at every connection; a catch-up cut short goes on a minute later.
pub(super) const COOLDOWN: Duration = Duration::from_secs(60);
/// The pause before the first page: the merchant registry's catch-up, asked at the same
/// connection, comes first, so invoices of merchants registered meanwhile are taken.
const FIRST_PAGE_AFTER: Duration = Duration::from_secs(2);
/// How long one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read; answerers stop a page at [`ANSWER_BYTES`], well under it.
const MAX_PAGE_BYTES: usize = 4 << 20;
/// The stored bytes of invoices an answerer puts in one page at most (at least one invoice).
pub(super) const ANSWER_BYTES: usize = 2 << 20;

/// Where a catch-up asks from: `heard_s` (when the operator was last heard, or this node last
/// alive), less [`MARGIN_S`], never more than [`WINDOW_S`] back and never ahead of now.
pub(super) fn since_s(heard_s: Option<u64>, now_s: u64) -> u64 {
    let floor = now_s.saturating_sub(WINDOW_S);
    heard_s.map_or(floor, |heard| heard.saturating_sub(MARGIN_S).clamp(floor, now_s))
}

/// What one operator still owes this node: the invoices it created since `since_s`, of which
/// those up to `after` are taken already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owed {
    since_s: u64,
    after: Option<CreatedKey>,
    /// Disconnections since the entry was made: a catch-up clears it only if none came while it
    /// ran.
    generation: u64,
    /// A catch-up of it is under way.
    running: bool,
}

/// A catch-up to start: ask `peer` from `since_s`, past `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Due {
    pub(super) peer: PeerId,
    pub(super) since_s: u64,
    pub(super) after: Option<CreatedKey>,
    generation: u64,
}

/// What a chain's round loop keeps of the catch-ups: what each operator still owes (from when
/// it was last heard before it went away; a catch-up cut short goes on from its last page),
/// which operators are connected, and when each was last asked. Bounded by the operators: only
/// they are recorded.
#[derive(Debug)]
pub(super) struct Tracker {
    /// Shared with the catch-up tasks, which record their progress and clear what they got.
    owed: Arc<Mutex<HashMap<PeerId, Owed>>>,
    /// When this node was last alive before it started (the last block it processed): what an
    /// operator it has not met since owes.
    alive_before_start_s: Option<u64>,
    connected: HashSet<PeerId>,
    met: HashSet<PeerId>,
    asked_at: HashMap<PeerId, Instant>,
}

impl Tracker {
    pub(super) fn new(alive_before_start_s: Option<u64>) -> Self {
        Self {
            owed: Arc::default(),
            alive_before_start_s,
            connected: HashSet::new(),
            met: HashSet::new(),
            asked_at: HashMap::new(),
        }
    }

    /// `peer`'s last connection closed; it was last heard at `heard_s` (at most now).
    pub(super) fn disconnected(&mut self, peer: PeerId, heard_s: u64, now_s: u64) {
        self.gone(&peer);
        if let Ok(mut owed) = self.owed.lock() {
            owed.entry(peer).and_modify(|o| o.generation = o.generation.saturating_add(1)).or_insert(Owed {
                since_s: since_s(Some(heard_s.min(now_s)), now_s),
                after: None,
                generation: 0,
                running: false,
            });
        }
    }

    /// `peer` connected. The first time since this node started, it owes what it created since
    /// this node was last alive.
    pub(super) fn connected(&mut self, peer: PeerId, now_s: u64) {
        self.connected.insert(peer);
        if self.met.insert(peer)
            && let Ok(mut owed) = self.owed.lock()
        {
            owed.entry(peer).or_insert(Owed {
                since_s: since_s(self.alive_before_start_s, now_s),
                after: None,
                generation: 0,
                running: false,
            });
        }
    }

    /// The catch-ups to start now: connected operators that owe invoices and that `name` still
    /// names (an operator of this chain), with none under way and none started in the last
    /// [`COOLDOWN`]; each with its name, marked under way.
    pub(super) fn due(
        &mut self,
        now_s: u64,
        now: Instant,
        name: impl Fn(&PeerId) -> Option<String>,
    ) -> Vec<(Due, String)> {
        let Ok(mut owed) = self.owed.lock() else { return Vec::new() };
        let mut due = Vec::new();
        for peer in &self.connected {
            let Some(o) = owed.get_mut(peer) else { continue };
            if o.running || self.asked_at.get(peer).is_some_and(|at| now.saturating_duration_since(*at) < COOLDOWN) {
                continue;
            }
            let Some(author) = name(peer) else { continue };
            o.running = true;
            self.asked_at.insert(*peer, now);
            let since_s = o.since_s.max(now_s.saturating_sub(WINDOW_S));
            due.push((Due { peer: *peer, since_s, after: o.after, generation: o.generation }, author));
        }
        due
    }

    /// `peer` (any peer) has no connection left.
    pub(super) fn gone(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
    }

    /// Where the task of `due` records what it got.
    fn progress(&self, due: Due) -> Progress {
        Progress { owed: self.owed.clone(), due, ended: false }
    }
}

/// A catch-up's account to its tracker. Dropped without [`Progress::ended`] (its task
/// stopped), the operator is no longer taken for under way.
struct Progress {
    owed: Arc<Mutex<HashMap<PeerId, Owed>>>,
    due: Due,
    ended: bool,
}

impl Progress {
    /// The catch-up ended: it kept every page up to `last` (if any), and the last page when
    /// `complete`. A complete one during which the operator did not go away again clears what
    /// it owed; otherwise the next one goes on from `last`.
    fn ended(mut self, last: Option<CreatedKey>, complete: bool) {
        self.ended = true;
        let Ok(mut owed) = self.owed.lock() else { return };
        let Some(o) = owed.get_mut(&self.due.peer) else { return };
        if complete && o.generation == self.due.generation {
            owed.remove(&self.due.peer);
            return;
        }
        o.running = false;
        if last.is_some() {
            o.after = last;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.ended
            && let Ok(mut owed) = self.owed.lock()
            && let Some(o) = owed.get_mut(&self.due.peer)
        {
            o.running = false;
        }
    }
}

/// Asks `due.peer` (the operator named `author`) for the invoices it created since
/// `due.since_s` (past `due.after`), in the background, stores what checks out and tells the
/// tracker how far it got.
pub(super) fn spawn(tracker: &Tracker, due: Due, asked: Asked, author: String) {
    let progress = tracker.progress(due);
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_PAGE_AFTER).await;
        let outcome = catch_up(&asked, due, &author).await;
        progress.ended(outcome.last, outcome.complete);
        if outcome.stored > 0 {
            info!(peer = %due.peer, operator = %author, stored = outcome.stored, "took the invoices an operator created while this node was away");
        }
    });
}

/// What a catch-up works with.
pub(super) struct Asked {
    pub(super) net: NetworkHandle,
    pub(super) store: Store,
    pub(super) scope: InvoiceScope,
    pub(super) park: Park,
}

/// How a catch-up went.
struct Outcome {
    /// New invoices stored.
    stored: usize,
    /// Where the last page taken ended.
    last: Option<CreatedKey>,
    /// Whether the last page came (not an answer cut short, refused, or past [`MAX_PAGES`]).
    complete: bool,
}

/// The pages, one after the other.
async fn catch_up(asked: &Asked, due: Due, author: &str) -> Outcome {
    let Asked { net, store, scope, park } = asked;
    let (peer, since_s) = (due.peer, due.since_s);
    let mut out = Outcome { stored: 0, last: due.after, complete: false };
    for _ in 0..MAX_PAGES {
        let request =
            SyncRequest { created_since: Some(CreatedSince { since_s, after: out.last }), ..Default::default() };
        let Ok(request) = serde_json::to_string(&request) else { return out };
        let answer = match tokio::time::timeout(PAGE_TIMEOUT, net.request(peer, request)).await {
            Ok(Ok(answer)) if answer.len() > MAX_PAGE_BYTES => {
                warn!(%peer, bytes = answer.len(), "invoice catch-up answer too large; not read");
                return out;
            }
            Ok(Ok(answer)) if !answer.is_empty() => answer,
            // Refused (asked too often) or not understood.
            Ok(Ok(_)) => return out,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "invoice catch-up request failed");
                return out;
            }
            Err(_) => {
                debug!(%peer, "no invoice catch-up answer in time");
                return out;
            }
        };
        let page = match serde_json::from_str::<SyncResponse>(&answer) {
            Ok(page) => page,
            Err(e) => {
                warn!(%peer, error = %e, "malformed invoice catch-up answer");
                return out;
            }
        };
        let next = page.created_next;
        match judge(page, scope, author) {
            // A page not wholly kept (the round loop too busy to take those that wait, the store
            // failing) cuts the catch-up short before it: the next one asks for it again.
            Ok(Judged { taken, waiting }) => {
                if !waiting.is_empty() && park.try_send((peer, waiting)).is_err() {
                    debug!(%peer, "invoice catch-up paused: the round loop is busy");
                    return out;
                }
                let (store, chain_id) = (store.clone(), scope.chain_id);
                match tokio::task::spawn_blocking(move || super::announced::store_replicated(&store, taken, chain_id))
                    .await
                {
                    Ok(Some(stored)) => {
                        out.stored += stored;
                        metrics::counter!("invoices_caught_up_total", "chain_id" => scope.chain_id.to_string())
                            .increment(stored as u64);
                    }
                    _ => return out,
                }
            }
            Err(e) => {
                metrics::counter!("invoice_conflicts_total", "chain_id" => scope.chain_id.to_string(), "reason" => e.reason())
                    .increment(1);
                warn!(%peer, error = %e, "invoice catch-up answer rejected");
                net.penalize(peer).await;
                return out;
            }
        }
        // Each page must start past the last one: an operator cannot keep this node asking.
        match next {
            Some(key) if key.0 >= since_s && out.last.is_none_or(|a| key > a) => out.last = Some(key),
            Some(_) => return out,
            None => {
                out.complete = true;
                return out;
            }
        }
    }
    out
}

/// The invoices of one page this node takes: all of them must be `author`'s and commit to their
/// terms (else the page is refused: an honest operator never answers another one); those of a
/// merchant the registry does not hold (yet) wait for it, as announced ones do
/// ([`super::parked`]); those refused for what the invoice alone says are left out.
fn judge(page: SyncResponse, scope: &InvoiceScope, author: &str) -> Result<Judged, GossipRejection> {
    let mut judged = Judged::default();
    for inv in page.invoices.into_iter().take(SyncRequest::MAX_INVOICES) {
        let inv = crate::gossip::without_unsigned_key(inv);
        if inv.created_by != author {
            return Err(GossipRejection::ForeignCreator(inv.id));
        }
        match check_invoice_terms(&inv, scope) {
            Ok(()) => judged.taken.push(inv),
            Err(e) if e.is_altered_invoice() => return Err(e),
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

    use settleproof_merchant_auth::{KeyAlg, MerchantSigner};

    /// The example configuration's merchants, the first with `signer`'s root key.
    fn scope(signer: &MerchantSigner) -> InvoiceScope {
        let mut config = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example config");
        config.merchants[0].root_key = Some(signer.public_key().clone());
        InvoiceScope {
            merchants: crate::merchants::Registry::fixed(config.merchants),
            chain_id: 31337,
            payments: Address::repeat_byte(7),
        }
    }

    /// Invoice `i` that `signer`'s merchant signed (of the example config's payout address when
    /// known), created by `by`.
    fn invoice(i: u8, signer: &MerchantSigner, by: &str, scope: &InvoiceScope) -> Invoice {
        let payout = scope
            .merchants
            .list()
            .iter()
            .find(|m| m.id == signer.merchant_id())
            .map_or(Address::ZERO, |m| m.payout_address);
        let body = serde_json::json!({"amount": (1000 + u64::from(i)).to_string(), "token": "native"});
        let mut inv = crate::merchants::invoice_record::testing::signed_invoice(
            signer,
            body,
            (scope.chain_id, scope.payments),
            payout,
            by,
        );
        inv.created_at = u64::from(i);
        inv
    }

    fn page(invoices: Vec<Invoice>) -> SyncResponse {
        SyncResponse { invoices, ..Default::default() }
    }

    #[test]
    fn a_page_is_taken_only_whole_and_in_its_authors_name() {
        let example = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example config");
        let merchant =
            crate::merchants::test_network::signer(&example.merchants[0].id, settleproof_merchant_auth::KeyAlg::EdDsa);
        let scope = scope(&merchant);
        let (a, b) = (invoice(1, &merchant, "node-1", &scope), invoice(2, &merchant, "node-1", &scope));
        let taken = judge(page(vec![a.clone(), b.clone()]), &scope, "node-1").expect("its own, intact");
        assert_eq!(taken, Judged { taken: vec![a.clone(), b.clone()], waiting: vec![] });
        // Another operator's invoice, even an intact one, refuses the page.
        let foreign = invoice(3, &merchant, "node-2", &scope);
        assert!(matches!(
            judge(page(vec![a.clone(), foreign.clone()]), &scope, "node-1"),
            Err(GossipRejection::ForeignCreator(id)) if id == foreign.id
        ));
        // An altered one refuses the page: its id, or what its merchant signed, gives it away.
        let altered = Invoice { amount: U256::from(1), ..b.clone() };
        assert!(matches!(
            judge(page(vec![a.clone(), altered.clone()]), &scope, "node-1"),
            Err(GossipRejection::InvoiceIdMismatch(_))
        ));
        let mut re_id = altered;
        re_id.id = re_id.terms(scope.chain_id, scope.payments).id();
        assert!(matches!(
            judge(page(vec![a.clone(), re_id]), &scope, "node-1"),
            Err(GossipRejection::NotAsSigned { field: "amount", .. })
        ));
        // A signature that does not hold under the merchant's key, which this node holds: no
        // honest operator sends one, so the page is refused.
        let mut bad_signature = b.clone();
        if let Some(s) = bad_signature.statement.as_mut() {
            let input = s.jwt.rsplit_once('.').map(|(input, _)| input.to_string()).unwrap_or_default();
            s.jwt = format!("{input}.{}", "A".repeat(86));
        }
        assert!(matches!(
            judge(page(vec![a.clone(), bad_signature]), &scope, "node-1"),
            Err(GossipRejection::NotAsSigned { field: "signature", .. })
        ));
        // One the merchant never signed, or signed with a key this node does not take, is left
        // out without refusing the page (this node's registry may lag).
        let forger = MerchantSigner::generate(merchant.merchant_id(), KeyAlg::EdDsa).expect("key");
        let forged = invoice(5, &forger, "node-1", &scope);
        let unsigned = Invoice { statement: None, ..b.clone() };
        assert_eq!(
            judge(page(vec![forged, unsigned, a.clone()]), &scope, "node-1").expect("taken"),
            Judged { taken: vec![a.clone()], waiting: vec![] }
        );
        // One of a merchant this registry does not hold waits for it, the rest are taken.
        let stranger =
            crate::merchants::test_network::signer("no-such-merchant", settleproof_merchant_auth::KeyAlg::EdDsa);
        let unknown = invoice(4, &stranger, "node-1", &scope);
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
            (Some(now), now - MARGIN_S),
            (Some(5), now - WINDOW_S),
        ];
        for (gone, want) in table {
            assert_eq!(since_s(gone, now), want, "{gone:?}");
        }
        assert_eq!(since_s(None, 10), 0, "early clocks do not wrap");
    }

    #[test]
    fn an_operator_owes_from_when_it_was_last_heard_until_a_catch_up_got_the_last_page() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let (now, t0) = (1_000_000, Instant::now());
        let key = |n: u8| Some((now - 50, B256::repeat_byte(n)));
        let mut tracker = Tracker::new(Some(now - 100));
        let named = |_: &PeerId| Some("node-1".to_string());
        let due = |t: &mut Tracker, secs: u64| {
            t.due(now + secs, t0 + Duration::from_secs(secs), named)
                .into_iter()
                .map(|(d, _)| (d.peer, d.since_s, d.after))
                .collect::<Vec<_>>()
        };
        // Not met since this node started: from its last block, less the margin; once at a time.
        tracker.connected(peer, now);
        assert_eq!(due(&mut tracker, 0), vec![(peer, now - 100 - MARGIN_S, None)]);
        assert!(due(&mut tracker, 1).is_empty(), "under way");
        // Cut short after some pages: it goes on from there, a cooldown later.
        tracker.progress(Due { peer, since_s: now - 100 - MARGIN_S, after: None, generation: 0 }).ended(key(1), false);
        assert!(due(&mut tracker, 30).is_empty(), "within the cooldown");
        let d: Vec<Due> = tracker.due(now + 60, t0 + COOLDOWN, named).into_iter().map(|(d, _)| d).collect();
        assert_eq!(d.iter().map(|d| (d.since_s, d.after)).collect::<Vec<_>>(), vec![(now - 100 - MARGIN_S, key(1))]);
        // It went away while that one ran: the last page does not clear what it owes.
        tracker.disconnected(peer, now + 70, now + 90);
        tracker.progress(d[0]).ended(key(2), true);
        assert!(due(&mut tracker, 200).is_empty(), "not connected");
        tracker.connected(peer, now + 200);
        assert_eq!(due(&mut tracker, 200), vec![(peer, now - 100 - MARGIN_S, key(2))], "from the first time away");
        assert!(due(&mut tracker, 300).is_empty(), "still under way");
        // A complete one with no departure meanwhile clears it.
        let running = Due { peer, since_s: now - 100 - MARGIN_S, after: key(2), generation: 1 };
        tracker.progress(running).ended(None, true);
        assert!(due(&mut tracker, 400).is_empty(), "nothing owed");
        // Away again: from when it was last heard (never after now), less the margin.
        tracker.disconnected(peer, now + 390, now + 500);
        tracker.connected(peer, now + 600);
        assert_eq!(due(&mut tracker, 600), vec![(peer, now + 390 - MARGIN_S, None)]);
        // One no longer an operator here is not asked, nor marked under way; a task that stops
        // without an end leaves it free.
        tracker.connected(other, now + 5_000);
        assert!(tracker.due(now + 5_000, t0 + Duration::from_secs(5_000), |_| None).is_empty());
        let d: Vec<Due> =
            tracker.due(now + 5_000, t0 + Duration::from_secs(5_000), named).into_iter().map(|(d, _)| d).collect();
        assert_eq!(d.iter().map(|d| d.peer).collect::<Vec<_>>(), vec![other]);
        drop(tracker.progress(d[0]));
        // Another operator has its own record; an entry older than the window asks the window.
        assert_eq!(due(&mut tracker, 5_000 + 60), vec![(other, now + 5_000 + 60 - WINDOW_S, None)]);
        // Without a last block, the window.
        let mut fresh = Tracker::new(None);
        fresh.connected(peer, now);
        assert_eq!(due(&mut fresh, 0), vec![(peer, now - WINDOW_S, None)]);
    }
}
