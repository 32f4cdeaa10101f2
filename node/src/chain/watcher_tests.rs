//! The watcher over an in-process chain: confirmation depth, restart, reorgs, votes of a lying
//! provider, logs without a quorum either way, and a hung provider.

use super::ChainClient;
use super::fake::{Behaviour, FakeChain};
use super::providers::ProviderSet;
use super::watcher::{Step, WatchError, Watcher, WatcherStatus};
use crate::epochs::Epochs;
use crate::store::{OutboxEvent, Store, temp_store, webhook_id};
use alloy::primitives::{Address, B256, LogData, U256, keccak256};
use alloy::sol_types::SolEvent;
use settleproof_config::{ChainSection, EXAMPLE, NodeConfig};
use settleproof_consensus::RoundSchedule;
use settleproof_contracts::InvoicePayments;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

pub(super) const PAYMENTS: Address = Address::repeat_byte(0xaa);
pub(super) const SETTLEMENT: Address = Address::repeat_byte(0xbb);

pub(super) fn cfg() -> ChainSection {
    let mut cfg = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example").chains.remove(0);
    cfg.confirmations = 2;
    cfg.start_block = 1;
    cfg.max_log_range = 100;
    cfg.rpc_quorum = 2;
    cfg.rpc_timeout_ms = 300;
    cfg.rpc_retries = 0;
    cfg.rpc_breaker_open_ms = 200;
    cfg.payments_contract = PAYMENTS;
    cfg.settlement_contract = SETTLEMENT;
    cfg
}

pub(super) fn watcher(chain: &FakeChain, behaviours: Vec<Behaviour>, store: &Store) -> Watcher {
    watcher_with(cfg(), chain, behaviours, store)
}

fn watcher_with(cfg: ChainSection, chain: &FakeChain, behaviours: Vec<Behaviour>, store: &Store) -> Watcher {
    let providers = behaviours.into_iter().map(|b| chain.provider(b)).collect();
    let reads = ProviderSet::from_providers(providers, &cfg).expect("quorum");
    let client = ChainClient::over(reads, &cfg, Address::ZERO);
    let schedule = RoundSchedule::new(cfg.start_block, 5).expect("round length");
    let epochs = Epochs::new(settleproof_p2p::PeerId::random(), cfg.chain_id, None);
    Watcher::new(
        client,
        store.clone(),
        cfg,
        schedule,
        Arc::new(Notify::new()),
        Arc::new(WatcherStatus::default()),
        epochs,
    )
}

pub(super) fn honest(k: usize) -> Vec<Behaviour> {
    vec![Behaviour::Honest; k]
}

/// An `InvoicePaid` log of invoice `n` and its transaction hash.
pub(super) fn paid(n: u8) -> (Address, LogData, B256) {
    let event = InvoicePayments::InvoicePaid {
        invoiceId: B256::repeat_byte(n),
        merchant: Address::repeat_byte(1),
        payer: Address::repeat_byte(2),
        token: Address::ZERO,
        amount: U256::from(1000u64 + u64::from(n)),
    };
    (PAYMENTS, event.encode_log_data(), keccak256([n]))
}

/// Steps until nothing is left to confirm; the steps that did something.
/// Mines a payment of invoice 1, confirms it and lets `w` process it; returns its block.
pub(super) async fn pay_and_confirm(chain: &FakeChain, w: &Watcher) -> u64 {
    let at = chain.mine_logs(vec![paid(1)]);
    chain.mine_to(at + 4);
    drain(w).await;
    at
}

pub(super) async fn drain(w: &Watcher) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..20 {
        match w.step().await.expect("step") {
            Step::Idle => return steps,
            step => steps.push(step),
        }
    }
    panic!("the watcher never caught up: {steps:?}");
}

pub(super) fn blocks_of(store: &Store, invoice: u8) -> Vec<u64> {
    store.payments_of_invoice(B256::repeat_byte(invoice)).expect("read").iter().map(|p| p.leaf.block_number).collect()
}

