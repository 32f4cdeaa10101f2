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
use crate::store::InvoiceWriter;
use crate::store::Store;
use crate::webhook::completion::Completion;
use crate::webhook::delivery::Deliverer;
use settleproof_config::{ChainSection, NodeConfig};
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
}

/// Rounds a superseded set's operators stay connected when the contract's grace period cannot
/// be read.
pub const DEFAULT_GRACE_ROUNDS: u64 = 64;

/// How long a chain that could not be reached waits before the next try.
const RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// What every pipeline of a node shares.
#[derive(Debug)]
pub struct Shared<'a> {
    /// The node's configuration.
    pub cfg: &'a NodeConfig,
    /// The operator identity.
    pub keys: &'a OperatorKeys,
    /// The merchants.
    pub merchants: crate::merchants::Registry,
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
/// the webhook worker shares the in-flight limits of `limits_of` when given. The API part is
/// ready at once; the pipeline's tasks start once the chain answers ([`connect`]), so a chain
/// unreachable at start waits without holding back the others.
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
    let webhook_wake = Arc::new(Notify::new());
    let min_balance_wei = p.cfg.min_balance_wei(&cfg.rounds);
    let watcher_status = Arc::new(WatcherStatus::default());
    let mut deliverer = Deliverer::new(
        shared.webhook_client.clone(),
        p.store.clone(),
        shared.merchants.clone(),
        cfg.webhooks.clone(),
        webhook_wake.clone(),
        cfg.node.name.clone(),
        Some(net.clone()),
        p.schedule,
        chain_id,
    );
    if let Some(first) = limits_of {
        deliverer = deliverer.sharing_limits_with(first);
    }
    deliverer = deliverer.with_single_acks(cfg.p2p.single_messages);
    let api = ChainState {
        chain_id,
        name: p.cfg.label(),
        store: p.store.clone(),
        schedule: p.schedule,
        payments_contract: p.cfg.payments_contract,
        settlement_contract: p.cfg.settlement_contract,
        replicator: Some(InvoiceReplicator::spawn(
            net.clone(),
            crate::replication::ReplicatedChain {
                store: p.store.clone(),
                chain_id,
                epochs: p.epochs.clone(),
                single: cfg.p2p.single_messages,
            },
            shutdown.clone(),
        )),
        // Without its thread (none could be started) each create commits on its own.
        invoice_writer: InvoiceWriter::spawn(p.store.clone())
            .inspect_err(|e| tracing::warn!(error = %e, "no invoice writer thread; creates commit one at a time"))
            .ok(),
        epochs: Some(p.epochs.clone()),
        chain: Some(p.chain.clone()),
        watcher: Some(watcher_status.clone()),
        webhook_wake: Some(webhook_wake.clone()),
        halt: Some(p.halt.clone()),
        min_balance_wei,
    };
    let parts = Parts { p, net, events, deliverer: deliverer.clone(), webhook_wake, watcher_status, min_balance_wei };
    let (node_cfg, keys, merchants, peers) =
        (cfg.clone(), shared.keys.bls_keys().cloned().collect(), shared.merchants.clone(), shared.peers.clone());
    let task = tokio::spawn(
        async move {
            let Some(grace_rounds) = connect(&parts.p, &parts.watcher_status, shutdown.clone()).await else {
                return;
            };
            let tasks = run(&node_cfg, keys, merchants, peers, parts, grace_rounds, shutdown);
            for t in tasks {
                let _ = t.await;
            }
        }
        .instrument(span),
    );
    Running { tasks: vec![task], api, deliverer }
}

/// A pipeline's parts that wait for the chain.
struct Parts {
    p: Prepared,
    net: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    deliverer: Deliverer,
    webhook_wake: Arc<Notify>,
    watcher_status: Arc<WatcherStatus>,
    min_balance_wei: u128,
}

