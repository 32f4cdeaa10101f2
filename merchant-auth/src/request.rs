//! What a node checks of a signed request before it acts for a merchant.
//!
//! The JWT's signature, algorithm and required claims are checked by `jsonwebtoken`; the
//! bindings that make a captured request useless elsewhere are checked here: `uri` names this
//! node's own host (from its configuration, never the request's `Host` header) and this
//! request's method and path, `reqHash` is the SHA-256 of this body, the lifetime is at most
//! [`MAX_LIFETIME_S`] with [`MAX_SKEW_S`] of clock skew. Everything but the body is checked
//! first ([`verify_request`]), so no body is read for a token that fails; the body then by
//! [`check_body`]. The nonce is checked by the caller against its [`crate::NonceCache`] once
//! the signature holds.

use crate::key::MerchantKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest a signed request may be valid (`exp - nbf`).
pub const MAX_LIFETIME_S: u64 = 120;
/// Clock skew allowed between the merchant and a node.
pub const MAX_SKEW_S: u64 = 30;
/// Longest accepted header nonce.
const MAX_NONCE_LEN: usize = 128;
/// Shortest accepted header nonce (8 random bytes in hex).
const MIN_NONCE_LEN: usize = 16;

/// The claims of a signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestClaims {
    /// The key id.
    pub sub: String,
    /// The merchant id.
    pub iss: String,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// `"<METHOD> <host><path>"`.
    pub uri: String,
    /// Lowercase hex SHA-256 of the body, when there is one.
    #[serde(rename = "reqHash", default, skip_serializing_if = "Option::is_none")]
    pub req_hash: Option<String>,
    /// The network it is for ([`network_audience`]): when present, no other network takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The `aud` of a settleproof network: its first chain and that chain's settlement contract
/// (`0x` and 40 lowercase hex digits), which no other network shares.
pub fn network_audience(chain_id: u64, settlement: &str) -> String {
    format!("settleproof:{chain_id}:{}", settlement.to_ascii_lowercase())
}

/// The network a JWT must name as its `aud`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience<'a> {
    /// This network ([`network_audience`]): a JWT naming another is refused.
    pub network: &'a str,
    /// A JWT naming no network is taken only when signed (`nbf`) before this time (unix s): a
    /// network whose merchants signed without `aud` before it was required sets it to the day
    /// it was. `None`: a JWT must always name the network.
    pub unnamed_before_s: Option<u64>,
}

impl<'a> Audience<'a> {
    /// A JWT must name `network`.
    pub fn required(network: &'a str) -> Self {
        Self { network, unnamed_before_s: None }
    }

    /// The rule at `now_s` (unix s) of a network whose upgrade day is `day` (when `aud` became
    /// required): a JWT naming no network is taken only while the day has not come, and only
    /// when signed before it. From the day on, every JWT must name `network`, so a JWT signed
    /// without `aud` long ago cannot be presented later by whoever saw it.
    pub fn upgrading(network: &'a str, day: Option<u64>, now_s: u64) -> Self {
        Self { network, unnamed_before_s: day.filter(|&day| now_s < day) }
    }

    /// Whether `claims` are for this network (see the fields).
    fn check(&self, claims: &RequestClaims) -> Result<(), AuthError> {
        match &claims.aud {
            Some(got) if got == self.network => Ok(()),
            Some(got) => Err(AuthError::WrongAudience { got: got.clone(), want: self.network.to_string() }),
            None if self.unnamed_before_s.is_some_and(|before| claims.nbf < before) => Ok(()),
            None => Err(AuthError::MissingAudience { want: self.network.to_string() }),
        }
    }
}

/// The request a token must be bound to.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path, without the query.
    pub path: &'a str,
    /// This node's own hosts ([`canonical_host`] of its URLs).
    pub hosts: &'a [String],
    /// This node's network: a JWT with another `aud`, or none, is refused.
    pub audience: Audience<'a>,
}

/// A request whose signature and bindings hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The merchant.
    pub merchant_id: String,
    /// The key that signed it.
    pub key_id: String,
    /// Its nonce, for the replay check.
    pub nonce: String,
    /// Its start, Unix seconds.
    pub not_before_s: u64,
    /// Its expiry, Unix seconds.
    pub expires_s: u64,
    /// The body hash it signed.
    pub req_hash: Option<String>,
}

