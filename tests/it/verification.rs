//! Payment verification under bad providers, reorgs and crashes: each failure is injected for
//! real (fault-injecting proxies in front of anvil, `anvil_reorg`, SIGKILL).

use crate::harness::{Options, Testnet};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::{InvoicePayments, Settlement};
use settleproof_rpc_proxy::Fault;
use std::collections::HashSet;
use std::time::Duration;

const WEI: &str = "1000000000000000";

/// Creates a native invoice of `amount` on node `i`, pays it in full, returns its id.
async fn invoice_paid(net: &Testnet, i: usize, amount: &str) -> Result<String> {
    let (status, created) = net.create_invoice(i, json!({"amount": amount, "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    net.pay(&created).await?;
    Ok(created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string())
}

/// Waits for a verified webhook about `invoice` and returns its body.
async fn webhook_for(net: &Testnet, invoice: &str, within: Duration) -> Result<Value> {
    net.webhook_for(invoice, within).await
}

/// Every `Settled` event so far: (round, leaf count, signer bitmap).
async fn settled(net: &Testnet) -> Result<Vec<(u64, u32, U256)>> {
    Ok(net.settlements().await?.into_iter().map(|e| (e.round, e.leafCount, e.signerBitmap)).collect())
}

async fn metric(net: &Testnet, i: usize, name: &str) -> f64 {
    net.metric(i, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_forged_by_one_provider_is_never_attested() -> Result<()> {
    let net = Testnet::start_with(Options { providers: 3, ..Options::default() }).await?;
    let head = net.provider()?.get_block_number().await?;
    let forged_block = head + 3;
    let fake_invoice = B256::repeat_byte(0xfe);
    let event = InvoicePayments::InvoicePaid {
        invoiceId: fake_invoice,
        merchant: net.devnet.merchant.payout_address,
        payer: net.anvil.keys[1].address(),
        token: alloy::primitives::Address::ZERO,
        amount: U256::from(10u64).pow(U256::from(21u64)),
    };
    let data = event.encode_log_data();
    let forged = json!({
        "address": net.devnet.deployment.payments,
        "topics": data.topics(),
        "data": data.data,
        "blockNumber": format!("{forged_block:#x}"),
        "blockHash": B256::repeat_byte(0xab),
        "transactionHash": B256::repeat_byte(0xcd),
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": false,
    });
    for i in 0..4 {
        net.fault(i, 0, Fault::ForgeLog { log: forged.clone() });
    }
    let real = invoice_paid(&net, 1, WEI).await?;
    webhook_for(&net, &real, Duration::from_secs(60)).await?;
    // Let every node process well past the forged block's round.
    net.eventually("checkpoints past the forged block", Duration::from_secs(30), || async {
        for i in 0..4 {
            let cp = net.health(i).await?["chains"][0]["checks"]["chain"]["checkpoint"].as_u64()?;
            if cp < forged_block + 4 {
                return None;
            }
        }
        Some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaves: u32 = settled(&net).await?.iter().map(|(_, n, _)| n).sum();
    assert_eq!(leaves, 1, "only the real payment was settled");
    assert!(
        !net.receiver.snapshot().iter().any(|r| r.body.to_string().contains(&fake_invoice.to_string())),
        "no webhook for the forged payment"
    );
    // Each read asks two of the three providers first, in rotation: a node may never have asked
    // the forger for that block, but not every node.
    let mut seen = 0.0;
    for i in 0..4 {
        seen += metric(&net, i, "rpc_log_disagreements_total").await;
    }
    assert!(seen >= 1.0, "the forged log was seen and outvoted");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_settle_with_one_provider_down_and_another_slow() -> Result<()> {
    let net = Testnet::start_with(Options { providers: 3, ..Options::default() }).await?;
    for i in 0..4 {
        net.fault(i, 0, Fault::Down);
        net.fault(i, 1, Fault::Delay { ms: 400 });
    }
    let id = invoice_paid(&net, 2, WEI).await?;
    let body = webhook_for(&net, &id, Duration::from_secs(60)).await?;
    assert_eq!(body["type"], "invoice.paid");
    let health = net
        .eventually("provider reported degraded", Duration::from_secs(20), || async {
            let h = net.health(0).await?;
            (h["chains"][0]["checks"]["providers"]["status"] == "degraded").then_some(h)
        })
        .await?;
    assert_eq!(health["status"], "degraded", "one provider down is degraded, not unready: {health}");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_providers_down_stop_a_node_attesting_until_they_recover() -> Result<()> {
    let net = Testnet::start_with(Options { providers: 3, ..Options::default() }).await?;
    net.fault(3, 0, Fault::Down);
    net.fault(3, 1, Fault::Error);
    let h = net
        .eventually("node 3 not ready", Duration::from_secs(20), || async {
            let h = net.health(3).await?;
            (h["status"] == "not_ready").then_some(h)
        })
        .await?;
    assert_eq!(h["chains"][0]["checks"]["chain"]["status"], "failing", "{h}");
    let stuck_at = h["chains"][0]["checks"]["chain"]["checkpoint"].as_u64();
    let id = invoice_paid(&net, 0, WEI).await?;
    // Nodes 0-2 are a quorum of 3; unless node 3 keeps this round, it settles without node 3.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (round, _, bitmap) in settled(&net).await? {
        assert!(!bitmap.bit(3), "node 3 attested round {round} without a provider quorum");
    }
    let h = net.health(3).await.ok_or_else(|| eyre!("health"))?;
    assert_eq!(
        h["chains"][0]["checks"]["chain"]["checkpoint"].as_u64(),
        stuck_at,
        "node 3 did not move its checkpoint"
    );
    net.fault(3, 0, Fault::None);
    net.fault(3, 1, Fault::None);
    net.wait_ready(3).await?;
    webhook_for(&net, &id, Duration::from_secs(60)).await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reorged_payment_is_dropped_and_its_replacement_settled() -> Result<()> {
    let net = Testnet::start_with(Options { nodes: 4, round_length: 40, ..Options::default() }).await?;
    let (status, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    assert_eq!(status, 201);
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    net.pay(&created).await?;
    let first = net
        .eventually("payment confirmed on every node", Duration::from_secs(20), || async {
            let mut tx = None;
            for i in 0..4 {
                let (_, v) = net.get_invoice(i, &id).await.ok()?;
                tx = Some(v["payments"][0]["tx_hash"].as_str()?.to_string());
            }
            tx
        })
        .await?;
    let receipt = net.provider()?.get_transaction_receipt(first.parse()?).await?.ok_or_else(|| eyre!("receipt"))?;
    let paid_in = receipt.block_number.ok_or_else(|| eyre!("block"))?;
    let head = net.provider()?.get_block_number().await?;
    let depth = head - paid_in + 1;
    let _: Value = net.provider()?.raw_request("anvil_reorg".into(), (depth, Vec::<Value>::new())).await?;
    // The payer pays again on the new chain.
    net.pay(&created).await?;
    let body = webhook_for(&net, &id, Duration::from_secs(90)).await?;
    let settled_tx = body["data"]["payment"]["tx_hash"].as_str().unwrap_or_default().to_string();
    assert_ne!(settled_tx, first, "the payment that left the chain is not the one settled");
    for i in 0..4 {
        let (_, v) = net.get_invoice(i, &id).await?;
        let txs: Vec<&str> = v["payments"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["tx_hash"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(txs, vec![settled_tx.as_str()], "node {i} keeps only the replacement");
    }
    assert!(metric(&net, 0, "chain_reorgs_total").await >= 1.0, "the reorg was detected");
    net.stop().await;
    Ok(())
}

/// A round signed by every node but not settled yet (no keeper can pay for gas) loses one of
/// its two payments to a reorg deeper than the confirmation depth. Every node builds the round
/// again on the new chain, signs it again (the batch names another hash of the round's last
/// block, so the guard allows it) and the round settles with the payment that stayed; the
/// batch of the old chain is never settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_round_a_deep_reorg_changes_is_signed_again_and_settles_on_the_new_chain() -> Result<()> {
    let net = Testnet::start_with(Options { round_length: 12, confirmations: 2, ..Options::default() }).await?;
    let provider = net.provider()?;
    let cfg = &net.devnet.nodes[0].1;
    let (start, length) = (cfg.chains[0].start_block, cfg.rounds.length_blocks);
    let keepers: Vec<Address> = cfg.network.operators.iter().map(|o| o.evm_address).collect();
    let fund = |wei: u128| {
        let provider = provider.clone();
        let keepers = keepers.clone();
        async move {
            for k in keepers {
                let _: Value = provider.raw_request("anvil_setBalance".into(), (k, U256::from(wei))).await?;
            }
            eyre::Ok(())
        }
    };
    fund(0).await?;
    let mut invoices = Vec::new();
    for i in 0..2 {
        let (status, created) = net.create_invoice(i, json!({"amount": WEI, "token": "native"})).await?;
        assert_eq!(status, 201, "{created}");
        invoices.push(created);
    }
    // Both payments in one round: start at its first blocks.
    net.eventually("the first blocks of a round", Duration::from_secs(30), || async {
        let next = provider.get_block_number().await.ok()? + 1;
        ((next - start) % length <= 1).then_some(())
    })
    .await?;
    let kept_in = net.pay(&invoices[0]).await?;
    let reorged_in = net.pay(&invoices[1]).await?;
    let round = (kept_in - start) / length;
    assert!(reorged_in > kept_in, "the second payment is in a later block");
    assert_eq!((reorged_in - start) / length, round, "both payments in round {round}");
    // In-process nodes share one metrics registry: the counters below add up all four nodes,
    // each of which signs a round at most once per chain.
    net.eventually("every node signed the round", Duration::from_secs(60), || async {
        (net.metric(0, "batches_signed_total").await >= 4.0).then_some(())
    })
    .await?;
    let settlement = Settlement::new(net.devnet.deployment.settlement, provider.clone());
    assert!(settlement.settledRoot(round).call().await?.is_zero(), "no keeper could pay: unsettled");

    // The reorg takes the second payment's block and every block after it.
    let depth = provider.get_block_number().await? - reorged_in + 1;
    assert!(depth > cfg.chains[0].confirmations, "deeper than the confirmation depth");
    let _: Value = provider.raw_request("anvil_reorg".into(), (depth, Vec::<Value>::new())).await?;
    net.eventually("every node signed the round again on the new chain", Duration::from_secs(60), || async {
        (net.metric(0, "rounds_signed_again_total").await >= 4.0).then_some(())
    })
    .await?;
    fund(10u128.pow(19)).await?;

    let kept = invoices[0]["id"].as_str().ok_or_else(|| eyre!("no id"))?;
    let body = webhook_for(&net, kept, Duration::from_secs(90)).await?;
    let failed = net.receipt_failures(&body).await?;
    assert!(failed.is_empty(), "the receipt checks out on the new chain: {failed:?}");
    let batch = &body["data"]["receipt"]["batch"];
    assert_eq!((batch["round"].as_u64(), batch["leaf_count"].as_u64()), (Some(round), Some(1)), "{body}");
    let (_, to) = (start + round * length, start + round * length + length - 1);
    let hash = provider.get_block_by_number(to.into()).await?.map(|b| b.header.hash).unwrap_or_default();
    assert_eq!(batch["to_block_hash"].as_str(), Some(hash.to_string().as_str()), "built on the new chain");
    // A receipt of the batch signed on the old chain fails against this one.
    let mut stale = body.clone();
    stale["data"]["receipt"]["batch"]["to_block_hash"] = json!(B256::repeat_byte(0x99));
    let failed = net.receipt_failures(&stale).await?;
    assert!(failed.iter().any(|f| f.starts_with("batch_on_this_chain")), "{failed:?}");
    let events: Vec<(u64, u32, U256)> = settled(&net).await?.into_iter().filter(|(r, _, _)| *r == round).collect();
    assert_eq!(events.len(), 1, "settled once, with the payment that stayed: {events:?}");
    assert_eq!(events[0].1, 1);
    let gone = invoices[1]["id"].as_str().ok_or_else(|| eyre!("no id"))?;
    for i in 0..4 {
        let (_, v) = net.get_invoice(i, gone).await?;
        assert_eq!(v["payments"].as_array().map(Vec::len), Some(0), "node {i}: the payment left the chain");
    }
    assert_eq!(net.metric(0, "invariant_violations_total").await, 0.0, "no node refused to sign or halted");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_range_settles_every_payment_exactly_once() -> Result<()> {
    let mut net = Testnet::start_with(Options { processes: true, ..Options::default() }).await?;
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(invoice_paid(&net, k % 4, WEI).await?);
    }
    net.kill9(1)?;
    for k in 0..3 {
        ids.push(invoice_paid(&net, [0, 2, 3][k], WEI).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.restart(1)?;
    net.wait_ready(1).await?;
    for k in 0..2 {
        ids.push(invoice_paid(&net, [1, 3][k], WEI).await?);
    }
    for id in &ids {
        webhook_for(&net, id, Duration::from_secs(90)).await?;
    }
    let leaves: u32 = settled(&net).await?.iter().map(|(_, n, _)| n).sum();
    assert_eq!(leaves as usize, ids.len(), "every payment settled exactly once on chain");
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let delivered: HashSet<String> = net
        .receiver
        .snapshot()
        .into_iter()
        .filter(|r| wanted.contains(r.body["data"]["invoice"]["id"].as_str().unwrap_or_default()))
        .map(|r| r.webhook_id)
        .collect();
    assert_eq!(delivered.len(), ids.len(), "one event (webhook-id) per payment");
    // An invoice announced while node 1 was down reaches it with its creator's resends (the
    // last 32 s after the first send), or when it is fetched for a payment.
    for (k, id) in ids.iter().enumerate() {
        let (status, v) = net
            .eventually("the restarted node knows the invoice", Duration::from_secs(45), || async {
                let (status, v) = net.get_invoice(1, id).await.ok()?;
                (status == 200).then_some((status, v))
            })
            .await?;
        assert_eq!(
            v["payments"].as_array().map(Vec::len),
            Some(1),
            "the restarted node saw {id} (#{k}) exactly once: {status} {v}"
        );
    }
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notified_payment_that_leaves_the_chain_is_reported_reverted() -> Result<()> {
    let net = Testnet::start(4).await?;
    let (status, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    assert_eq!(status, 201);
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    net.pay(&created).await?;
    let told = webhook_for(&net, &id, Duration::from_secs(60)).await?;
    let tx: B256 = told["data"]["payment"]["tx_hash"].as_str().unwrap_or_default().parse()?;
    let provider = net.provider()?;
    let paid_in =
        provider.get_transaction_receipt(tx).await?.and_then(|r| r.block_number).ok_or_else(|| eyre!("block"))?;
    let depth = provider.get_block_number().await? - paid_in + 1;
    let _: Value = provider.raw_request("anvil_reorg".into(), (depth, Vec::<Value>::new())).await?;
    let reverted = net
        .eventually("payment.reverted webhook", Duration::from_secs(60), || async {
            net.receiver
                .snapshot()
                .into_iter()
                .find(|r| r.body["type"] == "payment.reverted" && r.body["data"]["invoice"]["id"] == id.as_str())
        })
        .await?;
    assert_eq!(reverted.body["data"]["reverted_webhook_id"], told["data"]["webhook_id"]);
    assert!(reverted.verified);
    net.stop().await;
    Ok(())
}

/// After a reorg deeper than the confirmation depth, before the watcher rewinds, a node's store
/// still holds the old fork's payments of a settled round. The auditor must not compare them
/// with the new fork's (every node would halt at once): it leaves the round to the rewind while
/// the chain no longer has the block the store kept as the round's end. Here the store holds a
/// settled round of 1,000 wei paid in blocks that the (real) chain shows with other hashes and
/// no payment at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_whose_blocks_a_deep_reorg_replaced_is_not_audited_against_the_new_fork() -> Result<()> {
    use settleproof_node::store::{PaymentRecord, SettlementRecord, Store, StoredBlock};
    let dir = tempfile::tempdir()?;
    let anvil = crate::harness::Anvil::start(dir.path(), None).await?;
    let p = settleproof_tests::sets::provider(&anvil, &anvil.keys[0])?;
    p.raw_request::<_, Value>("anvil_mine".into(), (U256::from(20),)).await?;
    let schedule = settleproof_consensus::RoundSchedule { start_block: 0, length: 5 };
    let (round, (from, to)) = (1, schedule.range(1).ok_or_else(|| eyre!("range"))?);
    // The old fork as the store kept it: a payment in the round, the round's end, its settlement.
    let old_hash = |n: u64| alloy::primitives::keccak256(format!("old fork block {n}"));
    let leaf = settleproof_consensus::PaymentLeaf {
        chain_id: anvil_chain_id(&p).await?,
        tx_hash: B256::repeat_byte(1),
        log_index: 0,
        block_number: from + 1,
        invoice_id: B256::repeat_byte(2),
        merchant: Address::repeat_byte(3),
        payer: Address::repeat_byte(4),
        token: Address::ZERO,
        amount: U256::from(1000u64),
    };
    let root = settleproof_consensus::Batch::build(0, round, (from, to), B256::ZERO, &mut [leaf.clone()])
        .ok_or_else(|| eyre!("batch"))?
        .root;
    let store = Store::open(&dir.path().join("settleproof.redb"))?;
    let payment = PaymentRecord { leaf, block_hash: old_hash(from + 1), block_timestamp: 1, confirmed_at_ms: 1 };
    let settled = SettlementRecord {
        round,
        root,
        block_number: to + 2,
        from_block: from,
        to_block: to,
        to_block_hash: old_hash(to),
        leaf_count: 1,
        ..SettlementRecord::default()
    };
    let blocks: Vec<StoredBlock> =
        (from..=to + 2).map(|n| StoredBlock { number: n, hash: old_hash(n), timestamp: 1 }).collect();
    let tip = blocks.last().cloned().ok_or_else(|| eyre!("blocks"))?;
    store.apply_range(tip, &[payment], &[settled], &blocks)?;

    let mut cfg = settleproof_config::NodeConfig::from_toml_str(settleproof_config::EXAMPLE, std::iter::empty())?
        .chains
        .remove(0);
    (cfg.chain_id, cfg.rpc_endpoints, cfg.rpc_quorum) = (anvil_chain_id(&p).await?, vec![anvil.url.clone()], 1);
    let chain = settleproof_node::chain::ChainClient::new(&cfg, Address::ZERO, &reqwest::Client::new())?;
    let halt = settleproof_node::halt::Halt::load(store.clone(), cfg.chain_id)?;
    let auditor = settleproof_node::invariants::Auditor {
        store: store.clone(),
        chain,
        schedule,
        halt: halt.clone(),
        interval: Duration::from_millis(100),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(auditor.run(stopped));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(true);
    running.await?;
    assert!(!halt.is_halted(), "halted on the old fork's payments: {:?}", halt.reason());
    Ok(())
}

async fn anvil_chain_id(p: &alloy::providers::DynProvider) -> Result<u64> {
    Ok(p.get_chain_id().await?)
}
