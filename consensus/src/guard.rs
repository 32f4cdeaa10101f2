//! The signing guard: an operator never signs two different batches for one round of one
//! chain.
//!
//! A batch names the hash of its round's last block ([`Batch::to_block_hash`]), which fixes
//! every block of the round. On one chain a round has one batch, so a second batch with the
//! same hash is an equivocation and is refused. A reorg deeper than the confirmation depth can
//! replace the round's blocks, and with them its payments: the round's batch on the new chain
//! names another hash, and only then may the operator sign again. The earlier batch can no
//! longer settle, since the contract checks the hash against the chain. Without this, such a
//! round would stay unsettled for good.
//!
//! The rule is pure; the node persists every batch it signed per round and asks
//! [`decide_signing`] inside the same store transaction that records a new signature, so the
//! rule holds across restarts (as slashing protection does for Ethereum validators).

use crate::batch::Batch;

/// Most batches one operator signs for one round: one per chain its round's blocks were on.
/// Past it the guard refuses, which bounds what a round's record holds.
pub const MAX_BATCHES_PER_ROUND: usize = 8;

/// What the signer may do with a proposed batch for a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignDecision {
    /// Nothing signed yet for this round: sign and record.
    Sign,
    /// Signed before for this round, but on a chain whose block `to_block` had another hash:
    /// that chain is gone, so sign the round's batch on this one and record it beside the others.
    SignOnNewChain {
        /// The batch signed last.
        replaces: Batch,
    },
    /// This exact batch was signed before: re-use that signature.
    AlreadySigned,
    /// A different batch was signed before for this round on the same chain: refuse.
    Refuse {
        /// The batch signed earlier for the round on that chain.
        signed: Batch,
    },
    /// The operator signed [`MAX_BATCHES_PER_ROUND`] batches for the round already: refuse.
    TooManyChains,
}

/// Decides whether `proposed` may be signed given every batch signed earlier for its round
/// (`signed`, oldest first).
pub fn decide_signing(signed: &[Batch], proposed: &Batch) -> SignDecision {
    if signed.iter().any(|b| b == proposed) {
        return SignDecision::AlreadySigned;
    }
    if let Some(b) = signed.iter().find(|b| b.to_block_hash == proposed.to_block_hash) {
        return SignDecision::Refuse { signed: *b };
    }
    match signed.last() {
        None => SignDecision::Sign,
        Some(_) if signed.len() >= MAX_BATCHES_PER_ROUND => SignDecision::TooManyChains,
        Some(last) => SignDecision::SignOnNewChain { replaces: *last },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use proptest::prelude::*;

    fn batch(chain: u8, root: u8) -> Batch {
        Batch {
            epoch: 0,
            round: 4,
            from_block: 20,
            to_block: 24,
            to_block_hash: B256::repeat_byte(chain),
            root: B256::repeat_byte(root),
            leaf_count: 1,
        }
    }

    #[test]
    fn table() {
        let (a, a2, b, c) = (batch(1, 1), batch(1, 2), batch(2, 2), batch(3, 1));
        let cases: [(&[Batch], Batch, SignDecision); 9] = [
            (&[], a, SignDecision::Sign),
            (&[a], a, SignDecision::AlreadySigned),
            // Same chain, another root: equivocation.
            (&[a], a2, SignDecision::Refuse { signed: a }),
            // Same chain, same root, another epoch or range: still a second batch.
            (&[a], Batch { epoch: 1, ..a }, SignDecision::Refuse { signed: a }),
            (&[a], Batch { leaf_count: 2, ..a }, SignDecision::Refuse { signed: a }),
            // The round's blocks were replaced: sign its batch on the new chain.
            (&[a], b, SignDecision::SignOnNewChain { replaces: a }),
            // A third chain, even with the first chain's root.
            (&[a, b], c, SignDecision::SignOnNewChain { replaces: b }),
            // Back on the first chain: only its own batch, never another one.
            (&[a, b], a, SignDecision::AlreadySigned),
            (&[a, b], a2, SignDecision::Refuse { signed: a }),
        ];
        for (n, (signed, proposed, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide_signing(signed, &proposed), want, "case {n}");
        }
    }

    #[test]
    fn the_batches_of_one_round_are_bounded() {
        let signed: Vec<Batch> = (0..MAX_BATCHES_PER_ROUND as u8).map(|i| batch(i, i)).collect();
        assert_eq!(decide_signing(&signed, &batch(200, 1)), SignDecision::TooManyChains);
        assert_eq!(decide_signing(&signed, &signed[3]), SignDecision::AlreadySigned);
    }

    proptest! {
        /// Whatever is proposed, in any order, the signed batches of a round name distinct
        /// chains, and there are at most `MAX_BATCHES_PER_ROUND` of them.
        #[test]
        fn one_batch_per_chain(proposals in proptest::collection::vec((0u8..12, 0u8..3), 0..40)) {
            let mut signed: Vec<Batch> = Vec::new();
            for (chain, root) in proposals {
                let p = batch(chain, root);
                if matches!(decide_signing(&signed, &p), SignDecision::Sign | SignDecision::SignOnNewChain { .. }) {
                    signed.push(p);
                }
            }
            let chains: std::collections::BTreeSet<B256> = signed.iter().map(|b| b.to_block_hash).collect();
            prop_assert_eq!(chains.len(), signed.len());
            prop_assert!(signed.len() <= MAX_BATCHES_PER_ROUND);
        }
    }
}
