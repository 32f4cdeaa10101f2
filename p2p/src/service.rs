//! The network task: owns the swarm, serves commands from [`NetworkHandle`]s and emits
//! [`NetworkEvent`]s. It redials disconnected operators on an interval.

use crate::P2pError;
use crate::behaviour::{Behaviour, BehaviourEvent};
use futures::StreamExt;
use libp2p::gossipsub::MessageAcceptance;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, noise, tcp, yamux};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Identifies a received gossip message for [`NetworkHandle::report`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageRef {
    pub(crate) id: gossipsub::MessageId,
    /// Peer that forwarded it to us.
    pub propagated_by: PeerId,
}

/// The application's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver and forward.
    Accept,
    /// Invalid: drop and penalise the sender.
    Reject,
    /// Not useful (e.g. stale) but not malicious: drop without penalty.
    Ignore,
}

/// Identifies an inbound request for [`NetworkHandle::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestRef(pub(crate) u64);

/// What the network reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkEvent {
    /// A gossip message from an operator. It is forwarded to others only after
    /// [`NetworkHandle::report`] accepts it.
    Message {
        /// Topic it came on.
        topic: String,
        /// Operator that published it (verified signature of its libp2p key).
        source: PeerId,
        /// Payload.
        data: Vec<u8>,
        /// For the verdict.
        reference: MessageRef,
    },
    /// A direct request from an operator; answer with [`NetworkHandle::respond`].
    Request {
        /// Who asks.
        peer: PeerId,
        /// The request text.
        data: String,
        /// For the answer.
        reference: RequestRef,
    },
    /// An operator connected.
    PeerConnected(PeerId),
    /// An operator's last connection closed.
    PeerDisconnected(PeerId),
    /// The node listens on this address.
    Listening(Multiaddr),
}

enum Command {
    Publish { topic: String, data: Vec<u8>, reply: oneshot::Sender<Result<(), P2pError>> },
    Report { reference: MessageRef, verdict: Verdict },
    Penalize { peer: PeerId },
    Block { peer: PeerId },
    Unblock { peer: PeerId },
    Request { peer: PeerId, data: String, reply: oneshot::Sender<Result<String, P2pError>> },
    Respond { reference: RequestRef, data: String },
    Scores { reply: oneshot::Sender<Vec<(PeerId, f64)>> },
    Connected { reply: oneshot::Sender<Vec<PeerId>> },
    SetPeers { peers: Vec<(PeerId, Multiaddr)> },
}

/// The application score of a peer proven to misbehave.
const PENALTY: f64 = -10_000.0;

/// A cheap, cloneable handle to the network task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    connected: Arc<AtomicUsize>,
    local_peer_id: PeerId,
    /// The namespace this handle publishes and asks in ([`NetworkHandle::scoped`]).
    scope: Option<Arc<str>>,
    /// Also publishes on the plain topics ([`NetworkHandle::scoped_with_plain`]).
    also_plain: bool,
    /// When an operator last connected or announced a subscription, ms since the epoch.
    joined_at_ms: Arc<AtomicU64>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Publish { topic, data, .. } => write!(f, "Publish({topic}, {} bytes)", data.len()),
            Command::Report { verdict, .. } => write!(f, "Report({verdict:?})"),
            Command::Penalize { peer } => write!(f, "Penalize({peer})"),
            Command::Block { peer } => write!(f, "Block({peer})"),
            Command::Unblock { peer } => write!(f, "Unblock({peer})"),
            Command::Request { peer, .. } => write!(f, "Request({peer})"),
            Command::Respond { .. } => write!(f, "Respond"),
            Command::Scores { .. } => write!(f, "Scores"),
            Command::Connected { .. } => write!(f, "Connected"),
            Command::SetPeers { peers } => write!(f, "SetPeers({})", peers.len()),
        }
    }
}

