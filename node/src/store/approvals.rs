//! Approvals of operator set changes this node made or heard on gossip
//! ([`crate::set_approval`]), kept across restarts until the next epoch is committed.

use super::{SET_APPROVALS, Store, StoreError};
use alloy::primitives::{B256, Bytes};
use redb::ReadableTable;

/// Most distinct sets one operator's approvals are kept for in one epoch: an honest operator
/// approves a handful of proposals at a time, a Byzantine one cannot fill the store.
pub const MAX_APPROVALS_PER_SIGNER: usize = 8;

/// What became of an approval offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalPut {
    /// Kept.
    New,
    /// This signer's approval of this set was kept already (the first one stays).
    Known,
    /// The signer has approvals of [`MAX_APPROVALS_PER_SIGNER`] other sets in the epoch: dropped.
    Limit,
}

/// One kept approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApproval {
    /// Hash of the approved set.
    pub set_hash: B256,
    /// Index of the approver in the epoch's set.
    pub signer: u32,
    /// Its signature.
    pub signature: Bytes,
}

impl Store {
    /// Keeps the approval of `set_hash` by operator `signer` of `epoch` (checked by the caller).
    pub fn put_set_approval(
        &self,
        epoch: u64,
        set_hash: B256,
        signer: u32,
        signature: &[u8],
    ) -> Result<ApprovalPut, StoreError> {
        let tx = self.db().begin_write()?;
        let put = {
            let mut t = tx.open_table(SET_APPROVALS)?;
            if t.get((epoch, set_hash.0, signer))?.is_some() {
                ApprovalPut::Known
            } else {
                let mut others = 0;
                for row in t.range((epoch, [0u8; 32], 0)..=(epoch, [0xff; 32], u32::MAX))? {
                    if row?.0.value().2 == signer {
                        others += 1;
                    }
                }
                if others >= MAX_APPROVALS_PER_SIGNER {
                    ApprovalPut::Limit
                } else {
                    t.insert((epoch, set_hash.0, signer), signature)?;
                    ApprovalPut::New
                }
            }
        };
        tx.commit()?;
        Ok(put)
    }

    /// Whether operator `signer` of `epoch` may have an approval of `set_hash` kept: it is kept
    /// already, or the signer has approvals of fewer than [`MAX_APPROVALS_PER_SIGNER`] sets.
    pub fn set_approval_fits(&self, epoch: u64, set_hash: B256, signer: u32) -> Result<bool, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SET_APPROVALS)?;
        let mut others = 0;
        for row in t.range((epoch, [0u8; 32], 0)..=(epoch, [0xff; 32], u32::MAX))? {
            let (_, hash, s) = row?.0.value();
            if s == signer {
                if hash == set_hash.0 {
                    return Ok(true);
                }
                others += 1;
            }
        }
        Ok(others < MAX_APPROVALS_PER_SIGNER)
    }

    /// Whether exactly this approval is kept (a repeat needs no pairing).
    pub fn has_set_approval(
        &self,
        epoch: u64,
        set_hash: B256,
        signer: u32,
        signature: &[u8],
    ) -> Result<bool, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SET_APPROVALS)?;
        Ok(t.get((epoch, set_hash.0, signer))?.is_some_and(|v| v.value() == signature))
    }

    /// The approvals kept for sets proposed to `epoch`, by set hash and signer.
    pub fn set_approvals(&self, epoch: u64) -> Result<Vec<StoredApproval>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(SET_APPROVALS)?;
        let mut out = Vec::new();
        for row in t.range((epoch, [0u8; 32], 0)..=(epoch, [0xff; 32], u32::MAX))? {
            let (k, v) = row?;
            let (_, hash, signer) = k.value();
            out.push(StoredApproval { set_hash: B256::from(hash), signer, signature: Bytes::from(v.value().to_vec()) });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use settleproof_consensus::OperatorSetSpec;

    #[test]
    fn approvals_are_kept_once_bounded_per_signer_and_dropped_with_their_epoch() {
        let (dir, store) = temp_store();
        let h = |b: u8| B256::repeat_byte(b);
        assert_eq!(store.put_set_approval(1, h(1), 2, &[7]).expect("put"), ApprovalPut::New);
        assert_eq!(store.put_set_approval(1, h(1), 2, &[8]).expect("again"), ApprovalPut::Known);
        assert!(store.has_set_approval(1, h(1), 2, &[7]).expect("read"));
        assert!(!store.has_set_approval(1, h(1), 2, &[8]).expect("read"), "the first one stays");
        for b in 2..MAX_APPROVALS_PER_SIGNER as u8 + 1 {
            assert_eq!(store.put_set_approval(1, h(b), 2, &[b]).expect("put"), ApprovalPut::New);
        }
        assert!(store.set_approval_fits(1, h(1), 2).expect("read"), "kept already");
        assert!(!store.set_approval_fits(1, h(0xee), 2).expect("read"), "a ninth set");
        assert_eq!(store.put_set_approval(1, h(0xee), 2, &[1]).expect("limit"), ApprovalPut::Limit);
        assert_eq!(store.put_set_approval(1, h(0xee), 3, &[1]).expect("another signer"), ApprovalPut::New);
        assert_eq!(store.put_set_approval(2, h(0xee), 2, &[1]).expect("another epoch"), ApprovalPut::New);
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(store.set_approvals(1).expect("read").len(), MAX_APPROVALS_PER_SIGNER + 1);
        // Epoch 2 committed: what epoch 1 approved is gone, epoch 2's stays.
        let spec = OperatorSetSpec { epoch: 2, start_round: 5, threshold: 1, operators: Vec::new() };
        store.put_epoch(&spec).expect("epoch");
        assert!(store.set_approvals(1).expect("read").is_empty());
        assert_eq!(store.set_approvals(2).expect("read").len(), 1);
    }
}
