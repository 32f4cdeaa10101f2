//! The delivery worker: sends due outbox events, signed, in sequence per invoice and endpoint,
//! and records every attempt with its status, latency and the start of the answer. Each event
//! goes to the merchant's primary endpoint and, as deliveries of their own, to each of its own
//! endpoints whose filter takes it ([`super::targets`]). Deliveries to different endpoints run
//! concurrently, at most `max_in_flight` in all; a merchant's primary endpoint has
//! `max_in_flight_per_merchant` slots of its own and its own endpoints share as many again
//! ([`super::in_flight`]), so a slow or hostile endpoint never holds back the primary endpoint
//! nor another merchant. An answer is read
//! up to `max_response_bytes`; redirects are not followed (see [`crate::outbound`]). What follows
//! an attempt is [`super::retry::decide`]'s call: delivered (and acknowledged to the other
//! operators), retried at the schedule's next delay (with ±10 % jitter), dead-lettered, or the
//! endpoint disabled. State lives in the store, so retries survive restarts.

use super::completion::Completion;
use super::in_flight::{InFlight, endpoint_bound};
use super::retry::{self, Decision};
use super::signature;
use super::unknown_invoices::{UnknownInvoice, UnknownInvoices};
use crate::gossip::{self, DeliveryAck};
use crate::store::{Attempt, AttemptEffect, AttemptWriter, DueDelivery, EndpointState, OutboxEvent, Store, Take};
use crate::time::{now_ms, now_s};
use rand::Rng;
use settleproof_config::WebhookSection;
use settleproof_consensus::RoundSchedule;
use settleproof_p2p::NetworkHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// Longest answer excerpt kept per attempt.
const EXCERPT: usize = 256;

/// Sends webhook events from the outbox.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pub(super) store: Store,
    /// Records the attempts of this worker's deliveries in groups (`None`: its thread could not
    /// start, and each attempt is written alone).
    attempts: Option<AttemptWriter>,
    merchants: crate::merchants::Registry,
    client: reqwest::Client,
    settings: WebhookSection,
    wake: Arc<Notify>,
    node: String,
    pub(super) net: Option<NetworkHandle>,
    pub(super) schedule: RoundSchedule,
    chain_id: u64,
    pub(super) completion: Option<Arc<Completion>>,
    in_flight: Arc<std::sync::Mutex<InFlight>>,
    /// Deliveries made here and not yet acknowledged to the other operators.
    acks: Arc<std::sync::Mutex<Vec<DeliveryAck>>>,
    /// Also acknowledge each delivery in a message of its own (`p2p.single_messages`).
    single_acks: bool,
    /// Payments of invoices no operator knows: their rate per merchant and the invoices asked
    /// for lately in vain (shared by a node's chains).
    pub(super) unknown: UnknownInvoices,
}

/// How often the deliveries made here are acknowledged to the other operators, in one message
/// ([`gossip::DeliveryAcks`]) per period: at 300 deliveries a second, 10 messages instead of 300.
/// Far below the shortest failover delay (`webhooks.failover_delay_ms`, at least 1 s), so the
/// next operator in line hears it before its turn.
const ACK_PERIOD: Duration = Duration::from_millis(100);

impl Deliverer {
    /// A worker for `merchants`; `wake` makes it look at the outbox at once; deliveries are
    /// acknowledged on `net` so other operators do not deliver them again.
    #[allow(clippy::too_many_arguments)] // each is a distinct dependency; a struct would only rename them
    pub fn new(
        client: reqwest::Client,
        store: Store,
        merchants: crate::merchants::Registry,
        settings: WebhookSection,
        wake: Arc<Notify>,
        node: String,
        net: Option<NetworkHandle>,
        schedule: RoundSchedule,
        chain_id: u64,
    ) -> Self {
        let attempts = AttemptWriter::spawn(store.clone())
            .inspect_err(|e| warn!(error = %e, "no attempt writer thread: each webhook attempt is written alone"))
            .ok();
        Self {
            store,
            attempts,
            merchants,
            client,
            settings,
            wake,
            node,
            net,
            schedule,
            chain_id,
            completion: None,
            in_flight: Arc::default(),
            acks: Arc::default(),
            single_acks: false,
            unknown: UnknownInvoices::default(),
        }
    }

