//! Closing rounds: build each closed round's batch from confirmed payments and the hash of its
//! last block, sign it through the persisted guard, gossip it, and re-broadcast it until the
//! round is settled.
//!
//! A reorg deeper than the confirmation depth reopens the rounds it reached (the watcher
//! rewinds): each is built again on the new chain. When its payments changed, the new batch
//! names another hash of the round's last block, so the guard lets it be signed and the round
//! settles on the new chain; when nothing is left to settle, the round is dropped.

use super::{RoundDriver, State};
use crate::gossip::{self, Attestation};
use crate::operators::OperatorSet;
use crate::store::{RoundEnd, SigningOutcome, StoreError};
use crate::time::{now_ms, now_s};
use alloy::primitives::Bytes;
use settleproof_consensus::{Batch, BlsSignature};
use tracing::{debug, error, info, warn};

impl RoundDriver {
    pub(super) async fn close_rounds(&self, st: &mut State) -> Result<(), StoreError> {
        if self.halt.is_halted() {
            return Ok(());
        }
        let checkpoint = self.store.checkpoint()?;
        let first = self.store.next_round()?;
        let mut round = first;
        while self.schedule.is_closed(round, checkpoint) {
            let Some((from, to)) = self.schedule.range(round) else { break };
            // The set of a closed round is always known once the chain is read that far (an
            // update must land before its first round); until then the round waits.
            let Some(set) = self.epochs.for_round(round) else { break };
            let Some(to_block_hash) = self.round_end_hash(to).await else { break };
            let records = self.store.payments_in_range(from, to)?;
            let mut leaves: Vec<_> = records.iter().map(|r| r.leaf.clone()).collect();
            let batch = Batch::build(set.epoch, round, (from, to), to_block_hash, &mut leaves);
            if batch.is_none()
                && self.store.signed_batch(round)?.is_some_and(|s| !s.abandoned)
                && self.store.abandon_signed_round(round)?
            {
                // Signed on a chain a reorg replaced; on this one the round has no payments.
                warn!(round, "a signed round has no payments left on the chain after a reorg: nothing to settle");
                st.pending.remove(&round);
                st.pool.remove_round(round);
                st.quorum_at.remove(&round);
                st.published_at.remove(&round);
            }
            // A settlement read above the depth does not stop this node signing (it signs what
            // it would have signed before it could see that far).
            if let Some(batch) = batch
                && self.store.settlement(round)?.is_none_or(|s| s.seen_ahead)
                && self.sign_and_publish(st, &set, batch).await?
            {
                self.fetch_missing_invoices(from, to);
                let (now, now_ms) = (now_s(), now_ms());
                for r in &records {
                    crate::trace_context::mark("sign_round", &r.leaf, Some(round));
                    metrics::histogram!("invoice_verification_latency_seconds", "chain_id" => self.chain.chain_id().to_string())
                        .record(now.saturating_sub(r.block_timestamp) as f64);
                    metrics::histogram!("confirmation_to_attestation_seconds", "chain_id" => self.chain.chain_id().to_string())
                        .record(now_ms.saturating_sub(r.confirmed_at_ms) as f64 / 1000.0);
                }
            }
            round += 1;
        }
        if round != first {
            self.store.set_next_round(round)?;
        }
        st.next_round = round;
        Ok(())
    }

    /// The hash of block `to` (a round's last block) as the watcher stored it with the round's
    /// payments. A block no longer kept (the driver fell more than the kept blocks behind the
    /// watcher) is older than any reorg the watcher follows, so it is read through the provider
    /// quorum. `None` while it cannot be had: the round waits.
    async fn round_end_hash(&self, to: u64) -> Option<alloy::primitives::B256> {
        match self.store.round_end(to) {
            Ok(RoundEnd::Kept(hash)) => Some(hash),
            Ok(RoundEnd::Pruned) => match self.chain.block(to).await {
                Ok(b) => Some(b.hash),
                Err(e) => {
                    warn!(block = to, error = %e, "cannot read the hash of a round's last block yet");
                    None
                }
            },
            Ok(RoundEnd::NotReached) => None,
            Err(e) => {
                error!(block = to, error = %e, "cannot read a round's last block from the store");
                None
            }
        }
    }

