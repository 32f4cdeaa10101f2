//! One chain's pipeline: its watcher (checkpoint, reorgs), round driver (rounds, signing guard,
//! attestation pool, keeper), webhook worker, auditor and operator set follower, over the
//! chain's own store, providers and halt switch, and the chain's scope of the p2p network.
//! A node runs one per configured chain; nothing of one chain's pipeline waits on another's,
//! so a chain whose providers are all down, or that halted, stops only its own settlement.

use crate::api::ChainState;
use crate::chain::watcher::{Watcher, WatcherStatus};
use crate::chain::{ChainClient, SettlementSender};
use crate::epochs::Epochs;
use crate::gossip;
use crate::halt::Halt;
use crate::invariants::Auditor;
use crate::keys::OperatorKeys;
use crate::peer_union::PeerUnion;
use crate::replication::InvoiceReplicator;
use crate::rounds::{RoundDriver, Timing};
use crate::store::Store;
use crate::webhook::delivery::{Completion, Deliverer};
use settleproof_config::{ChainSection, MerchantConfig, NodeConfig};
use settleproof_consensus::RoundSchedule;
use settleproof_p2p::{NetworkEvent, NetworkHandle};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// A chain's parts, opened and checked before the network starts.
#[derive(Debug)]
pub struct Prepared {
    /// Its section.
    pub cfg: ChainSection,
    /// Its store.
    pub store: Store,
    /// Its safety switch.
    pub halt: Halt,
    /// Its operator sets.
    pub epochs: Arc<Epochs>,
    /// Its provider quorum.
    pub chain: ChainClient,
    /// Its settlement transactions.
    pub sender: SettlementSender,
    /// Its rounds.
    pub schedule: RoundSchedule,
    /// Its grace period, in rounds.
    pub grace_rounds: u64,
}

/// What every pipeline of a node shares.
#[derive(Debug)]
pub struct Shared<'a> {
    /// The node's configuration.
    pub cfg: &'a NodeConfig,
    /// The operator identity.
    pub keys: &'a OperatorKeys,
    /// The merchants.
    pub merchants: Arc<Vec<MerchantConfig>>,
    /// The webhook HTTP client.
    pub webhook_client: reqwest::Client,
    /// The swarm's allow list, over all chains.
    pub peers: PeerUnion,
    /// Shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// A pipeline's tasks and what the API needs of it.
#[derive(Debug)]
pub struct Running {
    /// Its tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// Its part of the API state.
    pub api: ChainState,
    /// Its webhook worker (the next chains' workers share its limits).
    pub deliverer: Deliverer,
}

