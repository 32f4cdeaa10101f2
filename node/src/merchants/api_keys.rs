//! Merchants' API keys beside the root key: public keys the merchant grants, each with a name
//! and scopes, on any node, replicated to all.
//!
//! A key exists only through the merchant's own signed request: `POST /v1/api-keys` signed by
//! the root key that the merchant's registry record holds grants it, `DELETE
//! /v1/api-keys/{id}` signed the same way revokes it. The node that served the request keeps
//! it with the key (a [`SignedStatement`]) and announces both on gossip (topic [`KEYS_TOPIC`] of
//! the first chain); every node checks the statements against the root key itself before it
//! keeps, applies or relays a key, in gossip and in catch-up alike. So no operator can mint,
//! alter or revoke a merchant's key: it would need the merchant's signature over that very
//! key, its scopes and its name. A key whose statements do not verify here is ignored (this
//! node's registry may hold another root key), counted, and its relayer not blamed.
//! Creations are announced again for [`REANNOUNCE_MS`] (while gossip forms its mesh),
//! revocations for [`REVOKED_REANNOUNCE_MS`]; a node that missed them later gets them by catch-up on connect, or by pulling
//! from a peer whose digest differs (`super::digests`). Replacing the root key
//! (a registry change) leaves the keys it granted without a valid grant: they stop working.

use super::audience::unnamed;
use super::{Registry, RegistryError};
use crate::gossip::GossipRejection;
use crate::store::{ApiKey, KeyPut, Scope, key_slot};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use settleproof_merchant_auth::{MerchantKey, SignedStatement};
use settleproof_p2p::PeerId;
use tracing::{info, warn};

/// Topic of API key announcements.
pub const KEYS_TOPIC: &str = "settleproof/api-keys/1";
/// How long a creation is announced again, from its signing (which may be up to 150 s before
/// a node took it).
pub const REANNOUNCE_MS: u64 = 5 * 60 * 1000;
/// How long a revocation is announced again, from when this node took it: the records that
/// matter most travel longest.
pub const REVOKED_REANNOUNCE_MS: u64 = 60 * 60 * 1000;
/// How long a revoked key still counts against [`MAX_KEYS_PER_MERCHANT`].
pub const REVOKED_COUNTED_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most keys per merchant that are live or were revoked within [`REVOKED_COUNTED_MS`]:
/// creating and revoking keys in a loop cannot grow what every node holds and sends.
pub const MAX_KEYS_PER_MERCHANT: usize = 64;
/// Keys announced again per rebroadcast tick at most, the most recent first.
pub const MAX_REBROADCAST: usize = 64;
/// Longest grant body (a name, scopes and a public key need far less).
pub const MAX_GRANT_BODY: usize = 1024;
/// Longest signed request kept as a grant or revocation.
pub const MAX_STATEMENT_JWT: usize = 2048;
/// The path a grant is signed for.
pub const GRANT_PATH: &str = "/v1/api-keys";

/// A key created or revoked, as gossiped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyAnnouncement {
    /// The key.
    pub key: ApiKey,
    /// Send time.
    pub sent_at_ms: u64,
}

/// What the merchant signs to grant a key: the body of `POST /v1/api-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyGrant {
    /// A name for the key, 1 to 64 printable characters (e.g. `billing-service`).
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// What the key may do.
    #[schema(min_items = 1, max_items = 3)]
    pub scopes: Vec<Scope>,
    /// The key's public half (`settleproof merchant keygen` prints it): `{"alg": "EdDSA" or
    /// "ES256", "public_key": "<hex>"}`.
    #[schema(value_type = Object)]
    pub public_key: MerchantKey,
}

/// Why a key was refused; the field named is the request's.
fn invalid(field: &'static str, problem: impl Into<String>) -> RegistryError {
    RegistryError::Invalid { field, problem: problem.into() }
}

