//! The operator sets committed on chain, by epoch, so a restarted node knows them before its
//! watcher reads the chain again.

use super::{EPOCHS, SET_APPROVALS, Store, StoreError, decode, encode};
use redb::ReadableTable;
use settleproof_consensus::OperatorSetSpec;

impl Store {
    /// Records the set of `spec.epoch` (idempotent: the chain's set of an epoch never changes).
    /// Approvals of set changes made by earlier epochs are dropped with it: only the latest
    /// epoch can install the next set.
    pub fn put_epoch(&self, spec: &OperatorSetSpec) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(EPOCHS)?;
            t.insert(spec.epoch, encode(spec).as_slice())?;
            tx.open_table(SET_APPROVALS)?.retain_in(..(spec.epoch, [0u8; 32], 0), |_, _| false)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every recorded set, by epoch.
    pub fn epochs(&self) -> Result<Vec<OperatorSetSpec>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(EPOCHS)?;
        t.iter()?.map(|row| decode("epochs", row?.1.value())).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::store::temp_store;
    use settleproof_consensus::{BlsSecretKey, OperatorRecord, OperatorSetSpec};

    #[test]
    fn epochs_survive_a_reopen_in_order() {
        let (dir, store) = temp_store();
        let record = OperatorRecord {
            name: "a".into(),
            account: alloy::primitives::Address::repeat_byte(1),
            peer_id: vec![1u8; 38].into(),
            p2p_addr: "/ip4/127.0.0.1/tcp/1".into(),
            bls: BlsSecretKey::from_ikm(&[1; 32]).expect("ikm").public_key(),
        };
        let specs: Vec<OperatorSetSpec> = [1u64, 0]
            .iter()
            .map(|e| OperatorSetSpec { epoch: *e, start_round: e * 10, threshold: 1, operators: vec![record.clone()] })
            .collect();
        for s in &specs {
            store.put_epoch(s).expect("put");
            store.put_epoch(s).expect("again");
        }
        drop(store);
        let store = crate::store::Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        let got = store.epochs().expect("read");
        assert_eq!(got.iter().map(|s| s.epoch).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(got[1], specs[0]);
    }
}
