//! The live merchant registry: what the API, gossip checks and webhook workers read, and the
//! proposals, approvals and applications that change it.

use super::approval::{MerchantApproval, TOPIC};
use crate::epochs::Epochs;
use crate::store::{MerchantApprovalPut, MerchantChange, PendingChange, RegistryEntry, Store, StoreError};
use crate::time::now_ms;
use alloy::primitives::{Address, B256, Bytes};
use settleproof_config::MerchantConfig;
use settleproof_consensus::{BlsSecretKey, ChangeFate, change_fate, merchant_change_message};
use settleproof_merchant_auth::MerchantKey;
use settleproof_p2p::{NetworkHandle, PeerId};
use std::sync::{Arc, OnceLock, RwLock};
use tracing::{info, warn};

/// Why a proposal or an approval was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A field of the proposed record is wrong.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// This node cannot approve: no operator set, not an operator of it, or no key of it.
    #[error("{0}")]
    CannotApprove(String),
    /// The change conflicts with what this node holds or approved.
    #[error("{0}")]
    Conflict(String),
    /// No change with this hash waits here.
    #[error("no merchant change {0} waits on this node")]
    UnknownChange(B256),
    /// Merchant unknown.
    #[error("no merchant `{0}` in the registry")]
    UnknownMerchant(String),
}

/// A change this node approved, and where it stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Approved {
    /// Its hash.
    pub change_hash: B256,
    /// Merchant.
    pub merchant_id: String,
    /// Version.
    pub version: u64,
    /// Distinct approvals held here.
    pub approvals: usize,
    /// Approvals needed.
    pub threshold: usize,
    /// Whether it is now the merchant's record here.
    pub applied: bool,
}

/// How far a change's version may be ahead of the version held: a node that missed changes
/// still applies a later one, and no version nears the end of `u64`.
pub const MAX_VERSION_GAP: u64 = 1024;

/// How long after applying a change a node keeps gossiping its approvals of it, so that nodes
/// which missed them (offline, partitioned) still apply it.
pub const RECENT_MS: u64 = 60 * 60 * 1000;
/// Approvals published again per rebroadcast tick at most (waiting changes first).
pub const MAX_APPROVALS_REBROADCAST: usize = 64;

/// `me`'s approval among `approvals` of `change`, carrying the others.
fn approval_of(me: usize, change: MerchantChange, approvals: Vec<(u32, Bytes)>) -> Option<MerchantApproval> {
    let (mine, others): (Vec<_>, Vec<_>) = approvals.into_iter().partition(|(s, _)| *s as usize == me);
    let (_, signature) = mine.into_iter().next()?;
    Some(MerchantApproval { change, signer: me, signature, others, sent_at_ms: now_ms() })
}

#[derive(Debug, Default)]
struct View {
    /// Merchants served.
    active: Arc<Vec<MerchantConfig>>,
    /// Merchants disabled.
    disabled: Vec<String>,
    /// Replaced webhook secrets still signing, by merchant.
    previous: Vec<(String, crate::store::PreviousSecret)>,
    /// The records of the disabled merchants.
    disabled_records: Vec<MerchantConfig>,
    /// The served merchants' root keys by key id.
    keys: std::collections::HashMap<String, (String, MerchantKey)>,
}

/// The served merchants' root keys by key id. A key two merchants name serves neither.
fn key_index(active: &[MerchantConfig]) -> std::collections::HashMap<String, (String, MerchantKey)> {
    let mut keys = std::collections::HashMap::new();
    let mut shared = std::collections::HashSet::new();
    for m in active {
        let Some(key) = &m.root_key else { continue };
        let kid = key.key_id();
        if keys.insert(kid.clone(), (m.id.clone(), key.clone())).is_some() {
            shared.insert(kid);
        }
    }
    keys.retain(|kid, _| !shared.contains(kid));
    keys
}

