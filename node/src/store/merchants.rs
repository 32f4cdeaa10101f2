//! The merchant registry: every merchant's record with the operator approvals that made it, the
//! changes still waiting for approvals, and an audit log of what was applied. What the records
//! mean and when a change applies is [`crate::merchants`]'s; this file only keeps them, each
//! change in one transaction.

use super::{
    MERCHANT_APPROVALS, MERCHANT_AUDIT, MERCHANT_CHANGES, MERCHANT_OWN, MERCHANT_REGISTRY, Store, StoreError, decode,
    encode,
};
use alloy::primitives::{Address, B256, Bytes, keccak256};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use settleproof_config::MerchantConfig;

/// Most changes one operator's approvals are kept for while they wait: an honest operator has a
/// handful under way, a Byzantine one cannot fill the store.
pub const MAX_PENDING_PER_SIGNER: usize = 16;

/// A merchant's whole next record, as operators approve it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantChange {
    /// The record: id, payout address, webhook URL and secret, API token hash.
    pub merchant: MerchantConfig,
    /// A disabled merchant's API calls and new invoices are refused and its webhooks wait.
    pub disabled: bool,
    /// Its version: applied only over an older one.
    pub version: u64,
    /// The operator set epoch whose threshold approves it.
    pub epoch: u64,
}

impl MerchantChange {
    /// What operators sign (under [`settleproof_consensus::merchant_change_message`]): the hash
    /// of the change's JSON, as every node encodes it itself.
    pub fn hash(&self) -> B256 {
        keccak256(encode(self))
    }
}

/// A webhook secret still signing after it was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The replaced secret.
    pub secret: settleproof_config::Secret,
    /// Until when it signs too, unix ms.
    pub until_ms: u64,
}

/// A merchant as the registry holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The change that made it (version 0: seeded from this node's configuration).
    pub change: MerchantChange,
    /// The approvals of that change: (signer index in its epoch, BLS signature).
    pub approvals: Vec<(u32, Bytes)>,
    /// When this node applied it.
    pub applied_at_ms: u64,
    /// The webhook secret it replaced, while deliveries are still signed with it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
}

/// One applied change, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When this node applied it.
    pub applied_at_ms: u64,
    /// The merchant.
    pub merchant_id: String,
    /// The new version (0: seeded from this node's configuration, approved by nobody).
    pub version: u64,
    /// Hash of the change.
    pub change_hash: B256,
    /// The approving epoch.
    pub epoch: u64,
    /// The signer indexes of its approvals.
    pub approved_by: Vec<u32>,
    /// The payout address after it, and before it (`None`: a new merchant).
    pub payout_address: Address,
    /// The payout address before.
    pub previous_payout_address: Option<Address>,
    /// The webhook URL after it.
    pub webhook_url: String,
    /// Whether it changed the webhook secret.
    pub webhook_secret_changed: bool,
    /// Whether it changed the retired API token hash (stored by earlier versions).
    #[serde(default)]
    pub api_token_changed: bool,
    /// Whether it changed the merchant's root key.
    #[serde(default)]
    pub root_key_changed: bool,
    /// Whether the merchant is disabled after it.
    pub disabled: bool,
}

impl AuditEntry {
    fn of(entry: &RegistryEntry, hash: B256, before: Option<&RegistryEntry>) -> Self {
        let (m, old) = (&entry.change.merchant, before.map(|b| &b.change.merchant));
        Self {
            applied_at_ms: entry.applied_at_ms,
            merchant_id: m.id.clone(),
            version: entry.change.version,
            change_hash: hash,
            epoch: entry.change.epoch,
            approved_by: entry.approvals.iter().map(|a| a.0).collect(),
            payout_address: m.payout_address,
            previous_payout_address: old.map(|o| o.payout_address),
            webhook_url: m.webhook_url.clone(),
            webhook_secret_changed: old.is_none_or(|o| o.webhook_secret != m.webhook_secret),
            api_token_changed: old.is_none_or(|o| o.api_token_sha256 != m.api_token_sha256),
            root_key_changed: old.is_none_or(|o| o.root_key != m.root_key),
            disabled: entry.change.disabled,
        }
    }
}

