//! The keeper's sender over an in-process chain: replacement with the same nonce and higher
//! fees, giving up after the last replacement, a round settled by another keeper, a nonce used
//! elsewhere (halt) and a nonce a reorg dropped (adopted).

use super::fake::{Behaviour, FakeChain, Sent};
use super::providers::ProviderSet;
use super::sender::{SettleOutcome, SettlementSender, TxPolicy};
use super::{ChainClient, ChainError, SettleCall};
use crate::halt::Halt;
use crate::store::temp_store;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use settleproof_config::{ChainSection, EXAMPLE, NodeConfig};
use settleproof_consensus::Batch;
use std::time::Duration;

const SETTLEMENT: Address = Address::repeat_byte(0xbb);

fn cfg() -> ChainSection {
    let mut cfg = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example").chains.remove(0);
    cfg.rpc_quorum = 2;
    cfg.rpc_timeout_ms = 2000;
    cfg.rpc_retries = 0;
    cfg.settlement_contract = SETTLEMENT;
    cfg
}

fn policy() -> TxPolicy {
    TxPolicy {
        inclusion_timeout: Duration::from_millis(800),
        max_replacements: 2,
        fee_bump_pct: 25,
        ..TxPolicy::default()
    }
}

fn sender(chain: &FakeChain, signer: &PrivateKeySigner, halt: Option<Halt>) -> SettlementSender {
    sender_with(chain, signer, policy(), halt)
}

fn sender_with(chain: &FakeChain, signer: &PrivateKeySigner, policy: TxPolicy, halt: Option<Halt>) -> SettlementSender {
    let cfg = cfg();
    let readers = (0..3).map(|_| chain.provider(Behaviour::Honest)).collect();
    let reads = ProviderSet::from_providers(readers, &cfg).expect("quorum");
    let client = ChainClient::over(reads, &cfg, signer.address());
    let writers = (0..3).map(|_| chain.writer(signer.clone())).collect();
    SettlementSender::with_writers(writers, signer.address(), policy, client, halt).expect("writers")
}

/// A sender whose invariant violations pull a halt of its own (kept in a temporary store).
fn halting_sender(chain: &FakeChain, signer: &PrivateKeySigner) -> (tempfile::TempDir, Halt, SettlementSender) {
    let (dir, store) = temp_store();
    let halt = Halt::load(store, 31337).expect("halt");
    let s = sender(chain, signer, Some(halt.clone()));
    (dir, halt, s)
}

fn call(round: u64) -> SettleCall {
    SettleCall {
        batch: Batch {
            epoch: 0,
            round,
            from_block: round * 10,
            to_block: round * 10 + 9,
            to_block_hash: B256::repeat_byte(7),
            root: B256::repeat_byte(round as u8 + 1),
            leaf_count: 1,
        },
        signer_bitmap: U256::from(7),
        signer_keys: Bytes::new(),
        signature: Bytes::from(vec![1u8; 128]),
    }
}

fn settled(outcome: SettleOutcome) -> crate::store::SettlementRecord {
    match outcome {
        SettleOutcome::Settled(record) => *record,
        other => panic!("expected our settlement, got {other:?}"),
    }
}

/// Each fee of `next` is at least `pct` percent above `prev`'s, with the same nonce.
fn bumped(prev: &Sent, next: &Sent, pct: u128) -> bool {
    next.nonce == prev.nonce
        && next.max_fee >= prev.max_fee * (100 + pct) / 100
        && next.tip >= prev.tip * (100 + pct) / 100
}

#[tokio::test]
async fn a_settlement_not_mined_in_time_is_replaced_with_the_same_nonce_and_higher_fees() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    chain.mine_from_send(1);
    let record = settled(sender(&chain, &signer, None).settle(&call(1)).await.expect("settled"));
    let sent = chain.sent();
    assert_eq!(sent.len(), 2, "the first stayed in the pool, its replacement was mined");
    assert!(bumped(&sent[0], &sent[1], 25), "{sent:?}");
    assert_eq!(record.tx_hash, sent[1].hash);
    assert_eq!(record.root, call(1).batch.root);
    assert!(record.provisional, "until the watcher sees its event");
}

