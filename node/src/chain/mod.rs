//! Everything the node reads from and writes to the chain.
//!
//! - [`providers`]: the node's own RPC providers read as a quorum, each behind a timeout,
//!   retries and a circuit breaker ([`breaker`], [`classify`]); [`quorum`] holds the voting rules.
//! - [`client`]: typed reads through the quorum (head, blocks, payment and settlement logs,
//!   nonce, fees, settled roots).
//! - [`sender`]: the keeper's settlement transaction: nonce, gas buffer, fee bumps, revert
//!   reasons.
//! - [`watcher`]: follows the chain to the confirmation depth, detects reorgs, checkpoints.
//!
//! Providers are values, not URLs ([`providers::ProviderSet::from_providers`],
//! [`ChainClient::over`], [`SettlementSender::with_writers`]): the unit tests run the watcher
//! and the sender over an in-process chain (`fake`), beside the end-to-end tests on anvil.

pub mod breaker;
pub mod classify;
pub mod client;
#[cfg(test)]
pub mod fake;
pub mod heads;
pub mod inclusion;
pub mod pace;
pub mod providers;
pub mod quorum;
pub mod sender;
#[cfg(test)]
mod sender_tests;
pub mod watcher;
#[cfg(test)]
mod watcher_reads_tests;
#[cfg(test)]
mod watcher_tests;

pub use client::{ChainClient, ChainError, EpochCommit, SettleCall};
pub use sender::{SettleOutcome, SettlementSender};
