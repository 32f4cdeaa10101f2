//! The delivery worker: sends due outbox events, signed, and records every attempt. Failed
//! attempts are retried with exponential backoff and jitter; state lives in the store, so
//! retries survive restarts.

use super::signature;
use crate::store::{OutboxEvent, Store};
use crate::time::{now_ms, now_s};
use rand::Rng;
use settleproof_config::{MerchantConfig, WebhookSection};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// Sends webhook events from the outbox.
#[derive(Debug, Clone)]
pub struct Deliverer {
    store: Store,
    merchants: Arc<HashMap<String, MerchantConfig>>,
    client: reqwest::Client,
    settings: WebhookSection,
    wake: Arc<Notify>,
}

impl Deliverer {
    /// A worker for `merchants`; `wake` makes it look at the outbox at once.
    pub fn new(
        store: Store,
        merchants: &[MerchantConfig],
        settings: WebhookSection,
        wake: Arc<Notify>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(Duration::from_millis(settings.timeout_ms)).build()?;
        let merchants = Arc::new(merchants.iter().map(|m| (m.id.clone(), m.clone())).collect());
        Ok(Self { store, merchants, client, settings, wake })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.store.due_events(now_ms(), 64) {
                Ok(due) => {
                    for event in due {
                        self.attempt(event).await;
                    }
                }
                Err(e) => warn!(error = %e, "cannot read the webhook outbox"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn attempt(&self, event: OutboxEvent) {
        let Some(merchant) = self.merchants.get(&event.merchant_id) else {
            warn!(webhook_id = %event.id, merchant = %event.merchant_id, "merchant no longer configured; event left pending");
            return;
        };
        let ts = now_s();
        let signature = match signature::sign(merchant.webhook_secret.expose(), &event.id, ts, event.body.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                warn!(merchant = %merchant.id, error = %e, "cannot sign webhook");
                return;
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
        let latency_ms = started.elapsed().as_millis();
        let (outcome, delivered) = match result {
            Ok(resp) => (resp.status().as_u16().to_string(), resp.status().is_success()),
            Err(e) => (format!("error: {}", if e.is_timeout() { "timeout".to_string() } else { e.to_string() }), false),
        };
        let attempt = event.attempts.saturating_add(1);
        let next = (!delivered).then(|| now_ms().saturating_add(self.backoff_ms(attempt)));
        metrics::counter!("webhook_deliveries_total", "outcome" => if delivered { "delivered" } else { "failed" })
            .increment(1);
        if delivered {
            info!(webhook_id = %event.id, merchant = %merchant.id, event_type = %event.event_type, attempt, latency_ms, "webhook delivered");
        } else {
            warn!(webhook_id = %event.id, merchant = %merchant.id, attempt, latency_ms, outcome = %outcome, "webhook attempt failed");
        }
        if let Err(e) = self.store.record_attempt(&event.id, outcome, now_ms(), next) {
            warn!(webhook_id = %event.id, error = %e, "cannot record webhook attempt");
        }
    }

    /// Exponential backoff from 1 s, doubled per attempt, capped, with ±20 % jitter.
    fn backoff_ms(&self, attempt: u32) -> u64 {
        let base = 1000u64.saturating_mul(1u64 << attempt.min(20)).min(self.settings.max_backoff_ms);
        let jitter = base / 5;
        base - jitter + rand::thread_rng().gen_range(0..=jitter.saturating_mul(2))
    }
}
