//! The merchant registry through the admin API: list merchants, changes waiting and the audit
//! log; propose a new merchant or a change to one; approve a change another operator proposed.
//! Every proposal and approval is signed with this node's BLS key and gossiped; a change applies
//! on every node once a threshold of operators approved it ([`crate::merchants`]).

use super::admin::authorize;
use super::{ApiError, ApiState};
use crate::keys::OperatorKeys;
use crate::merchants::{Approved, RegistryError};
use alloy::primitives::{Address, B256};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use settleproof_config::{MerchantConfig, Secret};

/// Body of `POST /admin/v1/merchants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMerchant {
    id: String,
    payout_address: Address,
    webhook_url: String,
    webhook_secret: Secret,
    /// The merchant's root public key (`settleproof merchant keygen`).
    root_key: settleproof_merchant_auth::MerchantKey,
}

/// Body of `PATCH /admin/v1/merchants/{id}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantPatch {
    payout_address: Option<Address>,
    webhook_url: Option<String>,
    webhook_secret: Option<Secret>,
    root_key: Option<settleproof_merchant_auth::MerchantKey>,
    disabled: Option<bool>,
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, problem } => ApiError::invalid(field, problem),
            RegistryError::UnknownMerchant(_) => ApiError::not_found("merchant"),
            RegistryError::UnknownChange(h) => ApiError::not_found(&format!("merchant change {h}")),
            RegistryError::CannotApprove(m) | RegistryError::Conflict(m) => ApiError::conflict(m),
            RegistryError::Store(e) => ApiError::internal(e),
        }
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid("body", format!("{e}; expected {expected}")))
}

fn keys(state: &ApiState) -> Result<Vec<settleproof_consensus::BlsSecretKey>, ApiError> {
    let dir = state.keys_dir.as_ref().ok_or_else(|| ApiError::not_found("keys directory"))?;
    Ok(OperatorKeys::load(dir).map_err(ApiError::internal)?.bls_keys().cloned().collect())
}

/// 201 when the change applied at once (a threshold of 1), 202 while it waits for approvals.
fn answer(a: Approved) -> (StatusCode, Json<Approved>) {
    (if a.applied { StatusCode::CREATED } else { StatusCode::ACCEPTED }, Json(a))
}

/// `POST /admin/v1/merchants`: proposes a new merchant, approved by this node.
pub(super) async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Approved>), ApiError> {
    authorize(&state, &headers)?;
    let n: NewMerchant = body(&bytes, "id, payout_address, webhook_url, webhook_secret, root_key")?;
    let merchant = MerchantConfig {
        id: n.id,
        payout_address: n.payout_address,
        webhook_url: n.webhook_url,
        webhook_secret: n.webhook_secret,
        root_key: Some(n.root_key),
        api_token_sha256: None,
    };
    let keys = keys(&state)?;
    let registry = state.merchants.clone();
    let approved = tokio::task::spawn_blocking(move || registry.propose(merchant, false, true, &keys))
        .await
        .map_err(ApiError::internal)??;
    Ok(answer(approved))
}

/// `PATCH /admin/v1/merchants/{id}`: proposes the merchant's record with the given fields
/// changed, approved by this node.
pub(super) async fn update(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Approved>), ApiError> {
    authorize(&state, &headers)?;
    let p: MerchantPatch = body(&bytes, "any of payout_address, webhook_url, webhook_secret, root_key, disabled")?;
    let held = state
        .merchants
        .entries()?
        .into_iter()
        .find(|e| e.change.merchant.id == id)
        .ok_or_else(|| ApiError::not_found("merchant"))?;
    let mut merchant = held.change.merchant;
    merchant.payout_address = p.payout_address.unwrap_or(merchant.payout_address);
    merchant.webhook_url = p.webhook_url.unwrap_or(merchant.webhook_url);
    merchant.webhook_secret = p.webhook_secret.unwrap_or(merchant.webhook_secret);
    merchant.root_key = p.root_key.or(merchant.root_key);
    // A record approved before requests were signed may carry the retired token hash: its
    // next version drops it.
    merchant.api_token_sha256 = None;
    let disabled = p.disabled.unwrap_or(held.change.disabled);
    let keys = keys(&state)?;
    let registry = state.merchants.clone();
    let approved = tokio::task::spawn_blocking(move || registry.propose(merchant, disabled, false, &keys))
        .await
        .map_err(ApiError::internal)??;
    Ok(answer(approved))
}

/// `POST /admin/v1/merchant-changes/{hash}/approve`: approves a change waiting on this node.
pub(super) async fn approve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<(StatusCode, Json<Approved>), ApiError> {
    authorize(&state, &headers)?;
    let hash: B256 =
        hash.parse().map_err(|_| ApiError::invalid("change_hash", "must be a 0x-prefixed 32-byte hex hash"))?;
    let keys = keys(&state)?;
    let registry = state.merchants.clone();
    let approved =
        tokio::task::spawn_blocking(move || registry.approve(hash, &keys)).await.map_err(ApiError::internal)??;
    Ok(answer(approved))
}

/// `GET /admin/v1/merchants`: every merchant of the registry (secrets left out), the changes
/// waiting with what they change and who approved them, and the audit log.
pub(super) async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let registry = &state.merchants;
    let entries = registry.entries()?;
    let merchants: Vec<Value> = entries
        .iter()
        .map(|e| {
            let m = &e.change.merchant;
            json!({
                "id": m.id,
                "version": e.change.version,
                "payout_address": m.payout_address,
                "webhook_url": m.webhook_url,
                "disabled": e.change.disabled,
                "approved_by": e.approvals.iter().map(|a| a.0).collect::<Vec<_>>(),
                "applied_at_ms": e.applied_at_ms,
            })
        })
        .collect();
    let pending: Vec<Value> = registry
        .pending()?
        .iter()
        .map(|p| {
            let (m, before) =
                (&p.change.merchant, entries.iter().find(|e| e.change.merchant.id == p.change.merchant.id));
            let old = before.map(|b| &b.change.merchant);
            json!({
                "change_hash": p.hash,
                "merchant_id": m.id,
                "version": p.change.version,
                "epoch": p.change.epoch,
                "payout_address": m.payout_address,
                "previous_payout_address": old.map(|o| o.payout_address),
                "webhook_url": m.webhook_url,
                "webhook_secret_changed": old.is_none_or(|o| o.webhook_secret != m.webhook_secret),
                "root_key_changed": old.is_none_or(|o| o.root_key != m.root_key),
                "disabled": p.change.disabled,
                "approved_by": p.approvals.iter().map(|a| a.0).collect::<Vec<_>>(),
            })
        })
        .collect();
    let audit = state.chains.first().store.merchant_audit(200).map_err(ApiError::internal)?;
    Ok(Json(json!({
        "threshold": registry.threshold(),
        "merchants": merchants,
        "pending": pending,
        "audit": audit,
    })))
}
