//! Pure settlement logic of settleproof: no I/O, no clocks, no sockets.
//!
//! Bird's-eye view:
//! - [`merkle`]: the Merkle tree of a round's payments (rs_merkle, keccak256) and its proofs.
//! - [`batch`]: a payment leaf, a round's batch and the message operators sign.
//! - [`bls`]: every blst call (BLS12-381, min-sig) behind one small API with its own error type.
//! - [`operator_set`]: operator sets by epoch, their hashes, and the changes between them.
//! - [`schedule`]: rounds as fixed block ranges and the keeper of each round.
//! - [`failover`]: when the next operator takes over from a keeper that is down or late.
//! - [`pool`]: the attestation pool that gathers signatures until a quorum forms.
//! - [`invoice`]: invoice ids as commitments to the invoice's terms.
//! - [`receipt`]: a settlement receipt and the checks a merchant runs on it without a chain.
//! - [`guard`]: the rule that an operator never signs two different batches for one round of one
//!   chain.
//!
//! The node feeds events in (a block range confirmed, an attestation received) and acts on what
//! these types return (sign, broadcast, submit). Everything here is deterministic and tested
//! without a chain or a network.

pub mod batch;
pub mod bls;
pub mod failover;
pub mod guard;
pub mod invoice;
pub mod merchant_change;
pub mod merkle;
pub mod operator_set;
pub mod pool;
pub mod receipt;
pub mod schedule;

pub use batch::{Batch, PaymentLeaf};
pub use bls::{BlsError, BlsPublicKey, BlsSecretKey, BlsSignature};
pub use failover::{Liveness, Turn, turn};
pub use guard::{MAX_BATCHES_PER_ROUND, SignDecision, decide_signing};
pub use invoice::{InvoiceTerms, extras_hash, metadata_hash};
pub use merchant_change::{ChangeFate, change_fate, merchant_change_message};
pub use operator_set::{OperatorRecord, OperatorSetSpec, SetChange, SetError, update_message};
pub use pool::{AttestationPool, InsertOutcome, Quorum};
pub use receipt::{Check, Receipt};
pub use schedule::{RoundSchedule, keeper_index};
