//! All BLS12-381 operations of settleproof, wrapping `blst` in its min-sig form: signatures in
//! G1 (48 bytes compressed), public keys in G2 (96 bytes compressed), proof-of-possession
//! ciphersuite. No other module calls `blst` directly. Min-sig makes the on-chain check cheaper
//! (hash to G1, 128-byte signatures); docs/adr/0002-min-sig-bls-settlement.md has the figures.

use blst::BLST_ERROR;
use blst::min_sig::{AggregateSignature, PublicKey, SecretKey, Signature};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Domain separation tag of every settleproof signature (RFC 9380 / IETF BLS ciphersuite
/// `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_`). The on-chain verifier uses the same tag.
pub const DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

/// Domain separation tag of proofs of possession (a key's signature over its own encoding).
pub const POP_DST: &[u8] = b"BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

/// Length of a G1 point in the EIP-2537 encoding.
pub const EIP2537_G1_LEN: usize = 128;
/// Length of a G2 point in the EIP-2537 encoding.
pub const EIP2537_G2_LEN: usize = 256;

/// Length of a compressed public key (G2).
pub const PUBLIC_KEY_LEN: usize = 96;
/// Length of a compressed signature (G1).
pub const SIGNATURE_LEN: usize = 48;
/// Length of a secret key.
pub const SECRET_KEY_LEN: usize = 32;

/// Errors of BLS key handling, signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    /// The key material could not be derived (input keying material shorter than 32 bytes).
    #[error("BLS key generation needs at least 32 bytes of input keying material")]
    KeyGen,
    /// Bytes are not a valid secret key.
    #[error("invalid BLS secret key: expected {SECRET_KEY_LEN} bytes of a scalar below the group order")]
    InvalidSecretKey,
    /// Bytes are not a valid compressed G1 public key in the prime-order subgroup.
    #[error("invalid BLS public key: expected {PUBLIC_KEY_LEN} compressed bytes of a G2 point ({0:?})")]
    InvalidPublicKey(BLST_ERROR),
    /// Bytes are not a valid compressed G2 signature in the prime-order subgroup.
    #[error("invalid BLS signature: expected {SIGNATURE_LEN} compressed bytes of a G1 point ({0:?})")]
    InvalidSignature(BLST_ERROR),
    /// The signature does not verify for this key and message.
    #[error("BLS signature does not verify ({0:?})")]
    VerificationFailed(BLST_ERROR),
    /// Aggregation was asked for an empty set.
    #[error("cannot aggregate an empty set of signatures")]
    EmptyAggregate,
}

/// An operator's BLS secret key. Its `Debug` never prints the key.
#[derive(Clone)]
pub struct BlsSecretKey(SecretKey);

impl fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlsSecretKey(<redacted>)")
    }
}

impl BlsSecretKey {
    /// Derives a secret key from at least 32 bytes of input keying material (EIP-2333 KeyGen).
    pub fn from_ikm(ikm: &[u8]) -> Result<Self, BlsError> {
        SecretKey::key_gen(ikm, &[]).map(Self).map_err(|_| BlsError::KeyGen)
    }

    /// Parses the 32-byte big-endian encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlsError> {
        SecretKey::from_bytes(bytes).map(Self).map_err(|_| BlsError::InvalidSecretKey)
    }

    /// The 32-byte encoding, for writing the key file.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> BlsPublicKey {
        BlsPublicKey(self.0.sk_to_pk())
    }

    /// Signs a message under [`DST`].
    pub fn sign(&self, message: &[u8]) -> BlsSignature {
        BlsSignature(self.0.sign(message, DST, &[]))
    }

    /// Proof of possession: a signature over the key's own EIP-2537 encoding under [`POP_DST`],
    /// as the settlement contract checks at registration.
    pub fn prove_possession(&self) -> BlsSignature {
        BlsSignature(self.0.sign(&self.public_key().to_eip2537(), POP_DST, &[]))
    }
}

/// A BLS public key (G2), validated to be in the subgroup and not the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlsPublicKey(PublicKey);

impl fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsPublicKey(0x{})", hex_encode(&self.to_bytes()))
    }
}

impl BlsPublicKey {
    /// Parses and validates a compressed (96-byte) public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlsError> {
        let pk = PublicKey::key_validate(bytes).map_err(BlsError::InvalidPublicKey)?;
        Ok(Self(pk))
    }

    /// The compressed 96-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.compress()
    }

    /// Parses and validates the EIP-2537 encoding (256 bytes).
    pub fn from_eip2537(bytes: &[u8]) -> Result<Self, BlsError> {
        let raw = g2_from_eip2537(bytes).ok_or(BlsError::InvalidPublicKey(BLST_ERROR::BLST_BAD_ENCODING))?;
        PublicKey::key_validate(&raw).map(Self).map_err(BlsError::InvalidPublicKey)
    }

    /// The EIP-2537 encoding (x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1, each 48 bytes left-padded to 64).
    pub fn to_eip2537(&self) -> [u8; EIP2537_G2_LEN] {
        // A validated key is not the identity, so no flag bits are set.
        g2_to_eip2537(&self.0.serialize())
    }
}

