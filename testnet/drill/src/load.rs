//! The payment load: creates invoices through the nodes' API (round robin, moving on to the next
//! node when one does not answer) and pays them on chain at a given rate, in a fixed mix of
//! native, ERC-20, partial and late payments.

use crate::control::Control;
use crate::wallet::Payer;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{BlockNumberOrTag, TransactionRequest};
use eyre::{Result, bail, eyre};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// The kinds of payment in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The full amount in the native coin.
    Native,
    /// The full amount in the ERC-20 (approve, then pay).
    Erc20,
    /// Half the amount in the native coin.
    Partial,
    /// The full amount after the invoice expired.
    Late,
}

/// The repeating mix: half native, a quarter ERC-20, one partial and one late in eight.
pub const MIX: [Kind; 8] =
    [Kind::Native, Kind::Erc20, Kind::Native, Kind::Partial, Kind::Erc20, Kind::Native, Kind::Late, Kind::Native];

/// How long a late invoice lives before it is paid, seconds.
const LATE_EXPIRY_S: u64 = 2;

impl Kind {
    /// The webhook event a settled payment of this kind must produce.
    pub fn expected_event(self) -> &'static str {
        match self {
            Kind::Native | Kind::Erc20 => "invoice.paid",
            Kind::Partial => "invoice.underpaid",
            Kind::Late => "invoice.paid_late",
        }
    }
}

/// One paid invoice.
#[derive(Debug, Clone, Serialize)]
pub struct Payment {
    /// Invoice id.
    pub invoice_id: String,
    /// Kind.
    pub kind: Kind,
    /// Node whose API created it.
    pub created_on: String,
    /// The payment contract call's transaction (the one that emits the payment log).
    pub tx_hash: B256,
    /// Earlier blocks that held the payment before a reorg dropped them (the wallet rebroadcast
    /// it since, with the same hash).
    pub dropped_blocks: Vec<u64>,
    /// Amount paid, base units.
    pub amount: U256,
    /// When the payer saw the payment included, unix ms.
    pub included_at_ms: u64,
    /// Its block.
    pub block: u64,
}

/// Load shape.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Invoices to create and pay.
    pub invoices: usize,
    /// Invoices per second.
    pub rate: f64,
}

/// How far the load is, for the fault to wait on.
#[derive(Debug, Default)]
pub struct Progress {
    /// Payments on chain so far.
    pub made: AtomicUsize,
    /// Every invoice has been paid or has failed.
    pub done: AtomicBool,
}

/// What the load did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Payments on chain.
    pub payments: Vec<Payment>,
    /// Invoices that could not be created or paid, with why (the drill then judged fewer
    /// payments than asked, which fails it).
    pub failures: Vec<String>,
}