#[derive(Debug)]
pub(super) struct Inner {
    /// The first chain's store (`None`: a fixed list, for tests and tools).
    pub(super) store: Option<Store>,
    /// The first chain's operator sets, whose latest approves changes.
    pub(super) epochs: Option<Arc<Epochs>>,
    /// The chain and settlement contract approvals name.
    pub(super) chain_id: u64,
    pub(super) settlement: Address,
    /// This network's `aud` ([`settleproof_merchant_auth::network_audience`] of the chain and
    /// contract above).
    pub(super) audience: String,
    /// `network.audience_optional_before_s`.
    pub(super) audience_optional_before_s: Option<u64>,
    /// `tls.allow_insecure_http`, `webhooks.allow_private_targets`.
    pub(super) url_policy: (bool, bool),
    /// `webhooks.secret_overlap_s`, in ms.
    pub(super) secret_overlap_ms: u64,
    view: RwLock<View>,
    /// Held while the view is rebuilt from the store, so two applies cannot leave the older
    /// snapshot in place.
    reload: std::sync::Mutex<()>,
    /// Where approvals are published: the first chain's gossip scope.
    pub(super) net: OnceLock<NetworkHandle>,
    /// The merchants' own endpoints, as the outbox fans events out to them.
    pub(super) routes: crate::store::EndpointRoutes,
    /// When each peer last got a merchants snapshot ([`Registry::snapshot_for`]).
    pub(super) snapshots_served: std::sync::Mutex<super::sync::PagesServed>,
    /// When a catch-up from each peer was last taken, and the one running.
    pub(super) catch_ups: std::sync::Mutex<std::collections::HashMap<PeerId, u64>>,
    pub(super) catching_up: std::sync::Mutex<()>,
    /// The peers a paged catch-up is under way from (one each at a time).
    pub(super) catching_up_from: std::sync::Mutex<std::collections::HashSet<PeerId>>,
    /// Invoice signatures checked already ([`super::invoice_signatures`]).
    pub(super) verified_invoices: std::sync::Mutex<lru::LruCache<alloy::primitives::B256, ()>>,
    /// Where the round loop hands merchant records heard on gossip ([`super::inbox`]).
    pub(super) inbox: OnceLock<super::inbox::Inbox>,
    /// This node's digest as last published ([`super::digests`]).
    pub(super) own_digest: std::sync::Mutex<Option<alloy::primitives::B256>>,
    /// When to pull from peers whose digests differ.
    pub(super) pulls: std::sync::Mutex<super::digests::PullTracker>,
}

/// The merchant registry; cheap to clone, every clone sees each applied change at once.
#[derive(Debug, Clone)]
pub struct Registry(pub(super) Arc<Inner>);

/// Settings of [`Registry::open`].
#[derive(Debug)]
pub struct Home {
    /// The first chain's store.
    pub store: Store,
    /// The first chain's operator sets.
    pub epochs: Arc<Epochs>,
    /// Its chain id.
    pub chain_id: u64,
    /// Its settlement contract.
    pub settlement: Address,
    /// `tls.allow_insecure_http`, `webhooks.allow_private_targets`.
    pub url_policy: (bool, bool),
    /// How long a replaced webhook secret keeps signing (`webhooks.secret_overlap_s`), ms.
    pub secret_overlap_ms: u64,
    /// `network.audience_optional_before_s`.
    pub audience_optional_before_s: Option<u64>,
}

impl Registry {
    /// A registry of `merchants` that never changes (tests and tools).
    pub fn fixed(merchants: Vec<MerchantConfig>) -> Self {
        let view = View { keys: key_index(&merchants), active: Arc::new(merchants), ..View::default() };
        Self(Arc::new(Inner {
            store: None,
            epochs: None,
            chain_id: 0,
            settlement: Address::ZERO,
            audience: settleproof_merchant_auth::network_audience(0, &format!("{:#x}", Address::ZERO)),
            audience_optional_before_s: None,
            url_policy: (true, true),
            secret_overlap_ms: 0,
            view: RwLock::new(view),
            reload: std::sync::Mutex::new(()),
            net: OnceLock::new(),
            routes: crate::store::EndpointRoutes::default(),
            snapshots_served: std::sync::Mutex::default(),
            catch_ups: std::sync::Mutex::default(),
            catching_up: std::sync::Mutex::new(()),
            catching_up_from: std::sync::Mutex::default(),
            verified_invoices: std::sync::Mutex::new(lru::LruCache::new(super::invoice_signatures::REMEMBERED)),
            inbox: OnceLock::new(),
            own_digest: std::sync::Mutex::new(None),
            pulls: std::sync::Mutex::default(),
        }))
    }

