//! Messages operators exchange on gossipsub, and their validation.

use crate::operators::OperatorSet;
use crate::store::Invoice;
use alloy::primitives::{Address, Bytes};
use serde::{Deserialize, Serialize};
use settleproof_consensus::{Batch, BlsSignature};
use settleproof_p2p::PeerId;

/// Topic of batch attestations.
pub const ATTESTATIONS: &str = "settleproof/attestations/1";
/// Topic of invoice announcements.
pub const INVOICES: &str = "settleproof/invoices/1";

/// An operator's signature over a round's batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The batch.
    pub batch: Batch,
    /// Index of the signer in the operator set.
    pub signer: usize,
    /// Compressed BLS signature over the batch message.
    pub signature: Bytes,
    /// Send time; makes every re-broadcast a new gossip message.
    pub sent_at_ms: u64,
}

/// A newly created invoice, replicated to every operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAnnouncement {
    /// The invoice.
    pub invoice: Invoice,
    /// Send time.
    pub sent_at_ms: u64,
}

/// Why a gossip message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipRejection {
    /// Not valid JSON of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The signer index is outside the operator set.
    #[error("signer {0} is not in the operator set")]
    UnknownSigner(usize),
    /// The gossip publisher is not the operator the attestation names.
    #[error("published by {publisher}, but claims signer {signer}")]
    WrongPublisher {
        /// Publisher peer id.
        publisher: String,
        /// Claimed signer.
        signer: usize,
    },
    /// The BLS signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The invoice names an unknown merchant or a payout address that is not the merchant's.
    #[error("invoice rejected: {0}")]
    BadInvoice(String),
}

impl Attestation {
    /// Decodes and fully validates an attestation published by `source`; returns it with the
    /// parsed signature.
    pub fn validate(
        data: &[u8],
        source: &PeerId,
        set: &OperatorSet,
        chain_id: u64,
        settlement: Address,
    ) -> Result<(Self, BlsSignature), GossipRejection> {
        let att: Self =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let op = set
            .operators
            .get(att.signer)
            .ok_or(GossipRejection::UnknownSigner(att.signer))?;
        if &op.peer_id != source {
            return Err(GossipRejection::WrongPublisher {
                publisher: source.to_string(),
                signer: att.signer,
            });
        }
        let sig = BlsSignature::from_bytes(&att.signature)
            .map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        sig.verify(&op.bls, att.batch.message(chain_id, settlement).as_slice())
            .map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        Ok((att, sig))
    }
}

impl InvoiceAnnouncement {
    /// Decodes an announcement and checks the merchant and payout address against `merchants`.
    pub fn validate(
        data: &[u8],
        merchants: &[settleproof_config::MerchantConfig],
    ) -> Result<Invoice, GossipRejection> {
        let ann: Self =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let inv = ann.invoice;
        let merchant = merchants
            .iter()
            .find(|m| m.id == inv.merchant_id)
            .ok_or_else(|| {
                GossipRejection::BadInvoice(format!("unknown merchant `{}`", inv.merchant_id))
            })?;
        if merchant.payout_address != inv.payout_address {
            return Err(GossipRejection::BadInvoice(
                "payout address is not the merchant's".into(),
            ));
        }
        Ok(inv)
    }
}
