//! The delivery worker: sends due outbox events, signed, in sequence per invoice, and records
//! every attempt with its status, latency and the start of the answer. What follows an attempt
//! is [`super::retry::decide`]'s call: delivered (and acknowledged to the other operators),
//! retried at the schedule's next delay (with ±10 % jitter), dead-lettered, or the merchant's
//! endpoint disabled. State lives in the store, so retries survive restarts.

use super::retry::{self, Decision};
use super::signature;
use crate::gossip::{self, DeliveryAck};
use crate::store::{Attempt, AttemptEffect, EndpointState, OutboxEvent, Store};
use crate::time::{now_ms, now_s};
use rand::Rng;
use settleproof_config::{MerchantConfig, WebhookSection};
use settleproof_consensus::RoundSchedule;
use settleproof_p2p::NetworkHandle;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// Longest answer excerpt kept per attempt.
const EXCERPT: usize = 256;

/// Sends webhook events from the outbox.
#[derive(Debug, Clone)]
pub struct Deliverer {
    store: Store,
    merchants: Arc<HashMap<String, MerchantConfig>>,
    client: reqwest::Client,
    settings: WebhookSection,
    wake: Arc<Notify>,
    node: String,
    net: Option<NetworkHandle>,
    schedule: RoundSchedule,
    completion: Option<Arc<Completion>>,
}

/// What a node needs to complete a bare `payment.settled` event before delivering it: the
/// invoice may have reached it since the settlement (a partition healed), or a peer has it.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Where receipts point.
    pub ctx: crate::receipt::ReceiptContext,
    /// What fetched invoices are checked against.
    pub scope: gossip::InvoiceScope,
    /// The other operators, asked for the invoice.
    pub peers: Vec<settleproof_p2p::PeerId>,
}

impl Deliverer {
    /// A worker for `merchants`; `wake` makes it look at the outbox at once; deliveries are
    /// acknowledged on `net` so other operators do not deliver them again.
    pub fn new(
        store: Store,
        merchants: &[MerchantConfig],
        settings: WebhookSection,
        wake: Arc<Notify>,
        node: String,
        net: Option<NetworkHandle>,
        schedule: RoundSchedule,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(Duration::from_millis(settings.timeout_ms)).build()?;
        let merchants = Arc::new(merchants.iter().map(|m| (m.id.clone(), m.clone())).collect());
        Ok(Self { store, merchants, client, settings, wake, node, net, schedule, completion: None })
    }

    /// Completes bare `payment.settled` events with their invoice before delivery.
    pub fn with_completion(mut self, completion: Completion) -> Self {
        self.completion = Some(Arc::new(completion));
        self
    }

    /// A bare `payment.settled` event whose invoice this node now knows, or can fetch from a
    /// peer (each copy checked against its id), rendered again as the invoice's own event with
    /// a receipt; the same `webhook-id`. Anything else as it is.
    async fn completed(&self, event: &OutboxEvent) -> OutboxEvent {
        let (Some(c), Some(invoice), Some(net)) = (&self.completion, event.invoice_id, &self.net) else {
            return event.clone();
        };
        if event.event_type != "payment.settled" {
            return event.clone();
        }
        if matches!(self.store.invoice(invoice), Ok(None)) {
            let wanted = std::collections::BTreeSet::from([invoice]);
            crate::rounds::invoice_fetch::fetch_invoices(net, &c.peers, &self.store, &c.scope, &wanted).await;
        }
        self.rerendered(c, event).unwrap_or_else(|| event.clone())
    }

