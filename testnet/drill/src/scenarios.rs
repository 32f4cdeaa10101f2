//! The chaos scenarios. Each runs the payment load, injects its fault once the first payment is
//! on chain (so a round is in flight), heals everything, and hands the payments to the verdict.

use crate::control::Control;
use crate::forge;
use crate::load::{self, LoadOptions, LoadOutcome, Payment, Progress};
use crate::time::now_ms;
use crate::verdict::{self, Verdict};
use crate::wallet::Payer;
use eyre::{Result, bail};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A fault to drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// No fault: the load alone (what `pay` runs).
    None,
    /// SIGKILL the keeper of the round in flight; restart it after the fault window.
    KillKeeper,
    /// SIGKILL every node at once mid-load, then start them all again.
    RestartAll,
    /// One provider of every node forges payment logs.
    ProviderLies,
    /// Two of the three providers of one node are down.
    ProvidersDown,
    /// The operators split 2|2 (no side has a quorum), then heal.
    Partition,
    /// The merchant's webhook receiver is down, then back.
    MerchantDown,
    /// Reorgs of the blocks not yet confirmed, during the load; the payer pays again
    /// whatever they dropped.
    Reorg,
    /// One operator is Byzantine: it alters and invents invoices, forges acknowledgements,
    /// equivocates, floods and withholds; an outsider settles through a wrapping contract.
    Byzantine,
    /// The operator set changes four times during the load: an operator joins, one rotates its
    /// BLS key, one is removed (its node stopped), the threshold is raised. It changes the
    /// testnet for good, so `all` runs it last.
    RotateOperators,
    /// The second chain's anvil stops during a load on both chains (`up.sh --chains 2`), then
    /// continues: the first chain's payments settle meanwhile, the second's once it is back.
    /// Not in `all`, which runs on a testnet of one chain.
    ChainDown,
}

/// Every scenario with a fault, in the order `all` runs them.
pub const ALL: [Scenario; 9] = [
    Scenario::KillKeeper,
    Scenario::RestartAll,
    Scenario::ProviderLies,
    Scenario::ProvidersDown,
    Scenario::Partition,
    Scenario::MerchantDown,
    Scenario::Reorg,
    Scenario::Byzantine,
    Scenario::RotateOperators,
];

impl Scenario {
    /// Its command-line name.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

/// How hard and how long.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DrillOptions {
    /// Invoices in the load.
    pub invoices: usize,
    /// Invoices per second.
    pub rate: f64,
    /// How long the fault lasts, seconds.
    pub fault_s: u64,
    /// How long to wait for the last payments to settle and be notified, seconds.
    pub settle_timeout_s: u64,
}

/// A drill's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario.
    pub scenario: String,
    /// Options.
    pub options: DrillOptions,
    /// When it started, unix ms.
    pub started_at_ms: u64,
    /// What was done when, ms from the start.
    pub timeline: Vec<(u64, String)>,
    /// Payments made.
    pub payments: Vec<Payment>,
    /// The verdict.
    pub verdict: Verdict,
}

/// What happened when, printed as it happens.
#[derive(Debug)]
pub struct Timeline {
    start: u64,
    events: Vec<(u64, String)>,
}

impl Timeline {
    /// Notes `what` now.
    pub fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        let at = now_ms().saturating_sub(self.start);
        println!("  [{:>6.1} s] {what}", at as f64 / 1000.0);
        self.events.push((at, what));
    }
}

impl Report {
    /// A drill that could not run (the testnet was not ready): failed, with the reason.
    pub fn not_run(scenario: Scenario, options: DrillOptions, why: &eyre::Report) -> Self {
        let verdict = Verdict { wrong: vec![format!("the drill could not run: {why:#}")], ..Verdict::default() };
        Self {
            scenario: scenario.name(),
            options,
            started_at_ms: now_ms(),
            timeline: Vec::new(),
            payments: Vec::new(),
            verdict,
        }
    }
}

impl Timeline {
    /// A timeline starting now.
    pub fn start() -> Self {
        Self { start: now_ms(), events: Vec::new() }
    }

    /// When it started, unix ms.
    pub fn started_at_ms(&self) -> u64 {
        self.start
    }

    /// What was noted.
    pub fn into_events(self) -> Vec<(u64, String)> {
        self.events
    }
}

