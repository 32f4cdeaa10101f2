//! Merchants' own webhook endpoints, beside the registry's primary one: each with its URL,
//! `enabled_events` filter and secret, created, changed and deleted by the merchant on any node
//! and replicated to all (see `crate::merchants::webhook_endpoints`).
//!
//! A record is replaced only by a higher version (a tie between two different records of one
//! version is settled by their hashes, so every node keeps the same one); a deletion is final.
//! [`EndpointRoutes`] is the live map the outbox fans events out with: every event of a merchant
//! gets one delivery per endpoint whose filter takes its type, with its own retry schedule,
//! dead-letter state and disablement (delivery id `<webhook-id>.<endpoint id>`).

use super::{PreviousSecret, Store, StoreError, WEBHOOK_ENDPOINTS, decode, encode};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use settleproof_config::Secret;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One endpoint of a merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Its id: `we_` and 24 hex digits.
    pub id: String,
    /// The merchant.
    pub merchant_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// What the merchant wrote about it.
    pub description: String,
    /// Event types delivered to it, or `*` for all.
    pub enabled_events: Vec<String>,
    /// The secret deliveries are signed with.
    pub secret: Secret,
    /// The secret a rotation replaced, signing too until its time.
    pub previous_secret: Option<PreviousSecret>,
    /// Paused by the merchant: its deliveries wait.
    pub disabled: bool,
    /// When it was deleted: its waiting deliveries end, and it never comes back.
    pub deleted_at_ms: Option<u64>,
    /// Raised by every change.
    pub version: u64,
    /// When it was created.
    pub created_at_ms: u64,
    /// When this version was made.
    pub updated_at_ms: u64,
}

impl WebhookEndpoint {
    /// Whether events of `event_type` go to it.
    pub fn takes(&self, event_type: &str) -> bool {
        takes(&self.enabled_events, event_type)
    }

    /// The key of its delivery state (disablement) among the merchant's endpoints.
    pub fn state_key(&self) -> String {
        endpoint_state_key(&self.merchant_id, &self.id)
    }

    fn hash(&self) -> [u8; 32] {
        alloy::primitives::keccak256(encode(self)).0
    }
}

/// The invoice events a settled payment can make: a bare `payment.settled` (the node did not
/// hold the invoice yet) becomes one of them before delivery, so it goes wherever they go, and
/// a filter of `payment.settled` takes them all.
const PAYMENT_EVENTS: [&str; 4] = ["invoice.paid", "invoice.underpaid", "invoice.overpaid", "invoice.paid_late"];

/// Whether a filter of `enabled_events` takes `event_type`. A delivery queued for a bare
/// `payment.settled` is checked again once it is rendered as its invoice's event.
pub fn takes(enabled_events: &[String], event_type: &str) -> bool {
    let payment_event = PAYMENT_EVENTS.contains(&event_type);
    enabled_events.iter().any(|e| {
        e == "*"
            || e == event_type
            || (e == "payment.settled" && payment_event)
            || (event_type == "payment.settled" && PAYMENT_EVENTS.contains(&e.as_str()))
    })
}

/// The delivery state key of endpoint `id` of `merchant` (`merchant_endpoints`); the primary
/// endpoint's is the merchant id alone.
pub fn endpoint_state_key(merchant: &str, id: &str) -> String {
    format!("{merchant}/{id}")
}

/// What became of an endpoint record offered to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointPut {
    /// Kept: new, newer, or its deletion.
    Changed,
    /// Nothing new (an older or equal version, or the endpoint is deleted).
    Known,
    /// Another merchant's endpoint has this id: refused.
    Clash,
    /// A new endpoint of a merchant that has the most live endpoints kept: refused.
    Full,
    /// A local change made over a version that is no longer the one held: refused (409).
    Moved,
}

/// Most endpoint records kept per merchant, deleted ones included.
pub const MAX_RECORDS_PER_MERCHANT: usize = 128;

