//! The provider quorum over the in-process fake chain: who is asked, when more are asked,
//! and that a liar is outvoted whichever answers first.

use super::*;
use crate::chain::fake::{Behaviour, FakeChain};
use alloy::primitives::U256;
use settleproof_config::{EXAMPLE, NodeConfig};
use std::sync::atomic::AtomicU64;

fn section(quorum: usize, timeout_ms: u64, hedge_ms: u64) -> ChainSection {
    let mut cfg = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example").chains.remove(0);
    cfg.rpc_quorum = quorum;
    cfg.rpc_timeout_ms = timeout_ms;
    cfg.rpc_hedge_ms = hedge_ms;
    cfg.rpc_retries = 0;
    cfg.rpc_breaker_failures = 1;
    cfg
}

/// An honest provider of `chain` counting the calls it answers into `calls`.
fn counted(chain: &FakeChain, calls: &Arc<AtomicU64>) -> DynProvider {
    let calls = calls.clone();
    chain.provider(Behaviour::Tamper(Arc::new(move |_, _| {
        calls.fetch_add(1, Ordering::SeqCst);
    })))
}

/// A provider of `chain` that reports `balance` for every account.
fn lying(chain: &FakeChain, balance: u64) -> DynProvider {
    chain.provider(Behaviour::Tamper(Arc::new(move |method, answer| {
        if method == "eth_getBalance" {
            *answer = serde_json::json!(format!("{balance:#x}"));
        }
    })))
}

/// The balance an honest provider of the fake chain reports.
fn honest() -> U256 {
    U256::from(10u128.pow(19))
}

fn breakers(set: &ProviderSet) -> Vec<&'static str> {
    set.status().iter().map(|s| s.breaker).collect()
}

/// The balance read, which must end well before `within` (a call's timeout or the hedge
/// delay, whichever the test says no read may wait for).
async fn balance_within(set: &ProviderSet, within: Duration) -> U256 {
    let read = tokio::time::timeout(within, set.balance(Address::ZERO)).await;
    read.expect("the read waited for a provider it did not need").expect("agreed")
}

#[tokio::test]
async fn a_read_asks_a_quorum_first_rotating_which_and_no_more_when_they_agree() {
    let chain = FakeChain::new(31337, Address::ZERO, 5);
    let calls: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
    let set = ProviderSet::from_providers(calls.iter().map(|c| counted(&chain, c)).collect(), &chain_cfg_hedged())
        .expect("quorum");
    for read in 1..=3u64 {
        assert_eq!(set.head().await.expect("head"), 5);
        let total: u64 = calls.iter().map(|c| c.load(Ordering::SeqCst)).sum();
        assert_eq!(total, 2 * read, "read {read} asked exactly a quorum");
    }
    // Each provider was among the first two of two of the three reads.
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 2));
    // The fees take the median of every answer: one read asks all three.
    set.fees().await.expect("fees");
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) > 2), "every provider asked for fees");
}

fn chain_cfg_hedged() -> ChainSection {
    section(2, 30_000, 20_000)
}

#[tokio::test]
async fn a_failed_or_disagreeing_provider_is_replaced_at_once_not_after_the_hedge_delay() {
    let chain = FakeChain::new(31337, Address::ZERO, 5);
    let cases: [(&str, DynProvider); 2] = [("down", chain.provider(Behaviour::Down)), ("liar", lying(&chain, 8))];
    for (name, bad) in cases {
        let set = ProviderSet::from_providers(
            vec![bad, chain.provider(Behaviour::Honest), chain.provider(Behaviour::Honest)],
            &chain_cfg_hedged(),
        )
        .expect("quorum");
        // Three reads: the bad provider is first, second and not asked, in turn.
        for _ in 0..3 {
            assert_eq!(balance_within(&set, Duration::from_secs(10)).await, honest(), "{name}");
        }
    }
    let two =
        ProviderSet::from_providers(vec![lying(&chain, 8), chain.provider(Behaviour::Honest)], &chain_cfg_hedged())
            .expect("quorum");
    assert!(matches!(two.balance(Address::ZERO).await, Err(QuorumError::Disagreement { .. })));
    let half = ProviderSet::from_providers(vec![chain.provider(Behaviour::Honest); 2], &section(1, 1000, 0));
    assert!(half.expect_err("one of two").contains("chain.rpc_quorum"), "a quorum of half is refused");
}

