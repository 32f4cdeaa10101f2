//! Benchmark of payment verification, writing `docs/benchmarks/verification.md`:
//!
//! 1. Latency of a quorum read (3 providers, 2 must agree; hedged, and all asked at once)
//!    against a single-provider read, side by side in one run, interleaved call by call, through
//!    the same kind of proxy.
//! 2. Time from a payment reaching confirmation depth (as the node sees it) to the node's
//!    attestation, and from the payment's block to the attestation, on a 4-node network.
//!
//! Usage: `cargo run --release -p settleproof-tests --bin bench-verification [-- --calls N --payments M]`

use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use eyre::{Result, eyre};
use serde_json::json;
use settleproof_config::ChainSection;
use settleproof_node::chain::providers::ProviderSet;
use settleproof_tests::harness::{Anvil, Options, Testnet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn chain(endpoints: Vec<String>, quorum: usize, hedge_ms: u64) -> ChainSection {
    ChainSection {
        chain_id: 31337,
        rpc_endpoints: endpoints,
        rpc_ws_endpoints: Vec::new(),
        rpc_quorum: quorum,
        rpc_timeout_ms: 2000,
        rpc_retries: 2,
        rpc_breaker_failures: 5,
        rpc_breaker_open_ms: 10_000,
        rpc_hedge_ms: hedge_ms,
        payments_contract: alloy::primitives::Address::repeat_byte(1),
        settlement_contract: alloy::primitives::Address::repeat_byte(2),
        start_block: 0,
        confirmations: 0,
        poll_interval_ms: 100,
        max_log_range: 1000,
        name: None,
        round_length_blocks: None,
        keeper_min_balance_gwei: None,
        fees: Default::default(),
    }
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (v.iter().sum::<f64>() / v.len() as f64, at(0.5), at(0.95), at(0.99))
}

async fn time<F: std::future::Future>(f: F) -> f64 {
    let t = Instant::now();
    f.await;
    t.elapsed().as_secs_f64() * 1000.0
}

/// Where the providers of the comparison run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proxies {
    /// In this process, on its runtime.
    InProcess,
    /// In a `settleproof-rpc-proxy` process of their own, as remote providers are.
    Separate,
    /// Apart, each answering 20 ms late (`delay` fault), as providers across a network do.
    SeparateRemote,
}

/// The round trip `Proxies::SeparateRemote` adds to every call, ms.
const REMOTE_DELAY_MS: u64 = 20;

