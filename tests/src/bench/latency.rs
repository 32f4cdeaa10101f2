//! Latency overhead: from a payment's block to the merchant's webhook, minus the floor the chain
//! imposes. A node treats block b as final once K blocks are on top of it (block b+K, K the
//! confirmation depth), and the earliest block that can hold the settlement is the next one,
//! b+K+1: K block times to confirm plus the block that includes the settlement. The floor ends
//! when block b+K+1 appears; the overhead is what the nodes add after that (noticing the
//! settlement, building, signing and delivering the webhook), plus a block time whenever the
//! settlement missed block b+K+1. Block times are the moment a 10 ms poll of anvil first sees
//! each block, not the block timestamps (whole seconds).

use super::load::{FastPayer, create_native};
use super::stats::Summary;
use crate::harness::Testnet;
use alloy::primitives::B256;
use alloy::providers::Provider;
use eyre::{Result, eyre};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// One payment's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Payment block.
    pub block: u64,
    /// Block that held the settlement.
    pub settled_in: u64,
    /// Webhook arrival minus the appearance of block b+K+1, ms.
    pub overhead_ms: f64,
    /// Webhook arrival minus the appearance of block b, ms.
    pub total_ms: f64,
}

/// The result of a latency run.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Confirmation depth K.
    pub confirmations: u64,
    /// Blocks per round.
    pub round_length: u64,
    /// Seconds between blocks.
    pub block_time_s: f64,
    /// Overhead over the floor, ms.
    pub overhead_ms: Summary,
    /// Payment block to webhook, ms.
    pub total_ms: Summary,
    /// The floor itself (block b to block b+K+1), ms.
    pub floor_ms: Summary,
    /// Settlements that missed the earliest block b+K+1.
    pub missed_earliest_block: usize,
    /// Every payment.
    pub samples: Vec<Sample>,
}

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// Records when each block first appears.
fn watch_blocks(net: &Testnet, stop: Arc<AtomicBool>) -> Result<Arc<Mutex<HashMap<u64, f64>>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let provider = net.provider()?;
    let out = seen.clone();
    tokio::spawn(async move {
        let mut last = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = provider.get_block_number().await
                && n > last
            {
                let t = now_ms();
                let mut s = out.lock().await;
                for b in (last + 1).max(n.saturating_sub(5))..=n {
                    s.entry(b).or_insert(t);
                }
                last = n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    Ok(seen)
}

/// Pays `count` invoices, `spacing` apart (not a multiple of the block time, so payments land
/// at every phase of a block), and measures each one's timeline.
pub async fn run(net: &Testnet, count: usize, spacing: Duration, k: u64, round_length: u64) -> Result<LatencyResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = watch_blocks(net, stop.clone())?;
    let payer = FastPayer::new(net).await?;
    let mut paid: Vec<(String, B256)> = Vec::new();
    for i in 0..count {
        let created = create_native(net, i % net.nodes.len(), "1000000000000000").await?;
        let tx = payer.pay_native(&created).await?;
        paid.push((created["id"].as_str().unwrap_or_default().to_string(), tx));
        tokio::time::sleep(spacing).await;
    }
    let ids: Vec<String> = paid.iter().map(|(id, _)| id.clone()).collect();
    net.eventually("every webhook", Duration::from_secs(90), || async {
        let got = net.receiver.snapshot();
        ids.iter()
            .all(|id| got.iter().any(|r| r.verified && r.body["data"]["invoice"]["id"] == id.as_str()))
            .then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = seen.lock().await.clone();
    let got = net.receiver.snapshot();
    let provider = net.provider()?;
    let mut samples = Vec::new();
    for (id, tx) in &paid {
        let receipt = provider.get_transaction_receipt(*tx).await?.ok_or_else(|| eyre!("no receipt for {tx}"))?;
        let b = receipt.block_number.unwrap_or_default();
        let first = got
            .iter()
            .filter(|r| r.verified && r.body["data"]["invoice"]["id"] == id.as_str())
            .min_by_key(|r| r.received_at_ms)
            .ok_or_else(|| eyre!("no webhook for {id}"))?;
        let settled_in = first.body["data"]["settlement"]["block_number"].as_u64().unwrap_or_default();
        let (Some(tb), Some(tf)) = (seen.get(&b), seen.get(&(b + k + 1))) else { continue };
        let w = first.received_at_ms as f64;
        samples.push(Sample { block: b, settled_in, overhead_ms: w - tf, total_ms: w - tb });
    }
    let overhead: Vec<f64> = samples.iter().map(|s| s.overhead_ms).collect();
    let total: Vec<f64> = samples.iter().map(|s| s.total_ms).collect();
    let floor: Vec<f64> = samples.iter().map(|s| s.total_ms - s.overhead_ms).collect();
    Ok(LatencyResult {
        confirmations: k,
        round_length,
        block_time_s: 1.0,
        overhead_ms: Summary::of(&overhead),
        total_ms: Summary::of(&total),
        floor_ms: Summary::of(&floor),
        missed_earliest_block: samples.iter().filter(|s| s.settled_in > s.block + k + 1).count(),
        samples,
    })
}
