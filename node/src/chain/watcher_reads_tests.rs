//! What a watcher step reads: a one-block step reads its block once (its parent hash checks the
//! checkpoint) and asks for its logs by the block's hash; a reorg of the checkpoint is still
//! found by that step, and a block naming another parent while the checkpoint stands is read
//! again.

use super::fake::{Behaviour, FakeChain};
use super::watcher::{Step, WatchError};
use super::watcher_tests::{SETTLEMENT, blocks_of, drain, honest, paid, pay_and_confirm, watcher};
use crate::store::temp_store;
use alloy::primitives::B256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Providers that count the requests of each method, and (while `skew` is set) answer every
/// block with another parent hash.
fn counting(k: usize, calls: &Arc<Mutex<HashMap<String, usize>>>, skew: &Arc<AtomicBool>) -> Vec<Behaviour> {
    (0..k)
        .map(|_| {
            let (calls, skew) = (calls.clone(), skew.clone());
            Behaviour::Tamper(Arc::new(move |method, answer| {
                *calls.lock().expect("calls").entry(method.to_string()).or_default() += 1;
                if method == "eth_getBlockByNumber" && skew.load(Ordering::Relaxed) {
                    answer["parentHash"] = serde_json::json!(B256::repeat_byte(0x77));
                }
            }))
        })
        .collect()
}

fn count(calls: &Arc<Mutex<HashMap<String, usize>>>, method: &str) -> usize {
    calls.lock().expect("calls").get(method).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_one_block_step_reads_its_block_once_and_its_logs_by_hash() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let calls = Arc::default();
    let w = watcher(&chain, counting(3, &calls, &Arc::default()), &store);
    drain(&w).await;
    // The payment's block is confirmed two blocks later; each block mined is one step.
    let at = chain.mine_logs(vec![paid(2)]);
    for head in at..=at + 2 {
        chain.mine_to(head);
        calls.lock().expect("calls").clear();
        let step = w.step().await.expect("step");
        let to = head - 2;
        assert!(matches!(step, Step::Advanced { from, to: t, .. } if from == to && t == to), "{step:?}");
    }
    assert_eq!(blocks_of(&store, 2), vec![at], "the payment is stored");
    // The last step, of the payment's block: one quorum read (two of three providers) of the
    // block and of its logs; neither the checkpoint block, nor the block again after the logs,
    // nor the block holding the logs.
    assert_eq!(count(&calls, "eth_getBlockByNumber"), 2, "{:?}", calls.lock().expect("calls"));
    assert_eq!(count(&calls, "eth_getLogs"), 2, "{:?}", calls.lock().expect("calls"));
}

#[tokio::test]
async fn a_reorg_of_the_checkpoint_is_found_by_the_next_blocks_parent() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let w = watcher(&chain, honest(3), &store);
    let at = pay_and_confirm(&chain, &w).await;
    let cp = store.checkpoint().expect("read").expect("checkpoint");
    // The blocks from the payment's on are replaced (the checkpoint's among them), and one more
    // block makes the next step a one-block step right after the last check.
    chain.fork_from(at);
    chain.mine_to(chain.head() + 1);
    let step = w.step().await.expect("step");
    assert!(matches!(step, Step::Rewound { ancestor: Some(a), .. } if a == at - 1), "not past {cp}: {step:?}");
    drain(&w).await;
    assert!(blocks_of(&store, 1).is_empty(), "the payment left with its block");
}

#[tokio::test]
async fn a_block_naming_another_parent_while_the_checkpoint_stands_is_read_again() {
    let chain = FakeChain::new(31337, SETTLEMENT, 10);
    let (_dir, store) = temp_store();
    let skew = Arc::new(AtomicBool::new(false));
    let w = watcher(&chain, counting(3, &Arc::default(), &skew), &store);
    drain(&w).await;
    let cp = store.checkpoint().expect("read");
    chain.mine_to(chain.head() + 1);
    skew.store(true, Ordering::Relaxed);
    let err = w.step().await.expect_err("a block of another fork than the checkpoint's");
    assert!(matches!(err, WatchError::ParentMismatch { .. }), "{err}");
    assert_eq!(store.checkpoint().expect("read"), cp, "nothing applied");
    skew.store(false, Ordering::Relaxed);
    assert!(matches!(w.step().await.expect("step"), Step::Advanced { .. }), "read again, it follows the checkpoint");
}
