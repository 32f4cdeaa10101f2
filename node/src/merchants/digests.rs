//! Digests of the merchants' records, and pulling what a peer holds that this node does not.
//!
//! A record (registry change, API key, webhook endpoint) is announced once, when it is made.
//! A node that missed the announcement (its inbox was full, gossip had no mesh to it yet) does
//! not wait for the record to be sent again: every [`DIGEST_EVERY`] each node publishes one hash
//! of what it holds ([`MerchantDigest`], topic [`DIGESTS_TOPIC`]), and a node whose own digest
//! differs from a peer's twice in a row asks that peer for its merchants' snapshot, the same
//! catch-up as on connect, which takes only what verifies. A pull that brought nothing doubles
//! the wait before the next one from that peer (from [`FIRST_BACKOFF_MS`] to
//! [`MAX_BACKOFF_MS`]): nodes whose records differ for good (a record one refuses and the
//! other keeps), or an operator that publishes false digests, cost one snapshot per peer per
//! half hour at most.

use super::Registry;
use crate::gossip::{GossipRejection, SyncRequest, SyncResponse};
use crate::time::now_ms;
use alloy::primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use settleproof_p2p::PeerId;
use std::collections::HashMap;
use std::time::Duration;
use tracing::debug;

/// Topic of merchant record digests.
pub const DIGESTS_TOPIC: &str = "settleproof/merchant-digests/1";
/// How often a node publishes its digest.
pub const DIGEST_EVERY: Duration = Duration::from_secs(10);
/// The wait after a pull before the next from the same peer.
pub const FIRST_BACKOFF_MS: u64 = 60_000;
/// The longest wait between two pulls from one peer.
pub const MAX_BACKOFF_MS: u64 = 30 * 60_000;

/// One hash of the merchants' records a node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantDigest {
    /// The hash ([`Registry::digest`]).
    pub records: B256,
    /// Send time.
    pub sent_at_ms: u64,
}

/// When to pull from each peer whose digest differs from this node's.
#[derive(Debug, Default)]
pub struct PullTracker {
    peers: HashMap<PeerId, PeerPulls>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PeerPulls {
    /// Digests in a row that differed from this node's.
    differed: u32,
    /// No pull from it before this time (unix ms).
    not_before_ms: u64,
    /// The wait after the next pull.
    backoff_ms: u64,
}

impl PullTracker {
    /// A digest of `peer` that is (`same`) or is not this node's, heard at `now_ms`: whether to
    /// pull from it now.
    pub fn heard(&mut self, peer: PeerId, same: bool, now_ms: u64) -> bool {
        if same {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.differed = 0;
            }
            return false;
        }
        let p = self.peers.entry(peer).or_default();
        p.differed = p.differed.saturating_add(1);
        if p.differed < 2 || now_ms < p.not_before_ms {
            return false;
        }
        p.differed = 0;
        p.backoff_ms = p.backoff_ms.max(FIRST_BACKOFF_MS);
        p.not_before_ms = now_ms.saturating_add(p.backoff_ms);
        true
    }

    /// A pull from `peer` ended: it `changed` something here (the next waits the least), or
    /// not (the next waits twice as long, up to [`MAX_BACKOFF_MS`]).
    pub fn pulled(&mut self, peer: PeerId, changed: bool) {
        let p = self.peers.entry(peer).or_default();
        p.backoff_ms = if changed {
            FIRST_BACKOFF_MS
        } else {
            p.backoff_ms.saturating_mul(2).clamp(FIRST_BACKOFF_MS, MAX_BACKOFF_MS)
        };
    }
}

impl Registry {
    /// One hash of the records a merchants' snapshot carries, by what identifies each version:
    /// registry changes by their hash, keys by slot and whether revoked, endpoints by id,
    /// version and whether deleted. Equal at two nodes that hold the same records, whatever
    /// order, approvals or times they hold them with.
    pub fn digest(&self) -> B256 {
        let snap = self.snapshot();
        let mut items: Vec<Vec<u8>> = Vec::new();
        for e in &snap.entries {
            items.push([b"r".as_slice(), e.change.hash().as_slice()].concat());
        }
        for k in &snap.keys {
            items.push([b"k".as_slice(), k.token_sha256.as_slice(), &[u8::from(k.revocation.is_some())]].concat());
        }
        for a in &snap.endpoints {
            let statements: Vec<u8> = a.statements.iter().flat_map(|s| keccak256(s.jwt.as_bytes()).0).collect();
            items.push([b"e".as_slice(), a.endpoint_id.as_bytes(), keccak256(&statements).as_slice()].concat());
        }
        items.sort();
        keccak256(items.concat())
    }

