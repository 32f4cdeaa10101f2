//! `GET /health/ready`: per-dependency status. A node is `ready` when every dependency is fine,
//! `degraded` when it still works with less margin (a provider down while the quorum holds, a
//! peer missing while a signing quorum is reachable), and `not_ready` (503) when it cannot
//! attest: store failing, provider quorum lost, or too few peers to ever reach the threshold.

use super::ApiState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use settleproof_p2p::NetworkHandle;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Degraded,
    Failing,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Degraded => "degraded",
            Level::Failing => "failing",
        }
    }
}

pub(super) async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let mut worst = Level::Ok;
    let mut checks = serde_json::Map::new();
    let mut put = |name: &str, level: Level, mut detail: Value| {
        worst = worst.max(level);
        detail["status"] = json!(level.name());
        checks.insert(name.to_string(), detail);
    };

    if let Some(h) = &state.halt {
        let reason = h.reason();
        put(
            "settlement",
            if reason.is_some() { Level::Failing } else { Level::Ok },
            json!({ "halted": reason.is_some(), "halt": reason }),
        );
    }
    let checkpoint = state.store.checkpoint();
    put("store", if checkpoint.is_ok() { Level::Ok } else { Level::Failing }, json!({}));

    if let Some(w) = &state.watcher {
        let r = w.report();
        let level = if r.last_error.is_some() || r.last_ok_ms == 0 { Level::Failing } else { Level::Ok };
        put(
            "chain",
            level,
            json!({"head": r.head, "checkpoint": checkpoint.ok().flatten(), "last_ok_ms": r.last_ok_ms, "error": r.last_error}),
        );
    }
    if let Some(chain) = &state.chain {
        let providers = chain.provider_status();
        let healthy = providers.iter().filter(|p| p.breaker == "closed").count();
        let quorum = chain.rpc_quorum();
        let level = if healthy < quorum {
            Level::Failing
        } else if healthy < providers.len() {
            Level::Degraded
        } else {
            Level::Ok
        };
        put("providers", level, json!({"quorum": quorum, "healthy": healthy, "providers": providers}));
    }
    let peers = state.net.as_ref().map_or(0, NetworkHandle::connected_peers);
    let expected = state.operators.saturating_sub(1);
    let needed = state.threshold.saturating_sub(1);
    metrics::gauge!("peers_connected").set(peers as f64);
    let level = if peers < needed {
        Level::Failing
    } else if peers < expected {
        Level::Degraded
    } else {
        Level::Ok
    };
    put("peers", level, json!({"connected": peers, "expected": expected, "needed": needed}));

    let (status, code) = match worst {
        Level::Ok => ("ready", StatusCode::OK),
        Level::Degraded => ("degraded", StatusCode::OK),
        Level::Failing => ("not_ready", StatusCode::SERVICE_UNAVAILABLE),
    };
    (code, Json(json!({"status": status, "checks": checks})))
}
