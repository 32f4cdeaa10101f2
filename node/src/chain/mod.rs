//! Everything the node reads from and writes to the chain.
//!
//! - [`client`]: typed reads (head, payment and settlement logs, settled roots) and the
//!   settlement transaction.
//! - [`watcher`]: follows the chain to the confirmation depth and checkpoints progress.

pub mod client;
pub mod watcher;

pub use client::{ChainClient, ChainError};
