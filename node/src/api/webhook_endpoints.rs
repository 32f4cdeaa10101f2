//! `/v1/webhook-endpoints`: a merchant's own endpoints beside the primary one the registry
//! holds. Each has a URL, a description, an `enabled_events` filter and a secret, shown when it
//! is created or rotated. A rotation keeps the old secret signing for `webhooks.secret_overlap_s`
//! (both signatures in `webhook-signature`). Each endpoint has its own deliveries, retry
//! schedule, dead-letter queue and disablement, listed and replayed here. Managed with requests
//! signed by the root key or a key with the `webhooks:manage` scope: each such request is the
//! change itself, kept and replicated with the endpoint (`crate::merchants::endpoint_record`).

use super::events::{self, EventList, Filter, Replayed};
use super::{ApiError, ApiState, auth};
use crate::merchants::RegistryError;
use crate::store::{Scope, WebhookEndpoint};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use settleproof_merchant_auth::SignedStatement;

pub use crate::merchants::endpoint_record::{CreateEndpoint, RotateSecret, UpdateEndpoint};

/// An endpoint as listed: never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The merchant's note.
    pub description: String,
    /// Event types delivered.
    pub enabled_events: Vec<String>,
    /// Paused by the merchant.
    pub disabled: bool,
    /// Until when the secret a rotation replaced still signs, unix milliseconds.
    pub previous_secret_until_ms: Option<u64>,
    /// When the merchant signed its latest change, unix seconds.
    pub version: u64,
    /// When it was created, unix milliseconds.
    pub created_at_ms: u64,
    /// When it was last changed.
    pub updated_at_ms: u64,
}

impl From<&WebhookEndpoint> for EndpointView {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            enabled_events: e.enabled_events.clone(),
            disabled: e.disabled,
            previous_secret_until_ms: e.previous_secret.as_ref().map(|p| p.until_ms),
            version: e.version,
            created_at_ms: e.created_at_ms,
            updated_at_ms: e.updated_at_ms,
        }
    }
}

/// An endpoint just created or rotated, with the secret the merchant chose and signed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// Its signing secret (`whsec_…`), as the merchant sent it; never shown again.
    pub secret: String,
}

/// The merchant's endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    /// Oldest first; deleted ones are left out.
    pub data: Vec<EndpointView>,
}

fn registry_error(e: RegistryError) -> ApiError {
    ApiError::from_registry(e, "webhook endpoint")
}

/// The request itself, as the change it makes: its JWT and exact body.
fn statement(caller: &auth::Caller, body: &[u8]) -> Result<SignedStatement, ApiError> {
    let body = String::from_utf8(body.to_vec()).map_err(|_| ApiError::invalid("body", "must be UTF-8 JSON"))?;
    Ok(SignedStatement { jwt: caller.jwt.clone(), body })
}

fn with_secret(e: &WebhookEndpoint) -> EndpointWithSecret {
    EndpointWithSecret { endpoint: e.into(), secret: e.secret.expose().to_string() }
}

/// Runs a registry call off the runtime (it writes the store).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?.map_err(registry_error)
}

#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint,
    security(("merchant_jwt" = [])),
    responses(
        (status = 201, description = "Created, with the secret you chose", body = EndpointWithSecret),
        (status = 400, description = "A field is invalid; `field` names it", body = super::error::ErrorBody),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 409, description = "The merchant has the most endpoints kept", body = super::error::ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = String, content_type = "text/plain"),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<ApiState>,
    caller: auth::Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::WebhooksManage))?;
    serde_json::from_slice::<CreateEndpoint>(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("invalid JSON body: {e}; expected url, enabled_events, secret and a description"),
        )
    })?;
    let change = statement(&caller, &body)?;
    let registry = state.merchants.clone();
    let e = blocking(move || registry.create_endpoint(&merchant.id, change)).await?;
    Ok((StatusCode::CREATED, Json(with_secret(&e))))
}

#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks",
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The merchant's endpoints", body = EndpointList),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(State(state): State<ApiState>, caller: auth::Caller) -> Result<Json<EndpointList>, ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::WebhooksManage))?;
    let all = state.merchants.endpoints_of(&merchant.id).map_err(registry_error)?;
    Ok(Json(EndpointList { data: all.iter().map(Into::into).collect() }))
}