/// How [`Store::put_webhook_endpoint`] decides beyond versions.
#[derive(Debug, Clone, Copy)]
pub struct PutRule {
    /// Most live (not deleted) endpoints a merchant may have.
    pub max_live: usize,
    /// For a change made on this node: the version it was made over, which must be the one
    /// held (`None` for a new endpoint, which must not exist). `None` for gossip.
    pub local_over: Option<Option<u64>>,
}

/// The live routes of the outbox: by merchant, its endpoints that are not deleted. Shared by
/// every chain's store of a node, kept current by the registry, and read by the delivery
/// workers on each pass (no store read).
#[derive(Debug, Clone, Default)]
pub struct EndpointRoutes(Arc<RwLock<RouteMap>>);

/// Merchant → its live endpoints.
type RouteMap = HashMap<String, Vec<WebhookEndpoint>>;

impl EndpointRoutes {
    /// Replaces the routes with `endpoints`' (deleted ones left out).
    pub fn set(&self, endpoints: &[WebhookEndpoint]) {
        let mut map = RouteMap::new();
        for e in endpoints.iter().filter(|e| e.deleted_at_ms.is_none()) {
            map.entry(e.merchant_id.clone()).or_default().push(e.clone());
        }
        // A poisoned lock held a whole map; it is replaced whole.
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    /// Every live endpoint.
    pub fn live(&self) -> Vec<WebhookEndpoint> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().flatten().cloned().collect()
    }

    /// Whether `merchant` has live endpoints of its own.
    pub fn has_endpoints(&self, merchant: &str) -> bool {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(merchant).is_some_and(|e| !e.is_empty())
    }

    /// The endpoints of `merchant` that take `event_type`.
    pub fn targets(&self, merchant: &str, event_type: &str) -> Vec<String> {
        let map = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(merchant)
            .map(|eps| eps.iter().filter(|e| e.takes(event_type)).map(|e| e.id.clone()).collect())
            .unwrap_or_default()
    }
}

impl Store {
    /// Keeps `endpoint` when it is newer than the record held (see the module doc) and `rule`
    /// allows it, deciding in one write transaction.
    pub fn put_webhook_endpoint(&self, endpoint: &WebhookEndpoint, rule: PutRule) -> Result<EndpointPut, StoreError> {
        let tx = self.db().begin_write()?;
        let put = {
            let mut t = tx.open_table(WEBHOOK_ENDPOINTS)?;
            let held: Option<WebhookEndpoint> =
                t.get(endpoint.id.as_str())?.map(|v| decode("webhook_endpoints", v.value())).transpose()?;
            if let Some(over) = rule.local_over
                && over != held.as_ref().map(|h| h.version)
            {
                drop(t);
                tx.abort()?;
                return Ok(EndpointPut::Moved);
            }
            if held.is_none() {
                let (mut live, mut all) = (0, 0);
                for row in t.iter()? {
                    let e: WebhookEndpoint = decode("webhook_endpoints", row?.1.value())?;
                    if e.merchant_id == endpoint.merchant_id {
                        all += 1;
                        live += usize::from(e.deleted_at_ms.is_none());
                    }
                }
                // Deleted ones are kept (a deletion is final) up to a bound of their own.
                let over = if endpoint.deleted_at_ms.is_none() { live >= rule.max_live } else { false };
                if over || all >= MAX_RECORDS_PER_MERCHANT {
                    drop(t);
                    tx.abort()?;
                    return Ok(EndpointPut::Full);
                }
            }
            let newer = match &held {
                None => Ok(true),
                Some(h) if h.merchant_id != endpoint.merchant_id => Err(()),
                Some(h) if h.deleted_at_ms.is_some() => Ok(false),
                Some(_) if endpoint.deleted_at_ms.is_some() => Ok(true),
                Some(h) => Ok((endpoint.version, endpoint.hash()) > (h.version, h.hash())),
            };
            match newer {
                Err(()) => EndpointPut::Clash,
                Ok(false) => EndpointPut::Known,
                Ok(true) => {
                    t.insert(endpoint.id.as_str(), encode(endpoint).as_slice())?;
                    EndpointPut::Changed
                }
            }
        };
        tx.commit()?;
        Ok(put)
    }

