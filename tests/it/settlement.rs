//! The walking skeleton end to end: an invoice paid on a local chain is settled by 4 nodes and
//! the merchant gets a signed webhook.

use crate::harness::Testnet;
use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::{IERC20, Settlement, TestToken};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_invoices_are_settled_on_chain_and_notified() -> Result<()> {
    let net = Testnet::start(4).await?;
    let token = net.devnet.deployment.token;
    let merchant = net.devnet.merchant.payout_address;

    // A native-coin invoice created on node 1 is known to every node.
    let (status, native) = net
        .create_invoice(1, json!({"amount": "1000000000000000", "token": "native", "metadata": {"order": "A-1"}}))
        .await?;
    assert_eq!(status, 201, "{native}");
    let native_id = native["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    for i in [0, 2, 3] {
        net.eventually("invoice replicated", Duration::from_secs(15), || async {
            matches!(net.get_invoice(i, &native_id).await, Ok((200, _))).then_some(())
        })
        .await?;
    }

    // An ERC-20 invoice created on node 2.
    let payer = net.payer()?;
    let payer_addr = net.anvil.keys[1].address();
    TestToken::new(token, &payer).mint(payer_addr, U256::from(5_000_000u64)).send().await?.get_receipt().await?;
    let (status, erc20) = net.create_invoice(2, json!({"amount": "2500000", "token": token.to_string()})).await?;
    assert_eq!(status, 201, "{erc20}");
    let erc20_id = erc20["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();

    let provider = net.provider()?;
    let native_before = provider.get_balance(merchant).await?;
    net.pay(&native).await?;
    net.pay(&erc20).await?;
    // Non-custodial: the funds are with the merchant as soon as the payments are mined.
    assert_eq!(provider.get_balance(merchant).await? - native_before, U256::from(1_000_000_000_000_000u64));
    assert_eq!(IERC20::new(token, &provider).balanceOf(merchant).call().await?, U256::from(2_500_000u64));

    // Both invoices reach the merchant as signed webhooks after settlement.
    let wanted: HashSet<String> = [native_id.clone(), erc20_id.clone()].into();
    let events = net
        .eventually("webhooks for both invoices", Duration::from_secs(90), || async {
            let got: Vec<_> =
                net.receiver.snapshot().into_iter().filter(|r| wanted.contains(invoice_id(&r.body))).collect();
            let ids: HashSet<&str> = got.iter().map(|r| invoice_id(&r.body)).collect();
            (ids.len() == 2).then_some(got)
        })
        .await?;
    let settlement = Settlement::new(net.devnet.deployment.settlement, &provider);
    for event in &events {
        assert!(event.verified, "webhook signature must verify: {:?}", event.body);
        assert_eq!(event.body["type"], "invoice.paid", "{}", event.body);
        assert_eq!(event.body["data"]["invoice"]["status"], "paid");
        let s = &event.body["data"]["settlement"];
        let round = s["round"].as_u64().ok_or_else(|| eyre!("no round"))?;
        let root: B256 = s["root"].as_str().ok_or_else(|| eyre!("no root"))?.parse()?;
        assert_eq!(settlement.settledRoot(round).call().await?, root, "root recorded on chain");
        assert_eq!(settled_events(&net, round).await?, 1, "round {round} settled exactly once");
        let bitmap = U256::from_str_radix(s["signer_bitmap"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)?;
        assert!(bitmap.count_ones() >= 3, "a quorum of 3 of 4 signed");
    }
    // One event per invoice: every delivery about it (the submitter's, and the next operator's
    // until f + 1 of them claimed it) carries the same webhook-id.
    let all = net.receiver.snapshot();
    for id in &wanted {
        let ids: HashSet<&str> =
            all.iter().filter(|r| invoice_id(&r.body) == id).map(|r| r.webhook_id.as_str()).collect();
        assert_eq!(ids.len(), 1, "invoice {id}: one webhook-id");
    }

    // Every node reports the invoice paid and settled.
    for i in 0..4 {
        let view = net
            .eventually("invoice settled on every node", Duration::from_secs(30), || async {
                let (_, v) = net.get_invoice(i, &erc20_id).await.ok()?;
                (v["settled"] == true).then_some(v)
            })
            .await?;
        assert_eq!(view["status"], "paid");
        assert_eq!(view["amount_paid"], "2500000");
    }
    // Each node renders a settled round's events once: the keeper too, which recorded them
    // with its own receipt before its watcher confirmed the settlement.
    let rounds: HashSet<u64> = events.iter().filter_map(|e| e.body["data"]["settlement"]["round"].as_u64()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The nodes run in this process and share one metrics recorder: the count is all four's.
    let rendered = net.metric(0, "webhook_settlements_rendered_total").await;
    assert!(
        rendered <= 4.0 * rounds.len() as f64,
        "rendered {rendered} times by 4 nodes for {} round(s)",
        rounds.len()
    );
    net.stop().await;
    Ok(())
}

/// A node killed right after answering a create has not announced the invoice yet (it goes out
/// with the next second's announcements). The invoice is durable in its store, marked not yet
/// announced, and the node announces it when it starts again (`invoices_resumed_total`): every
/// peer learns it before any payment, by that announcement or by asking node 1 what it created
/// while they were apart, as it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invoice_its_creator_never_announced_reaches_the_peers_when_the_creator_restarts() -> Result<()> {
    use crate::harness::Options;
    let mut net = Testnet::start_with(Options { processes: true, ..Options::default() }).await?;
    // Created and killed within a few milliseconds: unless the create happened to land right
    // before the announcement tick, the peers do not have it. That case proves nothing, so
    // the test tries again.
    let mut unannounced = None;
    for attempt in 0..5 {
        let (status, created) = net.create_invoice(1, json!({"amount": "1000000000000000", "token": "native"})).await?;
        assert_eq!(status, 201, "{created}");
        net.kill9(1)?;
        let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
        // Long enough for a message sent just before the kill to be stored by the peers (the
        // node is down: nothing else can bring it).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut known = false;
        for i in [0, 2, 3] {
            known |= net.get_invoice(i, &id).await?.0 == 200;
        }
        net.restart(1)?;
        net.wait_ready(1).await?;
        if !known {
            unannounced = Some(created);
            break;
        }
        eprintln!("attempt {attempt}: announced before the kill; trying again");
    }
    let created = unannounced.ok_or_else(|| eyre!("every invoice was announced before its creator was killed"))?;
    assert!(net.metric(1, "invoices_resumed_total").await >= 1.0, "the restarted creator counts what it announces");
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    for i in [0, 2, 3] {
        net.eventually("the restarted creator announced the invoice", Duration::from_secs(45), || async {
            matches!(net.get_invoice(i, &id).await, Ok((200, _))).then_some(())
        })
        .await?;
    }
    // The peers may have taken it by catching up from node 1 as it came back, before a send of
    // node 1 reached them: its first send at start may have found no peer; a resend (2, 8 or
    // 32 s later) that goes out removes the mark.
    net.eventually("node 1's resend carried the invoice", Duration::from_secs(45), || async {
        (net.metric(1, "invoices_unannounced").await == 0.0).then_some(())
    })
    .await?;
    // Every mark went with its announcement: after a clean stop nothing is announced again.
    net.term(1, Duration::from_secs(30))?;
    net.restart(1)?;
    net.wait_ready(1).await?;
    let metrics = net.http.get(format!("{}/metrics", net.api(1))).send().await?.text().await?;
    let resumed: Vec<&str> = metrics.lines().filter(|l| l.starts_with("invoices_resumed_total{")).collect();
    assert!(!resumed.is_empty() && resumed.iter().all(|l| l.ends_with(" 0")), "nothing to announce again: {resumed:?}");
    net.stop().await;
    Ok(())
}

/// An invoice created while every other operator is down goes out in no send (its resends end
/// 32 s after the first). The operators that come back ask its creator what it created while
/// they were away and take it (before, they learnt it only when a payment made a keeper fetch
/// it). Its creator keeps it marked unannounced, since no send went out, and announces it at
/// its next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invoice_created_while_every_peer_was_down_reaches_them_when_they_return() -> Result<()> {
    use crate::harness::Options;
    let mut net = Testnet::start_with(Options { processes: true, ..Options::default() }).await?;
    for i in 1..4 {
        net.kill9(i)?;
    }
    let (status, created) = net.create_invoice(0, json!({"amount": "1000000000000000", "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    // Past the last resend (32 s after the first send, each gap up to a tick late) while
    // nobody can hear it.
    tokio::time::sleep(Duration::from_secs(42)).await;
    for i in 1..4 {
        net.restart(i)?;
    }
    for i in 1..4 {
        net.wait_ready(i).await?;
    }
    for i in 1..4 {
        // No resend is due any more, and no payment was made: only the catch-up brings it.
        net.eventually("the returning operator caught up on the invoice", Duration::from_secs(15), || async {
            (matches!(net.get_invoice(i, &id).await, Ok((200, _)))
                && net.metric(i, "invoices_caught_up_total").await >= 1.0)
                .then_some(())
        })
        .await?;
    }
    assert_eq!(net.metric(0, "invoices_unannounced").await, 1.0, "no send of it went out: still marked");
    net.term(0, Duration::from_secs(30))?;
    net.restart(0)?;
    net.wait_ready(0).await?;
    assert!(net.metric(0, "invoices_resumed_total").await >= 1.0, "no send went out: the mark stayed");
    net.stop().await;
    Ok(())
}

fn invoice_id(body: &Value) -> &str {
    body["data"]["invoice"]["id"].as_str().unwrap_or_default()
}

async fn settled_events(net: &Testnet, round: u64) -> Result<usize> {
    Ok(net.settlements().await?.iter().filter(|e| e.round == round).count())
}

/// A merchant behind a load balancer hears the webhook, then asks any node for the receipt:
/// every node serves it within a second of the first webhook, although the confirmation depth
/// (3 blocks of 1 s) is well beyond that. Each node reads `Settled` events above the depth and
/// keeps them as provisional settlements, as the keeper's node does its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_serves_the_receipt_within_a_second_of_the_first_webhook() -> Result<()> {
    let net = Testnet::start_with(crate::harness::Options { confirmations: 3, ..Default::default() }).await?;
    let mut slowest = Duration::ZERO;
    for k in 0..3 {
        let (status, created) =
            net.create_invoice(k % 4, json!({"amount": "1000000000000000", "token": "native"})).await?;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
        net.pay(&created).await?;
        net.webhook_for(&id, Duration::from_secs(90)).await?;
        let heard = std::time::Instant::now();
        for i in 0..4 {
            let url = format!("{}/v1/invoices/{id}/receipt", net.api(i));
            loop {
                let status = net.merchant_request(reqwest::Method::GET, &url, None)?.send().await?.status().as_u16();
                if status == 200 {
                    break;
                }
                assert_eq!(status, 404, "node {i}");
                assert!(heard.elapsed() < Duration::from_secs(5), "node {i} has no receipt 5 s after the webhook");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        slowest = slowest.max(heard.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "the last node served the receipt {slowest:?} after the webhook");
    net.stop().await;
    Ok(())
}
