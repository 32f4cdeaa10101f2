//! Merchants' API keys: public keys the merchant granted with a request signed by its root key,
//! kept with that request, by the SHA-256 of their key id (the table's key, named
//! `token_sha256` since bearer keys were kept by their token's hash). A revocation is final:
//! once a key is revoked here, no later announcement of it revives it.

use super::{API_KEYS, Store, StoreError, decode, encode};
use alloy::primitives::B256;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use settleproof_merchant_auth::{MerchantKey, SignedStatement};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    /// Create invoices.
    #[serde(rename = "invoices:write")]
    InvoicesWrite,
    /// Read invoices and receipts.
    #[serde(rename = "invoices:read")]
    InvoicesRead,
    /// Manage webhooks (send a test event).
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::InvoicesWrite, Scope::InvoicesRead, Scope::WebhooksManage];

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvoicesWrite => "invoices:write",
            Self::InvoicesRead => "invoices:read",
            Self::WebhooksManage => "webhooks:manage",
        }
    }
}

/// One API key of a merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Its id (`key_` and 24 hex digits), for listing and revoking.
    pub id: String,
    /// The merchant.
    pub merchant_id: String,
    /// A name the merchant chose.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The table's key: SHA-256 of its merchant and key id ([`key_slot`]).
    pub token_sha256: B256,
    /// When it was created.
    pub created_at_ms: u64,
    /// When it was revoked.
    pub revoked_at_ms: Option<u64>,
    /// Its public half: requests signed with it act within its scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<MerchantKey>,
    /// The merchant's request that granted it (`POST /v1/api-keys`, signed by the root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<SignedStatement>,
    /// The merchant's request that revoked it (`DELETE /v1/api-keys/{id}`, signed by the root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<SignedStatement>,
}

/// Where key `id` of `merchant` is kept: the SHA-256 of both. Per merchant, so a merchant that
/// grants itself another merchant's public key (public keys are no secret) takes nothing from
/// that merchant.
pub fn key_slot(merchant: &str, id: &str) -> B256 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(merchant.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    B256::from_slice(&h.finalize())
}

/// What became of a key offered to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPut {
    /// Kept: a new key, or a revocation of a known one.
    Changed(Box<ApiKey>),
    /// Nothing new.
    Known,
    /// Another key (or another merchant's) has this token hash, or this id: refused.
    Clash,
}

impl Store {
    /// Keeps `key`, or the revocation it carries: a key is created once (its fields then stay)
    /// and revoked once (the earliest revocation time stays).
    pub fn put_api_key(&self, key: &ApiKey) -> Result<KeyPut, StoreError> {
        let tx = self.db().begin_write()?;
        let put = {
            let mut t = tx.open_table(API_KEYS)?;
            let held: Option<ApiKey> = t.get(key.token_sha256.0)?.map(|v| decode("api_keys", v.value())).transpose()?;
            match held {
                Some(h) if h.id != key.id || h.merchant_id != key.merchant_id => KeyPut::Clash,
                Some(mut h) => match (h.revoked_at_ms, key.revoked_at_ms) {
                    (None, Some(at)) => {
                        h.revoked_at_ms = Some(at);
                        h.revocation = key.revocation.clone();
                        t.insert(key.token_sha256.0, encode(&h).as_slice())?;
                        KeyPut::Changed(Box::new(h))
                    }
                    (Some(held_at), Some(at)) if at < held_at => {
                        h.revoked_at_ms = Some(at);
                        t.insert(key.token_sha256.0, encode(&h).as_slice())?;
                        KeyPut::Known
                    }
                    _ => KeyPut::Known,
                },
                None => {
                    let mut clash = false;
                    for row in t.iter()? {
                        let other: ApiKey = decode("api_keys", row?.1.value())?;
                        clash |= other.id == key.id && other.merchant_id == key.merchant_id;
                    }
                    if clash {
                        KeyPut::Clash
                    } else {
                        t.insert(key.token_sha256.0, encode(key).as_slice())?;
                        KeyPut::Changed(Box::new(key.clone()))
                    }
                }
            }
        };
        tx.commit()?;
        Ok(put)
    }

    /// Keeps `key` in place of `held` (a key granted again after the root key that granted it
    /// was replaced: the caller checked the new grant), in one transaction and only while its
    /// slot still holds exactly `held` (a revocation stored meanwhile stays). Whether it did.
    pub fn replace_api_key(&self, key: &ApiKey, held: &ApiKey) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let replaced = {
            let mut t = tx.open_table(API_KEYS)?;
            let now: Option<ApiKey> = t.get(key.token_sha256.0)?.map(|v| decode("api_keys", v.value())).transpose()?;
            if now.as_ref() == Some(held) {
                t.insert(key.token_sha256.0, encode(key).as_slice())?;
                true
            } else {
                false
            }
        };
        tx.commit()?;
        Ok(replaced)
    }

    /// The key kept at `hash` ([`key_slot`] of its id).
    pub fn api_key(&self, hash: B256) -> Result<Option<ApiKey>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(API_KEYS)?;
        t.get(hash.0)?.map(|v| decode("api_keys", v.value())).transpose()
    }

    /// Every key of `merchant` (every key when `None`), revoked ones too.
    pub fn api_keys(&self, merchant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(API_KEYS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let k: ApiKey = decode("api_keys", row?.1.value())?;
            if merchant.is_none_or(|m| m == k.merchant_id) {
                out.push(k);
            }
        }
        out.sort_by_key(|k| (k.created_at_ms, k.id.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    fn key(id: &str, merchant: &str, hash: u8) -> ApiKey {
        ApiKey {
            id: id.into(),
            merchant_id: merchant.into(),
            name: "ci".into(),
            scopes: vec![Scope::InvoicesRead],
            token_sha256: B256::repeat_byte(hash),
            created_at_ms: 1,
            revoked_at_ms: None,
            public_key: None,
            grant: None,
            revocation: None,
        }
    }

    #[test]
    fn a_key_is_created_once_and_a_revocation_is_final() {
        let (dir, store) = temp_store();
        let k = key("key_1", "shop", 1);
        assert_eq!(store.put_api_key(&k).expect("put"), KeyPut::Changed(Box::new(k.clone())));
        assert_eq!(store.put_api_key(&k).expect("again"), KeyPut::Known);
        let widened = ApiKey { scopes: Scope::ALL.to_vec(), ..k.clone() };
        assert_eq!(store.put_api_key(&widened).expect("widen"), KeyPut::Known, "fields stay as created");
        assert_eq!(store.put_api_key(&key("key_1", "other", 1)).expect("clash"), KeyPut::Clash);
        assert_eq!(store.put_api_key(&key("key_2", "shop", 1)).expect("clash"), KeyPut::Clash);
        assert_eq!(
            store.put_api_key(&key("key_1", "shop", 2)).expect("clash"),
            KeyPut::Clash,
            "a second hash under one id"
        );
        let revoked = ApiKey { revoked_at_ms: Some(50), ..k.clone() };
        assert!(matches!(store.put_api_key(&revoked).expect("revoke"), KeyPut::Changed(_)));
        assert_eq!(store.put_api_key(&k).expect("revive"), KeyPut::Known, "no announcement revives it");
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        let held = store.api_key(B256::repeat_byte(1)).expect("read").expect("held");
        assert_eq!((held.revoked_at_ms, held.scopes), (Some(50), vec![Scope::InvoicesRead]));
        assert_eq!(store.api_keys(Some("shop")).expect("list").len(), 1);
        assert!(store.api_keys(Some("other")).expect("list").is_empty());
    }
}
