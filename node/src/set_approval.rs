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
        let op = set.operators.get(a.signer).ok_or(GossipRejection::UnknownSigner(a.signer))?;
        if &op.peer_id != source {
            return Err(GossipRejection::WrongPublisher { publisher: source.to_string(), signer: a.signer });
        }
        let sig = BlsSignature::from_bytes(&a.signature).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        sig.verify(&op.bls, update_message(chain_id, settlement, a.set_hash).as_slice())
            .map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        Ok(a)
    }
}
