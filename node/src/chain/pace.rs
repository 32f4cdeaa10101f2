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
//! A notification is still only a hint. What a lying or failing subscription can do:
//! - Withhold a head: the watcher polls once that head is due plus one poll interval, as a
//!   plain poller would at worst, and polls at its interval until a notification announces a
//!   head again. The cost is how early that block came against the learned pace.
//! - Announce a head that is not there: the woken step finds none, and the watcher polls at
//!   its interval until a notification announces a real one.
//! - Skew the pace: it cannot. The pace is learned from heads read through the provider
//!   quorum, at the steps that read them, and a step woken early reads the same chain.
//!
//! Nothing here is I/O: the watcher feeds it what each step read, with the time.

use std::time::{Duration, Instant};

/// The longest pace taken from the chain: a stall of many minutes must not make the watcher
/// wait that long for a head it was not told of.
pub const MAX_PACE: Duration = Duration::from_secs(30);

/// What the watcher learned of the chain's heads.
#[derive(Debug, Clone, Default)]
pub struct HeadPace {
    /// The highest head read, when it was read, and whether a notification announced it.
    last: Option<(u64, Instant, bool)>,
    /// Time per block, smoothed over the heads read.
    per_block: Option<Duration>,
}

impl HeadPace {
    /// Records the head a successful step read at `at`; `woken`: a notification caused the step.
    pub fn observe(&mut self, head: u64, at: Instant, woken: bool) {
        match self.last {
            Some((last, last_at, _)) if head > last => {
                let blocks = u32::try_from(head - last).unwrap_or(u32::MAX);
                let sample = at.saturating_duration_since(last_at) / blocks;
                // A quarter of each new sample: one late or early block moves it a little.
                self.per_block = Some(match self.per_block {
                    Some(pace) => (pace * 3 + sample) / 4,
                    None => sample,
                });
                self.last = Some((head, at, woken));
            }
            // The same head again: a notification that brought nothing means the notifier is
            // not to be relied on until it announces a real head.
            Some((last, last_at, announced)) if head == last => {
                self.last = Some((last, last_at, announced && !woken));
            }
            // The first head, or a lower one (a reorg to a shorter chain): start over from it.
            _ => self.last = Some((head, at, false)),
        }
    }

    /// How long an idle watcher at `now` waits before it polls: `poll`, or, after an announced
    /// head, until the next head is due plus `poll`.
    pub fn idle_wait(&self, now: Instant, poll: Duration) -> Duration {
        match (self.last, self.per_block) {
            (Some((_, at, true)), Some(pace)) => {
                let due = at + pace.min(MAX_PACE) + poll;
                due.saturating_duration_since(now).max(poll)
            }
            _ => poll,
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
        let mut pace = HeadPace::default();
        for h in 1..=n {
            pace.observe(h, t0 + SECOND * h as u32, announced);
        }
        pace
    }

    #[test]
    fn without_announced_heads_it_polls_at_its_interval() {
        let t0 = Instant::now();
        assert_eq!(HeadPace::default().idle_wait(t0, POLL), POLL, "nothing learned yet");
        let polled = steady(t0, 5, false);
        assert_eq!(polled.idle_wait(t0 + SECOND * 5, POLL), POLL, "heads found by polls");
        let mut first = HeadPace::default();
        first.observe(7, t0, true);
        assert_eq!(first.idle_wait(t0, POLL), POLL, "one head gives no pace");
    }

    #[test]
    fn after_an_announced_head_it_waits_until_the_next_is_due_plus_one_poll() {
        let t0 = Instant::now();
        let pace = steady(t0, 5, true);
        let last = t0 + SECOND * 5;
        assert_eq!(pace.idle_wait(last, POLL), SECOND + POLL);
        assert_eq!(pace.idle_wait(last + Duration::from_millis(300), POLL), Duration::from_millis(900));
        // Past the due time (a withheld head), back to the interval.
        assert_eq!(pace.idle_wait(last + SECOND, POLL), POLL);
        assert_eq!(pace.idle_wait(last + SECOND * 9, POLL), POLL);
    }

    #[test]
    fn a_notification_that_brings_no_head_ends_the_trust_until_one_does() {
        let t0 = Instant::now();
        let mut pace = steady(t0, 5, true);
        let last = t0 + SECOND * 5;
        pace.observe(5, last + Duration::from_millis(100), true);
        assert_eq!(pace.idle_wait(last + Duration::from_millis(100), POLL), POLL);
        // A poll that finds the next head does not restore it ...
        pace.observe(6, last + SECOND, false);
        assert_eq!(pace.idle_wait(last + SECOND, POLL), POLL);
        // ... a notification that announces a real one does.
        pace.observe(7, last + SECOND * 2, true);
        assert_eq!(pace.idle_wait(last + SECOND * 2, POLL), SECOND + POLL);
        // A poll of the same head changes nothing.
        pace.observe(7, last + SECOND * 2 + POLL, false);
        assert_eq!(pace.idle_wait(last + SECOND * 2, POLL), SECOND + POLL);
    }

    #[test]
    fn the_pace_is_per_block_smoothed_and_capped() {
        let t0 = Instant::now();
        let mut pace = steady(t0, 3, true);
        // Two blocks in one step: still a second per block.
        pace.observe(5, t0 + SECOND * 5, true);
        assert_eq!(pace.idle_wait(t0 + SECOND * 5, POLL), SECOND + POLL);
        // One slow block moves the pace by a quarter of the difference.
        pace.observe(6, t0 + SECOND * 10, true);
        assert_eq!(pace.idle_wait(t0 + SECOND * 10, POLL), Duration::from_secs(2) + POLL);
        // A chain that stalled for an hour waits at most MAX_PACE.
        let mut stalled = steady(t0, 2, true);
        stalled.observe(3, t0 + Duration::from_secs(2 + 4 * 3600), true);
        let at = t0 + Duration::from_secs(2 + 4 * 3600);
        assert_eq!(stalled.idle_wait(at, POLL), MAX_PACE + POLL);
    }

    #[test]
    fn a_lower_head_starts_over() {
        let t0 = Instant::now();
        let mut pace = steady(t0, 5, true);
        pace.observe(4, t0 + SECOND * 6, true);
        assert_eq!(pace.idle_wait(t0 + SECOND * 6, POLL), POLL);
    }
}
