//! Provider quorum, as pure functions over the answers of several RPC providers.
//!
//! Each read goes to every provider; `None` stands for a provider that failed or timed out.
//! A value (a head, a block hash, a log) counts only when at least `quorum` providers returned
//! it identically. Logs are compared on everything that identifies them (transaction, block
//! number and hash, log index, address, topics, data), so a provider on another fork, or one
//! that forges or alters a log, is outvoted.

use alloy::primitives::{Address, B256, Bytes};
use std::collections::HashMap;
use std::hash::Hash;

/// A log as providers are compared on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogKey {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Index of the log in its block.
    pub log_index: u64,
    /// Emitting contract.
    pub address: Address,
    /// Topics.
    pub topics: Vec<B256>,
    /// Data.
    pub data: Bytes,
}

/// Why no agreed value could be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// Too few providers answered at all.
    #[error("only {answered} provider(s) answered, {quorum} needed")]
    TooFewAnswers {
        /// Providers that answered.
        answered: usize,
        /// Providers needed.
        quorum: usize,
    },
    /// Providers answered but no value has `quorum` votes.
    #[error("providers disagree: the most common answer has {best} vote(s), {quorum} needed")]
    Disagreement {
        /// Votes of the most common answer.
        best: usize,
        /// Votes needed.
        quorum: usize,
    },
}

fn answered<T>(answers: &[Option<T>], quorum: usize) -> Result<usize, QuorumError> {
    let answered = answers.iter().filter(|a| a.is_some()).count();
    if answered < quorum.max(1) {
        return Err(QuorumError::TooFewAnswers { answered, quorum });
    }
    Ok(answered)
}

/// The value at least `quorum` providers returned identically.
pub fn agreed<T: Clone + Eq + Hash>(answers: &[Option<T>], quorum: usize) -> Result<T, QuorumError> {
    answered(answers, quorum)?;
    let mut votes: HashMap<&T, usize> = HashMap::new();
    for a in answers.iter().flatten() {
        *votes.entry(a).or_default() += 1;
    }
    let (value, best) =
        votes.into_iter().max_by_key(|(_, n)| *n).ok_or(QuorumError::TooFewAnswers { answered: 0, quorum })?;
    if best < quorum.max(1) {
        return Err(QuorumError::Disagreement { best, quorum });
    }
    Ok(value.clone())
}

/// The lower median of the answers, once at least `quorum` providers answered: with fewer than
/// half of the answers lying it lies between two honest ones, and with an even count (one of
/// two answering) the lower of them wins, so a liar cannot raise a fee.
pub fn median(answers: &[Option<u128>], quorum: usize) -> Result<u128, QuorumError> {
    answered(answers, quorum)?;
    let mut values: Vec<u128> = answers.iter().flatten().copied().collect();
    values.sort_unstable();
    values.get(values.len().saturating_sub(1) / 2).copied().ok_or(QuorumError::TooFewAnswers { answered: 0, quorum })
}

/// The highest block that at least `quorum` providers have reached: the `quorum`-th highest
/// head. Providers a block or two apart therefore do not count as disagreeing.
pub fn pinned_height(heads: &[Option<u64>], quorum: usize) -> Result<u64, QuorumError> {
    answered(heads, quorum)?;
    let mut hs: Vec<u64> = heads.iter().flatten().copied().collect();
    hs.sort_unstable_by(|a, b| b.cmp(a));
    hs.get(quorum.max(1) - 1).copied().ok_or(QuorumError::TooFewAnswers { answered: hs.len(), quorum })
}

/// Whether the heads so far can be taken without waiting for the rest: at least `quorum`
/// answered and the `quorum` highest are within one block of each other. More answers can only
/// raise the `quorum`-th highest, so taking it early is never a head fewer than `quorum`
/// providers reached; a far-off answer (a provider lagging, or lying high or low) waits for the
/// others, so one liar answering first cannot hold the head back.
pub fn height_decided(heads: &[Option<u64>], quorum: usize) -> bool {
    let mut hs: Vec<u64> = heads.iter().flatten().copied().collect();
    hs.sort_unstable_by(|a, b| b.cmp(a));
    let q = quorum.max(1);
    hs.len() >= q && hs[0].saturating_sub(hs[q - 1]) <= 1
}

