//! Changes to the merchant registry, approved by a threshold of operators.
//!
//! A change is a merchant's whole next record at a version. Operators sign
//! [`merchant_change_message`] over the change's hash; every node applies a change once a
//! threshold of the latest operator set signed it and its version is newer than the record it
//! holds ([`change_fate`]). The message has a type string of its own, so an approval can never
//! pass for a batch signature or a set update, and it names the chain and settlement contract
//! of the registry's home chain and the approving epoch, so it cannot be replayed elsewhere.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::SolValue;

/// Type string of a merchant registry change.
pub const MERCHANT_CHANGE_TYPE: &str =
    "SettleproofMerchantChange(uint256 chainId,address settlement,uint64 epoch,bytes32 changeHash)";

/// The 32-byte message an operator of `epoch` signs to approve the change hashed `change_hash`.
pub fn merchant_change_message(chain_id: u64, settlement: Address, epoch: u64, change_hash: B256) -> B256 {
    keccak256((keccak256(MERCHANT_CHANGE_TYPE), U256::from(chain_id), settlement, epoch, change_hash).abi_encode())
}

/// What becomes of a change, given the version held and its approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeFate {
    /// A threshold approved it and it is newer: apply it.
    Apply,
    /// Newer, but not yet approved by a threshold: keep it and wait for more approvals.
    Wait {
        /// Distinct approvers so far.
        approvals: usize,
        /// Approvers needed.
        threshold: usize,
    },
    /// Not newer than the record held (a replay, or a rival change that lost): drop it.
    Stale {
        /// The version held.
        current: u64,
    },
}

/// The fate of a change to `version` of a merchant held at `current` (`None`: unknown here),
/// with `approvals` distinct valid approvers of a set whose threshold is `threshold`.
pub fn change_fate(current: Option<u64>, version: u64, approvals: usize, threshold: usize) -> ChangeFate {
    match current {
        Some(current) if version <= current => ChangeFate::Stale { current },
        _ if approvals >= threshold.max(1) => ChangeFate::Apply,
        _ => ChangeFate::Wait { approvals, threshold },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BATCH_TYPE;
    use crate::operator_set::{UPDATE_TYPE, update_message};

    #[test]
    fn fates() {
        let cases = [
            (None, 1, 3, 3, ChangeFate::Apply),
            (Some(0), 1, 3, 3, ChangeFate::Apply),
            (Some(1), 5, 4, 3, ChangeFate::Apply),
            (Some(0), 1, 2, 3, ChangeFate::Wait { approvals: 2, threshold: 3 }),
            (None, 1, 0, 1, ChangeFate::Wait { approvals: 0, threshold: 1 }),
            (Some(1), 1, 4, 3, ChangeFate::Stale { current: 1 }),
            (Some(2), 1, 4, 3, ChangeFate::Stale { current: 2 }),
        ];
        for (current, version, approvals, threshold, want) in cases {
            assert_eq!(change_fate(current, version, approvals, threshold), want, "{current:?} {version} {approvals}");
        }
        assert_eq!(
            change_fate(None, 1, 0, 0),
            ChangeFate::Wait { approvals: 0, threshold: 0 },
            "one approval at least"
        );
    }

    #[test]
    fn the_message_binds_every_field_and_differs_from_other_messages() {
        let (c, s, e, h) = (1u64, Address::repeat_byte(1), 2u64, B256::repeat_byte(3));
        let m = merchant_change_message(c, s, e, h);
        assert_ne!(m, merchant_change_message(2, s, e, h));
        assert_ne!(m, merchant_change_message(c, Address::repeat_byte(2), e, h));
        assert_ne!(m, merchant_change_message(c, s, 3, h));
        assert_ne!(m, merchant_change_message(c, s, e, B256::repeat_byte(4)));
        assert_ne!(m, update_message(c, s, h));
        assert!(MERCHANT_CHANGE_TYPE != UPDATE_TYPE && MERCHANT_CHANGE_TYPE != BATCH_TYPE);
    }
}
