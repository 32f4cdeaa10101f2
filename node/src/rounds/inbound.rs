//! What peers send: attestations, heartbeats, acknowledgements and approvals on gossip (each
//! judged before it is forwarded; invoices in [`super::announced`]), catch-up requests and
//! their answers.

use super::{RoundDriver, State};
use crate::gossip::{self, Attestation, AttestationFate, GossipRejection, Heartbeat, SyncRequest, SyncResponse};
use crate::time::now_ms;
use settleproof_consensus::{BlsSignature, InsertOutcome};
use settleproof_p2p::{NetworkEvent, PeerId, RequestRef, Verdict};
use tracing::{debug, error, info, warn};

/// Acknowledgements a batch carries per budget token of its author. At 4, one operator can
/// make this node write at most 800 acknowledgements a second (the shared table of 200,000
/// then turns over in about 250 s, longer than the last failover turn that waits for honest
/// ones), while an honest node acknowledging 250 deliveries a second spends a third of its
/// budget.
const ACKS_PER_MESSAGE_TOKEN: usize = 4;
/// Pages of its own invoices this node answers per second to one operator catching up, and the
/// burst: a whole catch-up ([`super::invoice_catch_up::MAX_PAGES`]) at once, then one a second
/// (an asker goes on at most once a minute).
pub(super) const CATCH_UP_PAGES_PER_S: f64 = 1.0;

impl RoundDriver {
    pub(super) async fn on_network(&self, st: &mut State, ev: NetworkEvent) {
        match ev {
            NetworkEvent::Message { topic, source, data, reference } => {
                // Only operators' messages are heard at all; a budget per author (the operator
                // whose key signed it), not per forwarder; a replay of an old message (gossip
                // forgets ids after a while) is dropped before it costs its author budget.
                self.refresh_epochs(st);
                // An author this node does not hear (an operator of a set it has not read yet,
                // or none at all) is ignored, not rejected: whoever forwarded it may know more.
                if !self.epochs.hears(&source, st.next_round, self.grace_rounds) {
                    metrics::counter!("gossip_unknown_author_total", "chain_id" => self.chain.chain_id().to_string())
                        .increment(1);
                    self.net.report(reference, Verdict::Ignore).await;
                    return;
                }
                let author = source;
                metrics::counter!("gossip_messages_total", "chain_id" => self.chain.chain_id().to_string(), "topic" => topic.clone()).increment(1);
                let (stamp, now) = (gossip::Stamp::of(&data), now_ms());
                if !stamp.fresh(now) {
                    metrics::counter!("gossip_stale_total", "chain_id" => self.chain.chain_id().to_string(), "topic" => topic.clone()).increment(1);
                    self.net.report(reference, Verdict::Ignore).await;
                    return;
                }
                if st.budgets.take(&topic, &author.to_string(), std::time::Instant::now()).is_err() {
                    metrics::counter!("gossip_rate_limited_total", "chain_id" => self.chain.chain_id().to_string(), "topic" => topic.clone()).increment(1);
                    self.net.report(reference, Verdict::Ignore).await;
                    return;
                }
                // A fresh vote shows its author's round driver up, as a heartbeat does (which
                // also says whether it can pay): a node that just voted skips its heartbeat.
                // Nothing else counts: invoices and acknowledgements come from parts of a node
                // that run without its round driver.
                if topic == gossip::ATTESTATIONS && stamp.sent_at_ms.is_some() {
                    self.seen(st, &author, now);
                }
                // Merchants' records are judged on a task of their own (`merchants::inbox`).
                if let Some(kind) = crate::merchants::RecordKind::of(&topic) {
                    let home = self.merchants.home_chain() == self.chain.chain_id();
                    if !home || !self.merchants.offer(kind, &data, source, reference.clone()) {
                        self.net.report(reference, Verdict::Ignore).await;
                    }
                    return;
                }
                let verdict = match topic.as_str() {
                    gossip::ATTESTATIONS => self.on_attestation(st, &data, source).await,
                    gossip::INVOICES => self.on_invoice(st, &data, source).await,
                    gossip::INVOICE_BATCHES => self.on_invoices(st, &data, source).await,
                    gossip::HEARTBEATS => self.on_heartbeat(st, &data, source),
                    gossip::DELIVERIES => self.on_delivery_ack(&data, source),
                    gossip::DELIVERY_BATCHES => self.on_delivery_acks(st, &data, source),
                    crate::set_approval::TOPIC => self.on_set_approval(&data, source).await,
                    _ => Verdict::Ignore,
                };
                self.net.report(reference, verdict).await;
            }
            NetworkEvent::Request { peer, data, reference } => self.on_request(st, peer, &data, reference).await,
            NetworkEvent::PeerConnected(peer) => {
                metrics::gauge!("peers_connected").set(self.net.connected_peers() as f64);
                self.catch_up(st, Some(peer));
                if self.epochs.hears(&peer, st.next_round, self.grace_rounds) {
                    self.catch_up_merchants(peer);
                    st.catch_ups.connected(peer, crate::time::now_s());
                    self.catch_up_invoices(st);
                }
            }
            NetworkEvent::PeerDisconnected(peer) => {
                metrics::gauge!("peers_connected").set(self.net.connected_peers() as f64);
                // Operators only: the map holds one entry per operator at most.
                // From when it was last heard: a link that died silently is noticed only when
                // its connection times out.
                if self.epochs.hears(&peer, st.next_round, self.grace_rounds) {
                    let now = crate::time::now_s();
                    let heard = self.last_heard_s(st, &peer).unwrap_or(now);
                    st.catch_ups.disconnected(peer, heard, now);
                } else {
                    st.catch_ups.gone(&peer);
                }
            }
            NetworkEvent::Listening(_) => {}
        }
    }