/// The key `grant` makes for `merchant`: its fields are read from the signed request itself
/// (its body, and its `nbf` as the creation time), so nothing outside the merchant's signature
/// can differ.
pub fn key_of_grant(merchant: &str, grant: &SignedStatement) -> Result<ApiKey, RegistryError> {
    if grant.body.len() > MAX_GRANT_BODY || grant.jwt.len() > MAX_STATEMENT_JWT {
        return Err(invalid("body", format!("a grant is at most {MAX_GRANT_BODY} bytes, its JWT {MAX_STATEMENT_JWT}")));
    }
    let body: KeyGrant = serde_json::from_str(&grant.body)
        .map_err(|e| invalid("body", format!("{e}; expected name, scopes and public_key")))?;
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    if body.name.trim().is_empty() || body.name.len() > 64 || !printable(&body.name) {
        return Err(invalid("name", "must be 1 to 64 printable characters"));
    }
    let mut scopes = body.scopes;
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(invalid("scopes", "must list one to three of invoices:write, invoices:read, webhooks:manage"));
    }
    body.public_key.check().map_err(|e| invalid("public_key", e.to_string()))?;
    // Created when the merchant signed it: a time no operator can set.
    let at_ms = settleproof_merchant_auth::header_free_claims(&grant.jwt)
        .map(|c| c.nbf.saturating_mul(1000))
        .ok_or_else(|| invalid("authorization", "the grant is not a JWT with `nbf`"))?;
    let id = body.public_key.key_id();
    Ok(ApiKey {
        token_sha256: key_slot(merchant, &id),
        id,
        merchant_id: merchant.to_string(),
        name: body.name,
        scopes,
        created_at_ms: at_ms,
        revoked_at_ms: None,
        public_key: Some(body.public_key),
        grant: Some(grant.clone()),
        revocation: None,
    })
}

/// Keys that count against [`MAX_KEYS_PER_MERCHANT`]: live, or revoked within the week their
/// revocation is announced again.
fn counted(keys: &[ApiKey], now: u64) -> usize {
    keys.iter().filter(|k| k.revoked_at_ms.is_none_or(|at| now.saturating_sub(at) < REVOKED_COUNTED_MS)).count()
}

impl Registry {
    /// The root key of merchant `id` as this node's registry holds it (disabled merchants too).
    pub(super) fn root_key_of(&self, id: &str) -> Option<MerchantKey> {
        self.all().iter().find(|m| m.id == id).and_then(|m| m.root_key.clone())
    }

    /// Checks `key`'s statements against `merchant`'s root key: a grant of exactly this key,
    /// and, when it carries one, a revocation of its id.
    fn check_statements(&self, key: &ApiKey) -> Result<(), String> {
        self.check_grant(key)?;
        self.check_revocation(key)
    }

    /// Checks that `merchant`'s root key granted exactly `key`.
    fn check_grant(&self, key: &ApiKey) -> Result<(), String> {
        let root = self.root_key_of(&key.merchant_id).ok_or("the merchant has no root key here")?;
        let grant = key.grant.as_ref().ok_or("no grant signed by the merchant")?;
        grant
            .verify(&root, &key.merchant_id, "POST", GRANT_PATH, Some(self.audience_rule()))
            .map_err(|e| format!("grant: {e}"))?;
        let granted = key_of_grant(&key.merchant_id, grant).map_err(|e| format!("grant: {e}"))?;
        if (
            &granted.id,
            &granted.name,
            &granted.scopes,
            &granted.public_key,
            granted.token_sha256,
            granted.created_at_ms,
        ) != (&key.id, &key.name, &key.scopes, &key.public_key, key.token_sha256, key.created_at_ms)
        {
            return Err("the key differs from what the merchant signed".into());
        }
        Ok(())
    }