#[tokio::test]
async fn a_payment_counts_at_the_confirmation_depth_and_a_restart_applies_it_once() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (dir, store) = temp_store();
    let w = watcher(&chain, honest(3), &store);
    let at = chain.mine_logs(vec![paid(1)]);
    drain(&w).await;
    assert!(blocks_of(&store, 1).is_empty(), "block {at} is not {} deep yet", cfg().confirmations);
    assert_eq!(store.checkpoint().expect("read"), Some(at - cfg().confirmations));
    chain.mine_to(at + 2);
    let steps = drain(&w).await;
    assert_eq!(steps, vec![Step::Advanced { from: at - 1, to: at, new_payments: 1 }]);
    assert_eq!(blocks_of(&store, 1), vec![at]);
    // A restart resumes from the checkpoint: nothing is read twice or missed.
    drop(w);
    drop(store);
    let store = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
    let w = watcher(&chain, honest(3), &store);
    assert!(drain(&w).await.is_empty());
    let later = chain.mine_logs(vec![paid(2)]);
    chain.mine_to(later + 2);
    drain(&w).await;
    assert_eq!((blocks_of(&store, 1), blocks_of(&store, 2)), (vec![at], vec![later]));
}

#[tokio::test]
async fn a_reorg_below_the_depth_rewinds_to_the_ancestor_keeps_the_reversal_and_takes_the_new_fork() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let w = watcher(&chain, honest(3), &store);
    let at = pay_and_confirm(&chain, &w).await;
    assert_eq!(blocks_of(&store, 1), vec![at]);
    // The merchant was told of the payment.
    let told = store.payments_of_invoice(B256::repeat_byte(1)).expect("read")[0].leaf.clone();
    let event = OutboxEvent {
        id: webhook_id(told.invoice_id, told.tx_hash, told.log_index),
        merchant_id: "m".into(),
        ..OutboxEvent::default()
    };
    store.enqueue_events(std::slice::from_ref(&event), 0).expect("enqueue");
    // A fork from the payment's block on, deeper than the confirmation depth; the payment is
    // included again later.
    chain.fork_from(at);
    let again = chain.mine_logs(vec![paid(1)]);
    chain.mine_to(again + 2);
    let steps = drain(&w).await;
    let Step::Rewound { ancestor, removed } = &steps[0] else { panic!("first a rewind: {steps:?}") };
    assert_eq!(*ancestor, Some(at - 1), "the newest block whose hash still matches");
    assert_eq!(removed.iter().map(|(p, told)| (p.leaf.block_number, *told)).collect::<Vec<_>>(), vec![(at, true)]);
    assert_eq!(blocks_of(&store, 1), vec![again], "the new fork's inclusion, once");
    assert_eq!(store.checkpoint_block().expect("read").map(|b| b.hash), chain.hash(again));
    // The watcher built no webhook payload: the reversal waits in the store for the webhook
    // worker.
    let rev = |o: &OutboxEvent, _: &settleproof_consensus::PaymentLeaf| OutboxEvent {
        id: format!("rev-{}", o.id),
        ..o.clone()
    };
    assert_eq!(store.queue_reversals(rev).expect("queue"), 1);
}

#[tokio::test]
async fn a_lying_provider_cannot_add_a_payment_or_stall_the_watcher() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let forged_at = 11;
    let forger = chain.clone();
    let liar = Behaviour::Tamper(Arc::new(move |method, answer| {
        if method == "eth_getLogs"
            && let Some(list) = answer.as_array_mut()
        {
            let (a, d, t) = paid(9);
            let forged = forger.log_json(forged_at, 7, a, &d, t);
            if !forged.is_null() {
                list.push(forged);
            }
        }
    }));
    let w = watcher(&chain, vec![Behaviour::Honest, liar, Behaviour::Honest], &store);
    let at = chain.mine_logs(vec![paid(1)]);
    assert_eq!(at, forged_at);
    chain.mine_to(at + 3);
    drain(&w).await;
    assert_eq!(blocks_of(&store, 1), vec![at], "the real payment counts");
    assert!(blocks_of(&store, 9).is_empty(), "the forged one is outvoted");
    assert_eq!(store.checkpoint().expect("read"), Some(at + 1));
}