/// Spawns chain `p`'s pipeline on `net` (the chain's scope) with the events of that scope;
/// the webhook worker shares the in-flight limits of `limits_of` when given.
pub fn spawn(
    shared: &Shared<'_>,
    p: Prepared,
    net: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    limits_of: Option<&Deliverer>,
) -> Running {
    let cfg = shared.cfg;
    let chain_id = p.cfg.chain_id;
    let span = tracing::info_span!("chain", chain_id, name = %p.cfg.label());
    let shutdown = shared.shutdown.clone();
    let progress = Arc::new(Notify::new());
    let webhook_wake = Arc::new(Notify::new());
    let min_balance_wei = p.cfg.min_balance_wei(&cfg.rounds);
    let mut tasks = Vec::new();

    let watcher_status = Arc::new(WatcherStatus::default());
    let watcher = Watcher::new(
        p.chain.clone(),
        p.store.clone(),
        p.cfg.clone(),
        p.schedule,
        progress.clone(),
        watcher_status.clone(),
        p.epochs.clone(),
    );
    tasks.push(tokio::spawn(watcher.run(shutdown.clone()).instrument(span.clone())));

    let driver = RoundDriver {
        store: p.store.clone(),
        epochs: p.epochs.clone(),
        bls_keys: std::sync::RwLock::new(shared.keys.bls_keys().cloned().collect()),
        keys_dir: cfg.node.keys_dir.clone(),
        grace_rounds: p.grace_rounds,
        schedule: p.schedule,
        chain: p.chain.clone(),
        sender: p.sender,
        net: net.clone(),
        merchants: shared.merchants.clone(),
        webhook_wake: webhook_wake.clone(),
        timing: Timing {
            rebroadcast: Duration::from_millis(cfg.rounds.rebroadcast_interval_ms),
            keeper_deadline_ms: cfg.rounds.keeper_deadline_ms,
            heartbeat: Duration::from_millis(cfg.rounds.heartbeat_interval_ms),
            heartbeat_timeout_ms: cfg.rounds.heartbeat_timeout_ms,
            min_balance_wei,
            delivery_failover_ms: cfg.webhooks.failover_delay_ms,
        },
        halt: p.halt.clone(),
    };
    tasks.push(tokio::spawn(driver.run(progress, events, shutdown.clone()).instrument(span.clone())));

    let receipts = crate::receipt::ReceiptContext {
        chain_id,
        payments: p.cfg.payments_contract,
        settlement: p.cfg.settlement_contract,
        schedule: p.schedule,
        halt: Some(p.halt.clone()),
    };
    let mut deliverer = Deliverer::new(
        shared.webhook_client.clone(),
        p.store.clone(),
        &cfg.merchants,
        cfg.webhooks.clone(),
        webhook_wake.clone(),
        cfg.node.name.clone(),
        Some(net.clone()),
        p.schedule,
        chain_id,
    )
    .with_completion(Completion {
        ctx: receipts,
        scope: gossip::InvoiceScope {
            merchants: shared.merchants.clone(),
            chain_id,
            payments: p.cfg.payments_contract,
        },
        epochs: p.epochs.clone(),
        grace_rounds: p.grace_rounds,
    });
    if let Some(first) = limits_of {
        deliverer = deliverer.sharing_limits_with(first);
    }
    tasks.push(tokio::spawn(deliverer.clone().run(shutdown.clone()).instrument(span.clone())));

    let auditor = Auditor {
        store: p.store.clone(),
        chain: p.chain.clone(),
        schedule: p.schedule,
        halt: p.halt.clone(),
        interval: Duration::from_secs(5),
    };
    tasks.push(tokio::spawn(auditor.run(shutdown.clone()).instrument(span.clone())));
    tasks.push(tokio::spawn(
        follow_sets(
            chain_id,
            p.epochs.clone(),
            p.store.clone(),
            shared.peers.clone(),
            p.grace_rounds,
            shutdown.clone(),
        )
        .instrument(span),
    ));

    let api = ChainState {
        chain_id,
        name: p.cfg.label(),
        store: p.store,
        schedule: p.schedule,
        payments_contract: p.cfg.payments_contract,
        settlement_contract: p.cfg.settlement_contract,
        replicator: Some(InvoiceReplicator::spawn(net, shutdown)),
        epochs: Some(p.epochs),
        chain: Some(p.chain),
        watcher: Some(watcher_status),
        webhook_wake: Some(webhook_wake),
        halt: Some(p.halt),
        min_balance_wei,
    };
    Running { tasks, api, deliverer }
}

/// f + 1 operators must claim a delivery before this node takes it as done: with at most f
/// Byzantine operators (f = n - threshold) of the latest set, one of the claims is true.
pub fn set_ack_quorum(store: &Store, epochs: &Epochs) {
    if let Some(set) = epochs.latest() {
        store.set_ack_quorum(set.len().saturating_sub(set.threshold) + 1);
    }
}

/// Applies a chain's operator set changes without a restart: its share of the p2p allow list
/// (operators joining are allowed and dialled, operators whose last set on every chain is past
/// its grace period are disconnected) and the delivery acknowledgement quorum. Also runs every
/// few seconds, as rounds advance.
async fn follow_sets(
    chain_id: u64,
    epochs: Arc<Epochs>,
    store: Store,
    peers_of: PeerUnion,
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
            peers_of.set(chain_id, peers.clone()).await;
            set_ack_quorum(&store, &epochs);
            last = peers;
        }
    }
}