    /// Checks, when `key` carries one, that `merchant`'s current root key revoked its id, no
    /// earlier than it granted it (less the allowed skew: a revocation of an earlier grant of
    /// the same key pair, here or on another network, is not this grant's). A key granted
    /// without `aud` (before the upgrade day) is also revoked by a revocation signed without it
    /// before the day, after the day too ([`Registry::undo_audience_rule`]).
    fn check_revocation(&self, key: &ApiKey) -> Result<(), String> {
        let root = self.root_key_of(&key.merchant_id).ok_or("the merchant has no root key here")?;
        if let Some(r) = &key.revocation {
            let signed_s = settleproof_merchant_auth::header_free_claims(&r.jwt).map_or(0, |c| c.nbf);
            let granted_s = key.created_at_ms / 1000;
            if signed_s.saturating_add(settleproof_merchant_auth::MAX_SKEW_S) < granted_s {
                return Err(format!("revocation: signed at {signed_s}, before the key was granted ({granted_s})"));
            }
            let unnamed_grant = key.grant.as_ref().is_some_and(unnamed);
            let audience = if unnamed_grant { self.undo_audience_rule() } else { self.audience_rule() };
            r.verify(&root, &key.merchant_id, "DELETE", &format!("{GRANT_PATH}/{}", key.id), Some(audience))
                .map_err(|e| format!("revocation: {e}"))?;
        }
        Ok(())
    }

    /// Whether `key` was granted by its merchant's current root key (a replaced root key's
    /// grants are dead: they neither work nor count).
    pub(super) fn granted_by_root(&self, key: &ApiKey) -> bool {
        let root = self.root_key_of(&key.merchant_id).map(|k| k.key_id());
        let signer = key.grant.as_ref().and_then(|g| settleproof_merchant_auth::header_key_id(&g.jwt));
        root.is_some() && root == signer
    }

    /// The key `key_id` of `merchant` that signed a statement at `signed_at` (unix seconds), when
    /// it may do what `scope` allows: the root key, or a key the current root key granted with
    /// `scope` before the statement was signed and that is not revoked. A revoked key's
    /// statements are not taken any more, whenever they say they were signed (whoever holds the
    /// key could date them before the revocation); what was taken before the revocation stands.
    pub(super) fn statement_signer(
        &self,
        merchant: &str,
        key_id: &str,
        signed_at: u64,
        scope: Scope,
    ) -> Result<MerchantKey, String> {
        let root = self.root_key_of(merchant).ok_or("the merchant has no root key here")?;
        if key_id == root.key_id() {
            return Ok(root);
        }
        let key = self
            .store()
            .ok()
            .and_then(|s| s.api_key(key_slot(merchant, key_id)).ok().flatten())
            .filter(|k| k.id == key_id && k.merchant_id == merchant)
            .ok_or("signed by a key this node does not hold for the merchant")?;
        let live = key.created_at_ms <= signed_at.saturating_mul(1000) && key.revoked_at_ms.is_none();
        if !self.granted_by_root(&key) || !key.scopes.contains(&scope) || !live {
            return Err(format!(
                "signed by a key without the `{}` scope, revoked, or granted after it signed",
                scope.as_str()
            ));
        }
        key.public_key.ok_or_else(|| "the key has no public key".into())
    }

    /// The key `grant` (a request the root key of `merchant` signed) makes, kept and announced.
    /// A key the previous root key granted is granted again in its place.
    pub fn create_key(&self, merchant: &str, grant: SignedStatement) -> Result<ApiKey, RegistryError> {
        let key = key_of_grant(merchant, &grant)?;
        self.check_statements(&key).map_err(|e| invalid("authorization", e))?;
        let store = self.store()?;
        let held: Vec<ApiKey> =
            store.api_keys(Some(merchant))?.into_iter().filter(|k| self.granted_by_root(k)).collect();
        if counted(&held, now_ms()) >= MAX_KEYS_PER_MERCHANT {
            return Err(RegistryError::Conflict(format!(
                "the merchant has {MAX_KEYS_PER_MERCHANT} keys live or revoked within the last week, the most kept"
            )));
        }
        let dead = store.api_key(key.token_sha256)?.filter(|h| !self.granted_by_root(h));
        let key = if let Some(dead) = dead {
            if !store.replace_api_key(&key, &dead)? {
                return Err(RegistryError::Conflict("the key changed meanwhile; try again".into()));
            }
            key
        } else {
            match store.put_api_key(&key)? {
                KeyPut::Changed(k) => *k,
                KeyPut::Known => store.api_key(key.token_sha256)?.unwrap_or(key),
                KeyPut::Clash => return Err(RegistryError::Conflict("this key id is taken; try again".into())),
            }
        };
        info!(merchant, key_id = %key.id, name = %key.name, "API key granted");
        self.announce(&key);
        Ok(key)
    }

