//! Approvals of a proposed operator set change, gossiped between operators
//! (`settleproof/set-approvals/1`), so that approvals made on different nodes meet without
//! passing a file around.
//!
//! An approval is operator `signer` of the latest epoch signing the update message of
//! `set_hash` ([`settleproof_consensus::update_message`], which binds chain and contract). A
//! receiver computes that message itself, so nothing in the gossip decides what was signed, and
//! takes an approval only from its own operator (the gossip author), for the latest epoch it
//! read from the chain, with a signature that verifies under that operator's registered key.
//! Every node keeps what it heard ([`crate::store::Store::put_set_approval`], bounded per
//! signer) and merges it into a proposal on request (`POST /admin/v1/operator-sets/collect`), so
//! the operator who submits needs nothing but the proposal file.

use crate::epochs::Epochs;
use crate::gossip::GossipRejection;
use alloy::primitives::{Address, B256, Bytes};
use serde::{Deserialize, Serialize};
use settleproof_consensus::{BlsSignature, update_message};
use settleproof_p2p::PeerId;

/// Topic of set change approvals.
pub const TOPIC: &str = "settleproof/set-approvals/1";

/// One operator's approval of the set whose hash is `set_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetApproval {
    /// Epoch of the approving set (the latest on chain).
    pub epoch: u64,
    /// Hash of the proposed next set.
    pub set_hash: B256,
    /// Index of the approver in `epoch`'s set.
    pub signer: usize,
    /// Its BLS signature (compressed G1) over `update_message(chain, contract, set_hash)`.
    pub signature: Bytes,
    /// Send time; makes every re-broadcast a new gossip message.
    pub sent_at_ms: u64,
}

impl SetApproval {
    /// Decodes an approval published by `source` and checks it: `epoch` is the latest set this
    /// node knows (`UnknownEpoch` otherwise: this node may lag, nobody is blamed), the publisher
    /// is operator `signer` of it, and the signature verifies under that operator's key.
    pub fn validate(
        data: &[u8],
        source: &PeerId,
        epochs: &Epochs,
        chain_id: u64,
        settlement: Address,
    ) -> Result<Self, GossipRejection> {
        let a: Self = serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let set = epochs.latest().filter(|s| s.epoch == a.epoch).ok_or(GossipRejection::UnknownEpoch(a.epoch))?;
        let op = crate::gossip::published_by_signer(&set, a.signer, source)?;
        let sig = BlsSignature::from_bytes(&a.signature).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        sig.verify(&op.bls, update_message(chain_id, settlement, a.set_hash).as_slice())
            .map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::{Operator, OperatorSet};
    use settleproof_consensus::BlsSecretKey;

    fn key(i: u8) -> BlsSecretKey {
        BlsSecretKey::from_ikm(&[i + 1; 32]).expect("ikm")
    }

    #[test]
    fn only_the_authors_own_approval_of_the_latest_epoch_with_a_valid_signature() {
        let ops: Vec<Operator> = (0..4u8)
            .map(|i| Operator {
                name: format!("op-{i}"),
                peer_id: PeerId::random(),
                p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 9000 + u16::from(i)).parse().expect("multiaddr"),
                bls: key(i).public_key(),
                evm: Address::repeat_byte(i),
            })
            .collect();
        let set =
            |epoch| OperatorSet { epoch, start_round: epoch * 10, operators: ops.clone(), threshold: 3, me: None };
        let epochs = Epochs::new(ops[0].peer_id, 31337, Some(set(0)));
        epochs.insert(set(1));
        let (chain_id, settlement, set_hash) = (7, Address::repeat_byte(9), B256::repeat_byte(5));
        let approval = |epoch: u64, signer: usize, by: u8, over: B256| {
            let sig = key(by).sign(update_message(chain_id, settlement, over).as_slice());
            let a =
                SetApproval { epoch, set_hash, signer, signature: Bytes::from(sig.to_bytes().to_vec()), sent_at_ms: 1 };
            serde_json::to_vec(&a).expect("json")
        };
        let author = ops[2].peer_id;
        let check =
            |data: Vec<u8>| SetApproval::validate(&data, &author, &epochs, chain_id, settlement).map(|a| a.signer);
        assert_eq!(check(approval(1, 2, 2, set_hash)), Ok(2), "its own, latest epoch");
        let cases = [
            (approval(1, 1, 2, set_hash), "wrong_publisher", "filed under another operator"),
            (approval(1, 1, 1, set_hash), "wrong_publisher", "another operator's genuine approval, republished"),
            (approval(1, 2, 2, B256::repeat_byte(6)), "bad_signature", "signed over another set"),
            (approval(1, 2, 3, set_hash), "bad_signature", "signed with another key"),
            (approval(1, 9, 2, set_hash), "unknown_signer", "no such operator"),
            (approval(0, 2, 2, set_hash), "unknown_epoch", "an epoch that is no longer the latest"),
            (b"{".to_vec(), "malformed", "not JSON"),
        ];
        for (data, reason, what) in cases {
            assert_eq!(check(data).map_err(|e| e.reason()), Err(reason), "{what}");
        }
    }
}