    /// Asks the peers, in the background, for the invoices of blocks `from..=to` this node never
    /// received, so that every node (not only the keeper) has them before the settlement.
    fn fetch_missing_invoices(&self, from: u64, to: u64) {
        if super::invoice_fetch::missing(&self.store, &self.merchants.all(), from, to).is_empty() {
            return;
        }
        let (net, holders, store, scope) = (self.net.clone(), self.holders(), self.store.clone(), self.invoice_scope());
        tokio::spawn(async move {
            super::invoice_fetch::fetch_missing(&net, &holders, &store, &scope, from, to).await;
        });
    }

    /// Signs (through the guard) and gossips `batch` of `set`'s epoch; returns whether a new
    /// signature was made. A node that is not an operator of the epoch does not sign.
    async fn sign_and_publish(&self, st: &mut State, set: &OperatorSet, batch: Batch) -> Result<bool, StoreError> {
        let Some(me) = set.me else { return Ok(false) };
        let Some(key) = self.signing_key(set) else {
            error!(
                round = batch.round,
                epoch = set.epoch,
                "this node holds no BLS key the epoch registered for it (bls.key, bls.next.key): not signing"
            );
            metrics::counter!("signing_key_missing_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            return Ok(false);
        };
        let (chain_id, settlement) = (self.chain.chain_id(), self.chain.settlement_address());
        let outcome = self.store.record_signature(batch, |b| {
            Bytes::from(key.sign(b.message(chain_id, settlement).as_slice()).to_bytes().to_vec())
        });
        let (signed, new) = match outcome {
            Ok(SigningOutcome::Recorded(s)) if !s.earlier.is_empty() => {
                // Votes and timers of the batch of the replaced chain no longer count.
                st.pool.keep_chain(batch.round, batch.to_block_hash);
                st.quorum_at.remove(&batch.round);
                // The new signature has not been sent: a failed publish below leaves it due.
                st.published_at.remove(&batch.round);
                warn!(
                    round = batch.round,
                    root = %batch.root,
                    leaves = batch.leaf_count,
                    to_block_hash = %batch.to_block_hash,
                    replaced_root = %s.earlier.last().map(|b| b.root).unwrap_or_default(),
                    "signed the round again on the chain that replaced its blocks"
                );
                metrics::counter!("rounds_signed_again_total", "chain_id" => self.chain.chain_id().to_string())
                    .increment(1);
                metrics::counter!("batches_signed_total", "chain_id" => self.chain.chain_id().to_string()).increment(1);
                (s, true)
            }
            Ok(SigningOutcome::Recorded(s)) => {
                info!(round = batch.round, root = %batch.root, leaves = batch.leaf_count, "signed batch");
                metrics::counter!("batches_signed_total", "chain_id" => self.chain.chain_id().to_string()).increment(1);
                (s, true)
            }
            Ok(SigningOutcome::Existing(s)) => (s, false),
            Err(StoreError::Equivocation { round, signed }) => {
                error!(round, signed = %signed, proposed = %batch.root, "refused to sign a second batch for a round");
                metrics::counter!("invariant_violations_total", "chain_id" => self.chain.chain_id().to_string(), "invariant" => "double_sign_attempt").increment(1);
                return Ok(false);
            }
            Err(e @ StoreError::TooManyChains { .. }) => {
                error!(round = batch.round, error = %e, "not signing the round again");
                metrics::counter!("invariant_violations_total", "chain_id" => self.chain.chain_id().to_string(), "invariant" => "round_signed_on_too_many_chains")
                    .increment(1);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if let Ok(sig) = BlsSignature::from_bytes(&signed.signature) {
            st.pool.insert(signed.batch, me, sig);
        }
        st.pending.insert(batch.round);
        if self.publish(signed.batch, signed.signature).await {
            st.published_at.insert(batch.round, std::time::Instant::now());
        }
        self.try_settle(st, batch.round);
        Ok(new)
    }

    /// Publishes this node's attestation; whether it went out.
    async fn publish(&self, batch: Batch, signature: Bytes) -> bool {
        let Some(signer) = self.epochs.get(batch.epoch).and_then(|s| s.me) else { return false };
        let att = Attestation { batch, signer, signature, sent_at_ms: now_ms() };
        let data = serde_json::to_vec(&att).unwrap_or_default();
        match self.net.publish(gossip::ATTESTATIONS, data).await {
            Ok(()) => true,
            Err(e) => {
                debug!(round = batch.round, error = %e, "attestation not published yet; will rebroadcast");
                false
            }
        }
    }

    /// Publishes again this node's attestations of the rounds pending for most of an interval
    /// (a tick handled a little early must not push a round to the next one), its own set change
    /// approvals (the merchants' records are announced again by `merchants::inbox`).
    pub(super) async fn rebroadcast(&self, st: &mut State) {
        let now = std::time::Instant::now();
        let min_age = self.timing.rebroadcast.mul_f64(0.75);
        let stale = |r: &u64| st.published_at.get(r).is_none_or(|at| now.duration_since(*at) >= min_age);
        let (now_ms, deadline) = (now_ms(), self.timing.keeper_deadline_ms);
        let due: Vec<u64> = st
            .pending
            .iter()
            .copied()
            // A vote never sent (its publish failed) goes out whatever the quorum here.
            .filter(|r| {
                stale(r)
                    && !(st.published_at.contains_key(r) && settling(st.quorum_at.get(r).copied(), now_ms, deadline))
            })
            .collect();
        for round in due {
            if let Ok(Some(signed)) = self.store.signed_batch(round)
                && self.publish(signed.batch, signed.signature).await
            {
                st.published_at.insert(round, now);
            }
        }
        self.rebroadcast_set_approvals().await;
    }

    /// Publishes this node's own approvals of set changes proposed to the latest epoch (made
    /// through the admin API), until the next epoch is committed: an operator that was offline
    /// when one was made hears it later.
    async fn rebroadcast_set_approvals(&self) {
        let Some(set) = self.epochs.latest() else { return };
        let Some(me) = set.me else { return };
        let Ok(approvals) = self.store.set_approvals(set.epoch) else { return };
        for a in approvals.into_iter().filter(|a| a.signer as usize == me) {
            let msg = crate::set_approval::SetApproval {
                epoch: set.epoch,
                set_hash: a.set_hash,
                signer: me,
                signature: a.signature,
                sent_at_ms: now_ms(),
            };
            let data = serde_json::to_vec(&msg).unwrap_or_default();
            if let Err(e) = self.net.publish(crate::set_approval::TOPIC, data).await {
                debug!(set_hash = %msg.set_hash, error = %e, "set change approval not published yet; will rebroadcast");
            }
        }
    }
}

/// Whether a round this node saw a quorum for at `quorum_at_ms` is being settled at `now_ms`:
/// its keeper has had less than one deadline. Its vote is not sent again meanwhile (the
/// quorum's votes went out and were heard here, so most likely at the keeper too); once the
/// deadline passes without the settlement it is, for the keeper that may lack it, and a node
/// short of a quorum also fetches the votes it misses (`catch_up`).
fn settling(quorum_at_ms: Option<u64>, now_ms: u64, deadline_ms: u64) -> bool {
    quorum_at_ms.is_some_and(|at| now_ms.saturating_sub(at) < deadline_ms)
}

#[cfg(test)]
mod tests {
    use super::settling;

    #[test]
    fn a_vote_is_sent_again_only_without_a_quorum_or_after_a_keeper_deadline() {
        assert!(!settling(None, 10_000, 3_000), "no quorum seen here: send it again");
        assert!(settling(Some(9_000), 10_000, 3_000), "quorum a second ago: the keeper is at it");
        assert!(!settling(Some(7_000), 10_000, 3_000), "a whole deadline without the settlement");
        assert!(settling(Some(10_500), 10_000, 3_000), "a quorum stamped ahead of the clock");
    }
}
