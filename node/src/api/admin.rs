//! The operators' admin API under `/admin/v1`, behind its own bearer token (`[admin] token`):
//! webhook deliveries with their attempts, replay of one event or of every dead-lettered event
//! since a time, and the merchants' endpoint state (re-enabling replays what was missed).

use super::{ApiError, ApiState};
use crate::store::{EndpointState, OutboxEvent};
use crate::time::now_ms;
use alloy::primitives::B256;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(super) fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::not_found("admin API (set [admin] token to enable it)"));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if super::auth::constant_time_eq(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Query of `GET /admin/v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    merchant: Option<String>,
    invoice: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

/// One event with its attempts.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    #[serde(flatten)]
    event: OutboxEvent,
    state: &'static str,
    attempts_detail: Vec<crate::store::Attempt>,
}

pub(super) async fn deliveries(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let Query(q) =
        query.map_err(|e| ApiError::invalid("query", format!("{e}; accepted: merchant, invoice, state, limit")))?;
    let invoice: Option<B256> = q
        .invoice
        .as_deref()
        .map(|s| s.parse().map_err(|_| ApiError::invalid("invoice", "invoice must be 0x followed by 64 hex digits")))
        .transpose()?;
    if let Some(s) = &q.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(ApiError::invalid("state", "state must be pending, delivered or dead"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 1000"));
    }
    let events = state.store.events(q.merchant.as_deref(), invoice, q.state.as_deref(), limit)?;
    let mut out = Vec::new();
    for event in events {
        let attempts_detail = state.store.attempts(&event.id)?;
        out.push(DeliveryView { state: event.state(), attempts_detail, event });
    }
    Ok(Json(json!({ "data": out })))
}

pub(super) async fn replay_one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    if state.store.outbox_event(&id)?.is_none() {
        return Err(ApiError::not_found("webhook event"));
    }
    let n = state.store.replay(&[id], now_ms())?;
    wake(&state);
    Ok(Json(json!({ "replayed": n })))
}

/// Body of `POST /admin/v1/deliveries/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    since_ms: u64,
    merchant: Option<String>,
}

pub(super) async fn replay_failed(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let req: ReplayBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("body", format!("{e}; expected {{\"since_ms\": <unix ms>, \"merchant\": optional id}}"))
    })?;
    let ids = state.store.dead_since(req.since_ms, req.merchant.as_deref())?;
    let n = state.store.replay(&ids, now_ms())?;
    wake(&state);
    Ok(Json(json!({ "replayed": n })))
}

pub(super) async fn merchant(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    merchant_status(&state, &id)
}

pub(super) async fn enable(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    if !state.merchants.iter().any(|m| m.id == id) {
        return Err(ApiError::not_found("merchant"));
    }
    let before = state.store.endpoint(&id)?;
    state.store.set_endpoint(&id, &EndpointState::default())?;
    // Events that waited while disabled are pending and go out now; events that died meanwhile
    // are replayed too.
    let since = before.disabled_at_ms.unwrap_or(u64::MAX);
    let ids = state.store.dead_since(since, Some(&id))?;
    let replayed = state.store.replay(&ids, now_ms())?;
    wake(&state);
    let mut status = merchant_status(&state, &id)?.0;
    status["replayed"] = json!(replayed);
    Ok(Json(status))
}

/// A merchant's endpoint state and delivery counts.
pub(super) fn merchant_status(state: &ApiState, id: &str) -> Result<Json<Value>, ApiError> {
    let m = state.merchants.iter().find(|m| m.id == id).ok_or_else(|| ApiError::not_found("merchant"))?;
    let endpoint = state.store.endpoint(id)?;
    let count = |s: &str| state.store.events(Some(id), None, Some(s), usize::MAX).map(|v| v.len());
    Ok(Json(json!({
        "id": m.id,
        "webhook_url": m.webhook_url,
        "endpoint": endpoint,
        "deliveries": { "pending": count("pending")?, "delivered": count("delivered")?, "dead": count("dead")? },
    })))
}

fn wake(state: &ApiState) {
    if let Some(w) = &state.webhook_wake {
        w.notify_one();
    }
}

fn halt_of(state: &ApiState) -> Result<&crate::halt::Halt, ApiError> {
    state.halt.as_ref().ok_or_else(|| ApiError::not_found("halt switch"))
}

pub(super) async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let halt = halt_of(&state)?;
    Ok(Json(json!({ "node": state.node_name, "halted": halt.is_halted(), "halt": halt.reason() })))
}

pub(super) async fn halt(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let detail = v["reason"].as_str().unwrap_or("halted by an operator").to_string();
    tracing::warn!(reason = %detail, "settlement halted by an operator");
    halt_of(&state)?.halt(crate::halt::HaltReason { invariant: "operator".into(), detail, at_ms: now_ms() });
    state.answers.invalidate().await;
    Ok(Json(json!({ "halted": true })))
}

pub(super) async fn resume(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let previous = halt_of(&state)?.resume()?;
    state.answers.invalidate().await;
    Ok(Json(json!({ "halted": false, "was": previous })))
}

pub(super) async fn backup(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("{e}; expected {{\"path\": \"/abs/backup.redb\"}}")))?;
    let path = v["path"]
        .as_str()
        .ok_or_else(|| ApiError::invalid("path", "path must be an absolute file path on the node's host"))?;
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return Err(ApiError::invalid("path", "path must be absolute"));
    }
    let store = state.store.clone();
    let records = tokio::task::spawn_blocking(move || store.backup_to(&path))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::invalid("path", e.to_string()))?;
    tracing::info!(records, "online backup written");
    Ok(Json(json!({ "records": records })))
}

pub(super) async fn log_level(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let filter = v["filter"]
        .as_str()
        .ok_or_else(|| ApiError::invalid("filter", "give {\"filter\": \"info\"} (an EnvFilter directive)"))?;
    crate::telemetry::set_log_level(filter).map_err(|e| ApiError::invalid("filter", e))?;
    tracing::info!(filter, "log filter changed");
    Ok(Json(json!({ "filter": filter })))
}
