//! The merchant registry that no single operator controls.
//!
//! Merchants are created, updated and disabled through the admin API of any node. A change is
//! the merchant's whole next record at a new version ([`crate::store::MerchantChange`]); the
//! node that proposes it signs it with its BLS key and gossips the approval
//! ([`MerchantApproval`], topic [`TOPIC`] of the first chain); other operators see it waiting
//! and approve it on their own nodes. Every node checks every approval (published by its signer,
//! of the latest operator set, a valid signature over the change it computes itself) and applies
//! the change once a threshold of that set approved it
//! ([`settleproof_consensus::change_fate`]). So a payout address is never changed on one
//! operator's word: a Byzantine operator's change, however often it gossips it, stays waiting.
//! An honest node never approves two changes to one merchant version, so with at most f
//! Byzantine operators two rival changes cannot both reach the threshold.
//!
//! The configuration's `[[merchants]]` seeds the registry: an id the registry does not hold is
//! added at version 0 on start. After that the registry's record wins; a configuration entry
//! that differs is reported at start.

mod api_keys;
mod approval;
mod audience;
mod digests;
pub mod endpoint_record;
mod heard;
mod inbox;
pub mod invoice_check;
pub mod invoice_record;
mod invoice_signatures;
mod registry;
mod sync;
mod webhook_endpoints;

pub use api_keys::{GRANT_PATH, KEYS_TOPIC, KeyAnnouncement, KeyGrant, MAX_KEYS_PER_MERCHANT, key_of_grant};
pub use approval::{MerchantApproval, TOPIC};
pub use digests::{DIGEST_EVERY, DIGESTS_TOPIC, MerchantDigest};
pub use inbox::{APPROVALS, INBOX, MAX_WAIT, PER_AUTHOR, RecordKind};
pub use invoice_signatures::SignatureRefusal;
pub use registry::{Approved, Home, Registry, RegistryError};
pub use sync::{CaughtUp, MAX_SNAPSHOT, MerchantSnapshot, SnapshotCursor};
pub use webhook_endpoints::{
    ENDPOINTS_TOPIC, EVENT_TYPES, EndpointAnnouncement, MAX_ENDPOINTS_PER_MERCHANT, endpoint_problem,
};

/// The network of [`Registry::fixed`] and of the unit tests' registries, and keys that sign
/// for it.
#[cfg(test)]
pub(crate) mod test_network {
    use settleproof_merchant_auth::{KeyAlg, MerchantSigner, network_audience};

    /// The `aud` of the unit tests' registries (chain 0, no settlement contract).
    pub(crate) fn audience() -> String {
        network_audience(0, &format!("{:#x}", alloy::primitives::Address::ZERO))
    }

    /// A new key of merchant `id` signing for [`audience`].
    pub(crate) fn signer(id: &str, alg: KeyAlg) -> MerchantSigner {
        // A key pair is made from the system's randomness, which tests have.
        MerchantSigner::generate(id, alg).expect("key").with_audience(audience())
    }
}
