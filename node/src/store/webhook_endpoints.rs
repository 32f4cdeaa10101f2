//! Merchants' own webhook endpoints, beside the registry's primary one: each with its URL,
//! `enabled_events` filter and secret, created, changed and deleted by the merchant on any node
//! and replicated to all (see `crate::merchants::webhook_endpoints`).
//!
//! A record is the merchant's signed changes and what they make (see
//! `crate::merchants::endpoint_record`); the registry merges what it hears into it inside one
//! write transaction here ([`Store::merge_webhook_endpoint`]), and a deletion is final.
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
    /// When the merchant signed its latest change, unix seconds (later changes are higher).
    pub version: u64,
    /// When the merchant created it.
    pub created_at_ms: u64,
    /// When this node last changed it (what it announces again, and what re-enables an
    /// endpoint this node disabled for failing).
    pub updated_at_ms: u64,
    /// The merchant's signed changes it is made of; empty in records kept before changes were
    /// signed, which are neither routed nor served.
    #[serde(default)]
    pub statements: Vec<settleproof_merchant_auth::SignedStatement>,
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

    /// Whether it is the merchant's signed record, not deleted.
    pub fn is_live(&self) -> bool {
        self.deleted_at_ms.is_none() && !self.statements.is_empty()
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
            || (event_type == "payment.settled"
                && (PAYMENT_EVENTS.contains(&e.as_str())
                    || e == crate::webhook::unknown_invoices::UNKNOWN_INVOICE_EVENTS))
    })
}

/// The delivery state key of endpoint `id` of `merchant` (`merchant_endpoints`); the primary
/// endpoint's is the merchant id alone.
pub fn endpoint_state_key(merchant: &str, id: &str) -> String {
    format!("{merchant}/{id}")
}

