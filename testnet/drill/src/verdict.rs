//! The verdict of a drill: for every payment made, was it settled exactly once on chain, was the
//! merchant told (a verified webhook with the right event, amount and a receipt that passes every
//! off-chain and on-chain check), and how long it took. Judged from outside the nodes: the
//! chain, the receiver's JSON-lines file and the merchant API.

use crate::control::Control;
use crate::load::Payment;
use crate::stats::Percentiles;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use eyre::Result;
use serde::Serialize;
use serde_json::Value;
use settleproof_consensus::receipt::Receipt;
use settleproof_contracts::Settlement;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// One webhook delivery as the demo receiver logged it.
#[derive(Debug, Clone)]
struct Delivery {
    webhook_id: String,
    verified: bool,
    body: Value,
    received_at_ms: u64,
}

/// What a drill proved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Payments made (included on chain at the end).
    pub payments: usize,
    /// Payments whose round was settled once on chain, with a receipt that verifies.
    pub settled_once: usize,
    /// Payments the merchant was told about with a verified, correct webhook.
    pub notified: usize,
    /// Distinct `webhook-id`s of those notifications.
    pub webhook_ids: usize,
    /// Deliveries of those ids in all (at least once: may exceed `webhook_ids`).
    pub deliveries: usize,
    /// Deliveries of an id already delivered (allowed; receivers deduplicate by id).
    pub duplicates: usize,
    /// Payments not settled or not notified by the deadline, with the reason.
    pub lost: Vec<String>,
    /// Anything incorrect: bad signature, wrong event or amount, a failing receipt check, two
    /// events for one payment, a round settled twice.
    pub wrong: Vec<String>,
    /// Inclusion of the payment (as the payer saw it) to the first verified webhook.
    pub notify_latency_ms: Option<Percentiles>,
    /// Events whose content is not what the chain and the merchant's invoice say (each is also
    /// in `wrong`): a wrong type or amount, another invoice, or an invoice the merchant never
    /// created.
    pub false_webhooks: usize,
    /// Changes the merchant did not sign that a node took (each is also in `wrong`): invoices
    /// and webhook endpoints in its name it never signed.
    pub impersonations: usize,
}

impl Verdict {
    /// Nothing lost and nothing wrong.
    pub fn pass(&self) -> bool {
        self.lost.is_empty() && self.wrong.is_empty()
    }

    /// Both verdicts in one (of two chains' payments); the latency stays `self`'s.
    pub fn and(mut self, other: Verdict) -> Verdict {
        self.payments += other.payments;
        self.settled_once += other.settled_once;
        self.notified += other.notified;
        self.webhook_ids += other.webhook_ids;
        self.deliveries += other.deliveries;
        self.duplicates += other.duplicates;
        self.false_webhooks += other.false_webhooks;
        self.impersonations += other.impersonations;
        self.lost.extend(other.lost);
        self.wrong.extend(other.wrong);
        self
    }
}

fn read_deliveries(path: &std::path::Path) -> Vec<Delivery> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Delivery {
            webhook_id: v["webhook_id"].as_str().unwrap_or_default().to_string(),
            verified: v["verified"].as_bool().unwrap_or(false),
            received_at_ms: v["received_at_ms"].as_u64().unwrap_or_default(),
            body: v["body"].clone(),
        })
        .collect()
}

/// An event about a settled payment (`invoice.paid` and the like, or the bare
/// `payment.settled` a node sends when it does not know the invoice), as opposed to
/// `invoice.expired`, `payment.reverted` and `test`.
fn is_settlement_event(d: &Delivery) -> bool {
    d.body["type"]
        .as_str()
        .is_some_and(|t| (t.starts_with("invoice.") && t != "invoice.expired") || t == "payment.settled")
}

/// How many `Settled` events each round has on chain.
async fn settled_rounds(ctl: &Control) -> Result<BTreeMap<u64, usize>> {
    let filter = Filter::new()
        .address(ctl.m.contracts.settlement)
        .event_signature(Settlement::Settled::SIGNATURE_HASH)
        .from_block(0);
    let mut out = BTreeMap::new();
    for log in ctl.chain.get_logs(&filter).await? {
        if let Ok(ev) = log.log_decode::<Settlement::Settled>() {
            *out.entry(ev.inner.data.round).or_default() += 1;
        }
    }
    Ok(out)
}

/// How long to keep watching after everything passed, for deliveries of the other nodes (they
/// deliver a failover delay after the submitter unless its acknowledgement reaches them).
const GRACE: Duration = Duration::from_secs(8);