    fn rerendered(&self, c: &Completion, event: &OutboxEvent) -> Option<OutboxEvent> {
        let invoice = event.invoice_id?;
        self.store.invoice(invoice).ok()??;
        let leaf = self
            .store
            .payments_of_invoice(invoice)
            .ok()?
            .into_iter()
            .map(|r| r.leaf)
            .find(|l| super::payload::webhook_id(l.invoice_id, l.tx_hash, l.log_index) == event.id)?;
        let record = self.store.settlement(self.schedule.round_of(leaf.block_number)?).ok()??;
        let fresh =
            super::payload::settlement_events(&self.store, &c.ctx, &c.scope.merchants, &[leaf], &record, now_s())
                .ok()?
                .into_iter()
                .find(|e| e.id == event.id && e.event_type != "payment.settled")?;
        if !self.store.rerender_event(&event.id, &fresh.event_type, &fresh.body).ok()? {
            return None;
        }
        info!(webhook_id = %event.id, event_type = %fresh.event_type, "bare payment.settled completed with its invoice before delivery");
        Some(OutboxEvent { event_type: fresh.event_type, body: fresh.body, ..event.clone() })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.expire_invoices();
            let paused: Vec<String> =
                self.merchants.keys().filter(|m| self.store.endpoint(m).is_ok_and(|e| e.disabled)).cloned().collect();
            match self.store.due_events(now_ms(), 64, &paused) {
                Ok(due) => {
                    let mut held = HashSet::new();
                    for event in due {
                        if event.invoice_id.is_some_and(|i| held.contains(&i)) {
                            continue;
                        }
                        if !self.attempt(&event).await
                            && let Some(i) = event.invoice_id
                        {
                            held.insert(i);
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot read the webhook outbox"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Queues `invoice.expired` for invoices whose expiry passed `expired_event_delay_s` ago
    /// without full payment on time (the delay lets payments made before the expiry confirm).
    fn expire_invoices(&self) {
        let now = now_s();
        let Ok(due) = self.store.due_expiries(now.saturating_sub(self.settings.expired_event_delay_s), 64) else {
            return;
        };
        for (at, id) in due {
            if let Ok(Some(inv)) = self.store.invoice(id)
                && let Ok(view) = crate::invoice_view::invoice_view(&self.store, &self.schedule, &inv, now)
                && view.status == crate::invoice_view::InvoiceStatus::Expired
            {
                let event = super::payload::expired_event(&view, now);
                info!(invoice_id = %id, webhook_id = %event.id, "invoice expired");
                if let Err(e) = self.store.enqueue_events(&[event], now_ms()) {
                    warn!(invoice_id = %id, error = %e, "cannot queue invoice.expired");
                    continue;
                }
            }
            let _ = self.store.clear_expiry(at, id);
        }
    }

    /// One attempt; returns whether the event was delivered.
    async fn attempt(&self, event: &OutboxEvent) -> bool {
        let event = &self.completed(event).await;
        let Some(merchant) = self.merchants.get(&event.merchant_id) else {
            warn!(webhook_id = %event.id, merchant = %event.merchant_id, "merchant no longer configured; event left pending");
            return false;
        };
        let ts = now_s();
        let signature = match signature::sign(merchant.webhook_secret.expose(), &event.id, ts, event.body.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                warn!(merchant = %merchant.id, error = %e, "cannot sign webhook");
                return false;
            }
        };
        let started = std::time::Instant::now();
        let result = self
            .client
            .post(&merchant.webhook_url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(event.body.clone())
            .send()
            .await;
        let (status, retry_after, excerpt, error) = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let ra = retry::retry_after(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()));
                let text = resp.text().await.unwrap_or_default();
                (Some(status), ra, text.chars().take(EXCERPT).collect::<String>(), None)
            }
            Err(e) => {
                (None, None, String::new(), Some(if e.is_timeout() { "timeout".to_string() } else { e.to_string() }))
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let attempt_no = event.schedule_index.saturating_add(1);
        let decision = retry::decide(status, retry_after, attempt_no, &self.settings.retry_schedule_s);
        let now = now_ms();
        let (effect, outcome) = match &decision {
            Decision::Delivered => (AttemptEffect::Delivered, "delivered".to_string()),
            Decision::RetryIn(ms) => {
                let jitter = ms / 10;
                let delay = ms - jitter + rand::thread_rng().gen_range(0..=jitter * 2);
                (AttemptEffect::RetryAt(now + delay), error.clone().unwrap_or_else(|| "retry".into()))
            }
            Decision::Dead(reason) => (AttemptEffect::Dead, reason.clone()),
            Decision::DisableEndpoint(reason) => {
                (AttemptEffect::DisableEndpoint(reason.clone()), "endpoint_disabled".into())
            }
        };
        let attempt = Attempt {
            n: 0,
            at_ms: now,
            status,
            outcome: outcome.clone(),
            latency_ms,
            excerpt,
            node: self.node.clone(),
        };
        if let Err(e) = self.store.record_attempt(&event.id, attempt, &effect) {
            warn!(webhook_id = %event.id, error = %e, "cannot record webhook attempt");
        }
        self.update_endpoint(&merchant.id, &decision, now);
        let label = match &decision {
            Decision::Delivered => "delivered",
            Decision::RetryIn(_) => "retry",
            Decision::Dead(_) => "dead",
            Decision::DisableEndpoint(_) => "endpoint_disabled",
        };
        metrics::counter!("webhook_deliveries_total", "outcome" => label).increment(1);
        match decision {
            Decision::Delivered => {
                info!(webhook_id = %event.id, merchant = %merchant.id, event_type = %event.event_type, attempt = attempt_no, latency_ms, "webhook delivered");
                if let Some(net) = &self.net {
                    let ack = DeliveryAck { webhook_id: event.id.clone(), delivered_at_ms: now };
                    let _ = net.publish(gossip::DELIVERIES, serde_json::to_vec(&ack).unwrap_or_default()).await;
                }
                true
            }
            Decision::Dead(reason) => {
                metrics::counter!("webhook_dlq_total").increment(1);
                warn!(webhook_id = %event.id, merchant = %merchant.id, attempt = attempt_no, status = ?status, reason = %reason, "webhook moved to the dead-letter queue");
                false
            }
            _ => {
                warn!(webhook_id = %event.id, merchant = %merchant.id, attempt = attempt_no, status = ?status, outcome = %outcome, latency_ms, "webhook attempt failed");
                false
            }
        }
    }

    /// Tracks how long the endpoint has been failing; disables it on 410 or after
    /// `disable_after_s` without a success.
    fn update_endpoint(&self, merchant: &str, decision: &Decision, now: u64) {
        let Ok(mut state) = self.store.endpoint(merchant) else { return };
        let before = state.clone();
        match decision {
            Decision::Delivered => state.failing_since_ms = None,
            Decision::DisableEndpoint(reason) => disable(&mut state, reason.clone(), now),
            Decision::RetryIn(_) | Decision::Dead(_) => {
                let since = *state.failing_since_ms.get_or_insert(now);
                if now.saturating_sub(since) >= self.settings.disable_after_s.saturating_mul(1000) {
                    disable(&mut state, format!("every delivery failed for {} s", (now - since) / 1000), now);
                }
            }
        }
        if state != before {
            if state.disabled && !before.disabled {
                warn!(merchant, reason = ?state.disabled_reason, "merchant webhook endpoint disabled; events wait until it is re-enabled");
            }
            let _ = self.store.set_endpoint(merchant, &state);
        }
    }
}

fn disable(state: &mut EndpointState, reason: String, now: u64) {
    state.disabled = true;
    state.disabled_reason = Some(reason);
    state.disabled_at_ms = Some(now);
}