    /// An attestation on gossip. `Reject` (which costs the forwarder score) only for what is
    /// invalid in itself: malformed, a publisher that is not the signer, a bad signature. What
    /// depends on this node's state (the round's window, a round settled here, an equivocation
    /// that only the first signature held here reveals) is `Ignore`d, so honest nodes that
    /// forwarded it keep their score; an equivocator is penalised directly, as the author.
    async fn on_attestation(&self, st: &mut State, data: &[u8], source: PeerId) -> Verdict {
        let fate = self.judge_attestation(st, data, source);
        if let AttestationFate::Invalid(e) = &fate {
            warn!(peer = %source, error = %e, "attestation rejected");
            metrics::counter!("attestations_rejected_total", "chain_id" => self.chain.chain_id().to_string(), "reason" => e.reason()).increment(1);
        }
        let (verdict, penalize) = fate.verdict();
        if penalize {
            self.net.penalize(source).await;
        }
        verdict
    }

    fn judge_attestation(&self, st: &mut State, data: &[u8], source: PeerId) -> AttestationFate {
        let att = match Attestation::decode(data, &source, &self.epochs) {
            Ok(att) => att,
            Err(e @ (GossipRejection::UnknownEpoch(_) | GossipRejection::WrongEpoch { .. })) => {
                metrics::counter!("attestations_ignored_total", "chain_id" => self.chain.chain_id().to_string(), "reason" => e.reason()).increment(1);
                return AttestationFate::OtherEpoch(e);
            }
            Err(e) => return AttestationFate::Invalid(e),
        };
        let round = att.batch.round;
        let too_old = round.saturating_add(super::ROUND_WINDOW) < st.next_round && !st.pending.contains(&round);
        if round > st.next_round.saturating_add(super::ROUND_WINDOW) || too_old {
            metrics::counter!("attestations_ignored_total", "chain_id" => self.chain.chain_id().to_string(), "reason" => "outside_window").increment(1);
            return AttestationFate::OutsideWindow;
        }
        if matches!(self.store.settlement(round), Ok(Some(_))) {
            return AttestationFate::Settled;
        }
        // Counted without a pairing: the gossip layer authenticated the publisher as the signer,
        // so a bad signature is its own doing, found when a quorum's aggregate is checked
        // (`keeper::try_settle`); such a vote is not forwarded. An operator caught forging has
        // its votes verified on arrival, one pairing per empty slot of the pool (a repeat or a
        // rival of the vote it holds there is judged without one).
        let suspect = st.suspects.contains(&(att.batch.epoch, att.signer));
        let checked = suspect && st.pool.vote(round, att.signer, att.batch.to_block_hash).is_none();
        let parsed = if checked {
            self.verify_once(st, &att)
        } else {
            BlsSignature::from_bytes(&att.signature).map_err(|e| GossipRejection::BadSignature(e.to_string()))
        };
        let sig = match parsed {
            Ok(sig) => sig,
            Err(e) => return AttestationFate::Invalid(e),
        };
        match (self.count(st, &att, sig), checked) {
            (false, _) => AttestationFate::Equivocation,
            (true, true) => AttestationFate::Counted,
            (true, false) => AttestationFate::CountedUnchecked,
        }
    }

