//! `GET /health/ready`: per-dependency status of every chain, and of the node as a whole, and
//! the network's `audience` (the `aud` a merchant signs its requests for) with
//! `audience_optional_before_s` (the upgrade day: until it, JWTs signed before it without `aud`
//! are taken; or `null`), for operators to compare across nodes.
//!
//! A chain is `ok` when every dependency is fine, `degraded` when it still works with less
//! margin (a provider down while the quorum holds, a peer missing while a signing quorum is
//! reachable), and `failing` when it cannot attest: store failing, provider quorum lost, chain
//! reads stale, settlement halted, or too few peers to ever reach the threshold.
//!
//! The node is `ready` when every chain is `ok`, `degraded` while at least one chain can settle
//! and another is failing or degraded (`checks.chains.failing` names them), and `not_ready`
//! (503) only when no chain can settle. Every probe that waits on something has a 2 s timeout.

use super::ApiState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use settleproof_p2p::NetworkHandle;

/// Timeout of each probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Chain reads older than this make the node not ready.
const HEAD_STALE_MS: u64 = 30_000;
/// Undelivered webhook events above which the node reports degraded.
const WEBHOOK_BACKLOG_WARN: u64 = 1000;

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

/// The readiness answer, computed at most once per `api.status_cache_ms`.
pub(super) async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let (code, body) = state.answers.ready.clone().get_or(compute(state)).await;
    (code, Json(body))
}

async fn compute(state: ApiState) -> (StatusCode, Value) {
    let peers = state.net.as_ref().map_or(0, NetworkHandle::connected_peers);
    metrics::gauge!("peers_connected").set(peers as f64);
    // Which peers: the swarm admits every chain's operators, and each chain counts its own.
    let connected: Option<Vec<settleproof_p2p::PeerId>> = match &state.net {
        Some(net) => tokio::time::timeout(PROBE_TIMEOUT, net.connected()).await.ok(),
        None => None,
    };
    let mut chains = Vec::new();
    let (mut healthy, mut failing, mut worst) = (Vec::new(), Vec::new(), Level::Ok);
    for chain in state.chains.iter() {
        let here = connected.as_ref().map_or(peers, |c| chain.connected_operators(c));
        let (level, checks) = chain_checks(chain, here).await;
        worst = worst.max(level);
        let label = format!("{} ({})", chain.chain_id, chain.name);
        if level == Level::Failing {
            failing.push(label)
        } else {
            healthy.push(label)
        }
        chains.push(json!({
            "chain_id": chain.chain_id,
            "name": chain.name,
            "status": level.name(),
            "checks": checks,
        }));
    }
    // Ready while every chain is fine; degraded while at least one chain can settle and any
    // is failing or short of margin; not ready only when no chain can settle.
    let (status, code) = if healthy.is_empty() {
        ("not_ready", StatusCode::SERVICE_UNAVAILABLE)
    } else if worst == Level::Ok {
        ("ready", StatusCode::OK)
    } else {
        ("degraded", StatusCode::OK)
    };
    let summary = json!({
        "status": if healthy.is_empty() { "failing" } else if failing.is_empty() { "ok" } else { "degraded" },
        "healthy": healthy,
        "failing": failing,
        "peers_connected": peers,
    });
    let body = json!({
        "status": status,
        "audience": state.merchants.audience(),
        "audience_optional_before_s": state.merchants.audience_optional_before_s(),
        "checks": { "chains": summary },
        "chains": chains,
    });
    (code, body)
}

/// One chain's checks and their worst level; `peers`: its operators connected.
async fn chain_checks(chain: &super::ChainState, peers: usize) -> (Level, serde_json::Map<String, Value>) {
    let mut worst = Level::Ok;
    let mut checks = serde_json::Map::new();
    let mut put = |name: &str, level: Level, mut detail: Value| {
        worst = worst.max(level);
        detail["status"] = json!(level.name());
        checks.insert(name.to_string(), detail);
    };
    let chain_id = chain.chain_id.to_string();

    if let Some(h) = &chain.halt {
        let reason = h.reason();
        put(
            "settlement",
            if reason.is_some() { Level::Failing } else { Level::Ok },
            json!({ "halted": reason.is_some(), "halt": reason }),
        );
    }
    let store = chain.store.clone();
    let probe = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::task::spawn_blocking(move || (store.checkpoint(), store.pending_count())),
    );
    let (checkpoint, backlog) = match probe.await {
        Ok(Ok((c, b))) => (c.ok().flatten(), b.ok()),
        _ => (None, None),
    };
    put("store", if backlog.is_some() { Level::Ok } else { Level::Failing }, json!({}));
    let backlog_level = match backlog {
        Some(n) if n > WEBHOOK_BACKLOG_WARN => Level::Degraded,
        Some(_) => Level::Ok,
        None => Level::Failing,
    };
    metrics::gauge!("webhook_backlog", "chain_id" => chain_id.clone()).set(backlog.unwrap_or(0) as f64);
    put("webhooks", backlog_level, json!({ "pending": backlog }));

    if let Some(w) = &chain.watcher {
        let r = w.report();
        let age_ms = crate::time::now_ms().saturating_sub(r.last_ok_ms);
        let stale = r.last_ok_ms == 0 || age_ms > HEAD_STALE_MS;
        let level = if r.last_error.is_some() || stale { Level::Failing } else { Level::Ok };
        put(
            "chain",
            level,
            json!({"head": r.head, "checkpoint": checkpoint, "last_ok_ms": r.last_ok_ms, "age_ms": age_ms, "error": r.last_error}),
        );
    }
    if let Some(client) = &chain.chain {
        let providers = client.provider_status();
        let healthy = providers.iter().filter(|p| p.breaker == "closed").count();
        let quorum = client.rpc_quorum();
        let level = if healthy < quorum {
            Level::Failing
        } else if healthy < providers.len() {
            Level::Degraded
        } else {
            Level::Ok
        };
        put("providers", level, json!({"quorum": quorum, "healthy": healthy, "providers": providers}));
        let (level, detail) = match tokio::time::timeout(PROBE_TIMEOUT, client.balance()).await {
            Ok(Ok(b)) if b < alloy::primitives::U256::from(chain.min_balance_wei) => (
                Level::Degraded,
                json!({"balance_wei": b.to_string(), "min_wei": chain.min_balance_wei.to_string(), "note": "keeper turns are handed over"}),
            ),
            Ok(Ok(b)) => (Level::Ok, json!({"balance_wei": b.to_string()})),
            Ok(Err(e)) => (Level::Degraded, json!({"error": e.to_string()})),
            Err(_) => (Level::Degraded, json!({"error": "timed out"})),
        };
        put("keeper_balance", level, detail);
    }
    let (operators, threshold) = chain.set_size();
    let expected = operators.saturating_sub(1);
    let needed = threshold.saturating_sub(1);
    let level = if peers < needed {
        Level::Failing
    } else if peers < expected {
        Level::Degraded
    } else {
        Level::Ok
    };
    put("peers", level, json!({"connected": peers, "expected": expected, "needed": needed}));
    (worst, checks)
}