/// Waits until the chain answers and this node's signing guard is raised to what the chain
/// shows it signed (a store restored from a backup must not have forgotten it), then reads the
/// grace period in rounds. Tries again every few seconds, the failure shown in the chain's
/// health; `None` on shutdown.
pub async fn connect(p: &Prepared, status: &WatcherStatus, mut shutdown: watch::Receiver<bool>) -> Option<u64> {
    loop {
        let attempt = async {
            p.chain.check_chain_id().await.map_err(|e| e.to_string())?;
            crate::guard_floor::raise_to_chain(&p.chain, &p.store, &p.epochs, p.cfg.start_block, p.cfg.max_log_range)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        match attempt.await {
            Ok(()) => return Some(grace_rounds(&p.chain, p.schedule.length).await),
            Err(e) => {
                status.failed(format!("waiting for the chain: {e}"));
                tracing::warn!(error = %e, "chain not reachable yet; its pipeline starts once it answers");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

/// Rounds a superseded set may still settle after its successor starts (the contract's
/// `graceBlocks`, in rounds, plus one); [`DEFAULT_GRACE_ROUNDS`] when the providers cannot
/// tell.
async fn grace_rounds(chain: &ChainClient, round_blocks: u64) -> u64 {
    match chain.grace_blocks().await {
        Ok(blocks) => blocks.div_ceil(round_blocks.max(1)) + 1,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the settlement contract's grace period; keeping old operators {DEFAULT_GRACE_ROUNDS} rounds");
            DEFAULT_GRACE_ROUNDS
        }
    }
}

/// Spawns the pipeline's tasks: watcher, round driver, webhook worker, auditor, set follower.
fn run(
    cfg: &NodeConfig,
    bls_keys: Vec<settleproof_consensus::BlsSecretKey>,
    merchants: crate::merchants::Registry,
    peers: PeerUnion,
    parts: Parts,
    grace_rounds: u64,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let Parts { p, net, events, deliverer, webhook_wake, watcher_status, min_balance_wei } = parts;
    let chain_id = p.cfg.chain_id;
    let progress = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    let watcher = Watcher::new(
        p.chain.clone(),
        p.store.clone(),
        p.cfg.clone(),
        p.schedule,
        progress.clone(),
        watcher_status,
        p.epochs.clone(),
    );
    let heads = crate::chain::heads::HeadSignal::default();
    let poll = std::time::Duration::from_millis(p.cfg.poll_interval_ms);
    tasks.extend(crate::chain::heads::spawn(&p.cfg.rpc_ws_endpoints, chain_id, poll, heads.clone(), shutdown.clone()));
    let watcher = watcher.woken_by(heads.watcher_wake());
    tasks.push(tokio::spawn(watcher.run(shutdown.clone()).in_current_span()));

    let driver = RoundDriver {
        store: p.store.clone(),
        epochs: p.epochs.clone(),
        bls_keys: std::sync::RwLock::new(bls_keys),
        keys_dir: cfg.node.keys_dir.clone(),
        grace_rounds,
        schedule: p.schedule,
        chain: p.chain.clone(),
        sender: p.sender.with_heads(heads.subscribe()),
        net,
        merchants: merchants.clone(),
        webhook_wake,
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
    tasks.push(tokio::spawn(driver.run(progress, events, shutdown.clone()).in_current_span()));

    let receipts = crate::receipt::ReceiptContext {
        chain_id,
        payments: p.cfg.payments_contract,
        settlement: p.cfg.settlement_contract,
        schedule: p.schedule,
        halt: Some(p.halt.clone()),
    };
    let deliverer = deliverer.with_completion(Completion {
        ctx: receipts,
        scope: gossip::InvoiceScope { merchants, chain_id, payments: p.cfg.payments_contract },
        epochs: p.epochs.clone(),
        grace_rounds,
    });
    tasks.push(tokio::spawn(deliverer.run(shutdown.clone()).in_current_span()));

    let auditor = Auditor {
        store: p.store.clone(),
        chain: p.chain.clone(),
        schedule: p.schedule,
        halt: p.halt.clone(),
        interval: Duration::from_secs(5),
    };
    tasks.push(tokio::spawn(auditor.run(shutdown.clone()).in_current_span()));
    tasks.push(tokio::spawn(
        follow_sets(chain_id, p.epochs.clone(), p.store.clone(), peers, grace_rounds, shutdown).in_current_span(),
    ));
    tasks
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
