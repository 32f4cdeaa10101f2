//! The round driver: the node's event loop around the pure consensus types.
//!
//! Events in: the watcher moved the checkpoint, an attestation or invoice arrived, the
//! rebroadcast timer fired, a settlement task finished. Actions out: sign a closed round's
//! batch (through the persisted guard), gossip it, and, when this node is the round's keeper
//! and a quorum signed its batch, aggregate and submit the settlement.

use crate::chain::{ChainClient, SettleCall};
use crate::gossip::{self, Attestation, InvoiceAnnouncement};
use crate::operators::OperatorSet;
use crate::store::{SettlementRecord, SigningOutcome, Store, StoreError};
use crate::time::{now_ms, now_s};
use crate::webhook::payload::settlement_events;
use alloy::primitives::Bytes;
use settleproof_config::MerchantConfig;
use settleproof_consensus::{
    AttestationPool, Batch, BlsSecretKey, BlsSignature, InsertOutcome, RoundSchedule, keeper_index,
};
use settleproof_p2p::{NetworkEvent, NetworkHandle};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, error, info, warn};

/// Everything the driver needs.
#[derive(Debug)]
pub struct RoundDriver {
    /// Store.
    pub store: Store,
    /// Operator set and this node's index.
    pub set: Arc<OperatorSet>,
    /// This node's BLS key.
    pub bls: BlsSecretKey,
    /// Rounds.
    pub schedule: RoundSchedule,
    /// Chain access.
    pub chain: ChainClient,
    /// Gossip.
    pub net: NetworkHandle,
    /// Merchants, for webhook events.
    pub merchants: Arc<Vec<MerchantConfig>>,
    /// Wakes the webhook worker.
    pub webhook_wake: Arc<Notify>,
    /// Rebroadcast period of unsettled attestations.
    pub rebroadcast: Duration,
}

struct State {
    pool: AttestationPool,
    pending: BTreeSet<u64>,
    in_flight: HashSet<u64>,
    done_tx: mpsc::Sender<(u64, bool)>,
}

