//! One operator's approval of a merchant registry change, as gossiped.

use crate::epochs::Epochs;
use crate::gossip::GossipRejection;
use crate::store::MerchantChange;
use alloy::primitives::{Address, B256, Bytes};
use serde::{Deserialize, Serialize};
use settleproof_consensus::{BlsSignature, merchant_change_message};
use settleproof_p2p::PeerId;

/// Topic of merchant registry approvals.
pub const TOPIC: &str = "settleproof/merchant-approvals/1";

/// Operator `signer` of `change.epoch` approving `change`, with the other operators'
/// approvals of it that the publisher holds. It carries the change itself, so a node that hears
/// any approval of a change learns the change, and the others' approvals, so a node that missed
/// some (offline, or joined after) still gathers a threshold: each is checked under its own
/// operator's key, whoever relays it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MerchantApproval {
    /// The change approved.
    pub change: MerchantChange,
    /// Index of the approver in the change's epoch.
    pub signer: usize,
    /// Its BLS signature (compressed G1) over the change's message.
    pub signature: Bytes,
    /// Other operators' approvals: (signer index, signature).
    #[serde(default)]
    pub others: Vec<(u32, Bytes)>,
    /// Send time; makes every re-broadcast a new gossip message.
    pub sent_at_ms: u64,
}

impl MerchantApproval {
    /// Checks an approval published by `source`: its epoch is the latest set this node knows
    /// (`UnknownEpoch` otherwise: this node may lag), the publisher is operator `signer` of it,
    /// and the signature verifies over the message of the change's hash as this node computes
    /// it. Returns that hash.
    pub fn verify(
        &self,
        source: &PeerId,
        epochs: &Epochs,
        chain_id: u64,
        settlement: Address,
    ) -> Result<B256, GossipRejection> {
        let epoch = self.change.epoch;
        let set = epochs.latest().filter(|s| s.epoch == epoch).ok_or(GossipRejection::UnknownEpoch(epoch))?;
        let op = crate::gossip::published_by_signer(&set, self.signer, source)?;
        let hash = self.change.hash();
        let sig =
            BlsSignature::from_bytes(&self.signature).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        let message = merchant_change_message(chain_id, settlement, epoch, hash);
        sig.verify(&op.bls, message.as_slice()).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        Ok(hash)
    }

    /// Checks the relayed approvals in `others` that `known` does not hold already, each under
    /// its operator's key in the change's epoch (`set`); all must verify (an honest relay only
    /// passes on what it checked). Returns those checked.
    pub fn verify_others(
        &self,
        set: &crate::operators::OperatorSet,
        chain_id: u64,
        settlement: Address,
        hash: B256,
        known: impl Fn(u32, &[u8]) -> bool,
    ) -> Result<Vec<(u32, Bytes)>, GossipRejection> {
        let message = merchant_change_message(chain_id, settlement, self.change.epoch, hash);
        let mut checked = Vec::new();
        for (signer, signature) in self.others.iter().take(set.operators.len()) {
            if *signer as usize == self.signer || known(*signer, signature) {
                continue;
            }
            let op = set.operators.get(*signer as usize).ok_or(GossipRejection::UnknownSigner(*signer as usize))?;
            let sig = BlsSignature::from_bytes(signature).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
            sig.verify(&op.bls, message.as_slice()).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
            checked.push((*signer, signature.clone()));
        }
        Ok(checked)
    }
}