/// Four proxies in front of `upstream`; the child process when they run apart (killed on drop).
async fn proxies(mode: Proxies, upstream: &str) -> Result<(Vec<String>, Option<ChildGuard>)> {
    match mode {
        Proxies::InProcess => {
            let mut urls = Vec::new();
            for _ in 0..4 {
                urls.push(settleproof_rpc_proxy::spawn(([127, 0, 0, 1], 0).into(), upstream).await?.url());
            }
            Ok((urls, None))
        }
        Proxies::Separate | Proxies::SeparateRemote => {
            let bin = std::env::current_exe()?
                .parent()
                .map(|d| d.join("settleproof-rpc-proxy"))
                .ok_or_else(|| eyre!("no target dir"))?;
            if !bin.exists() {
                return Err(eyre!(
                    "{} is missing: cargo build --release -p settleproof-rpc-proxy first (tests/bench.sh does)",
                    bin.display()
                ));
            }
            let port = settleproof_tests::harness::free_port();
            let child = std::process::Command::new(bin)
                .args(["--upstream", upstream, "--listen", &format!("127.0.0.1:{port}"), "--count", "4"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let guard = ChildGuard(child);
            let urls: Vec<String> = (0..4).map(|i| format!("http://127.0.0.1:{}", port + i)).collect();
            for url in &urls {
                let p = alloy::providers::ProviderBuilder::new().connect_http(url.parse()?);
                let mut tries = 0;
                while p.get_block_number().await.is_err() {
                    tries += 1;
                    if tries > 100 {
                        return Err(eyre!("proxy {url} did not come up"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if mode == Proxies::SeparateRemote {
                let http = reqwest::Client::new();
                for url in &urls {
                    http.post(format!("{url}/_fault"))
                        .json(&json!({"mode": "delay", "ms": REMOTE_DELAY_MS}))
                        .send()
                        .await?
                        .error_for_status()?;
                }
            }
            Ok((urls, Some(guard)))
        }
    }
}

/// A child process killed when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn quorum_vs_single(calls: usize, mode: Proxies, report: &mut String) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let _: serde_json::Value = alloy::providers::ProviderBuilder::new()
        .connect_http(anvil.url.parse()?)
        .raw_request("anvil_mine".into(), (200u64,))
        .await?;
    let (proxies, _child) = proxies(mode, &anvil.url).await?;
    let http = reqwest::Client::new();
    let hedged = ProviderSet::new(&chain(proxies[..3].to_vec(), 2, 250), &http).map_err(|e| eyre!(e))?;
    let all = ProviderSet::new(&chain(proxies[..3].to_vec(), 2, 0), &http).map_err(|e| eyre!(e))?;
    let single = ProviderSet::new(&chain(vec![proxies[3].clone()], 1, 250), &http).map_err(|e| eyre!(e))?;
    let filter = Filter::new().address(alloy::primitives::Address::repeat_byte(1)).from_block(0).to_block(200);
    let (mut head, mut logs): ([Vec<f64>; 3], [Vec<f64>; 3]) = Default::default();
    for _ in 0..calls {
        for (i, set) in [&hedged, &all, &single].into_iter().enumerate() {
            head[i].push(time(set.head()).await);
            logs[i].push(time(set.logs(&filter)).await);
        }
    }
    let (title, where_) = match mode {
        Proxies::InProcess => ("providers in this process", "loopback proxies on the benchmark's own runtime"),
        Proxies::Separate => ("providers as separate processes", "loopback proxies in a process of their own"),
        Proxies::SeparateRemote => (
            "providers as separate processes, 20 ms away",
            "loopback proxies in a process of their own, each adding 20 ms to every answer",
        ),
    };
    writeln!(report, "## Quorum read vs single-provider read, {title}\n")?;
    writeln!(
        report,
        "{calls} calls of each kind, interleaved, over {where_}, in front of one anvil. Milliseconds. Hedged: 2 providers asked first, the third on a failure or a disagreement, or after 250 ms (`rpc_hedge_ms`); all at once: `rpc_hedge_ms = 0`.\n"
    )?;
    writeln!(report, "| read | providers | mean | p50 | p95 | p99 |\n| --- | --- | --- | --- | --- | --- |")?;
    let mut ratios = Vec::new();
    for (name, series) in [("eth_blockNumber (head)", head), ("eth_getLogs (200 blocks)", logs)] {
        let stats = series.map(percentiles);
        for ((m, p50, p95, p99), kind) in stats.iter().zip(["2 of 3, hedged", "2 of 3, all at once", "1"]) {
            writeln!(report, "| {name} | {kind} | {m:.3} | {p50:.3} | {p95:.3} | {p99:.3} |")?;
        }
        let ratio = |q: &(f64, f64, f64, f64), s: &(f64, f64, f64, f64)| (q.0 / s.0, q.1 / s.1, q.2 / s.2);
        ratios.push((name, "hedged", ratio(&stats[0], &stats[2])));
        ratios.push((name, "all at once", ratio(&stats[1], &stats[2])));
    }
    writeln!(report)?;
    for (name, kind, (mean, p50, p95)) in ratios {
        writeln!(report, "- {name}: quorum ({kind}) / single = {mean:.2}× (mean), {p50:.2}× (p50), {p95:.2}× (p95)")?;
    }
    writeln!(report)?;
    Ok(())
}

fn summary(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let q = l.split("quantile=\"").nth(1)?.split('"').next()?.to_string();
            Some((q, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

async fn confirmation_to_attestation(payments: usize, report: &mut String) -> Result<()> {
    let net =
        Testnet::start_with(Options { providers: 3, round_length: 1, confirmations: 2, ..Options::default() }).await?;
    let mut ids = Vec::new();
    let mut seen_after_depth = Vec::new();
    let provider = net.provider()?;
    for i in 0..payments {
        let (_, created) = net.create_invoice(i % 4, json!({"amount": "1000", "token": "native"})).await?;
        net.pay(&created).await?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        // When the chain reaches confirmation depth for the payment (polled every 5 ms) and when
        // node 0 reports the payment confirmed.
        let paid_in = provider.get_block_number().await?;
        while provider.get_block_number().await? < paid_in + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let depth = Instant::now();
        loop {
            let (_, v) = net.get_invoice(0, &id).await?;
            if v["amount_paid"] != "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen_after_depth.push(depth.elapsed().as_secs_f64());
        ids.push(id);
    }
    for id in &ids {
        net.eventually("webhook", Duration::from_secs(60), || async {
            net.receiver.snapshot().iter().any(|r| r.body["data"]["invoice"]["id"] == id.as_str()).then_some(())
        })
        .await?;
    }
    let text = net.http.get(format!("{}/metrics", net.api(0))).send().await?.text().await?;
    writeln!(report, "## Payment to attestation\n")?;
    writeln!(
        report,
        "{payments} payments on a 4-node network (3 providers per node, quorum 2, 1 s blocks, 2 confirmations, 1-block rounds, 200 ms head polling). Seconds, over all 4 nodes' attestations.\n"
    )?;
    writeln!(report, "| interval | quantiles |\n| --- | --- |")?;
    let (m, p50, p95, p99) = percentiles(seen_after_depth);
    writeln!(
        report,
        "| chain reached confirmation depth → node 0 reports the payment confirmed (head polling + quorum reads) | mean={m:.3}, p50={p50:.3}, p95={p95:.3}, p99={p99:.3} |"
    )?;
    for (name, what) in [
        ("confirmation_to_attestation_seconds", "node saw the payment at confirmation depth → node signed the batch"),
        (
            "invoice_verification_latency_seconds",
            "payment's block timestamp → node signed (includes the 2 confirmations; 1 s timestamp resolution)",
        ),
    ] {
        let q: Vec<String> = summary(&text, name).iter().map(|(q, v)| format!("q{q}={v:.3}")).collect();
        writeln!(report, "| {what} | {} |", q.join(", "))?;
    }
    writeln!(report)?;
    net.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let calls = arg("--calls", 300);
    let payments = arg("--payments", 12);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut report = String::new();
    writeln!(report, "# Benchmark: payment verification\n")?;
    writeln!(
        report,
        "Written by `cargo run --release -p settleproof-tests --bin bench-verification` at commit {commit}, unix time {} s, on a 2-core machine.\n",
        settleproof_node::time::now_s()
    )?;
    quorum_vs_single(calls, Proxies::InProcess, &mut report).await?;
    quorum_vs_single(calls, Proxies::Separate, &mut report).await?;
    quorum_vs_single(calls.min(100), Proxies::SeparateRemote, &mut report).await?;
    confirmation_to_attestation(payments, &mut report).await?;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks/verification.md");
    std::fs::create_dir_all(path.parent().ok_or_else(|| eyre!("path"))?)?;
    std::fs::write(&path, &report)?;
    print!("{report}");
    Ok(())
}
