//! `chain-down`: a load on both chains of a two-chain testnet; the second chain's anvil stops
//! (`SIGSTOP`: every call to it hangs, as when all its providers are down) for the fault
//! window, then continues. While it is down every node must stay up and name the chain as
//! failing, and the first chain's payments must settle and be notified; once it is back, the
//! second chain's must too. Judged per chain, against each chain's own settlement contract.

use crate::control::Control;
use crate::load::{self, LoadOptions, LoadOutcome, Progress};
use crate::scenarios::{DrillOptions, Report, Scenario, Timeline};
use crate::verdict;
use crate::wallet::Payer;
use eyre::{Result, eyre};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Shortest stop: a node names the chain failing once its reads time out and are retried.
const MIN_FAULT_S: u64 = 15;

/// Runs the drill.
pub async fn run(ctl: &Control, payer: &Payer, opts: DrillOptions) -> Result<Report> {
    let mut tl = Timeline::start();
    let down = ctl
        .m
        .chains
        .get(1)
        .cloned()
        .ok_or_else(|| eyre!("chain-down needs a testnet of two chains: ./testnet/up.sh --chains 2"))?;
    let other = ctl.on_chain(&down)?;
    ctl.wait_all_ready(Duration::from_secs(90)).await?;
    let payer_down = Payer::start(&other).await?;
    tl.note(format!(
        "every node ready; load of {} invoices at {}/s on each of chains {} and {}",
        opts.invoices,
        opts.rate,
        ctl.m.chains.first().map_or(0, |c| c.chain_id),
        down.chain_id
    ));
    let lo = LoadOptions { invoices: opts.invoices, rate: opts.rate };
    let (up_progress, down_progress) = (Arc::new(Progress::default()), Arc::new(Progress::default()));
    let up_load = {
        let (ctl, payer, progress) = (ctl.clone(), payer.clone(), up_progress.clone());
        tokio::spawn(async move { load::run(&ctl, &payer, lo, progress).await })
    };
    let down_load = {
        let (ctl, payer, progress) = (other.clone(), payer_down.clone(), down_progress.clone());
        tokio::spawn(async move { load::run(&ctl, &payer, lo, progress).await })
    };
    while down_progress.made.load(Ordering::Relaxed) < 1 && !down_progress.done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut wrong = Vec::new();
    let paused = ctl.pause_chain(&down, true);
    match &paused {
        Ok(()) => {
            tl.note(format!("anvil of chain {} stopped", down.chain_id));
            // Long enough for every node's reads of the chain to time out and be retried.
            let window = Duration::from_secs(opts.fault_s.max(MIN_FAULT_S));
            wrong.extend(nodes_name_the_chain(ctl, down.chain_id, window, &mut tl).await);
        }
        Err(e) => wrong.push(format!("the chain could not be stopped: {e:#}")),
    }
    if let Err(e) = ctl.pause_chain(&down, false) {
        wrong.push(format!("the chain could not be continued: {e:#}"));
    }
    tl.note(format!("anvil of chain {} continues", down.chain_id));
    crate::scenarios::heal(ctl, &mut tl).await;

    let mut outcomes = Vec::new();
    for (name, load) in [("first", up_load), ("second", down_load)] {
        let LoadOutcome { payments, failures } = load.await?;
        tl.note(format!("{name} chain's load done: {} payments on chain, {} not paid", payments.len(), failures.len()));
        wrong.extend(failures.into_iter().map(|f| format!("load on the {name} chain: {f}")));
        outcomes.push(payments);
    }
    for i in 0..ctl.n() {
        if let Err(e) = ctl.wait_ready(i, Duration::from_secs(90)).await {
            wrong.push(format!("{e:#}"));
        }
    }
    tl.note("waiting for settlements and webhooks on both chains");
    let within = Duration::from_secs(opts.settle_timeout_s);
    let first = verdict::judge(ctl, &outcomes[0], within, tl.started_at_ms()).await;
    let second = verdict::judge(&other, &outcomes[1], within, tl.started_at_ms()).await;
    if let Some(p) = &second.notify_latency_ms {
        tl.note(format!(
            "second chain: notified p50 {} ms, p95 {} ms (its payments waited out the stop)",
            p.p50, p.p95
        ));
    }
    let mut verdict = first.and(second);
    verdict.wrong.extend(wrong);
    tl.note(format!("verdict: {}", if verdict.pass() { "PASS" } else { "FAIL" }));
    let started_at_ms = tl.started_at_ms();
    Ok(Report {
        scenario: Scenario::ChainDown.name(),
        options: opts,
        started_at_ms,
        timeline: tl.into_events(),
        payments: outcomes.concat(),
        verdict,
    })
}

/// For `window`: every node must report chain `chain_id` failing while it stays up (degraded,
/// not unready); returns what is wrong.
async fn nodes_name_the_chain(ctl: &Control, chain_id: u64, window: Duration, tl: &mut Timeline) -> Vec<String> {
    let end = Instant::now() + window;
    let mut named = vec![false; ctl.n()];
    let mut wrong = Vec::new();
    while Instant::now() < end {
        for (i, seen) in named.iter_mut().enumerate() {
            let Ok(r) = ctl.http.get(format!("{}/health/ready", ctl.m.nodes[i].api_url)).send().await else {
                continue;
            };
            let Ok(h) = r.json::<serde_json::Value>().await else { continue };
            let failing = h["checks"]["chains"]["failing"].as_array().cloned().unwrap_or_default();
            let names_it = failing.iter().any(|f| f.as_str().is_some_and(|f| f.starts_with(&chain_id.to_string())));
            if names_it && h["status"] == "degraded" && !*seen {
                *seen = true;
                tl.note(format!("{}: degraded, chain {chain_id} failing", ctl.m.nodes[i].name));
            }
            if h["status"] == "not_ready" {
                let what = format!("{} reported not_ready while only chain {chain_id} was down", ctl.m.nodes[i].name);
                if !wrong.contains(&what) {
                    wrong.push(what);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (i, seen) in named.iter().enumerate() {
        if !seen {
            wrong.push(format!("{} never named chain {chain_id} failing while it was down", ctl.m.nodes[i].name));
        }
    }
    wrong
}
