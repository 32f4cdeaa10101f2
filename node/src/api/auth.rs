//! Merchant authentication by bearer token.

use super::ApiError;
use axum::http::HeaderMap;
use settleproof_config::MerchantConfig;

/// The merchant whose API token is in the `Authorization: Bearer` header, within its request
/// budget.
pub fn merchant(headers: &HeaderMap, state: &super::ApiState) -> Result<MerchantConfig, ApiError> {
    let m = authenticate(headers, &state.merchants.list())?.clone();
    state.limiter.take(&m.id, std::time::Instant::now()).map_err(ApiError::rate_limited)?;
    Ok(m)
}

fn authenticate<'a>(headers: &HeaderMap, merchants: &'a [MerchantConfig]) -> Result<&'a MerchantConfig, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let hash = token_hash(token);
    merchants
        .iter()
        .find(|m| constant_time_eq(m.api_token_sha256.as_slice(), hash.as_slice()))
        .ok_or_else(ApiError::unauthorized)
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
