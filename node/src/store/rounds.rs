//! Round state: what this node signed (the persisted signing guard), how rounds were settled,
//! and the next round to close.

use super::{META, NEXT_ROUND, SETTLEMENTS, SIGNED, Store, StoreError, decode, encode};
use alloy::primitives::{B256, U256};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use settleproof_consensus::{Batch, SignDecision, decide_signing};

/// The batch this node signed last for a round, with its signature (compressed, 48 bytes), and
/// the batches it signed for the round before, on chains a deep reorg replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBatch {
    /// The batch.
    pub batch: Batch,
    /// This node's BLS signature over the batch message.
    pub signature: alloy::primitives::Bytes,
    /// Batches signed earlier for the round, oldest first, each on another chain (another hash
    /// of the round's last block). Kept so that none of them is ever contradicted.
    #[serde(default)]
    pub earlier: Vec<Batch>,
    /// The round has no payments on the chain that replaced the one `batch` was built on:
    /// nothing is waited for or submitted (`batch` can never settle on this chain).
    #[serde(default)]
    pub abandoned: bool,
}

impl SignedBatch {
    /// Every batch signed for the round, oldest first.
    pub fn all(&self) -> Vec<Batch> {
        self.earlier.iter().copied().chain(std::iter::once(self.batch)).collect()
    }
}

/// How a round was settled on chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    /// Round.
    pub round: u64,
    /// Epoch of the operator set that signed.
    #[serde(default)]
    pub epoch: u64,
    /// Settled Merkle root.
    pub root: B256,
    /// Signer bitmap recorded on chain.
    pub signer_bitmap: U256,
    /// Settlement transaction.
    pub tx_hash: B256,
    /// Block of the settlement transaction.
    pub block_number: u64,
    /// Account that submitted it.
    #[serde(default)]
    pub submitter: alloy::primitives::Address,
    /// The signers' EIP-2537 G2 public keys in the epoch (256 bytes each), for receipts.
    #[serde(default)]
    pub signer_keys: alloy::primitives::Bytes,
    /// The EIP-2537 aggregate signature as submitted, for receipts.
    #[serde(default)]
    pub signature: alloy::primitives::Bytes,
    /// The batch's first block, as the `Settled` event states it.
    #[serde(default)]
    pub from_block: u64,
    /// The batch's last block, as the `Settled` event states it.
    #[serde(default)]
    pub to_block: u64,
    /// The hash of the batch's last block, as the `Settled` event states it.
    #[serde(default)]
    pub to_block_hash: B256,
    /// The batch's leaf count, as the `Settled` event states it.
    #[serde(default)]
    pub leaf_count: u32,
    /// Recorded before the watcher saw the `Settled` event at the confirmation depth: by this
    /// node's keeper from its own receipt, or read above the depth (`seen_ahead`). A reorg may still drop it: the watcher then
    /// removes the record and the round is settled again.
    #[serde(default)]
    pub provisional: bool,
    /// Provisional because the watcher read its `Settled` event above the confirmation depth
    /// (another keeper's settlement, most often): a shallow reorg dropping it is routine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen_ahead: bool,
}

/// Result of asking the guard to record a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningOutcome {
    /// Newly recorded.
    Recorded(SignedBatch),
    /// This exact batch was signed before; here is the stored signature.
    Existing(SignedBatch),
}

