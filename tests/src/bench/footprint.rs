//! Footprint: a node's resident memory and store size after a million invoices, and how long it
//! takes to start on that store. The invoices are written straight into the stopped node's
//! store in bulk (creating a million through the API would take most of the time budget), then
//! the node starts on it.

use super::proc::rss_bytes;
use crate::harness::{NodeRun, Testnet};
use alloy::primitives::{Address, U256, keccak256};
use eyre::{Result, eyre};
use serde::Serialize;
use settleproof_node::store::{Invoice, Store};
use std::time::{Duration, Instant};

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct FootprintResult {
    /// Invoices written.
    pub invoices: u64,
    /// Seconds the bulk import took (one transaction per 20,000).
    pub import_s: f64,
    /// Store file size after the import, bytes.
    pub store_bytes: u64,
    /// Node RSS before (after the other benchmarks), bytes.
    pub rss_before_bytes: u64,
    /// Start to `/health/live` answering, ms.
    pub startup_live_ms: f64,
    /// Start to caught up with the chain and answering (`ready` or `degraded`), ms.
    pub startup_ready_ms: f64,
    /// Peers connected at that moment.
    pub peers_at_ready: u64,
    /// RSS once ready, bytes.
    pub rss_ready_bytes: u64,
    /// RSS after reading 2,000 of the imported invoices through the API, bytes.
    pub rss_after_reads_bytes: u64,
}

fn pid(net: &Testnet, i: usize) -> Option<u32> {
    match &net.nodes[i] {
        NodeRun::Process(c) => Some(c.id()),
        _ => None,
    }
}

/// Stops process node `i`, imports `count` invoices into its store, starts it again.
pub async fn run(net: &mut Testnet, i: usize, count: u64) -> Result<FootprintResult> {
    let rss_before_bytes = pid(net, i).and_then(rss_bytes).unwrap_or_default();
    net.term(i, Duration::from_secs(30))?;
    let cfg = net.devnet.nodes[i].1.clone();
    let path = cfg.node.data_dir.join("settleproof.redb");
    let merchant = net.devnet.merchant.clone();
    let began = Instant::now();
    let store = Store::open(&path)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let id_of = |k: u64| keccak256([b"footprint".as_slice(), &k.to_be_bytes()].concat());
    let mut k = 0;
    while k < count {
        let chunk: Vec<Invoice> = (k..(k + 20_000).min(count))
            .map(|j| Invoice {
                id: id_of(j),
                merchant_id: merchant.id.clone(),
                payout_address: merchant.payout_address,
                amount: U256::from(1_000_000_000_000_000u64 + j),
                token: Address::ZERO,
                created_at: now - (count - j),
                expires_at: Some(now + 86_400 * 30),
                metadata: Some(serde_json::json!({ "order": j })),
                created_by: cfg.node.name.clone(),
                idempotency: None,
                redirect_url: None,
                statement: None,
                nonce: alloy::primitives::B256::ZERO,
            })
            .collect();
        store.put_invoices(&chunk)?;
        k += chunk.len() as u64;
    }
    drop(store);
    let import_s = began.elapsed().as_secs_f64();
    let store_bytes = std::fs::metadata(&path)?.len();
    eprintln!("  footprint: {count} invoices imported in {import_s:.1} s, store {} MB", store_bytes / 1_000_000);
    net.restart(i)?;
    let started = Instant::now();
    let api = net.api(i);
    let live = net
        .eventually("live", Duration::from_secs(120), || async {
            let r = net.http.get(format!("{api}/health/live")).send().await.ok()?;
            r.status().is_success().then(|| started.elapsed())
        })
        .await?;
    // Ready: caught up with the chain and serving; a peer still reconnecting only degrades.
    let (ready, peers) = net
        .eventually("caught up", Duration::from_secs(120), || async {
            let h = net.health(i).await?;
            let chain = &h["chains"][0]["checks"]["chain"];
            let caught_up = chain["status"] == "ok" && chain["head"].as_u64()? <= chain["checkpoint"].as_u64()? + 2;
            (caught_up && h["status"] != "not_ready").then(|| {
                (started.elapsed(), h["chains"][0]["checks"]["peers"]["connected"].as_u64().unwrap_or_default())
            })
        })
        .await?;
    let node_pid = pid(net, i).ok_or_else(|| eyre!("node {i} is not a process"))?;
    let rss_ready_bytes = rss_bytes(node_pid).unwrap_or_default();
    let key = net.devnet.merchant_key.clone();
    for j in 0..2000u64 {
        let id = id_of(j * (count / 2000).max(1));
        crate::harness::signed(&net.http, &key, reqwest::Method::GET, &format!("{api}/v1/invoices/{id}"), None)?
            .send()
            .await?
            .bytes()
            .await?;
    }
    Ok(FootprintResult {
        invoices: count,
        import_s,
        store_bytes,
        rss_before_bytes,
        startup_live_ms: live.as_secs_f64() * 1000.0,
        startup_ready_ms: ready.as_secs_f64() * 1000.0,
        peers_at_ready: peers,
        rss_ready_bytes,
        rss_after_reads_bytes: rss_bytes(node_pid).unwrap_or_default(),
    })
}
