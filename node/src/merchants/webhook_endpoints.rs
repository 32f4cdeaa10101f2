//! Merchants' own webhook endpoints: created, changed, rotated and deleted by the merchant's
//! signed requests on any node, announced on gossip (topic [`ENDPOINTS_TOPIC`] of the first
//! chain) and kept by every node, which fans the merchant's events out to them
//! ([`crate::store::EndpointRoutes`]).
//!
//! An endpoint is the merchant's signed changes and nothing else ([`super::endpoint_record`]):
//! what is announced, caught up and kept is those statements, and every node checks each one
//! (signed by the merchant's root key, or by a live key it granted `webhooks:manage`) before it
//! keeps, applies or relays it, then recomputes the record itself.
//! So no operator can create, redirect, re-key, pause, delete or outbid a merchant's endpoint;
//! a statement that does not verify here is ignored and counted, its relayer not blamed (this
//! node may not hold the key yet). Changes are announced again for [`REANNOUNCE_MS`] (while
//! gossip forms its mesh), deletions for [`DELETED_REANNOUNCE_MS`]; a node that missed them
//! later gets them by catch-up on connect, or by pulling from a peer whose digest differs
//! (`super::digests`). A rotation keeps the replaced secret signing for `webhooks.secret_overlap_s` after the
//! merchant signed it.

use super::endpoint_record::{self, Change, ChangeKind, MAX_STATEMENTS};
use super::{Registry, RegistryError};
use crate::gossip::GossipRejection;
use crate::store::{EndpointPut, PreviousSecret, Scope, WebhookEndpoint};
use crate::time::now_ms;
use serde::{Deserialize, Serialize};
use settleproof_config::Secret;
use settleproof_merchant_auth::{MerchantKey, SignedStatement};
use settleproof_p2p::PeerId;
use tracing::{info, warn};

/// Topic of endpoint announcements (`/2`: the merchant's signed changes).
pub const ENDPOINTS_TOPIC: &str = "settleproof/webhook-endpoints/2";
/// How long a change is announced again.
pub const REANNOUNCE_MS: u64 = 5 * 60 * 1000;
/// How long a deletion is announced again: the records that matter most travel longest.
pub const DELETED_REANNOUNCE_MS: u64 = 60 * 60 * 1000;
/// Most live (not deleted) endpoints per merchant.
pub const MAX_ENDPOINTS_PER_MERCHANT: usize = 16;
/// How far ahead of this node's clock a change may be signed.
const MAX_CLOCK_SKEW_S: u64 = 5 * 60;
/// Most endpoint announcements made again per rebroadcast, newest changes first.
const MAX_REBROADCAST: usize = 64;

/// The event types an endpoint may ask for (`*`: all of them).
pub const EVENT_TYPES: [&str; 10] = [
    "invoice.paid",
    "invoice.underpaid",
    "invoice.overpaid",
    "invoice.paid_late",
    "invoice.expired",
    "payment.settled",
    "payment.reverted",
    crate::webhook::unknown_invoices::UNKNOWN_INVOICE_EVENTS,
    "test",
    "*",
];

/// An endpoint's signed changes, as gossiped and caught up: the receiver recomputes the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointAnnouncement {
    /// The merchant.
    pub merchant_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The merchant's signed changes that make it.
    pub statements: Vec<SignedStatement>,
    /// Send time.
    pub sent_at_ms: u64,
}

impl EndpointAnnouncement {
    /// The announcement of `e` as held.
    pub fn of(e: &WebhookEndpoint) -> Self {
        Self {
            merchant_id: e.merchant_id.clone(),
            endpoint_id: e.id.clone(),
            statements: e.statements.clone(),
            sent_at_ms: now_ms(),
        }
    }
}