    /// The registry kept in `home.store`, seeded with the configuration's `seed` merchants it
    /// does not hold yet. A configured merchant whose record differs from the registry's is
    /// reported: the registry's stands.
    pub fn open(home: Home, seed: &[MerchantConfig]) -> Result<Self, StoreError> {
        for m in seed {
            if home.store.seed_merchant(m, now_ms())? {
                info!(merchant = %m.id, "merchant added to the registry from the configuration");
            } else if let Some(held) = home.store.registry_entry(&m.id)? {
                let h = &held.change.merchant;
                if h.payout_address != m.payout_address
                    || h.webhook_url != m.webhook_url
                    || h.webhook_secret != m.webhook_secret
                    || h.root_key != m.root_key
                {
                    warn!(merchant = %m.id, version = held.change.version, "the configuration's [[merchants]] entry differs from the registry's record, which stands; change a merchant through POST /admin/v1/merchants");
                }
            }
        }
        let registry = Self(Arc::new(Inner {
            store: Some(home.store),
            epochs: Some(home.epochs),
            chain_id: home.chain_id,
            settlement: home.settlement,
            audience: settleproof_merchant_auth::network_audience(home.chain_id, &format!("{:#x}", home.settlement)),
            audience_optional_before_s: home.audience_optional_before_s,
            url_policy: home.url_policy,
            secret_overlap_ms: home.secret_overlap_ms,
            view: RwLock::new(View::default()),
            reload: std::sync::Mutex::new(()),
            net: OnceLock::new(),
            routes: crate::store::EndpointRoutes::default(),
            snapshots_served: std::sync::Mutex::default(),
            catch_ups: std::sync::Mutex::default(),
            catching_up: std::sync::Mutex::new(()),
            catching_up_from: std::sync::Mutex::default(),
            verified_invoices: std::sync::Mutex::new(lru::LruCache::new(super::invoice_signatures::REMEMBERED)),
            inbox: OnceLock::new(),
            own_digest: std::sync::Mutex::new(None),
            pulls: std::sync::Mutex::default(),
        }));
        registry.reload()?;
        registry.refresh_routes();
        Ok(registry)
    }

    /// Publishes this node's approvals on `net` (the first chain's scope) from now on.
    pub fn attach(&self, net: NetworkHandle) {
        let _ = self.0.net.set(net);
    }

    /// The routes every chain's outbox fans events out with ([`crate::store::Store::route_endpoints`]).
    pub fn routes(&self) -> crate::store::EndpointRoutes {
        self.0.routes.clone()
    }

    /// `(tls.allow_insecure_http, webhooks.allow_private_targets)`: what merchant URLs may be.
    pub fn url_policy(&self) -> (bool, bool) {
        self.0.url_policy
    }

