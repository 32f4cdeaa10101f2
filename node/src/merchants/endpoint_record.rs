//! What a merchant's signed changes make of one of its webhook endpoints: pure, no I/O.
//!
//! Every change to an endpoint is a request the merchant signed (a [`SignedStatement`]:
//! `POST /v1/webhook-endpoints`, `PATCH`, `POST …/rotate-secret` or `DELETE
//! /v1/webhook-endpoints/{id}`), and an endpoint record is nothing but the statements that
//! still matter. Its fields are always recomputed from them by [`fold`], so no node can show or
//! route anything the merchant did not sign:
//!
//! - the endpoint's id derives from the creating statement's signed header and claims (which
//!   include the merchant client's random nonce), and its secret is the one the merchant chose
//!   and signed in the body of the creation or rotation: every node computes the same ones, the
//!   merchant knows both without asking a node, and no relayer can substitute its own;
//! - changes apply in the order of the merchant's own signing time (`nbf`; within one second
//!   the creation first, then by the statement's hash), each field taking its latest setter, so
//!   an older statement replayed later changes nothing and no operator can outbid a change
//!   (the API refuses a change signed no later than the endpoint's latest one, so a merchant's
//!   own quick succession of changes never lands out of order);
//! - a deletion is final; a deleted record keeps only its creation and deletion.
//!
//! Statements that no longer set anything are pruned, so a record holds at most
//! [`MAX_STATEMENTS`] of them. Checking who signed each statement needs the registry; that is
//! `super::webhook_endpoints`' job, done before a statement reaches [`fold`].

use base64::Engine;
use serde::Deserialize;
use settleproof_merchant_auth::SignedStatement;
use sha2::{Digest, Sha256};

/// The path endpoints are created at.
pub const ENDPOINTS_PATH: &str = "/v1/webhook-endpoints";
/// Most statements a record keeps: its creation, the latest setter of each of four fields, the
/// two latest rotations and its deletion.
pub const MAX_STATEMENTS: usize = 8;
/// Longest body of a change (a URL of 2048 characters, a description and a filter fit).
pub const MAX_CHANGE_BODY: usize = 4096;
/// Longest signed request kept with an endpoint.
pub const MAX_CHANGE_JWT: usize = 2048;

/// What a signed request does to an endpoint, read from its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// `POST /v1/webhook-endpoints`.
    Create,
    /// `PATCH /v1/webhook-endpoints/{id}`.
    Update,
    /// `POST /v1/webhook-endpoints/{id}/rotate-secret`.
    RotateSecret,
    /// `DELETE /v1/webhook-endpoints/{id}`.
    Delete,
}

/// Body of `POST /v1/webhook-endpoints`, as the merchant signs it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where events are POSTed (https, unless the operators allow http).
    pub url: String,
    /// A note for the merchant, at most 256 characters.
    #[serde(default)]
    pub description: String,
    /// Event types to deliver (`invoice.paid`, `invoice.underpaid`, `invoice.overpaid`,
    /// `invoice.paid_late`, `invoice.expired`, `payment.settled`, `payment.reverted`, `test`),
    /// or `["*"]` for all; `payment.unknown_invoice` (never part of `*`) also asks for payments
    /// of invoices no operator knows, at most one a second.
    #[schema(min_items = 1)]
    pub enabled_events: Vec<String>,
    /// The signing secret you chose: `whsec_` and base64 of 24 to 64 random bytes
    /// (`settleproof keys webhook-secret` makes one). Part of what you sign, so no node can
    /// sign your events with another.
    pub secret: String,
    /// Optional: 32 random bytes as `0x` and 64 hex digits. With it the endpoint's id follows
    /// from your merchant id and this nonce alone, so the same creation sent to several nodes
    /// (each request signed for its node) makes one endpoint.
    #[serde(default)]
    #[schema(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub nonce: Option<String>,
}

/// Body of `POST /v1/webhook-endpoints/{id}/rotate-secret`, as the merchant signs it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new signing secret you chose (as at creation); the old one signs too for the overlap.
    pub secret: String,
}

/// Body of `PATCH /v1/webhook-endpoints/{id}`, as the merchant signs it: the fields given change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New filter.
    pub enabled_events: Option<Vec<String>>,
    /// `true` pauses deliveries (they wait); `false` resumes them, also after the node disabled
    /// the endpoint for failing.
    pub disabled: Option<bool>,
}

