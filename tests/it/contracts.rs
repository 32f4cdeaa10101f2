//! The contracts on a real anvil: payments go straight to the merchant, the settlement contract
//! records a round once, refuses duplicates, outsiders and too few signers, and its batch
//! message is the one the nodes sign.

use crate::harness::Anvil;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use eyre::Result;
use settleproof_consensus::{Batch, BlsSecretKey, BlsSignature};
use settleproof_contracts::{InvoicePayments, OperatorEntry, Settlement, deploy_all};

fn provider(anvil: &Anvil, key: &PrivateKeySigner) -> Result<DynProvider> {
    Ok(ProviderBuilder::new().wallet(EthereumWallet::from(key.clone())).connect_http(anvil.url.parse()?).erased())
}

fn revert(e: alloy::contract::Error) -> String {
    e.as_decoded_interface_error::<Settlement::SettlementErrors>()
        .map(|d| format!("{d:?}"))
        .or_else(|| e.as_decoded_interface_error::<InvoicePayments::InvoicePaymentsErrors>().map(|d| format!("{d:?}")))
        .unwrap_or_else(|| e.to_string())
}

fn bls_keys(n: usize) -> Vec<BlsSecretKey> {
    (0..n).map(|i| BlsSecretKey::from_ikm(&[i as u8 + 1; 32]).expect("ikm")).collect()
}

fn entry(account: &PrivateKeySigner, key: &BlsSecretKey) -> OperatorEntry {
    OperatorEntry {
        account: account.address(),
        bls_public_key: Bytes::from(key.public_key().to_eip2537().to_vec()),
        proof_of_possession: Bytes::from(key.prove_possession().to_eip2537().to_vec()),
    }
}

/// Signer bitmap, concatenated EIP-2537 keys and aggregate signature of `signers` over `message`.
fn quorum(keys: &[BlsSecretKey], signers: &[usize], message: &[u8]) -> (U256, Bytes, Bytes) {
    let bitmap = signers.iter().fold(U256::ZERO, |acc, i| acc | (U256::from(1u8) << *i));
    let pks: Vec<u8> = signers.iter().flat_map(|i| keys[*i].public_key().to_eip2537()).collect();
    let sigs: Vec<_> = signers.iter().map(|i| keys[*i].sign(message)).collect();
    let agg = BlsSignature::aggregate(&sigs).expect("non-empty");
    (bitmap, Bytes::from(pks), Bytes::from(agg.to_eip2537().to_vec()))
}

#[tokio::test]
async fn settlement_verifies_the_aggregate_and_records_each_round_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let deployer = provider(&anvil, &anvil.keys[0])?;
    let keys = bls_keys(4);
    let entries: Vec<OperatorEntry> = (0..4).map(|i| entry(&anvil.keys[2 + i], &keys[i])).collect();
    let d = deploy_all(deployer.clone(), &entries, 3).await?;
    // Anyone may submit: the signature, not the sender, is what counts.
    let anyone = Settlement::new(d.settlement, provider(&anvil, &anvil.keys[1])?);

    let batch = Batch { round: 7, from_block: 10, to_block: 14, root: B256::repeat_byte(0xab), leaf_count: 3 };
    let chain_id = deployer.get_chain_id().await?;
    let on_chain =
        anyone.batchMessage(batch.round, batch.from_block, batch.to_block, batch.root, batch.leaf_count).call().await?;
    let message = batch.message(chain_id, d.settlement);
    assert_eq!(on_chain, message, "nodes sign what the contract computes");

    macro_rules! settle {
        ($round:expr, $root:expr, $q:expr) => {{
            let (bitmap, keys, sig) = $q;
            anyone.settle($round, batch.from_block, batch.to_block, $root, batch.leaf_count, bitmap, keys, sig)
        }};
    }
    let good = quorum(&keys, &[0, 1, 3], message.as_slice());
    let cases: Vec<(&str, (U256, Bytes, Bytes), &str)> = vec![
        ("two signers", quorum(&keys, &[0, 1], message.as_slice()), "InsufficientSigners"),
        ("signer outside the set", (good.0 | (U256::from(1u8) << 4), good.1.clone(), good.2.clone()), "UnknownSigner"),
        ("signature over another message", quorum(&keys, &[0, 1, 3], b"another batch"), "InvalidSignature"),
        (
            "bitmap claims a signer who did not sign",
            (U256::from(0b1011u8), good.1.clone(), quorum(&keys, &[0, 1, 2], message.as_slice()).2),
            "InvalidSignature",
        ),
        (
            "key of another operator for a signer",
            (good.0, quorum(&keys, &[0, 1, 2], message.as_slice()).1, good.2.clone()),
            "WrongSignerKey",
        ),
        ("keys missing", (good.0, Bytes::from(good.1[..256].to_vec()), good.2.clone()), "InvalidSignerKeysLength"),
    ];
    for (what, q, want) in cases {
        let err = settle!(7, batch.root, q).call().await.expect_err(what);
        let got = revert(err);
        assert!(got.contains(want), "{what}: expected {want}, got {got}");
    }

    let receipt = settle!(7, batch.root, good.clone()).send().await?.get_receipt().await?;
    assert!(receipt.status());
    assert_eq!(anyone.settledRoot(7).call().await?, batch.root);
    let err = settle!(7, B256::repeat_byte(1), good.clone()).call().await.expect_err("same round");
    assert!(revert(err).contains("RoundAlreadySettled"));
    let other = Batch { round: 8, ..batch };
    let err = settle!(8, batch.root, quorum(&keys, &[0, 1, 3], other.message(chain_id, d.settlement).as_slice()))
        .call()
        .await
        .expect_err("same root");
    assert!(revert(err).contains("RootAlreadySettled"));
    Ok(())
}

#[tokio::test]
async fn registration_requires_a_proof_of_possession() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let deployer = provider(&anvil, &anvil.keys[0])?;
    let keys = bls_keys(2);
    let mut entries: Vec<OperatorEntry> = (0..2).map(|i| entry(&anvil.keys[2 + i], &keys[i])).collect();
    // Operator 1 presents operator 0's proof: it does not prove possession of its own key.
    entries[1].proof_of_possession = entries[0].proof_of_possession.clone();
    let err = deploy_all(deployer.clone(), &entries, 2).await.expect_err("rogue key");
    let text = match err {
        settleproof_contracts::DeployError::Contract { source, .. } => revert(source),
        other => other.to_string(),
    };
    assert!(text.contains("InvalidProofOfPossession"), "{text}");

    // The identity (all-zero) key with the identity as its "proof" is refused: it would add
    // nothing to an aggregate while counting as a signer.
    entries[1].bls_public_key = Bytes::from(vec![0u8; 128]);
    entries[1].proof_of_possession = Bytes::from(vec![0u8; 256]);
    // A new provider: the failed deployment above left the old one's cached nonce ahead.
    let deployer = provider(&anvil, &anvil.keys[0])?;
    let err = deploy_all(deployer, &entries, 2).await.expect_err("identity key");
    let text = match err {
        settleproof_contracts::DeployError::Contract { source, .. } => revert(source),
        other => other.to_string(),
    };
    assert!(text.contains("IdentityPublicKey"), "{text}");
    Ok(())
}

#[tokio::test]
async fn payments_go_straight_to_the_merchant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let deployer = provider(&anvil, &anvil.keys[0])?;
    let d = deploy_all(deployer, &[entry(&anvil.keys[2], &bls_keys(1)[0])], 1).await?;
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
