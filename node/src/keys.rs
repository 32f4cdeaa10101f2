//! An operator's three keys, one file each in its keys directory (folder 0700, files 0600):
//! `libp2p.key` (peer identity), `bls.key` (attestation signing), `evm.key` (settlement
//! transactions). A BLS key being rotated in is `bls.next.key` ([`OperatorKeys::add_next_bls`]):
//! the node signs each epoch's rounds with whichever of its BLS keys that epoch registered. Files hold hex; nothing here ever logs a secret. Each file and the folder
//! are fsynced when written, so a crash right after generation cannot leave an empty key; a
//! key file that group or others may read is refused at load.

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use rand::RngCore;
use serde::Serialize;
use settleproof_consensus::BlsPublicKey;
use settleproof_consensus::BlsSecretKey;
use settleproof_p2p::{Keypair, PeerId};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const LIBP2P: &str = "libp2p.key";
const BLS: &str = "bls.key";
const BLS_NEXT: &str = "bls.next.key";
const EVM: &str = "evm.key";

/// Errors of key generation and loading.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A key file exists already; generation never overwrites keys.
    #[error("key file {0} exists already; refusing to overwrite an operator key")]
    Exists(PathBuf),
    /// A key file may be read by group or others.
    #[error("key file {path} has mode {mode:o}: group and others may read it; run `chmod 600 {path}`")]
    Exposed {
        /// File.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file does not hold a valid key.
    #[error("key file {path} is invalid: {reason}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The loaded keys of one operator.
#[derive(Clone)]
pub struct OperatorKeys {
    /// libp2p identity.
    pub libp2p: Keypair,
    /// BLS signing key.
    pub bls: BlsSecretKey,
    /// A BLS key being rotated in (`bls.next.key`), if any.
    pub next_bls: Option<BlsSecretKey>,
    /// EVM transaction signer.
    pub evm: PrivateKeySigner,
}

impl std::fmt::Debug for OperatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorKeys({})", self.public().peer_id)
    }
}

/// The public half of an operator's keys, as the operator set's configuration needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PublicKeys {
    /// libp2p peer id.
    pub peer_id: String,
    /// Compressed BLS public key, 0x-hex.
    pub bls_public_key: String,
    /// EVM address.
    pub evm_address: Address,
    /// Proof of possession of the BLS key (EIP-2537 G1, 0x-hex), which registering it on chain
    /// needs.
    #[serde(default)]
    pub bls_proof_of_possession: String,
}

impl OperatorKeys {
    /// Fresh random keys.
    pub fn random() -> Result<Self, KeyError> {
        let mut ikm = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut ikm);
        let bls =
            BlsSecretKey::from_ikm(&ikm).map_err(|e| KeyError::Invalid { path: BLS.into(), reason: e.to_string() })?;
        Ok(Self { libp2p: Keypair::generate_ed25519(), bls, next_bls: None, evm: PrivateKeySigner::random() })
    }

    /// Writes fresh keys into `dir` (created if missing); refuses to overwrite.
    pub fn generate(dir: &Path) -> Result<Self, KeyError> {
        let keys = Self::random()?;
        keys.write(dir)?;
        Ok(keys)
    }

    /// Writes these keys into `dir`; refuses to overwrite.
    pub fn write(&self, dir: &Path) -> Result<(), KeyError> {
        create_private_dir(dir)?;
        for name in [LIBP2P, BLS, EVM] {
            let path = dir.join(name);
            if path.exists() {
                return Err(KeyError::Exists(path));
            }
        }
        let p2p = self
            .libp2p
            .to_protobuf_encoding()
            .map_err(|e| KeyError::Invalid { path: dir.join(LIBP2P), reason: e.to_string() })?;
        write_secret(&dir.join(LIBP2P), &hex::encode(p2p))?;
        write_secret(&dir.join(BLS), &hex::encode(self.bls.to_bytes()))?;
        write_secret(&dir.join(EVM), &hex::encode(self.evm.to_bytes()))?;
        // The files' directory entries are durable only once the folder is synced.
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| KeyError::Io { path: dir.into(), source })
    }

    /// Loads the keys in `dir`.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let p2p = read_hex(&dir.join(LIBP2P))?;
        let libp2p = Keypair::from_protobuf_encoding(&p2p)
            .map_err(|e| KeyError::Invalid { path: dir.join(LIBP2P), reason: e.to_string() })?;
        let bls = BlsSecretKey::from_bytes(&read_hex(&dir.join(BLS))?)
            .map_err(|e| KeyError::Invalid { path: dir.join(BLS), reason: e.to_string() })?;
        let evm_bytes = read_hex(&dir.join(EVM))?;
        let evm = PrivateKeySigner::from_bytes(
            &B256::try_from(evm_bytes.as_slice())
                .map_err(|_| KeyError::Invalid { path: dir.join(EVM), reason: "expected 32 bytes".into() })?,
        )
        .map_err(|e| KeyError::Invalid { path: dir.join(EVM), reason: e.to_string() })?;
        let next_path = dir.join(BLS_NEXT);
        let next_bls = if next_path.exists() {
            Some(
                BlsSecretKey::from_bytes(&read_hex(&next_path)?)
                    .map_err(|e| KeyError::Invalid { path: next_path.clone(), reason: e.to_string() })?,
            )
        } else {
            None
        };
        Ok(Self { libp2p, bls, next_bls, evm })
    }

    /// This operator as the settlement contract stages it, named `name` and listening on
    /// `p2p_addr`, with the proof of possession of its BLS key.
    pub fn entry(&self, name: &str, p2p_addr: &str) -> settleproof_contracts::OperatorEntry {
        settleproof_contracts::OperatorEntry {
            record: settleproof_consensus::OperatorRecord {
                name: name.into(),
                account: self.evm.address(),
                peer_id: PeerId::from(self.libp2p.public()).to_bytes().into(),
                p2p_addr: p2p_addr.into(),
                bls: self.bls.public_key(),
            },
            proof_of_possession: self.bls.prove_possession().to_eip2537().to_vec().into(),
        }
    }

    /// Every BLS key this node holds: `bls.key`, then `bls.next.key`.
    pub fn bls_keys(&self) -> impl Iterator<Item = &BlsSecretKey> {
        std::iter::once(&self.bls).chain(self.next_bls.as_ref())
    }

    /// Generates a new BLS key into `dir/bls.next.key` (refusing to overwrite one) for a key
    /// rotation; returns it.
    pub fn add_next_bls(dir: &Path) -> Result<BlsSecretKey, KeyError> {
        let path = dir.join(BLS_NEXT);
        if path.exists() {
            return Err(KeyError::Exists(path));
        }
        let mut ikm = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut ikm);
        let key = BlsSecretKey::from_ikm(&ikm)
            .map_err(|e| KeyError::Invalid { path: path.clone(), reason: e.to_string() })?;
        write_secret(&path, &hex::encode(key.to_bytes()))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| KeyError::Io { path: dir.into(), source })?;
        Ok(key)
    }

    /// The public keys.
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            peer_id: PeerId::from(self.libp2p.public()).to_string(),
            bls_public_key: format!("0x{}", hex::encode(self.bls.public_key().to_bytes())),
            evm_address: self.evm.address(),
            bls_proof_of_possession: format!("0x{}", hex::encode(self.bls.prove_possession().to_eip2537())),
        }
    }
}

