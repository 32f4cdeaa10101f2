//! Merchants' API keys beside the registry's primary token: several per merchant, each with a
//! name and scopes, created and revoked by the merchant on any node and replicated to all.
//!
//! A key is announced on gossip (topic [`KEYS_TOPIC`] of the first chain) by the node where it
//! was created or revoked; every node keeps it by its token's SHA-256 and checks it on each
//! request, so a revocation takes effect on a node as soon as it is heard. Revocations are
//! announced again for [`REVOKED_REBROADCAST_MS`] and creations for [`CREATED_REBROADCAST_MS`],
//! so a node that was offline catches up. A key is the word of the node that announced it: an
//! operator could announce a key for a merchant, but no key can change a payout address (that
//! takes the registry's threshold), and operators hold the merchants' data already.

use super::{Registry, RegistryError};
use crate::gossip::GossipRejection;
use crate::store::{ApiKey, KeyPut, Scope};
use crate::time::now_ms;
use alloy::primitives::B256;
use serde::{Deserialize, Serialize};
use settleproof_p2p::PeerId;
use tracing::info;

/// Topic of API key announcements.
pub const KEYS_TOPIC: &str = "settleproof/api-keys/1";
/// How long a creation is announced again.
pub const CREATED_REBROADCAST_MS: u64 = 60 * 60 * 1000;
/// How long a revocation is announced again.
pub const REVOKED_REBROADCAST_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most keys per merchant, revoked ones included.
pub const MAX_KEYS_PER_MERCHANT: usize = 64;

/// A key created or revoked, as gossiped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyAnnouncement {
    /// The key.
    pub key: ApiKey,
    /// Send time.
    pub sent_at_ms: u64,
}

