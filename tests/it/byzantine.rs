//! One operator of four is Byzantine: its node is replaced by [`ByzantineOperator`], which
//! holds that operator's real keys, so the others let it in and hear it. Each test injects one
//! attack and checks that the guarantee holds for the honest nodes and the merchant.

use crate::harness::{Options, Testnet};
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolEvent;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_byzantine::ByzantineOperator;
use settleproof_consensus::Batch;
use settleproof_contracts::InvoicePayments;
use settleproof_node::store::Invoice;
use std::time::Duration;

pub(crate) const WEI: &str = "1000000000000000";
/// The Byzantine operator's index.
pub(crate) const BAD: usize = 3;

/// A testnet of process nodes whose operator [`BAD`] is replaced by a Byzantine one.
pub(crate) async fn with_byzantine(opts: Options) -> Result<(Testnet, ByzantineOperator)> {
    let mut net = Testnet::start_with(Options { processes: true, ..opts }).await?;
    net.kill9(BAD)?;
    let bad = ByzantineOperator::start(&net.devnet.nodes[BAD].1).await?;
    net.eventually("the Byzantine operator connected", Duration::from_secs(30), || async {
        (bad.connected() >= 3).then_some(())
    })
    .await?;
    Ok((net, bad))
}

pub(crate) async fn admin(net: &Testnet, i: usize, path: &str, body: Value) -> Result<Value> {
    let r = net
        .http
        .post(format!("{}/admin/v1/{path}", net.admin(i)))
        .bearer_auth(net.devnet.admin_token.expose())
        .json(&body)
        .send()
        .await?;
    Ok(r.json().await.unwrap_or(Value::Null))
}

/// Node `i`'s gossip score of each peer (`GET /admin/v1/peers`).
pub(crate) async fn scores(net: &Testnet, i: usize) -> Result<Vec<(String, f64)>> {
    let peers = net
        .http
        .get(format!("{}/admin/v1/peers", net.admin(i)))
        .bearer_auth(net.devnet.admin_token.expose())
        .send()
        .await?
        .json::<Value>()
        .await?;
    let scores = peers["scores"].as_object().ok_or_else(|| eyre!("no scores: {peers}"))?;
    Ok(scores.iter().map(|(peer, score)| (peer.clone(), score.as_f64().unwrap_or_default())).collect())
}

pub(crate) fn peer_id(net: &Testnet, i: usize) -> String {
    net.devnet.nodes[0].1.network.operators[i].peer_id.clone()
}

/// The invoice stored behind `created` (the API's answer), as every node holds it.
pub(crate) fn invoice_of(net: &Testnet, created: &Value) -> Result<Invoice> {
    let id: B256 = created["id"].as_str().ok_or_else(|| eyre!("id"))?.parse()?;
    let m = &net.devnet.merchant;
    Ok(Invoice {
        id,
        merchant_id: m.id.clone(),
        payout_address: m.payout_address,
        amount: U256::from_str_radix(created["amount"].as_str().ok_or_else(|| eyre!("amount"))?, 10)?,
        token: Address::ZERO,
        created_at: 0,
        expires_at: created["expires_at"].as_u64(),
        metadata: None,
        created_by: "node-0".into(),
        idempotency: None,
        redirect_url: None,
        statement: None,
        nonce: B256::ZERO,
    })
}

/// Pays `value` wei to invoice `id` through the payment contract; returns (tx, log index).
pub(crate) async fn pay_wei(net: &Testnet, created: &Value, value: u64) -> Result<(B256, u64)> {
    let tx = &created["payment_instructions"]["transactions"][0];
    let to: Address = tx["to"].as_str().ok_or_else(|| eyre!("to"))?.parse()?;
    let data: Bytes = tx["data"].as_str().ok_or_else(|| eyre!("data"))?.parse()?;
    let req = TransactionRequest::default().with_to(to).with_value(U256::from(value)).with_input(data);
    let receipt = net.payer()?.send_transaction(req).await?.get_receipt().await?;
    let log = receipt
        .inner
        .logs()
        .iter()
        .find(|l| l.topic0() == Some(&InvoicePayments::InvoicePaid::SIGNATURE_HASH))
        .ok_or_else(|| eyre!("no InvoicePaid log"))?;
    Ok((receipt.transaction_hash, log.log_index.ok_or_else(|| eyre!("log index"))?))
}

