//! When an idle watcher polls again: at its poll interval, or, while new-head notifications
//! ([`super::heads`]) keep announcing the chain's heads, not before the next head is due.
//!
//! Polling every `poll_interval_ms` finds a head at most one interval late whether or not a
//! subscription works; with one that works, most polls between two blocks read an unmoved head
//! through the provider quorum for nothing (four of five at 1 s blocks and 200 ms polls; on a
//! 12 s chain, about sixty). So the watcher learns the chain's pace, the time per block
//! between the heads it read, and after a head that a notification announced (the step it woke
//! found the head moved), it waits for the next notification until that head is due, plus one
//! poll interval, and only then polls.
//!
//! A notification is still only a hint, and it earns the wait only when it is on time: the woken
//! step reads the new head's block through the quorum, and a head whose notification came more
//! than [`LATE_SLACK`] plus one poll interval after the block's own timestamp does not count
//! as announced. What a lying or failing subscription can do:
//! - Withhold a head: the watcher polls once that head is due plus one poll interval, and polls
//!   at its interval until a notification announces a head on time again.
//! - Delay every head: each late one puts the watcher back on its interval, where its polls
//!   find the heads. A notifier can hold a head back by at most [`LATE_SLACK`] plus one poll
//!   interval past its timestamp and still be trusted, against one poll interval for a plain
//!   poller; the bound is the block's time, so the delays do not add up from block to block.
//! - Announce a head that is not there: the woken step finds none, and the watcher polls at
//!   its interval until a notification announces a real one (one copy of the last head within
//!   a poll interval of it, as a second endpoint sends, costs a head read and is not taken for
//!   a lie).
//! - Skew the pace: only by as much as it may delay a head. The pace is learned from heads read
//!   through the provider quorum, and is at most [`MAX_PACE`].
//!
//! Nothing here is I/O: the watcher feeds it what each step read, with the time.

use std::time::{Duration, Instant};

/// The longest pace taken from the chain: a stall of many minutes must not make the watcher
/// wait that long for a head it was not told of.
pub const MAX_PACE: Duration = Duration::from_secs(30);

/// How long after its block's timestamp (whole seconds) a head may be announced and count as
/// on time, besides one poll interval.
pub const LATE_SLACK: Duration = Duration::from_secs(1);

/// Whether a head announced at `now_ms` (unix ms) came on time for a block stamped
/// `timestamp_s`.
pub fn on_time(now_ms: u64, timestamp_s: u64, poll: Duration) -> bool {
    let slack = (LATE_SLACK + poll).as_millis() as u64;
    now_ms <= timestamp_s.saturating_mul(1000).saturating_add(slack)
}

/// What the watcher learned of the chain's heads.
#[derive(Debug, Clone)]
pub struct HeadPace {
    /// The watcher's poll interval.
    poll: Duration,
    /// The highest head read, when it was read, and whether a notification announced it on time.
    last: Option<(u64, Instant, bool)>,
    /// Time per block, smoothed over the heads read.
    per_block: Option<Duration>,
    /// Whether a fruitless wake was already let pass for the last head.
    spared: bool,
}

impl HeadPace {
    /// Nothing learned yet, for a watcher polling every `poll`.
    pub fn new(poll: Duration) -> Self {
        Self { poll, last: None, per_block: None, spared: false }
    }

    /// Records the head a successful step read at `at`; `announced`: a notification caused the
    /// step and came on time ([`on_time`]).
    pub fn observe(&mut self, head: u64, at: Instant, announced: bool) {
        match self.last {
            Some((last, last_at, _)) if head > last => {
                let blocks = u32::try_from(head - last).unwrap_or(u32::MAX);
                let sample = at.saturating_duration_since(last_at) / blocks;
                // A quarter of each new sample: one late or early block moves it a little.
                self.per_block = Some(match self.per_block {
                    Some(pace) => (pace * 3 + sample) / 4,
                    None => sample,
                });
                self.last = Some((head, at, announced));
                self.spared = false;
            }
            // The same head again (a poll that found nothing new): nothing learned.
            Some((last, _, _)) if head == last => {}
            // The first head, or a lower one (a reorg to a shorter chain): start over from it.
            _ => self.last = Some((head, at, false)),
        }
    }

    /// A notification at `at` woke a step that found no new head. Returns whether the watcher
    /// goes on listening: once per head, within a poll interval of an announced head (another
    /// endpoint announcing the same one); otherwise the notifier is not relied on until it
    /// announces a real head, and the watcher stops listening until its next poll.
    pub fn fruitless_wake(&mut self, at: Instant) -> bool {
        match self.last {
            Some((_, last_at, true)) if !self.spared && at.saturating_duration_since(last_at) <= self.poll => {
                self.spared = true;
                true
            }
            Some((head, last_at, _)) => {
                self.last = Some((head, last_at, false));
                false
            }
            None => false,
        }
    }

