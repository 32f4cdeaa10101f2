//! Test support for settleproof: a local network of real parts (anvil, the contracts, nodes,
//! fault-injecting RPC proxies, a webhook receiver) used by the end-to-end tests in `it/` and by
//! the benchmark binaries in `src/bin/`.

pub mod anvil;
pub mod bench;
pub mod harness;
pub mod hostile;
pub mod sets;
pub mod signing;
pub mod tls;