#[tokio::test]
async fn a_stalled_provider_holds_a_read_for_the_hedge_delay_and_runs_on_to_its_timeout() {
    let chain = FakeChain::new(31337, Address::ZERO, 5);
    let providers =
        vec![chain.provider(Behaviour::Hang), chain.provider(Behaviour::Honest), chain.provider(Behaviour::Honest)];
    let set = ProviderSet::from_providers(providers, &section(2, 4000, 200)).expect("quorum");
    // The first read asks the hung provider first: the others are asked after 200 ms, long
    // before its 4 s timeout.
    let started = Instant::now();
    assert_eq!(balance_within(&set, Duration::from_millis(3000)).await, honest());
    assert!(started.elapsed() >= Duration::from_millis(200), "the third provider was asked before the hedge delay");
    assert_eq!(breakers(&set), vec!["closed", "closed", "closed"]);
    // Its call ran on after the read returned, timed out, and opened its breaker; then a
    // read refused by it asks the next provider at once.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(breakers(&set), vec!["open", "closed", "closed"]);
    for _ in 0..3 {
        assert_eq!(balance_within(&set, Duration::from_millis(150)).await, honest());
    }
}

#[tokio::test]
async fn a_zero_hedge_delay_asks_every_provider_at_once() {
    let chain = FakeChain::new(31337, Address::ZERO, 5);
    let calls: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
    let set = ProviderSet::from_providers(calls.iter().map(|c| counted(&chain, c)).collect(), &section(2, 1000, 0))
        .expect("quorum");
    set.head().await.expect("head");
    // The third answer may come after the read returned: it still comes.
    tokio::time::timeout(Duration::from_secs(5), async {
        while calls.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every provider asked");
}

#[tokio::test]
async fn a_lying_provider_is_outvoted_whichever_answers_first() {
    let chain = FakeChain::new(31337, Address::ZERO, 5);
    for liar in 0..3 {
        let mut providers: Vec<DynProvider> = (0..2).map(|_| chain.provider(Behaviour::Honest)).collect();
        providers.insert(liar, lying(&chain, 8));
        for hedge in [0, 20_000] {
            let set = ProviderSet::from_providers(providers.clone(), &section(2, 30_000, hedge)).expect("quorum");
            for _ in 0..3 {
                assert_eq!(set.balance(Address::ZERO).await.expect("agreed"), honest(), "liar {liar}");
            }
        }
    }
}

#[test]
fn a_log_counts_only_for_the_blocks_its_filter_names() {
    let log = |number: u64, hash: u8| LogKey {
        tx_hash: B256::ZERO,
        block_number: number,
        block_hash: B256::repeat_byte(hash),
        log_index: 0,
        address: Address::ZERO,
        topics: Vec::new(),
        data: Bytes::new(),
    };
    let by_hash = Filter::new().at_block_hash(B256::repeat_byte(7));
    let range = Filter::new().from_block(10u64).to_block(12u64);
    let table = [
        (&by_hash, log(11, 7), true),
        (&by_hash, log(11, 8), false),
        (&range, log(10, 1), true),
        (&range, log(12, 1), true),
        (&range, log(9, 1), false),
        (&range, log(13, 1), false),
    ];
    for (filter, l, want) in table {
        assert_eq!(within(filter, &l), want, "{:?} under {:?}", (l.block_number, l.block_hash), filter.block_option);
    }
}

#[tokio::test]
async fn an_answer_with_a_log_of_another_block_is_no_vote() {
    let chain = FakeChain::new(31337, Address::ZERO, 5);
    let at = chain.mine_logs(vec![(
        Address::repeat_byte(1),
        alloy::primitives::LogData::new_unchecked(vec![], Bytes::new()),
        B256::repeat_byte(9),
    )]);
    let hash = chain.hash(at).expect("mined");
    // One provider names the block asked for by hash, but its log another block's hash.
    let liar = chain.provider(Behaviour::Tamper(Arc::new(|method, answer| {
        if method == "eth_getLogs"
            && let Some(list) = answer.as_array_mut()
        {
            for l in list {
                l["blockHash"] = serde_json::json!(B256::repeat_byte(0x66));
            }
        }
    })));
    let honest = || chain.provider(Behaviour::Honest);
    let set = ProviderSet::from_providers(vec![liar, honest(), honest()], &section(2, 300, 0)).expect("set");
    let vote = set.logs(&Filter::new().at_block_hash(hash)).await.expect("a quorum of the honest two");
    assert_eq!(vote.accepted.len(), 1, "the block's log, as the honest providers show it");
    assert!(vote.accepted.iter().all(|l| l.block_hash == hash));
    assert!(vote.rejected.is_empty(), "the liar's answer was not a vote: {:?}", vote.rejected);
}
