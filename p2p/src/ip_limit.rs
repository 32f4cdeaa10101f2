//! A cap on the inbound connections (pending and established) from one IP address outside the
//! operators' configured addresses, checked before the handshake, so a stranger's host cannot
//! hold the handshake slots an operator needs to reconnect before the allow list ever sees a
//! peer id. Operators' own addresses (which may be shared, as on a local testnet) are exempt;
//! IPv6 addresses count per /64.

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    dummy,
};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::task::{Context, Poll};

/// Refused: too many connections from one address.
#[derive(Debug, thiserror::Error)]
#[error("{count} inbound connections from {ip} already (limit {limit})")]
pub struct TooManyFromIp {
    ip: IpAddr,
    count: usize,
    limit: usize,
}

/// The behaviour.
#[derive(Debug)]
pub(crate) struct IpLimit {
    limit: usize,
    exempt: HashSet<IpAddr>,
    open: HashMap<ConnectionId, IpAddr>,
}

impl IpLimit {
    /// At most `limit` inbound connections per address outside `exempt`.
    pub(crate) fn new(limit: usize, exempt: impl IntoIterator<Item = IpAddr>) -> Self {
        Self { limit: limit.max(1), exempt: exempt.into_iter().map(group).collect(), open: HashMap::new() }
    }

    fn count(&self, ip: IpAddr) -> usize {
        self.open.values().filter(|i| **i == ip).count()
    }
}

/// The IP address in `addr`, if it names one.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The unit an address is counted in: itself for IPv4, its /64 for IPv6.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl NetworkBehaviour for IpLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote_addr).map(group) else { return Ok(()) };
        if self.exempt.contains(&ip) {
            return Ok(());
        }
        let count = self.count(ip);
        if count >= self.limit {
            return Err(ConnectionDenied::new(TooManyFromIp { ip, count, limit: self.limit }));
        }
        self.open.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(c) => {
                self.open.remove(&c.connection_id);
            }
            FromSwarm::ListenFailure(f) => {
                self.open.remove(&f.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _peer: PeerId, _id: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