/// A change waiting for approvals.
#[derive(Debug, Clone)]
pub struct PendingChange {
    /// Its hash.
    pub hash: B256,
    /// The change.
    pub change: MerchantChange,
    /// Its approvals so far.
    pub approvals: Vec<(u32, Bytes)>,
}

/// What became of an approval offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantApprovalPut {
    /// Kept.
    New,
    /// This signer's approval of this change was kept already.
    Known,
    /// The signer approves [`MAX_PENDING_PER_SIGNER`] other waiting changes: dropped.
    Limit,
    /// The signer approved another change to the same merchant and version: dropped, as
    /// no honest operator approves two.
    Rival(B256),
    /// The registry holds this version of the merchant or a newer one: dropped.
    Stale(u64),
}

impl Store {
    /// Every merchant of the registry, by id.
    pub fn registry_entries(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(MERCHANT_REGISTRY)?;
        t.iter()?.map(|row| decode("merchant_registry", row?.1.value())).collect()
    }

    /// Merchant `id` of the registry.
    pub fn registry_entry(&self, id: &str) -> Result<Option<RegistryEntry>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(MERCHANT_REGISTRY)?;
        t.get(id)?.map(|v| decode("merchant_registry", v.value())).transpose()
    }

    /// Adds `merchant` at version 0 unless the registry holds its id; returns whether it did.
    pub fn seed_merchant(&self, merchant: &MerchantConfig, now_ms: u64) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let seeded = {
            let mut t = tx.open_table(MERCHANT_REGISTRY)?;
            if t.get(merchant.id.as_str())?.is_some() {
                false
            } else {
                let change = MerchantChange { merchant: merchant.clone(), disabled: false, version: 0, epoch: 0 };
                let entry =
                    RegistryEntry { change, approvals: Vec::new(), applied_at_ms: now_ms, previous_secret: None };
                t.insert(merchant.id.as_str(), encode(&entry).as_slice())?;
                let audit = AuditEntry::of(&entry, B256::ZERO, None);
                tx.open_table(MERCHANT_AUDIT)?.insert((now_ms, B256::ZERO.0), encode(&audit).as_slice())?;
                true
            }
        };
        tx.commit()?;
        Ok(seeded)
    }

    /// Keeps operator `signer`'s approval of `change` (hashed `hash`; checked by the caller)
    /// and the change itself, bounded per signer, one approval per merchant version, unless
    /// the registry holds that version already. With `own` (this node's approval) the
    /// (merchant, version) it approved is recorded for good, in the same transaction, so this
    /// node never approves a rival, even after the first change applied and its waiting
    /// approvals were dropped.
    pub fn put_merchant_approval(
        &self,
        change: &MerchantChange,
        hash: B256,
        signer: u32,
        signature: &[u8],
        own: bool,
    ) -> Result<MerchantApprovalPut, StoreError> {
        let id = change.merchant.id.as_str();
        let tx = self.db().begin_write()?;
        let put = {
            let mut approvals = tx.open_table(MERCHANT_APPROVALS)?;
            let mut changes = tx.open_table(MERCHANT_CHANGES)?;
            let mut mine_for_good = tx.open_table(MERCHANT_OWN)?;
            let held: Option<RegistryEntry> = tx
                .open_table(MERCHANT_REGISTRY)?
                .get(id)?
                .map(|v| decode("merchant_registry", v.value()))
                .transpose()?;
            let approved_before =
                if own { mine_for_good.get((id, change.version))?.map(|v| B256::from(v.value())) } else { None };
            if let Some(h) = held.filter(|h| h.change.version >= change.version) {
                MerchantApprovalPut::Stale(h.change.version)
            } else if let Some(other) = approved_before.filter(|o| *o != hash) {
                MerchantApprovalPut::Rival(other)
            } else if approvals.get((hash.0, signer))?.is_some() {
                MerchantApprovalPut::Known
            } else {
                let (mut mine, mut rival) = (0, None);
                for row in approvals.iter()? {
                    let (other, s) = row?.0.value();
                    if s != signer {
                        continue;
                    }
                    mine += 1;
                    if let Some(c) = changes.get(other)? {
                        let c: MerchantChange = decode("merchant_changes", c.value())?;
                        if c.merchant.id == change.merchant.id && c.version == change.version {
                            rival = Some(B256::from(other));
                        }
                    }
                }
                if let Some(r) = rival {
                    MerchantApprovalPut::Rival(r)
                } else if mine >= MAX_PENDING_PER_SIGNER {
                    MerchantApprovalPut::Limit
                } else {
                    approvals.insert((hash.0, signer), signature)?;
                    if changes.get(hash.0)?.is_none() {
                        changes.insert(hash.0, encode(change).as_slice())?;
                    }
                    if own {
                        mine_for_good.insert((id, change.version), hash.0)?;
                    }
                    MerchantApprovalPut::New
                }
            }
        };
        tx.commit()?;
        Ok(put)
    }

    /// Whether exactly this approval is kept (a repeat needs no pairing).
    pub fn has_merchant_approval(&self, hash: B256, signer: u32, signature: &[u8]) -> Result<bool, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(MERCHANT_APPROVALS)?;
        Ok(t.get((hash.0, signer))?.is_some_and(|v| v.value() == signature))
    }

    /// Every change waiting for approvals, with those kept so far.
    pub fn pending_merchant_changes(&self) -> Result<Vec<PendingChange>, StoreError> {
        let tx = self.read()?;
        let changes = tx.open_table(MERCHANT_CHANGES)?;
        let approvals = tx.open_table(MERCHANT_APPROVALS)?;
        let mut out = Vec::new();
        for row in changes.iter()? {
            let (k, v) = row?;
            let hash = k.value();
            let mut signed = Vec::new();
            for a in approvals.range((hash, 0)..=(hash, u32::MAX))? {
                let (k, v) = a?;
                signed.push((k.value().1, Bytes::from(v.value().to_vec())));
            }
            out.push(PendingChange {
                hash: B256::from(hash),
                change: decode("merchant_changes", v.value())?,
                approvals: signed,
            });
        }
        Ok(out)
    }

    /// The change hashed `hash`, waiting, with its approvals.
    pub fn pending_merchant_change(&self, hash: B256) -> Result<Option<PendingChange>, StoreError> {
        Ok(self.pending_merchant_changes()?.into_iter().find(|p| p.hash == hash))
    }

    /// Makes `entry` merchant `entry.change.merchant.id`'s record, unless the registry holds a
    /// version at least as new (then `false`), and forgets the waiting changes it supersedes
    /// (its own and those of the same merchant at or below its version), with an audit entry,
    /// in one transaction. When it changes the webhook secret, the secret it replaces keeps
    /// signing for `overlap_ms` (an earlier replaced secret still in its window stays when the
    /// secret does not change).
    pub fn apply_merchant_change(
        &self,
        hash: B256,
        entry: &RegistryEntry,
        overlap_ms: u64,
    ) -> Result<bool, StoreError> {
        let id = entry.change.merchant.id.as_str();
        let tx = self.db().begin_write()?;
        let applied = {
            let mut registry = tx.open_table(MERCHANT_REGISTRY)?;
            let before: Option<RegistryEntry> =
                registry.get(id)?.map(|v| decode("merchant_registry", v.value())).transpose()?;
            if before.as_ref().is_some_and(|b| b.change.version >= entry.change.version) {
                false
            } else {
                let mut entry = entry.clone();
                entry.previous_secret = before.as_ref().and_then(|b| {
                    if b.change.merchant.webhook_secret != entry.change.merchant.webhook_secret {
                        Some(PreviousSecret {
                            secret: b.change.merchant.webhook_secret.clone(),
                            until_ms: entry.applied_at_ms.saturating_add(overlap_ms),
                        })
                    } else {
                        b.previous_secret.clone().filter(|p| p.until_ms > entry.applied_at_ms)
                    }
                });
                let entry = &entry;
                registry.insert(id, encode(entry).as_slice())?;
                let audit = AuditEntry::of(entry, hash, before.as_ref());
                tx.open_table(MERCHANT_AUDIT)?.insert((entry.applied_at_ms, hash.0), encode(&audit).as_slice())?;
                let mut changes = tx.open_table(MERCHANT_CHANGES)?;
                let mut superseded = Vec::new();
                for row in changes.iter()? {
                    let (k, v) = row?;
                    let c: MerchantChange = decode("merchant_changes", v.value())?;
                    if c.merchant.id == id && c.version <= entry.change.version {
                        superseded.push(k.value());
                    }
                }
                let mut approvals = tx.open_table(MERCHANT_APPROVALS)?;
                for h in superseded {
                    changes.remove(h)?;
                    let signers: Vec<u32> = approvals
                        .range((h, 0)..=(h, u32::MAX))?
                        .map(|a| a.map(|(k, _)| k.value().1))
                        .collect::<Result<_, _>>()?;
                    for s in signers {
                        approvals.remove((h, s))?;
                    }
                }
                true
            }
        };
        tx.commit()?;
        Ok(applied)
    }

    /// Drops the waiting changes proposed to an epoch before `epoch`, with their approvals: no
    /// approval of them is taken any more, so they can never apply, and they would hold their
    /// signers' slots. Returns how many were dropped.
    pub fn drop_merchant_changes_before(&self, epoch: u64) -> Result<usize, StoreError> {
        // Called every rebroadcast interval, and almost always with nothing to drop: a read
        // finds that out without a commit (and its fsync).
        if stale_merchant_changes(&self.read()?.open_table(MERCHANT_CHANGES)?, epoch)?.is_empty() {
            return Ok(0);
        }
        let tx = self.db().begin_write()?;
        let dropped = {
            let mut changes = tx.open_table(MERCHANT_CHANGES)?;
            let stale = stale_merchant_changes(&changes, epoch)?;
            let mut approvals = tx.open_table(MERCHANT_APPROVALS)?;
            for h in &stale {
                changes.remove(*h)?;
                let signers: Vec<u32> = approvals
                    .range((*h, 0)..=(*h, u32::MAX))?
                    .map(|a| a.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()?;
                for s in signers {
                    approvals.remove((*h, s))?;
                }
            }
            stale.len()
        };
        tx.commit()?;
        Ok(dropped)
    }

    /// The audit log, oldest first, at most `limit` newest entries.
    pub fn merchant_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(MERCHANT_AUDIT)?;
        let mut out: Vec<AuditEntry> = t
            .iter()?
            .rev()
            .take(limit)
            .map(|row| decode("merchant_audit", row?.1.value()))
            .collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}

