//! A small merchant webhook receiver for the local testnet and the tests: verifies each
//! delivery's Standard Webhooks signature, keeps what it received (and appends it to a JSON-lines
//! file), and answers 204, or 400 when the signature does not verify.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Serialize;
use settleproof_node::time::{now_ms, now_s};
use settleproof_node::webhook::signature;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One delivery as received.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// `webhook-id` header.
    pub webhook_id: String,
    /// Whether the signature verified.
    pub verified: bool,
    /// Parsed body.
    pub body: serde_json::Value,
    /// Arrival time, unix ms.
    pub received_at_ms: u64,
    /// Status answered.
    pub answered: u16,
    /// The raw body and the three Standard Webhooks headers, for independent verification.
    pub raw: RawDelivery,
}

/// A delivery exactly as it arrived.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RawDelivery {
    /// Body text.
    pub body: String,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// `traceparent` (W3C trace context of the delivery).
    pub traceparent: String,
}

/// The receiver's shared state.
#[derive(Debug, Clone)]
pub struct Receiver {
    secret: String,
    log: Option<PathBuf>,
    /// Everything received so far.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// When non-zero, every delivery is answered with this status (to simulate an outage).
    fail_with: Arc<std::sync::atomic::AtomicU16>,
}

impl Receiver {
    /// A receiver checking signatures with `secret`, appending to `log` when given.
    pub fn new(secret: String, log: Option<PathBuf>) -> Self {
        Self { secret, log, received: Arc::default(), fail_with: Arc::default() }
    }

    /// Answers every delivery with `status` (e.g. 503) until called with `None`.
    pub fn set_failure(&self, status: Option<u16>) {
        self.fail_with.store(status.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// Copies of the deliveries received so far.
    pub fn snapshot(&self) -> Vec<Received> {
        self.since(0)
    }

    /// Copies of the deliveries received after the first `from` (for readers that poll).
    pub fn since(&self, from: usize) -> Vec<Received> {
        self.received.lock().map(|v| v.get(from..).map(<[Received]>::to_vec).unwrap_or_default()).unwrap_or_default()
    }

    /// The receiver's routes: `POST /webhooks`, `GET /events`.
    pub fn router(self) -> Router {
        Router::new().route("/webhooks", post(receive)).route("/events", get(events)).with_state(self)
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Binds `addr` and serves in a background task; returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(self.serve(listener));
        Ok(bound)
    }
}

async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let id = h("webhook-id");
    let verified =
        signature::verify(&rx.secret, &id, &h("webhook-timestamp"), &h("webhook-signature"), &body, now_s()).is_ok();
    let parsed = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let failing = rx.fail_with.load(std::sync::atomic::Ordering::Relaxed);
    let status = if failing != 0 {
        StatusCode::from_u16(failing).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    } else if verified {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    };
    let raw = RawDelivery {
        body: String::from_utf8_lossy(&body).into_owned(),
        id: id.clone(),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        traceparent: h("traceparent"),
    };
    let entry =
        Received { webhook_id: id, verified, body: parsed, received_at_ms: now_ms(), answered: status.as_u16(), raw };
    tracing::info!(webhook_id = %entry.webhook_id, verified, event_type = %entry.body["type"], "webhook received");
    if let Some(path) = &rx.log
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{}", serde_json::to_string(&entry).unwrap_or_default());
    }
    if let Ok(mut v) = rx.received.lock() {
        v.push(entry);
    }
    status
}

async fn events(State(rx): State<Receiver>) -> axum::Json<Vec<Received>> {
    axum::Json(rx.snapshot())
}
