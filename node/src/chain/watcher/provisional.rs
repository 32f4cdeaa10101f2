//! Provisional settlements: those read above the confirmation depth (so every node serves a
//! round's receipts about when the keeper's node sends its webhook), and the dropping of any
//! provisional record, this node's keeper's or one read ahead, whose event the watcher did not
//! find at the depth.

use super::{ON_TIME_READ, READ_AHEAD_BLOCKS, WatchError, Watcher};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{debug, warn};

impl Watcher {
    /// Settlements in blocks above the confirmation depth, read once per head when the
    /// checkpoint lags it by at most the depth and [`READ_AHEAD_BLOCKS`], kept as provisional
    /// records: every node then serves a round's receipts as soon as the keeper's node (which
    /// records its own at once) sends the webhook, not a confirmation depth later. Their events
    /// wait for the depth, as before. The watcher confirms or
    /// drops each at the depth ([`Self::drop_vanished_settlements`]). Whether a new one was
    /// kept; a failed read is retried at the next head and fails nothing.
    pub(super) async fn settlements_ahead(&self) -> bool {
        let head = self.status.head();
        let Ok(checkpoint) = self.store.checkpoint() else { return false };
        let from = checkpoint.map_or(self.cfg.start_block, |c| c + 1);
        if from > head || head.saturating_sub(from) > self.cfg.confirmations.saturating_add(READ_AHEAD_BLOCKS) {
            return false;
        }
        if self.read_ahead_to.swap(head, Ordering::Relaxed) == head {
            return false;
        }
        // Bounded like a notified head's read: a provider that stalls on the newest blocks
        // must not hold the watcher.
        let poll = Duration::from_millis(self.cfg.poll_interval_ms).max(ON_TIME_READ);
        let read = tokio::time::timeout(poll, self.client.settlements_ahead(from, head)).await;
        let mut records = match read {
            Ok(Ok(r)) => r,
            failed => {
                let error = failed
                    .map_or_else(|_| "timed out".to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
                debug!(from, head, %error, "settlements above the confirmation depth not read; next head");
                self.read_ahead_to.store(0, Ordering::Relaxed);
                return false;
            }
        };
        for r in records.iter_mut() {
            r.signer_keys = self.signer_keys(r.epoch, r.signer_bitmap);
        }
        match self.store.put_provisional_settlements(&records) {
            Ok(new) => {
                if new > 0 {
                    metrics::counter!("settlements_seen_ahead_total", "chain_id" => self.cfg.chain_id.to_string())
                        .increment(new as u64);
                    debug!(new, from, head, "settlements seen above the confirmation depth");
                }
                new > 0
            }
            Err(e) => {
                warn!(error = %e, "cannot keep settlements seen above the confirmation depth");
                false
            }
        }
    }

    /// Provisional settlements (this node's keeper's, or seen above the depth) in blocks up to
    /// `to` whose `Settled` event the watcher did not see at the depth: when the quorum shows the round unsettled, a reorg dropped the
    /// transaction, so the record goes and the round is reopened for the keeper to submit again.
    /// A round still settled on chain (its transaction landed in a later block) waits for the
    /// watcher to reach that block.
    pub(super) async fn drop_vanished_settlements(&self, to: u64) -> Result<(), WatchError> {
        for record in self.store.provisional_settlements()? {
            if record.block_number > to {
                continue;
            }
            let root = self.client.settled_root(record.round).await?;
            if !root.is_zero() {
                debug!(round = record.round, tx_hash = %record.tx_hash, "settlement moved to a later block");
                continue;
            }
            let reopen = self.store.drop_provisional_settlement(record.round)?;
            let counter = if record.seen_ahead {
                "settlements_seen_ahead_dropped_total"
            } else {
                "settlements_dropped_by_reorg_total"
            };
            metrics::counter!(counter, "chain_id" => self.cfg.chain_id.to_string()).increment(1);
            warn!(
                round = record.round,
                tx_hash = %record.tx_hash,
                block = record.block_number,
                reopened = reopen,
                "settlement transaction left the chain: record removed, the round will be submitted again"
            );
        }
        Ok(())
    }
}
