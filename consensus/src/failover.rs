//! Keeper failover: who submits a round, and when.
//!
//! The keeper of round `r` on attempt `k` is `operators[(r + k) % n]` ([`crate::keeper_index`]).
//! Operators known to be down (no heartbeat, or unable to pay for the transaction) are skipped
//! at once; among the rest, the one at position `j` in that order may submit once `j` deadlines
//! have passed since the round's quorum formed. A healthy first keeper therefore submits at
//! once, and a dead or stalled one delays settlement by at most one deadline per failure.

use crate::schedule::keeper_index;
use std::collections::BTreeSet;

/// When `me` may submit round `round`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// Failover attempt `k` (0 = the scheduled keeper).
    pub attempt: u64,
    /// Position among the operators not known to be down.
    pub rank: u64,
    /// Earliest time `me` may submit, ms.
    pub at_ms: u64,
}

/// The turn of operator `me` for `round` among `n` operators, skipping those in `down`, counted
/// from `quorum_at_ms` with `deadline_ms` per turn. `None` when `me` itself is down.
pub fn turn(
    round: u64,
    n: usize,
    me: usize,
    down: &BTreeSet<usize>,
    quorum_at_ms: u64,
    deadline_ms: u64,
) -> Option<Turn> {
    if down.contains(&me) || me >= n {
        return None;
    }
    let mut rank = 0u64;
    for attempt in 0..n as u64 {
        let op = keeper_index(round, attempt, n);
        if op == me {
            return Some(Turn { attempt, rank, at_ms: quorum_at_ms.saturating_add(rank.saturating_mul(deadline_ms)) });
        }
        if !down.contains(&op) {
            rank += 1;
        }
    }
    None
}

/// Whether a node must send a heartbeat now. Its votes show it up to the operators that hear
/// them (their round driver is what a keeper needs), so a node that published a vote less than
/// `interval_ms` ago (`since_vote_ms`) may stay silent, unless:
/// - whether it can pay changed since its last heartbeat (`last`: how long ago, and what it
///   said), or it never sent one;
/// - its last heartbeat is half a timeout old: peers that count heartbeats only (an earlier
///   version) then still hear one within the timeout;
/// - the timeout is not more than three intervals: with a heartbeat skipped after a vote, the
///   gap between two messages is up to two intervals, three with one lost.
pub fn heartbeat_due(
    since_vote_ms: Option<u64>,
    last: Option<(u64, bool)>,
    can_pay: bool,
    interval_ms: u64,
    timeout_ms: u64,
) -> bool {
    let Some((since_heartbeat_ms, said)) = last else { return true };
    said != can_pay
        || timeout_ms <= interval_ms.saturating_mul(3)
        || since_heartbeat_ms.saturating_mul(2) >= timeout_ms
        || since_vote_ms.is_none_or(|v| v >= interval_ms)
}

/// Tracks the operators' heartbeats.
#[derive(Debug, Clone)]
pub struct Liveness {
    last_seen_ms: Vec<Option<u64>>,
    can_pay: Vec<bool>,
    timeout_ms: u64,
}

impl Liveness {
    /// `n` operators, down after `timeout_ms` without a heartbeat.
    pub fn new(n: usize, timeout_ms: u64) -> Self {
        Self { last_seen_ms: vec![None; n], can_pay: vec![true; n], timeout_ms }
    }

    /// Number of operators tracked.
    pub fn len(&self) -> usize {
        self.last_seen_ms.len()
    }

    /// Whether no operator is tracked.
    pub fn is_empty(&self) -> bool {
        self.last_seen_ms.is_empty()
    }

    /// Records a heartbeat of `operator` at `now_ms`.
    pub fn heartbeat(&mut self, operator: usize, can_pay: bool, now_ms: u64) {
        if let (Some(seen), Some(pay)) = (self.last_seen_ms.get_mut(operator), self.can_pay.get_mut(operator)) {
            *seen = Some(seen.map_or(now_ms, |s| s.max(now_ms)));
            *pay = can_pay;
        }
    }

    /// Records that `operator` was heard at `now_ms` in a vote: it is up, and whether it can pay
    /// stays what its last heartbeat said.
    pub fn seen(&mut self, operator: usize, now_ms: u64) {
        if let Some(seen) = self.last_seen_ms.get_mut(operator) {
            *seen = Some(seen.map_or(now_ms, |s| s.max(now_ms)));
        }
    }

    /// When `operator` was last heard (a heartbeat or a vote), if it was.
    pub fn last_seen_ms(&self, operator: usize) -> Option<u64> {
        self.last_seen_ms.get(operator).copied().flatten()
    }