/// The waiting changes of epochs before `epoch`.
fn stale_merchant_changes(
    changes: &impl ReadableTable<[u8; 32], &'static [u8]>,
    epoch: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut stale = Vec::new();
    for row in changes.iter()? {
        let (k, v) = row?;
        let c: MerchantChange = decode("merchant_changes", v.value())?;
        if c.epoch < epoch {
            stale.push(k.value());
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use settleproof_config::{EXAMPLE, NodeConfig};

    pub(crate) fn merchant(payout: u8) -> MerchantConfig {
        let mut m = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example").merchants.remove(0);
        m.payout_address = Address::repeat_byte(payout);
        m
    }

    fn change(payout: u8, version: u64) -> MerchantChange {
        MerchantChange { merchant: merchant(payout), disabled: false, version, epoch: 0 }
    }

    #[test]
    fn a_change_applies_over_an_older_version_only_and_clears_what_it_supersedes() {
        let (dir, store) = temp_store();
        assert!(store.seed_merchant(&merchant(1), 1).expect("seed"));
        assert!(!store.seed_merchant(&merchant(9), 2).expect("seed again"), "the registry's entry stays");
        let (v1, rival, v2) = (change(2, 1), change(3, 1), change(4, 2));
        for (c, signer) in [(&v1, 0), (&rival, 1), (&v2, 0)] {
            assert_eq!(
                store.put_merchant_approval(c, c.hash(), signer, &[signer as u8], false).expect("put"),
                MerchantApprovalPut::New
            );
        }
        assert_eq!(
            store.put_merchant_approval(&rival, rival.hash(), 0, &[0], false).expect("rival"),
            MerchantApprovalPut::Rival(v1.hash()),
            "signer 0 approved another change to version 1"
        );
        assert_eq!(
            store.put_merchant_approval(&v1, v1.hash(), 0, &[7], false).expect("again"),
            MerchantApprovalPut::Known
        );
        let entry = |c: &MerchantChange| RegistryEntry {
            change: c.clone(),
            approvals: vec![(0, Bytes::from(vec![0]))],
            applied_at_ms: 10 + c.version,
            previous_secret: None,
        };
        assert!(store.apply_merchant_change(v1.hash(), &entry(&v1), 1000).expect("apply"));
        // Version 1's rival is superseded; version 2 still waits.
        let pending: Vec<B256> = store.pending_merchant_changes().expect("pending").iter().map(|p| p.hash).collect();
        assert_eq!(pending, vec![v2.hash()]);
        assert!(!store.apply_merchant_change(rival.hash(), &entry(&rival), 1000).expect("stale"), "not over version 1");
        assert!(store.apply_merchant_change(v2.hash(), &entry(&v2), 1000).expect("apply"));
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(
            store.registry_entry("demo").expect("read").expect("held").change.merchant.payout_address,
            Address::repeat_byte(4)
        );
        let audit = store.merchant_audit(10).expect("audit");
        let trail: Vec<(u64, Option<Address>, Address)> =
            audit.iter().map(|a| (a.version, a.previous_payout_address, a.payout_address)).collect();
        assert_eq!(
            trail,
            vec![
                (0, None, Address::repeat_byte(1)),
                (1, Some(Address::repeat_byte(1)), Address::repeat_byte(2)),
                (2, Some(Address::repeat_byte(2)), Address::repeat_byte(4)),
            ]
        );
        assert!(store.pending_merchant_changes().expect("pending").is_empty());
    }

    #[test]
    fn this_node_never_approves_a_rival_even_after_its_first_choice_applied() {
        let (_dir, store) = temp_store();
        let (y, x) = (change(2, 1), change(3, 1));
        assert_eq!(store.put_merchant_approval(&y, y.hash(), 0, &[0], true).expect("own"), MerchantApprovalPut::New);
        assert_eq!(
            store.put_merchant_approval(&x, x.hash(), 0, &[0], true).expect("rival"),
            MerchantApprovalPut::Rival(y.hash())
        );
        let entry = RegistryEntry { change: y.clone(), approvals: Vec::new(), applied_at_ms: 5, previous_secret: None };
        assert!(store.apply_merchant_change(y.hash(), &entry, 0).expect("apply"));
        // Y's waiting approvals are gone; X still cannot be approved, nor kept from gossip.
        assert_eq!(
            store.put_merchant_approval(&x, x.hash(), 0, &[0], true).expect("after"),
            MerchantApprovalPut::Stale(1)
        );
        assert_eq!(
            store.put_merchant_approval(&x, x.hash(), 1, &[1], false).expect("heard"),
            MerchantApprovalPut::Stale(1)
        );
        let (y2, x2) = (change(4, 2), change(5, 2));
        store.put_merchant_approval(&y2, y2.hash(), 0, &[0], true).expect("own");
        // The record of what this node approved outlives the waiting approvals.
        let tx = store.db().begin_write().expect("tx");
        tx.open_table(crate::store::MERCHANT_APPROVALS).expect("t").remove((y2.hash().0, 0)).expect("rm");
        tx.commit().expect("commit");
        assert_eq!(
            store.put_merchant_approval(&x2, x2.hash(), 0, &[0], true).expect("rival"),
            MerchantApprovalPut::Rival(y2.hash())
        );
    }

    #[test]
    fn a_replaced_secret_is_kept_for_its_overlap_only() {
        let (_dir, store) = temp_store();
        store.seed_merchant(&merchant(1), 0).expect("seed");
        let apply = |version: u64, secret: &str, at: u64| {
            let mut m = merchant(1);
            m.webhook_secret = settleproof_config::Secret::new(secret);
            let change = MerchantChange { merchant: m, disabled: false, version, epoch: 0 };
            let entry = RegistryEntry {
                change: change.clone(),
                approvals: Vec::new(),
                applied_at_ms: at,
                previous_secret: None,
            };
            assert!(store.apply_merchant_change(change.hash(), &entry, 1000).expect("apply"));
            store.registry_entry("demo").expect("read").expect("held").previous_secret
        };
        let old = merchant(1).webhook_secret;
        let new = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
        assert_eq!(apply(1, new, 10), Some(PreviousSecret { secret: old.clone(), until_ms: 1010 }));
        assert_eq!(
            apply(2, new, 20),
            Some(PreviousSecret { secret: old, until_ms: 1010 }),
            "the secret kept: so is the overlap"
        );
        assert_eq!(apply(3, new, 2000), None, "past its window");
    }

    #[test]
    fn a_signer_keeps_a_bounded_number_of_waiting_changes() {
        let (_dir, store) = temp_store();
        for v in 1..=MAX_PENDING_PER_SIGNER as u64 {
            let c = change(2, v);
            assert_eq!(
                store.put_merchant_approval(&c, c.hash(), 3, &[1], false).expect("put"),
                MerchantApprovalPut::New
            );
        }
        let c = change(2, 99);
        assert_eq!(
            store.put_merchant_approval(&c, c.hash(), 3, &[1], false).expect("limit"),
            MerchantApprovalPut::Limit
        );
        assert_eq!(
            store.put_merchant_approval(&c, c.hash(), 4, &[1], false).expect("another"),
            MerchantApprovalPut::New
        );
        // Once a later operator set is the latest, those waiting changes are dropped, and the
        // signer's slots are free again.
        let later = MerchantChange { epoch: 1, ..change(2, 100) };
        store.put_merchant_approval(&later, later.hash(), 4, &[1], false).expect("later");
        assert_eq!(store.drop_merchant_changes_before(1).expect("drop"), MAX_PENDING_PER_SIGNER + 1);
        assert_eq!(store.pending_merchant_changes().expect("pending").len(), 1, "epoch 1's stays");
        assert_eq!(store.put_merchant_approval(&c, c.hash(), 3, &[1], false).expect("room"), MerchantApprovalPut::New);
    }

    #[test]
    fn dropping_nothing_takes_no_write_transaction() {
        let (_dir, store) = temp_store();
        let c = MerchantChange { epoch: 2, ..change(2, 1) };
        store.put_merchant_approval(&c, c.hash(), 3, &[1], false).expect("put");
        let store = std::sync::Arc::new(store);
        // The store's one writer is held: a call that wanted it would wait for it.
        let held = store.db().begin_write().expect("writer");
        let (done, answer) = std::sync::mpsc::channel();
        let s = store.clone();
        std::thread::spawn(move || done.send(s.drop_merchant_changes_before(2).expect("drop")));
        let dropped = answer.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert_eq!(dropped, Ok(0), "nothing stale, yet it waited for the writer");
        assert_eq!(store.drop_merchant_changes_before(3).expect("drop"), 1);
    }
}