/// Checks a key's own fields; `Err` names the field.
pub fn key_problem(key: &ApiKey) -> Option<(&'static str, &'static str)> {
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    if key.name.trim().is_empty() || key.name.len() > 64 || !printable(&key.name) {
        return Some(("name", "must be 1 to 64 printable characters"));
    }
    if key.scopes.is_empty() || key.scopes.len() > Scope::ALL.len() {
        return Some(("scopes", "must list one to three of invoices:write, invoices:read, webhooks:manage"));
    }
    let id_ok = key.id.strip_prefix("key_").is_some_and(|h| h.len() == 24 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !id_ok {
        return Some(("id", "must be `key_` and 24 hex digits"));
    }
    if key.token_sha256.is_zero() {
        return Some(("token_sha256", "must not be zero"));
    }
    None
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Registry {
    /// A new key of `merchant` named `name` with `scopes`, kept and announced; with its token,
    /// which is shown only now.
    pub fn create_key(
        &self,
        merchant: &str,
        name: &str,
        mut scopes: Vec<Scope>,
    ) -> Result<(ApiKey, String), RegistryError> {
        scopes.sort_unstable();
        scopes.dedup();
        let token = format!("sk_{}", random_hex(24));
        let key = ApiKey {
            id: format!("key_{}", random_hex(12)),
            merchant_id: merchant.to_string(),
            name: name.to_string(),
            scopes,
            token_sha256: crate::api::auth::token_hash(&token),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        if let Some((field, problem)) = key_problem(&key) {
            return Err(RegistryError::Invalid { field, problem: problem.into() });
        }
        let store = self.store()?;
        if store.api_keys(Some(merchant))?.len() >= MAX_KEYS_PER_MERCHANT {
            return Err(RegistryError::Conflict(format!(
                "the merchant has {MAX_KEYS_PER_MERCHANT} keys, the most kept (revoked ones count)"
            )));
        }
        match store.put_api_key(&key)? {
            KeyPut::Changed(_) => {}
            KeyPut::Known | KeyPut::Clash => {
                return Err(RegistryError::Conflict("key id or token taken; try again".into()));
            }
        }
        info!(merchant, key_id = %key.id, name = %key.name, "API key created");
        self.announce(&key);
        Ok((key, token))
    }

    /// Revokes key `id` of `merchant`, here at once and on the other nodes once they hear it.
    pub fn revoke_key(&self, merchant: &str, id: &str) -> Result<ApiKey, RegistryError> {
        let store = self.store()?;
        let mut key = store
            .api_keys(Some(merchant))?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| RegistryError::UnknownMerchant(format!("{merchant}'s key {id}")))?;
        if key.revoked_at_ms.is_none() {
            key.revoked_at_ms = Some(now_ms());
            store.put_api_key(&key)?;
            info!(merchant, key_id = %key.id, "API key revoked");
        }
        let key = store.api_key(key.token_sha256)?.unwrap_or(key);
        self.announce(&key);
        Ok(key)
    }

    /// Every key of `merchant`, revoked ones too.
    pub fn keys_of(&self, merchant: &str) -> Result<Vec<ApiKey>, RegistryError> {
        Ok(self.store()?.api_keys(Some(merchant))?)
    }

    /// The live key whose token hashes to `hash`, of a merchant that is served.
    pub fn live_key(&self, hash: B256) -> Option<ApiKey> {
        let key = self.0.store.as_ref()?.api_key(hash).ok().flatten()?;
        (key.revoked_at_ms.is_none() && self.get(&key.merchant_id).is_some()).then_some(key)
    }

    fn announce(&self, key: &ApiKey) {
        let Some(net) = self.0.net.get().cloned() else { return };
        let data = serde_json::to_vec(&KeyAnnouncement { key: key.clone(), sent_at_ms: now_ms() }).unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) = net.publish(KEYS_TOPIC, data).await {
                tracing::debug!(error = %e, "API key announcement not published yet; will rebroadcast");
            }
        });
    }

    /// The keys whose creation or revocation is still announced again.
    pub fn keys_to_rebroadcast(&self) -> Vec<ApiKey> {
        let Ok(store) = self.store() else { return Vec::new() };
        let now = now_ms();
        store
            .api_keys(None)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| match k.revoked_at_ms {
                Some(at) => now.saturating_sub(at) < REVOKED_REBROADCAST_MS,
                None => now.saturating_sub(k.created_at_ms) < CREATED_REBROADCAST_MS,
            })
            .collect()
    }

    /// Announces again the keys created or revoked lately.
    pub fn rebroadcast_keys(&self) {
        for k in self.keys_to_rebroadcast() {
            self.announce(&k);
        }
    }

    /// A key announcement heard from `source`: kept when its fields are valid, its merchant is
    /// in the registry and its token is no merchant's primary token. `Ok` with whether it
    /// changed anything.
    pub fn hear_key(&self, data: &[u8], source: &PeerId) -> Result<bool, GossipRejection> {
        let mut a: KeyAnnouncement =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        // A revocation counts from when this node heard it, whatever time it names: a
        // backdated one still gets its week of announcements from here.
        if a.key.revoked_at_ms.is_some() {
            a.key.revoked_at_ms = Some(now_ms());
        }
        let Some(store) = &self.0.store else { return Ok(false) };
        let bad = |m: String| GossipRejection::Malformed(format!("API key: {m}"));
        if let Some((field, problem)) = key_problem(&a.key) {
            return Err(bad(format!("{field} {problem}")));
        }
        let entries = store.registry_entries().map_err(|e| bad(e.to_string()))?;
        if !entries.iter().any(|e| e.change.merchant.id == a.key.merchant_id) {
            // This node may not have applied the merchant yet: the key is announced again.
            return Ok(false);
        }
        if entries.iter().any(|e| e.change.merchant.api_token_sha256 == a.key.token_sha256) {
            return Err(bad("its token is a merchant's primary token".into()));
        }
        let new_key = store.api_key(a.key.token_sha256).map_err(|e| bad(e.to_string()))?.is_none();
        if new_key
            && store.api_keys(Some(&a.key.merchant_id)).map_err(|e| bad(e.to_string()))?.len() >= MAX_KEYS_PER_MERCHANT
        {
            return Ok(false);
        }
        match store.put_api_key(&a.key).map_err(|e| bad(e.to_string()))? {
            KeyPut::Changed(k) => {
                info!(peer = %source, merchant = %k.merchant_id, key_id = %k.id, revoked = k.revoked_at_ms.is_some(), "API key heard");
                Ok(true)
            }
            KeyPut::Known => Ok(false),
            KeyPut::Clash => Err(bad("its id or token belongs to another key".into())),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::temp_store;
    use settleproof_config::{EXAMPLE, NodeConfig};

    pub(in crate::merchants) fn registries() -> (Vec<tempfile::TempDir>, Vec<Registry>) {
        let demo = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example").merchants;
        (0..2)
            .map(|_| {
                let (dir, store) = temp_store();
                let home = super::super::Home {
                    store,
                    epochs: crate::epochs::Epochs::new(PeerId::random(), 1, None),
                    chain_id: 1,
                    settlement: alloy::primitives::Address::ZERO,
                    url_policy: (true, true),
                    secret_overlap_ms: 60_000,
                };
                (dir, Registry::open(home, &demo).expect("open"))
            })
            .unzip()
    }

    fn relay(from: &Registry, to: &Registry, key: &ApiKey) -> Result<bool, GossipRejection> {
        let data = serde_json::to_vec(&KeyAnnouncement { key: key.clone(), sent_at_ms: 1 }).expect("json");
        let _ = from;
        to.hear_key(&data, &PeerId::random())
    }

    #[test]
    fn a_key_created_on_one_node_works_on_another_until_its_revocation_arrives() {
        let (_dirs, nodes) = registries();
        let (key, token) =
            nodes[0].create_key("demo", "ci", vec![Scope::InvoicesRead, Scope::InvoicesRead]).expect("create");
        assert_eq!(key.scopes, vec![Scope::InvoicesRead], "scopes deduplicated");
        let hash = crate::api::auth::token_hash(&token);
        assert!(nodes[1].live_key(hash).is_none());
        assert!(relay(&nodes[0], &nodes[1], &key).expect("heard"));
        assert_eq!(nodes[1].live_key(hash).map(|k| k.id), Some(key.id.clone()));
        let revoked = nodes[0].revoke_key("demo", &key.id).expect("revoke");
        assert!(nodes[0].live_key(hash).is_none());
        assert!(relay(&nodes[0], &nodes[1], &revoked).expect("heard"));
        assert!(nodes[1].live_key(hash).is_none(), "refused once the revocation is heard");
        // The creation announced again later does not revive it.
        assert!(!relay(&nodes[0], &nodes[1], &key).expect("heard"));
        assert!(nodes[1].live_key(hash).is_none());
        assert!(nodes[0].keys_to_rebroadcast().iter().any(|k| k.id == key.id && k.revoked_at_ms.is_some()));
        // A revocation heard with a time long past is announced again from here all the same.
        let (other, _) = nodes[0].create_key("demo", "old", vec![Scope::InvoicesRead]).expect("create");
        relay(&nodes[0], &nodes[1], &other).expect("heard");
        let backdated = ApiKey { revoked_at_ms: Some(1), ..other.clone() };
        assert!(relay(&nodes[0], &nodes[1], &backdated).expect("heard"));
        assert!(
            nodes[1].keys_to_rebroadcast().iter().any(|k| k.id == other.id && k.revoked_at_ms.is_some_and(|t| t > 1))
        );
    }

    #[test]
    fn announcements_that_no_node_would_make_are_refused() {
        let (_dirs, nodes) = registries();
        let (key, _) = nodes[0].create_key("demo", "ci", vec![Scope::InvoicesWrite]).expect("create");
        let primary = nodes[0].get("demo").expect("demo").api_token_sha256;
        let cases = [
            (ApiKey { token_sha256: primary, ..key.clone() }, "the merchant's primary token"),
            (ApiKey { scopes: Vec::new(), ..key.clone() }, "no scope"),
            (ApiKey { name: "\n".into(), ..key.clone() }, "a bad name"),
            (ApiKey { id: "key_x".into(), ..key.clone() }, "a bad id"),
        ];
        for (k, what) in cases {
            assert!(relay(&nodes[0], &nodes[1], &k).is_err(), "{what}");
        }
        let ghost = ApiKey { merchant_id: "ghost".into(), ..key.clone() };
        assert!(!relay(&nodes[0], &nodes[1], &ghost).expect("ignored"), "a merchant not known here (yet)");
        let err = nodes[0].create_key("demo", "", vec![Scope::InvoicesRead]).expect_err("no name");
        assert!(matches!(err, RegistryError::Invalid { field: "name", .. }), "{err}");
        assert!(nodes[1].keys_of("demo").expect("keys").is_empty());
    }
}
