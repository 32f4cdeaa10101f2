//! The HTTP APIs (axum): the public one (merchants, health, metrics, status page) and the
//! operators' admin API, each on its own listener. The routers are plain functions of their
//! state, so handlers are tested with `oneshot` and no socket; [`server`] serves them.
//!
//! Every request passes the same tower layers, outermost first: panics become 500s, a request
//! id (the caller's `x-request-id` when it is sane, else a new one) is set, logged with
//! everything the request causes (an access log line with method, route, status and latency)
//! and returned; the whole request has `api.request_timeout_ms` (then 408); at most
//! `api.max_concurrent_requests` run at once; bodies over `api.max_body_bytes` get 413; a
//! client with repeated 401s is locked out for a while (429).

mod admin;
mod admin_merchants;
mod admin_peers;
mod admin_sets;
pub mod api_keys;
pub mod auth;
pub mod cache;
mod chains;
pub mod checkout;
mod error;
pub mod events;
mod health;
mod invoices;
pub mod openapi;
mod rate_limit;
mod request_id;
pub mod server;
mod status;
pub mod thread;
pub mod throttle;
pub mod webhook_endpoints;

pub use chains::{ChainState, Chains};
pub use error::ApiError;
pub use rate_limit::RateLimiter;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use settleproof_p2p::NetworkHandle;
use std::sync::Arc;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The chains served, each with its store and pipeline parts.
    pub chains: Arc<Chains>,
    /// The merchant registry.
    pub merchants: crate::merchants::Registry,
    /// This node's name.
    pub node_name: String,
    /// Gossip, for the peer count of the readiness check; `None` in handler tests.
    pub net: Option<NetworkHandle>,
    /// This node's keys directory, for approving operator set changes; `None` in handler tests.
    pub keys_dir: Option<std::path::PathBuf>,
    /// Bearer token of the admin API; `None`: admin API off.
    pub admin_token: Option<settleproof_config::Secret>,
    /// Per-merchant request budget.
    pub limiter: rate_limit::RateLimiter,
    /// Prometheus metrics.
    pub metrics: Option<PrometheusHandle>,
    /// Cached health and status answers.
    pub answers: cache::Answers,
    /// Request limits.
    pub limits: Limits,
    /// Failed authentications per client.
    pub throttle: throttle::AuthThrottle,
    /// The base of checkout URLs (`api.public_url`).
    pub public_url: String,
    /// Token symbols and decimals shown on checkout pages.
    pub tokens: checkout::TokenCache,
    /// This node's hosts and accepted nonces, for merchant-signed requests.
    pub signed: auth::SignedRequests,
}

/// Request limits of both listeners.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body.
    pub max_body_bytes: usize,
    /// Time from headers to answer.
    pub request_timeout: std::time::Duration,
    /// Requests at once.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&settleproof_config::ApiSection::with_listen(([127, 0, 0, 1], 0).into()))
    }
}

impl Limits {
    /// The limits of `[api]`.
    pub fn from_config(api: &settleproof_config::ApiSection) -> Self {
        Self {
            max_body_bytes: api.max_body_bytes,
            request_timeout: std::time::Duration::from_millis(api.request_timeout_ms),
            max_concurrent_requests: api.max_concurrent_requests,
        }
    }
}

/// The public router: merchants, health, metrics and the status page. The routes that need
/// no token share a smaller concurrency limit of their own, so a flood of them cannot take
/// the merchants' slots.
pub fn router(state: ApiState) -> Router {
    let open_limit = (state.limits.max_concurrent_requests / 8).max(4);
    let open = Router::new()
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/", get(status::page))
        .route("/status.json", get(status::data))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .route("/checkout/assets/checkout.js", get(checkout::script))
        .route("/checkout/assets/checkout.css", get(checkout::style))
        .route("/checkout/assets/self-hosted/settleproof-checkout.js", get(checkout::self_hosted_script))
        .route("/checkout/assets/self-hosted/index.html", get(checkout::self_hosted_page))
        .route("/checkout/{id}", get(checkout::page))
        .route("/checkout/{id}/status", get(checkout::status))
        .route_layer(tower::limit::GlobalConcurrencyLimitLayer::new(open_limit));
    let merchants = Router::new()
        .route("/v1/invoices", post(invoices::create).get(invoices::list))
        .route("/v1/invoices/{id}", get(invoices::get))
        .route("/v1/invoices/{id}/receipt", get(invoices::receipt))
        .route("/v1/webhooks/test", post(events::test_event))
        .route("/v1/merchant", get(invoices::merchant))
        .route("/v1/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/v1/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/v1/events", get(events::list))
        .route("/v1/events/replay", post(events::replay_since))
        .route("/v1/events/{id}/replay", post(events::replay_one))
        .route("/v1/webhook-endpoints", post(webhook_endpoints::create).get(webhook_endpoints::list))
        .route(
            "/v1/webhook-endpoints/{id}",
            get(webhook_endpoints::get).patch(webhook_endpoints::update).delete(webhook_endpoints::delete),
        )
        .route("/v1/webhook-endpoints/{id}/rotate-secret", post(webhook_endpoints::rotate_secret))
        .route("/v1/webhook-endpoints/{id}/deliveries", get(webhook_endpoints::deliveries))
        .route("/v1/webhook-endpoints/{id}/replay", post(webhook_endpoints::replay))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::signed));
    hardened(merchants.merge(open), state)
}

/// The operators' router, served on the admin listener only.
pub fn admin_router(state: ApiState) -> Router {
    let routes = Router::new()
        .route("/admin/v1/deliveries", get(admin::deliveries))
        .route("/admin/v1/deliveries/replay", post(admin::replay_failed))
        .route("/admin/v1/deliveries/{id}/replay", post(admin::replay_one))
        .route("/admin/v1/merchants", get(admin_merchants::list).post(admin_merchants::create))
        .route("/admin/v1/merchants/{id}", get(admin::merchant).patch(admin_merchants::update))
        .route("/admin/v1/merchant-changes/{hash}/approve", post(admin_merchants::approve))
        .route("/admin/v1/merchants/{id}/enable", post(admin::enable))
        .route("/admin/v1/status", get(admin::status))
        .route("/admin/v1/halt", post(admin::halt))
        .route("/admin/v1/resume", post(admin::resume))
        .route("/admin/v1/backup", post(admin::backup))
        .route("/admin/v1/log-level", post(admin::log_level))
        .route("/admin/v1/operator-sets", get(admin_sets::sets))
        .route("/admin/v1/operator-sets/approve", post(admin_sets::approve))
        .route("/admin/v1/operator-sets/collect", post(admin_sets::collect))
        .route("/admin/v1/peers", get(admin_peers::peers))
        .route("/admin/v1/peers/block", post(admin_peers::block))
        .route("/admin/v1/peers/unblock", post(admin_peers::unblock))
        .route("/health/live", get(|| async { "ok" }));
    hardened(routes, state)
}

fn hardened(routes: Router<ApiState>, state: ApiState) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    let limits = state.limits;
    let throttle = state.throttle.clone();
    let layers = tower::ServiceBuilder::new()
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(tower::util::MapRequestLayer::new(request_id::drop_unfit))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(request_id::access_log())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_concurrent_requests))
        // axum's limit (its extractors answer 413); tower-http's would change the body type
        // under every route.
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(throttle, throttle::layer));
    routes.layer(layers).with_state(state)
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let body = state.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
