//! Invoices as merchants created them.

use super::{INVOICES, Store, StoreError, decode, encode};
use alloy::primitives::{Address, B256, U256};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// An invoice as created through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Invoice id (also the on-chain `invoiceId`).
    pub id: B256,
    /// Merchant that created it.
    pub merchant_id: String,
    /// Merchant payout address the payment must go to.
    pub payout_address: Address,
    /// Amount due, in the token's base units.
    pub amount: U256,
    /// ERC-20 token, or the zero address for the native coin.
    pub token: Address,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// Free-form merchant data, returned as given.
    pub metadata: Option<serde_json::Value>,
    /// Node that took the request.
    pub created_by: String,
}

impl Store {
    /// Stores an invoice; an existing invoice with the same id is kept (idempotent replication).
    /// Returns whether it was new.
    pub fn put_invoice(&self, invoice: &Invoice) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let new = {
            let mut t = tx.open_table(INVOICES)?;
            let exists = t.get(invoice.id.0)?.is_some();
            if !exists {
                t.insert(invoice.id.0, encode(invoice).as_slice())?;
            }
            !exists
        };
        tx.commit()?;
        Ok(new)
    }

    /// The invoice with this id.
    pub fn invoice(&self, id: B256) -> Result<Option<Invoice>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(INVOICES)?;
        t.get(id.0)?
            .map(|v| decode("invoices", v.value()))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    #[test]
    fn put_is_idempotent_and_survives_reopen() {
        let (dir, store) = temp_store();
        let inv = Invoice {
            id: B256::repeat_byte(7),
            merchant_id: "m".into(),
            payout_address: Address::repeat_byte(1),
            amount: U256::from(5),
            token: Address::ZERO,
            created_at: 1,
            expires_at: None,
            metadata: Some(serde_json::json!({"order": 42})),
            created_by: "node-0".into(),
        };
        assert!(store.put_invoice(&inv).expect("put"));
        assert!(
            !store
                .put_invoice(&Invoice {
                    amount: U256::from(6),
                    ..inv.clone()
                })
                .expect("put again")
        );
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(store.invoice(inv.id).expect("get"), Some(inv));
        assert_eq!(store.invoice(B256::ZERO).expect("get"), None);
    }
}
