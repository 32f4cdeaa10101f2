//! Operations: invariants that halt settlement until an operator resumes it, and the admin
//! switch itself.

use crate::harness::{Options, Testnet};
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_node::keys::OperatorKeys;
use std::time::Duration;

async fn paid_invoice(net: &Testnet) -> Result<String> {
    let (status, created) = net.create_invoice(0, json!({"amount": "1000", "token": "native"})).await?;
    assert_eq!(status, 201);
    net.pay(&created).await?;
    Ok(created["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string())
}

async fn settled(net: &Testnet, id: &str) -> bool {
    matches!(net.get_invoice(0, id).await, Ok((_, v)) if v["settled"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keeper_nonce_out_of_sync_halts_settlement_until_resumed() -> Result<()> {
    let net = Testnet::start_with(Options { nodes: 1, ..Options::default() }).await?;
    let first = paid_invoice(&net).await?;
    net.eventually("first settlement", Duration::from_secs(30), || async { settled(&net, &first).await.then_some(()) })
        .await?;
    // Someone else uses the settlement key: the node's nonce is now out of sync.
    let keys = OperatorKeys::load(&net.devnet.nodes[0].1.node.keys_dir)?;
    let thief =
        ProviderBuilder::new().wallet(EthereumWallet::from(keys.evm.clone())).connect_http(net.anvil.url.parse()?);
    let tx = TransactionRequest::default().with_to(keys.evm.address()).with_value(U256::from(1));
    thief.send_transaction(tx).await?.get_receipt().await?;
    let second = paid_invoice(&net).await?;
    let h = net
        .eventually("halted", Duration::from_secs(30), || async {
            let h = net.health(0).await?;
            (h["checks"]["settlement"]["halted"] == true).then_some(h)
        })
        .await?;
    assert_eq!(h["checks"]["settlement"]["halt"]["invariant"], "keeper_nonce_desync", "{h}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!settled(&net, &second).await, "nothing is settled while halted");
    let (status, _) = net.get_invoice(0, &second).await?;
    assert_eq!(status, 200, "reads are still served");
    let admin = net.devnet.admin_token.expose();
    let r = net.http.post(format!("{}/admin/v1/resume", net.api(0))).send().await?;
    assert_eq!(r.status().as_u16(), 401, "resume needs the admin token");
    let r: Value =
        net.http.post(format!("{}/admin/v1/resume", net.api(0))).bearer_auth(admin).send().await?.json().await?;
    assert_eq!(r["halted"], false);
    net.eventually("settled after resume", Duration::from_secs(30), || async {
        settled(&net, &second).await.then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_halt_stops_settling_and_survives_a_restart() -> Result<()> {
    let mut net = Testnet::start_with(Options { nodes: 1, processes: true, ..Options::default() }).await?;
    let admin = net.devnet.admin_token.expose().to_string();
    let r: Value = net
        .http
        .post(format!("{}/admin/v1/halt", net.api(0)))
        .bearer_auth(&admin)
        .json(&json!({"reason": "maintenance"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["halted"], true);
    let id = paid_invoice(&net).await?;
    net.kill9(0)?;
    net.restart(0)?;
    net.eventually("node up", Duration::from_secs(30), || async { net.health(0).await }).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s: Value =
        net.http.get(format!("{}/admin/v1/status", net.api(0))).bearer_auth(&admin).send().await?.json().await?;
    assert_eq!(s["halted"], true, "still halted after the restart: {s}");
    assert!(!settled(&net, &id).await);
    net.http.post(format!("{}/admin/v1/resume", net.api(0))).bearer_auth(&admin).send().await?;
    net.eventually("settled after resume", Duration::from_secs(30), || async {
        settled(&net, &id).await.then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}
