//! The node under abuse (slowloris, a health-check flood, a tarpit merchant), each beside a
//! quiet run in the same session; writes `docs/benchmarks/abuse.json` (or `--out FILE`).
//!
//! Usage: `bench-abuse [--payments N] [--out FILE]` (release build recommended).

use eyre::Result;
use settleproof_tests::bench::abuse;
use settleproof_tests::bench::setup::{self, arg};
use settleproof_tests::harness::Testnet;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<()> {
    let payments = arg("--payments").and_then(|p| p.parse().ok()).unwrap_or(12);
    let out = arg("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks/abuse.json")));
    let net = Testnet::start_with(setup::options()).await?;
    let report = abuse::run(&net, payments).await;
    net.stop().await;
    let report = report?;
    for p in &report.phases {
        eprintln!(
            "{:<13} overhead p50 {:>6.0} ms p95 {:>6.0} ms, {} payments; abuse {} ops ({} answered/cut); rpc {:.1}/s; live p50 {:.1} ms",
            p.name,
            p.latency.overhead_ms.p50,
            p.latency.overhead_ms.p95,
            p.latency.samples.len(),
            p.abuse_ops,
            p.abuse_answered,
            p.rpc_calls_per_s,
            p.live_ms_p50
        );
    }
    eprintln!(
        "webhooks: {} merchants x {}: {:.0}/s healthy, {:.0}/s with a tarpit merchant",
        report.webhooks.merchants,
        report.webhooks.events_each,
        report.webhooks.healthy_per_s,
        report.webhooks.with_tarpit_per_s
    );
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("written to {}", out.display());
    Ok(())
}
