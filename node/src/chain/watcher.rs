//! The watcher: follows the chain up to the confirmation depth through the provider quorum,
//! stores each block range's payments, settlements and block hashes together with the new
//! checkpoint (one transaction), and wakes the round driver.
//!
//! Before each step that reads a block range, and before an idle one when the head or the
//! checkpoint moved or [`CHECKPOINT_RECHECK`] passed since the last idle check, it checks that
//! the checkpoint block still has the hash it was processed with (an idle poll of an unmoved
//! head reads the head only). If not, the chain reorganised deeper than the confirmation depth: the watcher finds the
//! newest kept block whose hash still matches (the common ancestor), rewinds the store to it
//! (payments that left the chain are dropped) and reads forward again, picking up what replaced
//! them. A restart resumes from the checkpoint, so no block is skipped or applied twice.
//!
//! Operator sets are known from `EpochCommitted` and the `OperatorsStaged` records it names,
//! read through the quorum like everything else, checked against the committed set hash, and
//! stored before the range's checkpoint moves: a restart never misses a set change.
//!
//! Settlements are known from the `Settled` event alone (it carries the bitmap and the
//! aggregate signature), whoever sent the transaction and through whatever wrapper. A log that
//! does not decode is counted, logged and skipped. A log that some providers show but no quorum
//! agrees on is dropped only when a quorum of providers answered without it (outvoted: forged,
//! or of another fork); otherwise (providers down, so the honest ones may be the minority) the
//! range is read again, and not attested, until that is settled. A settlement this node's keeper
//! recorded from its own receipt, or one the watcher read above the confirmation depth (so
//! that every node serves its receipts about when the keeper's node sends its webhooks), stays
//! provisional until the watcher confirms its event at the depth; when
//! the watcher passes its block without the event and the quorum shows the round unsettled, a
//! reorg dropped it: the record is removed and the round reopened, so the keeper submits the
//! same batch again.

use super::{ChainClient, ChainError};
use crate::epochs::Epochs;
use crate::store::{PaymentRecord, Store, StoreError, StoredBlock, webhook_id};
use crate::time::now_ms;
use alloy::primitives::{Bytes, U256};
use serde::Serialize;
use settleproof_config::ChainSection;
use settleproof_consensus::RoundSchedule;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

mod provisional;

/// Longest time between two checks of the checkpoint block's hash while steps are idle and the
/// head does not move (a reorg that keeps the height is found within it, or at the next poll
/// when polls are further apart, as they are while notifications announce the heads: then the
/// next block's range step checks it first).
pub const CHECKPOINT_RECHECK: Duration = Duration::from_secs(1);

/// Most blocks beyond the confirmation depth the checkpoint may lag for settlements to be read
/// ahead of the depth: a watcher that is catching up reads its ranges first.
pub const READ_AHEAD_BLOCKS: u64 = 64;

/// Whether the checkpoint block's hash is to be read again: `last` is (head, checkpoint, when)
/// of the last check that found it unchanged.
pub(super) fn checkpoint_check_due(
    last: Option<(u64, u64, std::time::Instant)>,
    head: u64,
    checkpoint: u64,
    now: std::time::Instant,
) -> bool {
    match last {
        Some((h, c, at)) => h != head || c != checkpoint || now.saturating_duration_since(at) >= CHECKPOINT_RECHECK,
        None => true,
    }
}

/// The least time the read of a notified head's block gets ([`Watcher::run`]).
const ON_TIME_READ: Duration = Duration::from_millis(500);

/// How far back (in kept blocks) the common ancestor of a reorg is searched.
const ANCESTOR_SEARCH: usize = 256;

/// Errors of one watcher step.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The range's last block changed its hash while the range was read: a reorg raced the
    /// reads, and the range is read again.
    #[error("block {block} changed from {before} to {after} while its range was read")]
    ChainMoved {
        /// The range's last block.
        block: u64,
        /// Its hash before the range's reads.
        before: alloy::primitives::B256,
        /// Its hash after them.
        after: alloy::primitives::B256,
    },
    /// The block read after the checkpoint names another parent while the checkpoint block
    /// kept its hash: a reorg raced the reads, and the step is made again.
    #[error("block {block} names parent {parent}, not the checkpoint {checkpoint}, which stands")]
    ParentMismatch {
        /// The block read.
        block: u64,
        /// The parent it names.
        parent: alloy::primitives::B256,
        /// The checkpoint block's hash.
        checkpoint: alloy::primitives::B256,
    },
    /// Chain reads failed or had no quorum.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some providers show logs that neither a quorum agrees on nor a quorum answered without;
    /// the range is read again.
    #[error("{logs} log(s) of blocks {from}..={to} shown without a provider quorum either way (try {attempt})")]
    Unagreed {
        /// First block of the range.
        from: u64,
        /// Last block.
        to: u64,
        /// Logs without quorum.
        logs: usize,
        /// Try.
        attempt: u32,
    },
}

