//! Catch-up of the merchants' state on connect: a node that was offline longer than the
//! rebroadcast windows (or joined after a change) asks a peer for its registry, API keys and
//! webhook endpoints ([`MerchantSnapshot`], in the sync request of the first chain).
//!
//! A snapshot comes in pages ([`PAGE_RECORDS`] records and [`PAGE_BYTES`] at most): the
//! registry by merchant id, then keys by slot, then endpoints by id, each page naming where the
//! next starts ([`SnapshotCursor`]). Every record travels, however many there are: a revocation
//! or a deletion is never cut from a catch-up for being old, so no peer can serve a grant
//! without the revocation an honest peer holds and have it stand. A peer gets at most
//! [`MAX_PAGES`] pages per [`SNAPSHOT_INTERVAL_MS`]; the asking node goes on after the interval
//! from where it was refused.
//!
//! Nothing in a snapshot is taken on the peer's word where money is concerned: a registry
//! entry is applied only with a threshold of valid approvals of the latest epoch (each BLS
//! signature checked under that epoch's operator keys, over the change the receiver hashes
//! itself), a version newer than the one held and a record that passes the same checks as a
//! proposal. Keys and endpoints go through the same checks as their gossip announcements.

use super::Registry;
use super::api_keys::KeyAnnouncement;
use super::webhook_endpoints::EndpointAnnouncement;
use crate::gossip::{SyncRequest, SyncResponse};
use crate::store::{ApiKey, PageBudget, RegistryEntry};
use crate::time::now_ms;
use alloy::primitives::B256;
use serde::{Deserialize, Serialize};
use settleproof_consensus::{BlsSignature, merchant_change_message};
use settleproof_p2p::PeerId;
use std::collections::{HashMap, HashSet};
use tracing::{debug, info, warn};

/// Most records of each kind in one snapshot page taken (a page holds [`PAGE_RECORDS`] in
/// all).
pub const MAX_SNAPSHOT: usize = 4096;
/// Most records in one snapshot page sent.
pub const PAGE_RECORDS: usize = 512;
/// Most stored bytes of records in one snapshot page sent (the answer is JSON of about that).
pub const PAGE_BYTES: usize = 1 << 20;
/// Most stored bytes in the one snapshot a node of an earlier version gets.
const LEGACY_SNAPSHOT_BYTES: usize = 8 << 20;
/// Most pages a peer gets per [`SNAPSHOT_INTERVAL_MS`].
pub const MAX_PAGES: usize = 64;
/// Most pages one catch-up asks for, waits included (about a million records).
pub const MAX_CATCH_UP_PAGES: usize = 2048;
/// Refused registry records after which a catch-up's snapshot is dropped.
pub const MAX_REFUSED: usize = 8;
/// Refused records of any kind after which the keys and endpoints of a catch-up's snapshot
/// are dropped (each refusal cost a signature check; an honest peer's snapshot has a few, of
/// merchants or keys this node does not hold yet).
pub const MAX_REFUSED_RECORDS: usize = 256;
/// A peer gets at most one snapshot per this interval.
pub const SNAPSHOT_INTERVAL_MS: u64 = 30_000;

/// A peer's merchants' state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MerchantSnapshot {
    /// Registry records with the approvals that applied them (version 0, seeded from a
    /// configuration and approved by nobody, is left out).
    #[serde(default)]
    pub entries: Vec<RegistryEntry>,
    /// API keys, revoked ones too.
    #[serde(default)]
    pub keys: Vec<ApiKey>,
    /// Webhook endpoints, deleted ones too, as the merchant's signed changes only (the receiver
    /// recomputes each; no secret travels but what the merchant signed).
    #[serde(default)]
    pub endpoints: Vec<EndpointAnnouncement>,
    /// Where the next page starts; none: this was the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<SnapshotCursor>,
}

