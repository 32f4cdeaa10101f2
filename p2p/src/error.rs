/// Errors of the peer-to-peer layer.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// A multiaddr could not be parsed.
    #[error("invalid multiaddr `{addr}`: {reason}")]
    InvalidAddress {
        /// The text given.
        addr: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A peer id could not be parsed.
    #[error("invalid peer id `{0}`: expected a base58 libp2p peer id")]
    InvalidPeerId(String),
    /// The swarm could not be built or could not listen.
    #[error("cannot start the p2p network: {0}")]
    Start(String),
    /// Publishing failed (for example no subscribed peer is connected yet).
    #[error("publish on `{topic}` failed: {reason}")]
    Publish {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// A direct request failed (peer unreachable, timeout, protocol error).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// Peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The network task has stopped.
    #[error("the p2p network task has stopped")]
    Stopped,
}