/// Checks an endpoint's fields under the URL policy `(insecure_http, private_targets)`; names
/// the field and the fix.
pub fn endpoint_problem(e: &WebhookEndpoint, url_policy: (bool, bool)) -> Option<(&'static str, String)> {
    let id_ok = e.id.strip_prefix("we_").is_some_and(|h| h.len() == 24 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !id_ok {
        return Some(("id", "must be `we_` and 24 hex digits".into()));
    }
    let fields =
        [url_problem(&e.url, url_policy), description_problem(&e.description), events_problem(&e.enabled_events)];
    if let Some(p) = fields.into_iter().flatten().next() {
        return Some(p);
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

fn url_problem(url: &str, url_policy: (bool, bool)) -> Option<(&'static str, String)> {
    if url.len() > 2048 {
        return Some(("url", "must be at most 2048 characters".into()));
    }
    settleproof_config::netpolicy::check_webhook_url(url, url_policy.0, url_policy.1)
        .err()
        .map(|p| ("url", p.to_string()))
}

fn description_problem(d: &str) -> Option<(&'static str, String)> {
    (d.len() > 256 || d.chars().any(char::is_control))
        .then(|| ("description", "must be at most 256 printable characters".into()))
}

fn events_problem(events: &[String]) -> Option<(&'static str, String)> {
    if events.is_empty() || events.len() > EVENT_TYPES.len() {
        return Some(("enabled_events", format!("must list 1 to {} of {}", EVENT_TYPES.len(), EVENT_TYPES.join(", "))));
    }
    let bad = events.iter().find(|t| !EVENT_TYPES.contains(&t.as_str()))?;
    Some(("enabled_events", format!("`{bad}` is not an event type; use {}", EVENT_TYPES.join(", "))))
}

/// What is wrong with the fields one change sets, under `url_policy` (each field of a record
/// comes from one change, so a record of valid changes is valid).
fn change_problem(c: &Change, url_policy: (bool, bool)) -> Option<(&'static str, String)> {
    let (url, description, events) = match c.kind {
        ChangeKind::Create => {
            let b: endpoint_record::CreateEndpoint = serde_json::from_str(&c.statement.body).ok()?;
            (Some(b.url), Some(b.description), Some(b.enabled_events))
        }
        ChangeKind::Update => {
            let b: endpoint_record::UpdateEndpoint = serde_json::from_str(&c.statement.body).ok()?;
            (b.url, b.description, b.enabled_events)
        }
        ChangeKind::RotateSecret | ChangeKind::Delete => return None,
    };
    [
        url.and_then(|u| url_problem(&u, url_policy)),
        description.and_then(|d| description_problem(&d)),
        events.and_then(|e| events_problem(&e)),
    ]
    .into_iter()
    .flatten()
    .next()
}

fn invalid(field: &'static str, problem: impl Into<String>) -> RegistryError {
    RegistryError::Invalid { field, problem: problem.into() }
}

/// A request that makes no change, naming the field when it is one.
fn record_error(e: endpoint_record::RecordError) -> RegistryError {
    match e {
        endpoint_record::RecordError::Body { field, problem } => invalid(field, problem),
        other => invalid("body", other.to_string()),
    }
}

impl Registry {
    /// The endpoint a request of `merchant` signed to create one makes, kept and announced;
    /// with its secret.
    pub fn create_endpoint(
        &self,
        merchant: &str,
        statement: SignedStatement,
    ) -> Result<WebhookEndpoint, RegistryError> {
        let c = endpoint_record::read(&statement).map_err(record_error)?;
        if c.kind != ChangeKind::Create {
            return Err(invalid("authorization", "not a request creating an endpoint"));
        }
        let id = c.endpoint_id.clone();
        let e = self.apply_local(merchant, &id, c)?;
        info!(merchant, endpoint_id = %e.id, events = ?e.enabled_events, "webhook endpoint created");
        Ok(e)
    }

    /// Applies a change of endpoint `id` that `merchant` signed (`PATCH`, `rotate-secret` or
    /// `DELETE`): kept here and announced. Refused (409) when it would apply before the
    /// endpoint's latest change (signed earlier, or in the same second and sorting before it).
    pub fn change_endpoint(
        &self,
        merchant: &str,
        id: &str,
        statement: SignedStatement,
    ) -> Result<WebhookEndpoint, RegistryError> {
        let c = endpoint_record::read(&statement).map_err(record_error)?;
        if c.kind == ChangeKind::Create || c.endpoint_id != id {
            return Err(invalid("authorization", "not a request changing this endpoint"));
        }
        let held = self.live_endpoint_of(merchant, id)?;
        // It must apply after every change held, as the merchant meant; one signed in the same
        // second as the latest may sort before it (by hash), and a new signature may not.
        let latest = held.statements.iter().filter_map(|s| endpoint_record::read(s).ok()).map(|h| h.order()).max();
        if latest.is_some_and(|l| c.order() <= l) {
            return Err(RegistryError::Conflict(format!(
                "this change is signed at {}, no later than the endpoint's latest change ({}): sign it again",
                c.nbf, held.version
            )));
        }
        let e = self.apply_local(merchant, id, c)?;
        info!(merchant = %e.merchant_id, endpoint_id = %e.id, version = e.version, deleted = e.deleted_at_ms.is_some(), "webhook endpoint changed");
        Ok(e)
    }

    /// Checks, keeps and announces a change made through this node's API.
    fn apply_local(&self, merchant: &str, id: &str, c: Change) -> Result<WebhookEndpoint, RegistryError> {
        if let Some((field, problem)) = change_problem(&c, self.0.url_policy) {
            return Err(invalid(field, problem));
        }
        self.verify_change(merchant, &c, None).map_err(|e| invalid("authorization", e))?;
        match self.merge_endpoint(merchant, id, vec![c]).map_err(|e| invalid("body", e))? {
            EndpointPut::Changed(e) => {
                self.refresh_routes();
                self.announce_endpoint(&e);
                Ok(*e)
            }
            EndpointPut::Full => Err(RegistryError::Conflict(format!(
                "the merchant has {MAX_ENDPOINTS_PER_MERCHANT} endpoints, the most kept: delete one first"
            ))),
            EndpointPut::Known | EndpointPut::Clash => {
                Err(RegistryError::Conflict("this change is already held; sign a new one".into()))
            }
        }
    }

    /// The key that signed `c` for `merchant`, when it may manage webhook endpoints.
    fn signer_of(&self, merchant: &str, c: &Change) -> Result<MerchantKey, String> {
        self.statement_signer(merchant, &c.key_id, c.nbf, Scope::WebhooksManage)
    }

    /// Checks that `merchant` signed `c` with a key that may, and that it is not dated ahead. A
    /// deletion of `held`, an endpoint made without `aud` (before the upgrade day), may lack it
    /// too when signed before the day ([`Registry::undo_audience_rule`]).
    fn verify_change(&self, merchant: &str, c: &Change, held: Option<&WebhookEndpoint>) -> Result<(), String> {
        if c.nbf > crate::time::now_s().saturating_add(MAX_CLOCK_SKEW_S) {
            return Err("signed in the future".into());
        }
        let key = self.signer_of(merchant, c)?;
        let made_unnamed = held.is_some_and(|h| {
            h.statements
                .iter()
                .filter_map(|s| endpoint_record::read(s).ok())
                .any(|s| s.kind == ChangeKind::Create && super::audience::unnamed(&s.statement))
        });
        let audience = match c.kind {
            ChangeKind::Delete if made_unnamed => self.undo_audience_rule(),
            _ => self.audience_rule(),
        };
        c.statement.verify(&key, merchant, c.method, &c.path, Some(audience)).map_err(|e| e.to_string())
    }

    /// Merges `changes` (each verified) into endpoint `id` of `merchant`; the record is
    /// recomputed from the statements held and these, in one store transaction.
    fn merge_endpoint(&self, merchant: &str, id: &str, changes: Vec<Change>) -> Result<EndpointPut, String> {
        let overlap_ms = self.0.secret_overlap_ms;
        let mut problem = None;
        let put = self
            .store()
            .map_err(|e| e.to_string())?
            .merge_webhook_endpoint(id, merchant, MAX_ENDPOINTS_PER_MERCHANT, |held| {
                let mut all: Vec<Change> = held
                    .map(|h| h.statements.iter().filter_map(|s| endpoint_record::read(s).ok()).collect())
                    .unwrap_or_default();
                all.extend(changes);
                let deleted = held.is_some_and(|h| h.deleted_at_ms.is_some());
                match endpoint_record::fold(id, &all) {
                    Ok(f) if held.is_some_and(|h| h.statements == f.statements) => None,
                    // A deletion is final: a deleted record changes only to name an earlier
                    // creation or deletion (the same change sent to two nodes), so every node
                    // keeps the same one.
                    Ok(f) if deleted && f.deleted_at_s.is_none() => None,
                    Ok(f) => Some(materialize(merchant, f, overlap_ms)),
                    Err(e) => {
                        problem = Some(e.to_string());
                        None
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        match problem {
            Some(p) => Err(p),
            None => Ok(put),
        }
    }

    /// The endpoints of `merchant` that are not deleted.
    pub fn endpoints_of(&self, merchant: &str) -> Result<Vec<WebhookEndpoint>, RegistryError> {
        let all = self.store()?.webhook_endpoints(Some(merchant))?;
        Ok(all.into_iter().filter(WebhookEndpoint::is_live).collect())
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
            .filter(|e| e.merchant_id == merchant && e.is_live())
            .ok_or_else(|| RegistryError::UnknownMerchant(format!("{merchant}'s webhook endpoint {id}")))
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
        let data = serde_json::to_vec(&EndpointAnnouncement::of(e)).unwrap_or_default();
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
                let window = if e.deleted_at_ms.is_some() { DELETED_REANNOUNCE_MS } else { REANNOUNCE_MS };
                !e.statements.is_empty() && now.saturating_sub(e.updated_at_ms) < window
            })
            .collect();
        recent.sort_by_key(|e| std::cmp::Reverse(e.updated_at_ms));
        for e in recent.iter().take(MAX_REBROADCAST) {
            self.announce_endpoint(e);
        }
    }

    /// An endpoint announcement heard from `source`: its statements that this node does not
    /// hold yet are checked against the merchant's keys as this node's registry holds them and
    /// merged. `Ok` with whether it changed anything. What no honest node would send is
    /// refused; a statement that does not verify here is ignored and counted, its relayer not
    /// blamed.
    pub fn hear_endpoint(&self, data: &[u8], source: &PeerId) -> Result<bool, GossipRejection> {
        let a: EndpointAnnouncement =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        let Some(store) = &self.0.store else { return Ok(false) };
        let malformed = |m: String| GossipRejection::Malformed(format!("webhook endpoint: {m}"));
        let not_taken = |m: String| GossipRejection::NotTaken(format!("webhook endpoint: {m}"));
        if a.statements.is_empty() || a.statements.len() > MAX_STATEMENTS {
            return Err(malformed(format!("1 to {MAX_STATEMENTS} signed changes, not {}", a.statements.len())));
        }
        let changes: Vec<Change> = a
            .statements
            .iter()
            .map(endpoint_record::read)
            .collect::<Result<_, _>>()
            .map_err(|e| malformed(e.to_string()))?;
        if changes.iter().any(|c| c.endpoint_id != a.endpoint_id) {
            return Err(malformed("a change of another endpoint".into()));
        }
        if !self.holds(&a.merchant_id) {
            // This node may not have applied the merchant yet: it is announced again.
            return Ok(false);
        }
        // A repeat of what is held costs a read, not a signature check.
        let held = store.webhook_endpoint(&a.endpoint_id).map_err(|e| not_taken(e.to_string()))?;
        let deleted = held.as_ref().is_some_and(|h| h.deleted_at_ms.is_some());
        // Compared by what the merchant signed, not by the signature's bytes (an ES256 signature
        // can be re-encoded without the key), so a re-encoded copy is a repeat too.
        let held_digests: Vec<[u8; 32]> = held
            .as_ref()
            .map(|h| h.statements.iter().filter_map(|s| endpoint_record::read(s).ok()).map(|c| c.digest).collect())
            .unwrap_or_default();
        // A deleted record takes only a creation or a deletion (one that sorts first), unchecked
        // otherwise: no other change of it costs a signature check.
        let new: Vec<Change> = changes
            .into_iter()
            .filter(|c| !held_digests.contains(&c.digest))
            .filter(|c| !deleted || matches!(c.kind, ChangeKind::Create | ChangeKind::Delete))
            .collect();
        if new.is_empty() {
            return Ok(false);
        }
        // Each change is checked on its own. The ones that verify are taken when every one
        // refused sorts before them: a change this node refuses (made without `aud` before the
        // upgrade day and missed until after it, say) must not keep the merchant's later
        // changes from it, while a record folded without a later change (a deletion, a
        // disabling) it refuses is not made here at all. Any refusal is reported (not relayed,
        // and counted by a catch-up), whatever was taken.
        let mut taken = Vec::with_capacity(new.len());
        let mut refused: Option<(String, _)> = None;
        for c in new {
            if let Err(why) = self.verify_change(&a.merchant_id, &c, held.as_ref()) {
                warn!(peer = %source, merchant = %a.merchant_id, endpoint_id = %a.endpoint_id, %why, "webhook endpoint change not signed by its merchant ignored");
                metrics::counter!("merchant_records_refused_total", "kind" => "webhook_endpoint").increment(1);
                let order = c.order();
                refused = Some(match refused {
                    Some((first, latest)) if latest >= order => (first, latest),
                    Some((first, _)) => (first, order),
                    None => (why, order),
                });
                continue;
            }
            if let Some((field, problem)) = change_problem(&c, self.0.url_policy) {
                tracing::debug!(endpoint_id = %a.endpoint_id, field, problem, "webhook endpoint outside this node's URL policy: ignored");
                return Ok(false);
            }
            taken.push(c);
        }
        let earliest_taken = taken.iter().map(Change::order).min();
        if let Some((why, latest_refused)) = &refused
            && earliest_taken.is_none_or(|t| *latest_refused > t)
        {
            return Err(not_taken(why.clone()));
        }
        let new = taken;
        match self.merge_endpoint(&a.merchant_id, &a.endpoint_id, new).map_err(not_taken)? {
            EndpointPut::Changed(e) => {
                info!(peer = %source, merchant = %e.merchant_id, endpoint_id = %e.id, version = e.version, "webhook endpoint heard");
                self.refresh_routes();
                match refused {
                    Some((why, _)) => Err(not_taken(why)),
                    None => Ok(true),
                }
            }
            EndpointPut::Known | EndpointPut::Full => Ok(false),
            EndpointPut::Clash => Err(malformed("its id belongs to another merchant's endpoint".into())),
        }
    }
}

/// The record `f` makes of an endpoint of `merchant`; a rotation's replaced secret signs on
/// for `overlap_ms` after the merchant signed the rotation.
fn materialize(merchant: &str, f: endpoint_record::Folded, overlap_ms: u64) -> WebhookEndpoint {
    WebhookEndpoint {
        id: f.id,
        merchant_id: merchant.to_string(),
        url: f.url,
        description: f.description,
        enabled_events: f.enabled_events,
        secret: Secret::new(f.secret),
        previous_secret: f.previous_secret.map(|(secret, at_s)| PreviousSecret {
            secret: Secret::new(secret),
            until_ms: at_s.saturating_mul(1000).saturating_add(overlap_ms),
        }),
        disabled: f.disabled,
        deleted_at_ms: f.deleted_at_s.map(|s| s.saturating_mul(1000)),
        version: f.latest_s,
        created_at_ms: f.created_at_s.saturating_mul(1000),
        updated_at_ms: now_ms(),
        statements: f.statements,
    }
}

#[cfg(test)]
#[path = "webhook_endpoints_tests.rs"]
mod tests;