/// Runs the load.
pub async fn run(ctl: &Control, payer: &Payer, opts: LoadOptions, progress: Arc<Progress>) -> LoadOutcome {
    let out = Arc::new(Mutex::new(LoadOutcome::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / opts.rate.clamp(0.01, 1000.0));
    let mut tick = tokio::time::interval(period);
    for k in 0..opts.invoices {
        tick.tick().await;
        let kind = MIX[k % MIX.len()];
        let (ctl, payer, out, progress) = (ctl.clone(), payer.clone(), out.clone(), progress.clone());
        tasks.spawn(async move {
            match one(&ctl, &payer, k, kind).await {
                Ok(p) => {
                    progress.made.fetch_add(1, Ordering::Relaxed);
                    out.lock().await.payments.push(p);
                }
                Err(e) => {
                    eprintln!("  invoice {k} ({kind:?}) not paid: {e:#}");
                    out.lock().await.failures.push(format!("invoice {k} ({kind:?}) not paid: {e:#}"));
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    progress.done.store(true, Ordering::Relaxed);
    let mut outcome = std::mem::take(&mut *out.lock().await);
    outcome.payments.sort_by_key(|p| p.included_at_ms);
    outcome
}

async fn one(ctl: &Control, payer: &Payer, k: usize, kind: Kind) -> Result<Payment> {
    let amount = U256::from(match kind {
        Kind::Erc20 => 10u128.pow(18),
        _ => 10u128.pow(15),
    });
    let token = if kind == Kind::Erc20 { format!("{:#x}", ctl.m.contracts.token) } else { "native".into() };
    let mut body = json!({ "amount": amount.to_string(), "token": token, "metadata": { "drill": k } });
    if kind == Kind::Late {
        body["expires_in"] = LATE_EXPIRY_S.into();
    }
    body["chain_id"] = ctl.chain_id.or_else(|| ctl.m.chains.first().map(|c| c.chain_id)).unwrap_or_default().into();
    let (created, node) = create(ctl, k, &body).await?;
    let mut transactions = Vec::new();
    let mut paid = amount;
    for t in created["payment_instructions"]["transactions"].as_array().ok_or_else(|| eyre!("no instructions"))? {
        let field = |f: &str| t[f].as_str().ok_or_else(|| eyre!("instruction without {f}"));
        let to: Address = field("to")?.parse()?;
        let mut value = U256::from_str_radix(field("value")?, 10)?;
        if kind == Kind::Partial {
            value /= U256::from(2);
            paid = value;
        }
        let data: Bytes = field("data")?.parse()?;
        transactions.push(TransactionRequest::default().with_to(to).with_value(value).with_input(data));
    }
    if kind == Kind::Late {
        let expires_at = created["expires_at"].as_u64().ok_or_else(|| eyre!("late invoice without expires_at"))?;
        wait_chain_time_past(ctl, expires_at).await?;
    }
    let (tx_hash, block, included_at_ms) = payer.pay(transactions).await?;
    Ok(Payment {
        invoice_id: created["id"].as_str().unwrap_or_default().to_string(),
        kind,
        created_on: node,
        tx_hash,
        dropped_blocks: Vec::new(),
        amount: paid,
        included_at_ms,
        block,
    })
}

/// Waits until the chain's newest block is stamped after `t` (the chain's clock decides whether a
/// payment is late, and it may lag the wall clock).
async fn wait_chain_time_past(ctl: &Control, t: u64) -> Result<()> {
    for _ in 0..600 {
        let head = ctl.chain.get_block_by_number(BlockNumberOrTag::Latest).await?;
        if head.is_some_and(|b| b.header.timestamp > t) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the chain's clock did not pass {t} within 2 minutes")
}

/// Creates the invoice on node `k % n`, or on the next node that answers; while none does (every
/// node restarting), tries again for up to a minute, as a merchant's checkout would.
async fn create(ctl: &Control, k: usize, body: &Value) -> Result<(Value, String)> {
    let mut last = String::new();
    for attempt in 0..60 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(created) = create_once(ctl, k, body, &mut last).await? {
            return Ok(created);
        }
    }
    bail!("no node created the invoice within a minute (last: {last})")
}

async fn create_once(ctl: &Control, k: usize, body: &Value, last: &mut String) -> Result<Option<(Value, String)>> {
    for step in 0..ctl.n() {
        let node = &ctl.m.nodes[(k + step) % ctl.n()];
        let resp = ctl
            .merchant_request(reqwest::Method::POST, &format!("{}/v1/invoices", node.api_url), Some(body))?
            .send()
            .await;
        match resp {
            Ok(r) if r.status().as_u16() == 201 => return Ok(Some((r.json().await?, node.name.clone()))),
            Ok(r) if r.status().is_client_error() => {
                bail!("{}: HTTP {} {}", node.name, r.status(), r.text().await.unwrap_or_default())
            }
            Ok(r) => *last = format!("{}: HTTP {}", node.name, r.status()),
            Err(e) => *last = format!("{}: {e}", node.name),
        }
    }
    Ok(None)
}

/// Waits until every payment is on chain again after the reorgs (the payer's wallet
/// rebroadcasts what they dropped, with the same hash) and records where it landed; returns how
/// many moved to another block. Latency still counts from the first inclusion.
pub async fn reincluded(payer: &Payer, payments: &mut [Payment]) -> Result<usize> {
    let mut moved = 0;
    for p in payments.iter_mut() {
        let (block, _) = payer.included(p.tx_hash).await?;
        if block != p.block {
            p.dropped_blocks.push(p.block);
            p.block = block;
            moved += 1;
        }
    }
    Ok(moved)
}