    /// The chain whose gossip carries approvals.
    pub fn home_chain(&self) -> u64 {
        self.0.chain_id
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        // Writes replace the view whole, so a poisoned lock still holds a consistent one.
        self.0.view.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The merchants served (not disabled).
    pub fn list(&self) -> Arc<Vec<MerchantConfig>> {
        self.view().active.clone()
    }

    /// Every merchant of the registry, disabled ones too (settled payments of a disabled
    /// merchant still make events, which wait until it is enabled again).
    pub fn all(&self) -> Arc<Vec<MerchantConfig>> {
        let view = self.view();
        if view.disabled_records.is_empty() {
            return view.active.clone();
        }
        Arc::new(view.active.iter().chain(view.disabled_records.iter()).cloned().collect())
    }

    /// Whether the registry holds merchant `id`, disabled or not (read from memory: a record
    /// heard on gossip costs no registry decode).
    pub fn holds(&self, id: &str) -> bool {
        let view = self.view();
        view.active.iter().chain(view.disabled_records.iter()).any(|m| m.id == id)
    }

    /// Merchant `id`, when served.
    pub fn get(&self, id: &str) -> Option<MerchantConfig> {
        self.view().active.iter().find(|m| m.id == id).cloned()
    }

    /// The secrets `merchant`'s deliveries are signed with now: its secret, and the one it
    /// replaced while that one's overlap lasts (each gives a signature in `webhook-signature`).
    pub fn signing_secrets(&self, merchant: &MerchantConfig) -> Vec<settleproof_config::Secret> {
        let now = now_ms();
        let mut secrets = vec![merchant.webhook_secret.clone()];
        let view = self.view();
        for (_, p) in view.previous.iter().filter(|(id, p)| id == &merchant.id && p.until_ms > now) {
            if !secrets.contains(&p.secret) {
                secrets.push(p.secret.clone());
            }
        }
        secrets
    }

    /// The served merchant whose root key has id `kid`, and the key.
    pub fn key(&self, kid: &str) -> Option<(String, MerchantKey)> {
        self.view().keys.get(kid).cloned()
    }

    /// Whether merchant `id` is in the registry but disabled.
    pub fn is_disabled(&self, id: &str) -> bool {
        self.view().disabled.iter().any(|d| d == id)
    }

    pub(super) fn reload(&self) -> Result<(), StoreError> {
        let Some(store) = &self.0.store else { return Ok(()) };
        // Poisoned: a panic mid-reload left the old view, which the next reload replaces.
        let _one_at_a_time = self.0.reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut active, mut disabled, mut previous) = (Vec::new(), Vec::new(), Vec::new());
        for e in store.registry_entries()? {
            crate::redact::register(&e.change.merchant.webhook_url, &format!("webhook:{}", e.change.merchant.id));
            if let Some(p) = e.previous_secret {
                previous.push((e.change.merchant.id.clone(), p));
            }
            if e.change.disabled { disabled.push(e.change.merchant) } else { active.push(e.change.merchant) }
        }
        let ids = disabled.iter().map(|m| m.id.clone()).collect();
        *self.0.view.write().unwrap_or_else(std::sync::PoisonError::into_inner) = View {
            keys: key_index(&active),
            active: Arc::new(active),
            disabled: ids,
            previous,
            disabled_records: disabled,
        };
        Ok(())
    }

    pub(super) fn store(&self) -> Result<&Store, RegistryError> {
        self.0.store.as_ref().ok_or_else(|| RegistryError::CannotApprove("this registry is fixed".into()))
    }

    /// Every merchant of the registry, disabled ones too.
    pub fn entries(&self) -> Result<Vec<RegistryEntry>, RegistryError> {
        Ok(self.store()?.registry_entries()?)
    }

    /// Changes waiting for approvals.
    pub fn pending(&self) -> Result<Vec<PendingChange>, RegistryError> {
        Ok(self.store()?.pending_merchant_changes()?)
    }

    /// Approvals needed by changes to the latest set.
    pub fn threshold(&self) -> Option<usize> {
        self.0.epochs.as_ref()?.latest().map(|s| s.threshold)
    }

    /// Proposes `merchant` (`disabled` or not) as the next version of its record and approves it
    /// with this node's key among `keys`. Refused when a field is wrong, or when `create` and
    /// the merchant exists (or not `create` and it does not).
    pub fn propose(
        &self,
        merchant: MerchantConfig,
        disabled: bool,
        create: bool,
        keys: &[BlsSecretKey],
    ) -> Result<Approved, RegistryError> {
        let (insecure, private) = self.0.url_policy;
        if let Some((field, problem)) =
            settleproof_config::merchant_problems(&merchant, insecure, private).into_iter().next()
        {
            return Err(RegistryError::Invalid { field, problem });
        }
        let store = self.store()?;
        let held = store.registry_entry(&merchant.id)?;
        match (&held, create) {
            (Some(_), true) => {
                return Err(RegistryError::Conflict(format!(
                    "merchant `{}` exists; change it with PATCH /admin/v1/merchants/{}",
                    merchant.id, merchant.id
                )));
            }
            (None, false) => return Err(RegistryError::UnknownMerchant(merchant.id)),
            _ => {}
        }
        let set = self.latest()?;
        let version = match held {
            None => 1,
            Some(h) => h
                .change
                .version
                .checked_add(1)
                .ok_or_else(|| RegistryError::Conflict("no version after this one".into()))?,
        };
        let change = MerchantChange { merchant, disabled, version, epoch: set.epoch };
        self.sign(change, keys)
    }

    /// Approves the waiting change `hash` with this node's key among `keys`.
    pub fn approve(&self, hash: B256, keys: &[BlsSecretKey]) -> Result<Approved, RegistryError> {
        let pending = self.store()?.pending_merchant_change(hash)?.ok_or(RegistryError::UnknownChange(hash))?;
        self.sign(pending.change, keys)
    }

