//! Operator sets that change by epochs on a real anvil: an update is accepted only with a
//! threshold of the current set over the next set's hash, takes effect at its start round,
//! leaves the old set a grace period for its last rounds, and keeps old receipts checkable.
//! A set of 128 operators registers in several transactions.

use crate::harness::Anvil;
use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use eyre::Result;
use settleproof_consensus::{BlsPublicKey, BlsSignature, SetChange};
use settleproof_contracts::{SettlementParams, spec_of, stage_set};
use settleproof_tests::sets::{self, bls_keys, entries, entry};

const PARAMS: SettlementParams = SettlementParams { round_blocks: 2, grace_blocks: 6, lead_blocks: 4 };

#[tokio::test]
async fn an_update_needs_a_threshold_of_the_current_set_and_applies_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let old = bls_keys(10, 4);
    let chain = sets::deploy(&anvil, &old, 3, PARAMS).await?;
    let current = spec_of(0, 0, 3, &entries(&old));

    // Epoch 1 rotates op-0's key and adds op-4.
    let mut new_keys = old.clone();
    new_keys[0] = bls_keys(11, 1).remove(0);
    new_keys.push(bls_keys(12, 1).remove(0));
    let start = chain.current_round().await? + 6;
    let rotated = current
        .apply(&SetChange::Rotate { name: "op-0".into(), bls: Some(new_keys[0].public_key()), account: None }, start)?;
    let mut next_entries = entries(&new_keys);
    next_entries[4] = entry("op-4", &new_keys[4]);
    let next = rotated.apply(&SetChange::Add { operator: next_entries[4].record.clone() }, start + 1)?;
    let next = settleproof_consensus::OperatorSetSpec { epoch: 1, start_round: start, ..next };
    stage_set(&chain.settlement(), chain.deployer, &next, &next_entries).await?;
    let message = chain.update_message(&next);

    type Case<'a> = (&'a str, &'a [settleproof_consensus::BlsSecretKey], &'a [usize], B256, &'a str);
    let cases: Vec<Case> = vec![
        ("too few of the old set", &old, &[0, 1], message, "InsufficientSigners"),
        ("the new set instead of the old", &new_keys, &[0, 1, 2], message, "InvalidSignature"),
        ("the old set over another set", &old, &[0, 1, 2], B256::repeat_byte(3), "InvalidSignature"),
    ];
    for (what, keys, signers, msg, want) in cases {
        let err = chain.commit(&next, keys, signers, msg).await.expect_err(what);
        assert!(err.contains(want), "{what}: expected {want}, got {err}");
    }
    // A set whose hash names other parameters than the staged one does not commit.
    let mut other = next.clone();
    other.threshold = 4;
    let err = chain.commit(&other, &old, &[0, 1, 2], chain.update_message(&other)).await.expect_err("other set");
    assert!(err.contains("NothingStaged"), "{err}");

    chain.commit(&next, &old, &[0, 2, 3], message).await.map_err(|e| eyre::eyre!(e))?;
    let s = chain.settlement();
    assert_eq!(s.epochCount().call().await?, 2);
    let e0 = s.epochInfo(0).call().await?;
    assert_eq!((e0.startRound, e0.endRound), (0, start));
    let e1 = s.epochInfo(1).call().await?;
    assert_eq!((e1.startRound, e1.threshold, e1.count), (start, 3, 5));
    assert_eq!(BlsPublicKey::from_eip2537(&s.operatorKey(1, U256::ZERO).call().await?)?, new_keys[0].public_key());
    assert_eq!(BlsPublicKey::from_eip2537(&s.operatorKey(0, U256::ZERO).call().await?)?, old[0].public_key());

    let err = chain.commit(&next, &old, &[0, 2, 3], message).await.expect_err("replayed update");
    assert!(err.contains("WrongEpoch"), "{err}");

    // Epoch 2 must start after epoch 1 and leave the nodes time to follow.
    let soon = settleproof_consensus::OperatorSetSpec { epoch: 2, start_round: start, ..next.clone() };
    stage_set(&chain.settlement(), chain.deployer, &soon, &next_entries).await?;
    let err = chain.commit(&soon, &new_keys, &[0, 1, 2], chain.update_message(&soon)).await.expect_err("same start");
    assert!(err.contains("InvalidStartRound"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_old_set_settles_until_its_grace_ends_and_its_receipts_stay_checkable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let old = bls_keys(20, 4);
    let chain = sets::deploy(&anvil, &old, 3, PARAMS).await?;
    let r0 = chain.current_round().await?;
    chain.close(r0).await?;
    let b0 = chain.batch(0, r0, B256::repeat_byte(0xa0)).await;
    chain.settle(&b0, &old, &[0, 1, 2]).await.map_err(|e| eyre::eyre!(e))?;

    let mut new_keys = old.clone();
    new_keys[3] = bls_keys(21, 1).remove(0);
    let start = chain.current_round().await? + 4;
    let current = spec_of(0, 0, 3, &entries(&old));
    let next = current
        .apply(&SetChange::Rotate { name: "op-3".into(), bls: Some(new_keys[3].public_key()), account: None }, start)?;
    stage_set(&chain.settlement(), chain.deployer, &next, &entries(&new_keys)).await?;
    chain.commit(&next, &old, &[0, 1, 2], chain.update_message(&next)).await.map_err(|e| eyre::eyre!(e))?;

    // Before the boundary: the old set settles, the new one cannot yet.
    let r1 = chain.current_round().await?;
    chain.close(r1).await?;
    let err = chain
        .settle(&chain.batch(1, r1, B256::repeat_byte(0xa1)).await, &new_keys, &[0, 1, 3])
        .await
        .expect_err("early");
    assert!(err.contains("RoundNotInEpoch"), "{err}");
    chain
        .settle(&chain.batch(0, r1, B256::repeat_byte(0xa1)).await, &old, &[1, 2, 3])
        .await
        .map_err(|e| eyre::eyre!(e))?;

    // After the boundary: the new set settles its rounds, the old one only the rounds before
    // the boundary, and only during the grace period.
    chain.close(start).await?;
    let err = chain
        .settle(&chain.batch(0, start, B256::repeat_byte(0xa2)).await, &old, &[0, 1, 2])
        .await
        .expect_err("old set, new round");
    assert!(err.contains("RoundNotInEpoch"), "{err}");
    chain
        .settle(&chain.batch(1, start, B256::repeat_byte(0xa2)).await, &new_keys, &[0, 1, 3])
        .await
        .map_err(|e| eyre::eyre!(e))?;
    let late = start - 1;
    let s = chain.settlement();
    let expiry = s.expiresAt(start).call().await?;
    let head = chain.p.get_block_number().await?;
    assert!(U256::from(head) < expiry, "still inside the grace period");
    chain.mine(expiry.to::<u64>() - head).await?;
    let err = chain
        .settle(&chain.batch(0, late, B256::repeat_byte(0xa3)).await, &old, &[0, 1, 2])
        .await
        .expect_err("past grace");
    assert!(err.contains("EpochExpired"), "{err}");

    // The receipt of round r0 (epoch 0) still checks: on chain, the root is recorded and the
    // keys of epoch 0 are served; off chain, the event's aggregate verifies against them.
    assert_eq!(s.settledRoot(r0).call().await?, b0.root);
    let mut keys = Vec::new();
    for i in 0..3u64 {
        keys.push(BlsPublicKey::from_eip2537(&s.operatorKey(0, U256::from(i)).call().await?)?);
    }
    let logs = chain
        .p
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(chain.d.settlement)
                .event_signature(settleproof_contracts::Settlement::Settled::SIGNATURE_HASH)
                .from_block(0),
        )
        .await?;
    let settled = logs
        .iter()
        .filter_map(|l| l.log_decode::<settleproof_contracts::Settlement::Settled>().ok())
        .find(|l| l.inner.data.round == r0)
        .ok_or_else(|| eyre::eyre!("no Settled event of round {r0}"))?;
    let sig = BlsSignature::from_eip2537(&settled.inner.data.signature)?;
    sig.verify_aggregate(&keys, b0.message(chain.chain_id, chain.d.settlement).as_slice())?;
    assert_eq!(settled.inner.data.epoch, 0);
    Ok(())
}

