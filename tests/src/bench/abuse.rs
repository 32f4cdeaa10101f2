//! The node under abuse, each case side by side with a quiet run in the same session: payment
//! latency while slow clients (slowloris) hold connections open, and while a flood hits the
//! unauthenticated `/health/ready` and `/status.json`; and webhook throughput to many merchants
//! with and without a tarpit merchant among them. Bounded in count and time, loopback only.

use super::latency::{self, LatencyResult};
use crate::harness::Testnet;
use crate::hostile::{self, Behaviour, event, merchant, start};
use eyre::Result;
use serde::Serialize;
use settleproof_config::WebhookSection;
use settleproof_devnet::demo_merchant::Receiver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Latency of one phase and what the abuse did meanwhile.
#[derive(Debug, Serialize)]
pub struct Phase {
    /// `quiet`, `slowloris` or `health_flood`.
    pub name: &'static str,
    /// Payment latency during the phase.
    pub latency: LatencyResult,
    /// Abusive requests or connections made.
    pub abuse_ops: u64,
    /// Connections the server cut (slowloris) or answers it gave (flood).
    pub abuse_answered: u64,
    /// RPC calls of node 0 per second during the phase (from `rpc_requests_total`).
    pub rpc_calls_per_s: f64,
    /// `GET /health/live` latency during the phase, median ms (the API still answers).
    pub live_ms_p50: f64,
}

/// The webhook part.
#[derive(Debug, Serialize)]
pub struct Webhooks {
    /// Merchants and events each.
    pub merchants: usize,
    /// Events per merchant.
    pub events_each: usize,
    /// Deliveries per second, all merchants healthy.
    pub healthy_per_s: f64,
    /// Deliveries per second to the healthy merchants while one more is a tarpit.
    pub with_tarpit_per_s: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct AbuseReport {
    /// Phases, quiet first.
    pub phases: Vec<Phase>,
    /// Webhook throughput.
    pub webhooks: Webhooks,
}

async fn rpc_calls(net: &Testnet) -> f64 {
    net.metric(0, "rpc_requests_total").await
}

async fn live_p50(net: &Testnet) -> f64 {
    let mut ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        if net.http.get(format!("{}/health/live", net.api(0))).send().await.is_ok() {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Slow clients: each connects from 127.0.0.2 (one attacker address, apart from the load's
/// 127.0.0.1), sends a partial request line and then a byte a second, and reconnects when cut;
/// `per_node` of them on every node, until `stop`.
fn slowloris(
    addrs: Vec<SocketAddr>,
    per_node: usize,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    cut: Arc<AtomicU64>,
) {
    for addr in addrs {
        for _ in 0..per_node {
            let (stop, made, cut) = (stop.clone(), made.clone(), cut.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let connect = async {
                        let socket = tokio::net::TcpSocket::new_v4()?;
                        socket.bind(([127, 0, 0, 2], 0).into())?;
                        socket.connect(addr).await
                    };
                    let Ok(mut s) = connect.await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    made.fetch_add(1, Ordering::Relaxed);
                    if s.write_all(b"GET /status.json HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                        continue;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if s.write_all(b"X").await.is_err() || s.flush().await.is_err() {
                            cut.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    }
}

/// `workers` clients asking `/health/ready` and `/status.json` back to back from 127.0.0.3,
/// until `stop`.
fn flood(apis: Vec<String>, workers: usize, stop: Arc<AtomicBool>, made: Arc<AtomicU64>, answered: Arc<AtomicU64>) {
    let client =
        reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 3])).build().unwrap_or_default();
    for w in 0..workers {
        let (client, stop, made, answered) = (client.clone(), stop.clone(), made.clone(), answered.clone());
        let api = apis[w % apis.len()].clone();
        tokio::spawn(async move {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = if k.is_multiple_of(2) { "/health/ready" } else { "/status.json" };
                k += 1;
                made.fetch_add(1, Ordering::Relaxed);
                if client.get(format!("{api}{path}")).send().await.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

async fn phase(net: &Testnet, name: &'static str, payments: usize) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let (made, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let addrs: Vec<SocketAddr> = net.devnet.nodes.iter().map(|(_, c)| c.api.listen).collect();
    let apis: Vec<String> = (0..net.nodes.len()).map(|i| net.api(i)).collect();
    match name {
        "slowloris" => slowloris(addrs, 250, stop.clone(), made.clone(), answered.clone()),
        "health_flood" => flood(apis, 32, stop.clone(), made.clone(), answered.clone()),
        _ => {}
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (calls0, t0) = (rpc_calls(net).await, Instant::now());
    let live_ms_p50 = live_p50(net).await;
    let (k, length) = (super::setup::CONFIRMATIONS, super::setup::ROUND_LENGTH);
    let latency = latency::run(net, payments, Duration::from_millis(1300), k, length).await;
    let rpc_calls_per_s = (rpc_calls(net).await - calls0) / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(Phase {
        name,
        latency: latency?,
        abuse_ops: made.load(Ordering::Relaxed),
        abuse_answered: answered.load(Ordering::Relaxed),
        rpc_calls_per_s,
        live_ms_p50,
    })
}

async fn deliveries_per_s(merchants: usize, each: usize, tarpit: bool) -> Result<f64> {
    let rx = Receiver::new(hostile::SECRET.into(), None);
    let good = rx.clone().spawn(([127, 0, 0, 1], 0).into()).await?;
    let mut ms = Vec::new();
    let mut events = Vec::new();
    for m in 0..merchants {
        let id = format!("m{m}");
        ms.push(merchant(&id, format!("http://{good}/webhooks")));
        events.extend((0..each).map(|n| event(&id, n as u64)));
    }
    if tarpit {
        let (addr, _) = hostile::spawn(Behaviour::Tarpit).await?;
        ms.push(merchant("tarpit", format!("http://{addr}/hooks")));
        events.extend((0..each).map(|n| event("tarpit", n as u64)));
    }
    let settings = WebhookSection { timeout_ms: 30_000, allow_private_targets: true, ..WebhookSection::default() };
    let began = Instant::now();
    let run = start(ms, settings, &events)?;
    let want = merchants * each;
    while rx.snapshot().iter().filter(|r| r.verified).count() < want && began.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = run.stop.send(true);
    Ok(rx.snapshot().iter().filter(|r| r.verified).count() as f64 / began.elapsed().as_secs_f64())
}

/// Runs every phase on `net`, then the webhook part.
pub async fn run(net: &Testnet, payments: usize) -> Result<AbuseReport> {
    let mut phases = Vec::new();
    for name in ["quiet", "slowloris", "health_flood"] {
        eprintln!("abuse: {name} ...");
        phases.push(phase(net, name, payments).await?);
    }
    eprintln!("abuse: webhooks ...");
    let (merchants, each) = (20, 25);
    let healthy_per_s = deliveries_per_s(merchants, each, false).await?;
    let with_tarpit_per_s = deliveries_per_s(merchants, each, true).await?;
    Ok(AbuseReport { phases, webhooks: Webhooks { merchants, events_each: each, healthy_per_s, with_tarpit_per_s } })
}