/// Runs `scenario` on the testnet behind `ctl`.
pub async fn run(ctl: &Control, payer: &Payer, scenario: Scenario, opts: DrillOptions) -> Result<Report> {
    if scenario == Scenario::ChainDown {
        return crate::chain_down::run(ctl, payer, opts).await;
    }
    let mut tl = Timeline::start();
    ctl.wait_all_ready(Duration::from_secs(90)).await?;
    tl.note(format!("every node ready; load of {} invoices at {}/s", opts.invoices, opts.rate));
    let progress = Arc::new(Progress::default());
    let load = {
        let (ctl, payer, progress) = (ctl.clone(), payer.clone(), progress.clone());
        let lo = LoadOptions { invoices: opts.invoices, rate: opts.rate };
        tokio::spawn(async move { load::run(&ctl, &payer, lo, progress).await })
    };
    let mut decoys = Decoys::default();
    let mut extra = Vec::new();
    let injected = inject(ctl, payer, scenario, opts, &progress, &mut tl, &mut decoys, &mut extra).await;
    if let Err(e) = &injected {
        tl.note(format!("fault injection failed: {e:#}"));
    }
    if scenario != Scenario::None {
        heal(ctl, &mut tl).await;
    }
    let LoadOutcome { mut payments, failures } = load.await?;
    payments.extend(extra);
    tl.note(format!("load done: {} payments on chain, {} invoices not paid", payments.len(), failures.len()));
    if scenario == Scenario::Reorg {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let moved = load::reincluded(payer, &mut payments).await?;
        let resent = payer.rebroadcasts().await;
        tl.note(format!(
            "{resent} transactions dropped by the reorgs were rebroadcast; {moved} payments landed in another block"
        ));
    }
    let mut unready = Vec::new();
    for i in (0..ctl.n()).filter(|i| !ctl.retired(*i)) {
        if let Err(e) = ctl.wait_ready(i, Duration::from_secs(90)).await {
            unready.push(format!("{e:#}"));
        }
    }
    tl.note("waiting for settlements and webhooks");
    let mut verdict = verdict::judge(ctl, &payments, Duration::from_secs(opts.settle_timeout_s), tl.start).await;
    verdict.wrong.extend(unready);
    verdict.wrong.extend(failures.into_iter().map(|f| format!("load: {f}")));
    verdict.wrong.extend(verdict::unpaid_stay_unpaid(ctl, &decoys.unpaid).await);
    let (mut impersonations, unchecked) = verdict::never_held(ctl, &decoys.unsigned).await;
    verdict.wrong.extend(unchecked);
    if let Some(attacked) = decoys.merchant.take() {
        let (applied, wrong) = attacked.judge(ctl).await;
        impersonations.extend(applied);
        verdict.wrong.extend(wrong);
        attacked.clean_up(ctl).await;
    }
    verdict.impersonations = impersonations.len();
    verdict.wrong.extend(impersonations);
    if let Err(e) = injected {
        verdict.wrong.push(format!("the fault could not be injected: {e:#}"));
    }
    tl.note(format!("verdict: {}", if verdict.pass() { "PASS" } else { "FAIL" }));
    Ok(Report {
        scenario: scenario.name(),
        options: opts,
        started_at_ms: tl.start,
        timeline: tl.events,
        payments,
        verdict,
    })
}

