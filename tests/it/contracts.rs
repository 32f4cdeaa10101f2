//! The contracts on a real anvil: payments go straight to the merchant, the settlement contract
//! records a round once, refuses outsiders, too few signers, batches that are not the round's
//! and batches of another fork, and its batch message is the one the nodes sign. Staging refuses rogue, identity
//! and duplicate keys.

use crate::harness::Anvil;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use eyre::Result;
use settleproof_contracts::{InvoicePayments, Settlement, SettlementParams};
use settleproof_tests::sets::{self, bls_keys, entries, provider, quorum};

const PARAMS: SettlementParams = SettlementParams { round_blocks: 2, grace_blocks: 20, lead_blocks: 4 };

fn revert(e: alloy::contract::Error) -> String {
    e.as_decoded_interface_error::<InvoicePayments::InvoicePaymentsErrors>()
        .map(|d| format!("{d:?}"))
        .unwrap_or_else(|| sets::revert(e))
}

#[tokio::test]
async fn settlement_verifies_the_aggregate_and_records_each_round_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let keys = bls_keys(1, 4);
    let chain = sets::deploy(&anvil, &keys, 3, PARAMS).await?;
    // Anyone may submit: the signature, not the sender, is what counts.
    let anyone = Settlement::new(chain.d.settlement, provider(&anvil, &anvil.keys[1])?);
    let round = chain.current_round().await? + 1;
    let open = chain.batch(0, round, B256::repeat_byte(0xab)).await;
    assert!(chain.settle(&open, &keys, &[0, 1, 3]).await.expect_err("open round").contains("InvalidBlockRange"));
    chain.close(round).await?;
    let batch = chain.batch(0, round, B256::repeat_byte(0xab)).await;
    assert!(!batch.to_block_hash.is_zero());
    let on_chain = anyone
        .batchMessage(
            batch.epoch,
            batch.round,
            batch.from_block,
            batch.to_block,
            batch.to_block_hash,
            batch.root,
            batch.leaf_count,
        )
        .call()
        .await?;
    let message = batch.message(chain.chain_id, chain.d.settlement);
    assert_eq!(on_chain, message, "nodes sign what the contract computes");

    macro_rules! settle {
        ($b:expr, $q:expr) => {{
            let b = $b;
            let (bitmap, sig) = $q;
            anyone.call_builder(&settleproof_contracts::settle_call(&b, bitmap, sig))
        }};
    }
    // Built on another fork, and signed as such by a quorum: refused while the chain knows the
    // hash of the round's last block.
    let forked = settleproof_consensus::Batch { to_block_hash: B256::repeat_byte(0x99), ..batch };
    let forked_sig = quorum(&keys, &[0, 1, 3], forked.message(chain.chain_id, chain.d.settlement).as_slice());
    let good = quorum(&keys, &[0, 1, 3], message.as_slice());
    let shifted =
        settleproof_consensus::Batch { from_block: batch.from_block + 1, to_block: batch.to_block + 1, ..batch };
    let cases: Vec<(&str, settleproof_consensus::Batch, (U256, Bytes), &str)> = vec![
        ("two signers", batch, quorum(&keys, &[0, 1], message.as_slice()), "InsufficientSigners"),
        ("signer outside the set", batch, (good.0 | (U256::from(1u8) << 4), good.1.clone()), "UnknownSigner"),
        ("signature over another message", batch, quorum(&keys, &[0, 1, 3], b"another batch"), "InvalidSignature"),
        (
            "bitmap claims a signer who did not sign",
            batch,
            (U256::from(0b1011u8), quorum(&keys, &[0, 1, 2], message.as_slice()).1),
            "InvalidSignature",
        ),
        ("identity signature", batch, (good.0, Bytes::from(vec![0u8; 128])), "InvalidSignature"),
        ("short signature", batch, (good.0, Bytes::from(good.1[..64].to_vec())), "InvalidSignatureLength"),
        ("epoch never committed", settleproof_consensus::Batch { epoch: 1, ..batch }, good.clone(), "UnknownEpoch"),
        ("blocks that are not the round's", shifted, good.clone(), "InvalidBlockRange"),
        ("zero root", settleproof_consensus::Batch { root: B256::ZERO, ..batch }, good.clone(), "ZeroRoot"),
        ("a batch of another fork", forked, forked_sig, "NotOnThisChain"),
    ];
    for (what, b, q, want) in cases {
        let err = settle!(b, q).call().await.expect_err(what);
        let got = revert(err);
        assert!(got.contains(want), "{what}: expected {want}, got {got}");
    }

    let receipt = settle!(batch, good.clone()).send().await?.get_receipt().await?;
    assert!(receipt.status());
    assert_eq!(anyone.settledRoot(round).call().await?, batch.root);
    let again = settleproof_consensus::Batch { root: B256::repeat_byte(1), ..batch };
    let err = chain.settle(&again, &keys, &[0, 1, 2]).await.expect_err("same round");
    assert!(err.contains("RoundAlreadySettled"), "{err}");
    Ok(())
}

