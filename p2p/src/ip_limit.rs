//! A cap on the inbound connections (pending and established) from one IP address, checked
//! before the handshake, so one host cannot hold every handshake slot or exhaust sockets before
//! the allow list ever sees a peer id.

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    dummy,
};
use std::collections::HashMap;
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
    open: HashMap<ConnectionId, IpAddr>,
}

impl IpLimit {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), open: HashMap::new() }
    }

    fn count(&self, ip: IpAddr) -> usize {
        self.open.values().filter(|i| **i == ip).count()
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
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
        let Some(ip) = ip_of(remote_addr) else { return Ok(()) };
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
