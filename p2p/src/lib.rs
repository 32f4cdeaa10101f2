//! The permissioned peer-to-peer network of settleproof operators, on libp2p.
//!
//! Only peers of the configured operator set may connect (connection gating with an allow
//! list); messages travel on gossipsub topics, signed by the sender's libp2p key, and are
//! forwarded only after the application validated them ([`NetworkHandle::report`]); invalid
//! messages and proven misbehaviour lower the sender's gossip score. Operators can also ask each
//! other directly ([`NetworkHandle::request`]), to catch up on what they missed. One swarm can
//! carry several independent pipelines, each in a scope of its own ([`NetworkHandle::scoped`],
//! [`demux`]): a node serving several chains runs one per chain. No libp2p type
//! other than [`PeerId`], [`Keypair`] and [`Multiaddr`] crosses this crate's boundary.

mod behaviour;
mod error;
mod ip_limit;
mod scope;
mod service;

pub use error::P2pError;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use scope::{Scope, demux, scoped_topic};
pub use service::{
    MessageRef, NetworkConfig, NetworkEvent, NetworkHandle, RequestRef, Verdict, parse_multiaddr, spawn,
};
