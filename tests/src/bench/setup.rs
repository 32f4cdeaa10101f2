//! What the benchmark binaries share: their command-line flags and the testnet they measure
//! (4 process nodes, 3 providers each, 1 s blocks, rounds of 1 block, no request budget).

use crate::harness::Options;

/// Confirmation depth of the benchmark testnet.
pub const CONFIRMATIONS: u64 = 2;
/// Blocks per round of the benchmark testnet.
pub const ROUND_LENGTH: u64 = 1;

/// The value after flag `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// The benchmark testnet.
pub fn options() -> Options {
    Options {
        nodes: 4,
        providers: 3,
        confirmations: CONFIRMATIONS,
        round_length: ROUND_LENGTH,
        block_time: "1",
        processes: true,
        env: vec![
            ("SETTLEPROOF__API__RATE_LIMIT_PER_S".into(), "1000000".into()),
            ("SETTLEPROOF__API__RATE_LIMIT_BURST".into(), "1000000".into()),
        ],
        ..Options::default()
    }
}
