//! Who signed an invoice: every node checks, before it keeps or relays an invoice another
//! operator sent, that a key of its merchant that may create invoices (the root key, or a live
//! key with `invoices:write`) signed the request the invoice was made from
//! ([`super::invoice_record`]). The answer depends on this node's registry (a key grant may
//! not have reached it yet, a root key may have been replaced), so a refusal never blames the
//! relayer. An invoice is announced several times: a signature checked once is remembered
//! (bounded), so the repeats cost a hash, not a verification.

use super::Registry;
use super::invoice_record::{INVOICES_PATH, read};
use crate::store::{Invoice, Scope};
use alloy::primitives::{B256, keccak256};
use settleproof_merchant_auth::MAX_SKEW_S;
use std::num::NonZeroUsize;

/// Signatures remembered as checked: several seconds of announcements at the highest rate a
/// node takes invoices.
pub(super) const REMEMBERED: NonZeroUsize = match NonZeroUsize::new(65_536) {
    Some(n) => n,
    None => panic!("a positive capacity"),
};

/// How far ahead of this node's clock a signing time may be.
const MAX_CLOCK_SKEW_S: u64 = 5 * 60;

/// Why this node does not take an invoice's signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    /// It depends on this node's registry: no signed request, a key it does not hold (not yet,
    /// or no longer), one without the scope, or a time ahead of its clock. The relayer is not
    /// blamed.
    #[error("{0}")]
    NotHere(String),
    /// The signature does not hold under the key it names, which this node holds: a key id is
    /// the hash of the key, so every node that holds it finds the same, and no honest node
    /// relays it. The relayer made it, or took it from one who did.
    #[error("the signature does not hold under the merchant's key {key_id}: {problem}")]
    Forged {
        /// The key named.
        key_id: String,
        /// What does not hold.
        problem: String,
    },
}

impl Registry {
    /// Checks that the merchant of `invoice` signed the request it was made from, with a key
    /// that may create invoices. (That the invoice holds what was signed is checked apart, and
    /// needs no registry: `crate::gossip::check_invoice_terms`.)
    pub fn check_invoice_signature(&self, invoice: &Invoice) -> Result<(), SignatureRefusal> {
        let not_here = |e: String| SignatureRefusal::NotHere(e);
        let statement = invoice
            .statement
            .as_ref()
            .ok_or_else(|| not_here("an invoice without its merchant's signed request".into()))?;
        let seen = keccak256(
            [invoice.id.as_slice(), statement.jwt.as_bytes(), keccak256(statement.body.as_bytes()).as_slice()].concat(),
        );
        if self.remembered(seen) {
            return Ok(());
        }
        let signed = read(statement).map_err(|e| not_here(e.to_string()))?;
        if signed.signed_at > crate::time::now_s().saturating_add(MAX_CLOCK_SKEW_S) {
            return Err(not_here("signed in the future".into()));
        }
        let key = self
            .statement_signer(&invoice.merchant_id, &signed.key_id, signed.signed_at, Scope::InvoicesWrite)
            .map_err(not_here)?;
        statement.verify(&key, &invoice.merchant_id, "POST", INVOICES_PATH, Some(self.audience_rule())).map_err(
            |e| match e {
                // Whether a JWT without `aud` is taken depends on this node's
                // `network.audience_optional_before_s`: not the relayer's doing.
                settleproof_merchant_auth::AuthError::MissingAudience { .. } => not_here(e.to_string()),
                e => SignatureRefusal::Forged { key_id: signed.key_id.clone(), problem: e.to_string() },
            },
        )?;
        self.remember(seen);
        Ok(())
    }

    /// The time (unix s) before which an operator must have received `invoice` for its word to
    /// count towards it here, when this node's registry refuses it (see
    /// `crate::rounds::invoice_fetch`): when what makes this node refuse it began, the earliest
    /// when several do. A key's revocation: [`revocation_cutoff_s`]. A root key replaced or a
    /// payout address changed (a live key's invoice refused for its payout address, or a key
    /// the replaced root granted): when this node applied that change. A request signed without
    /// `aud` that this node no longer takes: the upgrade day. A merchant this node does not
    /// hold: any time (this node is the late one). `None`: an invoice without a signed request.
    pub fn vouch_cutoff_s(&self, invoice: &Invoice) -> Option<u64> {
        let statement = invoice.statement.as_ref()?;
        let by_key = self.key_cutoff_s(invoice)?;
        let unnamed = super::audience::unnamed(statement) && !self.takes_unnamed(statement);
        match (unnamed, self.audience_optional_before_s()) {
            (true, Some(day)) => Some(by_key.min(day)),
            // Never taken here: no operator's word counts.
            (true, None) => Some(0),
            (false, _) => Some(by_key),
        }
    }