    /// Verifies `att`'s signature with a pairing, unless the same signature was verified before.
    fn verify_once(&self, st: &mut State, att: &Attestation) -> Result<BlsSignature, GossipRejection> {
        let key = (att.signer, att.batch, att.signature.clone());
        if st.verified.contains(&key) {
            return BlsSignature::from_bytes(&att.signature).map_err(|e| GossipRejection::BadSignature(e.to_string()));
        }
        metrics::counter!("attestation_verifications_total", "chain_id" => self.chain.chain_id().to_string())
            .increment(1);
        let sig = att.verify(&self.epochs, self.chain.chain_id(), self.chain.settlement_address())?;
        if st.verified.len() >= super::MAX_VERIFIED {
            st.verified.clear();
        }
        st.verified.insert(key);
        Ok(sig)
    }

    /// Counts an attestation (its signature parsed, not necessarily verified); returns false
    /// when it proves its signer equivocated.
    fn count(&self, st: &mut State, att: &Attestation, sig: BlsSignature) -> bool {
        if matches!(self.store.settlement(att.batch.round), Ok(Some(_))) {
            return true;
        }
        // Of a round whose last block is processed here, only votes on this chain count (a
        // signer's votes on other chains would only take memory).
        if let Ok(crate::store::RoundEnd::Kept(hash)) = self.store.round_end(att.batch.to_block)
            && hash != att.batch.to_block_hash
        {
            debug!(round = att.batch.round, signer = att.signer, "attestation of another chain ignored");
            return true;
        }
        match st.pool.insert(att.batch, att.signer, sig) {
            InsertOutcome::Added => {
                debug!(round = att.batch.round, signer = att.signer, "attestation counted");
                self.try_settle(st, att.batch.round);
                true
            }
            InsertOutcome::Equivocation { first } => {
                warn!(round = att.batch.round, signer = att.signer, first = %first.root, second = %att.batch.root, "operator equivocated: signed two batches for one round");
                metrics::counter!("attestations_rejected_total", "chain_id" => self.chain.chain_id().to_string(), "reason" => "equivocation").increment(1);
                false
            }
            InsertOutcome::TooManyChains => {
                debug!(round = att.batch.round, signer = att.signer, "attestation on one chain too many ignored");
                true
            }
            InsertOutcome::Duplicate | InsertOutcome::UnknownSigner => true,
        }
    }

    fn on_heartbeat(&self, st: &mut State, data: &[u8], source: PeerId) -> Verdict {
        match Heartbeat::validate(data, &source, &self.epochs) {
            // The receive time, not the sender's clock, decides liveness.
            Ok(hb) => {
                self.heard(st, &source, hb.can_pay, now_ms());
                Verdict::Accept
            }
            Err(e) => {
                warn!(peer = %source, error = %e, "heartbeat refused");
                e.verdict()
            }
        }
    }

    /// An operator's claim that it delivered an event. It counts for the operator whose key
    /// signed the gossip message (not whoever forwarded it), and only together with the claims
    /// of enough others ([`crate::store::Store::acknowledge`]). The write happens off the loop.
    fn on_delivery_ack(&self, data: &[u8], source: PeerId) -> Verdict {
        match serde_json::from_slice::<gossip::DeliveryAck>(data) {
            Ok(ack) if ack.webhook_id.len() <= gossip::DeliveryAck::MAX_ID_LEN => self.record_acks(source, vec![ack]),
            _ => Verdict::Reject,
        }
    }

