//! Waiting for a sent transaction to be mined: the writer is asked for the receipt at once,
//! then each time the node's new-head subscription announces a block ([`super::heads`]),
//! and at the chain's poll interval besides. Where an endpoint offers a subscription, the
//! keeper learns that its settlement is mined within milliseconds of the block; where
//! providers offer only HTTP, within one poll interval, as the watcher does.
//!
//! Hand-written rather than alloy's `PendingTransactionBuilder::get_receipt`, which watches for
//! blocks on a grid of its own (every 250 ms on a loopback client, every 7 s on a remote one)
//! anchored at the send: that wait was the largest part of the time between a settlement's
//! block and the merchant's webhook.
//!
//! What an endpoint or the writer can cost:
//! - A read an announced head triggers comes at least [`super::heads::MIN_STEP_GAP`] after the
//!   last read began, and one that finds nothing turns announcements off until the next read
//!   the poll interval brings (as the watcher does): an endpoint that announces without end
//!   costs at most one read more per poll interval.
//! - One read may take [`READ_LIMIT`], and one still running at the deadline up to a poll
//!   interval from its start; then it counts as failed, so a writer that stalls cannot hold an
//!   attempt past its inclusion timeout.
//! - A read that fails is tried again at the next head or poll (one failed read says nothing
//!   about the transaction); the failures and the last error are reported with the outcome.
//!
//! A receipt is the writer's word: the sender checks that it names a sent hash and a block,
//! and reads the settled root through the quorum before it believes one.

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

    /// Calls `read` until it answers `Some` or `timeout` has passed. One read may take up to
    /// [`READ_LIMIT`], and one running at the deadline up to a poll interval from its start;
    /// then it counts as failed.
    pub async fn wait<T, E, F, Fut>(&self, timeout: Duration, mut read: F) -> Waited<T>
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
        let mut waited = Waited { found: None, failed_reads: 0, last_error: None };
        // Whether an announced head triggers a read: not after one that found nothing, until
        // the next read the poll interval brings (as the watcher turns deaf), so an endpoint
        // that announces without end costs at most one read more per poll interval.
        let mut listening = true;
        let mut woken_by_head = false;
        loop {
            let read_at = Instant::now();
            let limit = (read_at + READ_LIMIT).min(deadline).max(read_at + self.poll);
            match tokio::time::timeout_at(limit, read()).await {
                Ok(Ok(Some(found))) => {
                    waited.found = Some(found);
                    return waited;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => waited.failed(crate::redact::scrub(&e.to_string())),
                Err(_) => waited.failed(format!("no answer within {} ms", (limit - read_at).as_millis())),
            }
            if woken_by_head {
                listening = false;
            }
            if Instant::now() >= deadline {
                return waited;
            }
            let next = (read_at + self.poll).min(deadline);
            woken_by_head = false;
            match heads.as_mut().filter(|_| listening) {
                Some(h) => {
                    tokio::select! {
                        changed = h.changed() => {
                            if changed.is_err() {
                                // No subscription is left: poll only.
                                heads = None;
                                tokio::time::sleep_until(next).await;
                                listening = true;
                            } else {
                                woken_by_head = true;
                                let gap = read_at + super::heads::MIN_STEP_GAP;
                                tokio::time::sleep_until(gap.min(deadline)).await;
                            }
                        }
                        _ = tokio::time::sleep_until(next) => {}
                    }
                }
                None => {
                    tokio::time::sleep_until(next).await;
                    listening = true;
                    // Heads announced while deaf are not owed a read of their own.
                    if let Some(h) = heads.as_mut() {
                        h.borrow_and_update();
                    }
                }
            }
        }
    }
}

/// The longest one read may take before it counts as failed (the next head or poll reads again).
pub const READ_LIMIT: Duration = Duration::from_secs(5);