#[tokio::test]
async fn a_settlement_never_mined_gives_up_after_the_last_replacement() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    chain.mine_from_send(usize::MAX);
    let err = sender(&chain, &signer, None).settle(&call(1)).await.expect_err("never mined");
    assert!(matches!(err, ChainError::NotMined(3)), "{err}");
    let sent = chain.sent();
    assert_eq!(sent.len(), 3);
    assert!(bumped(&sent[0], &sent[1], 25) && bumped(&sent[1], &sent[2], 25), "{sent:?}");
}

#[tokio::test]
async fn the_fee_cap_holds_through_replacements() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    chain.mine_from_send(usize::MAX);
    let cap = super::fake::BASE_FEE * 2;
    let s = sender_with(&chain, &signer, TxPolicy { max_fee_per_gas: Some(cap), ..policy() }, None);
    assert!(s.settle(&call(1)).await.is_err());
    assert!(chain.sent().iter().all(|t| t.max_fee <= cap && t.tip <= t.max_fee), "{:?}", chain.sent());
}

#[tokio::test]
async fn a_round_another_keeper_settled_costs_nothing() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    chain.settle(1, B256::repeat_byte(0x55));
    let outcome = sender(&chain, &signer, None).settle(&call(1)).await.expect("outcome");
    assert_eq!(outcome, SettleOutcome::SettledByOther);
    assert!(chain.sent().is_empty(), "the simulation reverted: nothing sent, nothing paid");
}

#[tokio::test]
async fn a_nonce_used_elsewhere_halts_settlement() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    let (_dir, halt, s) = halting_sender(&chain, &signer);
    settled(s.settle(&call(1)).await.expect("first"));
    // The settlement key signs a transaction somewhere else.
    chain.use_nonce(signer.address());
    let err = s.settle(&call(2)).await.expect_err("halted");
    assert!(matches!(err, ChainError::Halted(_)), "{err}");
    assert_eq!(halt.reason().map(|r| r.invariant), Some("keeper_nonce_desync".to_string()));
    assert_eq!(chain.sent().len(), 1, "nothing sent after the desync");
}

#[tokio::test]
async fn a_nonce_a_reorg_dropped_is_adopted_without_a_halt() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    let (_dir, halt, s) = halting_sender(&chain, &signer);
    settled(s.settle(&call(1)).await.expect("first"));
    // A reorg took the first settlement out: the chain counts one transaction less.
    chain.set_nonce(signer.address(), 0);
    settled(s.settle(&call(2)).await.expect("second"));
    assert!(!halt.is_halted());
    assert_eq!(chain.sent().iter().map(|t| t.nonce).collect::<Vec<_>>(), vec![0, 0]);
}

/// A sender whose writers behave as `writer` says (its readers are honest).
fn sender_writing(chain: &FakeChain, signer: &PrivateKeySigner, writer: Behaviour) -> SettlementSender {
    sender_over(chain, signer, [writer.clone(), writer.clone(), writer])
}

/// A sender whose writers behave as `writers` say, the first the one it writes through.
fn sender_over(chain: &FakeChain, signer: &PrivateKeySigner, writers: [Behaviour; 3]) -> SettlementSender {
    let cfg = cfg();
    let readers = (0..3).map(|_| chain.provider(Behaviour::Honest)).collect();
    let reads = ProviderSet::from_providers(readers, &cfg).expect("quorum");
    let client = ChainClient::over(reads, &cfg, signer.address());
    let writers = writers.into_iter().map(|w| chain.writer_with(signer.clone(), w)).collect();
    SettlementSender::with_writers(writers, signer.address(), policy(), client, None).expect("writers")
}

/// A writer whose receipts `change` alters.
fn tampered_receipts(change: fn(&mut serde_json::Value)) -> Behaviour {
    Behaviour::Tamper(std::sync::Arc::new(move |method: &str, answer: &mut serde_json::Value| {
        if method == "eth_getTransactionReceipt" && !answer.is_null() {
            change(answer);
        }
    }))
}

#[tokio::test]
async fn a_receipt_the_writer_shows_late_is_found_without_a_replacement() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    let hidden = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = hidden.clone();
    let writer = Behaviour::Tamper(std::sync::Arc::new(move |method: &str, answer: &mut serde_json::Value| {
        if method == "eth_getTransactionReceipt" && flag.load(std::sync::atomic::Ordering::SeqCst) {
            *answer = serde_json::Value::Null;
        }
    }));
    let s = sender_writing(&chain, &signer, writer);
    let show = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        hidden.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    let record = settled(s.settle(&call(1)).await.expect("settled"));
    show.await.expect("shown");
    assert_eq!(chain.sent().len(), 1, "found by a later read, not replaced");
    assert_eq!(record.tx_hash, chain.sent()[0].hash);
}

