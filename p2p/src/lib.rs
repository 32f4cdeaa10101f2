//! The permissioned peer-to-peer network of settleproof operators, on libp2p.
//!
//! Only peers of the configured operator set may connect (connection gating with an allow
//! list); messages travel on gossipsub topics, signed by the sender's libp2p key. The rest of
//! the code sees only [`NetworkHandle::publish`], [`NetworkEvent`]s and a peer count: no libp2p
//! type other than [`PeerId`], [`Keypair`] and [`Multiaddr`] crosses this crate's boundary.

mod behaviour;
mod error;
mod service;

pub use error::P2pError;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use service::{NetworkConfig, NetworkEvent, NetworkHandle, parse_multiaddr, spawn};
