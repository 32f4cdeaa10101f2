//! Catch-up of the merchants' state on connect: a node that was offline longer than the
//! rebroadcast windows (or joined after a change) asks a peer for its registry, API keys and
//! webhook endpoints ([`MerchantSnapshot`], in the sync request of the first chain).
//!
//! Nothing in a snapshot is taken on the peer's word where money is concerned: a registry
//! entry is applied only with a threshold of valid approvals of the latest epoch (each BLS
//! signature checked under that epoch's operator keys, over the change the receiver hashes
//! itself), a version newer than the one held and a record that passes the same checks as a
//! proposal. Keys and endpoints go through the same checks as their gossip announcements.

use super::Registry;
use super::api_keys::KeyAnnouncement;
use super::webhook_endpoints::EndpointAnnouncement;
use crate::store::{ApiKey, RegistryEntry};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use settleproof_consensus::{BlsSignature, merchant_change_message};
use settleproof_p2p::PeerId;
use std::collections::HashSet;
use tracing::{debug, info, warn};

/// Most records of each kind in one snapshot, sent or taken.
pub const MAX_SNAPSHOT: usize = 4096;
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
    /// This node's merchants' state for `peer`, unless it got one within
    /// [`SNAPSHOT_INTERVAL_MS`] (a peer asking in a loop costs one snapshot per interval).
    pub fn snapshot_for(&self, peer: &PeerId) -> Option<MerchantSnapshot> {
        let now = now_ms();
        {
            // Poisoned: a panic mid-update left a map of times, still usable.
            let mut served = self.0.snapshots_served.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if served.get(peer).is_some_and(|at| now.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS) {
                debug!(%peer, "merchants snapshot asked again too soon: none sent");
                return None;
            }
            served.retain(|_, at| now.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS);
            served.insert(*peer, now);
        }
        Some(self.snapshot())
    }

    /// This node's merchants' state, for a peer catching up: the newest records of each kind
    /// when there are more than [`MAX_SNAPSHOT`].
    pub fn snapshot(&self) -> MerchantSnapshot {
        let Ok(store) = self.store() else { return MerchantSnapshot::default() };
        let mut entries = store.registry_entries().unwrap_or_default();
        entries.retain(|e| e.change.version > 0);
        entries.sort_by_key(|e| std::cmp::Reverse(e.applied_at_ms));
        let mut keys = store.api_keys(None).unwrap_or_default();
        // Revocations first (then the newest): when the snapshot is cut, what it keeps are the
        // revocations a catch-up must not miss, and they are applied before any grant.
        keys.sort_by_key(|k| {
            (k.revoked_at_ms.is_none(), std::cmp::Reverse(k.revoked_at_ms.unwrap_or(k.created_at_ms)))
        });
        let mut endpoints = store.webhook_endpoints(None).unwrap_or_default();
        // Only the merchant's signed records travel (kept ones from before are not served).
        endpoints.retain(|e| !e.statements.is_empty());
        // Live ones first (at most 16 a merchant, so deletions cannot crowd them out of a cut
        // snapshot), then the newest deletions.
        endpoints.sort_by_key(|e| (e.deleted_at_ms.is_some(), std::cmp::Reverse(e.updated_at_ms)));
        if entries.len().max(keys.len()).max(endpoints.len()) > MAX_SNAPSHOT {
            warn!(
                entries = entries.len(),
                keys = keys.len(),
                endpoints = endpoints.len(),
                max = MAX_SNAPSHOT,
                "merchants snapshot cut to its newest records"
            );
        }
        entries.truncate(MAX_SNAPSHOT);
        keys.truncate(MAX_SNAPSHOT);
        endpoints.truncate(MAX_SNAPSHOT);
        let endpoints = endpoints.iter().map(EndpointAnnouncement::of).collect();
        MerchantSnapshot { entries, keys, endpoints }
    }

    /// Takes what `snap` (from `source`) holds that is newer here and checks out.
    pub fn catch_up(&self, snap: MerchantSnapshot, source: &PeerId) -> CaughtUp {
        // One catch-up at a time, each peer's at most once per interval: a peer that redials
        // in a loop costs one snapshot's checks per interval.
        let now = now_ms();
        {
            let mut taken = self.0.catch_ups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if taken.get(source).is_some_and(|at| now.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS) {
                debug!(peer = %source, "merchants catch-up from this peer too soon again: skipped");
                return CaughtUp::default();
            }
            taken.retain(|_, at| now.saturating_sub(*at) < SNAPSHOT_INTERVAL_MS);
            taken.insert(*source, now);
        }
        self.take_snapshot(snap, source)
    }

    /// Takes what verifies of `snap` from `source`, one snapshot at a time (a pull after
    /// differing digests, whose pace `super::digests` sets, or a catch-up).
    pub(super) fn take_snapshot(&self, snap: MerchantSnapshot, source: &PeerId) -> CaughtUp {
        let mut done = CaughtUp::default();
        let _one_at_a_time = self.0.catching_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Oldest first, as they were applied where they come from; each change once.
        let mut seen = HashSet::new();
        let mut entries: Vec<RegistryEntry> = snap.entries.into_iter().take(MAX_SNAPSHOT).collect();
        entries.reverse();
        for entry in entries {
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
                Ok(false) => {}
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
        if done != CaughtUp::default() {
            info!(peer = %source, applied = done.entries, keys = done.keys, endpoints = done.endpoints, refused = done.refused, "merchants caught up from a peer");
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
