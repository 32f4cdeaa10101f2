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
}

/// Where `event` of `merchant` goes; `None` when its endpoint was deleted (or is not the
/// merchant's): the delivery then ends.
pub fn target(merchants: &Registry, merchant: &MerchantConfig, event: &OutboxEvent) -> Option<Target> {
    let Some(id) = &event.endpoint_id else {
        return Some(Target {
            url: merchant.webhook_url.clone(),
            secrets: merchants.signing_secrets(merchant),
            state_key: merchant.id.clone(),
        });
    };
    let e = merchants.endpoint(id).filter(|e| e.deleted_at_ms.is_none() && e.merchant_id == merchant.id)?;
    Some(Target { secrets: Registry::endpoint_secrets(&e), state_key: e.state_key(), url: e.url })
}

/// The delivery state keys of every endpoint that takes no deliveries now.
pub fn paused(merchants: &Registry, store: &Store) -> Vec<String> {
    let disabled = |key: &str| store.endpoint(key).unwrap_or_default();
    let mut out = Vec::new();
    for m in merchants.list().iter() {
        if disabled(&m.id).disabled {
            out.push(m.id.clone());
        }
        for e in merchants.endpoints_of(&m.id).unwrap_or_default() {
            let key = e.state_key();
            let state = disabled(&key);
            let changed_since = state.disabled_at_ms.is_some_and(|at| e.updated_at_ms > at);
            if state.disabled && changed_since && !e.disabled {
                if store.set_endpoint(&key, &EndpointState::default()).is_ok() {
                    info!(merchant = %m.id, endpoint_id = %e.id, "webhook endpoint re-enabled by the merchant's change");
                }
            } else if state.disabled || e.disabled {
                out.push(key);
            }
        }
    }
    out
}