#[tokio::test]
async fn a_set_of_128_operators_registers_in_several_transactions_and_settles() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let keys = bls_keys(30, 128);
    let before = {
        let p = sets::provider(&anvil, &anvil.keys[0])?;
        p.get_block_number().await?
    };
    let chain = sets::deploy(&anvil, &keys, 86, PARAMS).await?;
    let mut staging = Vec::new();
    for b in before + 1..=chain.p.get_block_number().await? {
        for r in chain.p.get_block_receipts(b.into()).await?.unwrap_or_default() {
            if r.to == Some(chain.d.settlement) {
                staging.push(r.gas_used);
            }
        }
    }
    // Four chunks of 32 and the commit, each far below a block (and the 2^24 per-transaction cap).
    assert_eq!(staging.len(), 5, "{staging:?}");
    assert!(staging.iter().all(|g| *g < 16_777_216), "{staging:?}");
    let info = chain.settlement().epochInfo(0).call().await?;
    assert_eq!((info.count, info.threshold), (128, 86));
    let round = chain.current_round().await?;
    chain.close(round).await?;
    let signers: Vec<usize> = (0..128).filter(|i| i % 4 != 1).take(86).collect();
    chain
        .settle(&chain.batch(0, round, B256::repeat_byte(0x80)).await, &keys, &signers)
        .await
        .map_err(|e| eyre::eyre!(e))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_approve_only_a_proposal_of_the_set_they_read_and_follow_the_change() -> Result<()> {
    use settleproof_node::proposal::{Proposal, chain_sets};
    let net = crate::harness::Testnet::start(4).await?;
    let settlement = net.devnet.deployment.settlement;
    let admin = |i: usize, path: &str| format!("{}/admin/v1/{path}", net.admin(i));
    let token = net.devnet.admin_token.expose().to_string();
    let epochs_read = |i: usize| {
        let (url, token, http) = (admin(i, "operator-sets"), token.clone(), net.http.clone());
        async move {
            let v: serde_json::Value = http.get(url).bearer_auth(token).send().await.ok()?.json().await.ok()?;
            v["epochs"].as_array().map(Vec::len)
        }
    };
    net.eventually("epoch 0 read by node 0", std::time::Duration::from_secs(30), || async {
        epochs_read(0).await.filter(|n| *n >= 1)
    })
    .await?;
    let provider = net.provider()?;
    let current = chain_sets(&provider, settlement).await?.pop().ok_or_else(|| eyre::eyre!("no set"))?;
    let chain_id = provider.get_chain_id().await?;
    let mut proposal = Proposal::new(
        chain_id,
        settlement,
        current.clone(),
        SetChange::Threshold { threshold: 4 },
        10_000,
        Default::default(),
    )?;

    // A file whose "current" set has another key under node-1's name is refused, whatever it
    // proposes: the node compares it with the set it read through its providers.
    let mut forged = proposal.clone();
    forged.current.operators[1].bls = bls_keys(40, 1)[0].public_key();
    forged.next = forged.current.apply(&forged.change, 10_000)?;
    forged.set_hash = forged.next.set_hash();
    forged.update_message = settleproof_consensus::update_message(chain_id, settlement, forged.set_hash);
    let r = net.http.post(admin(0, "operator-sets/approve")).bearer_auth(&token).json(&forged).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await?;
    assert!(body.to_string().contains("not the chain's latest"), "{body}");

    // Each operator approves the same fresh file on its own node; the approvals meet by gossip.
    for i in 0..3 {
        let r = net.http.post(admin(i, "operator-sets/approve")).bearer_auth(&token).json(&proposal).send().await?;
        assert_eq!(r.status().as_u16(), 200, "node {i}");
        let approved: Proposal = r.json().await?;
        assert!(approved.signatures.contains_key(&format!("node-{i}")), "node {i} approved");
    }
    let set_hash = proposal.set_hash.to_string();
    let heard = net
        .eventually("node 3 heard the three approvals", std::time::Duration::from_secs(30), || async {
            let v: serde_json::Value =
                net.http.get(admin(3, "operator-sets")).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
            let entry = v["approvals"].as_array()?.iter().find(|a| a["set_hash"] == set_hash.as_str())?.clone();
            (entry["approved_by"].as_array()?.len() == 3).then_some(entry)
        })
        .await?;
    assert_eq!(heard["approved_by"], serde_json::json!(["node-0", "node-1", "node-2"]));
    // Node 3, which approved nothing, hands out the proposal with all three approvals.
    let r = net.http.post(admin(3, "operator-sets/collect")).bearer_auth(&token).json(&proposal).send().await?;
    assert_eq!(r.status().as_u16(), 200);
    proposal = r.json().await?;
    assert_eq!(proposal.approvals()?.len(), 3);
    let (bitmap, signature) = proposal.aggregate()?;
    let submitter = sets::provider(&net.anvil, &net.anvil.keys[7])?;
    let s = settleproof_contracts::Settlement::new(settlement, &submitter);
    let stager = net.anvil.keys[7].address();
    stage_set(&s, stager, &proposal.next, &proposal.entries()).await?;
    settleproof_contracts::commit_epoch(&s, stager, &proposal.next, bitmap, signature).await?;
    for i in 0..4 {
        net.eventually("epoch 1 read by every node", std::time::Duration::from_secs(30), || async {
            epochs_read(i).await.filter(|n| *n >= 2)
        })
        .await?;
    }
    net.stop().await;
    Ok(())
}

