//! The attestation pool: signatures gathered per round until a quorum agrees on one batch.
//!
//! The pool counts votes without a pairing: a vote comes from its signer's own gossip message
//! (the network authenticates the publisher), so a bad signature can only be its signer's own
//! doing. A quorum is checked once, as one aggregate, by whoever uses it
//! ([`Quorum::aggregate_verified`]); when the aggregate fails, each signature is checked alone and
//! the forged ones are named, to be [discarded](AttestationPool::discard) and their signers'
//! later votes checked on arrival. Verifying every vote on arrival would cost each node one
//! pairing per operator and round; this costs the keeper one per round. One operator has one vote per round and chain (the hash of the round's last block,
//! [`Batch::to_block_hash`]): a second, different batch from the same signer on the same chain
//! is reported as equivocation and not counted. After a deep reorg an honest operator signs the
//! round again on the new chain ([`crate::guard`]); that vote is kept beside the first, up to
//! [`MAX_BATCHES_PER_ROUND`] per signer. Operator sets change by epochs: every batch names its
//! epoch, and its signers and threshold are that epoch's ([`AttestationPool::add_epoch`]).

use crate::batch::Batch;
use crate::bls::{BlsPublicKey, BlsSignature};
use crate::guard::MAX_BATCHES_PER_ROUND;
use alloy_primitives::{B256, U256};
use std::collections::BTreeMap;

/// What happened to an inserted attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new vote was counted.
    Added,
    /// The same signer already voted for the same batch; nothing changed.
    Duplicate,
    /// The signer already voted for a different batch in this round on the same chain.
    Equivocation {
        /// The batch counted first.
        first: Batch,
    },
    /// The signer already voted on [`MAX_BATCHES_PER_ROUND`] chains in this round; not counted.
    TooManyChains,
    /// The signer index is not in the operator set.
    UnknownSigner,
}

/// A quorum of signatures over one batch, ready to aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The batch they signed.
    pub batch: Batch,
    /// Bit i set when operator i signed.
    pub signer_bitmap: U256,
    /// Indices of the signers, ascending.
    pub signers: Vec<usize>,
    /// Their signatures, in the order of `signers`.
    pub signatures: Vec<BlsSignature>,
}

impl Quorum {
    /// The aggregate of the quorum's signatures, checked against `keys` (the signers' keys, in
    /// the order of [`Quorum::signers`]) over `message` with one pairing. When it does not
    /// verify, each signature is checked alone and the signers whose signature fails are
    /// returned (empty when none does, or when `keys` does not match the signers).
    pub fn aggregate_verified(&self, keys: &[BlsPublicKey], message: &[u8]) -> Result<BlsSignature, Vec<usize>> {
        if keys.len() != self.signers.len() {
            return Err(Vec::new());
        }
        if let Ok(aggregate) = BlsSignature::aggregate(&self.signatures)
            && aggregate.verify_aggregate(keys, message).is_ok()
        {
            return Ok(aggregate);
        }
        Err(self
            .signers
            .iter()
            .zip(&self.signatures)
            .zip(keys)
            .filter(|((_, sig), key)| sig.verify(key, message).is_err())
            .map(|((signer, _), _)| *signer)
            .collect())
    }
}

/// The votes of one round, by (signer, hash of the round's last block).
type RoundVotes = BTreeMap<(usize, B256), (Batch, BlsSignature)>;

/// Votes of every open round.
#[derive(Debug, Clone)]
pub struct AttestationPool {
    /// Operators and threshold of each known epoch.
    epochs: BTreeMap<u64, (usize, usize)>,
    rounds: BTreeMap<u64, RoundVotes>,
}

impl AttestationPool {
    /// A pool whose epoch 0 has `operators` operators (at most 256, one bit each) needing
    /// `threshold` votes.
    pub fn new(operators: usize, threshold: usize) -> Self {
        let mut pool = Self::empty();
        pool.add_epoch(0, operators, threshold);
        pool
    }

    /// A pool that knows no epoch yet.
    pub fn empty() -> Self {
        Self { epochs: BTreeMap::new(), rounds: BTreeMap::new() }
    }

