//! Online backup, integrity check and restore of the store file.
//!
//! A backup copies every table inside one read transaction, so it is a consistent snapshot even
//! while the node keeps writing; the copy is then checked with redb's integrity check.

use super::*;
use redb::{Key, MultimapTableDefinition, ReadableMultimapTable, ReadableTable, Value};
use std::path::Path;

fn copy<K: Key + 'static, V: Value + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let src = from.open_table(def)?;
    let mut dst = to.open_table(def)?;
    let mut n = 0;
    for entry in src.iter()? {
        let (k, v) = entry?;
        dst.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}

fn copy_multimap<K: Key + 'static, V: Key + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    def: MultimapTableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let src = from.open_multimap_table(def)?;
    let mut dst = to.open_multimap_table(def)?;
    let mut n = 0;
    for entry in src.iter()? {
        let (k, values) = entry?;
        for v in values {
            dst.insert(k.value(), v?.value())?;
            n += 1;
        }
    }
    Ok(n)
}

impl Store {
    /// Writes a consistent copy of the store to `path` (which must not exist) and checks it.
    /// Returns the number of records copied.
    pub fn backup_to(&self, path: &Path) -> Result<u64, StoreError> {
        if path.exists() {
            return Err(StoreError::Corrupt {
                table: "backup",
                reason: format!("{} exists already; choose a new file", path.display()),
            });
        }
        let snapshot = self.read()?;
        let copy_db = Database::create(path)?;
        let tx = copy_db.begin_write()?;
        let mut n = 0;
        n += copy(&snapshot, &tx, INVOICES)?;
        n += copy(&snapshot, &tx, MERCHANT_INVOICES)?;
        n += copy(&snapshot, &tx, INVOICE_NONCES)?;
        n += copy(&snapshot, &tx, EXPIRIES)?;
        n += copy(&snapshot, &tx, UNANNOUNCED)?;
        n += copy(&snapshot, &tx, CREATED)?;
        n += copy(&snapshot, &tx, PAYMENTS)?;
        n += copy(&snapshot, &tx, PROCESSED)?;
        n += copy_multimap(&snapshot, &tx, INVOICE_PAYMENTS)?;
        n += copy(&snapshot, &tx, BLOCKS)?;
        n += copy(&snapshot, &tx, META)?;
        n += copy(&snapshot, &tx, STATE)?;
        n += copy(&snapshot, &tx, SIGNED)?;
        n += copy(&snapshot, &tx, SETTLEMENTS)?;
        n += copy(&snapshot, &tx, OUTBOX)?;
        n += copy(&snapshot, &tx, OUTBOX_BODIES)?;
        n += copy(&snapshot, &tx, OUTBOX_PENDING)?;
        n += copy(&snapshot, &tx, DEAD)?;
        n += copy(&snapshot, &tx, ATTEMPTS)?;
        n += copy(&snapshot, &tx, ACKS)?;
        n += copy(&snapshot, &tx, ACK_TIMES)?;
        n += copy(&snapshot, &tx, PROVISIONAL)?;
        n += copy(&snapshot, &tx, ENDPOINTS)?;
        n += copy(&snapshot, &tx, REVERSALS)?;
        n += copy(&snapshot, &tx, IDEMPOTENCY)?;
        n += copy(&snapshot, &tx, EPOCHS)?;
        n += copy(&snapshot, &tx, SET_APPROVALS)?;
        n += copy(&snapshot, &tx, MERCHANT_REGISTRY)?;
        n += copy(&snapshot, &tx, MERCHANT_CHANGES)?;
        n += copy(&snapshot, &tx, MERCHANT_APPROVALS)?;
        n += copy(&snapshot, &tx, MERCHANT_AUDIT)?;
        n += copy(&snapshot, &tx, API_KEYS)?;
        n += copy(&snapshot, &tx, MERCHANT_OWN)?;
        n += copy(&snapshot, &tx, WEBHOOK_ENDPOINTS)?;
        tx.commit()?;
        drop(copy_db);
        check(path)?;
        Ok(n)
    }
}

/// Checks the store file at `path` (which no node may have open): redb's integrity check, then
/// every table opens with its expected types.
pub fn check(path: &Path) -> Result<(), StoreError> {
    let mut db = Database::open(path)?;
    if !db.check_integrity().map_err(redb::Error::from)? {
        return Err(StoreError::Corrupt {
            table: "file",
            reason: "the integrity check repaired the file; keep a copy and investigate".into(),
        });
    }
    drop(db);
    Store::open(path).map(|_| ())
}

