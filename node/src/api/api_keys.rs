//! `/v1/api-keys`: a merchant's own API keys, granted and revoked with requests signed by its
//! root key (the signed request is kept as the grant, and checked by every node: see
//! `merchants::api_keys`). A key is a public key with a name and scopes; requests signed with
//! its private half act within those scopes. A revoked key is refused on a node as soon as the
//! revocation reaches it (gossip, normally well under a second).

use super::{ApiError, ApiState, auth};
use crate::merchants::KeyGrant;
use crate::merchants::RegistryError;
use crate::store::{ApiKey, Scope};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use settleproof_merchant_auth::SignedStatement;

/// A key as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// Its id (`mk_…`, derived from its public key): the `kid` of the requests it signs, and
    /// the id to revoke it by.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created, unix milliseconds.
    pub created_at_ms: u64,
    /// When it was revoked, unix milliseconds.
    pub revoked_at_ms: Option<u64>,
    /// Its public half.
    #[schema(value_type = Object)]
    pub public_key: Option<settleproof_merchant_auth::MerchantKey>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            created_at_ms: k.created_at_ms,
            revoked_at_ms: k.revoked_at_ms,
            public_key: k.public_key,
        }
    }
}

/// The merchant's keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Oldest first, revoked ones too.
    pub data: Vec<ApiKeyView>,
}

/// The merchant of a request signed by its root key, and the request's JWT.
fn root_signed(caller: &auth::Caller, state: &ApiState) -> Result<(String, String), ApiError> {
    Ok((owner(caller, state)?, caller.jwt.clone()))
}

/// The merchant of a request signed by its root key: only the root key manages keys.
fn owner(caller: &auth::Caller, state: &ApiState) -> Result<String, ApiError> {
    let p = auth::principal(caller, state)?;
    if p.scopes.is_some() {
        return Err(ApiError::forbidden(
            "API keys are granted, listed and revoked with requests signed by the merchant's root key, not an API key",
        ));
    }
    Ok(p.merchant.id)
}

fn registry_error(e: RegistryError) -> ApiError {
    ApiError::from_registry(e, "API key")
}

#[utoipa::path(post, path = "/v1/api-keys", tag = "merchant", request_body = KeyGrant,
    security(("merchant_jwt" = [])),
    responses(
        (status = 201, description = "Granted", body = ApiKeyView),
        (status = 400, description = "A field is invalid; `field` names it", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "Not signed by the merchant's root key", body = super::error::ErrorBody),
        (status = 409, description = "The merchant has the most live keys kept", body = super::error::ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = String, content_type = "text/plain"),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<ApiState>,
    caller: auth::Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<ApiKeyView>), ApiError> {
    let (merchant, jwt) = root_signed(&caller, &state)?;
    let body = String::from_utf8(body.to_vec()).map_err(|_| ApiError::invalid("body", "must be UTF-8 JSON"))?;
    let grant = SignedStatement { jwt, body };
    let registry = state.merchants.clone();
    let key = tokio::task::spawn_blocking(move || registry.create_key(&merchant, grant))
        .await
        .map_err(ApiError::internal)?
        .map_err(registry_error)?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "merchant",
    security(("merchant_jwt" = [])),
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
    params(("id" = String, Path, description = "Key id, `mk_` and 40 hex digits")),
    security(("merchant_jwt" = [])),
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
    let (merchant, jwt) = root_signed(&caller, &state)?;
    let revocation = SignedStatement { jwt, body: String::new() };
    let registry = state.merchants.clone();
    let key = tokio::task::spawn_blocking(move || registry.revoke_key(&merchant, &id, revocation))
        .await
        .map_err(ApiError::internal)?
        .map_err(registry_error)?;
    Ok(Json(key.into()))
}
