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
use crate::gossip::GossipRejection;
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

/// How a pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// It brought records this node did not hold.
    Changed,
    /// It brought nothing new.
    Nothing,
    /// No answer, or no snapshot in it.
    Failed,
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
        // Until the pull ends (it may take a while, or never answer).
        p.not_before_ms = now_ms.saturating_add(MAX_BACKOFF_MS);
        true
    }

    /// A pull from `peer` ended at `now_ms`: it brought something here (the next may come after
    /// [`FIRST_BACKOFF_MS`]), brought nothing (the wait doubles, up to [`MAX_BACKOFF_MS`]), or
    /// failed: no answer, or no snapshot (the peer had just sent one): tried again after
    /// [`FIRST_BACKOFF_MS`] without doubling.
    pub fn pulled(&mut self, peer: PeerId, outcome: Pulled, now_ms: u64) {
        let p = self.peers.entry(peer).or_default();
        p.backoff_ms = match outcome {
            Pulled::Changed => FIRST_BACKOFF_MS,
            Pulled::Nothing => p.backoff_ms.max(FIRST_BACKOFF_MS).saturating_mul(2).min(MAX_BACKOFF_MS),
            Pulled::Failed => p.backoff_ms.max(FIRST_BACKOFF_MS),
        };
        let wait = if outcome == Pulled::Failed { FIRST_BACKOFF_MS } else { p.backoff_ms };
        p.not_before_ms = now_ms.saturating_add(wait);
    }
}

impl Registry {
    /// One hash of every merchant record this node holds, by what identifies each version and
    /// nothing local: registry changes by their hash (version 0, seeded from a configuration,
    /// left out), keys granted by the merchant's current root key by slot and whether revoked,
    /// endpoints by id and what each of their changes signs (not the signature's bytes, which
    /// an ES256 signer may encode otherwise). Equal at two nodes that hold the same records,
    /// whatever order, approvals or times they hold them with. Reads every record: it runs every
    /// [`DIGEST_EVERY`] off the runtime.
    pub fn digest(&self) -> B256 {
        let Ok(store) = self.store() else { return B256::ZERO };
        let mut items: Vec<Vec<u8>> = Vec::new();
        for e in store.registry_entries().unwrap_or_default().iter().filter(|e| e.change.version > 0) {
            items.push([b"r".as_slice(), e.change.hash().as_slice()].concat());
        }
        for k in store.api_keys(None).unwrap_or_default().iter().filter(|k| self.granted_by_root(k)) {
            items.push([b"k".as_slice(), k.token_sha256.as_slice(), &[u8::from(k.revocation.is_some())]].concat());
        }
        for e in store.webhook_endpoints(None).unwrap_or_default().iter().filter(|e| !e.statements.is_empty()) {
            let mut signed: Vec<[u8; 32]> = e
                .statements
                .iter()
                .map(|s| keccak256(s.jwt.rsplit_once('.').map_or(s.jwt.as_str(), |(input, _)| input).as_bytes()).0)
                .collect();
            signed.sort();
            items.push([b"e".as_slice(), e.id.as_bytes(), keccak256(signed.concat()).as_slice()].concat());
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
        let outcome = match self.catch_up_from(peer, false).await {
            Some(done) if done.entries + done.keys + done.endpoints > 0 => Pulled::Changed,
            Some(_) => Pulled::Nothing,
            None => Pulled::Failed,
        };
        let changed = outcome == Pulled::Changed;
        if outcome != Pulled::Failed {
            metrics::counter!("merchant_digest_pulls_total", "changed" => if changed { "true" } else { "false" })
                .increment(1);
        }
        self.0.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pulled(peer, outcome, now_ms());
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
        // Two differing digests heard at `at`: whether the second pulls.
        let twice = |t: &mut PullTracker, at: u64| {
            let first = t.heard(peer, false, at);
            first || t.heard(peer, false, at)
        };
        let s = 1_000_000;
        assert!(!t.heard(peer, false, s), "one differing digest may be a record in flight");
        assert!(t.heard(peer, false, s + 10_000), "the second in a row pulls");
        assert!(!twice(&mut t, s + 20_000), "not while it runs");
        t.pulled(peer, Pulled::Nothing, s + 30_000);
        let after = |n: u64| s + 30_000 + n * FIRST_BACKOFF_MS;
        assert!(!twice(&mut t, after(2) - 1), "twice the first wait after a pull that brought nothing");
        assert!(twice(&mut t, after(2)));
        t.pulled(peer, Pulled::Nothing, after(2));
        assert!(!twice(&mut t, after(6) - 1), "and twice that after the next");
        assert!(twice(&mut t, after(6)));
        t.pulled(peer, Pulled::Changed, after(6));
        assert!(!twice(&mut t, after(7) - 1), "a pull that brought something resets the wait");
        assert!(twice(&mut t, after(7)));
        t.pulled(peer, Pulled::Failed, after(7));
        assert!(!twice(&mut t, after(8) - 1), "a failed pull is tried again after the first wait");
        assert!(twice(&mut t, after(8)));
        assert!(!t.heard(other, false, s), "each peer on its own");
        t.pulled(peer, Pulled::Changed, after(8));
        assert!(!t.heard(peer, true, after(100)), "an equal digest never pulls");
        assert!(!t.heard(peer, false, after(100)), "and starts the count again");
        for k in 0..20 {
            t.pulled(peer, Pulled::Nothing, after(200 + k));
        }
        assert_eq!(t.peers[&peer].backoff_ms, MAX_BACKOFF_MS, "bounded");
    }
}