/// Endpoint `id` of the request's merchant.
fn one(state: &ApiState, caller: &auth::Caller, id: &str) -> Result<(String, WebhookEndpoint), ApiError> {
    let merchant = auth::merchant(caller, state, Some(Scope::WebhooksManage))?;
    let e = state.merchants.endpoints_of(&merchant.id).map_err(registry_error)?.into_iter().find(|e| e.id == id);
    Ok((merchant.id, e.ok_or_else(|| ApiError::not_found("webhook endpoint"))?))
}

#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id, `we_` and 24 hex digits")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such endpoint of this merchant", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn get(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json((&one(&state, &caller, &id)?.1).into()))
}

#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", request_body = UpdateEndpoint,
    params(("id" = String, Path, description = "Endpoint id")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "Changed", body = EndpointView),
        (status = 400, description = "A field is invalid; `field` names it", body = super::error::ErrorBody),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such endpoint of this merchant", body = super::error::ErrorBody),
        (status = 409, description = "Signed no later than the endpoint's latest change; sign it again", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn update(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<EndpointView>, ApiError> {
    let (merchant, _) = one(&state, &caller, &id)?;
    serde_json::from_slice::<UpdateEndpoint>(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("invalid JSON body: {e}; accepted: url, description, enabled_events, disabled"),
        )
    })?;
    let change = statement(&caller, &body)?;
    let registry = state.merchants.clone();
    let e = blocking(move || registry.change_endpoint(&merchant, &id, change)).await?;
    for chain in state.chains.iter() {
        chain.wake();
    }
    Ok(Json((&e).into()))
}

#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "Deleted, for good; its waiting deliveries end", body = EndpointView),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such endpoint of this merchant", body = super::error::ErrorBody),
        (status = 409, description = "Signed no later than the endpoint's latest change; sign it again", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn delete(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let (merchant, _) = one(&state, &caller, &id)?;
    let change = statement(&caller, b"")?;
    let registry = state.merchants.clone();
    let e = blocking(move || registry.change_endpoint(&merchant, &id, change)).await?;
    Ok(Json((&e).into()))
}

#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", request_body = RotateSecret,
    params(("id" = String, Path, description = "Endpoint id")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The secret you chose signs from now on; the old one too until `previous_secret_until_ms`", body = EndpointWithSecret),
        (status = 400, description = "The body is not a valid secret; `field` names it", body = super::error::ErrorBody),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such endpoint of this merchant", body = super::error::ErrorBody),
        (status = 409, description = "Signed no later than the endpoint's latest change; sign it again", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn rotate_secret(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let (merchant, _) = one(&state, &caller, &id)?;
    serde_json::from_slice::<RotateSecret>(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("invalid JSON body: {e}; expected the new secret, {{\"secret\": \"whsec_...\"}}"),
        )
    })?;
    let change = statement(&caller, &body)?;
    let registry = state.merchants.clone();
    let e = blocking(move || registry.change_endpoint(&merchant, &id, change)).await?;
    Ok(Json(with_secret(&e)))
}

/// Query of `GET /v1/webhook-endpoints/{id}/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state: `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// At most this many, 1..=200 (default 50), newest first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"), DeliveriesQuery),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The endpoint's deliveries with their attempts, newest first", body = EventList),
        (status = 400, description = "A query parameter is invalid", body = super::error::ErrorBody),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such endpoint of this merchant", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn deliveries(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let (merchant, _) = one(&state, &caller, &id)?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::invalid("query", format!("{e}; accepted: state, limit")))?;
    if let Some(s) = &q.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(ApiError::invalid("state", "state must be pending, delivered or dead"));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 200"));
    }
    let filter = Filter { merchant, invoice: None, state: q.state, endpoint: Some(Some(id)), limit };
    Ok(Json(EventList { data: events::collect(&state, filter).await? }))
}

#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/replay", tag = "webhooks", request_body = events::ReplaySince,
    params(("id" = String, Path, description = "Endpoint id")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "Every delivery to the endpoint dead-lettered since then, queued again", body = Replayed),
        (status = 400, description = "The body is invalid", body = super::error::ErrorBody),
        (status = 401, description = "No or a refused merchant signature", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `webhooks:manage` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such endpoint of this merchant", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn replay(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Replayed>, ApiError> {
    let (merchant, _) = one(&state, &caller, &id)?;
    let req = events::parse_since(&body)?;
    Ok(Json(Replayed { replayed: events::replay_dead(&state, &merchant, Some(Some(&id)), req.since_ms)? }))
}
