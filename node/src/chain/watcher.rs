//! The watcher: follows the chain up to the confirmation depth through the provider quorum,
//! stores each block range's payments, settlements and block hashes together with the new
//! checkpoint (one transaction), and wakes the round driver.
//!
//! Before each step it checks that the checkpoint block still has the hash it was processed
//! with. If not, the chain reorganised deeper than the confirmation depth: the watcher finds the
//! newest kept block whose hash still matches (the common ancestor), rewinds the store to it
//! (payments that left the chain are dropped) and reads forward again, picking up what replaced
//! them. A restart resumes from the checkpoint, so no block is skipped or applied twice.

use super::{ChainClient, ChainError};
use crate::store::{Store, StoreError, StoredBlock};
use crate::time::{now_ms, now_s};
use crate::webhook::payload::{reverted_event, webhook_id};
use serde::Serialize;
use settleproof_config::ChainSection;
use settleproof_consensus::RoundSchedule;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// How far back (in kept blocks) the common ancestor of a reorg is searched.
const ANCESTOR_SEARCH: usize = 256;

/// Errors of one watcher step.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Chain reads failed or had no quorum.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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

    fn ok(&self, head: u64) {
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.head.store(head, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    fn failed(&self, error: String) {
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
}

impl Watcher {
    /// A watcher that notifies `progress` whenever the checkpoint moves.
    pub fn new(
        client: ChainClient,
        store: Store,
        cfg: ChainSection,
        schedule: RoundSchedule,
        progress: Arc<Notify>,
        status: Arc<WatcherStatus>,
    ) -> Self {
        Self { client, store, cfg, schedule, progress, status }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        let mut failures: u32 = 0;
        loop {
            let wait = match self.step().await {
                Ok(moved) => {
                    failures = 0;
                    if moved {
                        self.progress.notify_one();
                        Duration::ZERO
                    } else {
                        poll
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
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Processes the next confirmed block range, or a reorg. Returns whether the store changed.
    pub async fn step(&self) -> Result<bool, WatchError> {
        let head = self.client.head().await?;
        let checkpoint = self.store.checkpoint()?;
        metrics::gauge!("chain_head_lag_blocks")
            .set(head.saturating_sub(checkpoint.unwrap_or(self.cfg.start_block)) as f64);
        if let Some(cp) = self.store.checkpoint_block()? {
            let now = self.client.block(cp.number).await?;
            if now.hash != cp.hash {
                self.rewind(cp, now).await?;
                self.status.ok(head);
                return Ok(true);
            }
        }
        self.status.ok(head);
        let confirmed = head.saturating_sub(self.cfg.confirmations);
        let from = checkpoint.map_or(self.cfg.start_block, |c| c + 1);
        if from > confirmed {
            return Ok(false);
        }
        let to = confirmed.min(from.saturating_add(self.cfg.max_log_range - 1));
        let to_block = self.client.block(to).await?;
        let mut events = self.client.events(from, to).await?;
        for s in events.settlements.iter_mut() {
            (s.signer_keys, s.signature) = self.client.settlement_signing(s.tx_hash).await?;
        }
        let applied = self.store.apply_range(to_block, &events.payments, &events.settlements, &events.blocks)?;
        metrics::counter!("duplicate_events_dropped_total").increment(applied.duplicates as u64);
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
            info!(invoice_id = %p.leaf.invoice_id, tx_hash = %p.leaf.tx_hash, block = p.leaf.block_number, amount = %p.leaf.amount, "payment confirmed");
        }
        Ok(true)
    }

    async fn rewind(&self, cp: StoredBlock, now: StoredBlock) -> Result<(), WatchError> {
        let mut ancestor = None;
        for kept in self.store.blocks_below(cp.number, ANCESTOR_SEARCH)? {
            if self.client.block(kept.number).await?.hash == kept.hash {
                ancestor = Some(kept.number);
                break;
            }
        }
        let reopen = ancestor.map_or(0, |a| self.schedule.round_of(a + 1).unwrap_or(0));
        let removed = self.store.rewind(ancestor, reopen)?;
        metrics::counter!("chain_reorgs_total").increment(1);
        warn!(
            checkpoint = cp.number,
            stored_hash = %cp.hash,
            chain_hash = %now.hash,
            ancestor = ?ancestor,
            removed_payments = removed.len(),
            "reorg below the confirmation depth: rewound to the common ancestor"
        );
        for p in &removed {
            warn!(invoice_id = %p.leaf.invoice_id, tx_hash = %p.leaf.tx_hash, block = p.leaf.block_number, "payment left the chain");
            let told = webhook_id(p.leaf.invoice_id, p.leaf.tx_hash, p.leaf.log_index);
            if let Some(original) = self.store.outbox_event(&told)? {
                self.store.enqueue_events(&[reverted_event(&original, &p.leaf, now_s())], now_ms())?;
                warn!(webhook_id = %told, "merchant was told about this payment: payment.reverted queued");
            }
        }
        Ok(())
    }
}
