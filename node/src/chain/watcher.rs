//! The watcher: follows the chain up to the confirmation depth, stores each block range's
//! payments and settlements together with the new checkpoint (one transaction), and wakes the
//! round driver. A restart resumes from the checkpoint, so no block is skipped or applied twice.

use super::ChainClient;
use crate::store::Store;
use settleproof_config::ChainSection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// Follows the chain until shutdown.
#[derive(Debug)]
pub struct Watcher {
    client: ChainClient,
    store: Store,
    cfg: ChainSection,
    progress: Arc<Notify>,
}

impl Watcher {
    /// A watcher that notifies `progress` whenever the checkpoint moves.
    pub fn new(
        client: ChainClient,
        store: Store,
        cfg: ChainSection,
        progress: Arc<Notify>,
    ) -> Self {
        Self {
            client,
            store,
            cfg,
            progress,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        let mut failures: u32 = 0;
        loop {
            let wait = match self.step().await {
                Ok(true) => {
                    failures = 0;
                    self.progress.notify_one();
                    Duration::ZERO
                }
                Ok(false) => {
                    failures = 0;
                    poll
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = poll.saturating_mul(1 << failures.min(5));
                    warn!(error = %e, attempt = failures, retry_in_ms = backoff.as_millis() as u64, "chain read failed");
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Processes the next confirmed block range, if any. Returns whether the checkpoint moved.
    pub async fn step(&self) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let head = self.client.head().await?;
        let confirmed = head.saturating_sub(self.cfg.confirmations);
        let checkpoint = self.store.checkpoint()?;
        metrics::gauge!("chain_head_lag_blocks")
            .set(head.saturating_sub(checkpoint.unwrap_or(self.cfg.start_block)) as f64);
        let from = checkpoint.map_or(self.cfg.start_block, |c| c + 1);
        if from > confirmed {
            return Ok(false);
        }
        let to = confirmed.min(from.saturating_add(self.cfg.max_log_range - 1));
        let events = self.client.events(from, to).await?;
        let applied = self
            .store
            .apply_range(to, &events.payments, &events.settlements)?;
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
            info!(invoice_id = %p.invoice_id, tx_hash = %p.tx_hash, block = p.block_number, amount = %p.amount, "payment confirmed");
        }
        Ok(true)
    }
}