#[tokio::test]
async fn a_log_without_a_quorum_either_way_holds_the_range_until_one_exists() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let forger = chain.clone();
    let liar = Behaviour::Tamper(Arc::new(move |method, answer| {
        if method == "eth_getLogs"
            && let Some(list) = answer.as_array_mut()
        {
            let (a, d, t) = paid(9);
            let forged = forger.log_json(11, 0, a, &d, t);
            if !forged.is_null() {
                list.push(forged);
            }
        }
    }));
    let down = Arc::new(AtomicBool::new(true));
    let w = watcher(&chain, vec![Behaviour::Honest, liar, Behaviour::DownWhile(down.clone())], &store);
    chain.mine_to(14);
    // One provider shows the log, one does not, the third is down: the honest one may be the
    // minority, so the range is neither attested nor skipped.
    let before = store.checkpoint().expect("read");
    for attempt in 1..=2 {
        match w.step().await {
            Err(WatchError::Unagreed { logs: 1, attempt: a, .. }) => assert_eq!(a, attempt),
            other => panic!("expected the range held, got {other:?}"),
        }
        assert_eq!(store.checkpoint().expect("read"), before);
    }
    // Once a quorum answers without it, the log is outvoted and the range goes on.
    down.store(false, Ordering::SeqCst);
    // The down provider's breaker may be open for a moment.
    let mut steps = Vec::new();
    for _ in 0..20 {
        match w.step().await {
            Ok(Step::Idle) => break,
            Ok(step) => steps.push(step),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    assert!(!steps.is_empty(), "the range moved on");
    assert_eq!(store.checkpoint().expect("read"), Some(12));
    assert!(blocks_of(&store, 9).is_empty());
}

#[tokio::test]
async fn a_hung_provider_does_not_hold_the_watcher() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    // A call to the hung provider ends only at this timeout; no read may wait for it.
    let cfg = ChainSection { rpc_timeout_ms: 600_000, ..cfg() };
    let w = watcher_with(cfg, &chain, vec![Behaviour::Honest, Behaviour::Hang, Behaviour::Honest], &store);
    let at = chain.mine_logs(vec![paid(1)]);
    chain.mine_to(at + 2);
    tokio::time::timeout(std::time::Duration::from_secs(60), drain(&w))
        .await
        .expect("every read returned on the honest answers");
    assert_eq!(blocks_of(&store, 1), vec![at]);
}

/// Unix ms that follow the test's simulated time (blocks are stamped, and notified heads judged,
/// by it).
fn simulated_ms() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    1_800_000_000_000 + START.get_or_init(tokio::time::Instant::now).elapsed().as_millis() as u64
}

/// Runs a watcher of `chain` polling every `poll` for `lasting` of simulated time with
/// `notify` running beside it: the head reads it made, and the store's checkpoint then.
async fn run_notified(
    poll: std::time::Duration,
    lasting: std::time::Duration,
    notify: impl std::future::Future<Output = ()> + Send + 'static,
    chain: &FakeChain,
    heads: Arc<Notify>,
) -> (u64, Option<u64>) {
    let (_dir, store) = temp_store();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = {
        let calls = calls.clone();
        Behaviour::Tamper(Arc::new(move |method, _| {
            if method == "eth_blockNumber" {
                calls.fetch_add(1, Ordering::SeqCst);
            }
        }))
    };
    let cfg = ChainSection { poll_interval_ms: poll.as_millis() as u64, rpc_quorum: 1, ..cfg() };
    let w = watcher_with(cfg, chain, vec![counted], &store).woken_by(heads).clocked_by(simulated_ms);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(w.run(stopped));
    let notifier = tokio::spawn(notify);
    tokio::time::sleep(lasting).await;
    let _ = stop.send(true);
    let _ = running.await;
    notifier.abort();
    (calls.load(Ordering::SeqCst), store.checkpoint().expect("checkpoint"))
}

