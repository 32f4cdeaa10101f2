//! What anyone on the chain, or one bad provider, can do to the network, injected for real:
//! a stranger lands the keeper's `settle` call first, wrapped in a contract of its own; a reorg
//! drops a settlement the merchant was already told about; a provider reports a stale nonce.

use crate::harness::{Options, Testnet};
use alloy::consensus::{Transaction, TxEnvelope};
use alloy::network::EthereumWallet;
use alloy::network::eip2718::Decodable2718;
use alloy::primitives::{B256, Bytes};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::sol_types::SolCall;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_consensus::receipt::Receipt;
use settleproof_contracts::{Relay, Settlement};
use settleproof_rpc_proxy::Fault;
use std::time::Duration;

const WEI: &str = "1000000000000000";

async fn paid_invoice(net: &Testnet, i: usize) -> Result<String> {
    let (status, created) = net.create_invoice(i, json!({"amount": WEI, "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    net.pay(&created).await?;
    Ok(created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_relayed_through_a_wrapping_contract_is_recognised() -> Result<()> {
    let net = Testnet::start_with(Options { providers: 2, ..Options::default() }).await?;
    // Every provider of every node keeps the transactions sent through it, as a public mempool
    // an outsider reads, and lets none through.
    for i in 0..4 {
        for p in 0..2 {
            net.fault(i, p, Fault::HoldSends);
        }
    }
    let first = paid_invoice(&net, 0).await?;
    let raw = net
        .eventually("a keeper's settle transaction", Duration::from_secs(60), || async {
            net.proxies.iter().flatten().flat_map(|p| p.held()).next()
        })
        .await?;
    let bytes: Bytes = raw.parse()?;
    let envelope = TxEnvelope::decode_2718(&mut bytes.as_ref()).map_err(|e| eyre!("held transaction: {e}"))?;
    let call = Settlement::settleCall::abi_decode(envelope.input())?;

    // A stranger lifts the call and lands it first, from a contract of its own.
    let stranger = EthereumWallet::from(net.anvil.keys[2].clone());
    let chain = ProviderBuilder::new().wallet(stranger).connect_http(net.anvil.url.parse()?);
    let relay = Relay::deploy(&chain).await?;
    let relayed =
        relay.forward(net.devnet.deployment.settlement, envelope.input().clone()).send().await?.get_receipt().await?;
    assert!(relayed.status(), "the relayed settlement lands");
    for i in 0..4 {
        for p in 0..2 {
            net.fault(i, p, Fault::None);
        }
    }

    // Every node knows the settlement from its event, and the merchant gets a receipt that
    // checks out on chain.
    let body = net.webhook_for(&first, Duration::from_secs(60)).await?;
    assert_eq!(body["data"]["settlement"]["round"], call.round, "{body}");
    let failed = net.receipt_failures(&body).await?;
    assert!(failed.is_empty(), "receipt of a relayed settlement: {failed:?}");
    let events: Vec<_> = net.settlements().await?.into_iter().filter(|e| e.round == call.round).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].submitter, *relay.address(), "the relay submitted it");
    for i in 0..4 {
        net.eventually("the relayed settlement on every node", Duration::from_secs(30), || async {
            let (_, v) = net.get_invoice(i, &first).await.ok()?;
            (v["settled"] == true).then_some(())
        })
        .await?;
    }
    // And the watchers moved on: a later payment settles and is notified too.
    let second = paid_invoice(&net, 1).await?;
    let body = net.webhook_for(&second, Duration::from_secs(60)).await?;
    assert!(net.receipt_failures(&body).await?.is_empty());
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_of_a_foreign_settlement_contract_is_rejected_when_the_merchant_pins_its_own() -> Result<()> {
    let net = Testnet::start(4).await?;
    let id = paid_invoice(&net, 0).await?;
    let body = net.webhook_for(&id, Duration::from_secs(60)).await?;
    let genuine: Receipt = serde_json::from_value(body["data"]["receipt"].clone())?;

    // One operator deploys a settlement contract of its own, with its own key as the whole
    // operator set, settles the same batch there and hands the merchant a receipt for it.
    let forger = EthereumWallet::from(net.anvil.keys[3].clone());
    let chain = ProviderBuilder::new().wallet(forger).connect_http(net.anvil.url.parse()?);
    let key = settleproof_consensus::BlsSecretKey::from_ikm(&[42; 32])?;
    let entry = settleproof_contracts::OperatorEntry {
        record: settleproof_consensus::OperatorRecord {
            name: "forger".into(),
            account: net.anvil.keys[3].address(),
            peer_id: Bytes::from(vec![7u8; 38]),
            p2p_addr: "/ip4/127.0.0.1/tcp/1".into(),
            bls: key.public_key(),
        },
        proof_of_possession: Bytes::from(key.prove_possession().to_eip2537().to_vec()),
    };
    let spec = settleproof_contracts::spec_of(0, 0, 1, std::slice::from_ref(&entry));
    // The same schedule as the genuine contract, so the forged batch covers the same blocks.
    let foreign = Settlement::deploy(
        &chain,
        spec.set_hash(),
        net.devnet.deployment.start_block,
        net.devnet.nodes[0].1.rounds.length_blocks,
        100,
        10,
    )
    .await?;
    let forger_account = net.anvil.keys[3].address();
    settleproof_contracts::stage_set(&foreign, forger_account, &spec, &[entry]).await?;
    settleproof_contracts::commit_epoch(&foreign, forger_account, &spec, alloy::primitives::U256::ZERO, Bytes::new())
        .await?;
    let b = genuine.batch;
    let message = b.message(genuine.chain_id, *foreign.address());
    let signature = Bytes::from(key.sign(message.as_slice()).to_eip2537().to_vec());
    let public = Bytes::from(key.public_key().to_eip2537().to_vec());
    foreign
        .call_builder(&settleproof_contracts::settle_call(&b, alloy::primitives::U256::from(1), signature.clone()))
        .send()
        .await?
        .get_receipt()
        .await?;
    let forged = Receipt {
        settlement_contract: *foreign.address(),
        batch_message: message,
        signers: vec![0],
        signer_bitmap: alloy::primitives::U256::from(1),
        signer_keys: vec![public],
        aggregate_signature: signature,
        ..genuine.clone()
    };
    let check = |r: Receipt, trusted: alloy::primitives::Address| {
        let provider = net.provider();
        async move {
            let mut checks = r.verify_offchain();
            checks.extend(settleproof_node::receipt::verify_onchain(&provider?, &r, trusted).await);
            Ok::<_, eyre::Report>(checks.into_iter().filter(|c| !c.ok).map(|c| c.name).collect::<Vec<_>>())
        }
    };
    // Trusting the address written in the receipt, the forgery passes every check.
    assert!(check(forged.clone(), *foreign.address()).await?.is_empty(), "the forgery is self-consistent");
    // With the merchant's pinned contract it fails.
    let failed = check(forged, net.devnet.deployment.settlement).await?;
    assert!(failed.contains(&"pinned_settlement"), "{failed:?}");
    assert!(failed.contains(&"registered_signers"), "{failed:?}");
    assert!(check(genuine, net.devnet.deployment.settlement).await?.is_empty());
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_dropped_by_a_reorg_is_submitted_again() -> Result<()> {
    // Three confirmations leave the window in which the keeper has its receipt (and the
    // merchant its webhook) but the settlement can still leave the chain.
    let net = Testnet::start_with(Options { confirmations: 3, ..Options::default() }).await?;
    let id = paid_invoice(&net, 0).await?;
    let body = net.webhook_for(&id, Duration::from_secs(60)).await?;
    let round = body["data"]["settlement"]["round"].as_u64().ok_or_else(|| eyre!("no round"))?;
    let dropped: B256 = body["data"]["settlement"]["tx_hash"].as_str().ok_or_else(|| eyre!("no tx"))?.parse()?;
    let chain = net.provider()?;
    let mined = chain.get_transaction_receipt(dropped).await?.ok_or_else(|| eyre!("settlement receipt"))?;
    let block = mined.block_number.ok_or_else(|| eyre!("block"))?;
    let head = chain.get_block_number().await?;
    assert!(head < block + 3, "the settlement is still above the confirmation depth (head {head}, block {block})");
    let _: Value = chain.raw_request("anvil_reorg".into(), (head - block + 1, Vec::<Value>::new())).await?;
    assert!(chain.get_transaction_receipt(dropped).await?.is_none(), "the reorg dropped the settlement");

    // The same batch goes out again and is the one every node records.
    let keeper = (round % 4) as usize;
    let again = net
        .eventually("the round settled again", Duration::from_secs(60), || async {
            let events: Vec<_> = net.settlements().await.ok()?.into_iter().filter(|e| e.round == round).collect();
            (!events.is_empty()).then_some(events)
        })
        .await?;
    assert_eq!(again.len(), 1, "settled once on the canonical chain");
    assert_eq!(again[0].root.to_string(), body["data"]["settlement"]["root"].as_str().unwrap_or_default());
    for i in 0..4 {
        net.eventually("every node records the settlement the chain holds", Duration::from_secs(30), || async {
            let (_, v) = net.get_invoice(i, &id).await.ok()?;
            let tx = v["payments"][0]["settlement"]["tx_hash"].as_str()?.parse::<B256>().ok()?;
            (tx != dropped && chain.get_transaction_receipt(tx).await.ok()?.is_some()).then_some(())
        })
        .await?;
    }
    assert!(net.metric(keeper, "keeper_resubmissions_total").await >= 1.0, "the keeper submitted again");
    // The receipt the merchant already holds stays valid: it checks the round's root on chain.
    let failed = net.receipt_failures(&body).await?;
    assert!(failed.is_empty(), "the first receipt after the resubmission: {failed:?}");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_nonce_provider_does_not_halt_the_keeper() -> Result<()> {
    let net = Testnet::start_with(Options { providers: 3, ..Options::default() }).await?;
    // The first provider of every node (the one transactions go out through) reports nonce 0.
    for i in 0..4 {
        net.fault(i, 0, Fault::StaleNonce);
    }
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(paid_invoice(&net, k).await?);
        net.webhook_for(&ids[k], Duration::from_secs(60)).await?;
    }
    for i in 0..4 {
        let health = net.health(i).await.ok_or_else(|| eyre!("node {i} health"))?;
        assert_eq!(health["chains"][0]["checks"]["settlement"]["halted"], false, "node {i}: {health}");
        assert_eq!(net.metric(i, "keeper_nonce_desync_total").await, 0.0, "node {i} saw no desync");
    }
    net.stop().await;
    Ok(())
}
