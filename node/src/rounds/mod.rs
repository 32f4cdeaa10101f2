//! The round driver: the node's event loop around the pure consensus types.
//!
//! Events in: the watcher moved the checkpoint; an attestation, invoice, heartbeat or catch-up
//! request arrived; a timer fired; a settlement task finished. Actions out: sign a closed
//! round's batch through the persisted guard and gossip it ([`signing`]); judge what peers send
//! and answer their catch-up requests ([`inbound`]); when it is this node's keeper turn and a
//! quorum signed its batch, aggregate and submit the settlement ([`keeper`]).

mod announced;
mod budgets;
mod inbound;
mod invoice_catch_up;
pub(crate) mod invoice_fetch;
mod keeper;
mod parked;
mod signing;

use crate::chain::ChainClient;
use crate::epochs::Epochs;
use crate::gossip::{self, Heartbeat, SyncRequest};
use crate::operators::OperatorSet;
use crate::store::{RoundEnd, SettlementRecord, Store, StoreError};
use crate::time::now_ms;
use settleproof_consensus::{AttestationPool, BlsSecretKey, BlsSignature, Liveness, RoundSchedule, failover};
use settleproof_p2p::{NetworkEvent, NetworkHandle, PeerId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, error, info};

/// Timers of the driver.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Re-broadcast period of unsettled attestations.
    pub rebroadcast: Duration,
    /// Each keeper's turn, from the round's quorum.
    pub keeper_deadline_ms: u64,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Silence after which an operator is down.
    pub heartbeat_timeout_ms: u64,
    /// Balance needed to submit settlements, wei.
    pub min_balance_wei: u128,
    /// Delay per position after the submitter before this node delivers a settlement's events.
    pub delivery_failover_ms: u64,
}

/// Everything the driver needs.
#[derive(Debug)]
pub struct RoundDriver {
    /// Store.
    pub store: Store,
    /// The operator set of every known epoch, and this node's place in each.
    pub epochs: Arc<Epochs>,
    /// This node's BLS keys (`bls.key` and, during a rotation, `bls.next.key`): each epoch's
    /// rounds are signed with the one that epoch registered. Read again from `keys_dir` when an
    /// epoch registers a key not loaded yet (a rotation while the node runs).
    pub bls_keys: std::sync::RwLock<Vec<BlsSecretKey>>,
    /// Where the keys are.
    pub keys_dir: std::path::PathBuf,
    /// Rounds a superseded set may still settle after its successor starts: its operators stay
    /// connected that long.
    pub grace_rounds: u64,
    /// Rounds.
    pub schedule: RoundSchedule,
    /// Chain reads.
    pub chain: ChainClient,
    /// The keeper's settlement transactions.
    pub sender: crate::chain::SettlementSender,
    /// Gossip.
    pub net: NetworkHandle,
    /// Merchants, for webhook events.
    pub merchants: crate::merchants::Registry,
    /// Wakes the webhook worker.
    pub webhook_wake: Arc<Notify>,
    /// Timers.
    pub timing: Timing,
    /// The safety switch: while pulled, nothing is signed or submitted.
    pub halt: crate::halt::Halt,
}

