//! `/v1/events`: a merchant's own webhook events with every delivery attempt (status, latency,
//! the start of the answer), and replays of one event or of every event dead-lettered since a
//! time, under the merchant's primary token or a key with the `webhooks:manage` scope. A replay
//! is queued on the node asked; its delivery is acknowledged to the others. `POST
//! /v1/webhooks/test` queues a `test` event the same way.

use super::{ApiError, ApiState, auth};
use crate::store::{Attempt, OutboxEvent, Scope};
use crate::time::now_ms;
use alloy::primitives::B256;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events in this delivery state: `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// Only the events of this invoice (0x and 64 hex digits).
    pub invoice: Option<String>,
    /// At most this many, 1..=200 (default 50), newest first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

/// One webhook event's delivery to one endpoint, and its attempts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The delivery's id, to replay it: the `webhook-id` for the primary endpoint,
    /// `<webhook-id>.<endpoint id>` for one of the merchant's own endpoints.
    pub id: String,
    /// The `webhook-id` sent (the same to every endpoint).
    pub webhook_id: String,
    /// The merchant's own endpoint it goes to; null: the primary endpoint.
    pub endpoint_id: Option<String>,
    /// Event type, e.g. `invoice.paid`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The chain whose worker holds it.
    pub chain_id: u64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// The invoice it is about.
    #[schema(value_type = Option<String>)]
    pub invoice_id: Option<B256>,
    /// When it was created, unix milliseconds.
    pub created_at_ms: u64,
    /// When it was delivered.
    pub delivered_at_ms: Option<u64>,
    /// When it was dead-lettered.
    pub dead_at_ms: Option<u64>,
    /// The body POSTed (docs/webhooks.json).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

/// Events, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    /// The events.
    pub data: Vec<EventView>,
}

/// Body of `POST /v1/events/replay`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySince {
    /// Replay every event dead-lettered at or after this time, unix milliseconds.
    pub since_ms: u64,
}

/// How many events were queued again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Events queued again.
    pub replayed: usize,
}

fn view(chain_id: u64, e: OutboxEvent, attempts: Vec<Attempt>) -> EventView {
    EventView {
        state: e.state().to_string(),
        webhook_id: e.webhook_id().to_string(),
        endpoint_id: e.endpoint_id.clone(),
        body: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null),
        id: e.id,
        event_type: e.event_type,
        chain_id,
        invoice_id: e.invoice_id,
        created_at_ms: e.created_at_ms,
        delivered_at_ms: e.delivered_at_ms,
        dead_at_ms: e.dead_at_ms,
        attempts,
    }
}

#[utoipa::path(get, path = "/v1/events", tag = "webhooks", params(EventsQuery),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The merchant's events with their attempts, newest first", body = EventList),
        (status = 400, description = "A query parameter is invalid", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: auth::Caller,
    query: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::WebhooksManage))?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::invalid("query", format!("{e}; accepted: state, invoice, limit")))?;
    if let Some(s) = &q.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(ApiError::invalid("state", "state must be pending, delivered or dead"));
    }
    let invoice: Option<B256> = q
        .invoice
        .as_deref()
        .map(|s| s.parse().map_err(|_| ApiError::invalid("invoice", "invoice must be 0x followed by 64 hex digits")))
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 200"));
    }
    let filter = Filter { merchant: merchant.id, invoice, state: q.state, endpoint: None, limit };
    Ok(Json(EventList { data: collect(&state, filter).await? }))
}

/// Which deliveries to list.
pub(super) struct Filter {
    pub(super) merchant: String,
    pub(super) invoice: Option<B256>,
    pub(super) state: Option<String>,
    /// `Some(None)`: the primary endpoint's; `Some(Some(id))`: endpoint `id`'s.
    pub(super) endpoint: Option<Option<String>>,
    pub(super) limit: usize,
}

/// The deliveries `f` names over every chain, newest first, with their attempts.
pub(super) async fn collect(state: &ApiState, f: Filter) -> Result<Vec<EventView>, ApiError> {
    // The outbox is read off the async runtime: a large one must not hold other requests.
    let stores: Vec<(u64, crate::store::Store)> = state.chains.iter().map(|c| (c.chain_id, c.store.clone())).collect();
    tokio::task::spawn_blocking(move || -> Result<Vec<EventView>, crate::store::StoreError> {
        let mut out = Vec::new();
        let endpoint = f.endpoint.as_ref().map(|e| e.as_deref());
        for (chain_id, store) in stores {
            for e in store.events(Some(&f.merchant), f.invoice, f.state.as_deref(), endpoint, f.limit)? {
                let attempts = store.attempts(&e.id)?;
                out.push(view(chain_id, e, attempts));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.created_at_ms));
        out.truncate(f.limit);
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)
}

/// Queues again every delivery of `merchant` (to `endpoint`, when named) dead-lettered since
/// `since_ms`, on every chain.
pub(super) fn replay_dead(
    state: &ApiState,
    merchant: &str,
    endpoint: Option<Option<&str>>,
    since_ms: u64,
) -> Result<usize, ApiError> {
    let mut replayed = 0;
    // Deliveries to a deleted endpoint would only die again: they are left dead.
    let live = |id: &String| match id.split_once('.') {
        Some((_, ep)) => state.merchants.endpoint(ep).ok().flatten().is_some_and(|e| e.deleted_at_ms.is_none()),
        None => true,
    };
    for chain in state.chains.iter() {
        let ids: Vec<String> =
            chain.store.dead_since(since_ms, Some(merchant), endpoint)?.into_iter().filter(live).collect();
        replayed += chain.store.replay(&ids, now_ms())?;
        chain.wake();
    }
    Ok(replayed)
}

#[utoipa::path(post, path = "/v1/events/{id}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "The event's `webhook-id`")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "Queued again, its retry schedule restarted", body = Replayed),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such event of this merchant", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn replay_one(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::WebhooksManage))?;
    for chain in state.chains.iter() {
        if chain.store.outbox_event(&id)?.is_some_and(|e| e.merchant_id == merchant.id) {
            let replayed = chain.store.replay(&[id], now_ms())?;
            chain.wake();
            return Ok(Json(Replayed { replayed }));
        }
    }
    Err(ApiError::not_found("webhook event"))
}

/// The body of a replay since a time.
pub(super) fn parse_since(body: &[u8]) -> Result<ReplaySince, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("{e}; expected {{\"since_ms\": <unix ms>}}")))
}

#[utoipa::path(post, path = "/v1/events/replay", tag = "webhooks", request_body = ReplaySince,
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "Every event of the merchant dead-lettered since then, queued again", body = Replayed),
        (status = 400, description = "The body is invalid", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = String, content_type = "text/plain"),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn replay_since(
    State(state): State<ApiState>,
    caller: auth::Caller,
    body: Bytes,
) -> Result<Json<Replayed>, ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::WebhooksManage))?;
    let req = parse_since(&body)?;
    Ok(Json(Replayed { replayed: replay_dead(&state, &merchant.id, None, req.since_ms)? }))
}

/// Response of `POST /v1/webhooks/test`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestQueued {
    /// The queued event's `webhook-id`.
    pub webhook_id: String,
}

/// Queues a `test` webhook event to the merchant's endpoint.
#[utoipa::path(post, path = "/v1/webhooks/test", tag = "webhooks",
    security(("merchant_jwt" = [])),
    responses(
        (status = 202, description = "Queued", body = TestQueued),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn test_event(
    State(state): State<ApiState>,
    caller: auth::Caller,
) -> Result<(StatusCode, Json<TestQueued>), ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::WebhooksManage))?;
    let id = format!("msg_test_{}", hex::encode(&super::invoices::random_id()[..12]));
    let body = crate::webhook::events::TestEvent {
        event_type: "test",
        timestamp: crate::time::rfc3339(crate::time::now_s()),
        data: crate::webhook::events::TestEventData {
            webhook_id: id.clone(),
            merchant_id: merchant.id.clone(),
            message: "test event requested through the API".into(),
        },
    };
    let event = crate::store::OutboxEvent {
        id: id.clone(),
        merchant_id: merchant.id.clone(),
        event_type: "test".into(),
        body: serde_json::to_string(&body).unwrap_or_default(),
        ..Default::default()
    };
    // A test event belongs to no chain; the first chain's worker delivers it.
    let chain = state.chains.first();
    chain.store.enqueue_events(&[event], crate::time::now_ms())?;
    chain.wake();
    Ok((StatusCode::ACCEPTED, Json(TestQueued { webhook_id: id })))
}