    /// Makes (or updates) `epoch`, with `operators` operators needing `threshold` votes.
    pub fn add_epoch(&mut self, epoch: u64, operators: usize, threshold: usize) {
        self.epochs.insert(epoch, (operators, threshold));
    }

    /// Whether `epoch` is known.
    pub fn knows_epoch(&self, epoch: u64) -> bool {
        self.epochs.contains_key(&epoch)
    }

    /// Counts the vote of `signer` of the batch's epoch for `batch`.
    pub fn insert(&mut self, batch: Batch, signer: usize, signature: BlsSignature) -> InsertOutcome {
        let Some((operators, _)) = self.epochs.get(&batch.epoch) else { return InsertOutcome::UnknownSigner };
        if signer >= *operators || signer >= 256 {
            return InsertOutcome::UnknownSigner;
        }
        let votes = self.rounds.entry(batch.round).or_default();
        // Index `signer` is another operator in another epoch: the earlier votes were counted
        // while this node took the round for that epoch's (it had not learned the next set
        // yet). The caller only inserts votes of the epoch it now knows settles the round.
        votes.retain(|(s, _), (b, _)| *s != signer || b.epoch == batch.epoch);
        match votes.get(&(signer, batch.to_block_hash)) {
            Some((first, _)) if *first == batch => InsertOutcome::Duplicate,
            Some((first, _)) => InsertOutcome::Equivocation { first: *first },
            None if votes.range((signer, B256::ZERO)..=(signer, B256::repeat_byte(0xff))).count()
                >= MAX_BATCHES_PER_ROUND =>
            {
                InsertOutcome::TooManyChains
            }
            None => {
                votes.insert((signer, batch.to_block_hash), (batch, signature));
                InsertOutcome::Added
            }
        }
    }

    /// The quorum for `batch`, once its epoch's threshold of operators signed exactly that batch.
    pub fn quorum(&self, batch: &Batch) -> Option<Quorum> {
        let (_, threshold) = *self.epochs.get(&batch.epoch)?;
        let votes = self.rounds.get(&batch.round)?;
        let (signers, signatures): (Vec<usize>, Vec<BlsSignature>) =
            votes.iter().filter(|(_, (b, _))| b == batch).map(|((i, _), (_, s))| (*i, *s)).unzip();
        if signers.len() < threshold || threshold == 0 {
            return None;
        }
        let signer_bitmap = signers.iter().fold(U256::ZERO, |acc, i| acc | (U256::from(1u8) << *i));
        Some(Quorum { batch: *batch, signer_bitmap, signers, signatures })
    }

    /// Number of votes for `batch`.
    pub fn votes_for(&self, batch: &Batch) -> usize {
        self.rounds.get(&batch.round).map_or(0, |v| v.values().filter(|(b, _)| b == batch).count())
    }

    /// The votes of `signer` in `round`, one per chain.
    pub fn votes_of(&self, round: u64, signer: usize) -> Vec<(Batch, BlsSignature)> {
        self.votes(round).into_iter().filter(|(i, _, _)| *i == signer).map(|(_, b, s)| (b, s)).collect()
    }

    /// Every vote of `round`: (signer, batch, signature), by signer.
    pub fn votes(&self, round: u64) -> Vec<(usize, Batch, BlsSignature)> {
        self.rounds.get(&round).map_or_else(Vec::new, |v| v.iter().map(|((i, _), (b, s))| (*i, *b, *s)).collect())
    }

    /// Forgets a finished round.
    pub fn remove_round(&mut self, round: u64) {
        self.rounds.remove(&round);
    }

    /// Drops the vote of `signer` for `batch` (its signature was found forged); the signer may
    /// vote again.
    pub fn discard(&mut self, batch: &Batch, signer: usize) {
        if let Some(votes) = self.rounds.get_mut(&batch.round)
            && votes.get(&(signer, batch.to_block_hash)).is_some_and(|(b, _)| b == batch)
        {
            votes.remove(&(signer, batch.to_block_hash));
        }
    }

    /// Drops every vote of `signer` for batches of `epoch` (a forged signature of it was found:
    /// its other votes were counted unchecked too).
    pub fn discard_signer(&mut self, epoch: u64, signer: usize) {
        for votes in self.rounds.values_mut() {
            votes.retain(|(s, _), (b, _)| *s != signer || b.epoch != epoch);
        }
    }

