//! The network task: owns the swarm, serves commands from [`NetworkHandle`]s and emits
//! [`NetworkEvent`]s. It redials disconnected operators on an interval.

use crate::P2pError;
use crate::behaviour::{Behaviour, BehaviourEvent};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, noise, tcp, yamux};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// What the network task needs.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// This operator's libp2p identity.
    pub keypair: Keypair,
    /// Where to listen.
    pub listen: Multiaddr,
    /// The other operators and where to reach them; no one else may connect.
    pub peers: Vec<(PeerId, Multiaddr)>,
    /// Gossipsub topics to join.
    pub topics: Vec<String>,
    /// How often to redial operators that are not connected.
    pub redial_interval: Duration,
}

/// What the network reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkEvent {
    /// A gossip message from an operator.
    Message {
        /// Topic it came on.
        topic: String,
        /// Operator that published it (verified signature of its libp2p key).
        source: PeerId,
        /// Payload.
        data: Vec<u8>,
    },
    /// An operator connected.
    PeerConnected(PeerId),
    /// An operator's last connection closed.
    PeerDisconnected(PeerId),
    /// The node listens on this address.
    Listening(Multiaddr),
}

enum Command {
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
}

/// A cheap, cloneable handle to the network task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    connected: Arc<AtomicUsize>,
    local_peer_id: PeerId,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Publish { topic, data, .. } => {
                write!(f, "Publish({topic}, {} bytes)", data.len())
            }
        }
    }
}

impl NetworkHandle {
    /// Publishes `data` on `topic` to the connected operators.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), P2pError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish {
                topic: topic.to_string(),
                data,
                reply,
            })
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)?
    }

    /// Number of operators connected now.
    pub fn connected_peers(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }
}

/// Builds the swarm, starts listening and spawns the network task. The task ends when every
/// handle is dropped.
pub fn spawn(
    config: NetworkConfig,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), P2pError> {
    let mut swarm = build_swarm(&config)?;
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| P2pError::Start(format!("listen on {}: {e}", config.listen)))?;
    for topic in &config.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| P2pError::Start(format!("subscribe {topic}: {e}")))?;
    }
    for (peer, _) in &config.peers {
        swarm.behaviour_mut().allow.allow_peer(*peer);
        swarm.behaviour_mut().gossipsub.add_explicit_peer(peer);
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(1024);
    let connected = Arc::new(AtomicUsize::new(0));
    let handle = NetworkHandle {
        commands: cmd_tx,
        connected: connected.clone(),
        local_peer_id: *swarm.local_peer_id(),
    };
    tokio::spawn(run(swarm, config, cmd_rx, event_tx, connected));
    Ok((handle, event_rx))
}

fn build_swarm(config: &NetworkConfig) -> Result<Swarm<Behaviour>, P2pError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| P2pError::Start(format!("tcp transport: {e}")))?
        .with_behaviour(|key| {
            Behaviour::new(key).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| P2pError::Start(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    connected: Arc<AtomicUsize>,
) {
    let mut redial = tokio::time::interval(config.redial_interval);
    let mut peers_up: HashSet<PeerId> = HashSet::new();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Publish { topic, data, reply }) => {
                    let result = swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(gossipsub::IdentTopic::new(topic.as_str()), data)
                        .map(|_| ())
                        .map_err(|e| P2pError::Publish { topic, reason: e.to_string() });
                    let _ = reply.send(result);
                }
                None => break,
            },
            _ = redial.tick() => {
                for (peer, addr) in &config.peers {
                    if !swarm.is_connected(peer) {
                        let opts = DialOpts::peer_id(*peer).addresses(vec![addr.clone()]).build();
                        if let Err(e) = swarm.dial(opts) {
                            debug!(%peer, error = %e, "dial failed");
                        }
                    }
                }
            },
            event = swarm.select_next_some() => {
                let out = match event {
                    SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                        let Some(source) = message.source else { continue };
                        Some(NetworkEvent::Message { topic: message.topic.to_string(), source, data: message.data })
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        peers_up.insert(peer_id).then(|| {
                            connected.store(peers_up.len(), Ordering::Relaxed);
                            info!(peer = %peer_id, connected = peers_up.len(), "operator connected");
                            NetworkEvent::PeerConnected(peer_id)
                        })
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        peers_up.remove(&peer_id);
                        connected.store(peers_up.len(), Ordering::Relaxed);
                        info!(peer = %peer_id, connected = peers_up.len(), "operator disconnected");
                        Some(NetworkEvent::PeerDisconnected(peer_id))
                    }
                    SwarmEvent::NewListenAddr { address, .. } => Some(NetworkEvent::Listening(address)),
                    SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
                        warn!(from = %send_back_addr, error = %error, "refused incoming connection");
                        None
                    }
                    _ => None,
                };
                if let Some(ev) = out
                    && events.send(ev).await.is_err()
                {
                    break;
                }
            }
        }
    }
}

/// Parses a multiaddr, naming it in the error.
pub fn parse_multiaddr(addr: &str) -> Result<Multiaddr, P2pError> {
    addr.parse()
        .map_err(|e: libp2p::multiaddr::Error| P2pError::InvalidAddress {
            addr: addr.into(),
            reason: e.to_string(),
        })
}