impl NetworkHandle {
    /// A handle of the same network that publishes on `<topic>/<scope>` and sends its requests
    /// tagged with `scope`; [`crate::demux`] hands what arrives in a scope to that scope's
    /// receiver, with the scope taken off again. A node runs one pipeline per scope (per
    /// chain) over one swarm, and no pipeline sees another's messages.
    pub fn scoped(&self, scope: &str) -> Self {
        Self { scope: Some(Arc::from(scope)), also_plain: false, ..self.clone() }
    }

    /// As [`NetworkHandle::scoped`], and every message is also published on the plain topic:
    /// peers that know no scopes (a version before them) hear it too.
    pub fn scoped_with_plain(&self, scope: &str) -> Self {
        Self { scope: Some(Arc::from(scope)), also_plain: true, ..self.clone() }
    }

    /// Publishes `data` on `topic` (in this handle's scope, and plainly too when the handle
    /// says so) to the connected operators; the result is the scoped topic's.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), P2pError> {
        let Some(scope) = &self.scope else {
            return self.publish_on(topic.to_string(), data).await;
        };
        if self.also_plain {
            // Best effort: no peer may listen on the plain topic any more.
            let _ = self.publish_on(topic.to_string(), data.clone()).await;
        }
        self.publish_on(crate::scope::scoped_topic(topic, scope), data).await
    }

    async fn publish_on(&self, topic: String, data: Vec<u8>) -> Result<(), P2pError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Publish { topic, data, reply }).await.map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)?
    }

    /// When a peer last connected or announced a subscription to a topic, ms since the Unix
    /// epoch (0: none yet). Gossipsub publishes only to peers whose subscription it has seen,
    /// so a message published before then may have missed that peer.
    pub fn last_peer_joined_ms(&self) -> u64 {
        self.joined_at_ms.load(Ordering::Relaxed)
    }

    /// Gives the verdict on a received gossip message: accepted messages are forwarded,
    /// rejected ones cost their sender score.
    pub async fn report(&self, reference: MessageRef, verdict: Verdict) {
        let _ = self.commands.send(Command::Report { reference, verdict }).await;
    }

    /// Lowers a peer's application score for proven misbehaviour (e.g. equivocation); its
    /// messages are then ignored by gossip.
    pub async fn penalize(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Penalize { peer }).await;
    }

    /// Disconnects `peer` and refuses its connections until [`Self::unblock`].
    pub async fn block(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Block { peer }).await;
    }

    /// Replaces the operators this node connects to and accepts: new ones are allowed and
    /// dialled, removed ones are disconnected and refused from then on.
    pub async fn set_peers(&self, peers: Vec<(PeerId, Multiaddr)>) {
        let _ = self.commands.send(Command::SetPeers { peers }).await;
    }

    /// Allows `peer` (an operator) again.
    pub async fn unblock(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Unblock { peer }).await;
    }

    /// Sends a direct request to `peer` and waits for its answer.
    pub async fn request(&self, peer: PeerId, data: String) -> Result<String, P2pError> {
        let (reply, rx) = oneshot::channel();
        let data = match &self.scope {
            Some(scope) => crate::scope::scoped_request(scope, &data),
            None => data,
        };
        self.commands.send(Command::Request { peer, data, reply }).await.map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)?
    }

    /// Answers an inbound request.
    pub async fn respond(&self, reference: RequestRef, data: String) {
        let _ = self.commands.send(Command::Respond { reference, data }).await;
    }

    /// The gossip score this node gives each connected operator (negative: its messages were
    /// judged invalid, or it was penalised; below the graylist threshold it is not heard).
    pub async fn scores(&self) -> Vec<(PeerId, f64)> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Scores { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The operators connected now.
    pub async fn connected(&self) -> Vec<PeerId> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Connected { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
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
pub fn spawn(config: NetworkConfig) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), P2pError> {
    let mut swarm = build_swarm(&config)?;
    swarm.listen_on(config.listen.clone()).map_err(|e| P2pError::Start(format!("listen on {}: {e}", config.listen)))?;
    for topic in &config.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| P2pError::Start(format!("subscribe {topic}: {e}")))?;
    }
    for (peer, addr) in &config.peers {
        swarm.behaviour_mut().allow.allow_peer(*peer);
        swarm.add_peer_address(*peer, addr.clone());
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(1024);
    let connected = Arc::new(AtomicUsize::new(0));
    let joined_at_ms = Arc::new(AtomicU64::new(0));
    let handle = NetworkHandle {
        commands: cmd_tx,
        connected: connected.clone(),
        local_peer_id: *swarm.local_peer_id(),
        scope: None,
        also_plain: false,
        joined_at_ms: joined_at_ms.clone(),
    };
    tokio::spawn(run(swarm, config, cmd_rx, event_tx, connected, joined_at_ms));
    Ok((handle, event_rx))
}

