//! The settleproof node: wiring of chain watcher, round driver, p2p, API and webhooks.
//!
//! The binary (`src/main.rs`) only parses the command line; everything runs from this library
//! so tests can start nodes in-process with [`node::start`]. The local testnet's set-up and demo
//! merchant live apart, in `testnet/devnet`.

pub mod api;
pub mod chain;
pub mod cli;
pub mod epochs;
pub mod gossip;
pub mod guard_floor;
pub mod halt;
pub mod invariants;
pub mod invoice_view;
pub mod keys;
pub mod merchants;
pub mod metrics_catalog;
pub mod node;
pub mod operators;
pub mod otlp;
pub mod outbound;
pub mod peer_union;
pub mod pipeline;
pub mod proposal;
pub mod receipt;
pub mod redact;
pub mod replication;
pub mod rounds;
pub mod set_approval;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod trace_context;
pub mod webhook;

#[cfg(test)]
mod untrusted_input;
