//! Operator sets in epochs, and the changes that move a set from epoch e to e+1.
//!
//! A set is what the settlement contract commits: its epoch, the round it takes effect at, its
//! threshold and its ordered operator records. Its hash ([`OperatorSetSpec::set_hash`]) equals
//! `Settlement.setHashOf(...)`, and the current set signs [`update_message`] over the next
//! set's hash to install it. A [`SetChange`] is what an operator proposes (add, remove, rotate,
//! threshold); [`OperatorSetSpec::apply`] turns the current set and a change into the next set.

use crate::bls::BlsPublicKey;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::SolValue;
use serde::{Deserialize, Serialize};

/// Type string of an operator record (must match `Settlement.RECORD_TYPEHASH`).
pub const RECORD_TYPE: &str =
    "SettleproofOperator(address account,bytes peerId,bytes blsPublicKey,string name,string p2pAddr)";
/// Type string of an operator set (must match `Settlement.SET_TYPEHASH`).
pub const SET_TYPE: &str =
    "SettleproofOperatorSet(uint64 epoch,uint64 startRound,uint16 threshold,uint16 count,bytes32 records)";
/// Type string of a set update (must match `Settlement.UPDATE_TYPEHASH`).
pub const UPDATE_TYPE: &str = "SettleproofSetUpdate(uint256 chainId,address settlement,bytes32 setHash)";
/// Largest operator set (one bit of a 256-bit signer bitmap each).
pub const MAX_OPERATORS: usize = 256;

/// One operator as the contract stages it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// Name, for logs and the operator-facing tools.
    pub name: String,
    /// EVM account that submits settlements.
    pub account: Address,
    /// libp2p peer id, as its multihash bytes.
    pub peer_id: Bytes,
    /// Multiaddr where the operator listens.
    pub p2p_addr: String,
    /// BLS public key.
    pub bls: BlsPublicKey,
}

impl OperatorRecord {
    /// `Settlement.recordHash`: the record without its proof of possession.
    pub fn hash(&self) -> B256 {
        keccak256(
            (
                keccak256(RECORD_TYPE),
                self.account,
                keccak256(&self.peer_id),
                keccak256(self.bls.to_eip2537()),
                keccak256(self.name.as_bytes()),
                keccak256(self.p2p_addr.as_bytes()),
            )
                .abi_encode(),
        )
    }
}

/// An operator set of one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSetSpec {
    /// Epoch number (0 = the set fixed at deployment).
    pub epoch: u64,
    /// First round this set settles.
    pub start_round: u64,
    /// Signatures needed.
    pub threshold: u16,
    /// Operators; position i is bit i of a signer bitmap.
    pub operators: Vec<OperatorRecord>,
}

/// A change an operator proposes to the current set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SetChange {
    /// A new operator joins, at the end of the list.
    Add {
        /// The new operator.
        operator: OperatorRecord,
    },
    /// The operator with this name leaves.
    Remove {
        /// Its name.
        name: String,
    },
    /// The operator with this name gets a new BLS key and/or EVM account.
    Rotate {
        /// Its name.
        name: String,
        /// The new BLS key, if it changes.
        bls: Option<BlsPublicKey>,
        /// The new account, if it changes.
        account: Option<Address>,
    },
    /// The threshold changes.
    Threshold {
        /// The new threshold.
        threshold: u16,
    },
}

/// Why a set or a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// No operator has this name.
    #[error("no operator is named `{0}`")]
    UnknownOperator(String),
    /// Two operators share a name, key, account or peer id.
    #[error("operators {0} and {1} share a {2}; every operator needs its own")]
    Duplicate(usize, usize, &'static str),
    /// The threshold is outside `1..=operators`.
    #[error("threshold {threshold} is outside 1..={operators}")]
    Threshold {
        /// Threshold asked for.
        threshold: u16,
        /// Operators in the set.
        operators: usize,
    },
    /// The set is empty or larger than [`MAX_OPERATORS`].
    #[error("a set has 1..={MAX_OPERATORS} operators, this one {0}")]
    Size(usize),
    /// The next set must start after this one.
    #[error("the next set must start after round {0}")]
    StartRound(u64),
    /// A rotation that changes nothing.
    #[error("the rotation of `{0}` names neither a new BLS key nor a new account")]
    EmptyRotation(String),
}

impl OperatorSetSpec {
    /// Checks size, threshold and that no two operators share a name, key, account or peer id.
    pub fn validate(&self) -> Result<(), SetError> {
        let n = self.operators.len();
        if n == 0 || n > MAX_OPERATORS {
            return Err(SetError::Size(n));
        }
        if self.threshold == 0 || usize::from(self.threshold) > n {
            return Err(SetError::Threshold { threshold: self.threshold, operators: n });
        }
        for (i, a) in self.operators.iter().enumerate() {
            for (j, b) in self.operators.iter().enumerate().skip(i + 1) {
                let shared = [
                    (a.name == b.name, "name"),
                    (a.bls == b.bls, "BLS key"),
                    (a.account == b.account, "account"),
                    (a.peer_id == b.peer_id, "peer id"),
                ];
                if let Some((_, what)) = shared.into_iter().find(|(same, _)| *same) {
                    return Err(SetError::Duplicate(i, j, what));
                }
            }
        }
        Ok(())
    }

    /// Running hash of the records, as the contract accumulates it chunk by chunk.
    pub fn records_hash(&self) -> B256 {
        self.operators.iter().fold(B256::ZERO, |h, r| keccak256((h, r.hash()).abi_encode()))
    }