/// Result of voting on the logs of one block range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogVote {
    /// Logs at least `quorum` providers returned identically, in (block, log index) order.
    pub accepted: Vec<LogKey>,
    /// Logs with fewer votes (forged, altered, or from another fork), with their votes.
    pub rejected: Vec<(LogKey, usize)>,
    /// Providers that answered.
    pub answered: usize,
}

impl LogVote {
    /// Rejected logs that are not outvoted: too few providers answered *without* them (at least
    /// `quorum` must) to call them a lie. The range is read again until that is settled: such a
    /// log may be real, shown by an honest provider while another honest one is down.
    pub fn unresolved(&self, quorum: usize) -> usize {
        self.rejected.iter().filter(|(_, votes)| self.answered.saturating_sub(*votes) < quorum.max(1)).count()
    }
}

/// Whether the answers so far decide the vote on logs for good: at least `quorum` answered and
/// no log lacks both a quorum for it and a quorum against it. Answers still to come can then only
/// add votes to accepted logs or outvote new ones, so the accepted set is final.
pub fn logs_decided(answers: &[Option<Vec<LogKey>>], quorum: usize) -> bool {
    vote_logs(answers, quorum).is_ok_and(|v| v.unresolved(quorum) == 0)
}

/// Votes on logs: each provider's answer is the full list for the same pinned range.
pub fn vote_logs(answers: &[Option<Vec<LogKey>>], quorum: usize) -> Result<LogVote, QuorumError> {
    let answered = answered(answers, quorum)?;
    let mut votes: HashMap<&LogKey, usize> = HashMap::new();
    for list in answers.iter().flatten() {
        let mut seen = std::collections::HashSet::new();
        for log in list {
            // A provider repeating a log in its answer still casts one vote.
            if seen.insert(log) {
                *votes.entry(log).or_default() += 1;
            }
        }
    }
    let mut vote = LogVote { answered, ..LogVote::default() };
    for (log, n) in votes {
        if n >= quorum.max(1) { vote.accepted.push(log.clone()) } else { vote.rejected.push((log.clone(), n)) }
    }
    vote.accepted.sort_by_key(|l| (l.block_number, l.log_index));
    vote.rejected.sort_by_key(|(l, _)| (l.block_number, l.log_index));
    Ok(vote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(block: u64, index: u64, data: u8) -> LogKey {
        LogKey {
            tx_hash: B256::repeat_byte(block as u8),
            block_number: block,
            block_hash: B256::repeat_byte(0xb0),
            log_index: index,
            address: Address::repeat_byte(1),
            topics: vec![B256::repeat_byte(2)],
            data: Bytes::from(vec![data]),
        }
    }

    #[test]
    fn a_head_is_taken_early_only_from_answers_close_together() {
        let table: [(&[Option<u64>], bool); 7] = [
            (&[Some(100), None, None], false),
            (&[Some(100), Some(100), None], true),
            (&[Some(100), Some(99), None], true),
            // A liar far below or above answering first waits for the third.
            (&[Some(0), Some(100), None], false),
            (&[Some(5000), Some(100), None], false),
            // Not decided early either; with every answer in, the read ends all the same and
            // the quorum-th highest is taken.
            (&[Some(5000), Some(100), Some(100)], false),
            (&[Some(100), Some(5000), Some(101)], false),
        ];
        for (heads, decided) in table {
            assert_eq!(height_decided(heads, 2), decided, "{heads:?}");
        }
        assert_eq!(pinned_height(&[Some(5000), Some(100), Some(100)], 2), Ok(100));
    }

    #[test]
    fn a_log_vote_is_decided_once_later_answers_cannot_change_it() {
        let (a, b) = (log(5, 0, 1), log(6, 0, 2));
        let table: [(Vec<Option<Vec<LogKey>>>, bool); 6] = [
            (vec![Some(vec![a.clone()]), None, None], false),
            (vec![Some(vec![a.clone()]), Some(vec![a.clone()]), None], true),
            // Two answers that differ: the third decides.
            (vec![Some(vec![a.clone()]), Some(vec![a.clone(), b.clone()]), None], false),
            (vec![Some(vec![a.clone()]), Some(vec![a.clone(), b.clone()]), Some(vec![a.clone()])], true),
            (vec![Some(vec![]), Some(vec![]), None], true),
            (vec![None, None, None], false),
        ];
        for (n, (answers, decided)) in table.into_iter().enumerate() {
            assert_eq!(logs_decided(&answers, 2), decided, "case {n}");
        }
    }

    #[test]
    fn a_lone_log_is_outvoted_only_by_a_quorum_that_answered_without_it() {
        let real = log(5, 0, 1);
        // Three answered, one shows a log: two answered without it, a quorum: a lie, dropped.
        let v = vote_logs(&[Some(vec![real.clone()]), Some(vec![]), Some(vec![])], 2).expect("vote");
        assert_eq!((v.rejected.len(), v.unresolved(2)), (1, 0));
        // Two answered (one down), one shows it: only one answered without it: read again.
        let v = vote_logs(&[Some(vec![real.clone()]), Some(vec![]), None], 2).expect("vote");
        assert_eq!((v.rejected.len(), v.unresolved(2)), (1, 1));
    }

    #[test]
    fn median_table() {
        assert_eq!(median(&[Some(10), Some(12), Some(1_000_000)], 2), Ok(12), "one provider asks a fortune");
        assert_eq!(median(&[Some(0), Some(12), Some(11)], 2), Ok(11), "one provider asks nothing");
        assert_eq!(median(&[Some(7), None, Some(9_000_000)], 2), Ok(7), "two answers: the lower one");
        assert!(matches!(median(&[Some(7), None, None], 2), Err(QuorumError::TooFewAnswers { answered: 1, .. })));
    }

    #[test]
    fn heads_pin_to_the_quorum_th_highest() {
        type Case<'a> = (&'a [Option<u64>], usize, Result<u64, QuorumError>);
        let cases: [Case; 5] = [
            (&[Some(10), Some(11), Some(12)], 2, Ok(11)),
            (&[Some(10), None, Some(12)], 2, Ok(10)),
            (&[Some(10), None, None], 2, Err(QuorumError::TooFewAnswers { answered: 1, quorum: 2 })),
            (&[Some(7)], 1, Ok(7)),
            (&[Some(5), Some(9), Some(9)], 3, Ok(5)),
        ];
        for (heads, q, want) in cases {
            assert_eq!(pinned_height(heads, q), want, "{heads:?} q={q}");
        }
    }

    #[test]
    fn scalar_agreement_table() {
        let a = Some(B256::repeat_byte(1));
        let b = Some(B256::repeat_byte(2));
        assert_eq!(agreed(&[a, a, b], 2), Ok(B256::repeat_byte(1)));
        assert_eq!(agreed(&[a, b, None], 2), Err(QuorumError::Disagreement { best: 1, quorum: 2 }));
        assert_eq!(agreed(&[a, None, None], 2), Err(QuorumError::TooFewAnswers { answered: 1, quorum: 2 }));
    }

    #[test]
    fn forged_altered_and_missing_logs() {
        let honest = vec![log(5, 0, 1), log(6, 1, 1)];
        let mut forger = honest.clone();
        forger.push(log(6, 2, 9)); // invented payment
        let mut alterer = honest.clone();
        alterer[0].data = Bytes::from(vec![7]); // changed amount
        let hider = vec![honest[1].clone()]; // hides a payment

        let v = vote_logs(&[Some(honest.clone()), Some(honest.clone()), Some(forger)], 2).expect("quorum");
        assert_eq!(v.accepted, honest);
        assert_eq!(v.rejected, vec![(log(6, 2, 9), 1)]);

        let v = vote_logs(&[Some(honest.clone()), Some(alterer), Some(honest.clone())], 2).expect("quorum");
        assert_eq!(v.accepted, honest);

        let v = vote_logs(&[Some(honest.clone()), Some(hider), Some(honest.clone())], 2).expect("quorum");
        assert_eq!(v.accepted, honest);

        assert!(vote_logs(&[Some(honest), None, None], 2).is_err());
    }

    proptest! {
        #[test]
        fn a_log_is_accepted_iff_quorum_providers_return_it(has in proptest::collection::vec(any::<bool>(), 1..7), q in 1usize..7) {
            let answers: Vec<Option<Vec<LogKey>>> = has.iter().map(|h| Some(if *h { vec![log(1, 0, 1)] } else { vec![] })).collect();
            let votes = has.iter().filter(|h| **h).count();
            match vote_logs(&answers, q) {
                Ok(v) => prop_assert_eq!(v.accepted.len() == 1, votes >= q),
                Err(_) => prop_assert!(has.len() < q),
            }
        }
    }
}