    /// Shares `other`'s in-flight limits (`webhooks.max_in_flight` and per merchant), so that the
    /// workers of a node's chains together stay within them.
    pub fn sharing_limits_with(mut self, other: &Deliverer) -> Self {
        self.in_flight = other.in_flight.clone();
        self.unknown = other.unknown.clone();
        self
    }

    /// Also acknowledges each delivery in a message of its own on [`gossip::DELIVERIES`], for
    /// nodes of the version before batched acknowledgements (`p2p.single_messages`).
    pub fn with_single_acks(mut self, single: bool) -> Self {
        self.single_acks = single;
        self
    }

    /// Completes bare `payment.settled` events with their invoice before delivery.
    pub fn with_completion(mut self, completion: Completion) -> Self {
        self.completion = Some(Arc::new(completion));
        self
    }

    /// Runs until `shutdown` turns true; deliveries under way then get the attempt timeout to
    /// finish (an attempt cut short is not recorded and is made again: at least once).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Acknowledges through the shutdown grace below too (deliveries finishing then are
        // acknowledged while the network still runs), then once more and stops.
        let acks = tokio::spawn(self.clone().acknowledge());
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            self.expire_invoices();
            self.queue_reversals();
            // Endpoints disabled, and those with every slot in use: their events must not fill
            // the batch read below and crowd out other endpoints.
            let mut paused = super::targets::paused(&self.merchants, &self.store);
            if let Ok(f) = self.in_flight.lock() {
                let bound = self.settings.max_in_flight_per_merchant;
                let full = |(k, n): (&String, &usize)| (*n >= endpoint_bound(k, bound)).then(|| k.clone());
                paused.extend(f.per_endpoint.iter().filter_map(full));
                // A merchant whose own endpoints hold their whole share: each of them (never
                // the primary endpoint).
                let routes = self.merchants.routes();
                for m in f.own_per_merchant.iter().filter(|(_, n)| **n >= bound).map(|(m, _)| m) {
                    paused.extend(routes.of(m).iter().map(crate::store::WebhookEndpoint::state_key));
                }
            }
            // The store hands out only the first pending event of each invoice, so one
            // invoice's events go out in order however many run at once. Each delivery it names
            // takes a slot as it is read (one under way or over a bound is passed over), and the
            // read stops once the free slots are taken.
            let (total, bound) = (self.settings.max_in_flight, self.settings.max_in_flight_per_merchant);
            // At most the free slots, and at most what the merchants' bounds leave: with every
            // merchant full the pass reads nothing, and one freed slot ends the read at the
            // delivery that takes it (each attempt that ends starts a pass).
            let (merchants, with_own) = (self.merchants.all().len(), self.merchants.routes().merchants());
            let free = self.in_flight.lock().map_or(0, |f| {
                self.settings.max_in_flight.saturating_sub(f.events.len()).min(f.room(merchants, with_own, bound))
            });
            let take =
                |d: &DueDelivery| self.in_flight.lock().map_or(Take::AllFull, |mut f| f.try_take(d, total, bound));
            match self.store.due_deliveries(now_ms(), free, &paused, take) {
                Ok(taken) => {
                    for event in taken {
                        let worker = self.clone();
                        tasks.spawn(async move {
                            // Released however the attempt ends, a panic included.
                            let _slot = Slot { worker: &worker, event: &event };
                            worker.attempt_if_still_due(&event.id).await;
                        });
                    }
                }
                Err(e) => warn!(error = %e, "cannot read the webhook outbox"),
            }
            metrics::gauge!("webhook_in_flight").set(tasks.len() as f64);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
            while tasks.try_join_next().is_some() {}
        }
        let grace = Duration::from_millis(self.settings.timeout_ms.saturating_add(1000));
        let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        acks.abort();
        self.publish_acks().await;
    }

    /// Acknowledges the deliveries made here every [`ACK_PERIOD`], until aborted.
    async fn acknowledge(self) {
        let mut tick = tokio::time::interval(ACK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.publish_acks().await;
        }
    }

    /// Publishes the acknowledgements gathered, [`gossip::DeliveryAcks::MAX_ACKS`] a message. One
    /// that cannot be published is lost: the others then deliver the event themselves, at their
    /// turn (at least once).
    async fn publish_acks(&self) {
        let Some(net) = &self.net else { return };
        let gathered = match self.acks.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(_) => return,
        };
        for chunk in gathered.chunks(gossip::DeliveryAcks::MAX_ACKS) {
            let batch = gossip::DeliveryAcks { sent_at_ms: now_ms(), acks: chunk.to_vec() };
            if let Err(e) = net.publish(gossip::DELIVERY_BATCHES, serde_json::to_vec(&batch).unwrap_or_default()).await
            {
                debug!(acks = chunk.len(), error = %e, "delivery acknowledgements not published");
            }
        }
    }

    /// Attempts delivery `id` unless it is no longer due (delivered, dead-lettered, or moved to
    /// a later attempt by a task that finished after the pass read it as due). Its slot is held,
    /// so no other task of this node attempts it meanwhile.
    async fn attempt_if_still_due(&self, id: &str) {
        match self.store.due_event(id, now_ms()) {
            // An endpoint disabled since the pass read it (a 410 just now) gets no more.
            Ok(Some(fresh))
                if fresh.delivered_at_ms.is_none()
                    && fresh.dead_at_ms.is_none()
                    && !self.store.endpoint(&fresh.endpoint_key()).is_ok_and(|s| s.disabled) =>
            {
                self.attempt(&fresh).await;
            }
            Ok(_) => {}
            Err(e) => warn!(webhook_id = %id, error = %e, "cannot read a webhook event"),
        }
    }

    /// Queues `payment.reverted` for the payments a reorg removed after the merchant was told
    /// of them (the watcher keeps them as reversals in the rewind's transaction).
    fn queue_reversals(&self) {
        match self.store.queue_reversals(|original, leaf| super::payload::reverted_event(original, leaf, now_s())) {
            Ok(0) => {}
            Ok(n) => info!(events = n, "payment.reverted queued for payments a reorg removed"),
            Err(e) => warn!(error = %e, "cannot queue payment.reverted"),
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
                && let Ok(view) =
                    crate::invoice_view::invoice_view(&self.store, &self.schedule, self.chain_id, &inv, now)
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
        let was_bare = event.event_type == "payment.settled";
        let event = &self.completed(event).await;
        let Some(merchant) = self.merchants.get(&event.merchant_id) else {
            warn!(webhook_id = %event.id, merchant = %event.merchant_id, "merchant no longer configured; event left pending, looked at again in a minute");
            self.postpone(event, "merchant_not_configured");
            return false;
        };
        let target = match super::targets::target(&self.merchants, &merchant, event) {
            super::targets::Resolved::Send(t) => t,
            super::targets::Resolved::Gone => {
                return self.end_without_sending(event, "endpoint_deleted", &AttemptEffect::Dead);
            }
            super::targets::Resolved::Unknown(e) => {
                warn!(webhook_id = %event.id, error = %e, "cannot read the webhook endpoint; looked at again in a minute");
                self.postpone(event, "endpoint_unreadable");
                return false;
            }
        };
        // A bare payment.settled queued for this endpoint, now rendered as its invoice's
        // event, may be one the endpoint does not take: it ends unsent, as every node that knew
        // the invoice never queued it.
        let rendered = was_bare && event.event_type != "payment.settled";
        if rendered && target.filter.as_ref().is_some_and(|f| !crate::store::takes(f, &event.event_type)) {
            return self.end_without_sending(event, "not_in_enabled_events", &AttemptEffect::Delivered);
        }
        // Still bare: no operator asked knows its invoice.
        match self.unknown_invoice(event, &merchant.id, target.filter.as_deref()) {
            UnknownInvoice::Send => {}
            UnknownInvoice::Wait(why, until_ms) => {
                self.postpone_until(event, why, until_ms);
                return false;
            }
            UnknownInvoice::End(why) => return self.end_without_sending(event, why, &AttemptEffect::Delivered),
        }
        if !self.settings.allow_private_targets
            && let Err(e) = crate::outbound::check_literal_target(&target.url)
        {
            warn!(webhook_id = %event.id, merchant = %merchant.id, error = %e, "webhook target refused");
            metrics::counter!("webhook_targets_refused_total").increment(1);
            self.postpone(event, "target_refused");
            return false;
        }
        let ts = now_s();
        // One signature per secret: during a rotation's overlap the replaced secret signs too,
        // so a receiver holding either verifies (Standard Webhooks: space-separated).
        let signed: Result<Vec<String>, _> = target
            .secrets
            .iter()
            .map(|s| signature::sign(s.expose(), event.webhook_id(), ts, event.body.as_bytes()))
            .collect();
        let signature = match signed.map(|s| s.join(" ")) {
            Ok(s) => s,
            Err(e) => {
                warn!(merchant = %merchant.id, error = %e, "cannot sign webhook");
                return false;
            }
        };
        let span = crate::trace_context::span("deliver", &event.id);
        span.record("attempt", event.schedule_index.saturating_add(1));
        let traceparent = crate::trace_context::traceparent(&span, &event.id);
        let started = std::time::Instant::now();
        let request = self
            .client
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", event.webhook_id())
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("traceparent", traceparent)
            .body(event.body.clone());
        let answer = async {
            match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = retry::retry_after(
                        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                        self.settings.max_retry_after_s,
                    );
                    let body = capped_body(resp, self.settings.max_response_bytes).await;
                    let excerpt = String::from_utf8_lossy(&body).chars().take(EXCERPT).collect::<String>();
                    (Some(status), ra, excerpt, None)
                }
                Err(e) => (None, None, String::new(), Some(transport_error(&e))),
            }
        };
        let (status, retry_after, excerpt, error) = tracing::Instrument::instrument(answer, span.clone()).await;
        span.record("status", status.unwrap_or_default());
        drop(span);
        let latency_ms = started.elapsed().as_millis() as u64;
        let attempt_no = event.schedule_index.saturating_add(1);
        let decision = retry::decide(status, retry_after, attempt_no, &self.settings.retry_schedule_s);
        let now = now_ms();
        let (effect, outcome) = match &decision {
            Decision::Delivered => (AttemptEffect::Delivered, "delivered".to_string()),
            Decision::RetryIn(ms) => {
                let jitter = ms / 10;
                let delay = ms
                    .saturating_sub(jitter)
                    .saturating_add(rand::thread_rng().gen_range(0..=jitter.saturating_mul(2)));
                (AttemptEffect::RetryAt(now.saturating_add(delay)), error.clone().unwrap_or_else(|| "retry".into()))
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
        let recorded = match &self.attempts {
            Some(w) => w.record(event, attempt, effect.clone()).await,
            None => self.store.record_attempt(event, attempt, &effect),
        };
        if let Err(e) = recorded {
            warn!(webhook_id = %event.id, error = %e, "cannot record webhook attempt");
        }
        self.update_endpoint(&target.state_key, &decision, now);
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
                // Acknowledged by delivery id (each endpoint's delivery is its own), with the
                // others gathered in this period.
                if self.net.is_some()
                    && let Ok(mut acks) = self.acks.lock()
                {
                    acks.push(DeliveryAck { webhook_id: event.id.clone(), delivered_at_ms: now });
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

    /// What becomes of `event` for an endpoint with `filter` (`None`: the primary endpoint)
    /// when it is a bare `payment.settled` whose invoice no operator this node asked knows.
    fn unknown_invoice(&self, event: &OutboxEvent, merchant: &str, filter: Option<&[String]>) -> UnknownInvoice {
        let unknown = event.event_type == "payment.settled"
            && event.invoice_id.is_some_and(|id| matches!(self.store.invoice(id), Ok(None)));
        if !unknown {
            return UnknownInvoice::Send;
        }
        let held_until = event.created_at_ms.saturating_add(self.settings.unknown_invoice_grace_s.saturating_mul(1000));
        self.unknown.decide(merchant, filter, held_until, now_ms())
    }

    /// Ends a delivery without an HTTP call, recording `why` with `effect`: dead-lettered for
    /// a deleted endpoint, done for an event its endpoint's filter does not take.
    fn end_without_sending(&self, event: &OutboxEvent, why: &str, effect: &AttemptEffect) -> bool {
        let attempt = Attempt {
            n: 0,
            at_ms: now_ms(),
            status: None,
            outcome: why.into(),
            latency_ms: 0,
            excerpt: String::new(),
            node: self.node.clone(),
        };
        if let Err(e) = self.store.record_attempt(event, attempt, effect) {
            warn!(webhook_id = %event.id, error = %e, outcome = why, "cannot end a delivery");
        }
        false
    }

    /// An event that could not be attempted is looked at again in a minute, without counting
    /// as a failed delivery.
    fn postpone(&self, event: &OutboxEvent, why: &str) {
        self.postpone_until(event, why, now_ms().saturating_add(60_000));
    }

    /// An event that could not be attempted is looked at again at `at_ms`, without counting as
    /// a failed delivery.
    fn postpone_until(&self, event: &OutboxEvent, why: &str, at_ms: u64) {
        let now = now_ms();
        let attempt = Attempt {
            n: 0,
            at_ms: now,
            status: None,
            outcome: why.to_string(),
            latency_ms: 0,
            excerpt: String::new(),
            node: self.node.clone(),
        };
        if let Err(e) = self.store.record_attempt(event, attempt, &AttemptEffect::RetryAt(at_ms)) {
            warn!(webhook_id = %event.id, error = %e, "cannot postpone a webhook event");
        }
    }

    /// Tracks how long the endpoint has been failing; disables it on 410 or after
    /// `disable_after_s` without a success. One transaction, so two attempts to the merchant
    /// finishing together cannot undo each other's change.
    fn update_endpoint(&self, key: &str, decision: &Decision, now: u64) {
        let disable_after_ms = self.settings.disable_after_s.saturating_mul(1000);
        let changed = self.store.update_endpoint(key, |state| match decision {
            Decision::Delivered => state.failing_since_ms = None,
            Decision::DisableEndpoint(reason) => disable(state, reason.clone(), now),
            Decision::RetryIn(_) | Decision::Dead(_) => {
                let since = *state.failing_since_ms.get_or_insert(now);
                if !state.disabled && now.saturating_sub(since) >= disable_after_ms {
                    disable(state, format!("every delivery failed for {} s", now.saturating_sub(since) / 1000), now);
                }
            }
        });
        if let Ok((before, after)) = changed
            && after.disabled
            && !before.disabled
        {
            warn!(endpoint = key, reason = ?after.disabled_reason, "merchant webhook endpoint disabled; events wait until it is re-enabled");
        }
    }
}

/// Holds a delivery slot; gives it back when dropped, however the attempt ended.
struct Slot<'a> {
    worker: &'a Deliverer,
    event: &'a DueDelivery,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.worker.in_flight.lock() {
            f.release(self.event);
        }
        self.worker.wake.notify_one();
    }
}

/// Reads at most `cap` bytes of the answer; the rest is left unread (the connection closes).
/// A body that fails midway counts as what was read: the status decides the outcome.
async fn capped_body(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    if body.len() >= cap {
        metrics::counter!("webhook_answers_truncated_total").increment(1);
    }
    body
}

/// A short reason for a failed attempt, without the URL.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    let mut text = if e.is_connect() { "connect error".to_string() } else { "request error".to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    crate::redact::scrub(&text)
}

fn disable(state: &mut EndpointState, reason: String, now: u64) {
    state.disabled = true;
    state.disabled_reason = Some(reason);
    state.disabled_at_ms = Some(now);
}
