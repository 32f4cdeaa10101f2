//! End-to-end tests: a real anvil chain, the real contracts, real nodes on real sockets, and a
//! real HTTP webhook receiver.

mod api_contract;
mod byzantine;
mod byzantine_invoices;
mod byzantine_merchant;
mod checkout;
mod contracts;
mod drills;
mod hostile_endpoints;
mod keeper;
pub use settleproof_tests::harness;
mod lifecycle;
mod merchants;
mod multichain;
mod operations;
mod operator_sets;
mod outsiders;
mod self_hosted_checkout;
mod settlement;
mod signed_requests;
mod tls;
mod verification;
mod webhook_endpoints;
mod webhooks;
