//! Sustained throughput: invoices created, paid, settled and notified per second at increasing
//! offered rates, with where the CPU goes (each node, anvil, and this process, which runs the
//! load, the RPC proxies and the merchant receiver) and how full the chain's blocks are.

use super::load::FastPayer;
use super::proc::cpu_seconds;
use super::stats::Summary;
use crate::harness::{NodeRun, Testnet};
use alloy::eips::BlockNumberOrTag;
use alloy::providers::Provider;
use eyre::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Invoices per second offered.
    pub offered_per_s: f64,
    /// Seconds of load.
    pub seconds: u64,
    /// Invoices offered (rate × seconds).
    pub offered: usize,
    /// Offered invoices that could not be created or paid.
    pub errors: usize,
    /// Invoices paid.
    pub paid: usize,
    /// Invoices notified (verified webhook) within the drain timeout.
    pub notified: usize,
    /// Webhook arrivals per second between the first and the last.
    pub sustained_per_s: f64,
    /// Payment sent → webhook, ms.
    pub latency_ms: Summary,
    /// Settlement block − payment block (the chain's floor is the confirmation depth).
    pub settle_blocks: Summary,
    /// CPU use while the load was offered, % of one core: `node-0`.., `anvil`,
    /// `load+proxies+receiver`.
    pub cpu_percent: Vec<(String, f64)>,
    /// Sum of all CPU use, % of one core (the machine has `cores` × 100).
    pub cpu_total_percent: f64,
    /// Gas used / gas limit of the blocks mined while the load was sent.
    pub block_gas_used_percent: f64,
    /// Node CPU seconds per 1,000 notified invoices, mean over nodes.
    pub node_cpu_s_per_1000: f64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn pids(net: &Testnet) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = net
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            NodeRun::Process(c) => Some((format!("node-{i}"), c.id())),
            _ => None,
        })
        .collect();
    v.push(("anvil".into(), net.anvil.pid()));
    v.push(("load+proxies+receiver".into(), std::process::id()));
    v
}

