//! The public HTTP API (axum). The router is a plain function of its state, so handlers are
//! tested with `oneshot` and no socket.

mod admin;
mod admin_peers;
pub mod auth;
mod error;
mod health;
mod invoices;
mod rate_limit;
mod request_id;
mod status;

pub use error::ApiError;
pub use rate_limit::RateLimiter;

use crate::chain::ChainClient;
use crate::chain::watcher::WatcherStatus;
use crate::replication::InvoiceReplicator;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use settleproof_config::MerchantConfig;
use settleproof_consensus::RoundSchedule;
use settleproof_p2p::NetworkHandle;
use std::sync::Arc;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Store.
    pub store: Store,
    /// Rounds, to tell which round settles a payment.
    pub schedule: RoundSchedule,
    /// Configured merchants.
    pub merchants: Arc<Vec<MerchantConfig>>,
    /// Chain id, for payment instructions.
    pub chain_id: u64,
    /// `InvoicePayments` address, for payment instructions.
    pub payments_contract: alloy::primitives::Address,
    /// This node's name.
    pub node_name: String,
    /// Replicates new invoices to the other operators; `None` in handler tests.
    pub replicator: Option<InvoiceReplicator>,
    /// Gossip, for the peer count of the readiness check; `None` in handler tests.
    pub net: Option<NetworkHandle>,
    /// Operators in the set.
    pub operators: usize,
    /// Signatures needed per round.
    pub threshold: usize,
    /// Chain client, for provider health; `None` in handler tests.
    pub chain: Option<ChainClient>,
    /// What the watcher last saw; `None` in handler tests.
    pub watcher: Option<Arc<WatcherStatus>>,
    /// `Settlement` address, for receipts.
    pub settlement_contract: alloy::primitives::Address,
    /// Bearer token of the admin API; `None`: admin API off.
    pub admin_token: Option<settleproof_config::Secret>,
    /// Wakes the webhook worker after a replay.
    pub webhook_wake: Option<Arc<tokio::sync::Notify>>,
    /// The safety switch; `None` in handler tests.
    pub halt: Option<crate::halt::Halt>,
    /// Balance below which the keeper hands its turns over, wei.
    pub min_balance_wei: u128,
    /// Per-merchant request budget.
    pub limiter: rate_limit::RateLimiter,
    /// Prometheus metrics.
    pub metrics: Option<PrometheusHandle>,
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/invoices", post(invoices::create).get(invoices::list))
        .route("/v1/invoices/{id}", get(invoices::get))
        .route("/v1/invoices/{id}/receipt", get(invoices::receipt))
        .route("/v1/webhooks/test", post(invoices::test_event))
        .route("/v1/merchant", get(invoices::merchant))
        .route("/admin/v1/deliveries", get(admin::deliveries))
        .route("/admin/v1/deliveries/replay", post(admin::replay_failed))
        .route("/admin/v1/deliveries/{id}/replay", post(admin::replay_one))
        .route("/admin/v1/merchants/{id}", get(admin::merchant))
        .route("/admin/v1/merchants/{id}/enable", post(admin::enable))
        .route("/admin/v1/status", get(admin::status))
        .route("/admin/v1/halt", post(admin::halt))
        .route("/admin/v1/resume", post(admin::resume))
        .route("/admin/v1/backup", post(admin::backup))
        .route("/admin/v1/log-level", post(admin::log_level))
        .route("/admin/v1/peers", get(admin_peers::peers))
        .route("/admin/v1/peers/block", post(admin_peers::block))
        .route("/admin/v1/peers/unblock", post(admin_peers::unblock))
        .route("/", get(status::page))
        .route("/status.json", get(status::data))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(request_id::tag))
        .with_state(state)
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let body = state.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
