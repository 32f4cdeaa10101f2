//! Waiting for a sent transaction to be mined: the writer is asked for the receipt once at
//! once, then each time the node's new-head subscription announces a block ([`super::heads`]),
//! and at the chain's poll interval besides. Where an endpoint offers a subscription, the
//! keeper learns that its settlement is mined within milliseconds of the block; where
//! providers offer only HTTP, within one poll interval, as the watcher does.
//!
//! Hand-written rather than alloy's `PendingTransactionBuilder::get_receipt`, which watches for
//! blocks on a grid of its own (every 250 ms on loopback, 7 s elsewhere) anchored at the send:
//! that wait was the largest part of the time between a settlement's block and the merchant's
//! webhook. Reads are at least [`super::heads::MIN_STEP_GAP`] apart however often heads are
//! announced, so a flooding endpoint costs at most that rate. A read that fails is tried again
//! at the next head or poll: one failed read says
//! nothing about the transaction, only the deadline decides that it was not mined. A lying
//! writer gains nothing here: the sender still reads the settled root through the quorum
//! before it believes a receipt.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

/// When to look again for a receipt.
#[derive(Debug, Clone)]
pub struct ReceiptWatch {
    /// Changes at each announced head; `None`: no subscription, poll only.
    announced: Option<watch::Receiver<u64>>,
    /// The longest pause between two reads.
    poll: Duration,
}

impl ReceiptWatch {
    /// Reads every `poll`, and at each head `announced` reports, if any.
    pub fn new(announced: Option<watch::Receiver<u64>>, poll: Duration) -> Self {
        Self { announced, poll: poll.max(Duration::from_millis(10)) }
    }

    /// The same watch, woken by `announced` too.
    pub fn with_heads(mut self, announced: watch::Receiver<u64>) -> Self {
        self.announced = Some(announced);
        self
    }

    /// Calls `read` until it answers `Some` or `timeout` has passed (then `None`).
    pub async fn wait<T, E, F, Fut>(&self, timeout: Duration, mut read: F) -> Option<T>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let deadline = Instant::now() + timeout;
        let mut heads = self.announced.clone();
        if let Some(h) = heads.as_mut() {
            // Only heads announced from now on count.
            h.borrow_and_update();
        }
        loop {
            let read_at = Instant::now();
            match read().await {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err(e) => debug!(error = %crate::redact::scrub(&e.to_string()), "receipt read failed; reading again at the next head"),
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let next = (read_at + self.poll).min(deadline);
            match heads.as_mut() {
                Some(h) => {
                    tokio::select! {
                        changed = h.changed() => {
                            if changed.is_err() {
                                // No subscription is left: poll only.
                                heads = None;
                                tokio::time::sleep_until(next).await;
                            } else {
                                let gap = read_at + super::heads::MIN_STEP_GAP;
                                tokio::time::sleep_until(gap.min(deadline)).await;
                            }
                        }
                        _ = tokio::time::sleep_until(next) => {}
                    }
                }
                None => tokio::time::sleep_until(next).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A read that finds the receipt from its `found_at`-th call on, counting calls.
    fn reader(found_at: u32) -> (Arc<AtomicU32>, impl FnMut() -> std::future::Ready<Result<Option<u32>, String>>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let read = move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(Ok((n >= found_at).then_some(n)))
        };
        (calls, read)
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_head_reads_the_receipt_at_once_not_at_the_next_poll() {
        let (tx, rx) = watch::channel(0u64);
        let watch = ReceiptWatch::new(Some(rx), Duration::from_secs(5));
        let (calls, read) = reader(2);
        let began = Instant::now();
        let announce = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            tx.send_modify(|n| *n += 1);
            tx
        });
        assert_eq!(watch.wait(Duration::from_secs(60), read).await, Some(2));
        assert_eq!(began.elapsed(), Duration::from_millis(400), "read when the head came, not after the 5 s poll");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        drop(announce.await);
    }

    #[tokio::test(start_paused = true)]
    async fn without_heads_it_reads_every_poll_interval() {
        let watch = ReceiptWatch::new(None, Duration::from_millis(250));
        let (calls, read) = reader(4);
        let began = Instant::now();
        assert_eq!(watch.wait(Duration::from_secs(60), read).await, Some(4));
        assert_eq!(began.elapsed(), Duration::from_millis(750));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_that_ended_falls_back_to_polling_without_spinning() {
        let (tx, rx) = watch::channel(0u64);
        drop(tx);
        let watch = ReceiptWatch::new(Some(rx), Duration::from_millis(250));
        let (calls, read) = reader(3);
        let began = Instant::now();
        assert_eq!(watch.wait(Duration::from_secs(60), read).await, Some(3));
        assert_eq!(began.elapsed(), Duration::from_millis(500));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_reads_are_retried_and_the_deadline_ends_the_wait() {
        let watch = ReceiptWatch::new(None, Duration::from_millis(300));
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let read = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<Option<u32>, _>("connection refused"))
        };
        let began = Instant::now();
        assert_eq!(watch.wait(Duration::from_secs(1), read).await, None);
        assert_eq!(began.elapsed(), Duration::from_secs(1), "the deadline, not a poll past it");
        // At 0, 300, 600, 900 and the deadline.
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_heads_costs_at_most_one_read_per_minimum_gap() {
        let (tx, rx) = watch::channel(0u64);
        let watch = ReceiptWatch::new(Some(rx), Duration::from_secs(5));
        let (calls, read) = reader(u32::MAX);
        let flood = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                for _ in 0..50 {
                    tx.send_modify(|n| *n += 1);
                }
            }
            tx
        });
        assert_eq!(watch.wait(Duration::from_millis(1000), read).await, None);
        let gap = super::super::heads::MIN_STEP_GAP.as_millis() as u32;
        let reads = calls.load(Ordering::SeqCst);
        // One read per gap, the first and the one at the deadline: not 5,000.
        assert!(reads <= 1000 / gap + 2, "{reads} reads in 1 s of flooding");
        assert!(reads >= 1000 / gap, "heads went unheard: {reads} reads");
        drop(flood.await);
    }
}
