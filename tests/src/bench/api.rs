//! API latency under an open-loop load: requests are sent on a fixed schedule (not when the
//! previous one answers), and each latency is measured from its scheduled time, so a slow
//! answer cannot hide the requests queued behind it.

use super::stats::Summary;
use crate::harness::Testnet;
use eyre::Result;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Results of one endpoint at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointResult {
    /// `create` or `get`.
    pub endpoint: String,
    /// Requests per second offered.
    pub rate: f64,
    /// Requests sent.
    pub requests: usize,
    /// Answers that were not the expected status.
    pub errors: usize,
    /// Latency from the scheduled send time to the full answer, ms.
    pub latency_ms: Summary,
    /// The target p99, ms.
    pub target_p99_ms: f64,
}

/// Runs `count` calls of `call` at `rate` per second; `call` says whether the answer was good.
async fn open_loop<F, Fut>(rate: f64, count: usize, call: F) -> (Vec<f64>, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let out = Arc::new(Mutex::new((Vec::with_capacity(count), 0usize)));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..count {
        let at = start + Duration::from_secs_f64(k as f64 / rate);
        let (call, out) = (call.clone(), out.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let ok = call(k).await;
            let ms = at.elapsed().as_secs_f64() * 1000.0;
            let mut o = out.lock().await;
            o.0.push(ms);
            if !ok {
                o.1 += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    std::mem::take(&mut *out.lock().await)
}

/// Creates `seconds × rate` invoices on node 0 at `rate`, then reads them back at `rate`.
pub async fn run(net: &Testnet, rate: f64, seconds: u64) -> Result<Vec<EndpointResult>> {
    let count = (rate * seconds as f64) as usize;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let base = net.api(0);
    // Every request is signed by the merchant's key, as a merchant's client sends it.
    let token = net.devnet.merchant_key.clone();
    let chain_id = net.devnet.chains.first().map_or(0, |c| c.chain_id);
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    // What each failed create got (a status and its body's start, or the transport error).
    let failures: Arc<Mutex<std::collections::BTreeMap<String, usize>>> = Arc::default();
    let began = Instant::now();
    let (create_ms, create_err) = {
        let (client, base, token, ids, failures) =
            (client.clone(), base.clone(), token.clone(), ids.clone(), failures.clone());
        open_loop(rate, count, move |k| {
            let (client, base, token, ids, failures) =
                (client.clone(), base.clone(), token.clone(), ids.clone(), failures.clone());
            async move {
                let body = serde_json::json!({ "amount": "1000000000000000", "token": "native", "chain_id": chain_id, "metadata": { "k": k } });
                let req = crate::harness::signed(
                    &client,
                    &token,
                    reqwest::Method::POST,
                    &format!("{base}/v1/invoices"),
                    Some(&body),
                );
                let r = match async { req?.send().await.map_err(eyre::Report::from) }.await {
                    Ok(r) => r,
                    Err(e) => {
                        *failures.lock().await.entry(format!("transport: {e}")).or_default() += 1;
                        return false;
                    }
                };
                if r.status().as_u16() != 201 {
                    let status = r.status().as_u16();
                    let text: String = r.text().await.unwrap_or_default().chars().take(120).collect();
                    *failures.lock().await.entry(format!("{status} {text}")).or_default() += 1;
                    return false;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else { return false };
                if let Some(id) = v["id"].as_str() {
                    ids.lock().await.push(id.to_string());
                }
                true
            }
        })
        .await
    };
    eprintln!("  api: {count} creates at {rate}/s in {:.1} s", began.elapsed().as_secs_f64());
    for (what, n) in failures.lock().await.iter() {
        eprintln!("  api: {n} creates failed: {what}");
    }
    let ids: Arc<Vec<String>> = Arc::new(std::mem::take(&mut *ids.lock().await));
    let (get_ms, get_err) = if ids.is_empty() {
        (Vec::new(), count)
    } else {
        let (client, base, token, ids) = (client.clone(), base.clone(), token.clone(), ids.clone());
        open_loop(rate, count, move |k| {
            let (client, base, token, ids) = (client.clone(), base.clone(), token.clone(), ids.clone());
            async move {
                let id = &ids[k % ids.len()];
                let req = crate::harness::signed(
                    &client,
                    &token,
                    reqwest::Method::GET,
                    &format!("{base}/v1/invoices/{id}"),
                    None,
                );
                match async { req?.send().await.map_err(eyre::Report::from) }.await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await
    };
    Ok(vec![
        EndpointResult {
            endpoint: "create".into(),
            rate,
            requests: count,
            errors: create_err,
            latency_ms: Summary::of(&create_ms),
            target_p99_ms: 50.0,
        },
        EndpointResult {
            endpoint: "get".into(),
            rate,
            requests: count,
            errors: get_err,
            latency_ms: Summary::of(&get_ms),
            target_p99_ms: 20.0,
        },
    ])
}
