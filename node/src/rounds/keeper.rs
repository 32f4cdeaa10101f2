//! The keeper side of a round: when it is this node's turn (scheduled keeper, or the next one
//! after the deadline or a known-down keeper) and a quorum signed its batch, aggregate the
//! signatures and submit the settlement; then record it with its webhook events.

use super::{RoundDriver, State};
use crate::chain::{ChainClient, SettleCall, SettleOutcome, SettlementSender};
use crate::receipt::ReceiptContext;
use crate::store::{SettlementRecord, Store};
use crate::time::{now_ms, now_s};
use crate::webhook::payload::settlement_events;
use alloy::primitives::{B256, Bytes};
use settleproof_config::MerchantConfig;
use settleproof_consensus::failover;
use settleproof_p2p::NetworkHandle;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{error, info, warn};

impl RoundDriver {
    pub(super) fn try_settle(&self, st: &mut State, round: u64) {
        if st.in_flight.contains(&round) || !st.pending.contains(&round) || self.halt.is_halted() {
            return;
        }
        let Ok(Some(own)) = self.store.signed_batch(round) else { return };
        // Only a batch of the chain the watcher follows now: after a deep reorg the round waits
        // to be built again on the new chain (the contract would refuse the old one).
        if !self.on_current_chain(&own.batch) {
            return;
        }
        let Some(quorum) = st.pool.quorum(&own.batch) else { return };
        // Keeper schedule, failover ranks and signer keys are those of the batch's epoch.
        let Some(set) = self.epochs.get(own.batch.epoch) else { return };
        let Some(me) = set.me else { return };
        let now = now_ms();
        let quorum_at = *st.quorum_at.entry(round).or_insert(now);
        let can_pay = st.can_pay.load(Ordering::Relaxed);
        let Some(liveness) = st.liveness.get_mut(&set.epoch) else { return };
        liveness.heartbeat(me, can_pay, now);
        let down = liveness.down(me, now);
        let Some(turn) = failover::turn(round, set.len(), me, &down, quorum_at, self.timing.keeper_deadline_ms) else {
            return;
        };
        if now < turn.at_ms {
            return;
        }
        let message = own.batch.message(self.chain.chain_id(), self.chain.settlement_address());
        let keys: Vec<_> = quorum.signers.iter().filter_map(|i| set.operators.get(*i).map(|o| o.bls)).collect();
        // Votes were counted without a pairing: the quorum is checked here, as one aggregate.
        let aggregate = match quorum.aggregate_verified(&keys, message.as_slice()) {
            Ok(a) => a,
            Err(forged) if forged.is_empty() => {
                error!(round, "aggregate signature does not verify, and no single signature is at fault");
                return;
            }
            Err(forged) => {
                self.discard_forged(st, &own.batch, &set, &forged, me);
                // What is left may still be a quorum.
                return self.try_settle(st, round);
            }
        };
        if turn.attempt > 0 {
            metrics::counter!("keeper_failover_total", "chain_id" => self.chain.chain_id().to_string()).increment(1);
            warn!(round, attempt = turn.attempt, rank = turn.rank, down = ?down, "taking over as keeper");
        }
        metrics::counter!("keeper_selection_rounds_total", "chain_id" => self.chain.chain_id().to_string())
            .increment(1);
        let leaves: Vec<_> = self
            .store
            .payments_in_range(own.batch.from_block, own.batch.to_block)
            .map(|rs| rs.into_iter().map(|r| r.leaf).collect())
            .unwrap_or_default();
        for leaf in &leaves {
            crate::trace_context::mark("aggregate", leaf, Some(round));
        }
        st.in_flight.insert(round);
        let call = SettleCall {
            batch: own.batch,
            signer_bitmap: quorum.signer_bitmap,
            signer_keys: Bytes::from(keys.iter().flat_map(|k| k.to_eip2537()).collect::<Vec<u8>>()),
            signature: Bytes::from(aggregate.to_eip2537().to_vec()),
        };
        let task = SettleTask {
            chain: self.chain.clone(),
            sender: self.sender.clone(),
            store: self.store.clone(),
            ctx: self.receipt_context(),
            merchants: self.merchants.clone(),
            scope: self.invoice_scope(),
            webhook_wake: self.webhook_wake.clone(),
            net: self.net.clone(),
            holders: self.holders(),
            recorded_here: st.recorded_here.clone(),
        };
        let done = st.done_tx.clone();
        let mut shutdown = st.shutdown.clone();
        let span = tracing::info_span!("settle", round, attempt = turn.attempt);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Stops with the node: what was sent is found again from the chain after a
                // restart (the nonce is read back, the round's settlement by the watcher).
                let submitted = tokio::select! {
                    r = task.submit(call) => r,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                let ok = match submitted {
                    Ok(Some(record)) => {
                        info!(round, tx_hash = %record.tx_hash, block = record.block_number, "round settled");
                        for leaf in &leaves {
                            crate::trace_context::mark("settle", leaf, Some(round));
                        }
                        true
                    }
                    Ok(None) => true,
                    Err(e) => {
                        warn!(round, error = %e, "settlement failed; will retry");
                        false
                    }
                };
                let _ = done.send((round, ok)).await;
            },
            span,
        ));
    }

    /// Drops the votes of `forged` signers (their signatures for `batch` did not verify, and
    /// their other votes were counted unchecked too), penalises them as the publishers of those
    /// messages, and verifies their later votes on arrival. Every round whose quorum this breaks
    /// has none again, for catch-up and the failover clock.
    fn discard_forged(
        &self,
        st: &mut State,
        batch: &settleproof_consensus::Batch,
        set: &crate::operators::OperatorSet,
        forged: &[usize],
        me: usize,
    ) {
        for &signer in forged {
            if signer == me {
                // This node's own signature is made with its configured key; failing here means
                // the set names another key for it.
                st.pool.discard(batch, signer);
                error!(
                    round = batch.round,
                    signer, "this node's own signature does not verify against its key in the set"
                );
                continue;
            }
            st.pool.discard_signer(batch.epoch, signer);
            st.suspects.insert((batch.epoch, signer));
            metrics::counter!("forged_votes_discarded_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            if let Some(op) = set.operators.get(signer) {
                warn!(round = batch.round, signer, operator = %op.name, "forged attestation in a quorum: its votes discarded, its signer penalised");
                let (net, peer) = (self.net.clone(), op.peer_id);
                tokio::spawn(async move { net.penalize(peer).await });
            }
        }
        // The forgers' votes are gone from every round: a round whose quorum needed one has none
        // again (its catch-up resumes, and its failover clock starts at its real quorum).
        let rounds: Vec<u64> = st.quorum_at.keys().copied().collect();
        for round in rounds {
            let own = if round == batch.round {
                Some(*batch)
            } else {
                self.store.signed_batch(round).ok().flatten().map(|s| s.batch)
            };
            if own.is_none_or(|b| st.pool.quorum(&b).is_none()) {
                st.quorum_at.remove(&round);
            }
        }
    }
}

