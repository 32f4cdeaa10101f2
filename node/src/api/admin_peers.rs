//! Peer control of the admin API: which peer this node is, how many operators it is connected
//! to, and blocking or unblocking one operator's peer (to cut a link during an incident or a
//! partition drill; a block lasts until unblocked or the node restarts).

use super::admin::authorize;
use super::{ApiError, ApiState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use settleproof_p2p::{NetworkHandle, PeerId};

fn net_of(state: &ApiState) -> Result<&NetworkHandle, ApiError> {
    state.net.as_ref().ok_or_else(|| ApiError::not_found("peer network"))
}

fn peer_of(body: &[u8]) -> Result<PeerId, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("{e}; expected {{\"peer_id\": \"12D3KooW...\"}}")))?;
    let text = v["peer_id"]
        .as_str()
        .ok_or_else(|| ApiError::invalid("peer_id", "peer_id is required: an operator's libp2p peer id"))?;
    text.parse().map_err(|_| {
        ApiError::invalid("peer_id", "peer_id is not a libp2p peer id; copy it from [[network.operators]] peer_id")
    })
}

/// `GET /admin/v1/peers`
pub(super) async fn peers(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let net = net_of(&state)?;
    let scores: serde_json::Map<String, Value> =
        net.scores().await.into_iter().map(|(p, s)| (p.to_string(), json!(s))).collect();
    Ok(Json(json!({
        "local_peer_id": net.local_peer_id().to_string(),
        "connected": net.connected_peers(),
        "operators": state.chains.first().set_size().0,
        "scores": scores,
    })))
}

/// `POST /admin/v1/peers/block` with `{"peer_id": ...}`
pub(super) async fn block(state: State<ApiState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    set_link(state, headers, body, true).await
}

/// `POST /admin/v1/peers/unblock` with `{"peer_id": ...}`
pub(super) async fn unblock(state: State<ApiState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    set_link(state, headers, body, false).await
}

async fn set_link(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
    block: bool,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let peer = peer_of(&body)?;
    let net = net_of(&state)?;
    if block {
        tracing::warn!(%peer, "peer blocked by an operator");
        net.block(peer).await;
        Ok(Json(json!({ "blocked": peer.to_string() })))
    } else {
        tracing::info!(%peer, "peer unblocked by an operator");
        net.unblock(peer).await;
        Ok(Json(json!({ "unblocked": peer.to_string() })))
    }
}