    /// Endpoint `id`, deleted or not.
    pub fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(WEBHOOK_ENDPOINTS)?;
        t.get(id)?.map(|v| decode("webhook_endpoints", v.value())).transpose()
    }

    /// Every endpoint of `merchant` (of all when `None`), deleted ones too, oldest first.
    pub fn webhook_endpoints(&self, merchant: Option<&str>) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(WEBHOOK_ENDPOINTS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let e: WebhookEndpoint = decode("webhook_endpoints", row?.1.value())?;
            if merchant.is_none_or(|m| m == e.merchant_id) {
                out.push(e);
            }
        }
        out.sort_by_key(|e| (e.created_at_ms, e.id.clone()));
        Ok(out)
    }

    /// Fans events out over these routes from now on (shared by every chain's store).
    pub fn route_endpoints(&self, routes: EndpointRoutes) {
        let _ = self.routes.set(routes);
    }

    /// The endpoints `merchant`'s events of `event_type` also go to.
    pub(super) fn endpoint_targets(&self, merchant: &str, event_type: &str) -> Vec<String> {
        self.routes.get().map(|r| r.targets(merchant, event_type)).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::temp_store;

    const ANY: PutRule = PutRule { max_live: 16, local_over: None };

    pub(crate) fn endpoint(id: &str, events: &[&str]) -> WebhookEndpoint {
        WebhookEndpoint {
            id: id.into(),
            merchant_id: "m".into(),
            url: "https://example.test/hook".into(),
            description: String::new(),
            enabled_events: events.iter().map(|s| s.to_string()).collect(),
            secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            previous_secret: None,
            disabled: false,
            deleted_at_ms: None,
            version: 1,
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    #[test]
    fn the_newest_version_stands_and_a_deletion_is_final() {
        let (dir, store) = temp_store();
        let e = endpoint("we_1", &["*"]);
        assert_eq!(store.put_webhook_endpoint(&e, ANY).expect("put"), EndpointPut::Changed);
        assert_eq!(store.put_webhook_endpoint(&e, ANY).expect("again"), EndpointPut::Known);
        let v2 = WebhookEndpoint { version: 2, url: "https://example.test/two".into(), ..e.clone() };
        assert_eq!(store.put_webhook_endpoint(&v2, ANY).expect("newer"), EndpointPut::Changed);
        assert_eq!(store.put_webhook_endpoint(&e, ANY).expect("older"), EndpointPut::Known);
        // Two different records of one version: every node keeps the one with the higher hash.
        let rival = WebhookEndpoint { url: "https://example.test/rival".into(), ..v2.clone() };
        let (hi, lo) = if rival.hash() > v2.hash() { (&rival, &v2) } else { (&v2, &rival) };
        store.put_webhook_endpoint(hi, ANY).expect("hi");
        assert_eq!(store.put_webhook_endpoint(lo, ANY).expect("lo"), EndpointPut::Known);
        assert_eq!(store.webhook_endpoint("we_1").expect("get").map(|e| e.url), Some(hi.url.clone()));
        let other = WebhookEndpoint { merchant_id: "other".into(), version: 9, ..e.clone() };
        assert_eq!(store.put_webhook_endpoint(&other, ANY).expect("clash"), EndpointPut::Clash);
        let deleted = WebhookEndpoint { deleted_at_ms: Some(5), ..e.clone() };
        assert_eq!(store.put_webhook_endpoint(&deleted, ANY).expect("delete"), EndpointPut::Changed);
        let revived = WebhookEndpoint { version: 99, ..v2.clone() };
        assert_eq!(store.put_webhook_endpoint(&revived, ANY).expect("revive"), EndpointPut::Known);
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(store.webhook_endpoints(Some("m")).expect("list")[0].deleted_at_ms, Some(5));
        // A change made here over a version no longer held is refused, not silently lost.
        let fresh = endpoint("we_2", &["*"]);
        let local = |over| PutRule { max_live: 16, local_over: Some(over) };
        assert_eq!(store.put_webhook_endpoint(&fresh, local(None)).expect("new"), EndpointPut::Changed);
        let edit = WebhookEndpoint { version: 2, ..fresh.clone() };
        assert_eq!(store.put_webhook_endpoint(&edit, local(Some(1))).expect("edit"), EndpointPut::Changed);
        let stale = WebhookEndpoint { version: 2, url: "https://example.test/late".into(), ..fresh.clone() };
        assert_eq!(store.put_webhook_endpoint(&stale, local(Some(1))).expect("late"), EndpointPut::Moved);
        // Only live endpoints count toward the bound; the deleted we_1 does not.
        let full = PutRule { max_live: 1, local_over: None };
        assert_eq!(store.put_webhook_endpoint(&endpoint("we_3", &["*"]), full).expect("full"), EndpointPut::Full);
    }

    #[test]
    fn routes_name_the_live_endpoints_whose_filter_takes_the_event() {
        let routes = EndpointRoutes::default();
        let gone = WebhookEndpoint { deleted_at_ms: Some(1), ..endpoint("we_3", &["*"]) };
        routes.set(&[endpoint("we_1", &["invoice.paid"]), endpoint("we_2", &["*"]), gone]);
        assert_eq!(routes.targets("m", "invoice.paid"), vec!["we_1", "we_2"]);
        assert_eq!(routes.targets("m", "invoice.expired"), vec!["we_2"]);
        assert_eq!(routes.targets("m", "payment.settled"), vec!["we_1", "we_2"], "a bare event becomes invoice.paid");
        let only = |e: &str| vec![e.to_string()];
        assert!(takes(&only("payment.settled"), "invoice.underpaid"), "payment.settled takes every payment event");
        assert!(!takes(&only("invoice.underpaid"), "invoice.paid"));
        assert!(!takes(&only("invoice.expired"), "payment.settled"));
        assert!(routes.targets("other", "invoice.paid").is_empty());
    }

    #[test]
    fn events_fan_out_to_the_endpoints_that_take_them_each_delivery_on_its_own() {
        use crate::store::outbox::tests::{event, record};
        use crate::store::{Attempt, AttemptEffect};
        let (_dir, store) = temp_store();
        let routes = EndpointRoutes::default();
        routes.set(&[endpoint("we_1", &["invoice.paid"]), endpoint("we_2", &["invoice.expired"])]);
        store.route_endpoints(routes);
        store.record_settlement(&record(), &[event("msg_a", 1, 1), event("msg_b", 1, 2)], 0).expect("record");
        let due = |paused: &[String]| {
            let mut ids: Vec<String> =
                store.due_events(0, 10, paused).expect("due").into_iter().map(|e| e.id).collect();
            ids.sort();
            ids
        };
        assert_eq!(due(&[]), vec!["msg_a", "msg_a.we_1"], "we_2 does not take invoice.paid; msg_b waits its turn");
        let child = store.outbox_event("msg_a.we_1").expect("get").expect("fanned out");
        assert_eq!(
            (child.webhook_id(), child.endpoint_id.as_deref(), child.endpoint_key().as_str()),
            ("msg_a", Some("we_1"), "m/we_1")
        );
        let attempt = |outcome: &str| Attempt {
            n: 0,
            at_ms: 0,
            status: Some(200),
            outcome: outcome.into(),
            latency_ms: 1,
            excerpt: String::new(),
            node: "n".into(),
        };
        // The primary endpoint fails; the endpoint's own sequence goes on without it.
        store.record_attempt("msg_a", attempt("retry"), &AttemptEffect::RetryAt(1_000_000)).expect("retry");
        store.record_attempt("msg_a.we_1", attempt("delivered"), &AttemptEffect::Delivered).expect("delivered");
        assert_eq!(due(&[]), vec!["msg_b.we_1"]);
        assert!(due(&["m/we_1".to_string()]).is_empty(), "a paused endpoint holds back only its own");
        assert_eq!(store.events(Some("m"), None, None, Some(Some("we_1")), 10).expect("events").len(), 2);
        assert_eq!(store.events(Some("m"), None, None, Some(None), 10).expect("events").len(), 2);
    }
}