impl Serialize for BlsPublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex_encode(&self.to_bytes())))
    }
}

impl<'de> Deserialize<'de> for BlsPublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        let bytes = (0..digits.len())
            .step_by(2)
            .map(|i| digits.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| serde::de::Error::custom("a BLS public key is 0x-hex"))?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A BLS signature (G1), single or aggregate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlsSignature(Signature);

impl fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsSignature(0x{})", hex_encode(&self.to_bytes()))
    }
}

impl BlsSignature {
    /// Parses a compressed (48-byte) signature and checks subgroup membership.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlsError> {
        let sig = Signature::sig_validate(bytes, true).map_err(BlsError::InvalidSignature)?;
        Ok(Self(sig))
    }

    /// The compressed 48-byte encoding.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0.compress()
    }

    /// Parses the EIP-2537 encoding (128 bytes) and checks subgroup membership.
    pub fn from_eip2537(bytes: &[u8]) -> Result<Self, BlsError> {
        if bytes.len() != EIP2537_G1_LEN || bytes[..16].iter().chain(&bytes[64..80]).any(|b| *b != 0) {
            return Err(BlsError::InvalidSignature(BLST_ERROR::BLST_BAD_ENCODING));
        }
        let mut raw = [0u8; 96];
        raw[..48].copy_from_slice(&bytes[16..64]);
        raw[48..].copy_from_slice(&bytes[80..128]);
        Signature::sig_validate(&raw, true).map(Self).map_err(BlsError::InvalidSignature)
    }

    /// The EIP-2537 encoding (x ‖ y, each 48 bytes left-padded to 64), for the precompiles.
    pub fn to_eip2537(&self) -> [u8; EIP2537_G1_LEN] {
        // blst serialises an affine G1 point as x ‖ y, 48 big-endian bytes each.
        let raw = self.0.serialize();
        let mut out = [0u8; EIP2537_G1_LEN];
        out[16..64].copy_from_slice(&raw[..48]);
        out[80..128].copy_from_slice(&raw[48..96]);
        out
    }

    /// Verifies a proof of possession of `key`'s secret key.
    pub fn verify_possession(&self, key: &BlsPublicKey) -> Result<(), BlsError> {
        match self.0.verify(false, &key.to_eip2537(), POP_DST, &[], &key.0, false) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            e => Err(BlsError::VerificationFailed(e)),
        }
    }

    /// Verifies a single signature over `message` by `key`.
    pub fn verify(&self, key: &BlsPublicKey, message: &[u8]) -> Result<(), BlsError> {
        match self.0.verify(false, message, DST, &[], &key.0, false) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            e => Err(BlsError::VerificationFailed(e)),
        }
    }

    /// Aggregates signatures over the same message into one.
    pub fn aggregate(signatures: &[BlsSignature]) -> Result<Self, BlsError> {
        if signatures.is_empty() {
            return Err(BlsError::EmptyAggregate);
        }
        let refs: Vec<&Signature> = signatures.iter().map(|s| &s.0).collect();
        let agg = AggregateSignature::aggregate(&refs, false).map_err(BlsError::InvalidSignature)?;
        Ok(Self(agg.to_signature()))
    }

    /// Verifies an aggregate signature of `keys` over one `message` (fast aggregate verify;
    /// safe because every registered key comes with a proof of possession).
    pub fn verify_aggregate(&self, keys: &[BlsPublicKey], message: &[u8]) -> Result<(), BlsError> {
        if keys.is_empty() {
            return Err(BlsError::EmptyAggregate);
        }
        let refs: Vec<&PublicKey> = keys.iter().map(|k| &k.0).collect();
        match self.0.fast_aggregate_verify(false, message, DST, &refs) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            e => Err(BlsError::VerificationFailed(e)),
        }
    }
}

/// blst serialises an affine G2 point as x.c1 ‖ x.c0 ‖ y.c1 ‖ y.c0 (48 bytes each); EIP-2537
/// puts c0 first and pads every limb to 64 bytes.
fn g2_to_eip2537(raw: &[u8; 192]) -> [u8; EIP2537_G2_LEN] {
    let mut out = [0u8; EIP2537_G2_LEN];
    for (i, limb) in [1usize, 0, 3, 2].into_iter().enumerate() {
        out[i * 64 + 16..(i + 1) * 64].copy_from_slice(&raw[limb * 48..(limb + 1) * 48]);
    }
    out
}

