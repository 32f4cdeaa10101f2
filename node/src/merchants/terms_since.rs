//! Since when a merchant's terms (its root key and payout address) hold, as the threshold
//! approved it: the time a late node uses to judge which invoices made under the previous terms
//! enough operators received in time (`Registry::vouch_cutoff_s`).
//!
//! A change that sets new terms carries its proposal's time (`MerchantChange::terms_since_s`);
//! any other change carries its previous version's. An honest operator approves a change only
//! over the version it holds, and only when the time is not ahead of its clock by more than
//! [`MAX_SKEW_S`] and a carried time is the one it holds; so no honest node applied new terms
//! before `terms_since_s - MAX_SKEW_S`, whatever the node that proposed them claims, and a node
//! that skipped versions while away reads the time from the change it applies rather than its
//! own (late) clock. A time dated earlier only makes late nodes vouch for less.

use crate::store::{MerchantChange, RegistryEntry};
use settleproof_config::MerchantConfig;
pub use settleproof_merchant_auth::MAX_SKEW_S;

/// Whether `next` sets terms other than `held`'s (a new merchant sets them).
fn sets_terms(held: Option<&MerchantChange>, next: &MerchantConfig) -> bool {
    held.is_none_or(|h| h.merchant.root_key != next.root_key || h.merchant.payout_address != next.payout_address)
}

/// The `terms_since_s` of a change to `next` proposed at `now_s` over `held`.
pub(super) fn proposed(held: Option<&MerchantChange>, next: &MerchantConfig, now_s: u64) -> Option<u64> {
    match held {
        Some(h) if !sets_terms(held, next) => h.terms_since_s,
        _ => Some(now_s),
    }
}

/// Why this node does not approve `change` over `held` (its record of the merchant) at
/// `now_s`: `None` when it may.
pub(super) fn approval_problem(held: Option<&MerchantChange>, change: &MerchantChange, now_s: u64) -> Option<String> {
    let held_version = held.map_or(0, |h| h.version);
    if change.version != held_version.saturating_add(1) {
        return Some(format!(
            "this node holds version {held_version} of the merchant and approves only version {} over it; approve once it holds version {}",
            held_version.saturating_add(1),
            change.version.saturating_sub(1)
        ));
    }
    match (sets_terms(held, &change.merchant), change.terms_since_s) {
        (true, None) => Some("a change of the root key or payout address must say since when (terms_since_s)".into()),
        (true, Some(t)) if t > now_s.saturating_add(MAX_SKEW_S) => {
            Some(format!("terms_since_s {t} is ahead of this node's clock ({now_s})"))
        }
        (true, Some(_)) => None,
        (false, t) if t != held.and_then(|h| h.terms_since_s) => {
            Some("terms_since_s must be the held version's: this change keeps the root key and payout address".into())
        }
        (false, _) => None,
    }
}

/// The earliest time (unix s) any honest node can have held `entry`'s terms: its approved
/// `terms_since_s` less the allowed skew, and never after this node applied it (the applying
/// time alone for a record approved before changes carried it).
pub(super) fn began_s(entry: &RegistryEntry) -> u64 {
    let applied_s = entry.applied_at_ms / 1000;
    entry.change.terms_since_s.map_or(applied_s, |t| t.saturating_sub(MAX_SKEW_S).min(applied_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    fn change(version: u64, payout: u8, terms_since_s: Option<u64>) -> MerchantChange {
        let mut merchant = crate::merchants::api_keys::tests::demo_merchant();
        merchant.payout_address = Address::repeat_byte(payout);
        MerchantChange { merchant, disabled: false, version, epoch: 0, terms_since_s }
    }

    #[test]
    fn a_change_of_terms_carries_its_proposal_time_and_any_other_the_held_one() {
        let held = change(3, 1, Some(500));
        assert_eq!(proposed(Some(&held), &change(4, 1, None).merchant, 900), Some(500), "same terms");
        assert_eq!(proposed(Some(&held), &change(4, 2, None).merchant, 900), Some(900), "new payout");
        let mut rekeyed = change(4, 1, None).merchant;
        rekeyed.root_key = None;
        assert_eq!(proposed(Some(&held), &rekeyed, 900), Some(900), "new root key");
        assert_eq!(proposed(None, &held.merchant, 900), Some(900), "a new merchant");
        let legacy = change(3, 1, None);
        assert_eq!(proposed(Some(&legacy), &change(4, 1, None).merchant, 900), None, "carried, unknown");
    }

    /// An honest approver takes the next version only, with a time not ahead of its clock when
    /// the terms change and the held time when they do not.
    #[test]
    fn an_approver_checks_the_version_and_the_time_it_carries() {
        let held = change(3, 1, Some(500));
        let now = 1_000;
        let table = [
            (change(4, 2, Some(now)), true, "new terms, now"),
            (change(4, 2, Some(now + MAX_SKEW_S)), true, "new terms, within the skew"),
            (change(4, 2, Some(10)), true, "new terms, dated early (late nodes vouch for less)"),
            (change(4, 2, Some(now + MAX_SKEW_S + 1)), false, "new terms, dated ahead"),
            (change(4, 2, None), false, "new terms, no time"),
            (change(4, 1, Some(500)), true, "same terms, the held time"),
            (change(4, 1, Some(900)), false, "same terms, a later time"),
            (change(4, 1, None), false, "same terms, time dropped"),
            (change(5, 2, Some(now)), false, "a version skipped"),
            (change(3, 2, Some(now)), false, "the held version"),
        ];
        for (c, ok, what) in table {
            assert_eq!(approval_problem(Some(&held), &c, now).is_none(), ok, "{what}");
        }
        assert!(approval_problem(None, &change(1, 2, Some(now)), now).is_none(), "a new merchant");
        assert!(approval_problem(None, &change(2, 2, Some(now)), now).is_some(), "a new merchant at version 2");
    }

    #[test]
    fn terms_began_the_skew_before_their_time_and_never_after_this_node_applied_them() {
        let entry = |t, applied_s: u64| RegistryEntry {
            change: change(1, 1, t),
            approvals: Vec::new(),
            applied_at_ms: applied_s * 1000 + 999,
            previous_secret: None,
        };
        assert_eq!(began_s(&entry(Some(1_000), 5_000)), 1_000 - MAX_SKEW_S, "heard late");
        assert_eq!(began_s(&entry(Some(1_000), 960)), 960, "applied before its time less the skew");
        assert_eq!(began_s(&entry(None, 5_000)), 5_000, "approved before changes carried it");
        assert_eq!(began_s(&entry(Some(3), 5_000)), 0);
    }
}