/// A set staged after 3,000 blocks of history is read from the blocks just before its commit:
/// a node reading it (100 blocks a read here) asks the providers once or twice, not once per
/// `max_log_range` blocks since the chain's start (30 reads here; a year of 2-s blocks read
/// 1,000 at a time would be about 15,700 per set change).
#[tokio::test]
async fn a_staged_set_is_read_from_the_blocks_before_its_commit_not_from_the_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let old = bls_keys(20, 4);
    let chain = sets::deploy(&anvil, &old, 3, PARAMS).await?;
    chain.mine(3_000).await?;
    let mut next = spec_of(1, chain.current_round().await? + 6, 3, &entries(&old));
    next.threshold = 2;
    stage_set(&chain.settlement(), chain.deployer, &next, &entries(&old)).await?;
    chain.commit(&next, &old, &[0, 1, 2], chain.update_message(&next)).await.map_err(|e| eyre::eyre!(e))?;
    let head = chain.p.get_block_number().await?;
    let logs = chain
        .p
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(chain.d.settlement)
                .event_signature(settleproof_contracts::Settlement::EpochCommitted::SIGNATURE_HASH)
                .from_block(head.saturating_sub(10))
                .to_block(head),
        )
        .await?;
    let log = logs.last().ok_or_else(|| eyre::eyre!("no EpochCommitted"))?;
    let commit = settleproof_node::chain::EpochCommit {
        event: settleproof_contracts::Settlement::EpochCommitted::decode_log_data(log.data())?,
        block_number: log.block_number.unwrap_or(head),
    };

    let mut cfg = settleproof_config::NodeConfig::from_toml_str(settleproof_config::EXAMPLE, std::iter::empty())?
        .chains
        .remove(0);
    (cfg.chain_id, cfg.rpc_endpoints, cfg.rpc_quorum) = (chain.chain_id, vec![anvil.url.clone()], 1);
    (cfg.settlement_contract, cfg.payments_contract) = (chain.d.settlement, chain.d.payments);
    (cfg.start_block, cfg.max_log_range) = (chain.d.start_block, 100);
    let client =
        settleproof_node::chain::ChainClient::new(&cfg, alloy::primitives::Address::ZERO, &reqwest::Client::new())?;
    // Every provider call is counted (this test's thread only).
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let spec = {
        let _counting = metrics::set_default_local_recorder(&recorder);
        client.staged_set(&commit, cfg.start_block, cfg.max_log_range).await?
    };
    assert_eq!(spec.set_hash(), next.set_hash());
    let calls: f64 = handle
        .render()
        .lines()
        .filter(|l| l.starts_with("rpc_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!((1.0..=3.0).contains(&calls), "{calls} provider calls to read one staged set");
    Ok(())
}
