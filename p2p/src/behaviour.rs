//! The crate-private libp2p behaviour: an allow list in front of gossipsub.

use crate::P2pError;
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use sha2::{Digest, Sha256};
use std::time::Duration;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Refuses every connection from or to a peer outside the operator set.
    pub(crate) allow: allow_block_list::Behaviour<AllowedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(key: &Keypair) -> Result<Self, P2pError> {
        let config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(ValidationMode::Strict)
            // Content-addressed ids: an identical payload is one message, whoever relays it.
            .message_id_fn(|m: &gossipsub::Message| {
                MessageId::from(Sha256::digest(&m.data).to_vec())
            })
            .mesh_n_low(1)
            .mesh_n(3)
            .mesh_n_high(6)
            .mesh_outbound_min(1)
            .build()
            .map_err(|e| P2pError::Start(format!("gossipsub config: {e}")))?;
        let gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| P2pError::Start(format!("gossipsub: {e}")))?;
        Ok(Self {
            allow: allow_block_list::Behaviour::default(),
            gossipsub,
        })
    }
}
