//! The status page served at `/` (static HTML that polls `/status.json`) and its data: health,
//! peers, rounds, recent settlements and alerts. Nothing secret is shown.

use super::ApiState;
use super::health;
use axum::Json;
use axum::extract::State;
use axum::response::Html;
use serde_json::{Value, json};

pub(super) async fn page() -> Html<&'static str> {
    Html(include_str!("status.html"))
}

/// The status data, computed at most once per `api.status_cache_ms`.
pub(super) async fn data(State(state): State<ApiState>) -> Json<Value> {
    Json(state.answers.status.clone().get_or(compute(state)).await)
}

async fn compute(state: ApiState) -> Value {
    let (_, Json(h)) = health::ready(State(state.clone())).await;
    let mut settlements: Vec<(u64, Value)> = Vec::new();
    for chain in state.chains.iter() {
        settlements.extend(chain.store.recent_settlements(10).unwrap_or_default().into_iter().map(|s| {
            let at = s.block_number;
            let v = json!({
                "chain_id": chain.chain_id,
                "round": s.round,
                "root": s.root.to_string(),
                "signers": s.signer_bitmap.count_ones(),
                "block_number": s.block_number,
                "tx_hash": s.tx_hash.to_string(),
            });
            (at, v)
        }));
    }
    // Newest first per chain; chains interleaved by position (block numbers of two chains
    // do not compare).
    let settlements: Vec<Value> =
        settlements.into_iter().map(|(_, v)| v).take(10 * state.chains.iter().count()).collect();
    let mut alerts = Vec::new();
    let mut chains = Vec::new();
    for (chain, health) in state.chains.iter().zip(h["chains"].as_array().cloned().unwrap_or_default()) {
        let label = format!("{} ({})", chain.name, chain.chain_id);
        if let Some(r) = chain.halt.as_ref().and_then(|h| h.reason()) {
            alerts.push(format!("{label}: settlement halted: {} ({})", r.invariant, r.detail));
        }
        if let Some(checks) = health["checks"].as_object() {
            for (name, c) in checks {
                if c["status"] != "ok" && name != "settlement" {
                    alerts.push(format!("{label}: {name} is {}", c["status"].as_str().unwrap_or("?")));
                }
            }
        }
        chains.push(json!({
            "chain_id": chain.chain_id,
            "name": chain.name,
            "status": health["status"],
            "next_round": chain.store.next_round().unwrap_or_default(),
            "webhook_backlog": chain.store.pending_count().ok(),
            "head": health["checks"]["chain"]["head"],
            "checkpoint": health["checks"]["chain"]["checkpoint"],
        }));
    }
    let first = state.chains.first();
    json!({
        "node": state.node_name,
        "operator": state.node_name,
        "health": h,
        "next_round": first.store.next_round().unwrap_or_default(),
        "webhook_backlog": state.chains.iter().filter_map(|c| c.store.pending_count().ok()).sum::<u64>(),
        "chains": chains,
        "settlements": settlements,
        "alerts": alerts,
    })
}
