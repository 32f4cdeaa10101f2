//! Everything the node reads from and writes to the chain.
//!
//! - [`providers`]: the node's own RPC providers read as a quorum, each behind a timeout,
//!   retries and a circuit breaker ([`breaker`], [`classify`]); [`quorum`] holds the voting rules.
//! - [`client`]: typed reads through the quorum (head, blocks, payment and settlement logs,
//!   nonce, fees, settled roots).
//! - [`sender`]: the keeper's settlement transaction: nonce, gas buffer, fee bumps, revert
//!   reasons.
//! - [`watcher`]: follows the chain to the confirmation depth, detects reorgs, checkpoints.

pub mod breaker;
pub mod classify;
pub mod client;
pub mod providers;
pub mod quorum;
pub mod sender;
pub mod watcher;

pub use client::{ChainClient, ChainError, EpochCommit, SettleCall};
pub use sender::{SettleOutcome, SettlementSender};
