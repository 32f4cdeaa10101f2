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
        Some(g) if constant_time_eq(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[test]
fn constant_time_eq_table() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
}

/// Query of `GET /admin/v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    merchant: Option<String>,
    invoice: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    chain_id: Option<u64>,
}

/// One event with its attempts.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    #[serde(flatten)]
    event: OutboxEvent,
    /// The chain whose worker holds the event.
    chain_id: u64,
    state: &'static str,
    attempts_detail: Vec<crate::store::Attempt>,
}

pub(super) async fn deliveries(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let Query(q) = query
        .map_err(|e| ApiError::invalid("query", format!("{e}; accepted: merchant, invoice, state, limit, chain_id")))?;
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
    let chains = chains_named(&state, q.chain_id)?;
    let mut out = Vec::new();
    for chain in chains {
        for event in chain.store.events(q.merchant.as_deref(), invoice, q.state.as_deref(), None, limit)? {
            let attempts_detail = chain.store.attempts(&event.id)?;
            out.push(DeliveryView { state: event.state(), attempts_detail, event, chain_id: chain.chain_id });
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.event.created_at_ms));
    out.truncate(limit);
    Ok(Json(json!({ "data": out })))
}

pub(super) async fn replay_one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    for chain in state.chains.iter() {
        if chain.store.outbox_event(&id)?.is_some() {
            let n = chain.store.replay(&[id], now_ms())?;
            chain.wake();
            return Ok(Json(json!({ "replayed": n, "chain_id": chain.chain_id })));
        }
    }
    Err(ApiError::not_found("webhook event"))
}

/// Body of `POST /admin/v1/deliveries/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    since_ms: u64,
    merchant: Option<String>,
    chain_id: Option<u64>,
}

pub(super) async fn replay_failed(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let req: ReplayBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("{e}; expected {{\"since_ms\": <unix ms>, \"merchant\": optional id, \"chain_id\": optional}}"),
        )
    })?;
    let mut n = 0;
    for chain in chains_named(&state, req.chain_id)? {
        let ids = chain.store.dead_since(req.since_ms, req.merchant.as_deref(), None)?;
        n += chain.store.replay(&ids, now_ms())?;
        chain.wake();
    }
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
    if !state.merchants.list().iter().any(|m| m.id == id) {
        return Err(ApiError::not_found("merchant"));
    }
    let mut replayed = 0;
    for chain in state.chains.iter() {
        let before = chain.store.endpoint(&id)?;
        chain.store.set_endpoint(&id, &EndpointState::default())?;
        // Events that waited while disabled are pending and go out now; events that died
        // meanwhile are replayed too.
        let since = before.disabled_at_ms.unwrap_or(u64::MAX);
        let ids = chain.store.dead_since(since, Some(&id), Some(None))?;
        replayed += chain.store.replay(&ids, now_ms())?;
        chain.wake();
    }
    let mut status = merchant_status(&state, &id)?.0;
    status["replayed"] = json!(replayed);
    Ok(Json(status))
}

/// A merchant's endpoint state and delivery counts: summed over the chains, and per chain
/// (each chain's worker keeps its own retry state). `endpoint` is the first chain's state, or
/// a disabled one's when any is disabled.
pub(super) fn merchant_status(state: &ApiState, id: &str) -> Result<Json<Value>, ApiError> {
    let m = state.merchants.get(id).ok_or_else(|| ApiError::not_found("merchant"))?;
    let mut endpoint = state.chains.first().store.endpoint(id)?;
    let (mut total, mut by_chain) = ([0usize; 3], Vec::new());
    for chain in state.chains.iter() {
        let here = chain.store.endpoint(id)?;
        let mut counts = [0usize; 3];
        for (i, s) in ["pending", "delivered", "dead"].into_iter().enumerate() {
            counts[i] = chain.store.events(Some(id), None, Some(s), Some(None), usize::MAX)?.len();
            total[i] += counts[i];
        }
        by_chain.push(json!({
            "chain_id": chain.chain_id,
            "endpoint": here,
            "deliveries": { "pending": counts[0], "delivered": counts[1], "dead": counts[2] },
        }));
        if here.disabled_at_ms.is_some() && endpoint.disabled_at_ms.is_none() {
            endpoint = here;
        }
    }
    Ok(Json(json!({
        "id": m.id,
        "webhook_url": m.webhook_url,
        "endpoint": endpoint,
        "deliveries": { "pending": total[0], "delivered": total[1], "dead": total[2] },
        "chains": by_chain,
    })))
}

