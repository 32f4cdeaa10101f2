//! Chain progress: confirmed payments, settlements seen on chain and the checkpoint, written
//! together per processed block range.

use super::rounds::SettlementRecord;
use super::{INVOICE_PAYMENTS, META, PAYMENTS, SETTLEMENTS, Store, StoreError, decode, encode};
use alloy::primitives::B256;
use redb::ReadableTable;
use settleproof_consensus::PaymentLeaf;

const CHECKPOINT: &str = "checkpoint";

/// What applying a block range changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeApplied {
    /// Payments stored for the first time.
    pub new_payments: usize,
    /// Payments that were already stored and were dropped.
    pub duplicates: usize,
}

impl Store {
    /// Last block whose logs are fully processed, if any.
    pub fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(CHECKPOINT)?.map(|v| v.value()))
    }

    /// Atomically stores the confirmed payments and settlements of blocks up to `to_block` and
    /// moves the checkpoint there. Payments already stored are dropped and counted.
    pub fn apply_range(
        &self,
        to_block: u64,
        payments: &[PaymentLeaf],
        settlements: &[SettlementRecord],
    ) -> Result<RangeApplied, StoreError> {
        let tx = self.db().begin_write()?;
        let mut applied = RangeApplied::default();
        {
            let mut pay = tx.open_table(PAYMENTS)?;
            let mut by_invoice = tx.open_multimap_table(INVOICE_PAYMENTS)?;
            for p in payments {
                let key = (p.block_number, p.log_index);
                if pay.get(key)?.is_some() {
                    applied.duplicates += 1;
                    continue;
                }
                pay.insert(key, encode(p).as_slice())?;
                by_invoice.insert(p.invoice_id.0, key)?;
                applied.new_payments += 1;
            }
            let mut settled = tx.open_table(SETTLEMENTS)?;
            for s in settlements {
                if settled.get(s.round)?.is_none() {
                    settled.insert(s.round, encode(s).as_slice())?;
                }
            }
            tx.open_table(META)?.insert(CHECKPOINT, to_block)?;
        }
        tx.commit()?;
        Ok(applied)
    }

    /// Confirmed payments in blocks `from..=to`, in (block, log index) order.
    pub fn payments_in_range(&self, from: u64, to: u64) -> Result<Vec<PaymentLeaf>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(PAYMENTS)?;
        let mut out = Vec::new();
        for entry in t.range((from, 0)..=(to, u64::MAX))? {
            let (_, v) = entry?;
            out.push(decode("payments", v.value())?);
        }
        Ok(out)
    }

    /// Confirmed payments of one invoice, in chain order.
    pub fn payments_of_invoice(&self, invoice: B256) -> Result<Vec<PaymentLeaf>, StoreError> {
        let tx = self.read()?;
        let index = tx.open_multimap_table(INVOICE_PAYMENTS)?;
        let pay = tx.open_table(PAYMENTS)?;
        let mut out = Vec::new();
        for key in index.get(invoice.0)? {
            if let Some(v) = pay.get(key?.value())? {
                out.push(decode("payments", v.value())?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use alloy::primitives::{Address, U256};

    pub(crate) fn payment(block: u64, log_index: u64, invoice: u8) -> PaymentLeaf {
        PaymentLeaf {
            chain_id: 31337,
            tx_hash: B256::repeat_byte(block as u8),
            log_index,
            block_number: block,
            invoice_id: B256::repeat_byte(invoice),
            merchant: Address::repeat_byte(2),
            payer: Address::repeat_byte(3),
            token: Address::ZERO,
            amount: U256::from(10),
        }
    }

    #[test]
    fn range_is_atomic_idempotent_and_ordered() {
        let (_dir, store) = temp_store();
        assert_eq!(store.checkpoint().expect("read"), None);
        let batch = [payment(5, 1, 1), payment(3, 0, 1), payment(9, 0, 2)];
        let applied = store.apply_range(10, &batch, &[]).expect("apply");
        assert_eq!(
            applied,
            RangeApplied {
                new_payments: 3,
                duplicates: 0
            }
        );
        let again = store
            .apply_range(10, &batch[..1], &[])
            .expect("apply again");
        assert_eq!(
            again,
            RangeApplied {
                new_payments: 0,
                duplicates: 1
            }
        );
        assert_eq!(store.checkpoint().expect("read"), Some(10));
        let in_range: Vec<_> = store
            .payments_in_range(3, 5)
            .expect("range")
            .iter()
            .map(|p| p.order_key())
            .collect();
        assert_eq!(in_range, vec![(3, 0), (5, 1)]);
        assert_eq!(
            store
                .payments_of_invoice(B256::repeat_byte(1))
                .expect("by invoice")
                .len(),
            2
        );
    }
}
