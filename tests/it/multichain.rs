//! One network of nodes serving two chains (two anvils with different chain ids): invoices on
//! either settle on their own chain, a payment on the wrong chain does not count, and a chain
//! that goes down stops only its own pipeline.

use crate::harness::{NodeRun, Options, Testnet};
use alloy::primitives::Address;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_node::node;
use std::time::Duration;

/// The second chain's id (the harness gives chain i the id 31337 + i).
const CHAIN_B: u64 = 31338;

fn id_of(v: &Value) -> Result<String> {
    Ok(v["id"].as_str().ok_or_else(|| eyre!("no id in {v}"))?.to_string())
}

/// Waits for the verified `invoice.paid` webhook of `invoice` and checks its receipt on the
/// chain it names, which must be `chain_id`.
async fn settled_on(net: &Testnet, invoice: &str, chain_id: u64) -> Result<()> {
    let body = net.webhook_for(invoice, Duration::from_secs(120)).await?;
    assert_eq!(body["type"], "invoice.paid", "{body}");
    assert_eq!(body["data"]["invoice"]["chain_id"], chain_id, "{body}");
    assert_eq!(body["data"]["receipt"]["chain_id"], chain_id, "the receipt names the chain: {body}");
    let failed = net.receipt_failures(&body).await?;
    assert!(failed.is_empty(), "the receipt checks out on chain {chain_id}: {failed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invoices_settle_on_their_own_chain_and_a_payment_on_another_chain_does_not_count() -> Result<()> {
    let net = Testnet::start_with(Options { chains: 2, ..Options::default() }).await?;
    let chain_b = net.devnet.chains.get(1).ok_or_else(|| eyre!("no second chain"))?.clone();
    assert_eq!(chain_b.chain_id, CHAIN_B);

    // The default is the first chain; `chain_id` picks the second, with its instructions.
    let (status, on_a) = net.create_invoice(0, json!({"amount": "1000000000000", "token": "native"})).await?;
    assert_eq!(status, 201, "{on_a}");
    assert_eq!(on_a["chain_id"], 31337);
    let (status, on_b) =
        net.create_invoice(1, json!({"amount": "2000000000000", "token": "native", "chain_id": CHAIN_B})).await?;
    assert_eq!(status, 201, "{on_b}");
    assert_eq!(on_b["chain_id"], CHAIN_B);
    assert_eq!(on_b["payment_instructions"]["chain_id"], CHAIN_B);
    let contract: Address = on_b["payment_instructions"]["contract"].as_str().unwrap_or_default().parse()?;
    assert_eq!(contract, chain_b.deployment.payments, "instructions for the invoice's chain");
    let (status, bad) = net.create_invoice(0, json!({"amount": "1", "token": "native", "chain_id": 999})).await?;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["field"], "chain_id", "{bad}");

    // An invoice of chain A paid through chain B's contract: B's nodes see the payment, and it
    // does not count toward the invoice.
    let (_, misrouted) = net.create_invoice(2, json!({"amount": "3000000000000", "token": "native"})).await?;
    let misrouted_id = id_of(&misrouted)?;
    let mut wrong = misrouted.clone();
    for tx in wrong["payment_instructions"]["transactions"].as_array_mut().into_iter().flatten() {
        tx["to"] = json!(chain_b.deployment.payments);
    }
    wrong["payment_instructions"]["chain_id"] = json!(CHAIN_B);

    net.pay(&on_a).await?;
    net.pay(&on_b).await?;
    net.pay(&wrong).await?;
    settled_on(&net, &id_of(&on_a)?, 31337).await?;
    settled_on(&net, &id_of(&on_b)?, CHAIN_B).await?;

    for i in 0..4 {
        let view = net
            .eventually("the misrouted payment is listed", Duration::from_secs(60), || async {
                let (_, v) = net.get_invoice(i, &misrouted_id).await.ok()?;
                (!v["payments"].as_array()?.is_empty()).then_some(v)
            })
            .await?;
        assert_eq!(view["status"], "open", "node {i}: nothing counts: {view}");
        let p = &view["payments"][0];
        assert_eq!(p["chain_id"], CHAIN_B, "{view}");
        assert_eq!(p["accepted"], false, "{view}");
        assert!(p["rejected_reason"].as_str().unwrap_or_default().starts_with("wrong_chain"), "{view}");
    }

    // Listing filters by chain.
    let list = |q: &'static str| {
        let net = &net;
        async move {
            let resp = net
                .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices{q}", net.api(3)), None)?
                .send()
                .await?;
            Ok::<_, eyre::Report>((resp.status().as_u16(), resp.json::<Value>().await?))
        }
    };
    let (_, only_b) = list("?chain_id=31338").await?;
    let ids: Vec<&str> = only_b["data"].as_array().into_iter().flatten().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(ids, vec![id_of(&on_b)?.as_str()], "{only_b}");
    let (_, all) = list("").await?;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(3), "{all}");

    // Each chain has its own settlements and its own metrics.
    let metrics = net.http.get(format!("{}/metrics", net.api(0))).send().await?.text().await?;
    for chain in ["31337", "31338"] {
        let halted = format!("settlement_halted{{chain_id=\"{chain}\"}} 0");
        assert!(metrics.contains(&halted), "{halted} missing");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("rpc_requests_total{") && l.contains(&format!("chain_id=\"{chain}\""))),
            "rpc_requests_total of chain {chain} missing"
        );
    }
    net.stop().await;
    Ok(())
}