fn build_swarm(config: &NetworkConfig) -> Result<Swarm<Behaviour>, P2pError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| P2pError::Start(format!("tcp transport: {e}")))?
        .with_behaviour(|key| {
            let ips = config.peers.iter().filter_map(|(_, a)| crate::ip_limit::ip_of(a)).collect();
            Behaviour::new(key, &config.topics, config.peers.len() + 1, ips)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| P2pError::Start(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

struct Task {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    events: mpsc::Sender<NetworkEvent>,
    connected: Arc<AtomicUsize>,
    /// See [`NetworkHandle::last_peer_joined_ms`].
    joined_at_ms: Arc<AtomicU64>,
    peers_up: HashSet<PeerId>,
    blocked: HashSet<PeerId>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<String, P2pError>>>,
    inbound: HashMap<u64, ResponseChannel<String>>,
    next_inbound: u64,
}

async fn run(
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    connected: Arc<AtomicUsize>,
    joined_at_ms: Arc<AtomicU64>,
) {
    let mut redial = tokio::time::interval(config.redial_interval);
    let mut t = Task {
        swarm,
        config,
        events,
        connected,
        joined_at_ms,
        peers_up: HashSet::new(),
        blocked: HashSet::new(),
        pending_requests: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 0,
    };
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(cmd) => t.command(cmd),
                None => break,
            },
            _ = redial.tick() => t.redial(),
            event = t.swarm.select_next_some() => {
                if let Some(ev) = t.swarm_event(event)
                    && t.events.send(ev).await.is_err()
                {
                    break;
                }
            }
        }
    }
}