struct SettleTask {
    chain: ChainClient,
    sender: SettlementSender,
    store: Store,
    ctx: ReceiptContext,
    merchants: crate::merchants::Registry,
    scope: crate::gossip::InvoiceScope,
    webhook_wake: Arc<Notify>,
    net: NetworkHandle,
    holders: super::invoice_fetch::Holders,
    recorded_here: RecordedHere,
}

/// The settlements (round and transaction) a keeper task of this node recorded with their
/// events, until the round loop drops the round as settled: that one then renders nothing
/// again. Shared between the loop and its tasks; at most one entry per round in flight.
#[derive(Debug, Clone, Default)]
pub(super) struct RecordedHere(Arc<std::sync::Mutex<HashMap<u64, B256>>>);

impl RecordedHere {
    fn insert(&self, round: u64, tx_hash: B256) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(round, tx_hash);
        }
    }

    /// Whether the settlement of `round` by `tx_hash` was recorded here with its events;
    /// forgets the round either way.
    pub(super) fn take(&self, round: u64, tx_hash: B256) -> bool {
        self.0.lock().ok().and_then(|mut m| m.remove(&round)).is_some_and(|t| t == tx_hash)
    }

    /// Forgets `round` and every earlier one: an entry written after its round was dropped as
    /// settled (the loop got there first) is not kept.
    pub(super) fn forget_through(&self, round: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|r, _| *r > round);
        }
    }
}