    /// Acknowledgements gathered by their operator into one message; every
    /// [`ACKS_PER_MESSAGE_TOKEN`] of them cost their author a token more, so batching bounds
    /// what one operator may make this node write.
    fn on_delivery_acks(&self, st: &mut State, data: &[u8], source: PeerId) -> Verdict {
        match gossip::DeliveryAcks::validate(data, now_ms()) {
            Ok(acks) => {
                let extra = (acks.len() / ACKS_PER_MESSAGE_TOKEN) as f64;
                if extra > 0.0
                    && st.budgets.take_records(&source.to_string(), std::time::Instant::now(), extra).is_err()
                {
                    metrics::counter!("gossip_rate_limited_total", "chain_id" => self.chain.chain_id().to_string(), "topic" => gossip::DELIVERY_BATCHES).increment(1);
                    return Verdict::Ignore;
                }
                self.record_acks(source, acks)
            }
            Err(e) => {
                warn!(peer = %source, error = %e, "delivery acknowledgements rejected");
                Verdict::Reject
            }
        }
    }

    /// Records `source`'s acknowledgements off the loop, in one store write.
    fn record_acks(&self, source: PeerId, acks: Vec<gossip::DeliveryAck>) -> Verdict {
        // An operator of a set this node has not read yet: not blamed on whoever forwarded it.
        if !self.epochs.knows_peer(&source) {
            return Verdict::Ignore;
        }
        if acks.is_empty() {
            return Verdict::Accept;
        }
        let operator = crate::epochs::peer_tag(&source);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let of: Vec<(&str, u64)> = acks.iter().map(|a| (a.webhook_id.as_str(), a.delivered_at_ms)).collect();
            match store.acknowledge_many(&of, operator, now_ms()) {
                Ok(0) => {}
                Ok(closed) => debug!(events = closed, operator, "webhooks delivered by other operators"),
                Err(e) => error!(acks = of.len(), error = %e, "cannot record acknowledgements"),
            }
        });
        Verdict::Accept
    }

    /// An operator's approval of a proposed set change: kept (off the loop) when it is its
    /// author's own, for the latest epoch, and verifies. A forged one is scored against its
    /// author; one for an epoch this node has not read (or no longer the latest) is ignored.
    async fn on_set_approval(&self, data: &[u8], source: PeerId) -> Verdict {
        use crate::set_approval::SetApproval;
        // A repeat of a kept approval costs no pairing; one past its author's bound is refused
        // before any (an honest node approves at most that many, its admin API refuses more).
        if let Ok(a) = serde_json::from_slice::<SetApproval>(data)
            && let Some(op) = self.epochs.get(a.epoch).and_then(|s| s.operators.get(a.signer).map(|o| o.peer_id))
            && op == source
        {
            let signer = a.signer as u32;
            if matches!(self.store.has_set_approval(a.epoch, a.set_hash, signer, &a.signature), Ok(true)) {
                return Verdict::Accept;
            }
            if matches!(self.store.set_approval_fits(a.epoch, a.set_hash, signer), Ok(false)) {
                warn!(peer = %source, epoch = a.epoch, "approvals of too many set changes from one operator; refused");
                metrics::counter!("set_approvals_rejected_total", "chain_id" => self.chain.chain_id().to_string(), "reason" => "too_many").increment(1);
                self.net.penalize(source).await;
                return Verdict::Ignore;
            }
        }
        let (chain_id, settlement) = (self.chain.chain_id(), self.chain.settlement_address());
        match SetApproval::validate(data, &source, &self.epochs, chain_id, settlement) {
            Ok(a) => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || {
                    match store.put_set_approval(a.epoch, a.set_hash, a.signer as u32, &a.signature) {
                        Ok(crate::store::ApprovalPut::New) => {
                            info!(epoch = a.epoch, set_hash = %a.set_hash, signer = a.signer, "operator set change approval heard")
                        }
                        Ok(crate::store::ApprovalPut::Limit) => {
                            debug!(
                                epoch = a.epoch,
                                signer = a.signer,
                                "approvals of too many set changes from one operator; dropped"
                            )
                        }
                        Ok(crate::store::ApprovalPut::Known) => {}
                        Err(e) => error!(error = %e, "cannot keep a set change approval"),
                    }
                });
                Verdict::Accept
            }
            Err(e @ GossipRejection::UnknownEpoch(_)) => {
                debug!(peer = %source, error = %e, "set change approval for another epoch ignored");
                Verdict::Ignore
            }
            Err(e) => {
                warn!(peer = %source, error = %e, "set change approval rejected");
                metrics::counter!("set_approvals_rejected_total", "chain_id" => self.chain.chain_id().to_string(), "reason" => e.reason()).increment(1);
                self.net.penalize(source).await;
                Verdict::Reject
            }
        }
    }

    /// Asks `peer` for the merchants' state and takes what checks out (first chain only): a node
    /// back from an outage longer than the rebroadcast windows catches up this way.
    fn catch_up_merchants(&self, peer: PeerId) {
        if self.merchants.home_chain() != self.chain.chain_id() {
            return;
        }
        let registry = self.merchants.clone();
        tokio::spawn(async move {
            registry.catch_up_from(peer, true).await;
        });
    }

    /// Starts the invoice catch-ups due: each connected operator that owes this node what it
    /// created while they were apart, at most one at a time and once a minute per operator
    /// (see [`super::invoice_catch_up`]). Runs at each connection and heartbeat tick.
    pub(super) fn catch_up_invoices(&self, st: &mut State) {
        let (round, grace) = (st.next_round, self.grace_rounds);
        let name = |peer: &PeerId| self.epochs.name_of_peer(peer).filter(|_| self.epochs.hears(peer, round, grace));
        for (due, author) in st.catch_ups.due(crate::time::now_s(), std::time::Instant::now(), name) {
            let asked = super::invoice_catch_up::Asked {
                net: self.net.clone(),
                store: self.store.clone(),
                scope: self.invoice_scope(),
                park: st.park_tx.clone(),
            };
            super::invoice_catch_up::spawn(&st.catch_ups, due, asked, author);
        }
    }

    /// When `peer` was last heard here (a heartbeat or a vote, in any of its sets), in seconds.
    fn last_heard_s(&self, st: &State, peer: &PeerId) -> Option<u64> {
        self.epochs
            .all()
            .iter()
            .filter_map(|set| st.liveness.get(&set.epoch)?.last_seen_ms(set.index_of_peer(peer)?))
            .max()
            .map(|ms| ms / 1000)
    }

    async fn on_request(&self, st: &State, peer: PeerId, data: &str, reference: RequestRef) {
        // The swarm admits the operators of every chain this node serves; only this chain's
        // (those it hears gossip from) are answered.
        if !self.epochs.hears(&peer, st.next_round, self.grace_rounds) {
            debug!(%peer, "sync request from a peer that is no operator of this chain: answered empty");
            self.net.respond(reference, String::new()).await;
            return;
        }
        let answer = match serde_json::from_str::<SyncRequest>(data) {
            Ok(SyncRequest { created_since: Some(page), .. }) => {
                return self.answer_catch_up(st, peer, page, reference).await;
            }
            Ok(req) => {
                // Per round, the votes on the chain this node signed the round on, if it did.
                let attestations = req
                    .rounds
                    .iter()
                    .take(SyncRequest::MAX_ROUNDS)
                    .flat_map(|r| {
                        let mine = self.store.signed_batch(*r).ok().flatten().map(|s| s.batch.to_block_hash);
                        st.pool.votes(*r).into_iter().filter(move |(_, b, _)| mine.is_none_or(|h| h == b.to_block_hash))
                    })
                    .map(|(signer, batch, sig)| Attestation {
                        batch,
                        signer,
                        signature: alloy::primitives::Bytes::from(sig.to_bytes().to_vec()),
                        sent_at_ms: now_ms(),
                    })
                    .collect();
                let invoices: Vec<crate::store::Invoice> = req
                    .invoices
                    .iter()
                    .take(SyncRequest::MAX_INVOICES)
                    .filter_map(|id| self.store.invoice(*id).ok().flatten())
                    .collect();
                let received = invoices
                    .iter()
                    .filter_map(|inv| Some((inv.id, self.store.invoice_received_s(inv).ok().flatten()?)))
                    .collect();
                if req.merchants && self.merchants.home_chain() == self.chain.chain_id() {
                    // Built and sent off the round loop, at most once per peer and interval.
                    let (registry, net) = (self.merchants.clone(), self.net.clone());
                    tokio::spawn(async move {
                        let (from, paged) = (req.merchants_from, req.merchants_paged);
                        let snapshot =
                            tokio::task::spawn_blocking(move || registry.snapshot_for(&peer, from.as_ref(), paged))
                                .await
                                .ok()
                                .flatten();
                        let resp = SyncResponse {
                            attestations,
                            invoices,
                            received,
                            merchants: snapshot,
                            ..Default::default()
                        };
                        net.respond(reference, serde_json::to_string(&resp).unwrap_or_default()).await;
                    });
                    return;
                }
                serde_json::to_string(&SyncResponse { attestations, invoices, received, ..Default::default() })
                    .unwrap_or_default()
            }
            Err(e) => {
                warn!(%peer, error = %e, "malformed sync request");
                String::new()
            }
        };
        self.net.respond(reference, answer).await;
    }

    /// A page of the invoices this node created since a time, for an operator catching up
    /// ([`super::invoice_catch_up`]), read off the loop. Each operator may ask
    /// [`CATCH_UP_PAGES_PER_S`] pages a second (in bursts of a whole catch-up); past that it is
    /// answered empty.
    async fn answer_catch_up(&self, st: &State, peer: PeerId, page: gossip::CreatedSince, reference: RequestRef) {
        // One answer in flight per operator (an honest one asks a page at a time).
        let Some(answering) = Answering::start(&st.catch_up_answering, peer) else {
            metrics::counter!("invoice_catch_up_limited_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            self.net.respond(reference, String::new()).await;
            return;
        };
        if st.catch_up_limiter.take(&peer.to_string(), std::time::Instant::now()).is_err() {
            metrics::counter!("invoice_catch_up_limited_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            debug!(%peer, "invoice catch-up page refused: the operator asked too often");
            self.net.respond(reference, String::new()).await;
            return;
        }
        let (store, net) = (self.store.clone(), self.net.clone());
        // Only what carries this node's name in the set: the asker refuses a whole page that
        // holds another's (a file restored under another name holds such invoices).
        let me = self.epochs.name_of_peer(&self.net.local_peer_id());
        // And only what this chain's contract pays now: one created for a contract the
        // configuration has since replaced would not commit to its terms at the asker.
        let (chain_id, payments) = (self.chain.chain_id(), self.chain.payments_address());
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                store.created_since(
                    page.since_s,
                    page.after,
                    SyncRequest::MAX_INVOICES,
                    super::invoice_catch_up::ANSWER_BYTES,
                )
            })
            .await;
            let answer = match read {
                Ok(Ok((mut invoices, created_next))) => {
                    invoices.retain(|inv| {
                        me.as_deref() == Some(inv.created_by.as_str()) && inv.id_matches(chain_id, payments)
                    });
                    serde_json::to_string(&SyncResponse { invoices, created_next, ..Default::default() })
                        .unwrap_or_default()
                }
                Ok(Err(e)) => {
                    error!(error = %e, "cannot read this node's invoices for an operator catching up");
                    String::new()
                }
                Err(e) => {
                    error!(error = %e, "reading this node's invoices for an operator catching up stopped");
                    String::new()
                }
            };
            net.respond(reference, answer).await;
            drop(answering);
        });
    }

    /// Counts attestations a peer relayed in a sync response, already verified against their
    /// signers' keys off the loop (and limited to the rounds asked for).
    pub(super) fn on_synced(&self, st: &mut State, attestations: Vec<(Attestation, BlsSignature)>) {
        for (att, sig) in attestations {
            self.count(st, &att, sig);
        }
    }
}

/// An answer to an operator's catch-up under way; the operator is free to ask again once it is
/// dropped.
struct Answering {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PeerId>>>,
    peer: PeerId,
}

impl Answering {
    /// `None` when an answer to `peer` is under way already.
    fn start(set: &std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PeerId>>>, peer: PeerId) -> Option<Self> {
        let mut answering = set.lock().ok()?;
        answering.insert(peer).then(|| Self { set: set.clone(), peer })
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Ok(mut answering) = self.set.lock() {
            answering.remove(&self.peer);
        }
    }
}
