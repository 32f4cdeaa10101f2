//! The crate-private libp2p behaviour: an allow list in front of gossipsub (with peer scoring
//! and application-level validation) and a request-response protocol for catching up.

use crate::P2pError;
use libp2p::StreamProtocol;
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{
    self, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds, TopicScoreParams, ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, json};
use libp2p::swarm::NetworkBehaviour;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Protocol of direct requests between operators (JSON text both ways).
pub(crate) const SYNC_PROTOCOL: &str = "/settleproof/sync/1";

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Caps pending and established connections, in all and per peer, before anything else.
    pub(crate) limits: connection_limits::Behaviour,
    /// Caps inbound connections from one IP address, before the handshake.
    pub(crate) per_ip: crate::ip_limit::IpLimit,
    /// Refuses every connection from or to a peer outside the operator set (or blocked).
    pub(crate) allow: allow_block_list::Behaviour<AllowedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: json::Behaviour<String, String>,
}

impl Behaviour {
    /// `operators` is the size of the set: the limits leave room for each of them to connect
    /// twice (a redial racing an old connection), and little more.
    pub(crate) fn new(
        key: &Keypair,
        topics: &[String],
        operators: usize,
        operator_ips: Vec<std::net::IpAddr>,
    ) -> Result<Self, P2pError> {
        let config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(ValidationMode::Strict)
            // Messages are forwarded only after the application accepted them.
            .validate_messages()
            // Content-addressed ids: an identical payload on one topic is one message, whoever
            // relays it. The topic is part of the id, so the same payload on two topics (two
            // chains' heartbeats that happen to match) are two messages, neither dropped.
            .message_id_fn(|m: &gossipsub::Message| MessageId::from(message_id(m.topic.as_str(), &m.data)))
            .mesh_n_low(1)
            .mesh_n(3)
            .mesh_n_high(6)
            .mesh_outbound_min(1)
            // Every message a node receives is announced unwanted to its other mesh peers, so
            // they do not forward it the copy they validate meanwhile: in a set this small each
            // peer is in every mesh, and each copy received costs a signature check (the
            // library's 1 kB floor is for large meshes, where the control message is the cost).
            .idontwant_message_size_threshold(0)
            // Longer than the age past which the node drops a message as a replay.
            .duplicate_cache_time(Duration::from_secs(6 * 60))
            .build()
            .map_err(|e| P2pError::Start(format!("gossipsub config: {e}")))?;
        let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| P2pError::Start(format!("gossipsub: {e}")))?;
        gossipsub
            .with_peer_score(score_params(topics), PeerScoreThresholds::default())
            .map_err(|e| P2pError::Start(format!("gossipsub scoring: {e}")))?;
        let sync = json::Behaviour::new(
            [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
        );
        let n = operators.max(1) as u32;
        let limits = connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_pending_incoming(Some(2 * n + 4))
                .with_max_pending_outgoing(Some(2 * n + 4))
                .with_max_established(Some(4 * n))
                .with_max_established_per_peer(Some(2)),
        );
        // Two per stranger's address; the operators' own addresses are exempt.
        let per_ip = crate::ip_limit::IpLimit::new(2, operator_ips);
        Ok(Self { limits, per_ip, allow: allow_block_list::Behaviour::default(), gossipsub, sync })
    }
}

/// Scoring: every invalid message (rejected by the application) costs its sender heavily (P4),
/// and the application score (P5) is lowered for proven misbehaviour such as equivocation.
fn score_params(topics: &[String]) -> PeerScoreParams {
    let mut params = PeerScoreParams { app_specific_weight: 1.0, ..PeerScoreParams::default() };
    for t in topics {
        let topic = TopicScoreParams {
            topic_weight: 1.0,
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.9,
            ..TopicScoreParams::default()
        };
        params.topics.insert(gossipsub::IdentTopic::new(t.as_str()).hash(), topic);
    }
    params
}

/// The id of a gossip message: SHA-256 of its topic, a zero byte and its payload.
pub(crate) fn message_id(topic: &str, data: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update([0u8]);
    h.update(data);
    h.finalize().to_vec()
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn one_payload_on_two_topics_has_two_ids() {
        let data = br#"{"operator":0,"can_pay":true,"sent_at_ms":1}"#;
        let a = super::message_id("settleproof/heartbeats/1", data);
        let b = super::message_id("settleproof/heartbeats/1/8453", data);
        assert_ne!(a, b);
        assert_eq!(a, super::message_id("settleproof/heartbeats/1", data), "the same message, the same id");
    }
}