impl SettleTask {
    /// Submits the settlement unless the round is settled on chain already; records it and its
    /// webhook events atomically. `None`: another keeper settled it.
    async fn submit(
        &self,
        call: SettleCall,
    ) -> Result<Option<SettlementRecord>, Box<dyn std::error::Error + Send + Sync>> {
        let batch = call.batch;
        if !self.chain.settled_root(batch.round).await?.is_zero() {
            info!(round = batch.round, "round already settled on chain");
            return Ok(None);
        }
        if let Some((from, to)) = self.ctx.schedule.range(batch.round) {
            super::invoice_fetch::fetch_missing(&self.net, &self.holders, &self.store, &self.scope, from, to).await;
        }
        let mut record = None;
        for attempt in 0..MAX_RESUBMISSIONS {
            info!(round = batch.round, root = %batch.root, signers = call.signer_bitmap.count_ones(), attempt, "submitting settlement");
            let sent = match self.sender.settle(&call).await? {
                SettleOutcome::Settled(record) => *record,
                SettleOutcome::SettledByOther => {
                    info!(round = batch.round, "another keeper settled the round first; nothing paid");
                    return Ok(record);
                }
            };
            // Rendering the round's events and the durable commit run on the blocking pool.
            let (store, ctx, merchants, mined) =
                (self.store.clone(), self.ctx.clone(), self.merchants.all(), sent.clone());
            let recorded_here = self.recorded_here.clone();
            tokio::task::spawn_blocking(move || {
                record_with_events(&store, &ctx, &merchants, &mined, now_ms(), Recorded::ByThisNode)?;
                recorded_here.insert(mined.round, mined.tx_hash);
                Ok::<_, crate::store::StoreError>(())
            })
            .await??;
            if attempt == 0 {
                let now = now_s();
                for p in self.store.payments_in_range(batch.from_block, batch.to_block)? {
                    metrics::histogram!("settlement_latency_seconds", "chain_id" => self.chain.chain_id().to_string())
                        .record(now.saturating_sub(p.block_timestamp) as f64);
                }
            }
            self.webhook_wake.notify_one();
            record = Some(sent);
            if self.confirmed(batch.round).await? {
                return Ok(record);
            }
            // The watcher removed the record: a reorg dropped the transaction. The same batch
            // with the same aggregate goes out again; receipts stay valid, since they check the
            // round's root on chain, not the transaction.
            metrics::counter!("keeper_resubmissions_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            self.sender.forget_nonce().await;
            warn!(round = batch.round, "settlement dropped by a reorg: submitting the same batch again");
        }
        Err(format!("round {}: settlement dropped {MAX_RESUBMISSIONS} times", batch.round).into())
    }

    /// Waits until the watcher either confirms this node's settlement of `round` at the
    /// confirmation depth (`true`) or removes it because its transaction left the chain
    /// (`false`). After [`CONFIRMATION_WATCH`] the watcher alone carries on.
    async fn confirmed(&self, round: u64) -> Result<bool, crate::store::StoreError> {
        let deadline = tokio::time::Instant::now() + CONFIRMATION_WATCH;
        while tokio::time::Instant::now() < deadline {
            match self.store.settlement(round)? {
                None => return Ok(false),
                Some(r) if !r.provisional => return Ok(true),
                Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        Ok(true)
    }
}

/// Submissions of one round's batch after reorgs dropped the earlier ones.
const MAX_RESUBMISSIONS: u32 = 5;
/// How long a keeper follows its settlement towards the confirmation depth.
const CONFIRMATION_WATCH: Duration = Duration::from_secs(600);

/// Whose settlement record [`record_with_events`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recorded {
    /// This node's own transaction: the record is written if it is not there yet.
    ByThisNode,
    /// One the store holds already (the watcher's): the events are queued only if the store
    /// still holds that very record, so a rewind that removed it meanwhile is not undone.
    Stored,
}

/// Records a settlement together with the webhook events of its payments (idempotent: events
/// already in the outbox are kept as they are).
pub(super) fn record_with_events(
    store: &Store,
    ctx: &ReceiptContext,
    merchants: &[MerchantConfig],
    record: &SettlementRecord,
    first_attempt_ms: u64,
    recorded: Recorded,
) -> Result<(), crate::store::StoreError> {
    let Some((from, to)) = ctx.schedule.range(record.round) else { return Ok(()) };
    // The reversals a rewind kept go out first: a merchant hears that a payment left the chain
    // before it hears of what the new fork settled.
    store.queue_reversals(|original, leaf| crate::webhook::payload::reverted_event(original, leaf, now_s()))?;
    let payments: Vec<_> = store.payments_in_range(from, to)?.into_iter().map(|r| r.leaf).collect();
    let events = settlement_events(store, ctx, merchants, &payments, record, now_s())?;
    metrics::counter!("webhook_settlements_rendered_total", "chain_id" => ctx.chain_id.to_string()).increment(1);
    match recorded {
        Recorded::ByThisNode => store.record_settlement(record, &events, first_attempt_ms),
        Recorded::Stored => store.queue_events_of_stored_settlement(record, &events, first_attempt_ms),
    }
}
