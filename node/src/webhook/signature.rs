//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64 part of the `whsec_` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Tolerated clock difference when verifying, in seconds (the spec's recommended 5 minutes).
pub const TOLERANCE_S: u64 = 300;

/// Why a secret or a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The secret is not `whsec_` + base64.
    #[error("webhook secret must be `whsec_` followed by base64")]
    BadSecret,
    /// A required header is missing.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// The timestamp is not an integer or is too far from now.
    #[error("webhook-timestamp is invalid or outside the {TOLERANCE_S} s tolerance")]
    BadTimestamp,
    /// No `v1` signature matched.
    #[error("no matching v1 signature")]
    NoMatch,
}

fn key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let b64 = secret.strip_prefix("whsec_").ok_or(SignatureError::BadSecret)?;
    STANDARD.decode(b64).map_err(|_| SignatureError::BadSecret)
}

fn mac(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // Invariant: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` header value for this message.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Result<String, SignatureError> {
    let tag = mac(&key(secret)?, id, timestamp, body).finalize().into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// Verifies a delivery as a receiver would: any of the space-separated `v1,` signatures must
/// match (constant-time), and the timestamp must be within [`TOLERANCE_S`] of `now_s`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now_s: u64,
) -> Result<(), SignatureError> {
    let ts: u64 = timestamp.parse().map_err(|_| SignatureError::BadTimestamp)?;
    if ts.abs_diff(now_s) > TOLERANCE_S {
        return Err(SignatureError::BadTimestamp);
    }
    let key = key(secret)?;
    for candidate in signatures.split(' ') {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            continue;
        };
        if mac(&key, id, ts, body).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::NoMatch)
}

/// A fresh random secret in `whsec_` form (24 random bytes).
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vector of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        assert_eq!(sign(SECRET, ID, TS, BODY).as_deref(), Ok(SIG));
        assert_eq!(verify(SECRET, ID, &TS.to_string(), SIG, BODY, TS), Ok(()));
    }

    #[test]
    fn rejects_tampering_and_stale_timestamps() {
        let ts = TS.to_string();
        assert_eq!(verify(SECRET, ID, &ts, SIG, b"{}", TS), Err(SignatureError::NoMatch));
        assert_eq!(verify(SECRET, "msg_other", &ts, SIG, BODY, TS), Err(SignatureError::NoMatch));
        assert_eq!(verify(SECRET, ID, &ts, SIG, BODY, TS + TOLERANCE_S + 1), Err(SignatureError::BadTimestamp));
        assert_eq!(verify(SECRET, ID, &ts, &format!("v1,bad {SIG}"), BODY, TS), Ok(()));
        assert_eq!(sign("nope", ID, TS, BODY), Err(SignatureError::BadSecret));
        assert!(generate_secret().starts_with("whsec_"));
    }
}