/// The inverse of [`g2_to_eip2537`]; `None` for a wrong length or nonzero padding.
fn g2_from_eip2537(bytes: &[u8]) -> Option<[u8; 192]> {
    if bytes.len() != EIP2537_G2_LEN || (0..4).any(|i| bytes[i * 64..i * 64 + 16].iter().any(|b| *b != 0)) {
        return None;
    }
    let mut raw = [0u8; 192];
    for (i, limb) in [1usize, 0, 3, 2].into_iter().enumerate() {
        raw[limb * 48..(limb + 1) * 48].copy_from_slice(&bytes[i * 64 + 16..(i + 1) * 64]);
    }
    Some(raw)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> BlsSecretKey {
        BlsSecretKey::from_ikm(&[seed; 32]).expect("32 bytes of ikm")
    }

    #[test]
    fn sign_verify_roundtrip_through_bytes() {
        let sk = key(1);
        let pk = BlsPublicKey::from_bytes(&sk.public_key().to_bytes()).expect("valid key");
        let sig = BlsSignature::from_bytes(&sk.sign(b"batch").to_bytes()).expect("valid sig");
        assert_eq!(sig.verify(&pk, b"batch"), Ok(()));
        assert!(matches!(sig.verify(&pk, b"other"), Err(BlsError::VerificationFailed(_))));
        assert!(matches!(sig.verify(&key(2).public_key(), b"batch"), Err(BlsError::VerificationFailed(_))));
    }

    #[test]
    fn secret_key_roundtrip_and_redacted_debug() {
        let sk = key(3);
        let back = BlsSecretKey::from_bytes(&sk.to_bytes()).expect("valid secret");
        assert_eq!(back.public_key(), sk.public_key());
        assert_eq!(format!("{sk:?}"), "BlsSecretKey(<redacted>)");
    }

    #[test]
    fn aggregate_verifies_only_for_the_signing_set() {
        let keys: Vec<_> = (1..=4).map(key).collect();
        let msg = b"round 7";
        let sigs: Vec<_> = keys[..3].iter().map(|k| k.sign(msg)).collect();
        let agg = BlsSignature::aggregate(&sigs).expect("non-empty");
        let pks: Vec<_> = keys.iter().map(BlsSecretKey::public_key).collect();
        assert_eq!(agg.verify_aggregate(&pks[..3], msg), Ok(()));
        assert!(agg.verify_aggregate(&pks[1..], msg).is_err());
        assert!(agg.verify_aggregate(&pks[..3], b"round 8").is_err());
        assert_eq!(BlsSignature::aggregate(&[]), Err(BlsError::EmptyAggregate));
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let (a, b) = (key(5), key(6));
        let pop = a.prove_possession();
        assert_eq!(pop.verify_possession(&a.public_key()), Ok(()));
        assert!(pop.verify_possession(&b.public_key()).is_err());
        // A possession proof is not a signature over the same bytes under the signing tag.
        assert!(pop.verify(&a.public_key(), &a.public_key().to_eip2537()).is_err());
    }

    #[test]
    fn eip2537_encodings_pad_and_reorder_limbs() {
        let sig = key(7).sign(b"m");
        let g1 = sig.to_eip2537();
        assert!(g1[..16].iter().all(|b| *b == 0) && g1[64..80].iter().all(|b| *b == 0));
        // The compressed form carries x with flag bits in the top byte.
        let mut x = sig.to_bytes();
        x[0] &= 0x1f;
        assert_eq!(&g1[16..64], &x[..]);
        let pk = key(7).public_key();
        let g2 = pk.to_eip2537();
        assert_eq!(BlsPublicKey::from_eip2537(&g2), Ok(pk));
        assert_eq!(BlsSignature::from_eip2537(&g1), Ok(sig));
        assert!(BlsSignature::from_eip2537(&g1[1..]).is_err());
        assert!(BlsPublicKey::from_eip2537(&g2[1..]).is_err());
        let mut c = pk.to_bytes();
        c[0] &= 0x1f;
        // Compressed G2 is x.c1 ‖ x.c0; EIP-2537 puts x.c0 first.
        assert_eq!(&g2[16..64], &c[48..96]);
        assert_eq!(&g2[80..128], &c[..48]);
    }

    #[test]
    fn the_generator_key_matches_the_contracts_negated_g2() {
        // Secret 1 has the G2 generator as its key; BLS.sol stores −G2 = (x, p − y).
        let mut one = [0u8; 32];
        one[31] = 1;
        let g2 = BlsSecretKey::from_bytes(&one).expect("scalar 1").public_key().to_eip2537();
        let x_c0 = "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8";
        assert_eq!(hex_encode(&g2[16..64]), x_c0);
    }

    #[test]
    fn malformed_bytes_are_rejected() {
        assert!(BlsPublicKey::from_bytes(&[0u8; 96]).is_err());
        assert!(BlsPublicKey::from_bytes(&[1u8; 10]).is_err());
        assert!(BlsSignature::from_bytes(&[7u8; 48]).is_err());
        assert_eq!(BlsSecretKey::from_ikm(&[1u8; 8]).err(), Some(BlsError::KeyGen));
    }
}