impl Task {
    fn command(&mut self, cmd: Command) {
        let cmd = match cmd {
            Command::Connected { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
                return;
            }
            other => other,
        };
        let b = self.swarm.behaviour_mut();
        match cmd {
            // Answered above, without the behaviour.
            Command::Connected { .. } => {}
            Command::Publish { topic, data, reply } => {
                let result = b
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic.as_str()), data)
                    .map(|_| ())
                    .map_err(|e| P2pError::Publish { topic, reason: e.to_string() });
                let _ = reply.send(result);
            }
            Command::Report { reference, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                b.gossipsub.report_message_validation_result(&reference.id, &reference.propagated_by, acceptance);
            }
            Command::Penalize { peer } => {
                // Below anything good behaviour can earn (the topic score is capped at 3600), so
                // the peer ends under the graylist threshold and is not heard.
                b.gossipsub.set_application_score(&peer, PENALTY);
                warn!(%peer, "peer penalised in gossip scoring");
            }
            Command::Block { peer } => {
                self.blocked.insert(peer);
                b.allow.disallow_peer(peer);
                info!(%peer, "peer blocked");
            }
            Command::Unblock { peer } => {
                self.blocked.remove(&peer);
                if self.config.peers.iter().any(|(p, _)| *p == peer) {
                    b.allow.allow_peer(peer);
                }
                info!(%peer, "peer unblocked");
            }
            Command::Request { peer, data, reply } => {
                let id = b.sync.send_request(&peer, data);
                self.pending_requests.insert(id, reply);
            }
            Command::Scores { reply } => {
                let scores =
                    self.config.peers.iter().filter_map(|(p, _)| b.gossipsub.peer_score(p).map(|s| (*p, s))).collect();
                let _ = reply.send(scores);
            }
            Command::SetPeers { peers } => self.set_peers(peers),
            Command::Respond { reference, data } => {
                if let Some(channel) = self.inbound.remove(&reference.0) {
                    let _ = b.sync.send_response(channel, data);
                }
            }
        }
    }

    fn set_peers(&mut self, peers: Vec<(PeerId, Multiaddr)>) {
        let keep: HashSet<PeerId> = peers.iter().map(|(p, _)| *p).collect();
        let removed: Vec<PeerId> = self.config.peers.iter().map(|(p, _)| *p).filter(|p| !keep.contains(p)).collect();
        for peer in removed {
            self.swarm.behaviour_mut().allow.disallow_peer(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            info!(%peer, "operator left the set: disconnected");
        }
        for (peer, addr) in &peers {
            if !self.config.peers.iter().any(|(p, _)| p == peer) {
                info!(%peer, %addr, "operator joined the set");
            }
            if !self.blocked.contains(peer) {
                self.swarm.behaviour_mut().allow.allow_peer(*peer);
            }
            self.swarm.add_peer_address(*peer, addr.clone());
        }
        self.config.peers = peers;
    }

    fn redial(&mut self) {
        for (peer, addr) in &self.config.peers {
            if !self.swarm.is_connected(peer) && !self.blocked.contains(peer) {
                let opts = DialOpts::peer_id(*peer).addresses(vec![addr.clone()]).build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(%peer, error = %e, "dial failed");
                }
            }
        }
    }

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<NetworkEvent> {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let reference = MessageRef { id: message_id, propagated_by: propagation_source };
                let Some(source) = message.source else {
                    self.command(Command::Report { reference, verdict: Verdict::Reject });
                    return None;
                };
                Some(NetworkEvent::Message { topic: message.topic.to_string(), source, data: message.data, reference })
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. })) => {
                match message {
                    request_response::Message::Request { request, channel, .. } => {
                        self.next_inbound += 1;
                        self.inbound.insert(self.next_inbound, channel);
                        Some(NetworkEvent::Request { peer, data: request, reference: RequestRef(self.next_inbound) })
                    }
                    request_response::Message::Response { request_id, response } => {
                        if let Some(reply) = self.pending_requests.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                        None
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            })) => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request { peer: peer.to_string(), reason: error.to_string() }));
                }
                None
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { .. })) => {
                self.joined_at_ms.store(unix_ms(), Ordering::Relaxed);
                None
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => self.peers_up.insert(peer_id).then(|| {
                self.joined_at_ms.store(unix_ms(), Ordering::Relaxed);
                self.connected.store(self.peers_up.len(), Ordering::Relaxed);
                info!(peer = %peer_id, connected = self.peers_up.len(), "operator connected");
                NetworkEvent::PeerConnected(peer_id)
            }),
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.peers_up.remove(&peer_id);
                self.connected.store(self.peers_up.len(), Ordering::Relaxed);
                info!(peer = %peer_id, connected = self.peers_up.len(), "operator disconnected");
                Some(NetworkEvent::PeerDisconnected(peer_id))
            }
            SwarmEvent::NewListenAddr { address, .. } => Some(NetworkEvent::Listening(address)),
            SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
                warn!(from = %send_back_addr, error = %error, "refused incoming connection");
                None
            }
            _ => None,
        }
    }
}

/// The wall clock, ms since the Unix epoch.
fn unix_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    u64::try_from(now).unwrap_or(u64::MAX)
}

/// Parses a multiaddr, naming it in the error.
pub fn parse_multiaddr(addr: &str) -> Result<Multiaddr, P2pError> {
    addr.parse()
        .map_err(|e: libp2p::multiaddr::Error| P2pError::InvalidAddress { addr: addr.into(), reason: e.to_string() })
}