    /// [`Self::vouch_cutoff_s`] of the key that signed `invoice` and the merchant's terms.
    fn key_cutoff_s(&self, invoice: &Invoice) -> Option<u64> {
        let signed = read(invoice.statement.as_ref()?).ok()?;
        let store = self.store().ok()?;
        let Some(entry) = store.registry_entry(&invoice.merchant_id).ok()? else { return Some(u64::MAX) };
        let changed_s = entry.applied_at_ms / 1000;
        let payout_changed = entry.change.merchant.payout_address != invoice.payout_address;
        if entry.change.merchant.root_key.as_ref().is_some_and(|k| k.key_id() == signed.key_id) {
            // The current root key's: refused for its payout address, the merchant's being
            // disabled, or for nothing here (`u64::MAX`: any other reason is the caller's).
            return Some(if payout_changed || entry.change.disabled { changed_s } else { u64::MAX });
        }
        match store.api_key(crate::store::key_slot(&invoice.merchant_id, &signed.key_id)).ok()? {
            Some(k) if k.id == signed.key_id && k.merchant_id == invoice.merchant_id => {
                let signed_s = k
                    .revocation
                    .as_ref()
                    .and_then(|r| settleproof_merchant_auth::header_free_claims(&r.jwt))
                    .map(|c| c.nbf);
                let revoked = revocation_cutoff_s(signed_s, k.revoked_at_ms);
                // Each reason to refuse began at its own time; the earliest counts.
                let terms_changed = !self.granted_by_root(&k) || payout_changed || entry.change.disabled;
                match (revoked, terms_changed) {
                    (Some(r), true) => Some(r.min(changed_s)),
                    (Some(r), false) => Some(r),
                    (None, true) => Some(changed_s),
                    // A live key of the current root key, to the current payout address of a
                    // merchant not disabled: what refuses it here is no change of the key or the
                    // terms (a missing `aud`, the caller's; or a scope or grant time that refuses
                    // it at every node, so that no honest operator holds it).
                    (None, false) => Some(u64::MAX),
                }
            }
            // Not a key held here: a root key replaced since.
            _ => Some(changed_s),
        }
    }

    fn remembered(&self, seen: B256) -> bool {
        // The cache is whole after any panic (each call leaves it so).
        self.0.verified_invoices.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&seen).is_some()
    }

    fn remember(&self, seen: B256) {
        self.0.verified_invoices.lock().unwrap_or_else(std::sync::PoisonError::into_inner).put(seen, ());
    }
}

/// When a key's revocation may have begun, for vouching (unix s): the earlier of the time the
/// merchant signed it less the clock skew a node allows (`signed_s`, its `nbf`, by the
/// merchant's clock, which may run up to [`MAX_SKEW_S`] ahead of the nodes': no node takes a
/// revocation dated further ahead, at the API or from a peer, so none held it before
/// `nbf - MAX_SKEW_S`) and the time this node first held it (`revoked_at_ms`, never before the
/// revocation was made). `None`: not revoked.
fn revocation_cutoff_s(signed_s: Option<u64>, revoked_at_ms: Option<u64>) -> Option<u64> {
    let began = signed_s.map(|nbf| nbf.saturating_sub(MAX_SKEW_S));
    match (began, revoked_at_ms.map(|at| at / 1000)) {
        (Some(began), Some(held)) => Some(began.min(held)),
        (began, held) => began.or(held),
    }
}

#[cfg(test)]
mod cutoff_tests {
    /// A revocation signed ahead of this node's clock begins when this node held it; one this
    /// node heard late begins the allowed skew before the merchant signed it (the merchant's
    /// clock may have run that far ahead of the first node that took it).
    #[test]
    fn a_revocation_begins_at_the_earlier_of_its_signing_less_the_skew_and_its_arrival() {
        let table = [
            ((Some(160), Some(100_500)), Some(100)),
            ((Some(130), Some(100_500)), Some(100)),
            ((Some(100), Some(160_000)), Some(70)),
            ((None, Some(100_999)), Some(100)),
            ((Some(100), None), Some(70)),
            ((Some(10), None), Some(0)),
            ((None, None), None),
        ];
        for ((signed, held), want) in table {
            assert_eq!(super::revocation_cutoff_s(signed, held), want, "{signed:?} {held:?}");
        }
    }
}

#[cfg(test)]
mod vouch_tests {
    use crate::merchants::api_keys::tests::{ROOT, demo_merchant, grant, registries, registries_of, statement};
    use crate::store::{MerchantChange, RegistryEntry};
    use settleproof_merchant_auth::MAX_SKEW_S;