/// Why a signed request was refused. Each message names what is wrong; none depends on a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` JWT.
    #[error("missing credentials: send `Authorization: Bearer <JWT>` signed by one of the merchant's keys")]
    Missing,
    /// A bearer credential that is not a JWT: the retired plain tokens.
    #[error(
        "plain bearer tokens are not accepted: send a JWT signed by one of the merchant's keys (`settleproof merchant request` signs one)"
    )]
    PlainToken,
    /// Not a JWT, or a part of it does not decode.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header has no `kid`.
    #[error("the JWT header has no `kid` (the merchant key id, `mk_...`)")]
    MissingKeyId,
    /// The header's nonce is missing or malformed.
    #[error("the JWT header needs a `nonce` of {MIN_NONCE_LEN} to {MAX_NONCE_LEN} characters, new for each request")]
    BadNonce,
    /// No merchant holds this key (the same words as a bad signature: the answer tells no one
    /// which keys are registered).
    #[error("the JWT is not signed by a key this node holds for its issuer (kid `{}`)", clip(.0))]
    UnknownKey(String),
    /// The header's `alg` is not the key's.
    #[error("the JWT's `alg` is not the algorithm of key `{0}`")]
    WrongAlgorithm(String),
    /// The signature does not verify.
    #[error("the JWT is not signed by a key this node holds for its issuer (kid `{}`)", clip(.0))]
    BadSignature(String),
    /// `iss` or `sub` do not name the key's merchant and the key.
    #[error("`iss` must be the merchant id and `sub` the key id of the signing key")]
    WrongSubject,
    /// `exp - nbf` is not within (0, 120] s.
    #[error("the JWT must be valid for at most {MAX_LIFETIME_S} s (`exp` - `nbf`), and `exp` after `nbf`")]
    Lifetime,
    /// Too early.
    #[error("not yet valid: `nbf` is more than {MAX_SKEW_S} s ahead of this node's clock")]
    NotYetValid,
    /// Too late.
    #[error("expired: `exp` is more than {MAX_SKEW_S} s behind this node's clock; sign each request anew")]
    Expired,
    /// `uri` names another host.
    #[error("wrong host: the JWT's `uri` names `{}`, not this node (sign for the URL you send to)", clip(.0))]
    WrongHost(String),
    /// `uri` names another method or path.
    #[error("the JWT's `uri` is `{}`, but this request is `{}`", clip(.got), clip(.want))]
    WrongTarget {
        /// What the token names.
        got: String,
        /// What this request is.
        want: String,
    },
    /// `aud` names another network.
    #[error("wrong audience: the JWT's `aud` is `{}`, this network is `{}`", clip(.got), clip(.want))]
    WrongAudience {
        /// What the token names.
        got: String,
        /// This network.
        want: String,
    },
    /// No `aud`, on a network that requires one.
    #[error("the JWT has no `aud`: sign it for this network, `aud` = `{}` (the `audience` of any node's /health/ready)", clip(.want))]
    MissingAudience {
        /// This network.
        want: String,
    },
    /// `reqHash` is missing or is not this body's.
    #[error("`reqHash` must be the lowercase hex SHA-256 of this request's body")]
    BodyHash,
    /// The nonce was seen before.
    #[error("replayed: this JWT's nonce was already used at this node; sign each request anew")]
    Replayed,
    /// The replay cache is full (for this key, or for the node).
    #[error("too many signed requests in flight at this node; retry shortly")]
    ReplayCacheFull,
    /// Made before this node started: it cannot be told from a request seen before the start.
    #[error("signed before this node started (`nbf`); sign the request anew")]
    BeforeStart,
}

/// At most 80 characters of an echoed, caller-chosen text.
fn clip(s: &str) -> String {
    if s.chars().count() <= 80 { s.to_string() } else { format!("{}…", s.chars().take(80).collect::<String>()) }
}

impl AuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::PlainToken => "plain_token",
            AuthError::Malformed(_) => "malformed",
            AuthError::MissingKeyId => "missing_kid",
            AuthError::BadNonce => "bad_nonce",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::WrongAlgorithm(_) => "wrong_alg",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::WrongSubject => "wrong_subject",
            AuthError::Lifetime => "lifetime",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Expired => "expired",
            AuthError::WrongHost(_) => "wrong_host",
            AuthError::WrongTarget { .. } => "wrong_target",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::MissingAudience { .. } => "missing_audience",
            AuthError::BodyHash => "body_hash",
            AuthError::Replayed => "replayed",
            AuthError::ReplayCacheFull => "replay_cache_full",
            AuthError::BeforeStart => "before_start",
        }
    }
}