/// Where a snapshot page starts: the kinds go in this order, each by its table's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SnapshotCursor {
    /// Registry records after this merchant id (none: from the first).
    Entries {
        /// The last merchant id sent.
        after: Option<String>,
    },
    /// API keys after this slot.
    Keys {
        /// The last slot sent.
        after: Option<B256>,
    },
    /// Webhook endpoints after this id.
    Endpoints {
        /// The last endpoint id sent.
        after: Option<String>,
    },
}

/// Where a cursor stands in the order pages go: the kind, then the key after which it starts.
fn rank(c: &SnapshotCursor) -> (u8, Option<String>) {
    match c {
        SnapshotCursor::Entries { after } => (0, after.clone()),
        SnapshotCursor::Keys { after } => (1, after.map(|a| a.to_string())),
        SnapshotCursor::Endpoints { after } => (2, after.clone()),
    }
}

/// Whether `next` is past `from` (none: the start) in the order pages go.
fn advances(from: Option<&SnapshotCursor>, next: &SnapshotCursor) -> bool {
    from.is_none_or(|f| rank(next) > rank(f))
}

/// A catch-up under way from a peer, until dropped.
struct Running<'a> {
    peers: &'a std::sync::Mutex<HashSet<PeerId>>,
    peer: PeerId,
}

impl<'a> Running<'a> {
    fn start(peers: &'a std::sync::Mutex<HashSet<PeerId>>, peer: PeerId) -> Option<Self> {
        let fresh = peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(peer);
        fresh.then_some(Self { peers, peer })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.peer);
    }
}

/// Pages served to each peer: the first page a peer asks for when it has no window open starts
/// one of [`SNAPSHOT_INTERVAL_MS`], in which it gets at most [`MAX_PAGES`] pages and no second
/// first page (a peer asking in a loop costs a bounded read per interval).
#[derive(Debug, Default)]
pub(super) struct PagesServed(HashMap<PeerId, (u64, usize)>);

impl PagesServed {
    /// Whether `peer` gets a page now (`first`: the first page of a catch-up).
    pub(super) fn admit(&mut self, peer: PeerId, first: bool, now_ms: u64) -> bool {
        self.0.retain(|_, (at, _)| now_ms.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS);
        match self.0.get_mut(&peer) {
            Some(_) if first => false,
            Some((_, pages)) if *pages >= MAX_PAGES => false,
            Some((_, pages)) => {
                *pages += 1;
                true
            }
            None => {
                self.0.insert(peer, (now_ms, 1));
                true
            }
        }
    }
}

/// What a catch-up changed here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// Registry changes applied.
    pub entries: usize,
    /// Keys created or revoked.
    pub keys: usize,
    /// Endpoints changed.
    pub endpoints: usize,
    /// Records refused (bad approvals, bad fields).
    pub refused: usize,
}

impl Registry {
    /// A page of this node's merchants' state for `peer`, from `from` (none: the first page),
    /// unless the peer had its pages for now ([`PagesServed`]). A peer of an earlier version
    /// (not `paged`) gets one snapshot of at most [`MAX_SNAPSHOT`] records of each kind, as
    /// it did.
    pub fn snapshot_for(&self, peer: &PeerId, from: Option<&SnapshotCursor>, paged: bool) -> Option<MerchantSnapshot> {
        let admitted = self
            .0
            .snapshots_served
            .lock()
            // Poisoned: a panic mid-update left a map of times, still usable.
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(*peer, from.is_none(), now_ms());
        if !admitted {
            debug!(%peer, "merchants snapshot page asked too often: none sent");
            return None;
        }
        if !paged {
            let budget = PageBudget { records: 3 * MAX_SNAPSHOT, bytes: LEGACY_SNAPSHOT_BYTES };
            return Some(MerchantSnapshot { next: None, ..self.snapshot_page_within(None, budget) });
        }
        Some(self.snapshot_page(from))
    }

