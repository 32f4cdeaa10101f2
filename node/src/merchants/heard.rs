//! Approvals of merchant changes heard on gossip: each checked (published by its signer, of the
//! latest set, a valid signature over the change hashed here, a record no check refuses), kept,
//! and the change applied once a threshold of its epoch approved it.

use super::Registry;
use super::approval::MerchantApproval;
use crate::gossip::GossipRejection;
use crate::store::{MerchantApprovalPut, MerchantChange};
use alloy::primitives::B256;
use settleproof_p2p::PeerId;
use tracing::{info, warn};

impl Registry {
    /// An approval heard on gossip from `source`: checked ([`MerchantApproval::verify`]) and the
    /// record's fields too, kept, and the change applied once a threshold approved it. `Ok`
    /// with whether it was new.
    pub fn hear(&self, data: &[u8], source: &PeerId) -> Result<bool, GossipRejection> {
        let a: MerchantApproval =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let (Some(store), Some(epochs)) = (&self.0.store, &self.0.epochs) else { return Ok(false) };
        let hash = a.change.hash();
        let signer = u32::try_from(a.signer).map_err(|_| GossipRejection::UnknownSigner(a.signer))?;
        // A repeat costs no pairing; nor does a change older than the record held.
        let known = |s: u32, sig: &[u8]| store.has_merchant_approval(hash, s, sig).unwrap_or(false);
        if known(signer, &a.signature) && a.others.iter().all(|(s, sig)| known(*s, sig)) {
            // An apply that failed here before (a store error) is tried again.
            self.apply_or_log(hash);
            return Ok(false);
        }
        match store.registry_entry(&a.change.merchant.id) {
            Ok(Some(held)) if held.change.version >= a.change.version => return Ok(false),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the merchant registry; approval left for its rebroadcast");
                return Ok(false);
            }
        }
        // The cheap checks before any pairing: published by its signer, of the latest set, and a
        // record this node takes.
        let latest = epochs.latest().filter(|s| s.epoch == a.change.epoch);
        let latest = latest.ok_or(GossipRejection::UnknownEpoch(a.change.epoch))?;
        crate::gossip::published_by_signer(&latest, a.signer, source)?;
        match self.record_problem(&a.change) {
            // A field no node accepts under any URL policy is its author's doing; the rest (this
            // node's URL policy, a version ahead of the one held here, a root key another
            // merchant holds here) depends on this node: refused here, its author not blamed.
            Ok(Some((field, problem))) => {
                let invalid_anywhere =
                    settleproof_config::merchant_problems(&a.change.merchant, true, true).into_iter().next().is_some();
                let why = format!("merchant change: {field}: {problem}");
                return Err(if invalid_anywhere {
                    GossipRejection::Malformed(why)
                } else {
                    GossipRejection::NotTaken(why)
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the merchant registry; approval left for its rebroadcast");
                return Ok(false);
            }
        }
        a.verify(source, epochs, self.0.chain_id, self.0.settlement)?;
        let set = epochs.get(a.change.epoch).ok_or(GossipRejection::UnknownEpoch(a.change.epoch))?;
        let others = a.verify_others(&set, self.0.chain_id, self.0.settlement, hash, known)?;
        let mut new = false;
        for (s, sig) in others.iter().chain(std::iter::once(&(signer, a.signature.clone()))) {
            new |= self.keep_heard(&a.change, hash, *s, sig, source)?;
        }
        if new {
            info!(merchant = %a.change.merchant.id, version = a.change.version, change_hash = %hash, signer = a.signer, relayed = others.len(), "merchant change approval heard");
            self.apply_or_log(hash);
        }
        Ok(new)
    }

    /// Applies change `hash` if its approvals suffice; a store error is logged (the change is
    /// tried again when an approval of it is heard next).
    fn apply_or_log(&self, hash: B256) {
        if let Err(e) = self.try_apply(hash) {
            tracing::error!(change_hash = %hash, error = %e, "cannot apply a merchant change; trying again on its next approval");
        }
    }

    /// Keeps one checked approval heard from `source`; whether it was new.
    fn keep_heard(
        &self,
        change: &MerchantChange,
        hash: B256,
        signer: u32,
        signature: &[u8],
        source: &PeerId,
    ) -> Result<bool, GossipRejection> {
        let Some(store) = &self.0.store else { return Ok(false) };
        let put = match store.put_merchant_approval(change, hash, signer, signature, false) {
            Ok(put) => put,
            Err(e) => {
                tracing::error!(error = %e, "cannot keep a merchant change approval; left for its rebroadcast");
                return Ok(false);
            }
        };
        match put {
            MerchantApprovalPut::New => Ok(true),
            MerchantApprovalPut::Known => Ok(false),
            MerchantApprovalPut::Rival(other) => {
                warn!(peer = %source, merchant = %change.merchant.id, version = change.version, signer, first = %other, second = %hash, "operator approved two changes to one merchant version; the second is dropped");
                metrics::counter!("merchant_approvals_rejected_total", "reason" => "rival").increment(1);
                Ok(false)
            }
            MerchantApprovalPut::Limit => {
                metrics::counter!("merchant_approvals_rejected_total", "reason" => "too_many").increment(1);
                Ok(false)
            }
            MerchantApprovalPut::Stale(_) => Ok(false),
        }
    }
}
