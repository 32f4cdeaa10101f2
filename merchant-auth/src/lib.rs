//! Merchant-signed requests: the merchant holds its private keys, every node checks signatures
//! against the public keys in the threshold-approved registry record, and nothing a node sees
//! can be presented again, at another node or at the same one.
//!
//! A request carries a short-lived JWT (RFC 7519) in `Authorization: Bearer`, signed by a
//! merchant key (Ed25519 `EdDSA` or P-256 `ES256`). The header has `kid` (the key id, derived
//! from the key: [`MerchantKey::key_id`]) and a fresh `nonce`; the claims have `iss` (the
//! merchant), `sub` (the key id), `nbf`/`exp` at most [`MAX_LIFETIME_S`] apart, `uri`
//! (`"<METHOD> <host><path>"`) and `reqHash` (the body's SHA-256). This is the convention of
//! Coinbase's developer platform keys, so the merchant's own client signs with any JWT library.
//!
//! The JWT is signed and checked with `jsonwebtoken` over aws-lc-rs (which also makes key
//! pairs); only the request bindings (`uri`, `reqHash`, lifetime, nonce) are checked here.

mod key;
mod replay;
mod request;
mod signer;
mod statement;

pub use key::{KeyAlg, KeyError, MerchantKey};
pub use replay::NonceCache;
pub use request::{
    Audience, AuthError, Expected, MAX_LIFETIME_S, MAX_SKEW_S, RequestClaims, Verified, body_hash, canonical_host,
    check_body, host_and_path, network_audience, request_uri, verify_request,
};
pub use signer::{DEFAULT_LIFETIME_S, MerchantSigner, random_nonce};
pub use statement::{SignedStatement, header_free_claims, header_key_id};

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "http://127.0.0.1:8700/v1/invoices?limit=5";
    const AUDIENCE: &str = "settleproof:31337:0x0000000000000000000000000000000000000001";

    fn hosts() -> Vec<String> {
        vec!["127.0.0.1:8700".into(), "pay.example.com".into()]
    }

    fn check(signer: &MerchantSigner, token: &str, body: &[u8], now: u64) -> Result<Verified, AuthError> {
        let known = signer.public_key().clone();
        let merchant = signer.merchant_id().to_string();
        let hosts = hosts();
        let expected =
            Expected { method: "POST", path: "/v1/invoices", hosts: &hosts, audience: Audience::required(AUDIENCE) };
        let v = verify_request(
            token,
            |kid| (kid == known.key_id()).then(|| (merchant.clone(), known.clone())),
            &expected,
            now,
        )?;
        check_body(&v, body)?;
        Ok(v)
    }

    fn claims(s: &MerchantSigner, body: &[u8]) -> RequestClaims {
        RequestClaims {
            sub: s.key_id().into(),
            iss: s.merchant_id().into(),
            nbf: NOW,
            exp: NOW + 60,
            uri: "POST 127.0.0.1:8700/v1/invoices".into(),
            req_hash: Some(body_hash(body)),
            aud: Some(AUDIENCE.into()),
        }
    }

    #[test]
    fn a_signed_request_verifies_with_either_algorithm() {
        for alg in [KeyAlg::EdDsa, KeyAlg::Es256] {
            let s = MerchantSigner::generate("shop", alg).expect("key").with_audience(AUDIENCE);
            let t = s.sign_request("post", URL, b"{}", NOW, 60).expect("sign");
            let v = check(&s, &t, b"{}", NOW + 5).expect("verifies");
            assert_eq!((v.merchant_id.as_str(), v.key_id.as_str(), v.expires_s), ("shop", s.key_id(), NOW + 60));
            // The PEM round trip gives the same key.
            let again = MerchantSigner::from_pem("shop", s.private_key_pem()).expect("pem");
            assert_eq!(again.public_key(), s.public_key());
        }
    }

    #[test]
    fn every_binding_is_checked() {
        let s = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key").with_audience(AUDIENCE);
        let other = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key").with_audience(AUDIENCE);
        let body = br#"{"amount":"1"}"#;
        let sign = |c: &RequestClaims| s.sign_claims(c, &random_nonce()).expect("sign");
        let with = |f: &dyn Fn(&mut RequestClaims)| {
            let mut c = claims(&s, body);
            f(&mut c);
            sign(&c)
        };
        let cases: Vec<(&str, String, &[u8], u64, AuthError)> = vec![
            ("another body", with(&|_| {}), b"{}", NOW, AuthError::BodyHash),
            ("no body hash", with(&|c| c.req_hash = None), body, NOW, AuthError::BodyHash),
            (
                "another network",
                with(&|c| c.aud = Some("settleproof:1:0x0000000000000000000000000000000000000002".into())),
                body,
                NOW,
                AuthError::WrongAudience {
                    got: "settleproof:1:0x0000000000000000000000000000000000000002".into(),
                    want: AUDIENCE.into(),
                },
            ),
            ("no network", with(&|c| c.aud = None), body, NOW, AuthError::MissingAudience { want: AUDIENCE.into() }),
            (
                "another host",
                with(&|c| c.uri = "POST 10.0.0.9:8700/v1/invoices".into()),
                body,
                NOW,
                AuthError::WrongHost("10.0.0.9:8700".into()),
            ),
            (
                "another path",
                with(&|c| c.uri = "POST 127.0.0.1:8700/v1/webhook-endpoints".into()),
                body,
                NOW,
                AuthError::WrongTarget {
                    got: "POST 127.0.0.1:8700/v1/webhook-endpoints".into(),
                    want: "POST /v1/invoices".into(),
                },
            ),
            (
                "another method",
                with(&|c| c.uri = "GET 127.0.0.1:8700/v1/invoices".into()),
                body,
                NOW,
                AuthError::WrongTarget {
                    got: "GET 127.0.0.1:8700/v1/invoices".into(),
                    want: "POST /v1/invoices".into(),
                },
            ),
            ("expired", with(&|_| {}), body, NOW + 60 + MAX_SKEW_S + 1, AuthError::Expired),
            ("not yet valid", with(&|_| {}), body, NOW - MAX_SKEW_S - 1, AuthError::NotYetValid),
            ("too long a lifetime", with(&|c| c.exp = c.nbf + MAX_LIFETIME_S + 1), body, NOW, AuthError::Lifetime),
            ("exp before nbf", with(&|c| c.exp = c.nbf), body, NOW, AuthError::Lifetime),
            ("another merchant", with(&|c| c.iss = "other".into()), body, NOW, AuthError::WrongSubject),
            ("another subject", with(&|c| c.sub = "mk_0".into()), body, NOW, AuthError::WrongSubject),
            ("no nonce", s.sign_claims(&claims(&s, body), "short").expect("sign"), body, NOW, AuthError::BadNonce),
            ("not a JWT", "abc.def".into(), body, NOW, AuthError::Malformed("InvalidToken".into())),
            (
                "unknown key",
                other.sign_claims(&claims(&other, body), &random_nonce()).expect("sign"),
                body,
                NOW,
                AuthError::UnknownKey(other.key_id().into()),
            ),
        ];
        for (name, token, body, now, want) in cases {
            let got = check(&s, &token, body, now);
            match (&got, &want) {
                (Err(AuthError::Malformed(_)), AuthError::Malformed(_)) => {}
                _ => assert_eq!(got, Err(want), "{name}"),
            }
        }
        // The limits themselves pass.
        assert!(check(&s, &with(&|_| {}), body, NOW + 60 + MAX_SKEW_S).is_ok());
        assert!(check(&s, &with(&|c| c.exp = c.nbf + MAX_LIFETIME_S), body, NOW).is_ok());
        assert!(check(&s, &with(&|c| c.uri = "POST PAY.example.com/v1/invoices".into()), body, NOW).is_ok());
    }

    #[test]
    fn a_signature_by_another_key_under_this_kid_is_refused() {
        let s = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key").with_audience(AUDIENCE);
        let forger = MerchantSigner::generate("shop", KeyAlg::EdDsa).expect("key").with_audience(AUDIENCE);
        let token = forger.sign_claims(&claims(&s, b"x"), &random_nonce()).expect("sign");
        // Put the genuine kid in the forger's header.
        let forged_header = {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.kid = Some(s.key_id().into());
            h.nonce = Some(random_nonce());
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).expect("json"))
        };
        let rest = token.split_once('.').expect("jwt").1;
        let forged = format!("{forged_header}.{rest}");
        assert_eq!(check(&s, &forged, b"x", NOW), Err(AuthError::BadSignature(s.key_id().into())));
        // Nor may the header name another algorithm than the key's.
        let es = MerchantSigner::generate("shop", KeyAlg::Es256).expect("key").with_audience(AUDIENCE);
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(s.key_id().into());
        h.nonce = Some(random_nonce());
        let mut c = claims(&s, b"x");
        c.sub = s.key_id().into();
        let t = jsonwebtoken::encode(
            &h,
            &c,
            &jsonwebtoken::EncodingKey::from_ec_pem(es.private_key_pem().as_bytes()).expect("pem"),
        )
        .expect("sign");
        assert_eq!(check(&s, &t, b"x", NOW), Err(AuthError::WrongAlgorithm(s.key_id().into())));
    }

    #[test]
    fn request_uris_keep_the_port_and_drop_the_query() {
        assert_eq!(
            request_uri("get", "http://127.0.0.1:8700/v1/invoices?x=1").as_deref(),
            Some("GET 127.0.0.1:8700/v1/invoices")
        );
        assert_eq!(request_uri("GET", "https://Pay.Example.com").as_deref(), Some("GET pay.example.com/"));
        // The scheme's default port is left out, whichever way the URL is written.
        assert_eq!(request_uri("GET", "https://pay.example.com:443/a").as_deref(), Some("GET pay.example.com/a"));
        assert_eq!(request_uri("GET", "http://pay.example.com:443/a").as_deref(), Some("GET pay.example.com:443/a"));
        assert_eq!(request_uri("GET", "http://[::1]:8700/a/../b").as_deref(), Some("GET [::1]:8700/b"));
        assert_eq!(request_uri("GET", "ftp://x/y"), None);
        assert_eq!(request_uri("GET", "http://user@host/y"), None);
    }
}
