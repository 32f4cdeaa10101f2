//! Operator set changes through the admin API: the sets this node follows, and approving a
//! proposal with this node's BLS key. The proposal is checked against the latest set the node
//! read from the chain through its provider quorum (not against anything the caller says), so
//! an operator can approve from the node it trusts instead of a workstation's RPC.

use super::admin::authorize;
use super::{ApiError, ApiState};
use crate::keys::OperatorKeys;
use crate::proposal::Proposal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

/// `GET /admin/v1/operator-sets`: every set this node read from the chain.
pub(super) async fn sets(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let sets = state.store.epochs().map_err(ApiError::internal)?;
    let me = state.epochs.as_ref().map(|e| e.me());
    let epochs: Vec<Value> = sets
        .iter()
        .map(|s| {
            let operators: Vec<Value> = s
                .operators
                .iter()
                .map(|o| {
                    let peer = settleproof_p2p::PeerId::from_bytes(&o.peer_id).ok();
                    json!({
                        "name": o.name,
                        "account": o.account,
                        "peer_id": peer.map(|p| p.to_string()),
                        "p2p_addr": o.p2p_addr,
                        "this_node": peer.is_some() && peer == me,
                    })
                })
                .collect();
            json!({"epoch": s.epoch, "start_round": s.start_round, "threshold": s.threshold, "operators": operators})
        })
        .collect();
    Ok(Json(json!({ "epochs": epochs })))
}

/// `POST /admin/v1/operator-sets/approve`: the proposal in the body, with this node's approval
/// added. Refused (400, naming the problem) unless its current set is the latest one this node
/// read from the chain and it is consistent in itself; 409 when this node is not an operator of
/// that set or holds no key it registered.
pub(super) async fn approve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Proposal>, ApiError> {
    authorize(&state, &headers)?;
    let mut proposal: Proposal = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("body", format!("{e}; expected a proposal file of `settleproof operators propose`"))
    })?;
    let latest = state
        .store
        .epochs()
        .map_err(ApiError::internal)?
        .pop()
        .ok_or_else(|| ApiError::not_found("operator set (this node has not read one from the chain yet)"))?;
    proposal
        .check_against(&latest, state.chain_id, state.settlement_contract)
        .map_err(|e| ApiError::invalid("proposal", e.to_string()))?;
    let me = state.epochs.as_ref().map(|e| e.me());
    let mine = latest
        .operators
        .iter()
        .find(|o| settleproof_p2p::PeerId::from_bytes(&o.peer_id).ok() == me)
        .ok_or_else(|| ApiError::conflict(format!("this node is not an operator of epoch {}", latest.epoch)))?;
    let keys_dir = state.keys_dir.as_ref().ok_or_else(|| ApiError::not_found("keys directory"))?;
    let keys = OperatorKeys::load(keys_dir).map_err(ApiError::internal)?;
    let key = keys.bls_keys().find(|k| k.public_key() == mine.bls).cloned().ok_or_else(|| {
        ApiError::conflict(format!("no BLS key in the keys directory is the one epoch {} registered", latest.epoch))
    })?;
    let name = mine.name.clone();
    proposal.sign(&name, &key).map_err(|e| ApiError::invalid("proposal", e.to_string()))?;
    tracing::info!(epoch = latest.epoch, next = proposal.next.epoch, change = ?proposal.change, "operator set change approved through the admin API");
    Ok(Json(proposal))
}