    /// How long an idle watcher at `now` waits before it polls: its interval, or, after an
    /// announced head, until the next head is due plus one interval.
    pub fn idle_wait(&self, now: Instant) -> Duration {
        match (self.last, self.per_block) {
            (Some((_, at, true)), Some(pace)) => {
                let due = at + pace.min(MAX_PACE) + self.poll;
                due.saturating_duration_since(now).max(self.poll)
            }
            _ => self.poll,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(200);
    const SECOND: Duration = Duration::from_secs(1);

    /// A pace fed heads 1..=n a second apart, the last `announced`.
    fn steady(t0: Instant, n: u64, announced: bool) -> HeadPace {
        let mut pace = HeadPace::new(POLL);
        for h in 1..=n {
            pace.observe(h, t0 + SECOND * h as u32, announced);
        }
        pace
    }

    #[test]
    fn without_announced_heads_it_polls_at_its_interval() {
        let t0 = Instant::now();
        assert_eq!(HeadPace::new(POLL).idle_wait(t0), POLL, "nothing learned yet");
        let polled = steady(t0, 5, false);
        assert_eq!(polled.idle_wait(t0 + SECOND * 5), POLL, "heads found by polls");
        let mut first = HeadPace::new(POLL);
        first.observe(7, t0, true);
        assert_eq!(first.idle_wait(t0), POLL, "one head gives no pace");
    }

    #[test]
    fn after_an_announced_head_it_waits_until_the_next_is_due_plus_one_poll() {
        let t0 = Instant::now();
        let pace = steady(t0, 5, true);
        let last = t0 + SECOND * 5;
        assert_eq!(pace.idle_wait(last), SECOND + POLL);
        assert_eq!(pace.idle_wait(last + Duration::from_millis(300)), Duration::from_millis(900));
        // Past the due time (a withheld head), back to the interval.
        assert_eq!(pace.idle_wait(last + SECOND), POLL);
        assert_eq!(pace.idle_wait(last + SECOND * 9), POLL);
    }

    #[test]
    fn a_notification_that_brings_no_head_ends_the_trust_until_one_does() {
        let t0 = Instant::now();
        let mut pace = steady(t0, 5, true);
        let last = t0 + SECOND * 5;
        // Another endpoint announcing the same head just after: still trusted, still listening.
        assert!(pace.fruitless_wake(last + Duration::from_millis(100)));
        assert_eq!(pace.idle_wait(last + Duration::from_millis(100)), SECOND + POLL - Duration::from_millis(100));
        // Once per head: a second such wake ends it.
        let mut twice = pace.clone();
        assert!(!twice.fruitless_wake(last + Duration::from_millis(150)));
        assert_eq!(twice.idle_wait(last + Duration::from_millis(150)), POLL);
        // A wake that brings nothing later on ends it ...
        assert!(!pace.fruitless_wake(last + Duration::from_millis(500)));
        assert_eq!(pace.idle_wait(last + Duration::from_millis(500)), POLL);
        // ... a poll that finds the next head does not restore it ...
        pace.observe(6, last + SECOND, false);
        assert_eq!(pace.idle_wait(last + SECOND), POLL);
        // ... a notification that announces a real one on time does.
        pace.observe(7, last + SECOND * 2, true);
        assert_eq!(pace.idle_wait(last + SECOND * 2), SECOND + POLL);
        // A poll of the same head changes nothing.
        pace.observe(7, last + SECOND * 2 + POLL, false);
        assert_eq!(pace.idle_wait(last + SECOND * 2), SECOND + POLL);
    }

    #[test]
    fn a_head_is_on_time_until_a_second_and_a_poll_past_its_timestamp() {
        let table = [
            (1_000_000, 1_000, true, "at its timestamp"),
            (1_001_200, 1_000, true, "a second and a poll after"),
            (1_001_201, 1_000, false, "later"),
            (999_000, 1_000, true, "before it (clocks differ)"),
            (u64::MAX, u64::MAX, true, "no overflow"),
        ];
        for (now_ms, stamp, expected, case) in table {
            assert_eq!(on_time(now_ms, stamp, POLL), expected, "{case}");
        }
    }

    #[test]
    fn the_pace_is_per_block_smoothed_and_capped() {
        let t0 = Instant::now();
        let mut pace = steady(t0, 3, true);
        // Two blocks in one step: still a second per block.
        pace.observe(5, t0 + SECOND * 5, true);
        assert_eq!(pace.idle_wait(t0 + SECOND * 5), SECOND + POLL);
        // One slow block moves the pace by a quarter of the difference.
        pace.observe(6, t0 + SECOND * 10, true);
        assert_eq!(pace.idle_wait(t0 + SECOND * 10), Duration::from_secs(2) + POLL);
        // A chain that stalled for an hour waits at most MAX_PACE.
        let mut stalled = steady(t0, 2, true);
        stalled.observe(3, t0 + Duration::from_secs(2 + 4 * 3600), true);
        let at = t0 + Duration::from_secs(2 + 4 * 3600);
        assert_eq!(stalled.idle_wait(at), MAX_PACE + POLL);
    }

    #[test]
    fn a_lower_head_starts_over() {
        let t0 = Instant::now();
        let mut pace = steady(t0, 5, true);
        pace.observe(4, t0 + SECOND * 6, true);
        assert_eq!(pace.idle_wait(t0 + SECOND * 6), POLL);
    }
}