    /// Each reason this node refuses an invoice began at its own time, and the earliest counts:
    /// a revoked key's invoice counts from the revocation; a revoked key that a replaced root
    /// key granted, from the root key's replacement when that came first; an invoice to a
    /// payout address changed since, from the change.
    #[test]
    fn the_earliest_reason_to_refuse_an_invoice_is_its_vouch_cutoff() {
        let (_dirs, nodes) = registries();
        let node = &nodes[0];
        let now = crate::time::now_s();
        // The registry's latest change applied here long ago.
        let changed_s = now - 1_000;
        let change = MerchantChange { merchant: demo_merchant(), disabled: false, version: 1, epoch: 0 };
        let entry =
            RegistryEntry { change, approvals: Vec::new(), applied_at_ms: changed_s * 1000, previous_secret: None };
        let store = node.store().expect("store");
        assert!(store.apply_merchant_change(entry.change.hash(), &entry, 0).expect("apply"));
        node.reload().expect("reload");
        let payout = demo_merchant().payout_address;
        let invoice = |signer, to| {
            let on = (0, alloy::primitives::Address::ZERO);
            crate::merchants::invoice_record::testing::signed_invoice(
                signer,
                serde_json::json!({"amount": "1", "token": "native"}),
                on,
                to,
                "node-0",
            )
        };
        // Revokes key `id` now; the revocation's signing time.
        let revoke = |id: &str| {
            let revocation = statement(&ROOT, "DELETE", &format!("{}/{id}", super::super::api_keys::GRANT_PATH), "");
            let signed_s = settleproof_merchant_auth::header_free_claims(&revocation.jwt).expect("claims").nbf;
            node.revoke_key("demo", id, revocation).expect("revoke");
            signed_s
        };
        // A live key of the current root key: its invoice to another payout address counts
        // from the change; revoked now, its invoices count from the revocation.
        let (g, current) = grant(&ROOT, "current", &["invoices:write"]);
        let key = node.create_key("demo", g).expect("grant");
        let elsewhere = alloy::primitives::Address::repeat_byte(0x0d);
        assert_eq!(node.vouch_cutoff_s(&invoice(&current, elsewhere)), Some(changed_s), "from the payout change");
        assert_eq!(node.vouch_cutoff_s(&invoice(&current, payout)), Some(u64::MAX), "nothing here refuses it");
        let by_current = invoice(&current, payout);
        let revoked_s = revoke(&key.id);
        assert_eq!(node.vouch_cutoff_s(&by_current), Some(revoked_s - MAX_SKEW_S), "from the revocation");
        // A key a replaced root key granted, revoked now: the replacement came first.
        let old_root = crate::merchants::test_network::signer("demo", settleproof_merchant_auth::KeyAlg::EdDsa);
        let (g, orphan) = grant(&old_root, "orphan", &["invoices:write"]);
        let orphaned = super::super::api_keys::key_of_grant("demo", &g).expect("fields");
        store.put_api_key(&orphaned).expect("put");
        let by_orphan = invoice(&orphan, payout);
        revoke(&orphaned.id);
        assert_eq!(node.vouch_cutoff_s(&by_orphan), Some(changed_s), "from the root key's replacement");
        // The root key's own invoice to another payout address: from the change.
        assert_eq!(node.vouch_cutoff_s(&invoice(&ROOT, elsewhere)), Some(changed_s));
    }

    /// After the upgrade day, an invoice signed without `aud` that a node missed counts from
    /// the day: the operators that took it before then vouch for it.
    #[test]
    fn an_unnamed_invoice_missed_until_after_the_upgrade_day_counts_from_the_day() {
        let day = crate::time::now_s() - 60;
        let (_dirs, nodes) = registries_of(vec![demo_merchant()], Some(day));
        let unnamed = settleproof_merchant_auth::MerchantSigner::from_pem("demo", ROOT.private_key_pem()).expect("pem");
        let on = (0, alloy::primitives::Address::ZERO);
        let body = serde_json::json!({"amount": "1", "token": "native"});
        let made = |by| {
            crate::merchants::invoice_record::testing::signed_invoice(
                by,
                body.clone(),
                on,
                demo_merchant().payout_address,
                "node-0",
            )
        };
        assert_eq!(nodes[0].vouch_cutoff_s(&made(&unnamed)), Some(day));
        assert_eq!(nodes[0].vouch_cutoff_s(&made(&ROOT)), Some(u64::MAX), "named: nothing here refuses it");
    }
}