#[tokio::test]
async fn a_writer_that_never_answers_for_receipts_cannot_hold_the_keeper() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    let writer = Behaviour::HangIf(std::sync::Arc::new(|method: &str, _: &serde_json::Value| {
        method == "eth_getTransactionReceipt"
    }));
    let s = sender_writing(&chain, &signer, writer);
    let outcome = tokio::time::timeout(Duration::from_secs(10), s.settle(&call(1)))
        .await
        .expect("the wait ends at its deadline")
        .expect("outcome");
    // The quorum shows the round settled: nothing is sent again.
    assert_eq!(outcome, SettleOutcome::SettledByOther);
    assert_eq!(chain.sent().len(), 1);
}

#[tokio::test]
async fn a_receipt_naming_another_transaction_or_no_block_is_no_receipt() {
    for change in [
        (|r: &mut serde_json::Value| r["transactionHash"] = serde_json::json!(B256::repeat_byte(9)))
            as fn(&mut serde_json::Value),
        |r: &mut serde_json::Value| r["blockNumber"] = serde_json::Value::Null,
    ] {
        let chain = FakeChain::new(31337, SETTLEMENT, 20);
        let signer = PrivateKeySigner::random();
        let outcome = sender_writing(&chain, &signer, tampered_receipts(change)).settle(&call(1)).await;
        assert_eq!(outcome.expect("outcome"), SettleOutcome::SettledByOther, "the writer's receipt was believed");
    }
}

#[tokio::test]
async fn a_failed_receipt_for_a_round_the_quorum_shows_settled_is_not_a_revert() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    let writer = tampered_receipts(|r| r["status"] = serde_json::json!("0x0"));
    let outcome = sender_writing(&chain, &signer, writer).settle(&call(1)).await.expect("not a revert");
    assert_eq!(outcome, SettleOutcome::SettledByOther);
}

#[tokio::test]
async fn the_original_mined_while_its_replacement_waits_is_found() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    chain.mine_from_send(usize::MAX);
    let s = sender(&chain, &signer, None);
    let miner = chain.clone();
    let mine_original = tokio::spawn(async move {
        // After the first wait (800 ms) ended and the replacement went out.
        while miner.sent().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let original = miner.sent()[0].hash;
        assert!(miner.mine_pooled(original));
        original
    });
    let record = settled(s.settle(&call(1)).await.expect("settled"));
    let original = mine_original.await.expect("mined");
    assert_eq!(record.tx_hash, original, "the replaced transaction is the one mined");
    assert_eq!(chain.sent().len(), 2, "no third send");
}

#[tokio::test]
async fn a_writer_that_accepts_and_never_broadcasts_cannot_keep_the_settlement_off_the_chain() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    let s = sender_over(&chain, &signer, [Behaviour::Swallow, Behaviour::Honest, Behaviour::Honest]);
    let record = settled(s.settle(&call(1)).await.expect("settled through the other endpoints"));
    assert_eq!(chain.sent().len(), 1, "one transaction, sent through every endpoint");
    assert_eq!(record.tx_hash, chain.sent()[0].hash);
}

#[tokio::test]
async fn our_settlement_whose_receipt_came_after_the_wait_is_recorded_as_ours() {
    let chain = FakeChain::new(31337, SETTLEMENT, 20);
    let signer = PrivateKeySigner::random();
    // The two reads of the wait (at 0 and at its 800 ms deadline) find nothing; the next shows it.
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = reads.clone();
    let writer = Behaviour::Tamper(std::sync::Arc::new(move |method: &str, answer: &mut serde_json::Value| {
        if method == "eth_getTransactionReceipt" && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            *answer = serde_json::Value::Null;
        }
    }));
    let s = sender_writing(&chain, &signer, writer).polling_receipts_every(Duration::from_secs(10));
    let record = settled(s.settle(&call(1)).await.expect("settled"));
    assert_eq!(record.tx_hash, chain.sent()[0].hash, "ours, not another keeper's");
    assert_eq!(chain.sent().len(), 1, "the quorum showed our root: nothing replaced");
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
}
