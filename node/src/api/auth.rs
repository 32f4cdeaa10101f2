//! Merchant authentication by bearer token.

use super::ApiError;
use crate::store::Scope;
use axum::http::HeaderMap;
use settleproof_config::MerchantConfig;

/// Who a request speaks for: a merchant, through its primary token (every scope, and its keys'
/// management) or one of its API keys (that key's scopes).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The merchant.
    pub merchant: MerchantConfig,
    /// The key's scopes; `None`: the primary token.
    pub scopes: Option<Vec<Scope>>,
}

impl Principal {
    /// Whether it may do what `scope` allows.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.as_ref().is_none_or(|s| s.contains(&scope))
    }
}

/// The merchant whose token is in the `Authorization: Bearer` header, within its request
/// budget, when the token may do what `scope` allows (`None`: anything a merchant may).
pub fn merchant(
    headers: &HeaderMap,
    state: &super::ApiState,
    scope: Option<Scope>,
) -> Result<MerchantConfig, ApiError> {
    let p = principal(headers, state)?;
    if let Some(scope) = scope
        && !p.may(scope)
    {
        return Err(ApiError::forbidden(format!("this API key lacks the `{}` scope", scope.as_str())));
    }
    Ok(p.merchant)
}

/// The principal of the request, within its merchant's request budget.
pub fn principal(headers: &HeaderMap, state: &super::ApiState) -> Result<Principal, ApiError> {
    let p = authenticate(headers, state)?;
    state.limiter.take(&p.merchant.id, std::time::Instant::now()).map_err(ApiError::rate_limited)?;
    Ok(p)
}

fn authenticate(headers: &HeaderMap, state: &super::ApiState) -> Result<Principal, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let hash = token_hash(token);
    let merchants = state.merchants.list();
    if let Some(m) = merchants.iter().find(|m| constant_time_eq(m.api_token_sha256.as_slice(), hash.as_slice())) {
        return Ok(Principal { merchant: m.clone(), scopes: None });
    }
    // An API key is found by its token's hash, as a primary token is: the lookup is the
    // comparison.
    let key = state.merchants.live_key(hash).ok_or_else(ApiError::unauthorized)?;
    let merchant = state.merchants.get(&key.merchant_id).ok_or_else(ApiError::unauthorized)?;
    Ok(Principal { merchant, scopes: Some(key.scopes) })
}

/// The SHA-256 of a merchant API token, as `api_token_sha256` holds it.
pub fn token_hash(token: &str) -> alloy::primitives::B256 {
    use sha2::Digest;
    alloy::primitives::B256::from_slice(&sha2::Sha256::digest(token.as_bytes()))
}

/// Compares without an early exit on the first differing byte.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_table() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
