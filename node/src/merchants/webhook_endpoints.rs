//! Merchants' own webhook endpoints: created, changed, rotated and deleted by the merchant on
//! any node, announced on gossip (topic [`ENDPOINTS_TOPIC`] of the first chain) and kept by every
//! node, which fans the merchant's events out to them ([`crate::store::EndpointRoutes`]).
//!
//! Each change raises the record's version; every node keeps the highest (ties settled by hash)
//! and a deletion is final. Changes are announced again for [`ENDPOINT_REBROADCAST_MS`] so that a
//! node that was offline catches up. Like an API key, an endpoint is the word of the node that
//! announces it: no endpoint changes a payout address, and operators hold the merchants' data
//! already. A rotation keeps the replaced secret signing for `webhooks.secret_overlap_s`.

use super::{Registry, RegistryError};
use crate::gossip::GossipRejection;
use crate::store::{EndpointPut, PreviousSecret, PutRule, WebhookEndpoint};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use settleproof_config::Secret;
use settleproof_p2p::PeerId;
use tracing::info;

/// Topic of endpoint announcements.
pub const ENDPOINTS_TOPIC: &str = "settleproof/webhook-endpoints/1";
/// How long a change is announced again (a deletion for a week, as a key's revocation).
pub const ENDPOINT_REBROADCAST_MS: u64 = 60 * 60 * 1000;
/// How long a deletion is announced again.
pub const DELETED_REBROADCAST_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most live (not deleted) endpoints per merchant.
pub const MAX_ENDPOINTS_PER_MERCHANT: usize = 16;
/// How far an announced version may be ahead of the one held.
const MAX_VERSION_GAP: u64 = 1024;
/// How far ahead of this node's clock an announced record's times may be.
const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Most endpoint announcements made again per rebroadcast, newest changes first.
const MAX_REBROADCAST: usize = 64;

/// The event types an endpoint may ask for (`*`: all of them).
pub const EVENT_TYPES: [&str; 9] = [
    "invoice.paid",
    "invoice.underpaid",
    "invoice.overpaid",
    "invoice.paid_late",
    "invoice.expired",
    "payment.settled",
    "payment.reverted",
    "test",
    "*",
];

/// An endpoint changed, as gossiped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointAnnouncement {
    /// The endpoint's whole record.
    pub endpoint: WebhookEndpoint,
    /// Send time.
    pub sent_at_ms: u64,
}

/// What a merchant may change of an endpoint; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointEdit {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New filter.
    pub enabled_events: Option<Vec<String>>,
    /// Pause (`true`) or resume (`false`) its deliveries.
    pub disabled: Option<bool>,
}