impl Store {
    /// Records a signature of `batch` unless the guard refuses it ([`decide_signing`]: a
    /// different batch was signed for the round on the same chain), checking and writing in
    /// one transaction. `sign` is called only when a signature is needed.
    pub fn record_signature(
        &self,
        batch: Batch,
        sign: impl FnOnce(&Batch) -> alloy::primitives::Bytes,
    ) -> Result<SigningOutcome, StoreError> {
        let tx = self.db().begin_write()?;
        let outcome = {
            let mut t = tx.open_table(SIGNED)?;
            let previous: Option<SignedBatch> = t.get(batch.round)?.map(|v| decode("signed", v.value())).transpose()?;
            let signed = previous.as_ref().map(SignedBatch::all).unwrap_or_default();
            let (record, outcome): (SignedBatch, fn(SignedBatch) -> SigningOutcome) =
                match decide_signing(&signed, &batch) {
                    SignDecision::Refuse { signed } => {
                        return Err(StoreError::Equivocation { round: batch.round, signed: signed.root });
                    }
                    SignDecision::TooManyChains => {
                        return Err(StoreError::TooManyChains { round: batch.round, signed: signed.len() });
                    }
                    SignDecision::AlreadySigned => match previous {
                        Some(p) if p.batch == batch && !p.signature.is_empty() && !p.abandoned => {
                            return Ok(SigningOutcome::Existing(p));
                        }
                        // Raised from the chain after a restore (no signature kept), or a batch
                        // of an earlier chain the round is back on: sign that same batch again
                        // (the same message signs to the same bytes).
                        Some(_) => {
                            let earlier = signed.into_iter().filter(|b| *b != batch).collect();
                            let signature = sign(&batch);
                            (SignedBatch { batch, signature, earlier, abandoned: false }, SigningOutcome::Existing)
                        }
                        None => return unreachable_signed(batch.round),
                    },
                    SignDecision::Sign => {
                        let signature = sign(&batch);
                        (
                            SignedBatch { batch, signature, earlier: Vec::new(), abandoned: false },
                            SigningOutcome::Recorded,
                        )
                    }
                    SignDecision::SignOnNewChain { .. } => {
                        let signature = sign(&batch);
                        (SignedBatch { batch, signature, earlier: signed, abandoned: false }, SigningOutcome::Recorded)
                    }
                };
            t.insert(batch.round, encode(&record).as_slice())?;
            outcome(record)
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Raises the signing guard to `batch`, which the chain shows this node signed (a restored
    /// backup may predate it): a round without a record gets this batch, with the signature
    /// left to be made again (the same batch signs to the same bytes); a round whose record
    /// lacks it keeps it among its earlier batches, so nothing contradicting it is signed.
    /// Returns whether the guard moved.
    pub fn raise_guard(&self, batch: Batch) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let raised = {
            let mut t = tx.open_table(SIGNED)?;
            let previous: Option<SignedBatch> = t.get(batch.round)?.map(|v| decode("signed", v.value())).transpose()?;
            let record = match previous {
                None => Some(SignedBatch {
                    batch,
                    signature: alloy::primitives::Bytes::new(),
                    earlier: Vec::new(),
                    abandoned: false,
                }),
                Some(p) if p.all().contains(&batch) => None,
                Some(mut p) => {
                    p.earlier.push(batch);
                    Some(p)
                }
            };
            match record {
                Some(r) => {
                    t.insert(batch.round, encode(&r).as_slice())?;
                    true
                }
                None => false,
            }
        };
        tx.commit()?;
        Ok(raised)
    }

    /// Marks the batch signed last for `round` as abandoned: the round has no payments on the
    /// chain now. Returns whether a signed, not yet abandoned record was marked.
    pub fn abandon_signed_round(&self, round: u64) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let marked = {
            let mut t = tx.open_table(SIGNED)?;
            let previous: Option<SignedBatch> = t.get(round)?.map(|v| decode("signed", v.value())).transpose()?;
            match previous {
                Some(mut p) if !p.abandoned => {
                    p.abandoned = true;
                    t.insert(round, encode(&p).as_slice())?;
                    true
                }
                _ => false,
            }
        };
        tx.commit()?;
        Ok(marked)
    }

    /// Why settlement is halted, if it is.
    pub fn halt_reason(&self) -> Result<Option<super::HaltReason>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(super::STATE)?;
        t.get("halt")?.map(|v| decode("state", v.value())).transpose()
    }