/// What a wait for a receipt found.
#[derive(Debug, PartialEq, Eq)]
pub struct Waited<T> {
    /// The receipt; `None` when none came by the deadline.
    pub found: Option<T>,
    /// Reads that failed or did not answer in time.
    pub failed_reads: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

impl<T> Waited<T> {
    fn failed(&mut self, error: String) {
        debug!(%error, "receipt read failed; reading again at the next head or poll");
        self.failed_reads += 1;
        self.last_error = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// One read's answer: the number of the call that found the receipt.
    type Read = std::future::Ready<Result<Option<u32>, String>>;

    /// A read that finds the receipt from its `found_at`-th call on, counting calls.
    fn reader(found_at: u32) -> (Arc<AtomicU32>, impl FnMut() -> Read) {
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
        assert_eq!(watch.wait(Duration::from_secs(60), read).await.found, Some(2));
        assert_eq!(began.elapsed(), Duration::from_millis(400), "read when the head came, not after the 5 s poll");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        drop(announce.await);
    }

    #[tokio::test(start_paused = true)]
    async fn without_heads_it_reads_every_poll_interval() {
        let watch = ReceiptWatch::new(None, Duration::from_millis(250));
        let (calls, read) = reader(4);
        let began = Instant::now();
        assert_eq!(watch.wait(Duration::from_secs(60), read).await.found, Some(4));
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
        assert_eq!(watch.wait(Duration::from_secs(60), read).await.found, Some(3));
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
        assert_eq!(
            watch.wait(Duration::from_secs(1), read).await,
            Waited { found: None, failed_reads: 5, last_error: Some("connection refused".into()) }
        );
        assert_eq!(began.elapsed(), Duration::from_secs(1), "the deadline, not a poll past it");
        // At 0, 300, 600, 900 and the deadline.
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_heads_costs_at_most_one_read_more_per_poll_interval() {
        let (tx, rx) = watch::channel(0u64);
        let poll = Duration::from_millis(250);
        let watch = ReceiptWatch::new(Some(rx), poll);
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
        assert_eq!(
            watch.wait(Duration::from_millis(1000), read).await,
            Waited { found: None, failed_reads: 0, last_error: None }
        );
        let reads = calls.load(Ordering::SeqCst);
        // A poll-timed read, a head's read 50 ms later, deaf until a poll interval after that
        // (0, 50, 300, 350, 600, 650, 900, 950, the deadline): not 5,000, nor the 20 the
        // minimum gap alone would allow.
        assert!(reads <= 2 * 4 + 2, "{reads} reads in 1 s of flooding");
        assert!(reads >= 8, "heads went unheard: {reads} reads");
        drop(flood.await);
    }

    #[tokio::test(start_paused = true)]
    async fn heads_before_the_wait_do_not_count_and_a_head_per_poll_interval_is_read_at_once() {
        let (tx, rx) = watch::channel(0u64);
        tx.send_modify(|n| *n += 1);
        let watch = ReceiptWatch::new(Some(rx), Duration::from_millis(1000));
        let (calls, read) = reader(4);
        let began = Instant::now();
        // Blocks every 1.5 s, a poll every 1 s: each head is read at once although the one
        // before found nothing (a poll read in between listens again).
        let blocks = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                tx.send_modify(|n| *n += 1);
            }
            tx
        });
        assert_eq!(watch.wait(Duration::from_secs(60), read).await.found, Some(4));
        // Reads at 0 (none before it counted), 1000 (poll), 1500 (head): the fourth, at 2500
        // (poll), finds it before the 3000 head.
        assert_eq!(began.elapsed(), Duration::from_millis(2500));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "reads at 0, 1000, 1500 and 2500");
        drop(blocks.await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_never_answers_ends_at_the_deadline() {
        let watch = ReceiptWatch::new(None, Duration::from_millis(200));
        let read = || std::future::pending::<Result<Option<u32>, String>>();
        let began = Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(30), watch.wait(Duration::from_secs(1), read))
            .await
            .expect("the wait ends");
        assert_eq!(waited.found, None);
        assert_eq!(waited.failed_reads, 1);
        assert_eq!(began.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_read_counts_as_failed_after_the_read_limit_and_the_next_one_finds_it() {
        let watch = ReceiptWatch::new(None, Duration::from_millis(500));
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let read = move || {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok::<_, String>(Some(7u32))
            }
        };
        let began = Instant::now();
        let waited = watch.wait(Duration::from_secs(60), read).await;
        assert_eq!(waited.found, Some(7));
        assert_eq!(waited.failed_reads, 1);
        // The stalled read is given up at READ_LIMIT, and the next poll (500 ms after it began)
        // is already due.
        assert_eq!(began.elapsed(), READ_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn heads_announced_while_deaf_are_not_owed_a_read() {
        let (tx, rx) = watch::channel(0u64);
        let watch = ReceiptWatch::new(Some(rx), Duration::from_millis(1000));
        let (calls, read) = reader(u32::MAX);
        let heads = tokio::spawn(async move {
            // One head at 100 ms (read at once; that read finds nothing and deafens), one at
            // 500 ms while deaf: the poll at 1100 ms reads, and nothing is read for the second.
            for at in [100, 400] {
                tokio::time::sleep(Duration::from_millis(at)).await;
                tx.send_modify(|n| *n += 1);
            }
            tx
        });
        let waited = watch.wait(Duration::from_millis(1500), read).await;
        assert_eq!(waited.found, None);
        // 0, 100 (head), 1100 (poll), 1500 (deadline).
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        drop(heads.await);
    }
}
