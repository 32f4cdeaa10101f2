//! A merchant's public signing key, as the registry holds it, and its key id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The signature algorithms a merchant key may use (the JWS `alg` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlg {
    /// Ed25519 (RFC 8037 `EdDSA`).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    #[serde(rename = "ES256")]
    Es256,
}

impl KeyAlg {
    /// The JWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EdDsa => "EdDSA",
            KeyAlg::Es256 => "ES256",
        }
    }

    /// Length of the public key's bytes: 32 (Ed25519) or 65 (uncompressed P-256 point).
    pub fn public_key_len(self) -> usize {
        match self {
            KeyAlg::EdDsa => 32,
            KeyAlg::Es256 => 65,
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyAlg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            KeyAlg::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl std::str::FromStr for KeyAlg {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "EdDSA" | "eddsa" | "ed25519" => Ok(KeyAlg::EdDsa),
            "ES256" | "es256" | "p256" => Ok(KeyAlg::Es256),
            other => Err(KeyError::Alg(other.to_string())),
        }
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Unknown algorithm.
    #[error("unknown key algorithm `{0}`: use EdDSA (Ed25519) or ES256 (P-256)")]
    Alg(String),
    /// The public key is not lowercase hex of the right length.
    #[error("public_key must be {expected} bytes of lowercase hex, without 0x, for {alg} (got {got})")]
    Length {
        /// Algorithm.
        alg: &'static str,
        /// Bytes expected.
        expected: usize,
        /// What was given.
        got: String,
    },
    /// The bytes are not a point of the curve.
    #[error("public_key is not a valid {0} public key")]
    NotAKey(&'static str),
    /// A private key could not be read.
    #[error("private key: {0}")]
    Private(String),
}

/// A merchant's public key: what the registry record holds and every node checks signatures
/// against. No node ever holds the private half.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantKey {
    /// Algorithm.
    pub alg: KeyAlg,
    /// The public key, hex: 32 bytes (Ed25519) or the 65-byte uncompressed P-256 point.
    pub public_key: String,
}

impl MerchantKey {
    /// A key from its raw public bytes, checked.
    pub fn new(alg: KeyAlg, public_key: &[u8]) -> Result<Self, KeyError> {
        let key = MerchantKey { alg, public_key: hex::encode(public_key) };
        key.check()?;
        Ok(key)
    }

    /// The raw public key bytes (empty when the hex is malformed; [`MerchantKey::check`] says why).
    pub fn bytes(&self) -> Vec<u8> {
        hex::decode(&self.public_key).unwrap_or_default()
    }

    /// Checks that the key is one canonical encoding of a usable key: lowercase hex of the right
    /// length; for Ed25519 a canonically encoded point not of small order (a small-order key
    /// verifies signatures anyone can make); for P-256 a point on the curve. So one key has one
    /// text, and one key id.
    pub fn check(&self) -> Result<(), KeyError> {
        let bytes = self.bytes();
        if hex::encode(&bytes) != self.public_key || bytes.len() != self.alg.public_key_len() {
            return Err(KeyError::Length {
                alg: self.alg.as_str(),
                expected: self.alg.public_key_len(),
                got: format!("{} characters", self.public_key.len()),
            });
        }
        if self.alg == KeyAlg::EdDsa {
            let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::NotAKey("EdDSA"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::NotAKey("EdDSA"))?;
            if key.is_weak() || key.to_edwards().compress().to_bytes() != raw {
                return Err(KeyError::NotAKey("EdDSA"));
            }
        }
        let probe = match self.alg {
            KeyAlg::EdDsa => aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, &bytes),
            KeyAlg::Es256 => {
                aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, &bytes)
            }
        };
        probe.map(|_| ()).map_err(|_| KeyError::NotAKey(self.alg.as_str()))
    }

    /// The key id: `mk_` and 20 bytes of SHA-256 over the algorithm and the key, so that an id
    /// names one key and no one can claim another key under it.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.alg.as_str().as_bytes());
        h.update([0u8]);
        h.update(self.bytes());
        format!("mk_{}", hex::encode(&h.finalize()[..20]))
    }

    pub(crate) fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        match self.alg {
            KeyAlg::EdDsa => jsonwebtoken::DecodingKey::from_ed_der(&self.bytes()),
            KeyAlg::Es256 => jsonwebtoken::DecodingKey::from_ec_der(&self.bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MerchantSigner;

    #[test]
    fn key_ids_name_one_key_of_one_algorithm() {
        let a = MerchantSigner::generate("m", KeyAlg::EdDsa).expect("key").public_key().clone();
        let b = MerchantSigner::generate("m", KeyAlg::EdDsa).expect("key").public_key().clone();
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(a.key_id(), a.clone().key_id());
        assert!(a.key_id().starts_with("mk_") && a.key_id().len() == 43);
    }

    #[test]
    fn malformed_keys_are_refused_with_the_field_named() {
        let short = MerchantKey { alg: KeyAlg::EdDsa, public_key: "ab".into() };
        assert!(short.check().expect_err("short").to_string().contains("public_key must be 32 bytes"));
        let off_curve = MerchantKey { alg: KeyAlg::Es256, public_key: format!("04{}", "11".repeat(64)) };
        assert_eq!(off_curve.check(), Err(KeyError::NotAKey("ES256")));
        let p256 = MerchantSigner::generate("m", KeyAlg::Es256).expect("key").public_key().clone();
        assert_eq!(p256.check(), Ok(()));
        // One key, one text: no upper case, no 0x.
        let upper = MerchantKey { alg: KeyAlg::Es256, public_key: p256.public_key.to_uppercase() };
        assert!(upper.check().is_err());
        let prefixed = MerchantKey { alg: KeyAlg::Es256, public_key: format!("0x{}", p256.public_key) };
        assert!(prefixed.check().is_err());
        // Small-order Ed25519 points (the identity, order 2, order 4) and a non-canonical y.
        for weak in [
            format!("01{}", "00".repeat(31)),
            format!("ec{}7f", "ff".repeat(30)),
            "00".repeat(32),
            format!("ee{}7f", "ff".repeat(30)),
        ] {
            let k = MerchantKey { alg: KeyAlg::EdDsa, public_key: weak.clone() };
            assert_eq!(k.check(), Err(KeyError::NotAKey("EdDSA")), "{weak}");
        }
        assert!("RS256".parse::<KeyAlg>().is_err());
    }
}