    /// Persists (or clears) the halt.
    pub fn set_halt_reason(&self, reason: Option<&super::HaltReason>) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(super::STATE)?;
            match reason {
                Some(r) => {
                    t.insert("halt", encode(r).as_slice())?;
                }
                None => {
                    t.remove("halt")?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Settlement records of the most recent rounds, newest first, at most `limit`.
    pub fn recent_settlements(&self, limit: usize) -> Result<Vec<SettlementRecord>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SETTLEMENTS)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(limit) {
            let (_, v) = e?;
            out.push(decode("settlements", v.value())?);
        }
        Ok(out)
    }

    /// The batch this node signed for `round`.
    pub fn signed_batch(&self, round: u64) -> Result<Option<SignedBatch>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SIGNED)?;
        t.get(round)?.map(|v| decode("signed", v.value())).transpose()
    }

    /// Rounds this node signed that are not settled yet and not abandoned, ascending.
    pub fn unsettled_signed_rounds(&self) -> Result<Vec<u64>, StoreError> {
        let tx = self.read()?;
        let signed = tx.open_table(SIGNED)?;
        let settled = tx.open_table(SETTLEMENTS)?;
        let mut out = Vec::new();
        for entry in signed.iter()? {
            let (k, v) = entry?;
            let round = k.value();
            let record: SignedBatch = decode("signed", v.value())?;
            if settled.get(round)?.is_none() && !record.abandoned {
                out.push(round);
            }
        }
        Ok(out)
    }

    /// How `round` was settled, if it was.
    pub fn settlement(&self, round: u64) -> Result<Option<SettlementRecord>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SETTLEMENTS)?;
        t.get(round)?.map(|v| decode("settlements", v.value())).transpose()
    }

    /// First round not yet closed by this node.
    pub fn next_round(&self) -> Result<u64, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(NEXT_ROUND)?.map_or(0, |v| v.value()))
    }

    /// Marks every round below `round` as closed. Not waited to disk: the next durable commit
    /// persists it, and a crash before that only closes those rounds again (their batches are
    /// the same, and the guard gives back the signature it recorded).
    pub fn set_next_round(&self, round: u64) -> Result<(), StoreError> {
        let tx = self.begin_bookkeeping()?;
        tx.open_table(META)?.insert(NEXT_ROUND, round)?;
        tx.commit()?;
        Ok(())
    }
}