/// The watcher under new-head notifications, in simulated time, polling every 10 s: a notifier
/// that floods without new blocks (a lying WebSocket endpoint) costs at most one extra step per
/// poll interval, and one that reports each new block gets each processed at once.
#[tokio::test(start_paused = true)]
async fn head_notifications_wake_the_watcher_only_while_they_bring_new_heads() {
    use std::time::Duration;
    let (poll, lasting) = (Duration::from_secs(10), Duration::from_secs(1));
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (quiet, _) = run_notified(poll, lasting, async {}, &chain, Arc::new(Notify::new())).await;
    let heads = Arc::new(Notify::new());
    let flood = {
        let heads = heads.clone();
        async move {
            loop {
                heads.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let (flooded, _) = run_notified(poll, lasting, flood, &chain, heads).await;
    assert!(
        flooded.saturating_sub(quiet) <= 1,
        "{} steps woken by notifications that brought no new head",
        flooded - quiet
    );

    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let heads = Arc::new(Notify::new());
    let blocks = {
        let (heads, chain) = (heads.clone(), chain.clone());
        async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                chain.mine_to(chain.head() + 1);
                heads.notify_one();
            }
        }
    };
    let (_, checkpoint) = run_notified(poll, lasting, blocks, &chain, heads).await;
    // Head 10 and 4 blocks notified within 1 s, 2 confirmations: every notified block is
    // processed, though the next poll is 10 s away.
    assert_eq!(chain.head(), 14);
    assert_eq!(checkpoint, Some(12), "the watcher follows notified heads between its polls");
}

/// While notifications announce each head on time, an idle watcher polling every 200 ms does
/// not poll between blocks; when they stop (a notifier that withholds heads) it finds each block
/// by polling, the first within the chain's pace plus one poll interval; and heads announced
/// late for their blocks' timestamps earn no wait at all: the watcher polls.
#[tokio::test(start_paused = true)]
async fn announced_heads_spare_the_polls_between_blocks_and_withheld_or_late_ones_are_still_found() {
    use std::time::Duration;
    let (poll, lasting) = (Duration::from_millis(200), Duration::from_millis(10_500));
    // A block a second for 10 s; the notifier announces the first `announced` of them, `late`
    // after each was mined, and with `twice` a second endpoint announces each again 55 ms later.
    let blocks = |chain: &FakeChain, heads: &Arc<Notify>, announced: usize, late: Duration, twice: bool| {
        let (chain, heads) = (chain.clone(), heads.clone());
        async move {
            for n in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                chain.mine_to(chain.head() + 1);
                if n < announced {
                    let heads = heads.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(late).await;
                        heads.notify_one();
                        if twice {
                            tokio::time::sleep(Duration::from_millis(55)).await;
                            heads.notify_one();
                        }
                    });
                }
            }
        }
    };
    let chain = || FakeChain::new(31337, SETTLEMENT, 10).stamped_by(simulated_ms);
    let on_time = Duration::ZERO;
    let (polled_chain, heads) = (chain(), Arc::new(Notify::new()));
    let (polled, _) =
        run_notified(poll, lasting, blocks(&polled_chain, &heads, 0, on_time, false), &polled_chain, heads).await;
    let (announced_chain, heads) = (chain(), Arc::new(Notify::new()));
    let (announced, checkpoint) =
        run_notified(poll, lasting, blocks(&announced_chain, &heads, 10, on_time, false), &announced_chain, heads)
            .await;
    assert_eq!(checkpoint, Some(18), "every announced block was processed");
    // Polling alone reads the head about five times a block. Announced, twice a block (the
    // woken step, and one a poll interval after the range it read, for a head the quorum had
    // not reached yet) once the pace is known, which takes the first two blocks.
    assert!(polled >= 45, "{polled} head reads polling every 200 ms for 10.5 s");
    assert!(announced * 5 <= polled * 3, "{announced} head reads with every block announced, polling {polled}");

    let (withheld_chain, heads) = (chain(), Arc::new(Notify::new()));
    let (_, checkpoint) =
        run_notified(poll, lasting, blocks(&withheld_chain, &heads, 5, on_time, false), &withheld_chain, heads).await;
    assert_eq!(checkpoint, Some(18), "the withheld blocks were found by polling");

    // Two endpoints announcing every head: the second copy costs one head read, not the wait.
    let (twice_chain, heads) = (chain(), Arc::new(Notify::new()));
    let (twice, checkpoint) =
        run_notified(poll, lasting, blocks(&twice_chain, &heads, 10, on_time, true), &twice_chain, heads).await;
    assert_eq!(checkpoint, Some(18), "every block processed");
    assert!(twice <= announced + 11, "{twice} head reads with every block announced twice, {announced} once");

    // Announced at once, but judged by their blocks' timestamps: blocks stamped long before the
    // notification (as a late one would be) earn no wait, and the watcher polls as often as
    // without notifications.
    let (stale_chain, heads) = (FakeChain::new(31337, SETTLEMENT, 10), Arc::new(Notify::new()));
    let (reads, checkpoint) =
        run_notified(poll, lasting, blocks(&stale_chain, &heads, 10, on_time, false), &stale_chain, heads).await;
    assert_eq!(checkpoint, Some(18), "every block found");
    assert!(reads * 10 >= polled * 8, "{reads} head reads with late heads announced, polling {polled}");
}

