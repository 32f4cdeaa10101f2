//! Starting and stopping a node: loads keys and config, opens one store per chain, connects to
//! every chain and to the operator network, and spawns each chain's pipeline ([`pipeline`]:
//! watcher, round driver, webhook worker, auditor) and the API.

use crate::api::server::ServerLimits;
use crate::api::thread::{ApiRuntime, Listener, serve_on_own_runtime};
use crate::api::{self, ApiState, Chains};
use crate::chain::{ChainClient, ChainError, SettlementSender};
use crate::epochs::Epochs;
use crate::halt::Halt;
use crate::keys::{KeyError, OperatorKeys};
use crate::operators::{OperatorSet, OperatorSetError};
use crate::outbound::Outbound;
use crate::peer_union::PeerUnion;
use crate::pipeline::{self, Prepared};
use crate::store::{Store, StoreError};
use crate::{gossip, telemetry};
use settleproof_config::{ChainSection, NodeConfig};
use settleproof_consensus::RoundSchedule;
use settleproof_p2p::{NetworkConfig, NetworkHandle, P2pError, PeerId, Scope, parse_multiaddr};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Keys missing or invalid.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Operator set inconsistent with this node's keys.
    #[error("invalid operator set: {0}")]
    Operators(#[from] OperatorSetError),
    /// Store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Chain unreachable or wrong.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The signing guard could not be raised to what the chain shows signed.
    #[error("cannot raise the signing guard to the chain: {0}")]
    GuardFloor(#[from] crate::guard_floor::GuardFloorError),
    /// Network cannot start.
    #[error(transparent)]
    P2p(#[from] P2pError),
    /// I/O (data dir, API socket).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Invalid setting detected at start.
    #[error("{0}")]
    Config(String),
    /// One chain could not start; names it.
    #[error("chain {chain_id} ({name}): {source}")]
    OnChain {
        /// The chain.
        chain_id: u64,
        /// Its name.
        name: String,
        /// Why.
        source: Box<NodeError>,
    },
}

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Splits the swarm's events by chain; it holds a network handle, so it ends only when
    /// stopped, after every pipeline ended.
    demux: JoinHandle<()>,
    /// The chain whose pipeline also uses the plain topics (`p2p.plain_topics`), if any.
    plain_chain: Option<u64>,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// This node's peer id.
    pub peer_id: PeerId,
    /// The node's network handle (to block or unblock peers); [`NodeHandle::chain_net`] for
    /// a chain's gossip.
    pub net: NetworkHandle,
    /// The API's runtime: dropped last, after the pipelines stopped (see [`crate::api::thread`]).
    api_runtime: ApiRuntime,
}

impl NodeHandle {
    /// Stops every task and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.demux.abort();
        let _ = self.demux.await;
        drop(self.api_runtime);
    }

    /// The network as chain `chain_id`'s pipeline sees it: its topics and requests (the first
    /// chain's publishes on the plain topics too under `p2p.plain_topics`).
    pub fn chain_net(&self, chain_id: u64) -> NetworkHandle {
        let scope = chain_id.to_string();
        if Some(chain_id) == self.plain_chain { self.net.scoped_with_plain(&scope) } else { self.net.scoped(&scope) }
    }

    /// Resolves when shutdown was requested.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts a node from its configuration: one pipeline per configured chain over one operator
/// identity, one p2p swarm (each chain in a scope of its own) and one API.
pub async fn start(cfg: NodeConfig) -> Result<NodeHandle, NodeError> {
    let metrics = telemetry::metrics();
    let chain_labels: Vec<(u64, Vec<String>)> = cfg
        .chains
        .iter()
        .map(|c| (c.chain_id, (0..c.rpc_endpoints.len()).map(|i| format!("rpc-{i}")).collect()))
        .collect();
    crate::metrics_catalog::register_all(&chain_labels, &["api", "admin"]);
    let keys = OperatorKeys::load(&cfg.node.keys_dir)?;
    std::fs::create_dir_all(&cfg.node.data_dir).map_err(|source| NodeError::Io {
        what: format!("create node.data_dir {}", cfg.node.data_dir.display()),
        source,
    })?;
    let outbound = Outbound::from_config(&cfg.tls).map_err(|e| NodeError::Config(e.to_string()))?;
    let rpc_http = outbound.rpc().map_err(|e| NodeError::Config(e.to_string()))?;
    let local_peer = PeerId::from(keys.libp2p.public());
    let mut prepared = Vec::new();
    for (index, chain_cfg) in cfg.chains.iter().enumerate() {
        let on_chain =
            |e| NodeError::OnChain { chain_id: chain_cfg.chain_id, name: chain_cfg.label(), source: Box::new(e) };
        let p = open(&cfg, index, chain_cfg, &keys, local_peer, &outbound, &rpc_http).map_err(on_chain)?;
        first_contact(&p).await.map_err(on_chain)?;
        prepared.push(p);
    }

    let mut initial_peers = Vec::new();
    for p in &prepared {
        initial_peers.push(p.epochs.peers(p.store.next_round()?, pipeline::DEFAULT_GRACE_ROUNDS));
    }
    // Every chain in its own scope; with `p2p.plain_topics` the first also on the plain topics,
    // for nodes of the version before several chains (each message then goes out twice).
    let plain = cfg.p2p.plain_topics;
    let scopes: Vec<Scope> = prepared
        .iter()
        .enumerate()
        .map(|(i, p)| Scope { tag: p.cfg.chain_id.to_string(), plain: plain && i == 0 })
        .collect();
    let (net, net_events) = settleproof_p2p::spawn(NetworkConfig {
        keypair: keys.libp2p.clone(),
        listen: parse_multiaddr(&cfg.p2p.listen)?,
        peers: crate::peer_union::union(initial_peers.iter()),
        topics: prepared
            .iter()
            .enumerate()
            .flat_map(|(i, p)| gossip::topics(p.cfg.chain_id, plain && i == 0))
            .collect(),
        redial_interval: Duration::from_secs(1),
    })?;
    let (scoped_events, demux) = settleproof_p2p::demux(net.clone(), net_events, &scopes, &gossip::TOPICS, 1024);
    let peers = PeerUnion::new(net.clone(), prepared.iter().map(|p| p.cfg.chain_id).zip(initial_peers));

    let (shutdown, shutdown_rx) = watch::channel(false);
    for m in &cfg.merchants {
        crate::redact::register(&m.webhook_url, &format!("webhook:{}", m.id));
    }
    let home = prepared.first().ok_or_else(|| NodeError::Config("chains: no chain is configured".into()))?;
    let merchants = crate::merchants::Registry::open(
        crate::merchants::Home {
            store: home.store.clone(),
            epochs: home.epochs.clone(),
            chain_id: home.cfg.chain_id,
            settlement: home.cfg.settlement_contract,
            url_policy: (cfg.tls.allow_insecure_http, cfg.webhooks.allow_private_targets),
            secret_overlap_ms: cfg.webhooks.secret_overlap_s.saturating_mul(1000),
            audience_optional_before_s: cfg.network.audience_optional_before_s,
        },
        &cfg.merchants,
    )?;
    let home_scope = home.cfg.chain_id.to_string();
    merchants.attach(if plain { net.scoped_with_plain(&home_scope) } else { net.scoped(&home_scope) });
    for p in &prepared {
        p.store.route_endpoints(merchants.routes());
    }
    let shared = pipeline::Shared {
        cfg: &cfg,
        keys: &keys,
        merchants: merchants.clone(),
        webhook_client: outbound.webhooks(&cfg.webhooks).map_err(|e| NodeError::Config(e.to_string()))?,
        peers,
        shutdown: shutdown_rx.clone(),
    };
    let mut tasks =
        vec![merchants.spawn_inbox(Duration::from_millis(cfg.rounds.rebroadcast_interval_ms), shutdown_rx.clone())];
    let mut api_chains = Vec::new();
    let mut limits_of: Option<crate::webhook::delivery::Deliverer> = None;
    for ((p, events), scope) in prepared.into_iter().zip(scoped_events).zip(&scopes) {
        let scoped = if scope.plain { net.scoped_with_plain(&scope.tag) } else { net.scoped(&scope.tag) };
        let running = pipeline::spawn(&shared, p, scoped, events, limits_of.as_ref());
        tasks.extend(running.tasks);
        limits_of.get_or_insert(running.deliverer);
        api_chains.push(running.api);
    }
    let mut api_chains = api_chains.into_iter();
    let first = api_chains.next().ok_or_else(|| NodeError::Config("chains: no chain is configured".into()))?;

    // One key's share of the replay cache: what its merchant's request budget lets it send
    // over a token's lifetime and the skew on both sides, and no more.
    let window_s = (settleproof_merchant_auth::MAX_LIFETIME_S + 2 * settleproof_merchant_auth::MAX_SKEW_S) as f64;
    let nonces_per_key = (cfg.api.rate_limit_burst + cfg.api.rate_limit_per_s * window_s).ceil() as usize;
    let mut state = ApiState {
        chains: Arc::new(Chains::new(first, api_chains.collect())),
        merchants,
        node_name: cfg.node.name.clone(),
        net: Some(net.clone()),
        keys_dir: Some(cfg.node.keys_dir.clone()),
        admin_token: cfg.admin.as_ref().map(|a| a.token.clone()),
        limiter: api::RateLimiter::new(cfg.api.rate_limit_per_s, cfg.api.rate_limit_burst),
        metrics,
        answers: api::cache::Answers::new(Duration::from_millis(cfg.api.status_cache_ms)),
        limits: api::Limits::from_config(&cfg.api),
        throttle: api::throttle::AuthThrottle::with_trusted_proxies(cfg.api.trusted_proxy_nets().unwrap_or_default()),
        public_url: cfg.api.public_base(),
        tokens: api::checkout::TokenCache::default(),
        signed: api::auth::SignedRequests::new(cfg.api.public_url.as_deref(), cfg.api.listen, nonces_per_key),
    };
    let limits = ServerLimits::from_config(&cfg.api, cfg.node.shutdown_grace_ms);
    let listener = bind("api.listen", cfg.api.listen).await?;
    let api_addr = listener.local_addr().map_err(|source| NodeError::Io { what: "api address".into(), source })?;
    // Signed requests name the port bound (the configured one may be 0).
    state.signed = api::auth::SignedRequests::new(cfg.api.public_url.as_deref(), api_addr, nonces_per_key);
    let mut listeners = Vec::new();
    if let Some(admin) = &cfg.admin {
        let addr = admin.listen_addr(cfg.api.listen);
        let admin_listener = bind("admin.listen", addr).await?;
        info!(admin = %addr, "admin API listening");
        listeners.push(Listener { name: "admin", listener: admin_listener, router: api::admin_router(state.clone()) });
    }
    listeners.push(Listener { name: "api", listener, router: api::router(state) });
    let (api_runtime, served) = serve_on_own_runtime(listeners, limits, shutdown_rx.clone())
        .map_err(|source| NodeError::Io { what: "the API server's runtime".into(), source })?;
    tasks.extend(served);
    let chains: Vec<String> = cfg.chains.iter().map(|c| format!("{} ({})", c.chain_id, c.label())).collect();
    info!(node = %cfg.node.name, api = %api_addr, peer_id = %net.local_peer_id(), chains = ?chains, "node started");
    let plain_chain = cfg.chains.first().map(|c| c.chain_id).filter(|_| plain);
    Ok(NodeHandle { shutdown, tasks, demux, plain_chain, api_addr, peer_id: net.local_peer_id(), net, api_runtime })
}

/// Opens chain `index`'s store and connects it to its providers (no call is made yet).
fn open(
    cfg: &NodeConfig,
    index: usize,
    chain_cfg: &ChainSection,
    keys: &OperatorKeys,
    local_peer: PeerId,
    outbound: &Outbound,
    rpc_http: &reqwest::Client,
) -> Result<Prepared, NodeError> {
    let epochs = Epochs::new(local_peer, chain_cfg.chain_id, OperatorSet::from_config(cfg, keys)?);
    let path = crate::store::chain_store_path(&cfg.node.data_dir, index, chain_cfg.chain_id);
    let store = Store::open_for_chain(&path, chain_cfg.chain_id, chain_cfg.payments_contract)?;
    for spec in store.epochs()? {
        epochs.learn(&spec);
    }
    pipeline::set_ack_quorum(&store, &epochs);
    let halt = Halt::load(store.clone(), chain_cfg.chain_id)?;
    if let Some(r) = halt.reason() {
        tracing::error!(severity = "CRITICAL", chain_id = chain_cfg.chain_id, invariant = %r.invariant, detail = %r.detail, "starting halted: settlement on this chain stays off until an operator resumes it");
    }
    let chain = ChainClient::new(chain_cfg, keys.evm.address(), rpc_http)?;
    // Each request of a settlement gets the read timeout three times over (at least 3 s).
    let writes = outbound
        .rpc_writes(std::time::Duration::from_millis(chain_cfg.rpc_timeout_ms.max(1000) * 3))
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let sender = SettlementSender::new(chain_cfg, keys.evm.clone(), chain.clone(), Some(halt.clone()), &writes)?;
    let round_length = chain_cfg.round_length(&cfg.rounds);
    let schedule = RoundSchedule::new(chain_cfg.start_block, round_length)
        .ok_or_else(|| NodeError::Config("round length: must be at least 1 block".into()))?;
    Ok(Prepared { cfg: chain_cfg.clone(), store, halt, epochs, chain, sender, schedule })
}

/// The first look at a chain's providers: a provider quorum serving another chain is a
/// configuration error and stops the node; a chain that does not answer starts anyway, its
/// pipeline waiting for it ([`pipeline::connect`]) while the other chains run.
async fn first_contact(p: &Prepared) -> Result<(), NodeError> {
    match p.chain.check_chain_id().await {
        Ok(()) => Ok(()),
        Err(e @ ChainError::WrongChain { .. }) => Err(e.into()),
        Err(e) => {
            tracing::error!(chain_id = p.cfg.chain_id, error = %e, "chain unreachable at start: its pipeline waits for it, the other chains run");
            Ok(())
        }
    }
}

async fn bind(field: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Io { what: format!("bind {field} {addr}"), source })
}