/// `decide_signing` returns `AlreadySigned` only when a previous record exists.
fn unreachable_signed(round: u64) -> Result<SigningOutcome, StoreError> {
    Err(StoreError::Corrupt { table: "signed", reason: format!("guard state of round {round} is inconsistent") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use alloy::primitives::Bytes;

    fn batch(root: u8) -> Batch {
        on_chain(0xc0, root)
    }

    /// A batch of round 4 built on the chain whose block 24 has hash `chain`.
    fn on_chain(chain: u8, root: u8) -> Batch {
        Batch {
            epoch: 0,
            round: 4,
            from_block: 20,
            to_block: 24,
            to_block_hash: B256::repeat_byte(chain),
            root: B256::repeat_byte(root),
            leaf_count: 2,
        }
    }

    #[test]
    fn a_round_is_signed_again_only_on_a_new_chain_and_every_batch_survives_a_reopen() {
        let (dir, store) = temp_store();
        store.record_signature(on_chain(1, 1), |_| Bytes::from(vec![1])).expect("first");
        // A deep reorg replaced the round's blocks: its batch on the new chain is signed.
        let again = store.record_signature(on_chain(2, 2), |_| Bytes::from(vec![2])).expect("new chain");
        assert!(matches!(&again, SigningOutcome::Recorded(s) if s.earlier == vec![on_chain(1, 1)]), "{again:?}");
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        for refused in [on_chain(1, 3), on_chain(2, 1)] {
            let err = store.record_signature(refused, |_| panic!("must not sign")).expect_err("same chain");
            assert!(matches!(err, StoreError::Equivocation { round: 4, .. }), "{err}");
        }
        // Back on the first chain: its batch again, and the second is kept as earlier.
        let back = store.record_signature(on_chain(1, 1), |_| Bytes::from(vec![1])).expect("first chain again");
        assert!(matches!(&back, SigningOutcome::Existing(s) if s.earlier == vec![on_chain(2, 2)]), "{back:?}");
        assert_eq!(store.signed_batch(4).expect("read").map(|s| s.batch), Some(on_chain(1, 1)));
        // Bounded.
        for c in 3..settleproof_consensus::MAX_BATCHES_PER_ROUND as u8 + 1 {
            store.record_signature(on_chain(c, c), |_| Bytes::from(vec![c])).expect("another chain");
        }
        let err = store.record_signature(on_chain(0xee, 9), |_| panic!("must not sign")).expect_err("limit");
        assert!(matches!(err, StoreError::TooManyChains { round: 4, .. }), "{err}");
    }

    #[test]
    fn an_abandoned_round_is_not_waited_for_until_it_is_signed_again() {
        let (dir, store) = temp_store();
        store.record_signature(on_chain(1, 1), |_| Bytes::from(vec![1])).expect("first");
        assert_eq!(store.unsettled_signed_rounds().expect("read"), vec![4]);
        assert!(store.abandon_signed_round(4).expect("abandon"));
        assert!(!store.abandon_signed_round(4).expect("again"), "once");
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert!(store.unsettled_signed_rounds().expect("read").is_empty(), "abandoned across a restart");
        // The chain comes back to the first fork: the same batch, waited for again.
        let back = store.record_signature(on_chain(1, 1), |_| Bytes::from(vec![1])).expect("back");
        assert!(matches!(back, SigningOutcome::Existing(s) if !s.abandoned));
        assert_eq!(store.unsettled_signed_rounds().expect("read"), vec![4]);
    }

    #[test]
    fn a_guard_raised_from_the_chain_signs_that_batch_again_and_refuses_any_other() {
        let (_dir, store) = temp_store();
        assert!(store.raise_guard(batch(1)).expect("raise"));
        assert!(!store.raise_guard(batch(1)).expect("raise again"), "once");
        let err = store.record_signature(batch(2), |_| panic!("must not sign")).expect_err("refused");
        assert!(matches!(err, StoreError::Equivocation { round: 4, .. }), "{err}");
        let again = store.record_signature(batch(1), |_| Bytes::from(vec![7])).expect("same batch");
        assert!(matches!(again, SigningOutcome::Existing(s) if s.signature.as_ref() == [7u8]), "signed anew");
        assert_eq!(store.signed_batch(4).expect("read").map(|s| s.signature.to_vec()), Some(vec![7]));
        assert!(!store.raise_guard(batch(1)).expect("raise"), "held");
        // A batch of another chain the chain shows this node signed is remembered beside it.
        assert!(store.raise_guard(on_chain(7, 7)).expect("raise"));
        let held = store.signed_batch(4).expect("read").expect("record");
        assert_eq!((held.batch, held.earlier), (batch(1), vec![on_chain(7, 7)]));
        let err = store.record_signature(on_chain(7, 8), |_| panic!("must not sign")).expect_err("refused");
        assert!(matches!(err, StoreError::Equivocation { round: 4, .. }), "{err}");
    }

    #[test]
    fn guard_never_signs_two_roots_for_one_round_across_reopen() {
        let (dir, store) = temp_store();
        let first = store.record_signature(batch(1), |_| Bytes::from(vec![1])).expect("first");
        assert!(matches!(first, SigningOutcome::Recorded(_)));
        let again = store.record_signature(batch(1), |_| panic!("must not sign again")).expect("same");
        assert!(matches!(again, SigningOutcome::Existing(s) if s.signature.as_ref() == [1u8]));
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        let err = store.record_signature(batch(2), |_| panic!("must not sign")).expect_err("refused");
        assert!(matches!(err, StoreError::Equivocation { round: 4, .. }), "{err}");
        assert_eq!(store.signed_batch(4).expect("read").map(|s| s.batch.root), Some(B256::repeat_byte(1)));
    }
}