/// A provider that stalls on the newest block (the one a notified head is judged by) holds
/// the watcher for at most the time that read gets: every block is still processed.
#[tokio::test(start_paused = true)]
async fn a_provider_stalling_on_the_notified_heads_block_does_not_hold_the_watcher() {
    use std::time::Duration;
    let chain = FakeChain::new(31337, SETTLEMENT, 10).stamped_by(simulated_ms);
    let (_dir, store) = temp_store();
    let newest = {
        let chain = chain.clone();
        Behaviour::HangIf(Arc::new(move |method, params| {
            method == "eth_getBlockByNumber"
                && params[0].as_str().and_then(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).ok())
                    == Some(chain.head())
        }))
    };
    // Every read waits for the stalled provider for as long as the configuration lets it.
    let cfg = ChainSection { poll_interval_ms: 200, rpc_quorum: 1, rpc_timeout_ms: 600_000, ..cfg() };
    let heads = Arc::new(Notify::new());
    let w = watcher_with(cfg, &chain, vec![newest], &store).woken_by(heads.clone()).clocked_by(simulated_ms);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(w.run(stopped));
    // Between the watcher's polls, so that the notifications are what find the blocks.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        chain.mine_to(chain.head() + 1);
        heads.notify_one();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let _ = stop.send(true);
    let _ = running.await;
    assert_eq!(chain.head(), 15);
    assert_eq!(store.checkpoint().expect("checkpoint"), Some(13), "every confirmed block processed");
}

#[test]
fn the_checkpoint_is_read_again_when_the_head_or_checkpoint_moved_and_at_least_every_second() {
    use super::watcher::{CHECKPOINT_RECHECK, checkpoint_check_due};
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let just = t0 + Duration::from_millis(200);
    let table = [
        (None, 10, 8, just, true, "never checked"),
        (Some((10, 8, t0)), 10, 8, just, false, "head and checkpoint unmoved, checked 200 ms ago"),
        (Some((10, 8, t0)), 11, 8, just, true, "a new head"),
        (Some((10, 8, t0)), 10, 9, just, true, "the checkpoint moved"),
        (Some((10, 8, t0)), 9, 8, just, true, "the head went back"),
        (
            Some((10, 8, t0)),
            10,
            8,
            t0 + CHECKPOINT_RECHECK,
            true,
            "a reorg that keeps the height is found within a second",
        ),
    ];
    for (last, head, cp, now, due, case) in table {
        assert_eq!(checkpoint_check_due(last, head, cp, now), due, "{case}");
    }
}

#[tokio::test]
async fn a_range_step_retried_after_a_failure_checks_the_checkpoint_again() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    // Every provider answers logs with garbage while the flag is set: a range step fails after
    // its check of the checkpoint.
    let broken = Arc::new(AtomicBool::new(false));
    let provider = |flag: Arc<AtomicBool>| {
        Behaviour::Tamper(Arc::new(move |method, answer| {
            if method == "eth_getLogs" && flag.load(Ordering::Relaxed) {
                *answer = serde_json::json!("not logs");
            }
        }))
    };
    let w = watcher(&chain, (0..3).map(|_| provider(broken.clone())).collect(), &store);
    let at = pay_and_confirm(&chain, &w).await;
    chain.mine_to(chain.head() + 1);
    broken.store(true, Ordering::Relaxed);
    assert!(w.step().await.is_err(), "the range's logs cannot be read");
    broken.store(false, Ordering::Relaxed);
    // Meanwhile a reorg from the payment's block on, keeping the height: the retry, at the same
    // head and checkpoint and well within a second, must find it before reading the range.
    chain.fork_from(at);
    let step = w.step().await.expect("step");
    assert!(matches!(step, Step::Rewound { .. }), "the retried range step checks first: {step:?}");
}

#[tokio::test]
async fn a_reorg_that_keeps_the_height_is_found_within_a_second() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let w = watcher(&chain, honest(3), &store);
    let at = pay_and_confirm(&chain, &w).await;
    assert_eq!(blocks_of(&store, 1), vec![at]);
    // The blocks from the payment's on are replaced by as many others: the head keeps its height.
    chain.fork_from(at);
    assert_eq!(w.step().await.expect("step"), Step::Idle, "checked less than a second ago: only the head is read");
    tokio::time::sleep(super::watcher::CHECKPOINT_RECHECK).await;
    let step = w.step().await.expect("step");
    assert!(matches!(step, Step::Rewound { .. }), "a second later the reorg is found: {step:?}");
    drain(&w).await;
    assert!(blocks_of(&store, 1).is_empty(), "the payment left with its block");
}