/// One signed change, read (not yet verified: see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The merchant's signed request.
    pub statement: SignedStatement,
    /// What it does.
    pub kind: ChangeKind,
    /// The endpoint it changes (for a creation, the id it makes).
    pub endpoint_id: String,
    /// The method and path it was signed for.
    pub method: &'static str,
    /// The path it was signed for.
    pub path: String,
    /// The key that signed it (`kid`).
    pub key_id: String,
    /// When the merchant signed it, unix seconds.
    pub nbf: u64,
    /// SHA-256 of its signed header and claims: the tie-break between changes of one second.
    pub digest: [u8; 32],
}

impl Change {
    /// Where it applies: by the merchant's signing time; within one second a creation first,
    /// then by hash (so every node applies the same order).
    pub fn order(&self) -> (u64, bool, [u8; 32]) {
        (self.nbf, self.kind != ChangeKind::Create, self.digest)
    }
}

/// Why a statement or a set of them makes no endpoint; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a JWT with readable claims.
    #[error("not a signed request with readable claims")]
    Unreadable,
    /// Bigger than any change needs.
    #[error("a change is at most {MAX_CHANGE_BODY} bytes of body and {MAX_CHANGE_JWT} of JWT")]
    TooLarge,
    /// Signed for another route.
    #[error("`{0}` is not a change of a webhook endpoint")]
    NotAnEndpointChange(String),
    /// A body that is not the route's.
    #[error("{field}: {problem}")]
    Body {
        /// The field (or `body`).
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// No creation first, or one that does not make this id.
    #[error("an endpoint record needs its creation first, and only creations of this id")]
    Creation,
    /// A change of another endpoint, or signed before the creation.
    #[error("a change of another endpoint, or signed before its creation")]
    Stray,
    /// More statements than a record keeps.
    #[error("an endpoint record keeps at most {MAX_STATEMENTS} signed changes")]
    TooMany,
}

/// What the statements make of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// Its id.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The merchant's note.
    pub description: String,
    /// Event types, sorted, without repeats.
    pub enabled_events: Vec<String>,
    /// Paused by the merchant.
    pub disabled: bool,
    /// The secret deliveries are signed with.
    pub secret: String,
    /// The secret the latest rotation replaced, and when that rotation was signed (unix s).
    pub previous_secret: Option<(String, u64)>,
    /// When the merchant deleted it, unix seconds.
    pub deleted_at_s: Option<u64>,
    /// When the merchant created it, unix seconds.
    pub created_at_s: u64,
    /// When the merchant signed the latest change kept, unix seconds.
    pub latest_s: u64,
    /// The statements that still matter, in order.
    pub statements: Vec<SignedStatement>,
}

/// The signed header and claims of a JWT (what its signature covers).
fn signing_input(jwt: &str) -> &str {
    jwt.rsplit_once('.').map_or(jwt, |(input, _)| input)
}

fn derive(domain: &str, statement: &SignedStatement) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(signing_input(&statement.jwt).as_bytes());
    h.finalize().into()
}

/// The id the creating statement `s` makes: `we_` and 12 bytes of a hash of its merchant and
/// the body's `nonce` when it has one (the same creation signed for several nodes makes one
/// endpoint), else of what it signed.
pub fn endpoint_id_of(s: &SignedStatement) -> String {
    #[derive(Deserialize)]
    struct Nonce {
        nonce: Option<String>,
    }
    let nonce = serde_json::from_str::<Nonce>(&s.body).ok().and_then(|n| n.nonce);
    let iss = settleproof_merchant_auth::header_free_claims(&s.jwt).map(|c| c.iss);
    match (nonce, iss) {
        (Some(nonce), Some(iss)) => {
            let mut h = Sha256::new();
            h.update(b"settleproof/webhook-endpoint/2");
            h.update([0]);
            h.update(iss.as_bytes());
            h.update([0]);
            h.update(nonce.to_ascii_lowercase().as_bytes());
            let digest: [u8; 32] = h.finalize().into();
            format!("we_{}", hex::encode(&digest[..12]))
        }
        _ => format!("we_{}", hex::encode(&derive("settleproof/webhook-endpoint/1", s)[..12])),
    }
}