/// Node 0's checkpoint on chain `chain_id`.
async fn checkpoint(net: &Testnet, chain_id: u64) -> Option<u64> {
    let h = net.health(0).await?;
    let chain = h["chains"].as_array()?.iter().find(|c| c["chain_id"] == chain_id)?.clone();
    chain["checks"]["chain"]["checkpoint"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_that_goes_down_stops_only_its_own_pipeline() -> Result<()> {
    let mut net = Testnet::start_with(Options { chains: 2, ..Options::default() }).await?;
    // An invoice of chain B created while it is up, paid once it is back.
    let (_, before) =
        net.create_invoice(0, json!({"amount": "5000000000000", "token": "native", "chain_id": CHAIN_B})).await?;

    net.anvil_of(CHAIN_B)?.pause(true)?;
    let result = async {
        // Chain B fails, the node stays up (degraded) and names it.
        let health = net
            .eventually("chain B failing", Duration::from_secs(60), || async {
                let h = net.health(0).await?;
                let failing = h["checks"]["chains"]["failing"].as_array()?.clone();
                (failing.len() == 1).then_some(h)
            })
            .await?;
        assert_eq!(health["status"], "degraded", "{health}");
        assert!(health["checks"]["chains"]["failing"][0].as_str().unwrap_or_default().starts_with("31338"), "{health}");
        let b = health["chains"].as_array().and_then(|c| c.iter().find(|c| c["chain_id"] == CHAIN_B)).cloned();
        assert_eq!(b.map(|b| b["status"].clone()), Some(json!("failing")), "{health}");

        // Chain A settles meanwhile, and invoices of B can still be created.
        let (_, on_a) = net.create_invoice(1, json!({"amount": "1000000000000", "token": "native"})).await?;
        net.pay(&on_a).await?;
        settled_on(&net, &id_of(&on_a)?, 31337).await?;
        let (status, during) =
            net.create_invoice(2, json!({"amount": "6000000000000", "token": "native", "chain_id": CHAIN_B})).await?;
        assert_eq!(status, 201, "{during}");

        // A node restarted while chain B is down starts all the same: chain A runs, chain B
        // waits for its chain.
        let NodeRun::InProcess(h) = std::mem::replace(&mut net.nodes[0], NodeRun::Stopped) else {
            return Err(eyre!("node 0 runs in this process"));
        };
        h.stop().await;
        // Tasks a round spawns stop with the node but are not joined by `stop` (a process
        // that exits frees the file at once): start again once the store file is free.
        let cfg = net.devnet.nodes[0].1.clone();
        let started = net
            .eventually("node 0 started again", Duration::from_secs(90), || async {
                match node::start(cfg.clone()).await {
                    Ok(h) => Some(h),
                    Err(e) if e.to_string().contains("already open") => None,
                    Err(e) => panic!("node 0 does not start: {e}"),
                }
            })
            .await?;
        net.nodes[0] = NodeRun::InProcess(Box::new(started));
        let at = net
            .eventually("node 0 back, chain A followed", Duration::from_secs(60), || async {
                checkpoint(&net, 31337).await
            })
            .await?;
        net.eventually("node 0 follows chain A after its restart", Duration::from_secs(60), || async {
            (checkpoint(&net, 31337).await? > at).then_some(())
        })
        .await?;
        let h = net.health(0).await.ok_or_else(|| eyre!("no health"))?;
        assert_eq!(h["status"], "degraded", "{h}");
        let b = h["chains"].as_array().and_then(|c| c.iter().find(|c| c["chain_id"] == CHAIN_B)).cloned();
        let error = b.map(|b| b["checks"]["chain"]["error"].clone()).unwrap_or_default();
        assert!(error.as_str().unwrap_or_default().contains("waiting for the chain"), "{h}");
        Ok::<_, eyre::Report>(during)
    }
    .await;
    net.anvil_of(CHAIN_B)?.pause(false)?;
    let during = result?;

    // Chain B is back: its invoices settle too, and the node is ready again.
    net.pay(&before).await?;
    net.pay(&during).await?;
    settled_on(&net, &id_of(&before)?, CHAIN_B).await?;
    settled_on(&net, &id_of(&during)?, CHAIN_B).await?;
    net.eventually("node ready again", Duration::from_secs(60), || async {
        (net.health(0).await?["status"] == "ready").then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}
