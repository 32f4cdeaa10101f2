//! `/v1/api-keys`: a merchant's own API keys, managed with its primary token. A key has a name
//! and scopes; its token is shown once, at creation, and only its SHA-256 is kept (on every
//! node). A revoked key is refused on a node as soon as the revocation reaches it (gossip,
//! normally well under a second).

use super::{ApiError, ApiState, auth};
use crate::merchants::RegistryError;
use crate::store::{ApiKey, Scope};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// Body of `POST /v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A name for the key, 1 to 64 printable characters (e.g. `billing-service`).
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// What the key may do.
    #[schema(min_items = 1, max_items = 3)]
    pub scopes: Vec<Scope>,
}

/// A key as listed: never its token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// Its id, for revoking.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created, unix milliseconds.
    pub created_at_ms: u64,
    /// When it was revoked, unix milliseconds.
    pub revoked_at_ms: Option<u64>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            created_at_ms: k.created_at_ms,
            revoked_at_ms: k.revoked_at_ms,
        }
    }
}

/// A key just created, with its token (shown only now).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// Its bearer token; keep it: no node can show it again.
    pub token: String,
}

/// The merchant's keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Oldest first, revoked ones too.
    pub data: Vec<ApiKeyView>,
}

/// The merchant of a request made with its primary token.
fn owner(caller: &auth::Caller, state: &ApiState) -> Result<String, ApiError> {
    let p = auth::principal(caller, state)?;
    if p.scopes.is_some() {
        return Err(ApiError::forbidden("API keys are managed with the merchant's primary token, not with an API key"));
    }
    Ok(p.merchant.id)
}

fn registry_error(e: RegistryError) -> ApiError {
    ApiError::from_registry(e, "API key")
}

#[utoipa::path(post, path = "/v1/api-keys", tag = "merchant", request_body = CreateApiKey,
    security(("merchant_token" = [])),
    responses(
        (status = 201, description = "Created; the token is in this answer only", body = CreatedApiKey),
        (status = 400, description = "A field is invalid; `field` names it", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "Made with an API key: keys are managed with the primary token", body = super::error::ErrorBody),
        (status = 409, description = "The merchant has the most keys kept", body = super::error::ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = String, content_type = "text/plain"),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<ApiState>,
    caller: auth::Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let merchant = owner(&caller, &state)?;
    let req: CreateApiKey = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("invalid JSON body: {e}; expected name and scopes")))?;
    let registry = state.merchants.clone();
    let (key, token) = tokio::task::spawn_blocking(move || registry.create_key(&merchant, &req.name, req.scopes))
        .await
        .map_err(ApiError::internal)?
        .map_err(registry_error)?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: key.into(), token })))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "merchant",
    security(("merchant_token" = [])),
    responses(
        (status = 200, description = "The merchant's keys, revoked ones too", body = ApiKeyList),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "Made with an API key: keys are managed with the primary token", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(State(state): State<ApiState>, caller: auth::Caller) -> Result<Json<ApiKeyList>, ApiError> {
    let merchant = owner(&caller, &state)?;
    let keys = state.merchants.keys_of(&merchant).map_err(registry_error)?;
    Ok(Json(ApiKeyList { data: keys.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "merchant",
    params(("id" = String, Path, description = "Key id, `key_` and 24 hex digits")),
    security(("merchant_token" = [])),
    responses(
        (status = 200, description = "Revoked (again: the first revocation's time stays)", body = ApiKeyView),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "Made with an API key: keys are managed with the primary token", body = super::error::ErrorBody),
        (status = 404, description = "No such key of this merchant", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn revoke(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    let merchant = owner(&caller, &state)?;
    let registry = state.merchants.clone();
    let key = tokio::task::spawn_blocking(move || registry.revoke_key(&merchant, &id))
        .await
        .map_err(ApiError::internal)?
        .map_err(registry_error)?;
    Ok(Json(key.into()))
}