/// The secret a creating or rotating statement sets (its body was checked by [`read`]).
fn secret_of(s: &SignedStatement) -> String {
    #[derive(Deserialize)]
    struct Secret {
        secret: String,
    }
    serde_json::from_str::<Secret>(&s.body).map(|b| b.secret).unwrap_or_default()
}

/// Whether `secret` is `whsec_` and base64 of 24 to 64 bytes.
pub fn secret_is_valid(secret: &str) -> bool {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|bytes| (24..=64).contains(&bytes.len()))
}

/// Reads what `statement` does (nothing is verified here).
pub fn read(statement: &SignedStatement) -> Result<Change, RecordError> {
    if statement.body.len() > MAX_CHANGE_BODY || statement.jwt.len() > MAX_CHANGE_JWT {
        return Err(RecordError::TooLarge);
    }
    let claims = settleproof_merchant_auth::header_free_claims(&statement.jwt).ok_or(RecordError::Unreadable)?;
    let key_id = settleproof_merchant_auth::header_key_id(&statement.jwt).ok_or(RecordError::Unreadable)?;
    let (method, target) = claims.uri.split_once(' ').ok_or(RecordError::Unreadable)?;
    let path = target.find('/').map_or("", |i| &target[i..]).to_string();
    let rest = path.strip_prefix(ENDPOINTS_PATH).ok_or_else(|| RecordError::NotAnEndpointChange(claims.uri.clone()))?;
    let (method, kind, id) = match (method, rest) {
        ("POST", "") => ("POST", ChangeKind::Create, endpoint_id_of(statement)),
        ("PATCH", r) => ("PATCH", ChangeKind::Update, one_id(r, "")),
        ("POST", r) => ("POST", ChangeKind::RotateSecret, one_id(r, "/rotate-secret")),
        ("DELETE", r) => ("DELETE", ChangeKind::Delete, one_id(r, "")),
        _ => return Err(RecordError::NotAnEndpointChange(claims.uri.clone())),
    };
    if id.is_empty() {
        return Err(RecordError::NotAnEndpointChange(claims.uri.clone()));
    }
    let change = Change {
        statement: statement.clone(),
        kind,
        endpoint_id: id,
        method,
        path,
        key_id,
        nbf: claims.nbf,
        digest: derive("settleproof/webhook-endpoint-change/1", statement),
    };
    check_body(&change)?;
    Ok(change)
}

/// `/{id}{suffix}` → the id, when it is one path segment; else empty.
fn one_id(rest: &str, suffix: &str) -> String {
    rest.strip_prefix('/')
        .and_then(|r| r.strip_suffix(suffix))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .unwrap_or_default()
        .to_string()
}

fn body_error(e: serde_json::Error, expected: &str) -> RecordError {
    RecordError::Body { field: "body", problem: format!("{e}; expected {expected}") }
}

fn check_body(c: &Change) -> Result<(), RecordError> {
    let body = &c.statement.body;
    match c.kind {
        ChangeKind::Create => serde_json::from_str::<CreateEndpoint>(body)
            .map_err(|e| body_error(e, "url, enabled_events, secret, a description and a nonce"))
            .and_then(|b| {
                check_secret(&b.secret)?;
                check_nonce(b.nonce.as_deref())
            }),
        ChangeKind::Update => serde_json::from_str::<UpdateEndpoint>(body)
            .map(drop)
            .map_err(|e| body_error(e, "any of url, description, enabled_events, disabled")),
        ChangeKind::RotateSecret => serde_json::from_str::<RotateSecret>(body)
            .map_err(|e| body_error(e, "the new secret"))
            .and_then(|b| check_secret(&b.secret)),
        ChangeKind::Delete if body.is_empty() => Ok(()),
        ChangeKind::Delete => Err(RecordError::Body { field: "body", problem: "must be empty".into() }),
    }
}

