//! The operator set, parsed from configuration into typed keys and ids.

use crate::keys::OperatorKeys;
use alloy::primitives::Address;
use settleproof_config::NodeConfig;
use settleproof_consensus::BlsPublicKey;
use settleproof_p2p::{Multiaddr, PeerId, parse_multiaddr};

/// One operator with parsed keys.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Name.
    pub name: String,
    /// libp2p peer id.
    pub peer_id: PeerId,
    /// Where it listens.
    pub p2p_addr: Multiaddr,
    /// BLS public key.
    pub bls: BlsPublicKey,
    /// EVM account.
    pub evm: Address,
}

/// The ordered operator set and this node's place in it.
#[derive(Debug, Clone)]
pub struct OperatorSet {
    /// Epoch of the set on chain (0: the set the configuration bootstraps).
    pub epoch: u64,
    /// Operators in configuration order (index = signer bit).
    pub operators: Vec<Operator>,
    /// Signatures needed.
    pub threshold: usize,
    /// Index of this node.
    pub me: usize,
}

/// A problem with the operator set or this node's keys.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OperatorSetError {
    /// Config path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl OperatorSet {
    /// Parses the configured set and checks that `keys` are the keys configured for this node.
    pub fn from_config(cfg: &NodeConfig, keys: &OperatorKeys) -> Result<Self, OperatorSetError> {
        let mut operators = Vec::new();
        for (i, o) in cfg.network.operators.iter().enumerate() {
            let err =
                |f: &str, m: String| OperatorSetError { field: format!("network.operators[{i}].{f}"), message: m };
            let peer_id = o.peer_id.parse().map_err(|e| err("peer_id", format!("not a libp2p peer id: {e}")))?;
            let p2p_addr = parse_multiaddr(&o.p2p_addr).map_err(|e| err("p2p_addr", e.to_string()))?;
            let raw = hex::decode(o.bls_public_key.trim_start_matches("0x"))
                .map_err(|e| err("bls_public_key", e.to_string()))?;
            let bls = BlsPublicKey::from_bytes(&raw).map_err(|e| err("bls_public_key", e.to_string()))?;
            operators.push(Operator { name: o.name.clone(), peer_id, p2p_addr, bls, evm: o.evm_address });
        }
        let me = operators.iter().position(|o| o.name == cfg.node.name).ok_or_else(|| OperatorSetError {
            field: "node.name".into(),
            message: format!("`{}` is not in network.operators", cfg.node.name),
        })?;
        let public = keys.public();
        let mine = &operators[me];
        let mismatch = |what: &str| OperatorSetError {
            field: format!("network.operators[{me}].{what}"),
            message: format!("does not match the key in {} ({what} there is different)", cfg.node.keys_dir.display()),
        };
        if mine.peer_id.to_string() != public.peer_id {
            return Err(mismatch("peer_id"));
        }
        if mine.bls != keys.bls.public_key() {
            return Err(mismatch("bls_public_key"));
        }
        if mine.evm != public.evm_address {
            return Err(mismatch("evm_address"));
        }
        Ok(Self { epoch: 0, operators, threshold: cfg.network.threshold, me })
    }

    /// Index of the operator with this peer id.
    pub fn index_of_peer(&self, peer: &PeerId) -> Option<usize> {
        self.operators.iter().position(|o| &o.peer_id == peer)
    }

    /// Number of operators.
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// Whether the set is empty (never, for a validated configuration).
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}
