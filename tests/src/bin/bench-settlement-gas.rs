//! Gas of `Settlement.settle` with on-chain aggregate verification, for operator sets of 4, 16
//! and 64 (threshold 2n/3+1 signers), and of deploying the set with proofs of possession.
//! Writes `docs/benchmarks/settlement-gas.md`. Gas is deterministic: one run per size.
//!
//! Usage: `cargo run --release -p settleproof-tests --bin bench-settlement-gas`

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, eyre};
use settleproof_consensus::{Batch, BlsSecretKey, BlsSignature};
use settleproof_contracts::{OperatorEntry, Settlement, deploy_all};
use settleproof_tests::harness::Anvil;
use std::fmt::Write as _;

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let anvil = Anvil::start(dir.path(), None).await?;
    let deployer = ProviderBuilder::new()
        .wallet(EthereumWallet::from(anvil.keys[0].clone()))
        .connect_http(anvil.url.parse()?)
        .erased();
    let chain_id = deployer.get_chain_id().await?;
    let mut report = String::from("# Benchmark: settlement gas\n\n");
    writeln!(
        report,
        "Written by `cargo run --release -p settleproof-tests --bin bench-settlement-gas` (anvil, Prague rules). One settlement of a 1-leaf batch, signed by 2n/3+1 of n operators; keys and signature in calldata, checked against the registered key hashes, aggregated with G1ADD, one 2-pair PAIRING_CHECK after hashing the batch message to G2.\n"
    )?;
    writeln!(
        report,
        "| operators n | signers | `settle` gas | calldata bytes | deploy gas (PoP checks) |\n| --- | --- | --- | --- | --- |"
    )?;
    for n in [4usize, 16, 64] {
        let keys: Vec<BlsSecretKey> = (0..n)
            .map(|i| BlsSecretKey::from_ikm(&[(i + 1) as u8; 32]).map_err(|e| eyre!("{e}")))
            .collect::<Result<_>>()?;
        let entries: Vec<OperatorEntry> = keys
            .iter()
            .map(|k| OperatorEntry {
                account: PrivateKeySigner::random().address(),
                bls_public_key: Bytes::from(k.public_key().to_eip2537().to_vec()),
                proof_of_possession: Bytes::from(k.prove_possession().to_eip2537().to_vec()),
            })
            .collect();
        let threshold = n * 2 / 3 + 1;
        let before = deployer.get_block_number().await?;
        let d = deploy_all(deployer.clone(), &entries, threshold as u64).await?;
        let mut deploy_gas = 0u64;
        for b in before + 1..=deployer.get_block_number().await? {
            let receipts = deployer.get_block_receipts(b.into()).await?.unwrap_or_default();
            for r in receipts.iter().filter(|r| r.contract_address == Some(d.settlement)) {
                deploy_gas = r.gas_used;
            }
        }
        let batch = Batch { round: 1, from_block: 1, to_block: 5, root: B256::repeat_byte(7), leaf_count: 1 };
        let message = batch.message(chain_id, d.settlement);
        let signers: Vec<usize> = (0..threshold).collect();
        let bitmap = signers.iter().fold(U256::ZERO, |a, i| a | (U256::from(1u8) << *i));
        let pks: Vec<u8> = signers.iter().flat_map(|i| keys[*i].public_key().to_eip2537()).collect();
        let sig =
            BlsSignature::aggregate(&signers.iter().map(|i| keys[*i].sign(message.as_slice())).collect::<Vec<_>>())?;
        let settlement = Settlement::new(d.settlement, &deployer);
        let call = settlement.settle(
            batch.round,
            batch.from_block,
            batch.to_block,
            batch.root,
            batch.leaf_count,
            bitmap,
            Bytes::from(pks),
            Bytes::from(sig.to_eip2537().to_vec()),
        );
        let calldata = call.calldata().len();
        let tx = TransactionRequest::default().with_to(d.settlement).with_input(call.calldata().clone());
        let receipt = deployer.send_transaction(tx).await?.get_receipt().await?;
        if !receipt.status() {
            return Err(eyre!("settle reverted for n = {n}"));
        }
        writeln!(report, "| {n} | {threshold} | {} | {calldata} | {deploy_gas} |", receipt.gas_used)?;
        eprintln!("n = {n}: settle {} gas, deploy {deploy_gas} gas", receipt.gas_used);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks/settlement-gas.md");
    std::fs::write(&path, &report)?;
    print!("{report}");
    Ok(())
}