/// Replaces the store at `target` (no node may be running on it) with the backup at `backup`,
/// after checking the backup; the previous file is kept as `<target>.before-restore`.
pub fn restore(backup: &Path, target: &Path) -> Result<(), StoreError> {
    check(backup)?;
    let io = |e: std::io::Error| StoreError::Corrupt { table: "file", reason: e.to_string() };
    if target.exists() {
        std::fs::rename(target, target.with_extension("redb.before-restore")).map_err(io)?;
    }
    std::fs::copy(backup, target).map_err(io)?;
    check(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain::tests::payment;
    use crate::store::{StoredBlock, temp_store};
    use alloy::primitives::B256;

    #[test]
    fn backup_while_writing_restores_to_a_checked_store() {
        let (dir, store) = temp_store();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for b in 1..200u64 {
                    let to = StoredBlock { number: b, hash: B256::repeat_byte(b as u8), timestamp: b };
                    store.apply_range(to, &[payment(b, 0, (b % 7) as u8)], &[], &[]).expect("apply");
                }
            })
        };
        let backup = dir.path().join("backup.redb");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let copied = store.backup_to(&backup).expect("backup during writes");
        writer.join().expect("writer");
        assert!(copied > 0);
        assert!(store.backup_to(&backup).is_err(), "never overwrites");
        let target = dir.path().join("restored.redb");
        restore(&backup, &target).expect("restore");
        let restored = Store::open(&target).expect("open restored");
        let cp = restored.checkpoint().expect("checkpoint").expect("some");
        assert_eq!(restored.payments_in_range(0, cp).expect("payments").len() as u64, cp, "a consistent prefix");
    }

    /// Entries per table of the store at `path`, tables and multimap tables alike.
    fn table_sizes(db: &Database) -> std::collections::BTreeMap<String, u64> {
        use redb::{MultimapTableHandle, ReadableTableMetadata, TableHandle};
        let tx = db.begin_read().expect("read");
        let mut sizes = std::collections::BTreeMap::new();
        for h in tx.list_tables().expect("tables") {
            let len = tx.open_untyped_table(h.clone()).expect("open").len().expect("len");
            sizes.insert(h.name().to_string(), len);
        }
        for h in tx.list_multimap_tables().expect("tables") {
            let len = tx.open_untyped_multimap_table(h.clone()).expect("open").len().expect("len");
            sizes.insert(h.name().to_string(), len);
        }
        sizes
    }

    #[test]
    fn a_backup_holds_every_table_of_the_store() {
        let (dir, store) = temp_store();
        // Chain progress, an operator set and an approval of the next (operator sets are read
        // from the chain once, before the checkpoint moves past them: a backup without them
        // restores a node that knows no operators).
        store
            .apply_range(
                StoredBlock { number: 5, hash: B256::repeat_byte(5), timestamp: 5 },
                &[payment(5, 0, 1)],
                &[],
                &[],
            )
            .expect("apply");
        let spec =
            settleproof_consensus::OperatorSetSpec { epoch: 1, start_round: 5, threshold: 1, operators: Vec::new() };
        store.put_epoch(&spec).expect("epoch");
        store.put_set_approval(2, B256::repeat_byte(2), 0, &[1u8; 96]).expect("approval");
        // The merchant registry, a change waiting and its approval.
        let demo = settleproof_config::NodeConfig::from_toml_str(settleproof_config::EXAMPLE, std::iter::empty())
            .expect("example")
            .merchants
            .remove(0);
        store.seed_merchant(&demo, 1).expect("seed");
        let change = crate::store::MerchantChange { merchant: demo, disabled: true, version: 1, epoch: 0 };
        store.put_merchant_approval(&change, change.hash(), 0, &[1u8; 96], true).expect("merchant approval");
        let key = crate::store::ApiKey {
            id: "key_1".into(),
            merchant_id: "demo".into(),
            name: "ci".into(),
            scopes: vec![crate::store::Scope::InvoicesRead],
            token_sha256: B256::repeat_byte(9),
            created_at_ms: 1,
            revoked_at_ms: None,
            public_key: None,
            grant: None,
            revocation: None,
        };
        store.put_api_key(&key).expect("api key");
        let event = crate::store::OutboxEvent {
            id: "msg_1".into(),
            merchant_id: "demo".into(),
            event_type: "invoice.paid".into(),
            body: "{}".into(),
            ..Default::default()
        };
        store.enqueue_events(&[event], 1).expect("event");
        // An invoice this node created, not announced yet.
        let invoice = crate::store::Invoice {
            id: B256::repeat_byte(0x1c),
            merchant_id: "demo".into(),
            payout_address: alloy::primitives::Address::repeat_byte(1),
            amount: alloy::primitives::U256::from(1),
            token: alloy::primitives::Address::ZERO,
            created_at: 1,
            expires_at: None,
            metadata: None,
            created_by: "node-0".into(),
            nonce: B256::ZERO,
            idempotency: None,
            redirect_url: None,
            statement: None,
        };
        store.put_created_invoices(&[invoice]).expect("invoice");
        let backup = dir.path().join("backup.redb");
        store.backup_to(&backup).expect("backup");
        let source = table_sizes(store.db());
        drop(store);
        let copy = table_sizes(&Database::open(&backup).expect("open backup"));
        assert!(source["epochs"] > 0 && source["set_approvals"] > 0, "{source:?}");
        for t in [
            "merchant_registry",
            "merchant_changes",
            "merchant_approvals",
            "merchant_audit",
            "api_keys",
            "merchant_own_approvals",
            "outbox",
            "outbox_bodies",
            "unannounced_invoices",
        ] {
            assert!(source[t] > 0, "{t}: {source:?}");
        }
        // Every table of the store is in the backup with all its entries (a table the backup
        // leaves out would be there empty: the check after the copy opens every table).
        assert_eq!(source, copy);
    }
}