    /// Publishes this node's digest, and keeps it for comparing the peers' with.
    pub(super) fn publish_digest(&self) {
        let records = self.digest();
        *self.0.own_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(records);
        let Some(net) = self.0.net.get().cloned() else { return };
        let data = serde_json::to_vec(&MerchantDigest { records, sent_at_ms: now_ms() }).unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) = net.publish(DIGESTS_TOPIC, data).await {
                debug!(error = %e, "merchant digest not published");
            }
        });
    }

    /// A peer's digest: `Ok(true)` when it differed twice in a row from this node's, and this
    /// node should pull from `source` now.
    pub(super) fn hear_digest(&self, data: &[u8], source: &PeerId) -> Result<bool, GossipRejection> {
        let d: MerchantDigest = serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let own = *self.0.own_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(own) = own else { return Ok(false) };
        let mut pulls = self.0.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(pulls.heard(*source, own == d.records, now_ms()))
    }

    /// Asks `peer` for its merchants' snapshot and takes what verifies; counted in
    /// `merchant_digest_pulls_total{changed}`.
    pub(super) async fn pull(&self, peer: PeerId) {
        let Some(net) = self.0.net.get().cloned() else { return };
        let request = serde_json::to_string(&SyncRequest { merchants: true, ..Default::default() }).unwrap_or_default();
        let snapshot = match net.request(peer, request).await {
            Ok(answer) => serde_json::from_str::<SyncResponse>(&answer).ok().and_then(|r| r.merchants),
            Err(e) => {
                debug!(%peer, error = %e, "merchants pull failed");
                None
            }
        };
        let changed = match snapshot {
            Some(snap) => {
                let registry = self.clone();
                let done =
                    tokio::task::spawn_blocking(move || registry.take_snapshot(snap, &peer)).await.unwrap_or_default();
                done.entries + done.keys + done.endpoints > 0
            }
            None => false,
        };
        metrics::counter!("merchant_digest_pulls_total", "changed" => if changed { "true" } else { "false" })
            .increment(1);
        self.0.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pulled(peer, changed);
        if changed {
            // What was taken changes this node's digest at once, not at its next publication.
            let registry = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let d = registry.digest();
                *registry.0.own_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(d);
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_pulled_from_after_two_differing_digests_and_less_often_while_nothing_comes() {
        let mut t = PullTracker::default();
        let (peer, other) = (PeerId::random(), PeerId::random());
        let s = 1_000_000;
        assert!(!t.heard(peer, false, s), "one differing digest may be a record in flight");
        assert!(t.heard(peer, false, s + 10_000), "the second in a row pulls");
        assert!(!t.heard(peer, false, s + 20_000));
        assert!(!t.heard(peer, false, s + 30_000), "not again within the backoff");
        t.pulled(peer, false);
        assert!(t.heard(peer, false, s + 10_000 + FIRST_BACKOFF_MS), "after the backoff");
        t.pulled(peer, false);
        let (a, b) = (s + 10_000 + FIRST_BACKOFF_MS + 10_000, s + 10_000 + FIRST_BACKOFF_MS + 20_000);
        assert!(!t.heard(peer, false, a) && !t.heard(peer, false, b), "the wait doubled: nothing came");
        assert!(t.heard(peer, false, s + 10_000 + 3 * FIRST_BACKOFF_MS), "after twice the backoff");
        assert!(!t.heard(other, false, s), "each peer on its own");
        assert!(!t.heard(peer, true, s + 10_000_000), "an equal digest never pulls");
        assert!(!t.heard(peer, false, s + 10_010_000), "and starts the count again");
        for _ in 0..20 {
            t.pulled(peer, false);
        }
        let p = t.peers[&peer];
        assert_eq!(p.backoff_ms, MAX_BACKOFF_MS, "bounded");
        t.pulled(peer, true);
        assert_eq!(t.peers[&peer].backoff_ms, FIRST_BACKOFF_MS, "a pull that brought something resets it");
    }
}
