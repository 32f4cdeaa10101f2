//! Pages of the merchants' replicated records, for a peer catching up: the registry by merchant
//! id, API keys by slot, webhook endpoints by id, each read as a range after where the last
//! page ended. A catch-up of any size then costs each answer a bounded read, and every record
//! travels (none is cut from a snapshot for being old).

use super::{
    API_KEYS, ApiKey, MERCHANT_REGISTRY, RegistryEntry, Store, StoreError, WEBHOOK_ENDPOINTS, WebhookEndpoint,
};
use serde::de::DeserializeOwned;

/// How much one page may hold: records and their stored bytes, shared by every kind a page
/// takes. A page holds at least one record when any remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBudget {
    /// Records left.
    pub records: usize,
    /// Stored bytes left.
    pub bytes: usize,
}

impl PageBudget {
    fn spent(&self) -> bool {
        self.records == 0 || self.bytes == 0
    }

    fn take(&mut self, bytes: usize) {
        self.records = self.records.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// Records of one kind after a key, and the key of the last one when more may follow.
pub type Page<K, T> = (Vec<T>, Option<K>);

/// Decodes rows into a page until `budget` is spent; `keep` drops rows that do not travel
/// (they still move the cursor). The page ends with a key whenever the budget is spent, even
/// at the table's last row (the next page is then empty): `None` says only that the table
/// ended with room left, so a page never passes to the next kind with its budget spent.
fn page_of<K, T: DeserializeOwned>(
    rows: impl Iterator<Item = Result<(K, Vec<u8>), StoreError>>,
    table: &'static str,
    budget: &mut PageBudget,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<K, T>, StoreError> {
    let mut out = Vec::new();
    for row in rows {
        let (key, bytes) = row?;
        let record: T = super::decode(table, &bytes)?;
        if keep(&record) {
            budget.take(bytes.len());
            out.push(record);
        }
        if budget.spent() {
            return Ok((out, Some(key)));
        }
    }
    Ok((out, None))
}

/// The rows of a table keyed by name after `after` (none: from the first), keys owned.
fn rows_after(
    t: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    after: Option<&str>,
) -> Result<impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + use<>, StoreError> {
    let rows = match after {
        Some(a) => t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?,
        None => t.range::<&str>(..)?,
    };
    Ok(rows.map(|r| r.map(|(k, v)| (k.value().to_string(), v.value().to_vec())).map_err(StoreError::from)))
}

impl Store {
    /// Registry records after merchant id `after` (version 0, seeded from a configuration and
    /// approved by nobody, does not travel).
    pub fn registry_page(
        &self,
        after: Option<&str>,
        budget: &mut PageBudget,
    ) -> Result<Page<String, RegistryEntry>, StoreError> {
        let tx = self.read()?;
        let rows = rows_after(&tx.open_table(MERCHANT_REGISTRY)?, after)?;
        page_of(rows, "merchant_registry", budget, |e: &RegistryEntry| e.change.version > 0)
    }

    /// API keys, revoked ones too, after slot `after`.
    pub fn api_keys_page(
        &self,
        after: Option<[u8; 32]>,
        budget: &mut PageBudget,
    ) -> Result<Page<[u8; 32], ApiKey>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(API_KEYS)?;
        let rows = match after {
            Some(a) => t.range::<[u8; 32]>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?,
            None => t.range::<[u8; 32]>(..)?,
        };
        let rows = rows.map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())).map_err(StoreError::from));
        page_of(rows, "api_keys", budget, |_: &ApiKey| true)
    }

    /// Webhook endpoints, deleted ones too, after id `after`: those made of the merchant's
    /// signed changes only (ones kept from before them do not travel).
    pub fn webhook_endpoints_page(
        &self,
        after: Option<&str>,
        budget: &mut PageBudget,
    ) -> Result<Page<String, WebhookEndpoint>, StoreError> {
        let tx = self.read()?;
        let rows = rows_after(&tx.open_table(WEBHOOK_ENDPOINTS)?, after)?;
        page_of(rows, "webhook_endpoints", budget, |e: &WebhookEndpoint| !e.statements.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    fn key(i: u8) -> ApiKey {
        ApiKey {
            id: format!("mk_{i:02}"),
            merchant_id: "m".into(),
            name: "k".into(),
            token_sha256: alloy::primitives::B256::repeat_byte(i),
            scopes: vec![],
            created_at_ms: u64::from(i),
            revoked_at_ms: None,
            public_key: None,
            grant: None,
            revocation: None,
        }
    }

    /// Pages follow each other without a gap or a repeat, each within its budget, and the
    /// last says nothing follows.
    #[test]
    fn pages_cover_every_record_once_within_their_budget() {
        let (_dir, store) = temp_store();
        for i in 1..=10 {
            store.put_api_key(&key(i)).expect("put");
        }
        let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let mut budget = PageBudget { records: 3, bytes: usize::MAX };
            let (keys, next) = store.api_keys_page(after, &mut budget).expect("page");
            assert!(keys.len() <= 3);
            seen.extend(keys.iter().map(|k| k.token_sha256.0[0]));
            pages += 1;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (1..=10).collect::<Vec<u8>>());
        assert_eq!(pages, 4);
        // A page spent at the table's last row names it: the next, empty, ends the table.
        let mut budget = PageBudget { records: 10, bytes: usize::MAX };
        let (keys, next) = store.api_keys_page(None, &mut budget).expect("page");
        assert_eq!((keys.len(), next.map(|n| n[0])), (10, Some(10)));
        let mut budget = PageBudget { records: 10, bytes: usize::MAX };
        assert_eq!(store.api_keys_page(next, &mut budget).expect("page").1, None);
        // A byte budget smaller than one record still moves: one record a page.
        let mut budget = PageBudget { records: 100, bytes: 1 };
        let (keys, next) = store.api_keys_page(None, &mut budget).expect("page");
        assert_eq!((keys.len(), next.map(|n| n[0])), (1, Some(1)));
    }
}