    /// Operators known down at `now_ms`: never heard, silent for longer than the timeout, or
    /// unable to pay for a settlement. `me` counts as up unless it cannot pay.
    pub fn down(&self, me: usize, now_ms: u64) -> BTreeSet<usize> {
        (0..self.last_seen_ms.len())
            .filter(|i| {
                let silent =
                    *i != me && self.last_seen_ms[*i].is_none_or(|s| now_ms.saturating_sub(s) > self.timeout_ms);
                silent || !self.can_pay[*i]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (since the last vote, last heartbeat, can pay) → due, and why; interval 500 ms,
    /// timeout 2000 ms.
    type DueCase = (Option<u64>, Option<(u64, bool)>, bool, bool, &'static str);

    #[test]
    fn a_heartbeat_is_skipped_only_right_after_a_vote() {
        let table: &[DueCase] = &[
            (Some(100), None, true, true, "never sent one"),
            (Some(100), Some((500, true)), true, false, "voted 100 ms ago"),
            (Some(500), Some((500, true)), true, true, "the last vote is an interval old"),
            (None, Some((500, true)), true, true, "no vote"),
            (Some(100), Some((500, true)), false, true, "can no longer pay"),
            (Some(100), Some((500, false)), true, true, "can pay again"),
            (Some(100), Some((1000, true)), true, true, "half a timeout since the last heartbeat"),
            (Some(100), Some((999, true)), true, false, "not quite half a timeout"),
        ];
        for (vote, last, can_pay, due, why) in table {
            assert_eq!(heartbeat_due(*vote, *last, *can_pay, 500, 2000), *due, "{why}");
        }
        assert!(heartbeat_due(Some(100), Some((500, true)), true, 500, 1500), "timeout of three intervals: always");
    }

    #[test]
    fn a_vote_keeps_an_operator_up_without_changing_whether_it_can_pay() {
        let mut l = Liveness::new(4, 2000);
        l.heartbeat(1, false, 1000);
        l.heartbeat(2, true, 1000);
        l.heartbeat(3, true, 1000);
        l.seen(2, 2500);
        assert_eq!(l.down(0, 3500), set(&[1, 3]), "3 is silent, 1 cannot pay, 2 was seen at 2500");
        l.seen(1, 3400);
        assert!(l.down(0, 3500).contains(&1), "seen, but its heartbeat said it cannot pay");
        l.seen(3, 100);
        assert!(l.down(0, 3500).contains(&3), "an older message does not revive");
        l.seen(9, 3500);
    }
    use proptest::prelude::*;

    fn set(v: &[usize]) -> BTreeSet<usize> {
        v.iter().copied().collect()
    }

    #[test]
    fn scripted_turns() {
        // round 5 of 4 operators: order 1, 2, 3, 0; deadline 10 s from quorum at t=100.
        let cases = [
            (1, &[][..], Some((0, 0, 100))),
            (2, &[][..], Some((1, 1, 10_100))),
            (0, &[][..], Some((3, 3, 30_100))),
            (2, &[1][..], Some((1, 0, 100))),    // keeper 1 known down: 2 goes at once
            (3, &[1, 2][..], Some((2, 0, 100))), // two down
            (1, &[1][..], None),                 // a down operator never submits
        ];
        for (me, down, want) in cases {
            let got = turn(5, 4, me, &set(down), 100, 10_000).map(|t| (t.attempt, t.rank, t.at_ms));
            assert_eq!(got, want, "me {me} down {down:?}");
        }
    }

    #[test]
    fn liveness_table() {
        let mut l = Liveness::new(4, 3000);
        assert_eq!(l.down(0, 1000), set(&[1, 2, 3]), "never heard");
        l.heartbeat(1, true, 1000);
        l.heartbeat(2, true, 1000);
        l.heartbeat(3, false, 1000);
        assert_eq!(l.down(0, 2000), set(&[3]), "3 cannot pay");
        assert_eq!(l.down(0, 4001), set(&[1, 2, 3]), "silent too long");
        l.heartbeat(1, true, 500);
        assert_eq!(l.down(0, 4001), set(&[1, 2, 3]), "an older heartbeat does not revive");
        l.heartbeat(0, false, 4001);
        assert!(l.down(0, 4001).contains(&0), "me unable to pay");
    }

    proptest! {
        #[test]
        fn exactly_one_operator_per_rank(round in any::<u64>(), n in 1usize..40, down_mask in any::<u64>()) {
            let down: BTreeSet<usize> = (0..n).filter(|i| down_mask >> (i % 64) & 1 == 1).collect();
            let mut ranks: Vec<u64> = (0..n).filter_map(|me| turn(round, n, me, &down, 0, 1).map(|t| t.rank)).collect();
            ranks.sort_unstable();
            // The operators that are up take ranks 0, 1, 2, ... once each; the first is the
            // scheduled keeper whenever it is up.
            prop_assert_eq!(ranks, (0..(n - down.len()) as u64).collect::<Vec<_>>());
            let first = keeper_index(round, 0, n);
            if !down.contains(&first) {
                prop_assert_eq!(turn(round, n, first, &down, 0, 1).map(|t| t.rank), Some(0));
            }
        }
    }
}