    /// Revokes key `id` of `merchant` with `revocation` (a request its root key signed), here at
    /// once and on the other nodes once they hear it.
    pub fn revoke_key(&self, merchant: &str, id: &str, revocation: SignedStatement) -> Result<ApiKey, RegistryError> {
        let store = self.store()?;
        let mut key = store
            .api_keys(Some(merchant))?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| RegistryError::UnknownMerchant(format!("{merchant}'s key {id}")))?;
        if key.revoked_at_ms.is_none() {
            key.revoked_at_ms = Some(now_ms());
            // Only the revocation is checked here: a key the previous root key granted can be
            // revoked (and leaves the list's live ones) with the current one.
            key.revocation = Some(revocation);
            self.check_revocation(&key).map_err(|e| invalid("authorization", e))?;
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

    /// The live key with id `kid` of `merchant` when it is served, granted by the merchant's
    /// current root key. (Its statements were verified when it was kept; here only the grant's
    /// signer is compared with the root key, so a replaced root key's grants stop working.)
    pub fn live_key(&self, merchant: &str, kid: &str) -> Option<ApiKey> {
        let key = self.0.store.as_ref()?.api_key(key_slot(merchant, kid)).ok().flatten()?;
        let merchant = self.get(&key.merchant_id)?;
        let root = merchant.root_key.as_ref()?.key_id();
        let signer = key.grant.as_ref().and_then(|g| settleproof_merchant_auth::header_key_id(&g.jwt))?;
        (key.id == kid && key.revoked_at_ms.is_none() && signer == root).then_some(key)
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

    /// The keys whose creation or revocation is still announced again, the most recent
    /// change first, at most [`MAX_REBROADCAST`].
    pub fn keys_to_rebroadcast(&self) -> Vec<ApiKey> {
        let Ok(store) = self.store() else { return Vec::new() };
        let now = now_ms();
        let mut keys: Vec<ApiKey> = store
            .api_keys(None)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| match k.revoked_at_ms {
                Some(at) => now.saturating_sub(at) < REVOKED_REANNOUNCE_MS,
                None => now.saturating_sub(k.created_at_ms) < REANNOUNCE_MS,
            })
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.revoked_at_ms.unwrap_or(k.created_at_ms)));
        keys.truncate(MAX_REBROADCAST);
        keys
    }

    /// Announces again the keys created or revoked lately.
    pub fn rebroadcast_keys(&self) {
        for k in self.keys_to_rebroadcast() {
            self.announce(&k);
        }
    }

    /// A key announcement heard from `source`: kept when the merchant's root key signed its
    /// grant (and its revocation, when it carries one). `Ok` with whether it changed anything;
    /// a key whose signatures do not verify against this node's registry is ignored and counted,
    /// not blamed on its relayer.
    pub fn hear_key(&self, data: &[u8], source: &PeerId) -> Result<bool, GossipRejection> {
        let mut a: KeyAnnouncement =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let Some(store) = &self.0.store else { return Ok(false) };
        let bad = |m: String| GossipRejection::NotTaken(format!("API key: {m}"));
        if !self.holds(&a.key.merchant_id) {
            // This node may not have applied the merchant yet: the key is announced again.
            return Ok(false);
        }
        // A revocation dated further ahead of this node's clock than a request may be is not
        // taken yet (it is announced again), so that no node holds one before its `nbf` less
        // that skew (the vouch cutoff, `Registry::vouch_cutoff_s`, relies on it).
        let signed_at = a.key.revocation.as_ref().and_then(|r| settleproof_merchant_auth::header_free_claims(&r.jwt));
        if signed_at.is_some_and(|c| c.nbf > now_ms() / 1000 + settleproof_merchant_auth::MAX_SKEW_S) {
            return Err(bad("a revocation signed ahead of this node's clock".into()));
        }
        // Revoked only by a signed revocation, which counts from when this node heard it: a
        // backdated one still gets its week of announcements from here.
        a.key.revoked_at_ms = a.key.revocation.as_ref().map(|_| now_ms());
        // A repeat of what is held costs a read, not a signature check.
        let held = store.api_key(a.key.token_sha256).map_err(|e| bad(e.to_string()))?;
        if held.as_ref().is_some_and(|h| h.revoked_at_ms.is_some() || (a.key.revoked_at_ms.is_none() && *h == a.key)) {
            return Ok(false);
        }
        // A key held here was checked when it was taken, under whichever signed copy of its
        // grant reached this node first (the merchant may send one to each of several nodes),
        // perhaps under a root key replaced since or before `aud` was required: a revocation is
        // checked alone against it, as at the API, so that neither another copy of the grant
        // nor a rule added later keeps a revocation from spreading.
        let was_held = held.is_some();
        let same_key = held.filter(|h| h.id == a.key.id && h.merchant_id == a.key.merchant_id);
        // Held under a root key replaced since: a grant by the current one takes its place.
        let held_dead = same_key.clone().filter(|h| !self.granted_by_root(h) && a.key.revocation.is_none());
        let checked = match same_key {
            Some(h) if a.key.revocation.is_some() => {
                a.key = ApiKey { revocation: a.key.revocation, revoked_at_ms: a.key.revoked_at_ms, ..h };
                self.check_revocation(&a.key)
            }
            // The same key, live under this very grant or under the current root key: nothing
            // to change.
            Some(h) if h.grant == a.key.grant || self.granted_by_root(&h) => return Ok(false),
            // A grant without `aud` this node no longer takes: refused without a signature check
            // (`NotInRegistry`: a catch-up does not count it among the refusals that cost one).
            _ if a.key.grant.as_ref().is_some_and(|g| unnamed(g) && !self.takes_unnamed(g)) => {
                metrics::counter!("merchant_records_refused_total", "kind" => "api_key").increment(1);
                return Err(GossipRejection::NotInRegistry(
                    "API key: a grant without `aud` after the upgrade day".into(),
                ));
            }
            _ => self.check_statements(&a.key),
        };
        if let Err(why) = checked {
            warn!(peer = %source, merchant = %a.key.merchant_id, key_id = %a.key.id, %why, "API key not signed by its merchant ignored");
            metrics::counter!("merchant_records_refused_total", "kind" => "api_key").increment(1);
            return Err(bad(why));
        }
        if !was_held
            && counted(&store.api_keys(Some(&a.key.merchant_id)).map_err(|e| bad(e.to_string()))?, now_ms())
                >= MAX_KEYS_PER_MERCHANT
        {
            return Ok(false);
        }
        if let Some(dead) = held_dead.filter(|_| self.granted_by_root(&a.key)) {
            // Only in place of the very dead key read above: a revocation stored meanwhile stays.
            let replaced = store.replace_api_key(&a.key, &dead).map_err(|e| bad(e.to_string()))?;
            if replaced {
                info!(peer = %source, merchant = %a.key.merchant_id, key_id = %a.key.id, "API key granted again by the current root key heard");
            }
            return Ok(replaced);
        }
        match store.put_api_key(&a.key).map_err(|e| bad(e.to_string()))? {
            KeyPut::Changed(k) => {
                info!(peer = %source, merchant = %k.merchant_id, key_id = %k.id, revoked = k.revoked_at_ms.is_some(), "API key heard");
                Ok(true)
            }
            KeyPut::Known | KeyPut::Clash => Ok(false),
        }
    }
}

#[cfg(test)]
#[path = "api_keys_tests.rs"]
pub(super) mod tests;