/// The sum of node `i`'s metric `name` over its series whose labels include `label`.
pub(crate) async fn labelled_metric(net: &Testnet, i: usize, name: &str, label: &str) -> f64 {
    let Ok(r) = net.http.get(format!("{}/metrics", net.api(i))).send().await else { return 0.0 };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Node `i`'s gossip score of operator `peer`'s node.
pub(crate) async fn score_of(net: &Testnet, i: usize, peer: usize) -> Result<f64> {
    let id = peer_id(net, peer);
    Ok(scores(net, i).await?.into_iter().find(|(p, _)| *p == id).map_or(0.0, |(_, s)| s))
}

/// Approves merchant change `hash` on node `i` once the change reached it.
pub(crate) async fn approve_change(net: &Testnet, i: usize, hash: &str) -> Result<Value> {
    net.eventually("the change reaches the approver", Duration::from_secs(20), || async {
        let r = net
            .http
            .get(format!("{}/admin/v1/merchants", net.admin(i)))
            .bearer_auth(net.devnet.admin_token.expose())
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()?;
        r["pending"].as_array()?.iter().any(|p| p["change_hash"] == hash).then_some(())
    })
    .await?;
    admin(net, i, &format!("merchant-changes/{hash}/approve"), Value::Null).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_acknowledgements_sent_in_advance_do_not_silence_delivery() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    let (_, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    let id = created["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string();
    let (tx, log_index) = pay_wei(&net, &created, 1_000_000_000_000_000).await?;
    // The webhook id follows from chain data: the Byzantine operator claims the delivery as
    // soon as the payment is mined, long before any settlement, and keeps claiming it.
    let webhook_id = settleproof_node::webhook::payload::webhook_id(id.parse()?, tx, log_index);
    let claims = {
        let (bad, webhook_id) = (bad.clone(), webhook_id.clone());
        tokio::spawn(async move {
            for _ in 0..200 {
                bad.forge_ack(&webhook_id).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let body = net.webhook_for(&id, Duration::from_secs(60)).await?;
    assert_eq!(body["data"]["webhook_id"], webhook_id.as_str());
    claims.abort();
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocator_is_penalised_and_its_honest_forwarders_keep_their_score() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    // Two different batches for each of many coming rounds, signed with the real key.
    for r in 0..40u64 {
        let round = 100 + r;
        for root in [0x0a, 0x0b] {
            let batch = Batch {
                epoch: 0,
                round,
                from_block: 1000,
                to_block: 1001,
                to_block_hash: B256::repeat_byte(0x11),
                root: B256::repeat_byte(root),
                leaf_count: 1,
            };
            bad.attest(batch).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bad_peer = peer_id(&net, BAD);
    for i in 0..3 {
        for (peer, score) in scores(&net, i).await? {
            if peer == bad_peer {
                assert!(score < 0.0, "node {i}: the equivocator is penalised ({score})");
            } else {
                assert!(score >= 0.0, "node {i}: honest peer {peer} keeps its score ({score})");
            }
        }
    }
    // And settlement goes on among the honest three.
    let (_, created) = net.create_invoice(1, json!({"amount": WEI, "token": "native"})).await?;
    net.pay(&created).await?;
    net.webhook_for(created["id"].as_str().unwrap_or_default(), Duration::from_secs(60)).await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_valid_resends_costs_no_pairing_and_settlement_goes_on() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    let before: Vec<f64> = futures_join(&net, "attestation_verifications_total").await;
    let batch = Batch {
        epoch: 0,
        round: 90,
        from_block: 900,
        to_block: 901,
        to_block_hash: B256::repeat_byte(0x11),
        root: B256::repeat_byte(0x0c),
        leaf_count: 1,
    };
    let sent = bad.flood(batch, 3000).await;
    assert!(sent > 1000, "the flood went out ({sent})");
    let (_, created) = net.create_invoice(1, json!({"amount": WEI, "token": "native"})).await?;
    net.pay(&created).await?;
    net.webhook_for(created["id"].as_str().unwrap_or_default(), Duration::from_secs(60)).await?;
    let after: Vec<f64> = futures_join(&net, "attestation_verifications_total").await;
    for i in 0..3 {
        let pairings = after[i] - before[i];
        // Votes are counted without a pairing (a quorum is checked as one aggregate, which
        // this metric does not count): neither the flood nor the honest rounds meanwhile cost one.
        assert_eq!(pairings, 0.0, "node {i} verified {pairings} signatures on arrival for {sent} messages");
    }
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_vote_in_a_quorum_is_discarded_its_signer_penalised_and_settlement_goes_on() -> Result<()> {
    use settleproof_rpc_proxy::Fault;
    let providers = 3;
    let (net, bad) = with_byzantine(Options { providers, ..Options::default() }).await?;
    // Node 2 reads the chain slowly and signs each round seconds after nodes 0 and 1, so the
    // forged vote (sent as soon as the first honest one is heard) is the third of every quorum
    // nodes 0 and 1 see first.
    for p in 0..providers {
        net.fault(2, p, Fault::Delay { ms: 400 });
    }
    bad.forge_votes();
    for k in 0..3 {
        let (_, created) = net.create_invoice(k % 2, json!({"amount": WEI, "token": "native"})).await?;
        net.pay(&created).await?;
        // Usually seconds; a round whose keeper is the slow node 2 or the Byzantine one waits for
        // a failover turn, and a keeper that meets the forged vote waits for node 2's.
        net.webhook_for(created["id"].as_str().unwrap_or_default(), Duration::from_secs(180)).await?;
    }
    let bad_peer = peer_id(&net, BAD);
    let mut found = 0.0;
    for i in 0..3 {
        let forged = net.metric(i, "forged_votes_discarded_total").await;
        found += forged;
        for (peer, score) in scores(&net, i).await? {
            if peer == bad_peer && forged > 0.0 {
                assert!(score < 0.0, "node {i} found {forged} forged votes and penalised their signer ({score})");
            } else if peer != bad_peer {
                assert!(score >= 0.0, "node {i}: honest peer {peer} keeps its score ({score})");
            }
        }
    }
    assert!(found >= 1.0, "a keeper met the forged vote in its quorum and discarded it");
    net.stop().await;
    Ok(())
}

async fn futures_join(net: &Testnet, metric: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(net.metric(i, metric).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_backup_does_not_roll_back_the_signing_guard() -> Result<()> {
    use crate::harness::settleproof_bin;
    use settleproof_rpc_proxy::Fault;
    let mut net = Testnet::start_with(Options { processes: true, providers: 3, ..Options::default() }).await?;
    let node = 1usize;
    let backup = net.dir.path().join("node-1-before.redb");
    let out = std::process::Command::new(settleproof_bin()?)
        .args(["store", "backup", "--config"])
        .arg(&net.devnet.nodes[node].0)
        .arg("--out")
        .arg(&backup)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Payments after the backup, until a round settles with node 1's signature.
    let signed = loop {
        let (_, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
        net.pay(&created).await?;
        net.webhook_for(created["id"].as_str().unwrap_or_default(), Duration::from_secs(60)).await?;
        if let Some(e) = net.settlements().await?.into_iter().find(|e| e.signerBitmap.bit(node)) {
            break e;
        }
    };
    net.term(node, Duration::from_secs(10))?;
    let out = std::process::Command::new(settleproof_bin()?)
        .args(["store", "restore", "--config"])
        .arg(&net.devnet.nodes[node].0)
        .arg("--from")
        .arg(&backup)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Two of node 1's three providers now agree on an extra payment in that round: rebuilt from
    // them, the round has another root.
    let block = signed.fromBlock;
    let hash =
        net.provider()?.get_block_by_number(block.into()).await?.ok_or_else(|| eyre!("block {block}"))?.header.hash;
    let event = InvoicePayments::InvoicePaid {
        invoiceId: B256::repeat_byte(0xfa),
        merchant: net.devnet.merchant.payout_address,
        payer: net.anvil.keys[1].address(),
        token: Address::ZERO,
        amount: U256::from(5),
    };
    let data = event.encode_log_data();
    let forged = json!({
        "address": net.devnet.deployment.payments,
        "topics": data.topics(),
        "data": data.data,
        "blockNumber": format!("{block:#x}"),
        "blockHash": hash,
        "transactionHash": B256::repeat_byte(0xfb),
        "transactionIndex": "0x0",
        "logIndex": "0x63",
        "removed": false,
    });
    for p in 0..2 {
        net.fault(node, p, Fault::ForgeLog { log: forged.clone() });
    }
    net.restart(node)?;
    net.eventually("node 1 past the round again", Duration::from_secs(60), || async {
        let cp = net.health(node).await?["chains"][0]["checks"]["chain"]["checkpoint"].as_u64()?;
        (cp > signed.toBlock + 4).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.term(node, Duration::from_secs(10))?;
    let store = settleproof_node::store::Store::open(&net.devnet.nodes[node].1.node.data_dir.join("settleproof.redb"))?;
    let guard = store.signed_batch(signed.round)?.ok_or_else(|| eyre!("no guard record for round {}", signed.round))?;
    assert_eq!(guard.batch.root, signed.root, "the guard holds the root the chain shows node 1 signed");
    Ok(())
}

/// The set change approvals node `i` lists (`GET /admin/v1/operator-sets`).
async fn set_approvals(net: &Testnet, i: usize) -> Vec<Value> {
    let url = format!("{}/admin/v1/operator-sets", net.admin(i));
    let Ok(r) = net.http.get(url).bearer_auth(net.devnet.admin_token.expose()).send().await else { return Vec::new() };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["approvals"].as_array().cloned().unwrap_or_default()
}

/// A set change approval counts only as its author's own and only with a signature over that
/// set: one filed under another operator, or signed over another set, is refused and scored
/// against its author; its genuine approval is heard by every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_set_approval_is_refused_and_a_genuine_one_heard() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    let set_hash = B256::repeat_byte(0x5e);
    // Its genuine approval first: a forgery gets its author penalised below the threshold
    // under which it is not heard any more.
    assert!(bad.approve_set(set_hash, bad.index, set_hash).await, "its own");
    for i in 0..3 {
        let heard = net
            .eventually("the genuine approval heard", Duration::from_secs(30), || async {
                set_approvals(&net, i).await.into_iter().find(|a| a["set_hash"] == set_hash.to_string().as_str())
            })
            .await?;
        assert_eq!(heard["approved_by"], json!([bad.name]), "node {i}");
    }
    // The first forgery a node judges gets the author penalised, and the node stops hearing it:
    // each kind is refused by every node that hears it (the table of kinds is in
    // `set_approval::tests`).
    assert!(bad.approve_set(B256::repeat_byte(0x60), 0, B256::repeat_byte(0x60)).await, "in node-0's name");
    assert!(bad.approve_set(B256::repeat_byte(0x61), bad.index, B256::repeat_byte(0x5f)).await, "over another set");
    for i in 0..3 {
        net.eventually("a forgery refused", Duration::from_secs(30), || async {
            (net.metric(i, "set_approvals_rejected_total").await >= 1.0).then_some(())
        })
        .await?;
    }
    for i in 0..3 {
        let listed: Vec<String> =
            set_approvals(&net, i).await.iter().filter_map(|a| a["set_hash"].as_str().map(str::to_string)).collect();
        assert_eq!(listed, vec![set_hash.to_string()], "node {i} kept no forged approval");
    }
    net.stop().await;
    Ok(())
}