impl RoundDriver {
    /// Runs until `shutdown` turns true.
    pub async fn run(
        self,
        progress: Arc<Notify>,
        mut events: mpsc::Receiver<NetworkEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel(64);
        let mut st = State {
            pool: AttestationPool::new(self.set.len(), self.set.threshold),
            pending: BTreeSet::new(),
            in_flight: HashSet::new(),
            done_tx,
        };
        if let Err(e) = self.restore(&mut st) {
            error!(error = %e, "cannot restore round state");
        }
        let mut tick = tokio::time::interval(self.rebroadcast);
        loop {
            tokio::select! {
                _ = progress.notified() => self.advance(&mut st).await,
                ev = events.recv() => match ev {
                    Some(ev) => self.on_network(&mut st, ev).await,
                    None => return,
                },
                _ = tick.tick() => {
                    self.advance(&mut st).await;
                    self.rebroadcast(&st).await;
                }
                Some((round, ok)) = done_rx.recv() => {
                    st.in_flight.remove(&round);
                    if !ok {
                        metrics::counter!("consensus_round_retries").increment(1);
                    }
                    self.drop_settled(&mut st);
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    fn restore(&self, st: &mut State) -> Result<(), StoreError> {
        for round in self.store.unsettled_signed_rounds()? {
            if let Some(signed) = self.store.signed_batch(round)?
                && let Ok(sig) = BlsSignature::from_bytes(&signed.signature)
            {
                st.pool.insert(signed.batch, self.set.me, sig);
                st.pending.insert(round);
            }
        }
        Ok(())
    }

    async fn advance(&self, st: &mut State) {
        if let Err(e) = self.close_rounds(st).await {
            error!(error = %e, "cannot close rounds");
        }
        self.drop_settled(st);
        let rounds: Vec<u64> = st.pending.iter().copied().collect();
        for round in rounds {
            self.try_settle(st, round);
        }
    }

    async fn close_rounds(&self, st: &mut State) -> Result<(), StoreError> {
        let checkpoint = self.store.checkpoint()?;
        let first = self.store.next_round()?;
        let mut round = first;
        while self.schedule.is_closed(round, checkpoint) {
            let Some((from, to)) = self.schedule.range(round) else {
                break;
            };
            let records = self.store.payments_in_range(from, to)?;
            let mut leaves: Vec<_> = records.iter().map(|r| r.leaf.clone()).collect();
            if let Some(batch) = Batch::build(round, from, to, &mut leaves)
                && self.store.settlement(round)?.is_none()
                && self.sign_and_publish(st, batch).await?
            {
                let (now, now_ms) = (now_s(), now_ms());
                for r in &records {
                    metrics::histogram!("invoice_verification_latency_seconds")
                        .record(now.saturating_sub(r.block_timestamp) as f64);
                    metrics::histogram!("confirmation_to_attestation_seconds")
                        .record(now_ms.saturating_sub(r.confirmed_at_ms) as f64 / 1000.0);
                }
            }
            round += 1;
        }
        if round != first {
            self.store.set_next_round(round)?;
        }
        Ok(())
    }

    /// Signs (through the guard) and gossips `batch`; returns whether a new signature was made.
    async fn sign_and_publish(&self, st: &mut State, batch: Batch) -> Result<bool, StoreError> {
        let message = batch.message(self.chain.chain_id(), self.chain.settlement_address());
        let outcome = self.store.record_signature(batch, |_| {
            Bytes::from(self.bls.sign(message.as_slice()).to_bytes().to_vec())
        });
        let (signed, new) = match outcome {
            Ok(SigningOutcome::Recorded(s)) => {
                info!(round = batch.round, root = %batch.root, leaves = batch.leaf_count, "signed batch");
                (s, true)
            }
            Ok(SigningOutcome::Existing(s)) => (s, false),
            Err(StoreError::Equivocation { round, signed }) => {
                error!(round, signed = %signed, proposed = %batch.root, "refused to sign a second batch for a round");
                metrics::counter!("invariant_violations_total", "invariant" => "double_sign_attempt").increment(1);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if let Ok(sig) = BlsSignature::from_bytes(&signed.signature) {
            st.pool.insert(batch, self.set.me, sig);
        }
        st.pending.insert(batch.round);
        self.publish(batch, signed.signature).await;
        self.try_settle(st, batch.round);
        Ok(new)
    }

    async fn publish(&self, batch: Batch, signature: Bytes) {
        let att = Attestation {
            batch,
            signer: self.set.me,
            signature,
            sent_at_ms: now_ms(),
        };
        let data = serde_json::to_vec(&att).unwrap_or_default();
        if let Err(e) = self.net.publish(gossip::ATTESTATIONS, data).await {
            debug!(round = batch.round, error = %e, "attestation not published yet; will rebroadcast");
        }
    }

    async fn rebroadcast(&self, st: &State) {
        for round in &st.pending {
            if let Ok(Some(signed)) = self.store.signed_batch(*round) {
                self.publish(signed.batch, signed.signature).await;
            }
        }
    }

    fn drop_settled(&self, st: &mut State) {
        let settled: Vec<u64> = st
            .pending
            .iter()
            .copied()
            .filter(|r| matches!(self.store.settlement(*r), Ok(Some(_))))
            .collect();
        for round in settled {
            st.pending.remove(&round);
            st.pool.remove_round(round);
            debug!(round, "round settled");
        }
    }

    async fn on_network(&self, st: &mut State, ev: NetworkEvent) {
        let NetworkEvent::Message {
            topic,
            source,
            data,
        } = ev
        else {
            return;
        };
        if topic == gossip::ATTESTATIONS {
            match Attestation::validate(
                &data,
                &source,
                &self.set,
                self.chain.chain_id(),
                self.chain.settlement_address(),
            ) {
                Ok((att, sig)) => match st.pool.insert(att.batch, att.signer, sig) {
                    InsertOutcome::Added => {
                        debug!(
                            round = att.batch.round,
                            signer = att.signer,
                            "attestation counted"
                        );
                        self.try_settle(st, att.batch.round);
                    }
                    InsertOutcome::Equivocation { first } => {
                        warn!(round = att.batch.round, signer = att.signer, first = %first.root, second = %att.batch.root, "operator equivocated");
                        metrics::counter!("attestations_rejected_total", "reason" => "equivocation").increment(1);
                    }
                    InsertOutcome::Duplicate | InsertOutcome::UnknownSigner => {}
                },
                Err(e) => {
                    warn!(peer = %source, error = %e, "attestation rejected");
                    metrics::counter!("attestations_rejected_total", "reason" => "invalid")
                        .increment(1);
                }
            }
        } else if topic == gossip::INVOICES {
            match InvoiceAnnouncement::validate(&data, &self.merchants) {
                Ok(inv) => {
                    if let Err(e) = self.store.put_invoice(&inv) {
                        error!(invoice_id = %inv.id, error = %e, "cannot store replicated invoice");
                    }
                }
                Err(e) => warn!(peer = %source, error = %e, "invoice announcement rejected"),
            }
        }
    }

    fn try_settle(&self, st: &mut State, round: u64) {
        if keeper_index(round, 0, self.set.len()) != self.set.me
            || st.in_flight.contains(&round)
            || !st.pending.contains(&round)
        {
            return;
        }
        let Ok(Some(own)) = self.store.signed_batch(round) else {
            return;
        };
        let Some(quorum) = st.pool.quorum(&own.batch) else {
            return;
        };
        let message = own
            .batch
            .message(self.chain.chain_id(), self.chain.settlement_address());
        let keys: Vec<_> = quorum
            .signers
            .iter()
            .map(|i| self.set.operators[*i].bls)
            .collect();
        let aggregate = match BlsSignature::aggregate(&quorum.signatures).and_then(|agg| {
            agg.verify_aggregate(&keys, message.as_slice())?;
            Ok(agg)
        }) {
            Ok(a) => a,
            Err(e) => {
                error!(round, error = %e, "aggregate signature does not verify");
                return;
            }
        };
        metrics::counter!("keeper_selection_rounds_total").increment(1);
        st.in_flight.insert(round);
        let task = SettleTask {
            chain: self.chain.clone(),
            store: self.store.clone(),
            schedule: self.schedule,
            merchants: self.merchants.clone(),
            webhook_wake: self.webhook_wake.clone(),
        };
        let done = st.done_tx.clone();
        let call = SettleCall {
            batch: own.batch,
            signer_bitmap: quorum.signer_bitmap,
            signer_keys: Bytes::from(
                keys.iter()
                    .flat_map(|k| k.to_eip2537())
                    .collect::<Vec<u8>>(),
            ),
            signature: Bytes::from(aggregate.to_eip2537().to_vec()),
        };
        tokio::spawn(async move {
            let ok = match task.submit(call).await {
                Ok(Some(record)) => {
                    info!(round, tx_hash = %record.tx_hash, block = record.block_number, "round settled");
                    true
                }
                Ok(None) => true,
                Err(e) => {
                    warn!(round, error = %e, "settlement failed; will retry");
                    false
                }
            };
            let _ = done.send((round, ok)).await;
        });
    }
}

struct SettleTask {
    chain: ChainClient,
    store: Store,
    schedule: RoundSchedule,
    merchants: Arc<Vec<MerchantConfig>>,
    webhook_wake: Arc<Notify>,
}

impl SettleTask {
    /// Submits the settlement unless the round is settled on chain already; records it and its
    /// webhook events atomically.
    async fn submit(
        &self,
        call: SettleCall,
    ) -> Result<Option<SettlementRecord>, Box<dyn std::error::Error + Send + Sync>> {
        let batch = call.batch;
        if !self.chain.settled_root(batch.round).await?.is_zero() {
            info!(round = batch.round, "round already settled on chain");
            return Ok(None);
        }
        info!(round = batch.round, root = %batch.root, signers = call.signer_bitmap.count_ones(), "submitting settlement");
        let record = self.chain.settle(&call).await?;
        let payments: Vec<_> = self
            .store
            .payments_in_range(batch.from_block, batch.to_block)?
            .into_iter()
            .map(|r| r.leaf)
            .collect();
        let events = settlement_events(
            &self.store,
            &self.schedule,
            &self.merchants,
            &payments,
            &record,
            now_s(),
        )?;
        self.store.record_settlement(&record, &events, now_ms())?;
        self.webhook_wake.notify_one();
        Ok(Some(record))
    }
}
