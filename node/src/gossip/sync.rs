//! Direct requests between operators (libp2p request-response, not gossip): catching up on a
//! round's attestations, invoices this node never received, the merchants' state, and the
//! invoices an operator created while this node was away.

use super::Attestation;
use crate::store::Invoice;
use alloy::primitives::B256;
use serde::{Deserialize, Serialize};

/// A direct request for the attestations of some rounds (catch-up after a restart or a
/// partition) and for invoices this node never received (created on the other side of a
/// partition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Rounds asked for (at most [`SyncRequest::MAX_ROUNDS`]).
    pub rounds: Vec<u64>,
    /// Invoices asked for (at most [`SyncRequest::MAX_INVOICES`]).
    #[serde(default)]
    pub invoices: Vec<B256>,
    /// Whether the merchants' state is asked for (the registry, keys and endpoints; first
    /// chain only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merchants: bool,
    /// Whether the asking node takes the merchants' state in pages (earlier versions take one
    /// snapshot).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merchants_paged: bool,
    /// Where the page of the merchants' state asked for starts (none: the first page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchants_from: Option<crate::merchants::SnapshotCursor>,
    /// A page of the invoices the asked operator created since a time (an operator back from
    /// an outage catching up; see `rounds::invoice_catch_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_since: Option<CreatedSince>,
}

/// Which page of an operator's own invoices is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedSince {
    /// Creation time (Unix seconds) of the oldest invoice wanted.
    pub since_s: u64,
    /// Where the previous page ended (its answer's `created_next`); none for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<(u64, B256)>,
}

impl SyncRequest {
    /// Largest number of rounds in one request.
    pub const MAX_ROUNDS: usize = 64;
    /// Largest number of invoices in one request.
    pub const MAX_INVOICES: usize = 256;
}

/// The answer: every attestation the peer holds for those rounds, and those of the invoices it
/// has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Attestations, each to be verified by the receiver.
    pub attestations: Vec<Attestation>,
    /// Invoices, each to be checked by the receiver ([`check_invoice`]).
    #[serde(default)]
    pub invoices: Vec<Invoice>,
    /// When the answering node first stored each of those invoices (id, unix s), where it
    /// knows: what it vouches with (`rounds::invoice_fetch`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub received: Vec<(B256, u64)>,
    /// The merchants' state, when asked for, each record to be checked by the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchants: Option<crate::merchants::MerchantSnapshot>,
    /// Where the next page of a `created_since` request starts, when more may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_next: Option<(u64, B256)>,
}