fn check_nonce(nonce: Option<&str>) -> Result<(), RecordError> {
    let ok = nonce.is_none_or(|n| {
        n.strip_prefix("0x").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if ok {
        Ok(())
    } else {
        Err(RecordError::Body { field: "nonce", problem: "must be 0x and 64 hex digits (32 random bytes)".into() })
    }
}

fn check_secret(secret: &str) -> Result<(), RecordError> {
    if secret_is_valid(secret) {
        Ok(())
    } else {
        Err(RecordError::Body {
            field: "secret",
            problem:
                "must be `whsec_` and base64 of 24 to 64 random bytes (`settleproof keys webhook-secret` makes one)"
                    .into(),
        })
    }
}

fn sorted_events(mut events: Vec<String>) -> Vec<String> {
    events.sort_unstable();
    events.dedup();
    events
}

/// What `changes` (read by [`read`], their signatures checked) make of endpoint `id`, with the
/// statements that still matter. Repeats count once; the order does not matter.
pub fn fold(id: &str, changes: &[Change]) -> Result<Folded, RecordError> {
    let mut changes: Vec<&Change> = changes.iter().collect();
    changes.sort_by_key(|c| c.order());
    changes.dedup_by(|a, b| a.digest == b.digest);
    // The first creation by the merchant's order is the endpoint's; another of the same id (the
    // same creation signed for another node) changes nothing and is not kept.
    let create = match changes.iter().find(|c| c.kind == ChangeKind::Create) {
        Some(c) if c.endpoint_id == id && std::ptr::eq(*c, changes[0]) => *c,
        _ => return Err(RecordError::Creation),
    };
    if changes.iter().any(|c| c.kind == ChangeKind::Create && c.endpoint_id != id) {
        return Err(RecordError::Creation);
    }
    if changes.iter().any(|c| c.endpoint_id != id) {
        return Err(RecordError::Stray);
    }
    let body: CreateEndpoint =
        serde_json::from_str(&create.statement.body).map_err(|e| body_error(e, "url and enabled_events"))?;
    let mut f = Folded {
        id: id.to_string(),
        url: body.url,
        description: body.description,
        enabled_events: sorted_events(body.enabled_events),
        disabled: false,
        secret: secret_of(&create.statement),
        previous_secret: None,
        deleted_at_s: None,
        created_at_s: create.nbf,
        latest_s: create.nbf,
        statements: Vec::new(),
    };
    // The latest setter of each field, and the latest two rotations.
    let mut setters: [Option<&Change>; 4] = [None; 4];
    let mut rotations: Vec<&Change> = Vec::new();
    for &c in &changes[1..] {
        match c.kind {
            // Another creation of this id (the same creation sent to another node) changes
            // nothing, not even the version.
            ChangeKind::Create => continue,
            ChangeKind::Update => {
                let u: UpdateEndpoint = serde_json::from_str(&c.statement.body)
                    .map_err(|e| body_error(e, "any of url, description, enabled_events, disabled"))?;
                if let Some(url) = u.url {
                    (f.url, setters[0]) = (url, Some(c));
                }
                if let Some(d) = u.description {
                    (f.description, setters[1]) = (d, Some(c));
                }
                if let Some(e) = u.enabled_events {
                    (f.enabled_events, setters[2]) = (sorted_events(e), Some(c));
                }
                if let Some(d) = u.disabled {
                    (f.disabled, setters[3]) = (d, Some(c));
                }
            }
            // A rotation to the secret in force (the same rotation sent to two nodes) changes
            // nothing: the secret it replaced keeps its overlap.
            ChangeKind::RotateSecret if secret_of(&c.statement) == f.secret => continue,
            ChangeKind::RotateSecret => {
                f.previous_secret = Some((std::mem::replace(&mut f.secret, secret_of(&c.statement)), c.nbf));
                rotations.push(c);
            }
            ChangeKind::Delete => {
                f.deleted_at_s = Some(c.nbf);
                f.latest_s = c.nbf;
                f.statements = vec![create.statement.clone(), c.statement.clone()];
                return Ok(f);
            }
        }
        f.latest_s = c.nbf;
    }
    // The rotation before the latest one made the secret the latest one replaced.
    let kept_rotations = rotations.iter().rev().take(2).copied();
    let mut kept: Vec<&Change> =
        std::iter::once(create).chain(setters.into_iter().flatten()).chain(kept_rotations).collect();
    kept.sort_by_key(|c| c.order());
    kept.dedup_by(|a, b| a.digest == b.digest);
    f.statements = kept.into_iter().map(|c| c.statement.clone()).collect();
    if f.statements.len() > MAX_STATEMENTS {
        return Err(RecordError::TooMany);
    }
    Ok(f)
}

#[cfg(test)]
#[path = "endpoint_record_tests.rs"]
mod tests;
