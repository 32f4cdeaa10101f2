//! The operator set of one epoch, with typed keys and ids and this node's place in it.
//!
//! Epoch 0 may come from the configuration (which must then match the chain's epoch 0); every
//! set comes from the settlement contract's events in the end ([`crate::epochs`]).

use crate::keys::OperatorKeys;
use alloy::primitives::Address;
use settleproof_config::NodeConfig;
use settleproof_consensus::{BlsPublicKey, OperatorSetSpec};
use settleproof_p2p::{Multiaddr, PeerId, parse_multiaddr};

/// One operator with parsed keys.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The ordered operator set of one epoch and this node's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSet {
    /// Epoch of the set on chain.
    pub epoch: u64,
    /// First round the set settles.
    pub start_round: u64,
    /// Operators in order (index = signer bit).
    pub operators: Vec<Operator>,
    /// Signatures needed.
    pub threshold: usize,
    /// Index of this node, when it is an operator of this epoch.
    pub me: Option<usize>,
}

/// A problem with the operator set or this node's keys.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OperatorSetError {
    /// Config path, or the epoch and operator on chain.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl OperatorSet {
    /// Parses the configured set (epoch 0) and checks that `keys` are the keys configured for
    /// this node. `None` when the configuration lists no operators: the node then learns every
    /// set from the chain.
    pub fn from_config(cfg: &NodeConfig, keys: &OperatorKeys) -> Result<Option<Self>, OperatorSetError> {
        if cfg.network.operators.is_empty() {
            return Ok(None);
        }
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
        if !keys.bls_keys().any(|k| k.public_key() == mine.bls) {
            return Err(mismatch("bls_public_key"));
        }
        if mine.evm != public.evm_address {
            return Err(mismatch("evm_address"));
        }
        Ok(Some(Self { epoch: 0, start_round: 0, operators, threshold: cfg.network.threshold, me: Some(me) }))
    }

    /// The set committed on chain as `spec`, seen by the node whose peer id is `me`. An
    /// operator whose peer id or address does not parse keeps its place (its bit) but cannot be
    /// reached or heard: the set stays usable by the others.
    pub fn from_spec(spec: &OperatorSetSpec, me: &PeerId) -> Result<Self, OperatorSetError> {
        let mut operators = Vec::with_capacity(spec.operators.len());
        for (i, r) in spec.operators.iter().enumerate() {
            let peer_id = PeerId::from_bytes(&r.peer_id).unwrap_or_else(|e| {
                tracing::error!(epoch = spec.epoch, operator = i, name = %r.name, error = %e, "operator's peer id on chain does not parse: it cannot be heard");
                PeerId::random()
            });
            let p2p_addr = parse_multiaddr(&r.p2p_addr).unwrap_or_else(|e| {
                tracing::error!(epoch = spec.epoch, operator = i, name = %r.name, error = %e, "operator's p2p address on chain does not parse: it is not dialled");
                Multiaddr::empty()
            });
            operators.push(Operator { name: r.name.clone(), peer_id, p2p_addr, bls: r.bls, evm: r.account });
        }
        let me = operators.iter().position(|o| &o.peer_id == me);
        Ok(Self {
            epoch: spec.epoch,
            start_round: spec.start_round,
            operators,
            threshold: usize::from(spec.threshold),
            me,
        })
    }

    /// Index of the operator with this peer id.
    pub fn index_of_peer(&self, peer: &PeerId) -> Option<usize> {
        self.operators.iter().position(|o| &o.peer_id == peer)
    }

    /// This node's operator entry in this epoch.
    pub fn mine(&self) -> Option<&Operator> {
        self.me.and_then(|i| self.operators.get(i))
    }

    /// The other operators.
    pub fn others(&self) -> impl Iterator<Item = &Operator> {
        self.operators.iter().enumerate().filter(move |(i, _)| Some(*i) != self.me).map(|(_, o)| o)
    }

    /// Number of operators.
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// Whether the set is empty (never, for a validated configuration or a committed set).
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}
