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
    let settlements: Vec<Value> = state
        .store
        .recent_settlements(10)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            json!({
                "round": s.round,
                "root": s.root.to_string(),
                "signers": s.signer_bitmap.count_ones(),
                "block_number": s.block_number,
                "tx_hash": s.tx_hash.to_string(),
            })
        })
        .collect();
    let mut alerts = Vec::new();
    if let Some(r) = state.halt.as_ref().and_then(|h| h.reason()) {
        alerts.push(format!("settlement halted: {} ({})", r.invariant, r.detail));
    }
    if let Some(checks) = h["checks"].as_object() {
        for (name, c) in checks {
            if c["status"] != "ok" && name != "settlement" {
                alerts.push(format!("{name} is {}", c["status"].as_str().unwrap_or("?")));
            }
        }
    }
    json!({
        "node": state.node_name,
        "operator": state.node_name,
        "health": h,
        "next_round": state.store.next_round().unwrap_or_default(),
        "webhook_backlog": state.store.pending_count().ok(),
        "settlements": settlements,
        "alerts": alerts,
    })
}