/// Judges `payments`, waiting up to `within` for the last ones to settle and be notified, then
/// [`GRACE`] more for late deliveries. A read that fails (RPC, file) is retried until the
/// deadline and reported as wrong only if it keeps failing.
pub async fn judge(ctl: &Control, payments: &[Payment], within: Duration, since_ms: u64) -> Verdict {
    let deadline = Instant::now() + within;
    let mut checked = HashMap::new();
    let mut passed_at: Option<Instant> = None;
    loop {
        let v = match evaluate(ctl, payments, &mut checked, since_ms).await {
            Ok(v) => v,
            Err(e) if Instant::now() > deadline => {
                return Verdict { wrong: vec![format!("cannot judge: {e:#}")], ..Verdict::default() };
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if v.pass() {
            let since = *passed_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= GRACE {
                return v;
            }
        } else if Instant::now() > deadline || passed_at.is_some() {
            return v;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every check of a receipt, off chain and on chain; the failed ones.
async fn receipt_failures(ctl: &Control, receipt: &Receipt) -> Vec<String> {
    let mut checks = receipt.verify_offchain();
    checks.extend(settleproof_node::receipt::verify_onchain(&ctl.chain, receipt, ctl.m.contracts.settlement).await);
    checks.iter().filter(|c| !c.ok).map(|c| format!("{} ({})", c.name, c.detail)).collect()
}

async fn evaluate(
    ctl: &Control,
    payments: &[Payment],
    checked: &mut HashMap<String, Vec<String>>,
    since_ms: u64,
) -> Result<Verdict> {
    let deliveries = read_deliveries(&ctl.m.receiver()?.deliveries);
    let rounds = settled_rounds(ctl).await?;
    let mut by_tx: HashMap<String, Vec<&Delivery>> = HashMap::new();
    for d in deliveries.iter().filter(|d| is_settlement_event(d)) {
        let tx = d.body["data"]["payment"]["tx_hash"].as_str().unwrap_or_default().to_lowercase();
        by_tx.entry(tx).or_default().push(d);
    }
    let reverted: HashSet<&str> = deliveries
        .iter()
        .filter(|d| d.body["type"] == "payment.reverted")
        .filter_map(|d| d.body["data"]["reverted_webhook_id"].as_str())
        .collect();
    let mut v = Verdict { payments: payments.len(), ..Verdict::default() };
    for (round, count) in &rounds {
        if *count > 1 {
            v.wrong.push(format!("round {round} settled {count} times on chain"));
        }
    }
    let mut latencies = Vec::new();
    for p in payments {
        // A payment is announced in the block it finally landed in: an announcement of a block
        // a reorg dropped must have been followed by payment.reverted.
        for d in by_tx.get(&format!("{:#x}", p.tx_hash)).into_iter().flatten() {
            let block = d.body["data"]["payment"]["block_number"].as_u64();
            if block != Some(p.block) && !reverted.contains(d.webhook_id.as_str()) {
                v.wrong.push(format!(
                    "invoice {}: webhook {} announces the payment in block {block:?}, but it is in block {}, with no payment.reverted",
                    p.invoice_id, d.webhook_id, p.block
                ));
            }
        }
        let ds = by_tx.get(&format!("{:#x}", p.tx_hash)).cloned().unwrap_or_default();
        let ids: HashSet<&str> = ds.iter().map(|d| d.webhook_id.as_str()).collect();
        if ids.len() > 1 {
            v.wrong.push(format!("invoice {}: {} different events for one payment", p.invoice_id, ids.len()));
        }
        v.webhook_ids += ids.len();
        v.deliveries += ds.len();
        v.duplicates += ds.len().saturating_sub(ids.len());
        for d in &ds {
            if let Some(problem) = check_delivery(p, d) {
                v.false_webhooks += 1;
                v.wrong.push(format!("invoice {}: webhook {}: {problem}", p.invoice_id, d.webhook_id));
            }
        }
        let Some(first) = ds.iter().filter(|d| d.verified).min_by_key(|d| d.received_at_ms) else {
            v.lost.push(format!("invoice {} ({:?}): no webhook yet", p.invoice_id, p.kind));
            continue;
        };
        // Every distinct receipt delivered for the payment passes every check (each is checked
        // once per drill).
        let mut settled_once = true;
        for d in ds.iter().filter(|d| d.verified) {
            let key = d.body["data"]["receipt"].to_string();
            let Ok(receipt) = serde_json::from_value::<Receipt>(d.body["data"]["receipt"].clone()) else {
                v.wrong.push(format!("invoice {}: webhook {} without a readable receipt", p.invoice_id, d.webhook_id));
                settled_once = false;
                continue;
            };
            if !checked.contains_key(&key) {
                let failed = receipt_failures(ctl, &receipt).await;
                checked.insert(key.clone(), failed);
            }
            if let Some(failed) = checked.get(&key).filter(|f| !f.is_empty()) {
                v.wrong.push(format!("invoice {}: receipt check failed: {}", p.invoice_id, failed.join(", ")));
                settled_once = false;
            }
            if rounds.get(&receipt.batch.round) != Some(&1) {
                v.lost.push(format!(
                    "invoice {}: notified, but round {} has {} Settled events on chain",
                    p.invoice_id,
                    receipt.batch.round,
                    rounds.get(&receipt.batch.round).copied().unwrap_or(0)
                ));
                settled_once = false;
            }
        }
        if settled_once {
            v.settled_once += 1;
        }
        v.notified += 1;
        latencies.push(first.received_at_ms.saturating_sub(p.included_at_ms));
    }
    v.notify_latency_ms = Percentiles::of(&mut latencies);
    // Events of this drill about invoices the merchant never created (a ghost an operator
    // invented): a merchant who matches events to its own invoices drops them, but none may
    // be sent.
    let ours: HashSet<&str> = payments.iter().map(|p| p.invoice_id.as_str()).collect();
    let mut strangers: HashSet<String> = HashSet::new();
    for d in deliveries.iter().filter(|d| is_settlement_event(d) && d.received_at_ms >= since_ms) {
        let id = d.body["data"]["invoice"]["id"].as_str().unwrap_or_default().to_string();
        if !ours.contains(id.as_str()) {
            strangers.insert(id);
        }
    }
    for id in strangers {
        let r = ctl
            .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices/{id}", ctl.m.nodes[0].api_url), None)?
            .send()
            .await?;
        if r.status().as_u16() == 404 {
            v.false_webhooks += 1;
            v.wrong.push(format!("a webhook announces invoice {id}, which the merchant never created"));
        }
    }
    Ok(v)
}

/// What is wrong with one delivery about `p`, if anything.
fn check_delivery(p: &Payment, d: &Delivery) -> Option<String> {
    if !d.verified {
        return Some("signature does not verify".into());
    }
    let event = d.body["type"].as_str().unwrap_or_default();
    if event != p.kind.expected_event() {
        return Some(format!("event {event}, expected {}", p.kind.expected_event()));
    }
    let amount = d.body["data"]["payment"]["amount"].as_str().unwrap_or_default();
    if amount != p.amount.to_string() {
        return Some(format!("amount {amount}, paid {}", p.amount));
    }
    if d.body["data"]["invoice"]["id"].as_str() != Some(p.invoice_id.as_str()) {
        return Some("names another invoice".into());
    }
    None
}

/// Invoices nobody paid (targets of forged logs) must show no payment on any node and must
/// never be announced to the merchant; returns what is wrong.
pub async fn unpaid_stay_unpaid(ctl: &Control, invoices: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    let deliveries = ctl.m.receiver().map(|r| read_deliveries(&r.deliveries)).unwrap_or_default();
    for id in invoices {
        if deliveries.iter().any(|d| is_settlement_event(d) && d.body["data"]["invoice"]["id"] == id.as_str()) {
            wrong.push(format!("unpaid invoice {id}: the merchant was told it was paid"));
        }
        for node in &ctl.m.nodes {
            let url = format!("{}/v1/invoices/{id}", node.api_url);
            let Ok(r) = ctl.merchant_request(reqwest::Method::GET, &url, None) else { continue };
            let Ok(resp) = r.send().await else { continue };
            let Ok(v) = resp.json::<Value>().await else { continue };
            if v["amount_paid"].as_str().is_some_and(|a| a != "0") {
                wrong.push(format!("unpaid invoice {id}: {} shows {} paid", node.name, v["amount_paid"]));
            }
        }
    }
    wrong
}

/// Each node that holds one of `invoices` or webhook endpoints (`we_…`), which the merchant
/// never signed, as the merchant's own reads find it; and each it could not ask.
pub async fn never_held(ctl: &Control, invoices: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut held, mut unchecked) = (Vec::new(), Vec::new());
    for id in invoices {
        // Endpoint ids start `we_`; invoice ids are hashes.
        let (path, what) = if id.starts_with("we_") {
            (format!("/v1/webhook-endpoints/{id}"), "webhook endpoint")
        } else {
            (format!("/v1/invoices/{id}"), "invoice")
        };
        for node in &ctl.m.nodes {
            let url = format!("{}{path}", node.api_url);
            let sent = match ctl.merchant_request(reqwest::Method::GET, &url, None) {
                Ok(r) => r.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(200) => held.push(format!("{} holds {what} {id}, which the merchant never signed", node.name)),
                Ok(404) => {}
                // A node that cannot say is not counted as one that does not hold it.
                other => unchecked
                    .push(format!("{}: whether it holds {what} {id} could not be checked ({other:?})", node.name)),
            }
        }
    }
    (held, unchecked)
}