/// Mutable state of the loop.
struct State {
    pool: AttestationPool,
    /// Rounds this node signed that are not settled yet.
    pending: BTreeSet<u64>,
    /// Rounds with a settlement task running.
    in_flight: HashSet<u64>,
    /// When this node first saw a quorum for its batch of a round, ms.
    quorum_at: HashMap<u64, u64>,
    /// When this node last published its attestation of a pending round: the rebroadcast
    /// skips one published less than three quarters of an interval ago (a round settles in a
    /// few blocks; only a round still pending after that may need its votes heard again).
    published_at: HashMap<u64, std::time::Instant>,
    /// Heartbeats, per epoch (each set has its own indices).
    liveness: BTreeMap<u64, Liveness>,
    can_pay: Arc<AtomicBool>,
    done_tx: mpsc::Sender<(u64, bool)>,
    /// Shutdown, for the tasks the loop spawns (a settlement in flight stops with the node).
    shutdown: watch::Receiver<bool>,
    sync_tx: mpsc::Sender<Vec<(gossip::Attestation, BlsSignature)>>,
    /// Attestations whose signature verified: (signer, batch, signature). A repeat costs no
    /// pairing. Cleared per round when the round settles.
    verified: HashSet<(usize, settleproof_consensus::Batch, alloy::primitives::Bytes)>,
    /// Operators (epoch, index) of whom a forged signature was found in a quorum: their votes
    /// are verified one by one on arrival from then on (the others' are counted without a
    /// pairing and checked as one aggregate when a quorum is used).
    suspects: HashSet<(u64, usize)>,
    /// Gossip messages each operator may have handled per second, in bursts: consensus and
    /// records apart ([`budgets`]).
    budgets: budgets::AuthorBudgets,
    /// Pages of this node's invoices each operator catching up may ask for.
    catch_up_limiter: crate::api::RateLimiter,
    /// Operators whose catch-up page is being answered (one at a time each).
    catch_up_answering: Arc<std::sync::Mutex<std::collections::HashSet<settleproof_p2p::PeerId>>>,
    /// Since when each operator has been away, and when it was last asked what it created
    /// meanwhile ([`invoice_catch_up`]).
    catch_ups: invoice_catch_up::Tracker,
    /// Where catch-ups send invoices whose merchant the registry does not hold yet.
    park_tx: invoice_catch_up::Park,
    /// First round not yet closed here, for the window of rounds gossip may name.
    next_round: u64,
    /// This node's last heartbeat on gossip: when, and whether it said it can pay.
    last_heartbeat: Option<(std::time::Instant, bool)>,
    /// Settlements (round, transaction) this node's keeper recorded with their events: they
    /// are not rendered again when the round is dropped as settled.
    recorded_here: keeper::RecordedHere,
    /// Invoices announced for a merchant this node's registry does not hold yet.
    parked: parked::ParkedInvoices,
    /// The registry's merchants when they were last looked up for `parked`.
    parked_against: Option<Arc<Vec<settleproof_config::MerchantConfig>>>,
}

/// Rounds ahead of the first open one that gossip may name; farther ones are dropped unread.
pub(crate) const ROUND_WINDOW: u64 = 256;
/// Most verified attestations remembered (an equivocator can sign without end): past it the
/// cache starts again.
pub(crate) const MAX_VERIFIED: usize = 65_536;