    fn latest(&self) -> Result<Arc<crate::operators::OperatorSet>, RegistryError> {
        self.0
            .epochs
            .as_ref()
            .and_then(|e| e.latest())
            .ok_or_else(|| RegistryError::CannotApprove("this node knows no operator set yet".into()))
    }

    /// Why `change`'s record cannot be applied whatever its approvals: a field no node accepts,
    /// a root key another merchant has, or a version too far ahead.
    pub(super) fn record_problem(&self, change: &MerchantChange) -> Result<Option<(&'static str, String)>, StoreError> {
        let m = &change.merchant;
        let (insecure, private) = self.0.url_policy;
        if let Some(p) = settleproof_config::merchant_problems(m, insecure, private).into_iter().next() {
            return Ok(Some(p));
        }
        let Some(store) = &self.0.store else { return Ok(None) };
        let entries = store.registry_entries()?;
        if let Some(key) = &m.root_key
            && entries.iter().any(|e| {
                e.change.merchant.id != m.id
                    && e.change.merchant.root_key.as_ref().is_some_and(|k| k.key_id() == key.key_id())
            })
        {
            return Ok(Some((
                "root_key",
                "another merchant holds this key; every merchant needs a key of its own".into(),
            )));
        }
        let held = entries.iter().find(|e| e.change.merchant.id == m.id).map_or(0, |e| e.change.version);
        if change.version > held.saturating_add(MAX_VERSION_GAP) {
            return Ok(Some((
                "version",
                format!("version {} is more than {MAX_VERSION_GAP} past the {held} held", change.version),
            )));
        }
        Ok(None)
    }

    /// This node's approval of `change`: beyond what any node accepts, a record approved now
    /// must have a root key and no retired token hash (`new_merchant_problems`).
    fn sign(&self, change: MerchantChange, keys: &[BlsSecretKey]) -> Result<Approved, RegistryError> {
        if let Some((field, problem)) = self.record_problem(&change)? {
            return Err(RegistryError::Invalid { field, problem });
        }
        if let Some((field, problem)) = settleproof_config::new_merchant_problems(&change.merchant).into_iter().next() {
            return Err(RegistryError::Invalid { field, problem });
        }
        let set = self.latest()?;
        if change.epoch != set.epoch {
            return Err(RegistryError::Conflict(format!(
                "the change was proposed to epoch {}, the latest set is epoch {}: propose it again",
                change.epoch, set.epoch
            )));
        }
        let me = set.me.ok_or_else(|| {
            RegistryError::CannotApprove(format!("this node is not an operator of epoch {}", set.epoch))
        })?;
        let mine = &set.operators[me].bls;
        let key = keys.iter().find(|k| &k.public_key() == mine).ok_or_else(|| {
            RegistryError::CannotApprove(format!(
                "no BLS key in the keys directory is the one epoch {} registered",
                set.epoch
            ))
        })?;
        let hash = change.hash();
        let message = merchant_change_message(self.0.chain_id, self.0.settlement, set.epoch, hash);
        let signature = Bytes::from(key.sign(message.as_slice()).to_bytes().to_vec());
        let signer =
            u32::try_from(me).map_err(|_| RegistryError::CannotApprove("operator index out of range".into()))?;
        let store = self.store()?;
        // One transaction decides: the version held, this node's earlier approval of this
        // merchant version (kept for good), and the approval itself.
        match store.put_merchant_approval(&change, hash, signer, &signature, true)? {
            MerchantApprovalPut::New | MerchantApprovalPut::Known => {}
            MerchantApprovalPut::Stale(held) => {
                return Err(RegistryError::Conflict(format!(
                    "merchant `{}` is at version {held} here already",
                    change.merchant.id
                )));
            }
            MerchantApprovalPut::Rival(other) => {
                return Err(RegistryError::Conflict(format!(
                    "this node approved another change ({other}) to version {} of merchant `{}`; an operator approves one change per version",
                    change.version, change.merchant.id
                )));
            }
            MerchantApprovalPut::Limit => {
                return Err(RegistryError::Conflict(format!(
                    "this node approves {} waiting changes already, the most the other nodes keep",
                    crate::store::MAX_PENDING_PER_SIGNER
                )));
            }
        }
        info!(merchant = %change.merchant.id, version = change.version, change_hash = %hash, "merchant change approved by this node");
        let held = store.pending_merchant_change(hash)?.map(|p| p.approvals).unwrap_or_default();
        let approvals = held.len();
        let applied = self.try_apply(hash)?;
        if let Some(a) = approval_of(me, change.clone(), held) {
            self.publish(&a);
        }
        Ok(Approved {
            change_hash: hash,
            merchant_id: change.merchant.id,
            version: change.version,
            approvals,
            threshold: set.threshold,
            applied,
        })
    }