    /// A page of this node's merchants' state from `from` (none: the first page): at most
    /// [`PAGE_RECORDS`] records and [`PAGE_BYTES`], the registry first, then keys, then
    /// endpoints.
    pub fn snapshot_page(&self, from: Option<&SnapshotCursor>) -> MerchantSnapshot {
        self.snapshot_page_within(from, PageBudget { records: PAGE_RECORDS, bytes: PAGE_BYTES })
    }

    /// [`Self::snapshot_page`] within `budget`.
    pub(super) fn snapshot_page_within(
        &self,
        from: Option<&SnapshotCursor>,
        mut budget: PageBudget,
    ) -> MerchantSnapshot {
        let mut snap = MerchantSnapshot::default();
        let Ok(store) = self.store() else { return snap };
        let from = from.cloned().unwrap_or(SnapshotCursor::Entries { after: None });
        let read = (|| -> Result<Option<SnapshotCursor>, crate::store::StoreError> {
            if let SnapshotCursor::Entries { after } = &from {
                let (entries, last) = store.registry_page(after.as_deref(), &mut budget)?;
                snap.entries = entries;
                if let Some(last) = last {
                    return Ok(Some(SnapshotCursor::Entries { after: Some(last) }));
                }
            }
            if matches!(from, SnapshotCursor::Entries { .. } | SnapshotCursor::Keys { .. }) {
                let after = match &from {
                    SnapshotCursor::Keys { after } => after.map(|a| a.0),
                    _ => None,
                };
                let (keys, last) = store.api_keys_page(after, &mut budget)?;
                snap.keys = keys;
                if let Some(last) = last {
                    return Ok(Some(SnapshotCursor::Keys { after: Some(B256::from(last)) }));
                }
            }
            let after = match &from {
                SnapshotCursor::Endpoints { after } => after.clone(),
                _ => None,
            };
            let (endpoints, last) = store.webhook_endpoints_page(after.as_deref(), &mut budget)?;
            snap.endpoints = endpoints.iter().map(EndpointAnnouncement::of).collect();
            Ok(last.map(|last| SnapshotCursor::Endpoints { after: Some(last) }))
        })();
        match read {
            Ok(next) => snap.next = next,
            Err(e) => {
                // A page cut short here ends the catch-up; the asking node's next one starts over.
                warn!(error = %e, "cannot read the merchants' state for a peer");
                snap.next = None;
            }
        }
        snap
    }