/// A batch names the hash of its round's last block; the contract checks it against the chain
/// past the 256 blocks `blockhash` covers, through the EIP-2935 history contract, so a batch a
/// quorum signed on a fork that a reorg replaced never settles the round.
#[tokio::test]
async fn a_batch_of_another_fork_is_refused_after_blockhash_forgets_the_block() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let keys = bls_keys(4, 4);
    let chain = sets::deploy(&anvil, &keys, 3, PARAMS).await?;
    let round = chain.current_round().await? + 1;
    chain.close(round).await?;
    chain.mine(300).await?;
    let batch = chain.batch(0, round, B256::repeat_byte(0xcd)).await;
    let s = chain.settlement();
    assert_eq!(s.chainBlockHash(U256::from(batch.to_block)).call().await?, batch.to_block_hash, "from the history");
    let forked = settleproof_consensus::Batch { to_block_hash: B256::repeat_byte(0x99), ..batch };
    let err = chain.settle(&forked, &keys, &[0, 1, 2]).await.expect_err("another fork");
    assert!(err.contains("NotOnThisChain"), "{err}");
    chain.settle(&batch, &keys, &[0, 1, 2]).await.map_err(|e| eyre::eyre!(e))?;
    assert_eq!(s.settledRoot(round).call().await?, batch.root);
    Ok(())
}

#[tokio::test]
async fn staging_refuses_rogue_identity_and_duplicate_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let keys = bls_keys(2, 3);
    let chain = sets::deploy(&anvil, &keys[..1], 1, PARAMS).await?;
    // An outsider stages whatever it likes under its own account: each chunk is checked.
    let outsider = Settlement::new(chain.d.settlement, provider(&anvil, &anvil.keys[1])?);
    let good = entries(&keys);
    let sol = settleproof_contracts::OperatorEntry::to_sol;
    let mut rogue = sol(&good[1]);
    rogue.proofOfPossession = good[0].proof_of_possession.clone();
    let mut missing = sol(&good[1]);
    missing.proofOfPossession = Bytes::new();
    let mut identity = sol(&good[1]);
    identity.blsPublicKey = Bytes::from(vec![0u8; 256]);
    identity.proofOfPossession = Bytes::from(vec![0u8; 128]);
    let mut same_key = sol(&good[2]);
    same_key.blsPublicKey = sol(&good[1]).blsPublicKey;
    let mut same_account = sol(&good[2]);
    same_account.account = good[1].record.account;
    let mut zero_account = sol(&good[1]);
    zero_account.account = Address::ZERO;
    let cases: Vec<(&str, Vec<Settlement::OperatorRecord>, &str)> = vec![
        ("another key's proof of possession", vec![rogue], "InvalidProofOfPossession"),
        ("no proof of possession", vec![missing], "InvalidProofOfPossession"),
        ("the identity key", vec![identity], "IdentityPublicKey"),
        ("a key twice", vec![sol(&good[1]), same_key], "DuplicateOperator"),
        ("an account twice", vec![sol(&good[1]), same_account], "DuplicateOperator"),
        ("the zero account", vec![zero_account], "ZeroOperator"),
        ("an empty chunk", vec![], "InvalidChunk"),
    ];
    for (what, records, want) in cases {
        let err = outsider.stageOperators(B256::repeat_byte(0x51), records).call().await.expect_err(what);
        let got = revert(err);
        assert!(got.contains(want), "{what}: expected {want}, got {got}");
    }
    Ok(())
}

#[tokio::test]
async fn payments_go_straight_to_the_merchant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let chain = sets::deploy(&anvil, &bls_keys(3, 1), 1, PARAMS).await?;
    let d = chain.d;
    let payer = provider(&anvil, &anvil.keys[1])?;
    let payments = InvoicePayments::new(d.payments, &payer);
    let merchant = Address::repeat_byte(0x42);
    let id = B256::repeat_byte(9);
    let receipt = payments.payNative(id, merchant).value(U256::from(777)).send().await?.get_receipt().await?;
    assert!(receipt.status());
    assert_eq!(payer.get_balance(merchant).await?, U256::from(777));
    assert_eq!(payer.get_balance(d.payments).await?, U256::ZERO, "the contract holds nothing");
    let log = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<InvoicePayments::InvoicePaid>().ok())
        .expect("InvoicePaid");
    assert_eq!(
        (log.inner.data.invoiceId, log.inner.data.merchant, log.inner.data.amount),
        (id, merchant, U256::from(777))
    );
    let err = payments.payNative(id, merchant).value(U256::ZERO).call().await.expect_err("zero amount");
    assert!(revert(err).contains("ZeroAmount"));
    let err = payments.payNative(id, Address::ZERO).value(U256::from(1)).call().await.expect_err("zero merchant");
    assert!(revert(err).contains("ZeroMerchant"));
    Ok(())
}