    fn publish(&self, approval: &MerchantApproval) {
        let Some(net) = self.0.net.get().cloned() else { return };
        let data = serde_json::to_vec(approval).unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) = net.publish(TOPIC, data).await {
                tracing::debug!(error = %e, "merchant change approval not published yet; will rebroadcast");
            }
        });
    }

    /// This node's approvals, as gossiped: of the changes still waiting, then of those applied
    /// in the last [`RECENT_MS`] (the newest first), each with the other approvals held.
    pub fn own_approvals(&self) -> Vec<MerchantApproval> {
        let (Ok(set), Ok(pending), Ok(store)) = (self.latest(), self.pending(), self.store()) else {
            return Vec::new();
        };
        let Some(me) = set.me else { return Vec::new() };
        let since = now_ms().saturating_sub(RECENT_MS);
        let mut recent: Vec<_> =
            store.registry_entries().unwrap_or_default().into_iter().filter(|e| e.applied_at_ms >= since).collect();
        recent.sort_by_key(|e| std::cmp::Reverse(e.applied_at_ms));
        pending
            .into_iter()
            .map(|p| (p.change, p.approvals))
            .chain(recent.into_iter().map(|e| (e.change, e.approvals)))
            .filter(|(change, _)| change.epoch == set.epoch)
            .filter_map(|(change, approvals)| approval_of(me, change, approvals))
            .collect()
    }

    /// Publishes again this node's approvals of the changes still waiting, so operators that
    /// were offline when they were made hear them; first drops the waiting changes of epochs
    /// before the latest, which can no longer apply.
    pub fn rebroadcast(&self) {
        if let (Ok(set), Ok(store)) = (self.latest(), self.store()) {
            match store.drop_merchant_changes_before(set.epoch) {
                Ok(0) => {}
                Ok(n) => info!(
                    dropped = n,
                    epoch = set.epoch,
                    "merchant changes of earlier operator sets dropped: propose them again"
                ),
                Err(e) => warn!(error = %e, "cannot drop merchant changes of earlier operator sets"),
            }
        }
        // The waiting changes first (they need the votes), then the newest applied ones; at
        // most a tick's worth, so a busy hour of changes cannot crowd out anything else.
        for a in self.own_approvals().into_iter().take(MAX_APPROVALS_REBROADCAST) {
            self.publish(&a);
        }
    }

    /// Applies change `hash` when a threshold of its epoch approved it and it is newer than the
    /// record held; returns whether it did.
    pub(super) fn try_apply(&self, hash: B256) -> Result<bool, RegistryError> {
        let store = self.store()?;
        let Some(p) = store.pending_merchant_change(hash)? else { return Ok(false) };
        let Some(set) = self.0.epochs.as_ref().and_then(|e| e.get(p.change.epoch)) else { return Ok(false) };
        let current = store.registry_entry(&p.change.merchant.id)?.map(|e| e.change.version);
        match change_fate(current, p.change.version, p.approvals.len(), set.threshold) {
            ChangeFate::Apply => {}
            ChangeFate::Wait { .. } | ChangeFate::Stale { .. } => return Ok(false),
        }
        let entry = RegistryEntry {
            change: p.change.clone(),
            approvals: p.approvals,
            applied_at_ms: now_ms(),
            previous_secret: None,
        };
        let applied = store.apply_merchant_change(hash, &entry, self.0.secret_overlap_ms)?;
        if applied {
            self.reload()?;
            let m = &p.change.merchant;
            info!(merchant = %m.id, version = p.change.version, payout_address = %m.payout_address, disabled = p.change.disabled, change_hash = %hash, approvals = entry.approvals.len(), "merchant change applied");
            metrics::counter!("merchant_changes_applied_total").increment(1);
        }
        Ok(applied)
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