/// What one watcher step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing new is confirmed yet.
    Idle,
    /// Blocks `from..=to` were processed and checkpointed.
    Advanced {
        /// First block.
        from: u64,
        /// Last block, the new checkpoint.
        to: u64,
        /// Payments not seen before.
        new_payments: usize,
    },
    /// A reorg below the confirmation depth: the store was rewound to `ancestor` (`None`: to
    /// before the start block).
    Rewound {
        /// The common ancestor, the new checkpoint.
        ancestor: Option<u64>,
        /// The payments that left the chain, each with whether the merchant had been told of
        /// it (its `payment.reverted` is then queued by the webhook worker).
        removed: Vec<(PaymentRecord, bool)>,
    },
}

impl Step {
    /// Whether the store changed.
    pub fn moved(&self) -> bool {
        !matches!(self, Self::Idle)
    }

    /// Whether another step has work at once, `confirmed` being the last confirmed block: a
    /// range that stopped short of it, or a rewind (what replaced the removed blocks is read
    /// next).
    pub fn continues(&self, confirmed: u64) -> bool {
        match self {
            Self::Idle => false,
            Self::Advanced { to, .. } => *to < confirmed,
            Self::Rewound { .. } => true,
        }
    }
}

/// What the watcher last saw, for health checks.
#[derive(Debug, Default)]
pub struct WatcherStatus {
    last_ok_ms: AtomicU64,
    head: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Snapshot of [`WatcherStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct WatcherReport {
    /// When the last step succeeded, unix ms (0: never).
    pub last_ok_ms: u64,
    /// Head the provider quorum agreed on last.
    pub head: u64,
    /// The last step's error, if it failed.
    pub last_error: Option<String>,
}

impl WatcherStatus {
    /// A snapshot.
    pub fn report(&self) -> WatcherReport {
        WatcherReport {
            last_ok_ms: self.last_ok_ms.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// The head the provider quorum agreed on last.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    fn ok(&self, head: u64) {
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.head.store(head, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    /// Records why the chain cannot be followed (also before the watcher runs: a chain
    /// unreachable at start).
    pub fn failed(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }
}

/// Follows the chain until shutdown.
#[derive(Debug)]
pub struct Watcher {
    client: ChainClient,
    store: Store,
    cfg: ChainSection,
    schedule: RoundSchedule,
    progress: Arc<Notify>,
    status: Arc<WatcherStatus>,
    epochs: Arc<Epochs>,
    unagreed: Mutex<(u64, u32)>,
    /// Notified at each new head a subscription reports ([`super::heads`]).
    heads: Arc<Notify>,
    /// (head, checkpoint, when) of the last check of an idle step that found the checkpoint
    /// block unchanged.
    checked: Mutex<Option<(u64, u64, std::time::Instant)>>,
    /// Unix ms, to judge whether a notified head came on time ([`super::pace::on_time`]).
    clock: fn() -> u64,
    /// The head up to which `Settled` events above the confirmation depth were last read
    /// ([`Watcher::settlements_ahead`]).
    read_ahead_to: AtomicU64,
}

impl Watcher {
    /// A watcher that notifies `progress` whenever the checkpoint moves, and adds the operator
    /// sets it reads to `epochs`.
    pub fn new(
        client: ChainClient,
        store: Store,
        cfg: ChainSection,
        schedule: RoundSchedule,
        progress: Arc<Notify>,
        status: Arc<WatcherStatus>,
        epochs: Arc<Epochs>,
    ) -> Self {
        Self {
            client,
            store,
            cfg,
            schedule,
            progress,
            status,
            epochs,
            unagreed: Mutex::new((0, 0)),
            heads: Arc::new(Notify::new()),
            checked: Mutex::new(None),
            clock: now_ms,
            read_ahead_to: AtomicU64::new(0),
        }
    }

    /// Judges notified heads by `clock` (unix ms) instead of the system's.
    #[cfg(test)]
    pub(crate) fn clocked_by(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// Steps at once (at most once per [`super::heads::MIN_STEP_GAP`]) when `heads` is
    /// notified, besides polling.
    pub fn woken_by(mut self, heads: Arc<Notify>) -> Self {
        self.heads = heads;
        self
    }

    /// The concatenated EIP-2537 keys of the signers in `bitmap` in `epoch`, ascending by index
    /// (empty when the epoch is not known: receipts then wait).
    fn signer_keys(&self, epoch: u64, bitmap: U256) -> Bytes {
        let Some(set) = self.epochs.get(epoch) else { return Bytes::new() };
        let keys: Vec<u8> = set
            .operators
            .iter()
            .enumerate()
            .filter(|(i, _)| bitmap.bit(*i))
            .flat_map(|(_, o)| o.bls.to_eip2537())
            .collect();
        Bytes::from(keys)
    }

    /// Reads, checks and stores the sets the range's `EpochCommitted` logs installed.
    async fn follow_epochs(&self, commits: &[super::EpochCommit]) -> Result<(), WatchError> {
        for commit in commits {
            let spec = self.client.staged_set(commit, self.cfg.start_block, self.cfg.max_log_range).await?;
            self.store.put_epoch(&spec)?;
            self.epochs.learn(&spec);
        }
        Ok(())
    }

    /// Whether the range starting at `from` may go on without the logs that lack a quorum.
    fn unagreed(&self, from: u64, to: u64, logs: usize) -> WatchError {
        let attempt = match self.unagreed.lock() {
            Ok(mut tries) => {
                if tries.0 != from {
                    *tries = (from, 0);
                }
                tries.1 += 1;
                tries.1
            }
            Err(_) => 0,
        };
        metrics::counter!("rpc_logs_unresolved_total", "chain_id" => self.cfg.chain_id.to_string())
            .increment(logs as u64);
        WatchError::Unagreed { from, to, logs, attempt }
    }

    /// Runs until `shutdown` turns true: steps every `poll_interval_ms`, at once after a step
    /// that moved, and when a new head is notified, not sooner than
    /// [`super::heads::MIN_STEP_GAP`] after the last step began. A notified step that finds no
    /// new head (a notifier that lies, or runs ahead of the providers) turns notifications off
    /// until the next poll: whatever a notifier sends costs at most one step more per poll.
    /// While notifications announce the heads, an idle watcher does not poll before the next
    /// head is due ([`super::pace`]).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        let mut failures: u32 = 0;
        let (mut listening, mut woken) = (true, false);
        let mut pace = super::pace::HeadPace::new(poll);
        loop {
            let began = tokio::time::Instant::now();
            // When the notification came (a head is judged by it, not by when its reads ended).
            let woke_ms = (self.clock)();
            let head_before = self.status.head();
            let mut deafen = woken;
            let wait = match self.step().await {
                Ok(step) => {
                    failures = 0;
                    // The round driver first: judging a notified head reads one more block.
                    if step.moved() {
                        self.progress.notify_one();
                    }
                    if self.settlements_ahead().await {
                        self.progress.notify_one();
                    }
                    let now = tokio::time::Instant::now().into_std();
                    let head = self.status.head();
                    if woken && head > head_before {
                        deafen = false;
                        let on_time = self.announced_on_time(head, poll, woke_ms).await;
                        pace.observe(head, now, on_time);
                    } else if woken {
                        deafen = !pace.fruitless_wake(now);
                    } else {
                        pace.observe(head, now, false);
                    }
                    // A range short of the confirmed head, or a rewind, is followed at once;
                    // a step that reached it looks again after at most a poll interval (the
                    // quorum's head may have lagged the notification that woke it), then waits
                    // for the next head like an idle one.
                    if step.continues(self.status.head().saturating_sub(self.cfg.confirmations)) {
                        Duration::ZERO
                    } else if step.moved() {
                        pace.idle_wait(now).min(poll)
                    } else {
                        pace.idle_wait(now)
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = poll.saturating_mul(1 << failures.min(4));
                    warn!(error = %e, attempt = failures, retry_in_ms = backoff.as_millis() as u64, "chain read failed; not attesting this range until it succeeds");
                    self.status.failed(e.to_string());
                    backoff
                }
            };
            if deafen && self.status.head() == head_before {
                listening = false;
            }
            woken = false;
            tokio::select! {
                _ = tokio::time::sleep(wait) => listening = true,
                _ = self.heads.notified(), if failures == 0 && listening && !wait.is_zero() => {
                    woken = true;
                    tokio::time::sleep_until(began + super::heads::MIN_STEP_GAP).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Whether the notification that brought `head`, at `woke_ms`, came on time: its block,
    /// read through the quorum, is stamped no earlier than [`super::pace::LATE_SLACK`] plus
    /// `poll` before it.
    /// The read gets at most a poll interval (at least [`ON_TIME_READ`]): a provider that stalls
    /// on the newest block must not hold the watcher, and a head not read in time is late.
    async fn announced_on_time(&self, head: u64, poll: Duration, woke_ms: u64) -> bool {
        let Ok(read) = tokio::time::timeout(poll.max(ON_TIME_READ), self.client.block(head)).await else {
            debug!(head, "a notified head's block took too long to read; polling at the interval");
            return false;
        };
        match read {
            Ok(block) => {
                let on_time = super::pace::on_time(woke_ms, block.timestamp, poll);
                if !on_time {
                    metrics::counter!("rpc_head_notifications_late_total", "chain_id" => self.cfg.chain_id.to_string())
                        .increment(1);
                }
                on_time
            }
            Err(e) => {
                debug!(head, error = %e, "cannot read a notified head's block; polling at the interval");
                false
            }
        }
    }

    /// Processes the next confirmed block range, or a reorg.
    pub async fn step(&self) -> Result<Step, WatchError> {
        let head = self.client.head().await?;
        let checkpoint = self.store.checkpoint()?;
        metrics::gauge!("chain_head_lag_blocks", "chain_id" => self.cfg.chain_id.to_string())
            .set(head.saturating_sub(checkpoint.unwrap_or(self.cfg.start_block)) as f64);
        let confirmed = head.saturating_sub(self.cfg.confirmations);
        let from = checkpoint.map_or(self.cfg.start_block, |c| c + 1);
        // A step that reads a range always checks first (a one-block step by its block's parent
        // hash, read with it); only an idle one may rely on a check made less than a second ago
        // at the same head and checkpoint.
        let idle = from > confirmed;
        let cp = self.store.checkpoint_block()?;
        let to = confirmed.min(from.saturating_add(self.cfg.max_log_range - 1));
        let one_block = !idle && from == to && cp.is_none_or(|cp| cp.number.saturating_add(1) == to);
        if let Some(cp) = cp.filter(|_| !one_block) {
            let last = self.checked.lock().ok().and_then(|c| *c);
            if !idle || checkpoint_check_due(last, head, cp.number, std::time::Instant::now()) {
                let now = self.client.block(cp.number).await?;
                if now.hash != cp.hash {
                    return self.rewound(cp, now, head).await;
                }
                self.set_checked(idle.then(|| (head, cp.number, std::time::Instant::now())));
            }
        }
        self.status.ok(head);
        if idle {
            return Ok(Step::Idle);
        }
        let (to_block, parent) = self.client.block_and_parent(to).await?;
        let mut checked_at = std::time::Instant::now();
        if let Some(cp) = cp.filter(|cp| one_block && cp.hash != parent) {
            let now = self.client.block(cp.number).await?;
            if now.hash != cp.hash {
                return self.rewound(cp, now, head).await;
            }
            // The checkpoint stands but the block read after it names another parent: a reorg
            // raced the two reads, and the step is made again.
            return Err(WatchError::ParentMismatch { block: to, parent, checkpoint: cp.hash });
        }
        let mut events = self.client.events_up_to(from, &to_block).await?;
        self.add_round_ends(from, to, &mut events.blocks).await?;
        if events.unagreed > 0 {
            return Err(self.unagreed(from, to, events.unagreed));
        }
        // The range's reads are one chain's only if its last block kept its hash throughout:
        // a reorg racing them would pair one chain's payments with another's round ends. The
        // logs of a one-block range were asked for by that block's hash.
        if !one_block {
            let after = self.client.block(to).await?;
            if after.hash != to_block.hash {
                return Err(WatchError::ChainMoved { block: to, before: to_block.hash, after: after.hash });
            }
            checked_at = std::time::Instant::now();
        }
        self.follow_epochs(&events.epochs).await?;
        for s in events.settlements.iter_mut() {
            s.signer_keys = self.signer_keys(s.epoch, s.signer_bitmap);
        }
        let applied = self.store.apply_range(to_block, &events.payments, &events.settlements, &events.blocks)?;
        // The new checkpoint's hash was read with the range's reads (twice around them, or
        // once, naming its logs): as good as a check made at the last of those reads.
        self.set_checked(Some((head, to, checked_at)));
        self.drop_vanished_settlements(to).await?;
        metrics::counter!("duplicate_events_dropped_total", "chain_id" => self.cfg.chain_id.to_string())
            .increment(applied.duplicates as u64);
        if applied.new_payments > 0 || !events.settlements.is_empty() {
            info!(
                from,
                to,
                head,
                payments = applied.new_payments,
                settlements = events.settlements.len(),
                "confirmed block range"
            );
        } else {
            debug!(from, to, head, "confirmed block range");
        }
        for p in &events.payments {
            crate::trace_context::mark("watch_range", &p.leaf, None);
            debug!(invoice_id = %p.leaf.invoice_id, tx_hash = %p.leaf.tx_hash, block = p.leaf.block_number, amount = %p.leaf.amount, "payment confirmed");
        }
        Ok(Step::Advanced { from, to, new_payments: applied.new_payments })
    }

    /// Reads (through the quorum) and adds to `blocks` the last block of every round ending in
    /// `from..=to` that is not among them: a round's batch names the hash of its last block,
    /// stored with the round's payments in one transaction.
    async fn add_round_ends(&self, from: u64, to: u64, blocks: &mut Vec<StoredBlock>) -> Result<(), WatchError> {
        let missing: Vec<u64> = self
            .schedule
            .round_ends(from, to)
            .into_iter()
            .filter(|n| *n != to && !blocks.iter().any(|b| b.number == *n))
            .collect();
        use futures::{StreamExt, TryStreamExt};
        let read: Vec<StoredBlock> = futures::stream::iter(missing.into_iter().map(|n| self.client.block(n)))
            .buffered(super::client::PARALLEL_BLOCK_READS)
            .try_collect()
            .await?;
        blocks.extend(read);
        Ok(())
    }

    /// The checkpoint block `cp` now has another hash (`now`): the store is rewound.
    async fn rewound(&self, cp: StoredBlock, now: StoredBlock, head: u64) -> Result<Step, WatchError> {
        self.set_checked(None);
        let step = self.rewind(cp, now).await?;
        self.status.ok(head);
        Ok(step)
    }

    fn set_checked(&self, checked: Option<(u64, u64, std::time::Instant)>) {
        if let Ok(mut c) = self.checked.lock() {
            *c = checked;
        }
    }

    async fn rewind(&self, cp: StoredBlock, now: StoredBlock) -> Result<Step, WatchError> {
        let mut ancestor = None;
        for kept in self.store.blocks_below(cp.number, ANCESTOR_SEARCH)? {
            if self.client.block(kept.number).await?.hash == kept.hash {
                ancestor = Some(kept.number);
                break;
            }
        }
        let reopen = ancestor.map_or(0, |a| self.schedule.round_of(a + 1).unwrap_or(0));
        // The payments that left the chain go, and those the merchant was told about are kept
        // as reversals to notify, in one transaction.
        let removed = self.store.rewind(ancestor, reopen)?;
        metrics::counter!("chain_reorgs_total", "chain_id" => self.cfg.chain_id.to_string()).increment(1);
        warn!(
            checkpoint = cp.number,
            stored_hash = %cp.hash,
            chain_hash = %now.hash,
            ancestor = ?ancestor,
            removed_payments = removed.len(),
            "reorg below the confirmation depth: rewound to the common ancestor"
        );
        for (p, reverted) in &removed {
            warn!(invoice_id = %p.leaf.invoice_id, tx_hash = %p.leaf.tx_hash, block = p.leaf.block_number, "payment left the chain");
            if *reverted {
                let told = webhook_id(p.leaf.invoice_id, p.leaf.tx_hash, p.leaf.log_index);
                warn!(webhook_id = %told, "merchant was told about this payment: payment.reverted to be sent");
            }
        }
        Ok(Step::Rewound { ancestor, removed })
    }
}