/// Lowercase hex SHA-256 of a body.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `"<METHOD> <host[:port]><path>"` of a request to `url` (the query left out); `None` when
/// `url` is not an http(s) URL with a host.
pub fn request_uri(method: &str, url: &str) -> Option<String> {
    let (host, path) = host_and_path(url)?;
    Some(format!("{} {host}{path}", method.to_ascii_uppercase()))
}

/// The host of an http(s) URL as both sides name it, and its path (normalised as an HTTP
/// client sends it), without the query or fragment. The host is lower case (IPv6 in
/// brackets), with its port unless it is the scheme's default (80, 443): what `url` and
/// browsers' `URL.host` give. `None` for another scheme, no host, or user info.
pub fn host_and_path(url: &str) -> Option<(String, String)> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") || !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    Some((canonical_host(&u)?, u.path().to_string()))
}

/// `host[:port]` of a parsed URL, the port left out when it is the scheme's default.
pub fn canonical_host(u: &url::Url) -> Option<String> {
    let host = u.host_str()?.to_ascii_lowercase();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Checks `token` for the request `expected` at `now_s`; `key_of` finds a key id's merchant
/// and public key in the registry.
pub fn verify_request(
    token: &str,
    key_of: impl Fn(&str) -> Option<(String, MerchantKey)>,
    expected: &Expected<'_>,
    now_s: u64,
) -> Result<Verified, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let kid = header.kid.clone().ok_or(AuthError::MissingKeyId)?;
    let nonce = header.nonce.clone().ok_or(AuthError::BadNonce)?;
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::BadNonce);
    }
    let (merchant_id, key) = key_of(&kid).ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
    if header.alg != key.alg.jwt() {
        return Err(AuthError::WrongAlgorithm(kid));
    }
    // Times are checked below against the caller's clock, with the lifetime bound.
    let claims =
        signed_claims(token, &key, &kid, &merchant_id, &["exp", "nbf", "iss", "sub"], Some(expected.audience))?;
    if claims.exp <= claims.nbf || claims.exp - claims.nbf > MAX_LIFETIME_S {
        return Err(AuthError::Lifetime);
    }
    if claims.nbf > now_s + MAX_SKEW_S {
        return Err(AuthError::NotYetValid);
    }
    if claims.exp + MAX_SKEW_S < now_s {
        return Err(AuthError::Expired);
    }
    let (method, target) =
        claims.uri.split_once(' ').ok_or_else(|| AuthError::Malformed("`uri` is not \"METHOD host/path\"".into()))?;
    let split = target.find('/').unwrap_or(target.len());
    let (host, path) = target.split_at(split);
    if !expected.hosts.iter().any(|h| h == &host.to_ascii_lowercase()) {
        return Err(AuthError::WrongHost(host.to_string()));
    }
    if method != expected.method || path != expected.path {
        return Err(AuthError::WrongTarget {
            got: claims.uri.clone(),
            want: format!("{} {}", expected.method, expected.path),
        });
    }
    Ok(Verified {
        merchant_id,
        key_id: kid,
        nonce,
        not_before_s: claims.nbf,
        expires_s: claims.exp,
        req_hash: claims.req_hash,
    })
}

/// The claims of `jwt` when `key` (id `kid`) signed it for `merchant_id` (`iss` and `sub`
/// match), with the `required` claims present and for `audience` (`None`: any network, for a
/// check that cannot know it); times are the caller's to check.
pub(crate) fn signed_claims(
    jwt: &str,
    key: &MerchantKey,
    kid: &str,
    merchant_id: &str,
    required: &[&str],
    audience: Option<Audience<'_>>,
) -> Result<RequestClaims, AuthError> {
    let mut validation = jsonwebtoken::Validation::new(key.alg.jwt());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    // Checked below, to name both networks in the refusal.
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(required);
    let claims = jsonwebtoken::decode::<RequestClaims>(jwt, &key.decoding_key(), &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature(kid.to_string()),
            _ => AuthError::Malformed(e.to_string()),
        })?
        .claims;
    if claims.iss != merchant_id || claims.sub != kid {
        return Err(AuthError::WrongSubject);
    }
    if let Some(audience) = audience {
        audience.check(&claims)?;
    }
    Ok(claims)
}

/// Checks the body `v` signed: `reqHash` is its SHA-256, or absent when there is no body.
pub fn check_body(v: &Verified, body: &[u8]) -> Result<(), AuthError> {
    match &v.req_hash {
        Some(h) if *h == body_hash(body) => Ok(()),
        None if body.is_empty() => Ok(()),
        _ => Err(AuthError::BodyHash),
    }
}