    /// The vote of `signer` in `round` on the chain whose last block of the round is
    /// `to_block_hash`, if it voted there.
    pub fn vote(&self, round: u64, signer: usize, to_block_hash: B256) -> Option<(Batch, BlsSignature)> {
        self.rounds.get(&round)?.get(&(signer, to_block_hash)).copied()
    }

    /// Keeps of `round` only the votes on the chain whose block `to_block` has
    /// `to_block_hash` (the round was built again after a reorg replaced its blocks).
    pub fn keep_chain(&mut self, round: u64, to_block_hash: B256) {
        if let Some(votes) = self.rounds.get_mut(&round) {
            votes.retain(|(_, hash), _| *hash == to_block_hash);
        }
    }

    /// Keeps only the rounds `keep` accepts (the caller forgets those no longer considered).
    pub fn retain_rounds(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.rounds.retain(|round, _| keep(*round));
    }

    /// Rounds holding votes, ascending.
    pub fn rounds(&self) -> Vec<u64> {
        self.rounds.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::BlsSecretKey;
    use alloy_primitives::B256;
    use proptest::prelude::*;

    fn batch(round: u64, root: u8) -> Batch {
        Batch {
            epoch: 0,
            round,
            from_block: 0,
            to_block: 9,
            to_block_hash: B256::repeat_byte(0xcc),
            root: B256::repeat_byte(root),
            leaf_count: 1,
        }
    }

    fn sig(i: u8) -> BlsSignature {
        BlsSecretKey::from_ikm(&[i; 32]).expect("ikm").sign(b"m")
    }

    #[test]
    fn scripted_votes() {
        let mut pool = AttestationPool::new(4, 3);
        let a = batch(1, 0xaa);
        let b = batch(1, 0xbb);
        let steps = [
            (a, 0, InsertOutcome::Added, false),
            (a, 0, InsertOutcome::Duplicate, false),
            (b, 1, InsertOutcome::Added, false),
            (a, 1, InsertOutcome::Equivocation { first: b }, false),
            (a, 2, InsertOutcome::Added, false),
            (a, 9, InsertOutcome::UnknownSigner, false),
            (a, 3, InsertOutcome::Added, true),
        ];
        for (n, (bt, signer, want, quorum)) in steps.into_iter().enumerate() {
            assert_eq!(pool.insert(bt, signer, sig(signer as u8)), want, "step {n}");
            assert_eq!(pool.quorum(&a).is_some(), quorum, "step {n}");
        }
        let q = pool.quorum(&a).expect("quorum");
        assert_eq!(q.signers, vec![0, 2, 3]);
        assert_eq!(q.signer_bitmap, U256::from(0b1101));
        assert!(pool.quorum(&b).is_none());
        pool.remove_round(1);
        assert_eq!(pool.votes_for(&a), 0);
    }

    #[test]
    fn each_epoch_counts_with_its_own_set_and_threshold() {
        let mut pool = AttestationPool::empty();
        let e1 = Batch { epoch: 1, ..batch(5, 0xaa) };
        assert_eq!(pool.insert(e1, 0, sig(0)), InsertOutcome::UnknownSigner, "epoch not known yet");
        pool.add_epoch(0, 4, 3);
        pool.add_epoch(1, 5, 4);
        assert_eq!(pool.insert(e1, 4, sig(4)), InsertOutcome::Added, "operator 4 exists in epoch 1 only");
        assert_eq!(pool.insert(batch(6, 1), 4, sig(4)), InsertOutcome::UnknownSigner);
        for s in 0..3 {
            pool.insert(e1, s, sig(s as u8));
        }
        assert!(pool.quorum(&e1).is_some(), "4 of epoch 1");
        let e0 = batch(7, 2);
        for s in 0..3 {
            pool.insert(e0, s, sig(s as u8));
        }
        assert!(pool.quorum(&e0).is_some(), "3 of epoch 0");
        let raised = Batch { epoch: 1, ..batch(8, 3) };
        for s in 0..3 {
            pool.insert(raised, s, sig(s as u8));
        }
        assert!(pool.quorum(&raised).is_none(), "epoch 1 raised the threshold to 4");
        // A vote counted under an older epoch for a round the newer one settles is replaced,
        // not taken for an equivocation: index 2 is another operator in each epoch.
        let stale = batch(30, 4);
        assert_eq!(pool.insert(stale, 2, sig(2)), InsertOutcome::Added);
        let current = Batch { epoch: 1, ..batch(30, 5) };
        assert_eq!(pool.insert(current, 2, sig(7)), InsertOutcome::Added);
        assert_eq!(pool.votes_of(30, 2).into_iter().map(|(b, _)| b).collect::<Vec<_>>(), vec![current]);
    }

    #[test]
    fn a_round_signed_again_on_a_new_chain_counts_there_and_equivocation_stays_per_chain() {
        let mut pool = AttestationPool::new(4, 3);
        let old = batch(2, 0xaa);
        let new = Batch { to_block_hash: B256::repeat_byte(0xdd), ..batch(2, 0xbb) };
        for s in 0..3 {
            assert_eq!(pool.insert(old, s, sig(s as u8)), InsertOutcome::Added);
        }
        assert!(pool.quorum(&old).is_some());
        for s in 0..2 {
            assert_eq!(pool.insert(new, s, sig(s as u8)), InsertOutcome::Added, "signer {s} on the new chain");
        }
        assert!(pool.quorum(&new).is_none(), "two of three on the new chain");
        assert_eq!(pool.insert(new, 3, sig(3)), InsertOutcome::Added);
        assert_eq!(pool.quorum(&new).map(|q| q.signers), Some(vec![0, 1, 3]));
        // A second root on the new chain is still an equivocation.
        let other = Batch { root: B256::repeat_byte(0xee), ..new };
        assert_eq!(pool.insert(other, 0, sig(0)), InsertOutcome::Equivocation { first: new });
        assert_eq!(pool.votes_of(2, 0).len(), 2, "one vote per chain");
        // A signer inventing chains without end is capped.
        for c in 0..MAX_BATCHES_PER_ROUND as u8 {
            pool.insert(Batch { to_block_hash: B256::repeat_byte(c), ..old }, 3, sig(3));
        }
        assert_eq!(pool.votes_of(2, 3).len(), MAX_BATCHES_PER_ROUND);
        let extra = Batch { to_block_hash: B256::repeat_byte(0xfe), ..old };
        assert_eq!(pool.insert(extra, 3, sig(3)), InsertOutcome::TooManyChains);
        // Once the round is known to be on the new chain, only its votes stay.
        pool.keep_chain(2, new.to_block_hash);
        assert!(pool.votes(2).iter().all(|(_, b, _)| b.to_block_hash == new.to_block_hash));
        assert_eq!(pool.votes_of(2, 3).len(), 1);
        assert!(pool.quorum(&new).is_some());
        pool.insert(batch(7, 1), 0, sig(0));
        pool.retain_rounds(|r| r != 2);
        assert_eq!(pool.rounds(), vec![7]);
    }

    fn key(i: u8) -> BlsSecretKey {
        BlsSecretKey::from_ikm(&[i; 32]).expect("ikm")
    }

    #[test]
    fn a_quorum_verifies_as_one_aggregate_and_names_each_forged_signature() {
        let message = b"batch message";
        let keys: Vec<_> = (0..4u8).map(|i| key(i).public_key()).collect();
        let honest = |i: u8| key(i).sign(message);
        // What each signer sends, and which are found forged.
        let table: [(&str, [BlsSignature; 4], Vec<usize>); 5] = [
            ("all honest", [honest(0), honest(1), honest(2), honest(3)], vec![]),
            ("signed with another key", [honest(0), key(9).sign(message), honest(2), honest(3)], vec![1]),
            ("signed another message", [honest(0), honest(1), honest(2), key(3).sign(b"other")], vec![3]),
            ("another signer's signature", [honest(0), honest(1), honest(1), honest(3)], vec![2]),
            ("two forged", [key(9).sign(message), honest(1), honest(2), key(3).sign(b"x")], vec![0, 3]),
        ];
        for (case, sigs, forged) in table {
            let mut pool = AttestationPool::new(4, 3);
            let a = batch(1, 0xaa);
            for (i, s) in sigs.iter().enumerate() {
                assert_eq!(pool.insert(a, i, *s), InsertOutcome::Added, "{case}: counted without a pairing");
            }
            let q = pool.quorum(&a).expect("four votes");
            match q.aggregate_verified(&keys, message) {
                Ok(agg) => {
                    assert!(forged.is_empty(), "{case}: the aggregate of a forged signature verified");
                    assert!(agg.verify_aggregate(&keys, message).is_ok(), "{case}");
                }
                Err(bad) => {
                    assert_eq!(bad, forged, "{case}");
                    for s in &bad {
                        pool.discard(&a, *s);
                    }
                    // Without the forged votes, what is left verifies (or is no quorum).
                    match pool.quorum(&a) {
                        Some(q) => {
                            let left: Vec<_> = q.signers.iter().map(|i| keys[*i]).collect();
                            assert!(q.aggregate_verified(&left, message).is_ok(), "{case}: after discarding");
                        }
                        None => assert!(4 - forged.len() < 3, "{case}: quorum lost"),
                    }
                }
            }
        }
    }

    #[test]
    fn keys_that_do_not_match_the_signers_name_no_one() {
        let mut pool = AttestationPool::new(4, 3);
        let a = batch(1, 0xaa);
        for i in 0..3 {
            pool.insert(a, i, key(i as u8).sign(b"m"));
        }
        let q = pool.quorum(&a).expect("quorum");
        assert_eq!(q.aggregate_verified(&[key(0).public_key()], b"m"), Err(vec![]));
    }

    #[test]
    fn discarding_a_forged_vote_lets_its_signer_vote_again_and_keeps_the_others() {
        let mut pool = AttestationPool::new(4, 3);
        let a = batch(1, 0xaa);
        let other = batch(1, 0xbb);
        for i in 0..3 {
            pool.insert(a, i, sig(i as u8));
        }
        pool.discard(&other, 1);
        assert_eq!(pool.votes_for(&a), 3, "a vote for another batch is not the one discarded");
        pool.discard(&a, 1);
        assert_eq!(pool.votes_for(&a), 2);
        assert!(pool.quorum(&a).is_none());
        assert_eq!(pool.insert(a, 1, sig(1)), InsertOutcome::Added, "its signer votes again");
        assert!(pool.quorum(&a).is_some());
        pool.discard(&batch(9, 0xaa), 0);
        assert_eq!(pool.votes_for(&a), 3, "another round is untouched");
        assert_eq!(pool.vote(1, 1, a.to_block_hash), Some((a, sig(1))));
        assert_eq!(pool.vote(1, 1, B256::repeat_byte(1)), None, "no vote on another chain");
    }

    #[test]
    fn discarding_a_signer_drops_its_votes_of_that_epoch_only() {
        let mut pool = AttestationPool::new(4, 3);
        pool.add_epoch(1, 4, 3);
        let (r1, r2) = (batch(1, 0xaa), batch(2, 0xbb));
        let later = Batch { epoch: 1, ..batch(3, 0xcc) };
        for b in [r1, r2, later] {
            for i in 0..4 {
                pool.insert(b, i, sig(i as u8));
            }
        }
        pool.discard_signer(0, 2);
        assert_eq!(pool.votes(1).iter().map(|(i, _, _)| *i).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(pool.votes(2).len(), 3);
        assert_eq!(pool.votes(3).len(), 4, "index 2 of epoch 1 may be another operator");
    }

    proptest! {
        #[test]
        fn quorum_iff_threshold_distinct_signers(signers in proptest::collection::vec(0usize..7, 0..20), threshold in 1usize..8) {
            let mut pool = AttestationPool::new(7, threshold);
            let a = batch(3, 1);
            for s in &signers {
                pool.insert(a, *s, sig(*s as u8));
            }
            let distinct: std::collections::BTreeSet<_> = signers.iter().copied().collect();
            let q = pool.quorum(&a);
            prop_assert_eq!(q.is_some(), distinct.len() >= threshold);
            if let Some(q) = q {
                prop_assert_eq!(q.signers, distinct.into_iter().collect::<Vec<_>>());
                prop_assert_eq!(q.signer_bitmap.count_ones(), q.signatures.len());
            }
        }
    }
}