    /// Asks `peer` for its merchants' state, page by page, and takes what verifies (on
    /// connect, and after differing digests). `first`: the pace of catch-ups on connect is
    /// checked (at most one per peer per interval); a digest pull has its own. Returns what
    /// changed here, or `None` when no page came.
    pub async fn catch_up_from(&self, peer: PeerId, first: bool) -> Option<CaughtUp> {
        let net = self.0.net.get().cloned()?;
        if first {
            let now = now_ms();
            let mut taken = self.0.catch_ups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if taken.get(&peer).is_some_and(|at| now.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS) {
                debug!(%peer, "merchants catch-up from this peer too soon again: skipped");
                return None;
            }
            taken.retain(|_, at| now.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS);
            taken.insert(peer, now);
        }
        // One catch-up from a peer at a time: one that redials in a loop starts no second.
        let Some(_running) = Running::start(&self.0.catching_up_from, peer) else {
            debug!(%peer, "a merchants catch-up from this peer is under way already");
            return None;
        };
        let mut done: Option<CaughtUp> = None;
        let mut from: Option<SnapshotCursor> = None;
        let mut refused_pages = 0;
        for _ in 0..MAX_CATCH_UP_PAGES {
            let request = SyncRequest {
                merchants: true,
                merchants_paged: true,
                merchants_from: from.clone(),
                ..Default::default()
            };
            let answer = net.request(peer, serde_json::to_string(&request).unwrap_or_default()).await;
            let page = match answer {
                Ok(answer) => serde_json::from_str::<SyncResponse>(&answer).ok().and_then(|r| r.merchants),
                Err(e) => {
                    debug!(%peer, error = %e, "merchants sync request failed");
                    break;
                }
            };
            let Some(page) = page else {
                // Refused for now (the peer's page allowance): a catch-up under way goes on
                // from the same page after the interval, twice in a row at most.
                refused_pages += 1;
                if from.is_none() || refused_pages > 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(SNAPSHOT_INTERVAL_MS)).await;
                continue;
            };
            refused_pages = 0;
            // An honest peer's page holds at most a page, and its cursor only moves on: a peer
            // that sends more, or sends its pages round in a loop, is not asked further.
            let next = page.next.clone();
            let records = page.entries.len() + page.keys.len() + page.endpoints.len();
            if records > PAGE_RECORDS || next.as_ref().is_some_and(|n| !advances(from.as_ref(), n)) {
                warn!(%peer, records, "a merchants snapshot page larger than a page, or whose cursor goes back: the catch-up from this peer ends");
                break;
            }
            let registry = self.clone();
            let so_far = done.unwrap_or_default();
            let Ok(taken) = tokio::task::spawn_blocking(move || registry.take_snapshot(page, &peer, so_far)).await
            else {
                break;
            };
            done = Some(taken);
            if taken.refused >= MAX_REFUSED_RECORDS {
                break;
            }
            if next.is_none() {
                break;
            }
            from = next;
        }
        if let Some(d) = done
            && d.entries + d.keys + d.endpoints + d.refused > 0
        {
            info!(%peer, applied = d.entries, keys = d.keys, endpoints = d.endpoints, refused = d.refused, "merchants caught up from a peer");
        }
        done
    }

    /// Takes what verifies of snapshot page `snap` from `source`, one page at a time, adding
    /// to `done` (what the catch-up's earlier pages did: refusals count over the whole of it).
    pub(super) fn take_snapshot(&self, snap: MerchantSnapshot, source: &PeerId, mut done: CaughtUp) -> CaughtUp {
        let _one_at_a_time = self.0.catching_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // One merchant's record each (a registry holds one per merchant); each change once.
        let mut seen = HashSet::new();
        for entry in snap.entries.into_iter().take(MAX_SNAPSHOT) {
            if !seen.insert(entry.change.hash()) {
                continue;
            }
            match self.take_entry(entry) {
                Ok(true) => done.entries += 1,
                Ok(false) => {}
                Err(why) => {
                    // A record can be refused for what this node does not know yet (an operator
                    // set it has not read), so the catch-up goes on past it; a snapshot with
                    // many refused records is not worth more pairings.
                    done.refused += 1;
                    warn!(peer = %source, error = %why, "merchant registry record in a catch-up refused");
                    if done.refused >= MAX_REFUSED {
                        warn!(peer = %source, "too many refused records in a merchants catch-up; the rest of it is dropped");
                        break;
                    }
                }
            }
        }
        let sent_at_ms = now_ms();
        // Each refused key or endpoint cost a signature check: past [`MAX_REFUSED_RECORDS`],
        // the rest of the snapshot is not worth more.
        for key in snap.keys.into_iter().take(MAX_SNAPSHOT) {
            if done.refused >= MAX_REFUSED_RECORDS {
                break;
            }
            let data = serde_json::to_vec(&KeyAnnouncement { key, sent_at_ms }).unwrap_or_default();
            match self.hear_key(&data, source) {
                Ok(true) => done.keys += 1,
                // Refused without a signature check (a grant without `aud` after the upgrade day).
                Ok(false) | Err(crate::gossip::GossipRejection::NotInRegistry(_)) => {}
                Err(_) => done.refused += 1,
            }
        }
        for endpoint in snap.endpoints.into_iter().take(MAX_SNAPSHOT) {
            if done.refused >= MAX_REFUSED_RECORDS {
                warn!(peer = %source, "too many refused keys and endpoints in a merchants catch-up; the rest of it is dropped");
                break;
            }
            let data = serde_json::to_vec(&EndpointAnnouncement { sent_at_ms, ..endpoint }).unwrap_or_default();
            match self.hear_endpoint(&data, source) {
                Ok(true) => done.endpoints += 1,
                Ok(false) => {}
                Err(_) => done.refused += 1,
            }
        }
        done
    }

    /// Applies `entry` when it is newer than the record held and a threshold of its epoch
    /// approved it; `Err` says why a record was refused.
    fn take_entry(&self, entry: RegistryEntry) -> Result<bool, String> {
        let (Some(store), Some(epochs)) = (&self.0.store, &self.0.epochs) else { return Ok(false) };
        let change = &entry.change;
        let held = store.registry_entry(&change.merchant.id).map_err(|e| e.to_string())?;
        if change.version == 0 || held.as_ref().is_some_and(|h| h.change.version >= change.version) {
            return Ok(false);
        }
        // Epochs only move forward: a later version approved by an earlier set than the one
        // that approved the record held is not taken.
        if let Some(h) = &held
            && change.epoch < h.change.epoch
        {
            return Err(format!(
                "version {} is of epoch {}, before the held record's {}",
                change.version, change.epoch, h.change.epoch
            ));
        }
        // As on gossip, only the latest set's threshold counts: a retired set's keys may be
        // lost or sold, and its operators are no longer answerable for the registry.
        let set = epochs.latest().ok_or_else(|| "no operator set is known here".to_string())?;
        if change.epoch != set.epoch {
            debug!(merchant = %change.merchant.id, epoch = change.epoch, latest = set.epoch, "merchant record of another epoch than the latest in a catch-up: not taken");
            return Ok(false);
        }
        let hash = change.hash();
        let message = merchant_change_message(self.0.chain_id, self.0.settlement, change.epoch, hash);
        let mut signers = HashSet::new();
        let mut approvals = Vec::new();
        for (signer, signature) in entry.approvals.iter().take(set.operators.len()) {
            let op = set.operators.get(*signer as usize).ok_or_else(|| format!("signer {signer} is unknown"))?;
            // Enough checked: the rest cost pairings for nothing.
            if approvals.len() >= set.threshold {
                break;
            }
            if !signers.insert(*signer) {
                continue;
            }
            let sig = BlsSignature::from_bytes(signature).map_err(|e| e.to_string())?;
            sig.verify(&op.bls, message.as_slice()).map_err(|e| format!("approval of signer {signer}: {e}"))?;
            approvals.push((*signer, signature.clone()));
        }
        if approvals.len() < set.threshold {
            return Err(format!("{} approvals, {} needed", approvals.len(), set.threshold));
        }
        if let Some((field, problem)) = self.record_problem(change).map_err(|e| e.to_string())? {
            return Err(format!("{field}: {problem}"));
        }
        let fresh = RegistryEntry { approvals, applied_at_ms: now_ms(), previous_secret: None, change: entry.change };
        let applied = store.apply_merchant_change(hash, &fresh, self.0.secret_overlap_ms).map_err(|e| e.to_string())?;
        if applied {
            self.reload().map_err(|e| e.to_string())?;
            info!(merchant = %fresh.change.merchant.id, version = fresh.change.version, change_hash = %hash, "merchant change applied from a catch-up");
            metrics::counter!("merchant_changes_applied_total").increment(1);
        } else {
            debug!(change_hash = %hash, "merchant change from a catch-up not newer here");
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merchants::api_keys::GRANT_PATH;
    use crate::merchants::api_keys::tests::{ROOT, grant, registries, statement};

    /// A catch-up in pages of a few records takes every key and every revocation, the oldest
    /// among them too: nothing is cut for being old, whatever page size (one that fills at a
    /// kind's last record too).
    #[test]
    fn a_catch_up_in_pages_takes_every_record_and_every_revocation() {
        for size in 1..=14 {
            catch_up_in_pages_of(size);
        }
    }

    fn catch_up_in_pages_of(size: usize) {
        let (_dirs, nodes) = registries();
        let mut granted = Vec::new();
        for i in 0..12 {
            let (g, _) = grant(&ROOT, &format!("k{i}"), &["invoices:read"]);
            let key = nodes[0].create_key("demo", g).expect("grant");
            if i % 3 == 0 {
                let revocation = statement(&ROOT, "DELETE", &format!("{GRANT_PATH}/{}", key.id), "");
                nodes[0].revoke_key("demo", &key.id, revocation).expect("revoke");
            }
            granted.push(key.id);
        }
        for i in 0..3 {
            let body = format!(
                r#"{{"url":"https://hooks.example.com/{i}","enabled_events":["*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}"#
            );
            let creation = statement(&ROOT, "POST", super::super::endpoint_record::ENDPOINTS_PATH, &body);
            nodes[0].create_endpoint("demo", creation).expect("endpoint");
        }
        let (mut from, mut pages, mut done) = (None, 0, CaughtUp::default());
        loop {
            let page = nodes[0].snapshot_page_within(from.as_ref(), PageBudget { records: size, bytes: usize::MAX });
            assert!(page.entries.len() + page.keys.len() + page.endpoints.len() <= size);
            let next = page.next.clone();
            done = nodes[1].take_snapshot(page, &PeerId::random(), done);
            pages += 1;
            match next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert!(pages >= 12 / size, "{pages} pages of {size}");
        assert_eq!((done.keys, done.endpoints, done.refused), (12, 3, 0), "pages of {size}: {done:?}");
        let held = nodes[1].store().expect("store").api_keys(Some("demo")).expect("keys");
        assert_eq!(held.len(), 12);
        assert_eq!(held.iter().filter(|k| k.revoked_at_ms.is_some()).count(), 4, "every revocation");
    }

    /// Pages go forward only: kinds in order, keys within a kind; the asking node stops at a
    /// cursor that goes back or stands still (a peer sending its pages round in a loop).
    #[test]
    fn a_cursor_only_moves_forward() {
        let entries = |a: Option<&str>| SnapshotCursor::Entries { after: a.map(String::from) };
        let keys = |a: Option<u8>| SnapshotCursor::Keys { after: a.map(B256::repeat_byte) };
        let endpoints = |a: Option<&str>| SnapshotCursor::Endpoints { after: a.map(String::from) };
        let table = [
            (None, entries(Some("a")), true),
            (Some(entries(Some("a"))), entries(Some("b")), true),
            (Some(entries(Some("b"))), entries(Some("a")), false),
            (Some(entries(Some("b"))), entries(Some("b")), false),
            (Some(entries(Some("zz"))), keys(None), true),
            (Some(keys(Some(2))), keys(Some(1)), false),
            (Some(keys(Some(1))), keys(Some(2)), true),
            (Some(keys(Some(9))), endpoints(None), true),
            (Some(endpoints(None)), entries(Some("a")), false),
            (Some(endpoints(Some("we_2"))), endpoints(Some("we_1")), false),
        ];
        for (from, next, forward) in table {
            assert_eq!(advances(from.as_ref(), &next), forward, "{from:?} -> {next:?}");
        }
    }

    /// A peer gets one catch-up per interval, and at most [`MAX_PAGES`] pages in it.
    #[test]
    fn a_peer_gets_a_bounded_number_of_pages_per_interval() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut served = PagesServed::default();
        assert!(served.admit(peer, true, 0), "a first page");
        assert!(!served.admit(peer, true, 1), "a second first page in the interval");
        for _ in 1..MAX_PAGES {
            assert!(served.admit(peer, false, 2));
        }
        assert!(!served.admit(peer, false, 3), "past the pages of the interval");
        assert!(served.admit(other, false, 3), "another peer has its own");
        assert!(served.admit(peer, true, SNAPSHOT_INTERVAL_MS), "a new interval");
    }
}