impl RoundDriver {
    /// Runs until `shutdown` turns true.
    pub async fn run(
        self,
        progress: Arc<Notify>,
        mut events: mpsc::Receiver<NetworkEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel(64);
        let (sync_tx, mut sync_rx) = mpsc::channel(64);
        let (park_tx, mut park_rx) = mpsc::channel(64);
        let can_pay = Arc::new(AtomicBool::new(true));
        tokio::spawn(watch_balance(self.chain.clone(), self.timing.min_balance_wei, can_pay.clone(), shutdown.clone()));
        let mut st = State {
            pool: AttestationPool::empty(),
            pending: BTreeSet::new(),
            in_flight: HashSet::new(),
            quorum_at: HashMap::new(),
            published_at: HashMap::new(),
            liveness: BTreeMap::new(),
            can_pay,
            done_tx,
            shutdown: shutdown.clone(),
            sync_tx,
            verified: HashSet::new(),
            suspects: HashSet::new(),
            budgets: budgets::AuthorBudgets::default(),
            catch_up_limiter: crate::api::RateLimiter::new(
                inbound::CATCH_UP_PAGES_PER_S,
                invoice_catch_up::MAX_PAGES as f64,
            ),
            catch_up_answering: Arc::default(),
            catch_ups: invoice_catch_up::Tracker::new(
                self.store.checkpoint_block().ok().flatten().map(|b| b.timestamp),
            ),
            park_tx,
            next_round: self.store.next_round().unwrap_or(0),
            last_heartbeat: None,
            recorded_here: keeper::RecordedHere::default(),
            parked: parked::ParkedInvoices::default(),
            parked_against: None,
        };
        self.refresh_epochs(&mut st);
        if let Err(e) = self.restore(&mut st) {
            error!(error = %e, "cannot restore round state");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut rebroadcast = tokio::time::interval(self.timing.rebroadcast);
        let mut heartbeat = tokio::time::interval(self.timing.heartbeat);
        let mut catch_up = tokio::time::interval(Duration::from_secs(5));
        loop {
            self.refresh_epochs(&mut st);
            tokio::select! {
                _ = progress.notified() => self.advance(&mut st).await,
                ev = events.recv() => match ev {
                    Some(ev) => self.on_network(&mut st, ev).await,
                    None => return,
                },
                _ = tick.tick() => self.advance(&mut st).await,
                _ = rebroadcast.tick() => self.rebroadcast(&mut st).await,
                _ = heartbeat.tick() => {
                    self.heartbeat(&mut st).await;
                    self.judge_parked(&mut st);
                    self.catch_up_invoices(&mut st);
                }
                _ = catch_up.tick() => self.catch_up(&st, None),
                Some(atts) = sync_rx.recv() => self.on_synced(&mut st, atts),
                Some((peer, invoices)) = park_rx.recv() => self.park(&mut st, peer, invoices),
                Some((round, ok)) = done_rx.recv() => {
                    st.in_flight.remove(&round);
                    if !ok {
                        metrics::counter!("consensus_round_retries_total", "chain_id" => self.chain.chain_id().to_string()).increment(1);
                    }
                    self.drop_settled(&mut st).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Whether `batch` was built on the chain the watcher follows: the hash of its last block
    /// is the kept one, or that block is older than any reorg the watcher rewinds. `false` while
    /// the block is not processed again after a rewind, and for a batch without the hash
    /// (signed by an earlier version, over another message).
    fn on_current_chain(&self, batch: &settleproof_consensus::Batch) -> bool {
        !batch.to_block_hash.is_zero()
            && match self.store.round_end(batch.to_block) {
                Ok(RoundEnd::Kept(hash)) => hash == batch.to_block_hash,
                Ok(RoundEnd::Pruned) => true,
                Ok(RoundEnd::NotReached) | Err(_) => false,
            }
    }

    fn restore(&self, st: &mut State) -> Result<(), StoreError> {
        for round in self.store.unsettled_signed_rounds()? {
            if let Some(signed) = self.store.signed_batch(round)?
                // A batch of a chain a reorg replaced is not waited for (the round is built
                // again when the watcher reaches it), nor one of an earlier version.
                && !signed.batch.to_block_hash.is_zero()
                && !matches!(self.store.round_end(signed.batch.to_block)?, RoundEnd::Kept(h) if h != signed.batch.to_block_hash)
                && let Ok(sig) = BlsSignature::from_bytes(&signed.signature)
                && let Some(me) = self.epochs.get(signed.batch.epoch).and_then(|s| s.me)
            {
                st.pool.insert(signed.batch, me, sig);
                st.pending.insert(round);
            }
        }
        Ok(())
    }

    /// Teaches the pool and the liveness tracker every known epoch (the watcher adds them).
    fn refresh_epochs(&self, st: &mut State) {
        for set in self.epochs.all() {
            st.pool.add_epoch(set.epoch, set.len(), set.threshold);
            let fresh = st.liveness.get(&set.epoch).is_none_or(|l| l.len() != set.len());
            if fresh {
                st.liveness.insert(set.epoch, Liveness::new(set.len(), self.timing.heartbeat_timeout_ms));
            }
        }
    }

    /// The key this node signs `set`'s rounds with: the one the set registered for it. A key
    /// not loaded yet is looked for in the keys directory once more (`bls.next.key` written by
    /// `settleproof keys rotate-bls` after the node started).
    fn signing_key(&self, set: &OperatorSet) -> Option<BlsSecretKey> {
        let want = set.mine()?.bls;
        let find = |keys: &[BlsSecretKey]| keys.iter().find(|k| k.public_key() == want).cloned();
        // The lock only guards a Vec that is replaced whole, so a poisoned lock is still valid.
        if let Some(k) = find(&self.bls_keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)) {
            return Some(k);
        }
        let loaded = crate::keys::OperatorKeys::load(&self.keys_dir).ok()?;
        let keys: Vec<BlsSecretKey> = loaded.bls_keys().cloned().collect();
        let found = find(&keys);
        if found.is_some() {
            info!(epoch = set.epoch, "loaded the BLS key this epoch registered from the keys directory");
        }
        *self.bls_keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        found
    }

    /// A heartbeat of `peer` at `now`, for every epoch it belongs to.
    fn heard(&self, st: &mut State, peer: &PeerId, can_pay: bool, now: u64) {
        for set in self.epochs.all() {
            if let (Some(i), Some(l)) = (set.index_of_peer(peer), st.liveness.get_mut(&set.epoch)) {
                l.heartbeat(i, can_pay, now);
            }
        }
    }

    async fn advance(&self, st: &mut State) {
        // The watcher may have learned a set since the loop last looked: the pool must know
        // it before this node signs the set's first rounds.
        self.refresh_epochs(st);
        if let Err(e) = self.close_rounds(st).await {
            error!(error = %e, "cannot close rounds");
        }
        self.drop_settled(st).await;
        // Votes of rounds long closed that this node neither signed nor waits for (no
        // payments here, or gossip about rounds that never had any) are forgotten.
        let (pending, floor) = (&st.pending, st.next_round.saturating_sub(ROUND_WINDOW));
        st.pool.retain_rounds(|r| r >= floor || pending.contains(&r));
        let rounds: Vec<u64> = st.pending.iter().copied().collect();
        for round in rounds {
            self.try_settle(st, round);
        }
    }

    async fn drop_settled(&self, st: &mut State) {
        // A settlement read above the confirmation depth serves receipts at once, but its events
        // wait for the depth: a shallow reorg may still drop it, and an event once queued names
        // its transaction.
        let settled: Vec<(u64, SettlementRecord)> = st
            .pending
            .iter()
            .filter_map(|r| self.store.settlement(*r).ok().flatten().map(|s| (*r, s)))
            .filter(|(_, s)| !s.seen_ahead)
            .collect();
        for (round, record) in settled {
            // Its keeper here recorded this very settlement with its events: rendering them
            // again would queue nothing.
            if st.recorded_here.take(round, record.tx_hash) {
                self.forget_round(st, round);
                continue;
            }
            // Every node enqueues the settlement's webhook events: the submitter at once (also
            // after a crash between its transaction and its store write), the others one
            // failover delay per position after it, unless its acknowledgement arrives first.
            let first_attempt =
                now_ms().saturating_add(self.delivery_rank(&record).saturating_mul(self.timing.delivery_failover_ms));
            // Rendering a round's events and the durable commit run off the runtime's thread:
            // the swarm and the other pipelines go on meanwhile (this loop waits for it).
            let (store, ctx, merchants) = (self.store.clone(), self.receipt_context(), self.merchants.all());
            let recorded = tokio::task::spawn_blocking(move || {
                keeper::record_with_events(&store, &ctx, &merchants, &record, first_attempt, keeper::Recorded::Stored)
            })
            .await;
            match recorded {
                Ok(Ok(())) => self.webhook_wake.notify_one(),
                Ok(Err(e)) => error!(round, error = %e, "cannot enqueue the webhooks of a settlement"),
                Err(e) => error!(round, error = %e, "enqueueing the webhooks of a settlement stopped"),
            }
            self.forget_round(st, round);
        }
    }

    /// Drops what the loop kept of a settled round.
    fn forget_round(&self, st: &mut State, round: u64) {
        st.recorded_here.forget_through(round);
        st.pending.remove(&round);
        st.quorum_at.remove(&round);
        st.published_at.remove(&round);
        st.pool.remove_round(round);
        st.verified.retain(|(_, b, _)| b.round != round);
        debug!(round, "round settled");
    }

    /// This node's position after the settlement's submitter among the round's operators
    /// (0: it submitted; last when it is not one of them).
    fn delivery_rank(&self, record: &SettlementRecord) -> u64 {
        let Some(set) = self.epochs.get(record.epoch).or_else(|| self.epochs.for_round(record.round)) else {
            return 0;
        };
        let n = set.len().max(1);
        let Some(me) = set.me else { return n as u64 };
        let submitter = set
            .operators
            .iter()
            .position(|o| o.evm == record.submitter)
            .unwrap_or_else(|| settleproof_consensus::keeper_index(record.round, 0, n));
        ((me + n - submitter) % n) as u64
    }

    /// What invoices from other operators are checked against.
    fn invoice_scope(&self) -> gossip::InvoiceScope {
        gossip::InvoiceScope {
            merchants: self.merchants.clone(),
            chain_id: self.chain.chain_id(),
            payments: self.chain.payments_address(),
        }
    }

    fn receipt_context(&self) -> crate::receipt::ReceiptContext {
        crate::receipt::ReceiptContext {
            chain_id: self.chain.chain_id(),
            payments: self.chain.payments_address(),
            settlement: self.chain.settlement_address(),
            schedule: self.schedule,
            halt: Some(self.halt.clone()),
        }
    }

    /// Sends a heartbeat unless this node's votes already show it up
    /// ([`settleproof_consensus::failover::heartbeat_due`]).
    async fn heartbeat(&self, st: &mut State) {
        let can_pay = st.can_pay.load(Ordering::Relaxed);
        let now = now_ms();
        self.heard(st, &self.epochs.me(), can_pay, now);
        let clock = std::time::Instant::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let since_vote = st.published_at.values().max().map(|at| ms(clock.duration_since(*at)));
        let last = st.last_heartbeat.map(|(at, said)| (ms(clock.duration_since(at)), said));
        if !failover::heartbeat_due(
            since_vote,
            last,
            can_pay,
            ms(self.timing.heartbeat),
            self.timing.heartbeat_timeout_ms,
        ) {
            return;
        }
        let operator = self.epochs.latest().and_then(|s| s.me).unwrap_or_default();
        let hb = Heartbeat { operator, can_pay, sent_at_ms: now };
        if self.net.publish(gossip::HEARTBEATS, serde_json::to_vec(&hb).unwrap_or_default()).await.is_ok() {
            st.last_heartbeat = Some((clock, can_pay));
        }
    }

    /// A vote of `peer` heard at `now`: it is up, for every epoch it belongs to.
    fn seen(&self, st: &mut State, peer: &PeerId, now: u64) {
        for set in self.epochs.all() {
            if let (Some(i), Some(l)) = (set.index_of_peer(peer), st.liveness.get_mut(&set.epoch)) {
                l.seen(i, now);
            }
        }
    }

    /// Whom invoices are asked of, and who may vouch for one ([`invoice_fetch::Holders`]).
    fn holders(&self) -> invoice_fetch::Holders {
        invoice_fetch::Holders::at(&self.epochs, self.store.next_round().unwrap_or(0), self.grace_rounds)
    }

    /// The other operators' peer ids, of every set that still matters.
    fn other_peers(&self) -> Vec<PeerId> {
        let round = self.store.next_round().unwrap_or(0);
        self.epochs.peers(round, self.grace_rounds).into_iter().map(|(p, _)| p).collect()
    }

    /// Asks `peer` (or one operator, in turn) for the attestations of unsettled rounds that have
    /// no quorum yet.
    fn catch_up(&self, st: &State, peer: Option<PeerId>) {
        let rounds: Vec<u64> = st
            .pending
            .iter()
            .copied()
            .filter(|r| !st.quorum_at.contains_key(r))
            .take(SyncRequest::MAX_ROUNDS)
            .collect();
        let others = self.other_peers();
        if rounds.is_empty() || others.is_empty() {
            return;
        }
        let peer = peer.unwrap_or_else(|| others[(now_ms() / 5000) as usize % others.len()]);
        let net = self.net.clone();
        let tx = st.sync_tx.clone();
        let request =
            serde_json::to_string(&SyncRequest { rounds: rounds.clone(), ..Default::default() }).unwrap_or_default();
        let (epochs, chain_id, settlement) =
            (self.epochs.clone(), self.chain.chain_id(), self.chain.settlement_address());
        // Every round asked for is one this node signed: only votes on the chain it signed the
        // round on are worth a pairing.
        let chains: HashMap<u64, alloy::primitives::B256> = rounds
            .iter()
            .filter_map(|r| self.store.signed_batch(*r).ok().flatten().map(|s| (*r, s.batch.to_block_hash)))
            .collect();
        tokio::spawn(async move {
            let resp = match net.request(peer, request).await {
                Ok(answer) => match serde_json::from_str::<gossip::SyncResponse>(&answer) {
                    Ok(resp) => resp,
                    Err(e) => return debug!(%peer, error = %e, "malformed sync response"),
                },
                Err(e) => return debug!(%peer, error = %e, "sync request failed"),
            };
            // Only the rounds asked for, on this node's chain, one vote per signer and round;
            // the pairings off the round loop. A peer answering with more gets no more work done.
            let mut seen = HashSet::new();
            let wanted: Vec<gossip::Attestation> = resp
                .attestations
                .into_iter()
                .filter(|a| {
                    chains.get(&a.batch.round) == Some(&a.batch.to_block_hash) && seen.insert((a.batch.round, a.signer))
                })
                .collect();
            let verified = tokio::task::spawn_blocking(move || {
                wanted
                    .into_iter()
                    .filter_map(|a| match a.verify(&epochs, chain_id, settlement) {
                        Ok(sig) => Some((a, sig)),
                        Err(e) => {
                            metrics::counter!("attestations_rejected_total", "chain_id" => chain_id.to_string(), "reason" => e.reason()).increment(1);
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let _ = tx.send(verified).await;
        });
    }
}

/// Keeps `can_pay` up to date with this node's settlement account balance.
async fn watch_balance(
    chain: ChainClient,
    min_wei: u128,
    can_pay: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Ok(balance) = chain.balance().await {
            let enough = balance >= alloy::primitives::U256::from(min_wei);
            if can_pay.swap(enough, Ordering::Relaxed) != enough {
                if enough {
                    info!(%balance, "settlement account funded again: taking keeper turns");
                } else {
                    tracing::warn!(%balance, min_wei, "settlement account below the minimum: handing keeper turns over");
                }
            }
        }
    }
}