/// Checks an endpoint's fields under the URL policy `(insecure_http, private_targets)`; names
/// the field and the fix.
pub fn endpoint_problem(e: &WebhookEndpoint, url_policy: (bool, bool)) -> Option<(&'static str, String)> {
    let id_ok = e.id.strip_prefix("we_").is_some_and(|h| h.len() == 24 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !id_ok {
        return Some(("id", "must be `we_` and 24 hex digits".into()));
    }
    if e.url.len() > 2048 {
        return Some(("url", "must be at most 2048 characters".into()));
    }
    if let Err(p) = settleproof_config::netpolicy::check_webhook_url(&e.url, url_policy.0, url_policy.1) {
        return Some(("url", p.to_string()));
    }
    if e.description.len() > 256 || e.description.chars().any(char::is_control) {
        return Some(("description", "must be at most 256 printable characters".into()));
    }
    if e.enabled_events.is_empty() || e.enabled_events.len() > EVENT_TYPES.len() {
        return Some(("enabled_events", format!("must list 1 to 9 of {}", EVENT_TYPES.join(", "))));
    }
    if let Some(bad) = e.enabled_events.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Some(("enabled_events", format!("`{bad}` is not an event type; use {}", EVENT_TYPES.join(", "))));
    }
    let secret_ok = |s: &Secret| {
        s.expose().strip_prefix("whsec_").is_some_and(|b| {
            (24..=128).contains(&b.len()) && b.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        })
    };
    if !secret_ok(&e.secret) || e.previous_secret.as_ref().is_some_and(|p| !secret_ok(&p.secret)) {
        return Some(("secret", "must be `whsec_` followed by 24 to 128 characters of base64".into()));
    }
    None
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Registry {
    /// A new endpoint of `merchant`, kept and announced; with its secret.
    pub fn create_endpoint(
        &self,
        merchant: &str,
        url: String,
        description: String,
        mut enabled_events: Vec<String>,
    ) -> Result<WebhookEndpoint, RegistryError> {
        enabled_events.sort_unstable();
        enabled_events.dedup();
        let now = now_ms();
        let endpoint = WebhookEndpoint {
            id: format!("we_{}", random_hex(12)),
            merchant_id: merchant.to_string(),
            url,
            description,
            enabled_events,
            secret: Secret::new(crate::webhook::signature::generate_secret()),
            previous_secret: None,
            disabled: false,
            deleted_at_ms: None,
            version: 1,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.check_endpoint(&endpoint)?;
        self.keep_endpoint(&endpoint, None)?;
        info!(merchant, endpoint_id = %endpoint.id, events = ?endpoint.enabled_events, "webhook endpoint created");
        Ok(endpoint)
    }

    /// Applies `edit` to endpoint `id` of `merchant` as its next version.
    pub fn edit_endpoint(
        &self,
        merchant: &str,
        id: &str,
        edit: EndpointEdit,
    ) -> Result<WebhookEndpoint, RegistryError> {
        let mut e = self.live_endpoint_of(merchant, id)?;
        if let Some(url) = edit.url {
            e.url = url;
        }
        if let Some(d) = edit.description {
            e.description = d;
        }
        if let Some(mut events) = edit.enabled_events {
            events.sort_unstable();
            events.dedup();
            e.enabled_events = events;
        }
        if let Some(d) = edit.disabled {
            e.disabled = d;
        }
        self.next_version(e)
    }

    /// A new secret for endpoint `id`; the replaced one signs too for the overlap window.
    pub fn rotate_endpoint_secret(&self, merchant: &str, id: &str) -> Result<WebhookEndpoint, RegistryError> {
        let mut e = self.live_endpoint_of(merchant, id)?;
        let until_ms = now_ms().saturating_add(self.0.secret_overlap_ms);
        e.previous_secret = Some(PreviousSecret { secret: e.secret.clone(), until_ms });
        e.secret = Secret::new(crate::webhook::signature::generate_secret());
        self.next_version(e)
    }

    /// Deletes endpoint `id` of `merchant`, for good: its waiting deliveries end.
    pub fn delete_endpoint(&self, merchant: &str, id: &str) -> Result<WebhookEndpoint, RegistryError> {
        let mut e = self.live_endpoint_of(merchant, id)?;
        e.deleted_at_ms = Some(now_ms());
        self.next_version(e)
    }

    /// The endpoints of `merchant` that are not deleted.
    pub fn endpoints_of(&self, merchant: &str) -> Result<Vec<WebhookEndpoint>, RegistryError> {
        let all = self.store()?.webhook_endpoints(Some(merchant))?;
        Ok(all.into_iter().filter(|e| e.deleted_at_ms.is_none()).collect())
    }

    /// Endpoint `id` as held here, deleted or not (the delivery worker's view).
    pub fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, crate::store::StoreError> {
        match &self.0.store {
            Some(store) => store.webhook_endpoint(id),
            None => Ok(None),
        }
    }

    /// The secrets deliveries to `e` are signed with now: its secret, and the one a rotation
    /// replaced while its overlap lasts.
    pub fn endpoint_secrets(e: &WebhookEndpoint) -> Vec<Secret> {
        let now = now_ms();
        let mut out = vec![e.secret.clone()];
        out.extend(
            e.previous_secret.iter().filter(|p| p.until_ms > now && p.secret != e.secret).map(|p| p.secret.clone()),
        );
        out
    }

    fn live_endpoint_of(&self, merchant: &str, id: &str) -> Result<WebhookEndpoint, RegistryError> {
        self.store()?
            .webhook_endpoint(id)?
            .filter(|e| e.merchant_id == merchant && e.deleted_at_ms.is_none())
            .ok_or_else(|| RegistryError::UnknownMerchant(format!("{merchant}'s webhook endpoint {id}")))
    }

    fn next_version(&self, mut e: WebhookEndpoint) -> Result<WebhookEndpoint, RegistryError> {
        let over = e.version;
        e.version = e.version.checked_add(1).ok_or_else(|| RegistryError::Conflict("version exhausted".into()))?;
        e.updated_at_ms = now_ms().max(e.updated_at_ms);
        self.check_endpoint(&e)?;
        self.keep_endpoint(&e, Some(over))?;
        info!(merchant = %e.merchant_id, endpoint_id = %e.id, version = e.version, deleted = e.deleted_at_ms.is_some(), "webhook endpoint changed");
        Ok(e)
    }

    fn check_endpoint(&self, e: &WebhookEndpoint) -> Result<(), RegistryError> {
        match endpoint_problem(e, self.0.url_policy) {
            Some((field, problem)) => Err(RegistryError::Invalid { field, problem }),
            None => Ok(()),
        }
    }

    /// Keeps a change made on this node over version `over` (`None`: a new endpoint).
    fn keep_endpoint(&self, e: &WebhookEndpoint, over: Option<u64>) -> Result<(), RegistryError> {
        let rule = PutRule { max_live: MAX_ENDPOINTS_PER_MERCHANT, local_over: Some(over) };
        match self.store()?.put_webhook_endpoint(e, rule)? {
            EndpointPut::Changed => {}
            EndpointPut::Full => {
                return Err(RegistryError::Conflict(format!(
                    "the merchant has {MAX_ENDPOINTS_PER_MERCHANT} endpoints, the most kept: delete one first"
                )));
            }
            EndpointPut::Known | EndpointPut::Clash | EndpointPut::Moved => {
                return Err(RegistryError::Conflict("the endpoint changed meanwhile; read it and try again".into()));
            }
        }
        self.refresh_routes();
        self.announce_endpoint(e);
        Ok(())
    }

    /// Rebuilds the outbox routes from the endpoints held.
    pub(super) fn refresh_routes(&self) {
        if let Some(store) = &self.0.store
            && let Ok(all) = store.webhook_endpoints(None)
        {
            self.0.routes.set(&all);
        }
    }

    fn announce_endpoint(&self, e: &WebhookEndpoint) {
        let Some(net) = self.0.net.get().cloned() else { return };
        let data =
            serde_json::to_vec(&EndpointAnnouncement { endpoint: e.clone(), sent_at_ms: now_ms() }).unwrap_or_default();
        tokio::spawn(async move {
            if let Err(err) = net.publish(ENDPOINTS_TOPIC, data).await {
                tracing::debug!(error = %err, "endpoint announcement not published yet; will rebroadcast");
            }
        });
    }

    /// Announces again the endpoints changed lately, at most [`MAX_REBROADCAST`] of them,
    /// newest changes first (a node that misses the rest gets them by catch-up on connect).
    pub fn rebroadcast_endpoints(&self) {
        let Ok(store) = self.store() else { return };
        let now = now_ms();
        let mut recent: Vec<WebhookEndpoint> = store
            .webhook_endpoints(None)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                let window = if e.deleted_at_ms.is_some() { DELETED_REBROADCAST_MS } else { ENDPOINT_REBROADCAST_MS };
                now.saturating_sub(e.updated_at_ms) < window
            })
            .collect();
        recent.sort_by_key(|e| std::cmp::Reverse(e.updated_at_ms));
        for e in recent.iter().take(MAX_REBROADCAST) {
            self.announce_endpoint(e);
        }
    }

    /// An endpoint announcement heard from `source`: kept when its fields are valid under this
    /// node's URL policy, its merchant is in the registry, and it is newer than the record held.
    /// `Ok` with whether it changed anything.
    pub fn hear_endpoint(&self, data: &[u8], source: &PeerId) -> Result<bool, GossipRejection> {
        let mut a: EndpointAnnouncement =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let Some(store) = &self.0.store else { return Ok(false) };
        let bad = |m: String| GossipRejection::Malformed(format!("webhook endpoint: {m}"));
        // What no node would send is refused; a URL only this node's stricter policy refuses
        // is ignored (the announcer is not at fault).
        if let Some((field, problem)) = endpoint_problem(&a.endpoint, (true, true)) {
            return Err(bad(format!("{field} {problem}")));
        }
        if let Some((field, problem)) = endpoint_problem(&a.endpoint, self.0.url_policy) {
            tracing::debug!(endpoint_id = %a.endpoint.id, field, problem, "webhook endpoint outside this node's URL policy: ignored");
            return Ok(false);
        }
        let ahead = now_ms().saturating_add(MAX_CLOCK_SKEW_MS);
        if a.endpoint.updated_at_ms > ahead || a.endpoint.created_at_ms > ahead {
            tracing::debug!(endpoint_id = %a.endpoint.id, "webhook endpoint dated in the future: ignored");
            return Ok(false);
        }
        // A deletion counts from when this node heard it, so it is announced on for its week.
        if a.endpoint.deleted_at_ms.is_some() {
            a.endpoint.updated_at_ms = now_ms();
        }
        let entries = store.registry_entries().map_err(|e| bad(e.to_string()))?;
        if !entries.iter().any(|e| e.change.merchant.id == a.endpoint.merchant_id) {
            return Ok(false);
        }
        let held = store.webhook_endpoint(&a.endpoint.id).map_err(|e| bad(e.to_string()))?;
        // Far ahead of the version held here: a deletion is taken whatever its version (it is
        // final); a change is left for a catch-up rather than blamed on the announcer.
        let gap_from = held.as_ref().map_or(0, |h| h.version);
        if a.endpoint.deleted_at_ms.is_none() && a.endpoint.version > gap_from.saturating_add(MAX_VERSION_GAP) {
            tracing::debug!(endpoint_id = %a.endpoint.id, version = a.endpoint.version, "webhook endpoint version far ahead: ignored");
            return Ok(false);
        }
        let rule = PutRule { max_live: MAX_ENDPOINTS_PER_MERCHANT, local_over: None };
        match store.put_webhook_endpoint(&a.endpoint, rule).map_err(|e| bad(e.to_string()))? {
            EndpointPut::Changed => {
                info!(peer = %source, merchant = %a.endpoint.merchant_id, endpoint_id = %a.endpoint.id, version = a.endpoint.version, "webhook endpoint heard");
                self.refresh_routes();
                Ok(true)
            }
            EndpointPut::Known | EndpointPut::Full | EndpointPut::Moved => Ok(false),
            EndpointPut::Clash => Err(bad("its id belongs to another merchant's endpoint".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(to: &Registry, e: &WebhookEndpoint) -> Result<bool, GossipRejection> {
        let data = serde_json::to_vec(&EndpointAnnouncement { endpoint: e.clone(), sent_at_ms: 1 }).expect("json");
        to.hear_endpoint(&data, &PeerId::random())
    }

    #[test]
    fn an_endpoint_changed_on_one_node_is_routed_on_another_and_a_deletion_is_final() {
        let (_dirs, nodes) = super::super::api_keys::tests::registries();
        let url = "https://example.test/hook".to_string();
        let e = nodes[0].create_endpoint("demo", url, "ops".into(), vec!["invoice.paid".into()]).expect("create");
        assert!(e.secret.expose().starts_with("whsec_"));
        assert_eq!(nodes[0].routes().targets("demo", "invoice.paid"), vec![e.id.clone()]);
        assert!(nodes[1].routes().targets("demo", "invoice.paid").is_empty());
        assert!(relay(&nodes[1], &e).expect("heard"));
        assert_eq!(nodes[1].routes().targets("demo", "invoice.paid"), vec![e.id.clone()]);
        let edit = EndpointEdit { enabled_events: Some(vec!["test".into()]), ..EndpointEdit::default() };
        let edited = nodes[0].edit_endpoint("demo", &e.id, edit).expect("edit");
        assert_eq!(edited.version, 2);
        assert!(relay(&nodes[1], &edited).expect("heard"));
        assert!(!relay(&nodes[1], &e).expect("heard"), "the older version stays out");
        assert!(nodes[1].routes().targets("demo", "invoice.paid").is_empty());
        let rotated = nodes[0].rotate_endpoint_secret("demo", &e.id).expect("rotate");
        assert_eq!(Registry::endpoint_secrets(&rotated), vec![rotated.secret.clone(), e.secret.clone()]);
        let deleted = nodes[0].delete_endpoint("demo", &e.id).expect("delete");
        assert!(relay(&nodes[1], &deleted).expect("heard"));
        let revived = WebhookEndpoint { deleted_at_ms: None, version: deleted.version + 1, ..deleted.clone() };
        assert!(!relay(&nodes[1], &revived).expect("heard"), "a deletion is final");
        assert!(nodes[1].routes().targets("demo", "test").is_empty());
        assert!(nodes[1].endpoints_of("demo").expect("list").is_empty());
        let err = nodes[0].edit_endpoint("demo", &e.id, EndpointEdit::default()).expect_err("deleted");
        assert!(matches!(err, RegistryError::UnknownMerchant(_)), "{err}");
    }

    #[test]
    fn endpoints_no_node_would_make_are_refused_naming_the_field() {
        let (_dirs, nodes) = super::super::api_keys::tests::registries();
        let e = nodes[0]
            .create_endpoint("demo", "https://example.test/hook".into(), String::new(), vec!["*".into()])
            .expect("create");
        let cases = [
            (WebhookEndpoint { id: "we_x".into(), ..e.clone() }, "id"),
            (WebhookEndpoint { url: "ftp://example.test".into(), ..e.clone() }, "url"),
            (WebhookEndpoint { enabled_events: vec!["invoice.refunded".into()], ..e.clone() }, "enabled_events"),
            (WebhookEndpoint { enabled_events: Vec::new(), ..e.clone() }, "enabled_events"),
            (WebhookEndpoint { description: "\u{7}".into(), ..e.clone() }, "description"),
            (WebhookEndpoint { secret: Secret::new("short"), ..e.clone() }, "secret"),
        ];
        for (bad, field) in cases {
            assert_eq!(endpoint_problem(&bad, (true, true)).map(|p| p.0), Some(field));
            assert!(relay(&nodes[1], &bad).is_err(), "{field}");
        }
        let far = WebhookEndpoint { version: 5000, ..e.clone() };
        assert!(!relay(&nodes[1], &far).expect("ignored"), "a version far ahead is left for a catch-up");
        let future = WebhookEndpoint { updated_at_ms: u64::MAX, ..e.clone() };
        assert!(!relay(&nodes[1], &future).expect("ignored"), "a record dated in the future");
        assert!(nodes[1].endpoints_of("demo").expect("list").is_empty());
        let ghost = WebhookEndpoint { merchant_id: "ghost".into(), ..e.clone() };
        assert!(!relay(&nodes[1], &ghost).expect("ignored"), "a merchant not known here (yet)");
        let err = nodes[0]
            .create_endpoint("demo", "https://example.test/hook".into(), String::new(), vec!["nope".into()])
            .expect_err("bad filter");
        assert!(matches!(err, RegistryError::Invalid { field: "enabled_events", .. }), "{err}");
        for _ in 1..MAX_ENDPOINTS_PER_MERCHANT {
            nodes[0]
                .create_endpoint("demo", "https://example.test/h".into(), String::new(), vec!["*".into()])
                .expect("room");
        }
        let err = nodes[0]
            .create_endpoint("demo", "https://example.test/h".into(), String::new(), vec!["*".into()])
            .expect_err("full");
        assert!(matches!(err, RegistryError::Conflict(_)), "{err}");
        // A deleted endpoint frees its place.
        nodes[0].delete_endpoint("demo", &e.id).expect("delete");
        nodes[0]
            .create_endpoint("demo", "https://example.test/h".into(), String::new(), vec!["*".into()])
            .expect("room again");
    }
}
