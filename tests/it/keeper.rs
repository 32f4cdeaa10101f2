//! Settlement that no single node can stop: a dead keeper is replaced, an operator signing
//! another root is outvoted, and a partition without a quorum halts settlement until healed,
//! never settling a round twice.

use crate::harness::{NodeRun, Options, Testnet};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::{InvoicePayments, Settlement};
use settleproof_rpc_proxy::Fault;
use std::time::Duration;

const WEI: &str = "1000000000000000";

/// Creates and pays a native invoice on node `i`; returns (invoice id, block of the payment).
async fn pay(net: &Testnet, i: usize) -> Result<(String, u64)> {
    let (status, created) = net.create_invoice(i, json!({"amount": WEI, "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    net.pay(&created).await?;
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    let block = net.provider()?.get_block_number().await?;
    Ok((id, block))
}

fn round_of(net: &Testnet, block: u64) -> u64 {
    let cfg = &net.devnet.nodes[0].1;
    (block - cfg.chains[0].start_block) / cfg.rounds.length_blocks
}

/// Every `Settled` event of `round`: (signer bitmap, leaf count, submitter).
async fn settled(net: &Testnet, round: u64) -> Result<Vec<(U256, u32, Address)>> {
    Ok(net
        .settlements()
        .await?
        .into_iter()
        .filter(|e| e.round == round)
        .map(|e| (e.signerBitmap, e.leafCount, e.submitter))
        .collect())
}

async fn webhook_for(net: &Testnet, invoice: &str, within: Duration) -> Result<Value> {
    net.webhook_for(invoice, within).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keeper_killed_before_aggregating_is_replaced_and_the_round_settles_once() -> Result<()> {
    let mut net = Testnet::start_with(Options { processes: true, round_length: 3, ..Options::default() }).await?;
    let (status, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    // The invoice reaches every node before it is paid (invoices are announced once a second):
    // a creator killed before that would hold it alone until it is back, and this test is
    // about the keeper.
    for i in 0..4 {
        net.eventually("the invoice is replicated", Duration::from_secs(15), || async {
            (net.get_invoice(i, &id).await.ok()?.0 == 200).then_some(())
        })
        .await?;
    }
    net.pay(&created).await?;
    let round = round_of(&net, net.provider()?.get_block_number().await?);
    let keeper = (round % 4) as usize;
    net.kill9(keeper)?;
    let other = (keeper + 1) % 4;
    webhook_for(&net, &id, Duration::from_secs(60)).await?;
    let events = settled(&net, round).await?;
    assert_eq!(events.len(), 1, "settled exactly once");
    let killed_account = net.devnet.nodes[keeper].1.network.operators[keeper].evm_address;
    assert_ne!(events[0].2, killed_account, "the next operator took over");
    assert!(!events[0].0.bit(keeper), "the dead keeper did not sign");
    net.restart(keeper)?;
    net.wait_ready(keeper).await?;
    let view = net
        .eventually("restarted keeper sees the settlement", Duration::from_secs(30), || async {
            let (_, v) = net.get_invoice(other, &id).await.ok()?;
            let (_, k) = net.get_invoice(keeper, &id).await.ok()?;
            (v["settled"] == true && k["settled"] == true).then_some(k)
        })
        .await?;
    assert_eq!(view["status"], "paid");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(settled(&net, round).await?.len(), 1, "the restarted keeper did not settle again");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_signing_another_root_is_outvoted() -> Result<()> {
    let net = Testnet::start_with(Options { providers: 3, round_length: 10, ..Options::default() }).await?;
    let provider = net.provider()?;
    // Pay early in a round, then make every provider of node 2 report an extra payment at the
    // end of that round: node 2 signs another batch root for it.
    let (id, round) = loop {
        let (id, block) = pay(&net, 0).await?;
        let round = round_of(&net, block);
        let start = net.devnet.nodes[0].1.chains[0].start_block;
        let end = start + (round + 1) * 10 - 1;
        if end >= provider.get_block_number().await? + 3 {
            let event = InvoicePayments::InvoicePaid {
                invoiceId: B256::repeat_byte(0xee),
                merchant: net.devnet.merchant.payout_address,
                payer: Address::repeat_byte(9),
                token: Address::ZERO,
                amount: U256::from(5u64),
            };
            let data = event.encode_log_data();
            // The forged log names the real block (its hash is known once it is mined), so node
            // 2 accepts it; node 2 reads block `end` only one block later (1 confirmation).
            while provider.get_block_number().await? < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let block = provider.get_block_by_number(end.into()).await?.ok_or_else(|| eyre!("block"))?;
            let log = json!({
                "address": net.devnet.deployment.payments, "topics": data.topics(), "data": data.data,
                "blockNumber": format!("{end:#x}"), "blockHash": block.header.hash,
                "transactionHash": B256::repeat_byte(0xcd), "transactionIndex": "0x0", "logIndex": "0x0", "removed": false,
            });
            for p in 0..3 {
                net.fault(2, p, Fault::ForgeLog { log: log.clone() });
            }
            break (id, round);
        }
    };
    webhook_for(&net, &id, Duration::from_secs(90)).await?;
    let events = settled(&net, round).await?;
    assert_eq!(events.len(), 1);
    assert!(!events[0].0.bit(2), "node 2's different root is not part of the quorum");
    assert_eq!(events[0].0.count_ones(), 3, "the other three formed the quorum");
    assert_eq!(events[0].1, 1, "the settled batch holds only the real payment");
    // Node 2's store disagrees with what was settled: it halts itself until an operator looks.
    let h = net
        .eventually("node 2 halted", Duration::from_secs(30), || async {
            let h = net.health(2).await?;
            (h["chains"][0]["checks"]["settlement"]["halted"] == true).then_some(h)
        })
        .await?;
    assert_eq!(h["chains"][0]["checks"]["settlement"]["halt"]["invariant"], "settled_root_mismatch", "{h}");
    assert_eq!(h["status"], "not_ready");
    let metrics = net.http.get(format!("{}/metrics", net.api(2))).send().await?.text().await?;
    assert!(
        metrics.contains("invariant_violations_total{chain_id=\"31337\",invariant=\"settled_root_mismatch\"}"),
        "metric exposed"
    );
    let admin = net.devnet.admin_token.expose();
    let r: Value =
        net.http.post(format!("{}/admin/v1/resume", net.admin(2))).bearer_auth(admin).send().await?.json().await?;
    assert_eq!(r["was"]["invariant"], "settled_root_mismatch");
    let h = net.health(2).await.ok_or_else(|| eyre!("health"))?;
    assert_eq!(h["chains"][0]["checks"]["settlement"]["halted"], false, "resumed: {h}");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_two_two_partition_halts_settlement_until_healed_and_invoices_missed_are_fetched() -> Result<()> {
    let net = Testnet::start(4).await?;
    let handles: Vec<_> = net
        .nodes
        .iter()
        .map(|n| match n {
            NodeRun::InProcess(h) => Ok((h.net.clone(), h.peer_id)),
            _ => Err(eyre!("in-process nodes expected")),
        })
        .collect::<Result<_>>()?;
    let (left, right) = ([0usize, 1], [2usize, 3]);
    for a in left {
        for b in right {
            handles[a].0.block(handles[b].1).await;
            handles[b].0.block(handles[a].1).await;
        }
    }
    // One invoice created on each side, so each side misses the other's invoice; both paid in
    // one block, so whichever side the keeper is on, it settles a payment of an invoice it never
    // received.
    let mut created = Vec::new();
    for i in [0, 2] {
        let (status, c) = net.create_invoice(i, json!({"amount": WEI, "token": "native"})).await?;
        assert_eq!(status, 201, "{c}");
        created.push(c);
    }
    let payer = net.payer()?;
    let mut sent = Vec::new();
    for c in &created {
        let tx = &c["payment_instructions"]["transactions"][0];
        let req = alloy::rpc::types::TransactionRequest::default()
            .to(tx["to"].as_str().unwrap_or_default().parse()?)
            .value(U256::from_str_radix(tx["value"].as_str().unwrap_or("0"), 10)?)
            .input(tx["data"].as_str().unwrap_or_default().parse::<alloy::primitives::Bytes>()?.into());
        sent.push(payer.send_transaction(req).await?);
    }
    let mut blocks = Vec::new();
    for p in sent {
        blocks.push(p.get_receipt().await?.block_number.unwrap_or_default());
    }
    let round = round_of(&net, blocks[0]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(settled(&net, round).await?.is_empty(), "no side has a quorum of 3");
    for a in left {
        for b in right {
            handles[a].0.unblock(handles[b].1).await;
            handles[b].0.unblock(handles[a].1).await;
        }
    }
    for c in &created {
        let id = c["id"].as_str().unwrap_or_default();
        let body = webhook_for(&net, id, Duration::from_secs(60)).await?;
        assert_eq!(body["type"], "invoice.paid", "the keeper fetched the invoice it missed: {body}");
        assert_eq!(body["data"]["invoice"]["amount"], WEI);
    }
    // The other operators deliver too (an event closes on f + 1 acknowledgements), each a
    // failover delay after the last: a node that missed an invoice completes its event with it
    // (fetched now that the partition healed) rather than sending a bare payment.settled.
    tokio::time::sleep(Duration::from_secs(14)).await;
    for c in &created {
        let id = c["id"].as_str().unwrap_or_default();
        for r in net.receiver.snapshot().iter().filter(|r| r.body["data"]["invoice"]["id"] == id) {
            assert_eq!(r.body["type"], "invoice.paid", "every delivery carries the invoice: {}", r.body);
        }
    }
    assert_eq!(settled(&net, round).await?.len(), 1, "settled once after healing");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keeper_killed_after_submitting_or_mid_webhook_settles_once_and_still_notifies() -> Result<()> {
    let mut net = Testnet::start_with(Options { processes: true, round_length: 3, ..Options::default() }).await?;
    let settlement = Settlement::new(net.devnet.deployment.settlement, net.provider()?);

    // 1. Killed right after its settlement transaction is mined.
    let (id, block) = pay(&net, 0).await?;
    let round = round_of(&net, block);
    let keeper = (round % 4) as usize;
    net.eventually("settlement mined", Duration::from_secs(40), || async {
        (!settlement.settledRoot(round).call().await.ok()?.is_zero()).then_some(())
    })
    .await?;
    net.kill9(keeper)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.restart(keeper)?;
    webhook_for(&net, &id, Duration::from_secs(60)).await?;
    assert_eq!(settled(&net, round).await?.len(), 1, "round {round} settled once");

    // 2. Killed while the merchant's endpoint fails, so the delivery is still pending.
    net.wait_ready(keeper).await?;
    net.receiver.set_failure(Some(503));
    let (id, block) = pay(&net, 1).await?;
    let round = round_of(&net, block);
    let keeper = (round % 4) as usize;
    let attempted = net
        .eventually("a failed delivery attempt", Duration::from_secs(60), || async {
            net.receiver
                .snapshot()
                .into_iter()
                .find(|r| r.body["data"]["invoice"]["id"] == id.as_str())
                .map(|r| r.webhook_id)
        })
        .await?;
    net.kill9(keeper)?;
    net.receiver.set_failure(None);
    net.restart(keeper)?;
    let delivered = net
        .eventually("delivery after the restart", Duration::from_secs(60), || async {
            net.receiver
                .snapshot()
                .into_iter()
                .find(|r| r.answered == 204 && r.body["data"]["invoice"]["id"] == id.as_str())
                .map(|r| r.webhook_id)
        })
        .await?;
    assert_eq!(delivered, attempted, "the same event (webhook-id) is delivered after the restart");
    assert_eq!(settled(&net, round).await?.len(), 1, "round {round} settled once");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocating_operator_is_detected_and_penalised() -> Result<()> {
    use settleproof_consensus::Batch;
    use settleproof_node::gossip::{ATTESTATIONS, Attestation};
    use settleproof_node::keys::OperatorKeys;
    let net = Testnet::start(4).await?;
    // Operator 3's own keys sign two different batches for one round and publish both.
    let NodeRun::InProcess(h3) = &net.nodes[3] else { return Err(eyre!("in-process")) };
    let keys = OperatorKeys::load(&net.devnet.nodes[3].1.node.keys_dir)?;
    let settlement = net.devnet.deployment.settlement;
    let chain_id = net.devnet.chain_id;
    let equivocations = || async {
        let text = net.http.get(format!("{}/metrics", net.api(0))).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| l.starts_with("attestations_rejected_total") && l.contains("equivocation"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(f64::max)
    };
    // A coming round, inside the window of rounds the nodes consider.
    let round = round_of(&net, net.provider()?.get_block_number().await?) + 10;
    for (k, root) in [0xa1u8, 0xa2].into_iter().enumerate() {
        let batch = Batch {
            epoch: 0,
            round,
            from_block: 1,
            to_block: 2,
            to_block_hash: B256::repeat_byte(0x22),
            root: B256::repeat_byte(root),
            leaf_count: 1,
        };
        let sig = keys.bls.sign(batch.message(chain_id, settlement).as_slice());
        let att = Attestation {
            batch,
            signer: 3,
            signature: sig.to_bytes().to_vec().into(),
            sent_at_ms: settleproof_node::time::now_ms() + k as u64,
        };
        net.eventually("published", Duration::from_secs(10), || async {
            h3.chain_net(chain_id).publish(ATTESTATIONS, serde_json::to_vec(&att).ok()?).await.ok()
        })
        .await?;
    }
    let seen = net
        .eventually("equivocation detected", Duration::from_secs(10), || async {
            equivocations().await.filter(|v| *v >= 1.0)
        })
        .await?;
    assert!(seen >= 1.0);
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_settlement_is_replaced_with_higher_fees() -> Result<()> {
    use alloy::consensus::Transaction as _;
    let net = Testnet::start_with(Options { round_length: 2, ..Options::default() }).await?;
    let provider = net.provider()?;
    let (id, block) = pay(&net, 0).await?;
    let round = round_of(&net, block);
    let keeper_account = net.devnet.nodes[0].1.network.operators[(round % 4) as usize].evm_address;
    // Stop mining, then mine just enough blocks by hand for the round to close and be confirmed.
    let _: Value = provider.raw_request("evm_setIntervalMining".into(), (0u64,)).await?;
    let end = net.devnet.nodes[0].1.chains[0].start_block + (round + 1) * 2 - 1;
    let head = provider.get_block_number().await?;
    if end + 1 > head {
        let _: Value = provider.raw_request("anvil_mine".into(), (end + 1 - head,)).await?;
    }
    let pool_fee = || async {
        let pool: Value = provider.raw_request("txpool_content".into(), ()).await.ok()?;
        let txs = pool["pending"]
            .as_object()?
            .iter()
            .find(|(from, _)| from.eq_ignore_ascii_case(&keeper_account.to_string()))?
            .1
            .clone();
        let tx = txs.as_object()?.values().next()?.clone();
        u128::from_str_radix(tx["maxFeePerGas"].as_str()?.trim_start_matches("0x"), 16).ok()
    };
    let first = net.eventually("settlement waiting in the pool", Duration::from_secs(30), &pool_fee).await?;
    let replaced = net
        .eventually("replacement with higher fees", Duration::from_secs(40), || async {
            pool_fee().await.filter(|f| *f > first)
        })
        .await?;
    let _: Value = provider.raw_request("evm_setIntervalMining".into(), (1u64,)).await?;
    webhook_for(&net, &id, Duration::from_secs(60)).await?;
    let events = settled(&net, round).await?;
    assert_eq!(events.len(), 1);
    let filter = Filter::new()
        .address(net.devnet.deployment.settlement)
        .event_signature(Settlement::Settled::SIGNATURE_HASH)
        .from_block(0);
    let log = provider
        .get_logs(&filter)
        .await?
        .into_iter()
        .find(|l| l.log_decode::<Settlement::Settled>().is_ok_and(|d| d.inner.data.round == round))
        .ok_or_else(|| eyre!("log"))?;
    let tx = provider
        .get_transaction_by_hash(log.transaction_hash.ok_or_else(|| eyre!("hash"))?)
        .await?
        .ok_or_else(|| eyre!("tx"))?;
    assert_eq!(tx.max_fee_per_gas(), replaced, "the replacement is what got mined");
    net.stop().await;
    Ok(())
}
