//! A merchant's signed request kept as the record of a change it made (an API key granted or
//! revoked): any node can check, at any later time, that the merchant's key signed this
//! method, path and body. The request's host, times and nonce only guarded the request itself
//! and are not checked again.

use crate::key::MerchantKey;
use crate::request::{AuthError, RequestClaims, body_hash, signed_claims};
use serde::{Deserialize, Serialize};

/// A signed request and its exact body. Its `Debug` shows neither: a JWT is a credential for
/// its lifetime, and a body may hold a secret the merchant chose.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    /// The JWT.
    pub jwt: String,
    /// The body it signed (UTF-8 JSON), empty when none.
    #[serde(default)]
    pub body: String,
}

impl std::fmt::Debug for SignedStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedStatement")
            .field("kid", &header_key_id(&self.jwt))
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A JWT's claims, without checking anything (to read `nbf` of a statement that is then
/// verified, or refused).
pub fn header_free_claims(jwt: &str) -> Option<RequestClaims> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `kid` a JWT's header names, without checking anything else.
pub fn header_key_id(jwt: &str) -> Option<String> {
    jsonwebtoken::decode_header(jwt).ok()?.kid
}

impl SignedStatement {
    /// Checks that `key` of `merchant_id` signed a `method` request to `path` with this body,
    /// for `audience` (`None`: for any network, for a check that cannot know it).
    pub fn verify(
        &self,
        key: &MerchantKey,
        merchant_id: &str,
        method: &str,
        path: &str,
        audience: Option<crate::Audience<'_>>,
    ) -> Result<(), AuthError> {
        let header = jsonwebtoken::decode_header(&self.jwt).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        if kid != key.key_id() {
            return Err(AuthError::UnknownKey(kid));
        }
        let claims = signed_claims(&self.jwt, key, &kid, merchant_id, &["iss", "sub"], audience)?;
        let (m, target) = claims.uri.split_once(' ').ok_or_else(|| AuthError::Malformed("`uri`".into()))?;
        let signed_path = target.find('/').map_or("", |i| &target[i..]);
        if m != method || signed_path != path {
            return Err(AuthError::WrongTarget { got: claims.uri.clone(), want: format!("{method} {path}") });
        }
        match &claims.req_hash {
            Some(h) if *h == body_hash(self.body.as_bytes()) => Ok(()),
            None if self.body.is_empty() => Ok(()),
            _ => Err(AuthError::BodyHash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyAlg, MerchantSigner};

    #[test]
    fn a_statement_holds_for_its_signer_method_path_and_body_only() {
        let root = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key");
        let other = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key");
        let body = r#"{"name":"ci"}"#;
        let jwt = root.sign_request("POST", "http://10.1.2.3:8700/v1/api-keys", body.as_bytes(), 1, 60).expect("sign");
        let s = SignedStatement { jwt: jwt.clone(), body: body.into() };
        // Checked long after, at any node: the host and times do not matter any more.
        assert_eq!(s.verify(root.public_key(), "shop", "POST", "/v1/api-keys", None), Ok(()));
        assert_eq!(
            s.verify(other.public_key(), "shop", "POST", "/v1/api-keys", None),
            Err(AuthError::UnknownKey(root.key_id().into()))
        );
        assert_eq!(s.verify(root.public_key(), "other", "POST", "/v1/api-keys", None), Err(AuthError::WrongSubject));
        assert!(matches!(
            s.verify(root.public_key(), "shop", "DELETE", "/v1/api-keys", None),
            Err(AuthError::WrongTarget { .. })
        ));
        assert!(matches!(
            s.verify(root.public_key(), "shop", "POST", "/v1/api-keys/x", None),
            Err(AuthError::WrongTarget { .. })
        ));
        let altered = SignedStatement { jwt, body: r#"{"name":"ci2"}"#.into() };
        assert_eq!(altered.verify(root.public_key(), "shop", "POST", "/v1/api-keys", None), Err(AuthError::BodyHash));
        // Another key's signature under the root's kid.
        let forged = other.sign_claims(
            &crate::RequestClaims {
                sub: root.key_id().into(),
                iss: "shop".into(),
                nbf: 1,
                exp: 2,
                uri: "POST h/v1/api-keys".into(),
                req_hash: Some(body_hash(body.as_bytes())),
                aud: None,
            },
            &crate::random_nonce(),
        );
        let forged = forged.expect("sign");
        let (_, rest) = forged.split_once('.').expect("jwt");
        let header = {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.kid = Some(root.key_id().into());
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).expect("json"))
        };
        let s = SignedStatement { jwt: format!("{header}.{rest}"), body: body.into() };
        assert_eq!(
            s.verify(root.public_key(), "shop", "POST", "/v1/api-keys", None),
            Err(AuthError::BadSignature(root.key_id().into()))
        );
    }

    /// A statement naming a network holds on that network only. One naming none holds where
    /// the network allows it for what was signed before its upgrade day, until that day, and
    /// nowhere else; a check that cannot know the network (`None`) takes both.
    #[test]
    fn a_statement_for_one_network_is_refused_on_another_and_one_for_none_after_the_day() {
        let here = crate::network_audience(31337, "0xAbC0000000000000000000000000000000000001");
        let there = crate::network_audience(1, "0xabc0000000000000000000000000000000000001");
        let (at_here, at_there) = (crate::Audience::required(&here), crate::Audience::required(&there));
        let root = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key").with_audience(there.clone());
        let jwt = root.sign_request("POST", "http://h:1/v1/api-keys", b"{}", 1, 60).expect("sign");
        let s = SignedStatement { jwt, body: "{}".into() };
        assert_eq!(
            s.verify(root.public_key(), "shop", "POST", "/v1/api-keys", Some(at_here)),
            Err(AuthError::WrongAudience { got: there.clone(), want: here.clone() })
        );
        assert_eq!(s.verify(root.public_key(), "shop", "POST", "/v1/api-keys", Some(at_there)), Ok(()));
        assert_eq!(s.verify(root.public_key(), "shop", "POST", "/v1/api-keys", None), Ok(()));
        let plain = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key");
        let signed_at = |nbf| {
            let jwt = plain.sign_request("POST", "http://h:1/v1/api-keys", b"{}", nbf, 60).expect("sign");
            SignedStatement { jwt, body: "{}".into() }
        };
        // The upgrade day is 100; checked at time `now`.
        let upgrading = |now| Some(crate::Audience::upgrading(&here, Some(100), now));
        let missing = || Err(AuthError::MissingAudience { want: here.clone() });
        let table = [
            (Some(at_here), 100, missing()),
            (upgrading(50), 99, Ok(())),
            (upgrading(99), 99, Ok(())),
            (upgrading(99), 100, missing()),
            // From the day on, none is taken, however early it was signed.
            (upgrading(100), 99, missing()),
            (upgrading(5_000), 1, missing()),
            (Some(crate::Audience::upgrading(&here, None, 50)), 1, missing()),
            (None, 100, Ok(())),
        ];
        for (audience, nbf, want) in table {
            assert_eq!(
                signed_at(nbf).verify(plain.public_key(), "shop", "POST", "/v1/api-keys", audience),
                want,
                "{audience:?} {nbf}"
            );
        }
        assert!(here.ends_with(":0xabc0000000000000000000000000000000000001"), "{here}");
    }
}
