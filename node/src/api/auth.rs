//! Merchant authentication: a JWT signed by one of the merchant's keys
//! (`settleproof_merchant_auth`), checked by [`signed`] before a merchant route runs. There is
//! no bearer secret: the node a request reaches holds nothing it could present elsewhere.

use super::ApiError;
use crate::store::Scope;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use settleproof_config::MerchantConfig;
use settleproof_merchant_auth::{AuthError, Expected, NonceCache, Verified};
use std::sync::{Arc, Mutex};

/// Live nonces a node keeps at most: above any request rate one node serves over a token's
/// lifetime and skew.
pub const NONCE_CAPACITY: usize = 200_000;

/// What authenticates requests at this node: its own hosts (what a signed request's `uri`
/// must name) and the nonces it accepted.
#[derive(Debug, Clone)]
pub struct SignedRequests {
    /// The hosts a signed request may name: `api.public_url`'s when it is set, else the
    /// address the API listens on (none when that is unspecified, `0.0.0.0` or `::`).
    pub hosts: Arc<Vec<String>>,
    nonces: Arc<Mutex<NonceCache>>,
}

impl SignedRequests {
    /// For a node reached at `public_url` (when set) and listening on `listen`; one key may
    /// hold `per_key` live nonces.
    ///
    /// Only a name that is this node's alone is accepted: another node could present a request
    /// signed for a name it shares (`localhost`, a private address on the same port), so a
    /// listen address stands in only when no `public_url` is set, and never an unspecified one.
    pub fn new(public_url: Option<&str>, listen: std::net::SocketAddr, per_key: usize) -> Self {
        let hosts = match public_url {
            Some(url) => settleproof_merchant_auth::host_and_path(url).map(|(h, _)| h).into_iter().collect(),
            None if listen.ip().is_unspecified() => Vec::new(),
            None => settleproof_merchant_auth::host_and_path(&format!("http://{listen}"))
                .map(|(h, _)| h)
                .into_iter()
                .collect(),
        };
        let cache = NonceCache::new(NONCE_CAPACITY, per_key.min(NONCE_CAPACITY), crate::time::now_s());
        SignedRequests { hosts: Arc::new(hosts), nonces: Arc::new(Mutex::new(cache)) }
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, NonceCache> {
        // The cache is consistent after any panic (each call leaves it whole).
        self.nonces.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Who made a request, as [`signed`] found it: a JWT that verified, bound to this request at
/// this node, its nonce new; with the JWT, which a change the merchant makes keeps as its
/// signature. Its `Debug` leaves the JWT out.
#[derive(Clone)]
pub struct Caller {
    /// What was verified.
    pub request: Verified,
    /// The JWT itself.
    pub jwt: String,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("request", &self.request).finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // [`signed`] runs before every merchant route and lets only a verified request through.
        parts.extensions.get::<Caller>().cloned().ok_or_else(ApiError::unauthorized)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether a bearer credential is a JWT (three dot-separated parts) rather than a token.
fn is_jwt(credential: &str) -> bool {
    credential.bytes().filter(|b| *b == b'.').count() == 2
}

/// Checks a JWT-authenticated request before its merchant route runs: the signature against the
/// registry's keys, the binding to this node's host, this method and path, the times and the
/// nonce first; only then is the body read and its hash checked, the merchant's request
/// budget taken, and the nonce kept (so a request over budget takes no room in the cache). A
/// refused one answers 401 naming why (429 over budget, 503 when the cache is full).
pub async fn signed(State(state): State<super::ApiState>, request: Request, next: Next) -> Response {
    let token = match bearer(request.headers()) {
        Some(t) if is_jwt(t) => t.to_string(),
        Some(_) => return refused(&AuthError::PlainToken),
        None => return refused(&AuthError::Missing),
    };
    let (mut parts, body) = request.into_parts();
    let now = crate::time::now_s();
    let v = match verify_token(&state, &token, &parts, now) {
        Ok(v) => v,
        Err(e) => return refused(&e),
    };
    let body = match axum::body::to_bytes(body, state.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    if let Err(e) = settleproof_merchant_auth::check_body(&v, &body) {
        return refused(&e);
    }
    if let Err(wait) = state.limiter.take(&v.merchant_id, std::time::Instant::now()) {
        return ApiError::rate_limited(wait).into_response();
    }
    if let Err(e) = state.signed.nonces().admit(&v, now) {
        return refused(&e);
    }
    parts.extensions.insert(Caller { request: v, jwt: token });
    next.run(Request::from_parts(parts, axum::body::Body::from(body))).await
}

/// Everything but the body: signature, key, host, method, path, times, nonce not seen.
fn verify_token(state: &super::ApiState, token: &str, parts: &Parts, now: u64) -> Result<Verified, AuthError> {
    let expected = Expected {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        hosts: &state.signed.hosts,
        audience: state.merchants.audience_rule(),
    };
    let registry = &state.merchants;
    // The merchant's root key, or a live key it granted. Keys are the merchant's own, so the
    // token's (yet unverified) `iss` picks the merchant; the signature check then holds it to it.
    let issuer = settleproof_merchant_auth::header_free_claims(token).map(|c| c.iss);
    let key_of = |kid: &str| {
        registry.key(kid).or_else(|| {
            let k = registry.live_key(issuer.as_deref()?, kid)?;
            Some((k.merchant_id, k.public_key?))
        })
    };
    let v = settleproof_merchant_auth::verify_request(token, key_of, &expected, now)?;
    state.signed.nonces().check(&v, now)?;
    Ok(v)
}

fn refused(e: &AuthError) -> Response {
    metrics::counter!("merchant_requests_refused_total", "reason" => e.reason()).increment(1);
    match e {
        AuthError::ReplayCacheFull => ApiError::unavailable(e.to_string()).into_response(),
        _ => ApiError::unauthorized_because(e.to_string()).into_response(),
    }
}

/// Who a request speaks for: a merchant, through its root key (every scope, and its keys'
/// management) or one of its API keys (that key's scopes).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The merchant.
    pub merchant: MerchantConfig,
    /// The key's scopes; `None`: the root key.
    pub scopes: Option<Vec<Scope>>,
}

impl Principal {
    /// Whether it may do what `scope` allows.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.as_ref().is_none_or(|s| s.contains(&scope))
    }
}

/// The merchant a request speaks for when its key may do what `scope` allows (`None`: anything
/// a merchant may).
pub fn merchant(caller: &Caller, state: &super::ApiState, scope: Option<Scope>) -> Result<MerchantConfig, ApiError> {
    let p = principal(caller, state)?;
    if let Some(scope) = scope
        && !p.may(scope)
    {
        return Err(ApiError::forbidden(format!("this API key lacks the `{}` scope", scope.as_str())));
    }
    Ok(p.merchant)
}

/// The principal of a request (which took its merchant's request budget in [`signed`]).
pub fn principal(caller: &Caller, state: &super::ApiState) -> Result<Principal, ApiError> {
    let Verified { merchant_id, key_id, .. } = &caller.request;
    let merchant = state.merchants.get(merchant_id).ok_or_else(ApiError::unauthorized)?;
    // The root key speaks for the merchant in everything; a key it granted, in its scopes.
    if state.merchants.key(key_id).is_some() {
        return Ok(Principal { merchant, scopes: None });
    }
    let key = state.merchants.live_key(merchant_id, key_id).ok_or_else(ApiError::unauthorized)?;
    Ok(Principal { merchant, scopes: Some(key.scopes) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_signed_request_names_only_what_is_this_nodes_alone() {
        use super::SignedRequests;
        let any: std::net::SocketAddr = ([0, 0, 0, 0], 8700).into();
        let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 8700).into();
        // Two nodes on 0.0.0.0:8700 with their own public URLs share no name (not localhost).
        let a = SignedRequests::new(Some("https://a.example.com"), any, 10);
        let b = SignedRequests::new(Some("https://b.example.com:443/"), any, 10);
        assert_eq!(
            (a.hosts.as_slice(), b.hosts.as_slice()),
            (&["a.example.com".to_string()][..], &["b.example.com".to_string()][..])
        );
        // A public URL replaces the listen address; an unspecified one names nothing.
        assert_eq!(
            SignedRequests::new(Some("http://Pay.Example.com:8080"), loopback, 10).hosts.as_slice(),
            ["pay.example.com:8080"]
        );
        assert!(SignedRequests::new(None, any, 10).hosts.is_empty());
        assert_eq!(SignedRequests::new(None, loopback, 10).hosts.as_slice(), ["127.0.0.1:8700"]);
    }
}