    /// `Settlement.setHashOf(...)` of this set.
    pub fn set_hash(&self) -> B256 {
        let count = u16::try_from(self.operators.len()).unwrap_or(u16::MAX);
        keccak256(
            (keccak256(SET_TYPE), self.epoch, self.start_round, self.threshold, count, self.records_hash())
                .abi_encode(),
        )
    }

    /// The next epoch's set: this one with `change` applied, starting at `start_round`.
    pub fn apply(&self, change: &SetChange, start_round: u64) -> Result<Self, SetError> {
        if start_round <= self.start_round {
            return Err(SetError::StartRound(self.start_round));
        }
        let mut next = Self { epoch: self.epoch + 1, start_round, ..self.clone() };
        let position = |name: &str| {
            next.operators.iter().position(|o| o.name == name).ok_or_else(|| SetError::UnknownOperator(name.into()))
        };
        match change {
            SetChange::Add { operator } => next.operators.push(operator.clone()),
            SetChange::Remove { name } => {
                let i = position(name)?;
                next.operators.remove(i);
                next.threshold = next.threshold.min(u16::try_from(next.operators.len()).unwrap_or(u16::MAX));
            }
            SetChange::Rotate { name, bls, account } => {
                if bls.is_none() && account.is_none() {
                    return Err(SetError::EmptyRotation(name.clone()));
                }
                let i = position(name)?;
                if let Some(k) = bls {
                    next.operators[i].bls = *k;
                }
                if let Some(a) = account {
                    next.operators[i].account = *a;
                }
            }
            SetChange::Threshold { threshold } => next.threshold = *threshold,
        }
        next.validate()?;
        Ok(next)
    }

    /// Index of the operator named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.operators.iter().position(|o| o.name == name)
    }
}

/// `Settlement.updateMessage(setHash)`: what a threshold of the current set signs to install
/// the set `set_hash`.
pub fn update_message(chain_id: u64, settlement: Address, set_hash: B256) -> B256 {
    keccak256((keccak256(UPDATE_TYPE), U256::from(chain_id), settlement, set_hash).abi_encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::BlsSecretKey;

    fn record(i: u8) -> OperatorRecord {
        OperatorRecord {
            name: format!("op-{i}"),
            account: Address::repeat_byte(i),
            peer_id: Bytes::from(vec![i; 38]),
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 9000 + u16::from(i)),
            bls: BlsSecretKey::from_ikm(&[i; 32]).expect("ikm").public_key(),
        }
    }

    fn set(n: u8, threshold: u16) -> OperatorSetSpec {
        OperatorSetSpec { epoch: 0, start_round: 0, threshold, operators: (1..=n).map(record).collect() }
    }

    #[test]
    fn every_change_kind_moves_to_the_next_epoch() {
        let s = set(4, 3);
        let cases: Vec<(SetChange, usize, u16)> = vec![
            (SetChange::Add { operator: record(9) }, 5, 3),
            (SetChange::Remove { name: "op-2".into() }, 3, 3),
            (SetChange::Rotate { name: "op-1".into(), bls: Some(record(8).bls), account: None }, 4, 3),
            (SetChange::Threshold { threshold: 4 }, 4, 4),
        ];
        for (change, n, threshold) in cases {
            let next = s.apply(&change, 10).expect("valid change");
            assert_eq!((next.epoch, next.start_round, next.operators.len(), next.threshold), (1, 10, n, threshold));
            assert_ne!(next.set_hash(), s.set_hash(), "{change:?}");
        }
    }

    #[test]
    fn bad_changes_are_refused_with_the_reason() {
        let s = set(4, 3);
        let dup_key = OperatorRecord { bls: record(1).bls, ..record(9) };
        let cases: Vec<(SetChange, u64, SetError)> = vec![
            (SetChange::Add { operator: dup_key }, 10, SetError::Duplicate(0, 4, "BLS key")),
            (SetChange::Add { operator: record(2) }, 10, SetError::Duplicate(1, 4, "name")),
            (SetChange::Remove { name: "nobody".into() }, 10, SetError::UnknownOperator("nobody".into())),
            (SetChange::Threshold { threshold: 5 }, 10, SetError::Threshold { threshold: 5, operators: 4 }),
            (SetChange::Threshold { threshold: 0 }, 10, SetError::Threshold { threshold: 0, operators: 4 }),
            (SetChange::Threshold { threshold: 2 }, 0, SetError::StartRound(0)),
            (
                SetChange::Rotate { name: "op-1".into(), bls: None, account: None },
                10,
                SetError::EmptyRotation("op-1".into()),
            ),
        ];
        for (change, start, want) in cases {
            assert_eq!(s.apply(&change, start), Err(want), "{change:?}");
        }
    }

    #[test]
    fn the_hash_binds_every_field() {
        let s = set(3, 2);
        let h = s.set_hash();
        let mut other = s.clone();
        other.operators[1].p2p_addr.push('0');
        assert_ne!(other.set_hash(), h);
        assert_ne!(OperatorSetSpec { epoch: 1, ..s.clone() }.set_hash(), h);
        assert_ne!(OperatorSetSpec { start_round: 1, ..s.clone() }.set_hash(), h);
        assert_ne!(OperatorSetSpec { threshold: 3, ..s.clone() }.set_hash(), h);
        let mut swapped = s.clone();
        swapped.operators.swap(0, 1);
        assert_ne!(swapped.set_hash(), h, "order is part of the set: it is the signer bitmap");
        assert_ne!(update_message(1, Address::ZERO, h), update_message(2, Address::ZERO, h));
    }
}