/// Runs each offered rate for `seconds`, then waits up to `drain` for the webhooks.
pub async fn run(net: &Testnet, rates: &[f64], seconds: u64, drain: Duration) -> Result<Vec<Step>> {
    let payer = Arc::new(FastPayer::new(net).await?);
    let provider = net.provider()?;
    let chain_id = net.devnet.chains.first().map_or(0, |c| c.chain_id);
    let mut steps = Vec::new();
    for &rate in rates {
        let procs = pids(net);
        let cpu0: Vec<f64> = procs.iter().map(|(_, p)| cpu_seconds(*p).unwrap_or(0.0)).collect();
        let wall0 = Instant::now();
        let block0 = provider.get_block_number().await?;
        let sent: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let count = (rate * seconds as f64) as usize;
        let start = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut tasks = tokio::task::JoinSet::new();
        let api: Vec<String> = (0..net.nodes.len()).map(|i| net.api(i)).collect();
        for k in 0..count {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            let (payer, sent, api) = (payer.clone(), sent.clone(), api.clone());
            let key = net.devnet.merchant_key.clone();
            let http = net.http.clone();
            tasks.spawn(async move {
                tokio::time::sleep_until(at).await;
                let body = serde_json::json!({ "amount": "1000000000000000", "token": "native", "chain_id": chain_id });
                let url = format!("{}/v1/invoices", api[k % api.len()]);
                let Ok(req) = crate::harness::signed(&http, &key, reqwest::Method::POST, &url, Some(&body)) else {
                    return;
                };
                let Ok(r) = req.send().await else {
                    return;
                };
                let Ok(created) = r.json::<serde_json::Value>().await else { return };
                if payer.pay_native(&created).await.is_ok() {
                    sent.lock().await.insert(created["id"].as_str().unwrap_or_default().to_string(), now_ms());
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let load_end_block = provider.get_block_number().await?;
        let load_wall = wall0.elapsed().as_secs_f64();
        let cpu_load: Vec<f64> = procs.iter().map(|(_, p)| cpu_seconds(*p).unwrap_or(0.0)).collect();
        let sent = sent.lock().await.clone();
        let deadline = Instant::now() + drain;
        let mut arrivals: HashMap<String, u64> = HashMap::new();
        let mut blocks: HashMap<String, f64> = HashMap::new();
        let mut read = 0;
        while Instant::now() < deadline {
            let new = net.receiver.since(read);
            read += new.len();
            for r in new.into_iter().filter(|r| r.verified) {
                // Only the full event counts as notified (not a bare `payment.settled`).
                if !r.body["type"].as_str().is_some_and(|t| t.starts_with("invoice.")) {
                    continue;
                }
                let Some(id) = r.body["data"]["invoice"]["id"].as_str() else { continue };
                if !sent.contains_key(id) {
                    continue;
                }
                let t = arrivals.entry(id.to_string()).or_insert(r.received_at_ms);
                *t = (*t).min(r.received_at_ms);
                let p = &r.body["data"]["payment"];
                if let (Some(paid), Some(settled)) =
                    (p["block_number"].as_u64(), r.body["data"]["settlement"]["block_number"].as_u64())
                {
                    blocks.insert(id.to_string(), settled.saturating_sub(paid) as f64);
                }
            }
            if arrivals.len() == sent.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // CPU while the load was offered (what was busy at that rate) ...
        let cpu: Vec<(String, f64)> = procs
            .iter()
            .zip(cpu0.iter().zip(&cpu_load))
            .map(|((name, _), (c0, c1))| (name.clone(), (c1 - c0) / load_wall * 100.0))
            .collect();
        // ... and the nodes' CPU for the whole work, drain included (for the cost per invoice).
        let node_cpu: Vec<f64> = procs
            .iter()
            .zip(&cpu0)
            .filter(|((name, _), _)| name.starts_with("node-"))
            .map(|((_, pid), c0)| cpu_seconds(*pid).unwrap_or(*c0) - c0)
            .collect();
        let (mut used, mut limit) = (0u128, 0u128);
        // The blocks of the load itself (the drain after it would dilute the figure).
        for b in block0 + 1..=load_end_block + 1 {
            if let Some(block) = provider.get_block_by_number(BlockNumberOrTag::Number(b)).await? {
                used += u128::from(block.header.gas_used);
                limit += u128::from(block.header.gas_limit);
            }
        }
        let times: Vec<u64> = arrivals.values().copied().collect();
        let span_s = match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        let latency: Vec<f64> =
            arrivals.iter().filter_map(|(id, t)| Some(t.saturating_sub(*sent.get(id)?) as f64)).collect();
        let notified = arrivals.len();
        let step = Step {
            offered_per_s: rate,
            seconds,
            offered: count,
            errors: count.saturating_sub(sent.len()),
            paid: sent.len(),
            notified,
            sustained_per_s: if notified > 1 && span_s > 0.0 { (notified - 1) as f64 / span_s } else { 0.0 },
            latency_ms: Summary::of(&latency),
            settle_blocks: Summary::of(&blocks.values().copied().collect::<Vec<_>>()),
            cpu_total_percent: cpu.iter().map(|(_, p)| p).sum(),
            cpu_percent: cpu,
            block_gas_used_percent: if limit > 0 { used as f64 / limit as f64 * 100.0 } else { 0.0 },
            node_cpu_s_per_1000: if notified > 0 && !node_cpu.is_empty() {
                node_cpu.iter().sum::<f64>() / node_cpu.len() as f64 / notified as f64 * 1000.0
            } else {
                0.0
            },
        };
        eprintln!(
            "  throughput: offered {rate}/s: paid {}, notified {}, sustained {:.1}/s, p50 {:.0} ms, settled after {:.0} blocks (p50), cpu {:.0}%",
            step.paid,
            step.notified,
            step.sustained_per_s,
            step.latency_ms.p50,
            step.settle_blocks.p50,
            step.cpu_total_percent
        );
        steps.push(step);
    }
    Ok(steps)
}