/// The chain `id` names, or every chain when `None`.
fn chains_named(state: &ApiState, id: Option<u64>) -> Result<Vec<&super::ChainState>, ApiError> {
    match id {
        Some(_) => Ok(vec![state.chains.get(id, "chain_id")?]),
        None => Ok(state.chains.iter().collect()),
    }
}

/// The halt switches of the chains `id` names (every chain when `None`).
fn halts_of(state: &ApiState, id: Option<u64>) -> Result<Vec<(u64, &crate::halt::Halt)>, ApiError> {
    let halts: Vec<_> =
        chains_named(state, id)?.into_iter().filter_map(|c| c.halt.as_ref().map(|h| (c.chain_id, h))).collect();
    if halts.is_empty() { Err(ApiError::not_found("halt switch")) } else { Ok(halts) }
}

/// Body of `POST /admin/v1/halt` and `/resume`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltBody {
    reason: Option<String>,
    chain_id: Option<u64>,
}

fn halt_body(body: &[u8]) -> Result<HaltBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HaltBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid("body", format!("{e}; expected {{\"reason\": optional text, \"chain_id\": optional}}"))
    })
}

pub(super) async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let halts = halts_of(&state, None)?;
    let chains: Vec<Value> =
        halts.iter().map(|(id, h)| json!({ "chain_id": id, "halted": h.is_halted(), "halt": h.reason() })).collect();
    let first_halt = halts.iter().find_map(|(_, h)| h.reason());
    Ok(Json(json!({
        "node": state.node_name,
        "halted": halts.iter().any(|(_, h)| h.is_halted()),
        "halt": first_halt,
        "chains": chains,
    })))
}

pub(super) async fn halt(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    // An emergency halt never fails on its body: what cannot be read halts every chain.
    let req = halt_body(&body).unwrap_or_else(|e| {
        tracing::warn!(error = %e.message, "halt request body unreadable: halting every chain");
        HaltBody::default()
    });
    let detail = req.reason.unwrap_or_else(|| "halted by an operator".into());
    let halts = halts_of(&state, req.chain_id)?;
    for (chain_id, halt) in &halts {
        tracing::warn!(reason = %detail, chain_id, "settlement halted by an operator");
        halt.halt(crate::halt::HaltReason { invariant: "operator".into(), detail: detail.clone(), at_ms: now_ms() });
    }
    state.answers.invalidate().await;
    let chains: Vec<u64> = halts.iter().map(|(id, _)| *id).collect();
    Ok(Json(json!({ "halted": true, "chains": chains })))
}

pub(super) async fn resume(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let req = halt_body(&body)?;
    let halts = halts_of(&state, req.chain_id)?;
    let halted: Vec<u64> = halts.iter().filter(|(_, h)| h.is_halted()).map(|(id, _)| *id).collect();
    // Resuming is a decision per chain: with several halted, the caller names one.
    if req.chain_id.is_none() && halted.len() > 1 {
        return Err(ApiError::conflict(format!(
            "chains {halted:?} are halted: resume each with {{\"chain_id\": …}} after looking at why (GET /admin/v1/status)"
        )));
    }
    let mut was = Vec::new();
    for (chain_id, halt) in halts {
        if let Some(previous) = halt.resume()? {
            was.push(json!({ "chain_id": chain_id, "halt": previous }));
        }
    }
    state.answers.invalidate().await;
    // `was`: the first chain's previous reason, as before several chains; `chains`: each.
    Ok(Json(json!({ "halted": false, "was": was.first().map(|w| w["halt"].clone()), "chains": was })))
}

pub(super) async fn backup(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("body", format!("{e}; expected {{\"path\": \"/abs/backup.redb\", \"chain_id\": optional}}"))
    })?;
    let chain_id = match &v["chain_id"] {
        Value::Null => None,
        id => Some(id.as_u64().ok_or_else(|| ApiError::invalid("chain_id", "chain_id must be a number"))?),
    };
    let chain = state.chains.get(chain_id, "chain_id")?;
    let path = v["path"]
        .as_str()
        .ok_or_else(|| ApiError::invalid("path", "path must be an absolute file path on the node's host"))?;
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return Err(ApiError::invalid("path", "path must be absolute"));
    }
    let store = chain.store.clone();
    let records = tokio::task::spawn_blocking(move || store.backup_to(&path))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::invalid("path", e.to_string()))?;
    tracing::info!(records, chain_id = chain.chain_id, "online backup written");
    Ok(Json(json!({ "records": records, "chain_id": chain.chain_id })))
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