/// A BLS key and its proof of possession, as `settleproof keys rotate-bls` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BlsPublic {
    /// Compressed BLS public key, 0x-hex.
    pub bls_public_key: String,
    /// Proof of possession (EIP-2537 G1, 0x-hex).
    pub bls_proof_of_possession: String,
}

impl BlsPublic {
    /// The public half of `key`.
    pub fn of(key: &BlsSecretKey) -> Self {
        Self {
            bls_public_key: format!("0x{}", hex::encode(key.public_key().to_bytes())),
            bls_proof_of_possession: format!("0x{}", hex::encode(key.prove_possession().to_eip2537())),
        }
    }

    /// The parsed key and proof, the proof checked.
    pub fn parse(&self) -> Result<(BlsPublicKey, alloy::primitives::Bytes), String> {
        let raw =
            hex::decode(self.bls_public_key.trim_start_matches("0x")).map_err(|e| format!("bls_public_key: {e}"))?;
        let key = BlsPublicKey::from_bytes(&raw).map_err(|e| format!("bls_public_key: {e}"))?;
        let pop = hex::decode(self.bls_proof_of_possession.trim_start_matches("0x"))
            .map_err(|e| format!("bls_proof_of_possession: {e}"))?;
        settleproof_consensus::BlsSignature::from_eip2537(&pop)
            .and_then(|p| p.verify_possession(&key))
            .map_err(|e| format!("bls_proof_of_possession: {e}"))?;
        Ok((key, pop.into()))
    }
}

/// Writes a temporary file, fsyncs it, then renames it into place: a crash leaves either no
/// key file or a whole one, never an empty one that blocks both loading and regenerating.
fn write_secret(path: &Path, contents: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.into(), source };
    let tmp = path.with_extension("key.tmp");
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()).map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Creates `dir` (and missing parents) with mode 0700; an existing folder is narrowed to 0700.
fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: dir.into(), source };
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

fn read_hex(path: &Path) -> Result<Vec<u8>, KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            fs::metadata(path).map_err(|source| KeyError::Io { path: path.into(), source })?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path: path.into(), mode: mode & 0o777 });
        }
    }
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.into(), source })?;
    hex::decode(text.trim().trim_start_matches("0x"))
        .map_err(|e| KeyError::Invalid { path: path.into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_roundtrip_and_no_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = OperatorKeys::generate(dir.path()).expect("generate");
        let loaded = OperatorKeys::load(dir.path()).expect("load");
        assert_eq!(keys.public(), loaded.public());
        assert!(matches!(OperatorKeys::generate(dir.path()), Err(KeyError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(BLS)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let nested = dir.path().join("a/keys");
            OperatorKeys::generate(&nested).expect("generate nested");
            let mode = fs::metadata(&nested).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "the keys folder is private");
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_others_can_read_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        OperatorKeys::generate(dir.path()).expect("generate");
        let evm = dir.path().join(EVM);
        fs::set_permissions(&evm, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = OperatorKeys::load(dir.path()).expect_err("exposed");
        assert!(matches!(err, KeyError::Exposed { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains(&format!("chmod 600 {}", evm.display())), "{err}");
        fs::set_permissions(&evm, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(OperatorKeys::load(dir.path()).is_ok());
    }

    #[test]
    fn corrupt_key_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        OperatorKeys::generate(dir.path()).expect("generate");
        fs::write(dir.path().join(BLS), "zz").expect("write");
        let err = OperatorKeys::load(dir.path()).expect_err("invalid");
        assert!(err.to_string().contains("bls.key"), "{err}");
    }
}