/// Waits until `at_least` payments are on chain, or the load is over (it may have failed).
async fn first_payment(progress: &Progress, at_least: usize) {
    while progress.made.load(Ordering::Relaxed) < at_least && !progress.done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Invoices a fault made that must come to nothing: ids that must stay unpaid, and ids of
/// invoices the merchant never signed that no honest node may hold.
#[derive(Default)]
pub struct Decoys {
    /// Never paid: no node may show a payment, nor the merchant hear of one.
    pub unpaid: Vec<String>,
    /// Never signed by the merchant: no node may hold one.
    pub unsigned: Vec<String>,
    /// The merchant's records the Byzantine operator attacked, to check and delete.
    pub merchant: Option<crate::merchant_side::Attacked>,
}

#[allow(clippy::too_many_arguments)]
async fn inject(
    ctl: &Control,
    payer: &Payer,
    scenario: Scenario,
    opts: DrillOptions,
    progress: &Progress,
    tl: &mut Timeline,
    decoys: &mut Decoys,
    extra: &mut Vec<Payment>,
) -> Result<()> {
    let fault = Duration::from_secs(opts.fault_s);
    let n = ctl.n();
    first_payment(progress, 1).await;
    match scenario {
        Scenario::None => {}
        Scenario::KillKeeper => {
            let mut round = None;
            for i in 0..n {
                if let Some(s) = ctl.status(i).await {
                    round = s["next_round"].as_u64();
                    break;
                }
            }
            let Some(round) = round else { bail!("no node answers /status.json") };
            let k = (round % n as u64) as usize;
            ctl.kill9(&format!("node-{k}")).await?;
            tl.note(format!("SIGKILL node-{k}, keeper of round {round} (in flight)"));
            tokio::time::sleep(fault).await;
        }
        Scenario::RestartAll => {
            first_payment(progress, opts.invoices.div_ceil(3)).await;
            for i in 0..n {
                ctl.kill9(&format!("node-{i}")).await?;
            }
            tl.note(format!("SIGKILL all {n} nodes"));
            tokio::time::sleep(fault.min(Duration::from_secs(5))).await;
        }
        Scenario::ProviderLies => {
            let (decoy, log) = forge::payment_of_unpaid_invoice(ctl).await?;
            for i in 0..n {
                ctl.fault(i, 0, json!({"mode": "forge_log", "log": log})).await?;
            }
            tl.note(format!("provider 0 of every node forges a payment of unpaid invoice {decoy}"));
            decoys.unpaid.push(decoy);
            tokio::time::sleep(fault).await;
        }
        Scenario::ProvidersDown => {
            let i = 1.min(n.saturating_sub(1));
            ctl.fault(i, 0, json!({"mode": "down"})).await?;
            ctl.fault(i, 1, json!({"mode": "down"})).await?;
            tl.note(format!("providers 0 and 1 of node-{i} down"));
            tokio::time::sleep(fault).await;
        }
        Scenario::Partition => {
            let side = |i: usize| i < n / 2;
            for i in 0..n {
                for j in (0..n).filter(|&j| side(i) != side(j)) {
                    ctl.link(i, j, true).await?;
                }
            }
            tl.note(format!("partition: nodes 0..{} | {}..{n}", n / 2, n / 2));
            tokio::time::sleep(fault).await;
        }
        Scenario::MerchantDown => {
            ctl.kill9("merchant").await?;
            tl.note("merchant receiver killed");
            tokio::time::sleep(fault).await;
        }
        Scenario::Byzantine => {
            let step = (fault / 3).max(Duration::from_secs(2));
            crate::byzantine::run(ctl, payer, step, tl, decoys).await?;
        }
        Scenario::RotateOperators => extra.extend(crate::rotation::run(ctl, payer, tl).await?),
        Scenario::ChainDown => bail!("chain-down runs on its own (crate::chain_down)"),
        Scenario::Reorg => {
            // A node reads a block once `confirmations` blocks are on top of it, so the last
            // `confirmations` blocks are the ones no node has acted on.
            let depth = ctl.m.confirmations()?.max(1);
            let every = Duration::from_secs(3);
            let mut left = fault;
            while !left.is_zero() {
                ctl.reorg(depth).await?;
                tl.note(format!("reorg of the last {depth} block(s)"));
                tokio::time::sleep(every.min(left)).await;
                left = left.saturating_sub(every);
            }
        }
    }
    Ok(())
}

/// Undoes every fault a drill may have left: providers healed, stopped processes started
/// again, links restored.
pub(crate) async fn heal(ctl: &Control, tl: &mut Timeline) {
    let n = ctl.n();
    let mut healed = true;
    for i in 0..n {
        for p in 0..ctl.m.nodes[i].rpc_endpoints.len() {
            healed &= ctl.fault(i, p, json!({"mode": "none"})).await.is_ok();
        }
    }
    for i in (0..n).filter(|i| !ctl.retired(*i)) {
        if ctl.m.pid(&ctl.m.nodes[i].name).is_none_or(|p| !crate::control::alive(p)) {
            match ctl.restart_node(i) {
                Ok(()) => tl.note(format!("node-{i} started again")),
                Err(e) => tl.note(format!("node-{i} could not be started: {e:#}")),
            }
        }
    }
    if ctl.m.receiver().is_ok() && ctl.m.pid("merchant").is_none_or(|p| !crate::control::alive(p)) {
        // A start that fails is tried again: the drill is of the nodes, not of the receiver.
        for attempt in 1..=3 {
            match ctl.restart_merchant().await {
                Ok(()) => {
                    tl.note("merchant receiver started again");
                    break;
                }
                Err(e) => {
                    healed &= attempt < 3;
                    tl.note(format!("merchant receiver could not be started (attempt {attempt} of 3): {e:#}"));
                }
            }
        }
    }
    for i in (0..n).filter(|i| !ctl.retired(*i)) {
        // A node just started has no blocks to lift; one that does not answer yet is skipped.
        if ctl.status(i).await.is_some() {
            for j in (0..n).filter(|&j| j != i) {
                healed &= ctl.link(i, j, false).await.is_ok();
            }
        }
    }
    tl.note(if healed { "healed: providers clean, links restored" } else { "heal incomplete" });
}
