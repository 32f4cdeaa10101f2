//! The contracts on a real anvil: payments go straight to the merchant, the settlement contract
//! records a round once, refuses duplicates, outsiders and too few signers, and its batch
//! message is the one the nodes sign.

use crate::harness::Anvil;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use eyre::Result;
use settleproof_consensus::{Batch, BlsSecretKey};
use settleproof_contracts::{InvoicePayments, OperatorEntry, Settlement, deploy_all};

fn provider(anvil: &Anvil, key: &PrivateKeySigner) -> Result<DynProvider> {
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(anvil.url.parse()?)
        .erased())
}

fn revert(e: alloy::contract::Error) -> String {
    e.as_decoded_interface_error::<Settlement::SettlementErrors>()
        .map(|d| format!("{d:?}"))
        .or_else(|| {
            e.as_decoded_interface_error::<InvoicePayments::InvoicePaymentsErrors>()
                .map(|d| format!("{d:?}"))
        })
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test]
async fn settlement_records_each_round_and_root_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let deployer = provider(&anvil, &anvil.keys[0])?;
    let ops: Vec<PrivateKeySigner> = anvil.keys[2..6].to_vec();
    let entries: Vec<OperatorEntry> = ops
        .iter()
        .enumerate()
        .map(|(i, k)| OperatorEntry {
            account: k.address(),
            bls_public_key: Bytes::from(
                BlsSecretKey::from_ikm(&[i as u8 + 1; 32])
                    .expect("ikm")
                    .public_key()
                    .to_bytes()
                    .to_vec(),
            ),
        })
        .collect();
    let d = deploy_all(deployer.clone(), &entries, 3).await?;
    let as_op = Settlement::new(d.settlement, provider(&anvil, &ops[0])?);
    let as_outsider = Settlement::new(d.settlement, provider(&anvil, &anvil.keys[1])?);

    let batch = Batch {
        round: 7,
        from_block: 10,
        to_block: 14,
        root: B256::repeat_byte(0xab),
        leaf_count: 3,
    };
    let chain_id = deployer.get_chain_id().await?;
    let on_chain = as_op
        .batchMessage(
            batch.round,
            batch.from_block,
            batch.to_block,
            batch.root,
            batch.leaf_count,
        )
        .call()
        .await?;
    assert_eq!(
        on_chain,
        batch.message(chain_id, d.settlement),
        "nodes sign what the contract computes"
    );

    let sig = Bytes::from(vec![0u8; 96]);
    macro_rules! settle {
        ($c:expr, $round:expr, $root:expr, $bitmap:expr) => {
            $c.settle(
                $round,
                batch.from_block,
                batch.to_block,
                $root,
                batch.leaf_count,
                U256::from($bitmap),
                sig.clone(),
            )
        };
    }
    let err = settle!(as_outsider, 7, batch.root, 0b0111)
        .call()
        .await
        .expect_err("outsider");
    assert!(revert(err).contains("NotOperator"));
    let err = settle!(as_op, 7, batch.root, 0b0011)
        .call()
        .await
        .expect_err("two signers");
    assert!(revert(err).contains("InsufficientSigners"));
    let err = settle!(as_op, 7, batch.root, 0b1_0011)
        .call()
        .await
        .expect_err("signer outside the set");
    assert!(revert(err).contains("UnknownSigner"));

    let receipt = settle!(as_op, 7, batch.root, 0b0111)
        .send()
        .await?
        .get_receipt()
        .await?;
    assert!(receipt.status());
    assert_eq!(as_op.settledRoot(7).call().await?, batch.root);
    let err = settle!(as_op, 7, B256::repeat_byte(1), 0b1111)
        .call()
        .await
        .expect_err("same round");
    assert!(revert(err).contains("RoundAlreadySettled"));
    let err = settle!(as_op, 8, batch.root, 0b1111)
        .call()
        .await
        .expect_err("same root");
    assert!(revert(err).contains("RootAlreadySettled"));
    Ok(())
}

#[tokio::test]
async fn payments_go_straight_to_the_merchant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let deployer = provider(&anvil, &anvil.keys[0])?;
    let d = deploy_all(
        deployer,
        &[OperatorEntry {
            account: anvil.keys[2].address(),
            bls_public_key: Bytes::from(vec![0u8; 48]),
        }],
        1,
    )
    .await?;
    let payer = provider(&anvil, &anvil.keys[1])?;
    let payments = InvoicePayments::new(d.payments, &payer);
    let merchant = Address::repeat_byte(0x42);
    let id = B256::repeat_byte(9);
    let receipt = payments
        .payNative(id, merchant)
        .value(U256::from(777))
        .send()
        .await?
        .get_receipt()
        .await?;
    assert!(receipt.status());
    assert_eq!(payer.get_balance(merchant).await?, U256::from(777));
    assert_eq!(
        payer.get_balance(d.payments).await?,
        U256::ZERO,
        "the contract holds nothing"
    );
    let log = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<InvoicePayments::InvoicePaid>().ok())
        .expect("InvoicePaid");
    assert_eq!(
        (
            log.inner.data.invoiceId,
            log.inner.data.merchant,
            log.inner.data.amount
        ),
        (id, merchant, U256::from(777))
    );
    let err = payments
        .payNative(id, merchant)
        .value(U256::ZERO)
        .call()
        .await
        .expect_err("zero amount");
    assert!(revert(err).contains("ZeroAmount"));
    let err = payments
        .payNative(id, Address::ZERO)
        .value(U256::from(1))
        .call()
        .await
        .expect_err("zero merchant");
    assert!(revert(err).contains("ZeroMerchant"));
    Ok(())
}
