//! The merchant's side: a private key (PKCS#8 PEM) that signs each request as a short-lived JWT.
//! The CLI, the tests, the bench and the drills sign with it; a merchant's own client does the
//! same with any JWT library (docs/examples/).

use crate::key::{KeyAlg, KeyError, MerchantKey};
use crate::request::{RequestClaims, body_hash, request_uri};
use aws_lc_rs::signature::KeyPair;
use base64::Engine;

/// How long a signed request stays valid: well inside the 120 s a node allows.
pub const DEFAULT_LIFETIME_S: u64 = 60;

/// A merchant's private key and the merchant it signs for.
pub struct MerchantSigner {
    merchant_id: String,
    public: MerchantKey,
    key_id: String,
    encoding: jsonwebtoken::EncodingKey,
    pem: String,
    audience: Option<String>,
}

impl std::fmt::Debug for MerchantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("MerchantSigner").field("merchant_id", &self.merchant_id).field("key_id", &self.key_id).finish()
    }
}

impl MerchantSigner {
    /// A new key pair of `alg` for `merchant_id`.
    pub fn generate(merchant_id: &str, alg: KeyAlg) -> Result<Self, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = match alg {
            KeyAlg::EdDsa => aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&rng)
                .map_err(|_| KeyError::Private("could not generate an Ed25519 key".into()))?,
            KeyAlg::Es256 => aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .map_err(|_| KeyError::Private("could not generate a P-256 key".into()))?,
        };
        Self::from_pkcs8_der(merchant_id, der.as_ref())
    }

    /// The signer of a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), Ed25519 or P-256.
    pub fn from_pem(merchant_id: &str, pem: &str) -> Result<Self, KeyError> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        if !pem.contains("-----BEGIN PRIVATE KEY-----") || body.is_empty() {
            return Err(KeyError::Private("expected a PKCS#8 PEM block (-----BEGIN PRIVATE KEY-----)".into()));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| KeyError::Private(format!("the PEM block is not base64: {e}")))?;
        Self::from_pkcs8_der(merchant_id, &der)
    }

    fn from_pkcs8_der(merchant_id: &str, der: &[u8]) -> Result<Self, KeyError> {
        let (alg, public, encoding) = if let Ok(pair) = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(der) {
            (KeyAlg::EdDsa, pair.public_key().as_ref().to_vec(), jsonwebtoken::EncodingKey::from_ed_der(der))
        } else if let Ok(pair) =
            aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
        {
            (KeyAlg::Es256, pair.public_key().as_ref().to_vec(), jsonwebtoken::EncodingKey::from_ec_der(der))
        } else {
            return Err(KeyError::Private("neither an Ed25519 nor a P-256 PKCS#8 key".into()));
        };
        let public = MerchantKey::new(alg, &public)?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD
                .encode(der)
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(MerchantSigner {
            merchant_id: merchant_id.to_string(),
            key_id: public.key_id(),
            public,
            encoding,
            pem,
            audience: None,
        })
    }

    /// This signer, naming network `audience` ([`crate::network_audience`]) in every JWT it
    /// signs: a request or record it signs then holds on that network only.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The network it names in each JWT, if any.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The public key, for the registry record.
    pub fn public_key(&self) -> &MerchantKey {
        &self.public
    }

    /// The key id (`kid` and `sub` of each JWT).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The merchant (`iss`).
    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }

    /// The private key as PKCS#8 PEM (for the merchant's own files only).
    pub fn private_key_pem(&self) -> &str {
        &self.pem
    }

    /// A JWT for one request: `method` to `url` (scheme, host and port, path; a query is left
    /// out of the binding) with `body` (empty: none), valid from `now_s` for `lifetime_s`.
    pub fn sign_request(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        now_s: u64,
        lifetime_s: u64,
    ) -> Result<String, KeyError> {
        let uri = request_uri(method, url).ok_or_else(|| KeyError::Private(format!("not an http(s) URL: {url}")))?;
        let claims = RequestClaims {
            sub: self.key_id.clone(),
            iss: self.merchant_id.clone(),
            nbf: now_s,
            exp: now_s + lifetime_s,
            uri,
            req_hash: (!body.is_empty()).then(|| body_hash(body)),
            aud: self.audience.clone(),
        };
        self.sign_claims(&claims, &random_nonce())
    }

    /// Signs any claims with this key and `nonce` (tests build wrong ones with it).
    pub fn sign_claims<T: serde::Serialize>(&self, claims: &T, nonce: &str) -> Result<String, KeyError> {
        let mut header = jsonwebtoken::Header::new(self.public.alg.jwt());
        header.kid = Some(self.key_id.clone());
        header.nonce = Some(nonce.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| KeyError::Private(e.to_string()))
    }
}

/// 16 random bytes, hex.
pub fn random_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}