/// What became of a merge into an endpoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointPut {
    /// Kept: the record as it now is.
    Changed(Box<WebhookEndpoint>),
    /// Nothing new.
    Known,
    /// Another merchant's endpoint has this id: refused.
    Clash,
    /// A new endpoint of a merchant that has the most live endpoints kept: refused.
    Full,
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
        for e in endpoints.iter().filter(|e| e.is_live()) {
            map.entry(e.merchant_id.clone()).or_default().push(e.clone());
        }
        // A poisoned lock held a whole map; it is replaced whole.
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    /// Every live endpoint.
    pub fn live(&self) -> Vec<WebhookEndpoint> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().flatten().cloned().collect()
    }

    /// How many merchants have live endpoints of their own.
    pub fn merchants(&self) -> usize {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().filter(|e| !e.is_empty()).count()
    }

    /// The live endpoints of `merchant`.
    pub fn of(&self, merchant: &str) -> Vec<WebhookEndpoint> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(merchant).cloned().unwrap_or_default()
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
    /// Merges into endpoint `id` of `merchant`, in one write transaction: `merge` gets the
    /// record held (if any) and answers the record to keep, or `None` when nothing changes. A
    /// new live endpoint is refused when the merchant has `max_live` live ones (deleted ones do
    /// not count: only the merchant's signature deletes, so only the merchant fills them).
    pub fn merge_webhook_endpoint(
        &self,
        id: &str,
        merchant: &str,
        max_live: usize,
        merge: impl FnOnce(Option<&WebhookEndpoint>) -> Option<WebhookEndpoint>,
    ) -> Result<EndpointPut, StoreError> {
        let tx = self.db().begin_write()?;
        let put = {
            let mut t = tx.open_table(WEBHOOK_ENDPOINTS)?;
            let held: Option<WebhookEndpoint> =
                t.get(id)?.map(|v| decode("webhook_endpoints", v.value())).transpose()?;
            if held.as_ref().is_some_and(|h| h.merchant_id != merchant) {
                EndpointPut::Clash
            } else {
                match merge(held.as_ref()) {
                    None => EndpointPut::Known,
                    Some(e) => {
                        let new_live = e.is_live() && !held.as_ref().is_some_and(WebhookEndpoint::is_live);
                        let mut live = 0;
                        if new_live {
                            for row in t.iter()? {
                                let other: WebhookEndpoint = decode("webhook_endpoints", row?.1.value())?;
                                live += usize::from(other.merchant_id == merchant && other.is_live());
                            }
                        }
                        if new_live && live >= max_live {
                            EndpointPut::Full
                        } else {
                            t.insert(id, encode(&e).as_slice())?;
                            EndpointPut::Changed(Box::new(e))
                        }
                    }
                }
            }
        };
        match put {
            EndpointPut::Changed(_) => tx.commit()?,
            _ => tx.abort()?,
        }
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
            statements: vec![settleproof_merchant_auth::SignedStatement { jwt: "a.b.c".into(), body: String::new() }],
        }
    }

    #[test]
    fn a_merge_keeps_what_it_answers_and_counts_live_endpoints_only() {
        let (dir, store) = temp_store();
        let e = endpoint("we_1", &["*"]);
        let keep = |e: &WebhookEndpoint| {
            let e = e.clone();
            move |_: Option<&WebhookEndpoint>| Some(e)
        };
        assert_eq!(
            store.merge_webhook_endpoint("we_1", "m", 16, keep(&e)).expect("put"),
            EndpointPut::Changed(Box::new(e.clone()))
        );
        assert_eq!(
            store
                .merge_webhook_endpoint("we_1", "m", 16, |held| {
                    assert_eq!(held, Some(&e));
                    None
                })
                .expect("again"),
            EndpointPut::Known
        );
        assert_eq!(store.merge_webhook_endpoint("we_1", "other", 16, keep(&e)).expect("clash"), EndpointPut::Clash);
        let deleted = WebhookEndpoint { deleted_at_ms: Some(5), ..e.clone() };
        assert!(matches!(
            store.merge_webhook_endpoint("we_1", "m", 16, keep(&deleted)).expect("delete"),
            EndpointPut::Changed(_)
        ));
        drop(store);
        let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        assert_eq!(store.webhook_endpoints(Some("m")).expect("list")[0].deleted_at_ms, Some(5));
        // Only live endpoints count toward the bound; the deleted we_1 does not.
        let two = endpoint("we_2", &["*"]);
        assert!(matches!(
            store.merge_webhook_endpoint("we_2", "m", 1, keep(&two)).expect("room"),
            EndpointPut::Changed(_)
        ));
        let three = endpoint("we_3", &["*"]);
        assert_eq!(store.merge_webhook_endpoint("we_3", "m", 1, keep(&three)).expect("full"), EndpointPut::Full);
        assert_eq!(store.webhook_endpoint("we_3").expect("get"), None, "nothing kept when full");
        // A change of a live one is not a new one.
        let edited = WebhookEndpoint { url: "https://example.test/two".into(), ..two.clone() };
        assert!(matches!(
            store.merge_webhook_endpoint("we_2", "m", 1, keep(&edited)).expect("edit"),
            EndpointPut::Changed(_)
        ));
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
        use crate::store::{Attempt, AttemptEffect, AttemptOn};
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
        store
            .record_attempt(AttemptOn::first("msg_a"), attempt("retry"), &AttemptEffect::RetryAt(1_000_000))
            .expect("retry");
        store
            .record_attempt(AttemptOn::first("msg_a.we_1"), attempt("delivered"), &AttemptEffect::Delivered)
            .expect("delivered");
        assert_eq!(due(&[]), vec!["msg_b.we_1"]);
        assert!(due(&["m/we_1".to_string()]).is_empty(), "a paused endpoint holds back only its own");
        assert_eq!(store.events(Some("m"), None, None, Some(Some("we_1")), 10).expect("events").len(), 2);
        assert_eq!(store.events(Some("m"), None, None, Some(None), 10).expect("events").len(), 2);
    }
}
