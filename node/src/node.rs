//! Starting and stopping a node: loads keys and config, opens the store, connects to the chain
//! and the operator network, and spawns the watcher, round driver, webhook worker and API.

use crate::api::server::ServerLimits;
use crate::api::{self, ApiState};
use crate::chain::watcher::{Watcher, WatcherStatus};
use crate::chain::{ChainClient, ChainError, SettlementSender};
use crate::epochs::Epochs;
use crate::halt::Halt;
use crate::invariants::Auditor;
use crate::keys::{KeyError, OperatorKeys};
use crate::operators::{OperatorSet, OperatorSetError};
use crate::outbound::Outbound;
use crate::replication::InvoiceReplicator;
use crate::rounds::{RoundDriver, Timing};
use crate::store::{Store, StoreError};
use crate::webhook::delivery::{Completion, Deliverer};
use crate::{gossip, telemetry};
use settleproof_config::NodeConfig;
use settleproof_consensus::RoundSchedule;
use settleproof_p2p::{NetworkConfig, NetworkHandle, P2pError, PeerId, parse_multiaddr};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
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
}

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// This node's peer id.
    pub peer_id: PeerId,
    /// The node's network handle (to block or unblock peers).
    pub net: NetworkHandle,
}

impl NodeHandle {
    /// Stops every task and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Resolves when shutdown was requested.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts a node from its configuration.
pub async fn start(cfg: NodeConfig) -> Result<NodeHandle, NodeError> {
    let metrics = telemetry::metrics();
    let providers: Vec<String> = (0..cfg.chain.rpc_endpoints.len()).map(|i| format!("rpc-{i}")).collect();
    crate::metrics_catalog::register_all(&providers, &["api", "admin"]);
    let keys = OperatorKeys::load(&cfg.node.keys_dir)?;
    let epochs = Epochs::new(PeerId::from(keys.libp2p.public()), OperatorSet::from_config(&cfg, &keys)?);
    std::fs::create_dir_all(&cfg.node.data_dir).map_err(|source| NodeError::Io {
        what: format!("create node.data_dir {}", cfg.node.data_dir.display()),
        source,
    })?;
    let store = Store::open(&cfg.node.data_dir.join("settleproof.redb"))?;
    for spec in store.epochs()? {
        epochs.learn(&spec);
    }
    set_ack_quorum(&store, &epochs);
    let halt = Halt::load(store.clone())?;
    if let Some(r) = halt.reason() {
        tracing::error!(severity = "CRITICAL", invariant = %r.invariant, detail = %r.detail, "starting halted: settlement stays off until an operator resumes it");
    }
    let outbound = Outbound::from_config(&cfg.tls).map_err(|e| NodeError::Config(e.to_string()))?;
    let rpc_http = outbound.rpc().map_err(|e| NodeError::Config(e.to_string()))?;
    let chain = ChainClient::new(&cfg.chain, keys.evm.address(), &rpc_http)?;
    let sender = SettlementSender::new(&cfg.chain, keys.evm.clone(), chain.clone(), Some(halt.clone()), &rpc_http)?;
    chain.check_chain_id().await?;
    // Before anything is signed: a store restored from a backup must not have forgotten what
    // the chain shows this node signed.
    crate::guard_floor::raise_to_chain(&chain, &store, &epochs, cfg.chain.start_block, cfg.chain.max_log_range).await?;
    let schedule = RoundSchedule::new(cfg.chain.start_block, cfg.rounds.length_blocks)
        .ok_or_else(|| NodeError::Config("rounds.length_blocks: must be at least 1".into()))?;
    let grace_rounds = grace_rounds(&chain, cfg.rounds.length_blocks).await;
    let peers = epochs.peers(store.next_round()?, grace_rounds);
    let (net, net_events) = settleproof_p2p::spawn(NetworkConfig {
        keypair: keys.libp2p.clone(),
        listen: parse_multiaddr(&cfg.p2p.listen)?,
        peers,
        topics: gossip::topics(),
        redial_interval: Duration::from_secs(1),
    })?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let progress = Arc::new(Notify::new());
    let webhook_wake = Arc::new(Notify::new());
    let merchants = Arc::new(cfg.merchants.clone());
    let mut tasks = Vec::new();

    let watcher_status = Arc::new(WatcherStatus::default());
    let watcher = Watcher::new(
        chain.clone(),
        store.clone(),
        cfg.chain.clone(),
        schedule,
        progress.clone(),
        watcher_status.clone(),
        epochs.clone(),
    );
    tasks.push(tokio::spawn(watcher.run(shutdown_rx.clone())));

    let driver = RoundDriver {
        store: store.clone(),
        epochs: epochs.clone(),
        bls_keys: std::sync::RwLock::new(keys.bls_keys().cloned().collect()),
        keys_dir: cfg.node.keys_dir.clone(),
        grace_rounds,
        schedule,
        chain: chain.clone(),
        sender,
        net: net.clone(),
        merchants: merchants.clone(),
        webhook_wake: webhook_wake.clone(),
        timing: Timing {
            rebroadcast: Duration::from_millis(cfg.rounds.rebroadcast_interval_ms),
            keeper_deadline_ms: cfg.rounds.keeper_deadline_ms,
            heartbeat: Duration::from_millis(cfg.rounds.heartbeat_interval_ms),
            heartbeat_timeout_ms: cfg.rounds.heartbeat_timeout_ms,
            min_balance_wei: u128::from(cfg.rounds.keeper_min_balance_gwei) * 1_000_000_000,
            delivery_failover_ms: cfg.webhooks.failover_delay_ms,
        },
        halt: halt.clone(),
    };
    tasks.push(tokio::spawn(driver.run(progress, net_events, shutdown_rx.clone())));

    for m in &cfg.merchants {
        crate::redact::register(&m.webhook_url, &format!("webhook:{}", m.id));
    }
    let deliverer = Deliverer::new(
        outbound.webhooks(&cfg.webhooks).map_err(|e| NodeError::Config(e.to_string()))?,
        store.clone(),
        &cfg.merchants,
        cfg.webhooks.clone(),
        webhook_wake.clone(),
        cfg.node.name.clone(),
        Some(net.clone()),
        schedule,
    )
    .with_completion(Completion {
        ctx: crate::receipt::ReceiptContext {
            chain_id: cfg.chain.chain_id,
            payments: cfg.chain.payments_contract,
            settlement: cfg.chain.settlement_contract,
            schedule,
            halt: Some(halt.clone()),
        },
        scope: gossip::InvoiceScope {
            merchants: merchants.clone(),
            chain_id: cfg.chain.chain_id,
            payments: cfg.chain.payments_contract,
        },
        epochs: epochs.clone(),
        grace_rounds,
    });
    tasks.push(tokio::spawn(deliverer.run(shutdown_rx.clone())));

    let auditor = Auditor {
        store: store.clone(),
        chain: chain.clone(),
        schedule,
        halt: halt.clone(),
        interval: Duration::from_secs(5),
    };
    tasks.push(tokio::spawn(auditor.run(shutdown_rx.clone())));

    let state = ApiState {
        store: store.clone(),
        schedule,
        merchants,
        chain_id: cfg.chain.chain_id,
        payments_contract: cfg.chain.payments_contract,
        node_name: cfg.node.name.clone(),
        replicator: Some(InvoiceReplicator::spawn(net.clone(), shutdown_rx.clone())),
        net: Some(net.clone()),
        epochs: Some(epochs.clone()),
        keys_dir: Some(cfg.node.keys_dir.clone()),
        chain: Some(chain.clone()),
        watcher: Some(watcher_status),
        settlement_contract: cfg.chain.settlement_contract,
        admin_token: cfg.admin.as_ref().map(|a| a.token.clone()),
        webhook_wake: Some(webhook_wake.clone()),
        halt: Some(halt.clone()),
        min_balance_wei: u128::from(cfg.rounds.keeper_min_balance_gwei) * 1_000_000_000,
        limiter: api::RateLimiter::new(cfg.api.rate_limit_per_s, cfg.api.rate_limit_burst),
        metrics,
        answers: api::cache::Answers::new(Duration::from_millis(cfg.api.status_cache_ms)),
        limits: api::Limits::from_config(&cfg.api),
        throttle: api::throttle::AuthThrottle::default(),
    };
    let limits = ServerLimits::from_config(&cfg.api, cfg.node.shutdown_grace_ms);
    let listener = bind("api.listen", cfg.api.listen).await?;
    let api_addr = listener.local_addr().map_err(|source| NodeError::Io { what: "api address".into(), source })?;
    if let Some(admin) = &cfg.admin {
        let addr = admin.listen_addr(cfg.api.listen);
        let admin_listener = bind("admin.listen", addr).await?;
        info!(admin = %addr, "admin API listening");
        let router = api::admin_router(state.clone());
        tasks.push(tokio::spawn(api::server::serve("admin", admin_listener, router, limits, shutdown_rx.clone())));
    }
    tasks.push(tokio::spawn(api::server::serve("api", listener, api::router(state), limits, shutdown_rx.clone())));
    tasks.push(tokio::spawn(follow_sets(
        epochs.clone(),
        store.clone(),
        net.clone(),
        grace_rounds,
        shutdown_rx.clone(),
    )));
    let operator = epochs.latest().and_then(|s| s.me);
    info!(node = %cfg.node.name, operator = ?operator, api = %api_addr, peer_id = %net.local_peer_id(), "node started");
    Ok(NodeHandle { shutdown, tasks, api_addr, peer_id: net.local_peer_id(), net })
}

/// f + 1 operators must claim a delivery before this node takes it as done: with at most f
/// Byzantine operators (f = n - threshold) of the latest set, one of the claims is true.
fn set_ack_quorum(store: &Store, epochs: &Epochs) {
    if let Some(set) = epochs.latest() {
        store.set_ack_quorum(set.len().saturating_sub(set.threshold) + 1);
    }
}

/// Rounds a superseded set may still settle after its successor starts (the contract's
/// `graceBlocks`, in rounds, plus one); 64 when the providers cannot tell.
async fn grace_rounds(chain: &ChainClient, round_blocks: u64) -> u64 {
    match chain.grace_blocks().await {
        Ok(blocks) => blocks.div_ceil(round_blocks.max(1)) + 1,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the settlement contract's grace period; keeping old operators 64 rounds");
            64
        }
    }
}

/// Applies operator set changes without a restart: the p2p allow list (operators joining are
/// allowed and dialled, operators whose last set is past its grace period are disconnected) and
/// the delivery acknowledgement quorum. Also runs every few seconds, as rounds advance.
async fn follow_sets(
    epochs: Arc<Epochs>,
    store: Store,
    net: NetworkHandle,
    grace_rounds: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = epochs.subscribe();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    let mut last = Vec::new();
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let round = store.next_round().unwrap_or(0);
        let peers = epochs.peers(round, grace_rounds);
        if peers != last {
            net.set_peers(peers.clone()).await;
            set_ack_quorum(&store, &epochs);
            last = peers;
        }
    }
}

async fn bind(field: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Io { what: format!("bind {field} {addr}"), source })
}
