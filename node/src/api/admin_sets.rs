//! Operator set changes through the admin API: the sets this node follows, approving a proposal
//! with this node's BLS key, and collecting the approvals other operators gossiped. The proposal
//! is checked against the latest set the node read from the chain through its provider quorum
//! (not against anything the caller says), so an operator can approve from the node it trusts
//! instead of a workstation's RPC. An approval made here is kept and gossiped
//! ([`crate::set_approval`]); every node merges what it heard into the proposals it returns, so
//! each operator approves on its own node and any of them submits.

use super::admin::authorize;
use super::{ApiError, ApiState, ChainState};
use crate::keys::OperatorKeys;
use crate::proposal::Proposal;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

/// Query of `GET /admin/v1/operator-sets`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetsQuery {
    /// The chain whose settlement contract holds the sets; absent: the first chain.
    chain_id: Option<u64>,
}

/// `GET /admin/v1/operator-sets`: every set this node read from a chain's settlement contract
/// (each chain's contract holds its own sets).
pub(super) async fn sets(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<SetsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let axum::extract::Query(q) = query.map_err(|e| ApiError::invalid("query", format!("{e}; accepted: chain_id")))?;
    let chain = state.chains.get(q.chain_id, "chain_id")?;
    let sets = chain.store.epochs().map_err(ApiError::internal)?;
    let me = chain.epochs.as_ref().map(|e| e.me());
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
    let mut pending: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    if let Some(latest) = sets.last() {
        for a in chain.store.set_approvals(latest.epoch).map_err(ApiError::internal)? {
            let name = latest.operators.get(a.signer as usize).map_or_else(|| a.signer.to_string(), |o| o.name.clone());
            pending.entry(a.set_hash.to_string()).or_default().push(name);
        }
    }
    let approvals: Vec<Value> = pending
        .into_iter()
        .map(|(set_hash, approved_by)| json!({"set_hash": set_hash, "approved_by": approved_by}))
        .collect();
    Ok(Json(json!({ "chain_id": chain.chain_id, "epochs": epochs, "approvals": approvals })))
}

/// The proposal in a request body, checked against the latest set this node read from the
/// chain it names; with that chain and set.
fn checked_proposal<'a>(
    state: &'a ApiState,
    body: &[u8],
) -> Result<(Proposal, &'a ChainState, settleproof_consensus::OperatorSetSpec), ApiError> {
    let proposal: Proposal = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid("body", format!("{e}; expected a proposal file of `settleproof operators propose`"))
    })?;
    let chain = state.chains.get(Some(proposal.chain_id), "chain_id")?;
    let latest = chain
        .store
        .epochs()
        .map_err(ApiError::internal)?
        .pop()
        .ok_or_else(|| ApiError::not_found("operator set (this node has not read one from the chain yet)"))?;
    proposal
        .check_against(&latest, chain.chain_id, chain.settlement_contract)
        .map_err(|e| ApiError::invalid("proposal", e.to_string()))?;
    Ok((proposal, chain, latest))
}

/// Adds to `proposal` the approvals of its set this node made or heard; returns how many.
fn merge_heard(chain: &ChainState, proposal: &mut Proposal) -> Result<usize, ApiError> {
    let heard = chain.store.set_approvals(proposal.current.epoch).map_err(ApiError::internal)?;
    let set_hash = proposal.set_hash;
    Ok(heard
        .iter()
        .filter(|a| a.set_hash == set_hash)
        .filter(|a| proposal.add_approval(a.signer as usize, &a.signature))
        .count())
}

/// `POST /admin/v1/operator-sets/collect`: the proposal in the body with every approval of its
/// set this node made or heard from the other operators added (each verified). Refused (400)
/// as `approve` refuses.
pub(super) async fn collect(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Proposal>, ApiError> {
    authorize(&state, &headers)?;
    let (mut proposal, chain, _) = checked_proposal(&state, &body)?;
    merge_heard(chain, &mut proposal)?;
    Ok(Json(proposal))
}

/// `POST /admin/v1/operator-sets/approve`: the proposal in the body, with this node's approval
/// added (kept and gossiped) and every approval of its set this node heard. Refused (400, naming the problem) unless its current set is the latest one this node
/// read from the chain and it is consistent in itself; 409 when this node is not an operator of
/// that set or holds no key it registered.
pub(super) async fn approve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Proposal>, ApiError> {
    authorize(&state, &headers)?;
    let (mut proposal, chain, latest) = checked_proposal(&state, &body)?;
    let me = chain.epochs.as_ref().map(|e| e.me());
    let (index, mine) = latest
        .operators
        .iter()
        .enumerate()
        .find(|(_, o)| settleproof_p2p::PeerId::from_bytes(&o.peer_id).ok() == me)
        .ok_or_else(|| ApiError::conflict(format!("this node is not an operator of epoch {}", latest.epoch)))?;
    let keys_dir = state.keys_dir.as_ref().ok_or_else(|| ApiError::not_found("keys directory"))?;
    let keys = OperatorKeys::load(keys_dir).map_err(ApiError::internal)?;
    let key = keys.bls_keys().find(|k| k.public_key() == mine.bls).cloned().ok_or_else(|| {
        ApiError::conflict(format!("no BLS key in the keys directory is the one epoch {} registered", latest.epoch))
    })?;
    let name = mine.name.clone();
    proposal.sign(&name, &key).map_err(|e| ApiError::invalid("proposal", e.to_string()))?;
    let own = proposal.signatures.get(&name).cloned().unwrap_or_default();
    // Kept, then gossiped by the round loop's rebroadcast until the next epoch is committed.
    let index = u32::try_from(index).map_err(|_| ApiError::internal("operator index out of range"))?;
    let kept =
        chain.store.put_set_approval(latest.epoch, proposal.set_hash, index, &own).map_err(ApiError::internal)?;
    if kept == crate::store::ApprovalPut::Limit {
        return Err(ApiError::conflict(format!(
            "this node approved {} other proposals to epoch {} already, the most the other nodes keep; they are dropped when the next epoch is committed",
            crate::store::MAX_APPROVALS_PER_SIGNER,
            latest.epoch
        )));
    }
    let heard = merge_heard(chain, &mut proposal)?;
    tracing::info!(epoch = latest.epoch, next = proposal.next.epoch, change = ?proposal.change, heard, "operator set change approved through the admin API");
    Ok(Json(proposal))
}
