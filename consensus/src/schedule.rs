//! Rounds and keepers. A round is a fixed range of blocks counted from the deployment block;
//! the keeper of round `r` on attempt `k` is `operators[(r + k) % n]`.

use serde::{Deserialize, Serialize};

/// How blocks are cut into rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundSchedule {
    /// First block of round 0.
    pub start_block: u64,
    /// Blocks per round (at least 1).
    pub length: u64,
}

impl RoundSchedule {
    /// Creates a schedule; `None` when `length` is zero.
    pub fn new(start_block: u64, length: u64) -> Option<Self> {
        (length > 0).then_some(Self { start_block, length })
    }

    /// Round that contains `block`, or `None` for blocks before `start_block`.
    pub fn round_of(&self, block: u64) -> Option<u64> {
        block.checked_sub(self.start_block).map(|d| d / self.length)
    }

    /// Inclusive block range of `round`, or `None` on overflow.
    pub fn range(&self, round: u64) -> Option<(u64, u64)> {
        let from = round.checked_mul(self.length)?.checked_add(self.start_block)?;
        let to = from.checked_add(self.length - 1)?;
        Some((from, to))
    }

    /// The last block of every round that ends within `from..=to`, ascending.
    pub fn round_ends(&self, from: u64, to: u64) -> Vec<u64> {
        let first = self.round_of(from).unwrap_or(0);
        (first..)
            .map_while(|r| self.range(r).map(|(_, end)| end).filter(|end| *end <= to))
            .filter(|end| *end >= from)
            .collect()
    }

    /// Whether every block of `round` is at or below `processed` (confirmed and checkpointed).
    pub fn is_closed(&self, round: u64, processed: Option<u64>) -> bool {
        match (self.range(round), processed) {
            (Some((_, to)), Some(p)) => to <= p,
            _ => false,
        }
    }
}

/// Index in the operator list of the keeper of `round` at failover `attempt` (0 = first choice).
/// `operators` must be non-zero; the configuration refuses an empty operator set.
pub fn keeper_index(round: u64, attempt: u64, operators: usize) -> usize {
    let n = operators.max(1) as u64;
    // Both operands are reduced mod n first, so the sum cannot overflow.
    ((round % n + attempt % n) % n) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_ends_within_a_range() {
        let s = RoundSchedule::new(100, 5).expect("non-zero length");
        let cases: [((u64, u64), Vec<u64>); 6] = [
            ((0, 99), vec![]),
            ((0, 104), vec![104]),
            ((100, 103), vec![]),
            ((104, 104), vec![104]),
            ((101, 116), vec![104, 109, 114]),
            ((105, 119), vec![109, 114, 119]),
        ];
        for ((from, to), want) in cases {
            assert_eq!(s.round_ends(from, to), want, "{from}..={to}");
        }
    }

    #[test]
    fn table_of_rounds() {
        let s = RoundSchedule::new(100, 5).expect("non-zero length");
        let cases = [(99, None), (100, Some(0)), (104, Some(0)), (105, Some(1)), (149, Some(9))];
        for (block, round) in cases {
            assert_eq!(s.round_of(block), round, "block {block}");
        }
        assert_eq!(s.range(0), Some((100, 104)));
        assert_eq!(s.range(3), Some((115, 119)));
        assert!(!s.is_closed(0, None));
        assert!(!s.is_closed(0, Some(103)));
        assert!(s.is_closed(0, Some(104)));
        assert_eq!(s.range(u64::MAX), None);
        assert_eq!(RoundSchedule::new(0, 0), None);
    }

    #[test]
    fn keeper_table() {
        let cases = [(0, 0, 4, 0), (1, 0, 4, 1), (5, 0, 4, 1), (5, 1, 4, 2), (7, 1, 4, 0), (u64::MAX, u64::MAX, 4, 2)];
        for (round, attempt, n, want) in cases {
            assert_eq!(keeper_index(round, attempt, n), want, "round {round} attempt {attempt}");
        }
    }

    proptest! {
        #[test]
        fn keeper_is_in_range_and_rotates(round in any::<u64>(), n in 1usize..300) {
            let first = keeper_index(round, 0, n);
            prop_assert!(first < n);
            // n consecutive attempts visit every operator exactly once.
            let mut seen: Vec<usize> = (0..n as u64).map(|k| keeper_index(round, k, n)).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }

        #[test]
        fn every_block_lies_in_its_rounds_range(start in 0u64..1_000_000, len in 1u64..1000, off in 0u64..1_000_000) {
            let s = RoundSchedule::new(start, len).expect("non-zero");
            let block = start + off;
            let r = s.round_of(block).expect("after start");
            let (from, to) = s.range(r).expect("no overflow");
            prop_assert!(from <= block && block <= to);
        }
    }
}
