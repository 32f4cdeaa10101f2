//! Where a delivery goes and whether its endpoint takes deliveries now: the registry's primary
//! endpoint of the merchant (delivery state keyed by the merchant id), or one of the merchant's
//! own endpoints (keyed `<merchant>/<endpoint id>`, [`crate::store::endpoint_state_key`]). Each
//! endpoint pauses on its own: disabled by the merchant, or by the worker after a 410 or failing
//! for `webhooks.disable_after_s`. A merchant's change to an endpoint made after the worker
//! disabled it re-enables it.

use crate::merchants::Registry;
use crate::store::{EndpointState, OutboxEvent, Store};
use settleproof_config::{MerchantConfig, Secret};
use tracing::info;

/// An endpoint to POST to.
#[derive(Debug)]
pub struct Target {
    /// Its URL.
    pub url: String,
    /// The secrets signing each delivery (two during a rotation's overlap).
    pub secrets: Vec<Secret>,
    /// The key of its delivery state.
    pub state_key: String,
    /// The merchant's filter, for its own endpoints (`None`: the primary one takes all).
    pub filter: Option<Vec<String>>,
}

/// Where a delivery goes.
#[derive(Debug)]
pub enum Resolved {
    /// There.
    Send(Target),
    /// Its endpoint was deleted (or is not the merchant's): the delivery ends.
    Gone,
    /// The store could not say: try again later.
    Unknown(String),
}

/// Where `event` of `merchant` goes.
pub fn target(merchants: &Registry, merchant: &MerchantConfig, event: &OutboxEvent) -> Resolved {
    let Some(id) = &event.endpoint_id else {
        return Resolved::Send(Target {
            url: merchant.webhook_url.clone(),
            secrets: merchants.signing_secrets(merchant),
            state_key: merchant.id.clone(),
            filter: None,
        });
    };
    match merchants.endpoint(id) {
        Err(e) => Resolved::Unknown(e.to_string()),
        Ok(Some(e)) if e.deleted_at_ms.is_none() && e.merchant_id == merchant.id => Resolved::Send(Target {
            secrets: Registry::endpoint_secrets(&e),
            state_key: e.state_key(),
            filter: Some(e.enabled_events),
            url: e.url,
        }),
        Ok(_) => Resolved::Gone,
    }
}

/// The delivery state keys of every endpoint that takes no deliveries now (the endpoints from
/// the in-memory routes, one store read of each state).
pub fn paused(merchants: &Registry, store: &Store) -> Vec<String> {
    let disabled = |key: &str| store.endpoint(key).unwrap_or_default();
    let mut out = Vec::new();
    let served: std::collections::HashSet<String> = merchants.list().iter().map(|m| m.id.clone()).collect();
    for id in &served {
        if disabled(id).disabled {
            out.push(id.clone());
        }
    }
    for e in merchants.routes().live().iter().filter(|e| served.contains(&e.merchant_id)) {
        let key = e.state_key();
        let state = disabled(&key);
        let changed_since = state.disabled_at_ms.is_some_and(|at| e.updated_at_ms > at);
        if state.disabled && changed_since && !e.disabled {
            if store.set_endpoint(&key, &EndpointState::default()).is_ok() {
                info!(merchant = %e.merchant_id, endpoint_id = %e.id, "webhook endpoint re-enabled by the merchant's change");
            }
        } else if state.disabled || e.disabled {
            out.push(key);
        }
    }
    out
}
