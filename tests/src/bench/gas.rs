//! Gas: `settle` per settled invoice at growing batch sizes against one settlement per invoice
//! (the naive design), the on-chain aggregate check for 4, 16 and 64 operators, and the payment
//! itself, on anvil with Prague rules. Gas is deterministic: one run per case.

use crate::harness::Anvil;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, eyre};
use serde::Serialize;
use settleproof_consensus::{Batch, BlsSecretKey, BlsSignature, merkle};
use settleproof_contracts::{Deployment, InvoicePayments, OperatorEntry, Settlement, TestToken, deploy_all};

/// `settle` gas at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BatchGas {
    /// Payments in the batch.
    pub batch_size: u32,
    /// Gas of the one `settle` transaction.
    pub settle_gas: u64,
    /// `settle_gas / batch_size`.
    pub per_invoice: f64,
    /// Naive design (one settlement per invoice) over this design, per invoice.
    pub naive_ratio: f64,
}

/// The aggregate check for one operator set.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorGas {
    /// Operators.
    pub operators: usize,
    /// Signers (2n/3+1).
    pub signers: usize,
    /// `settle` gas of a 1-leaf batch.
    pub settle_gas: u64,
    /// Calldata bytes of that call.
    pub calldata_bytes: usize,
    /// Gas of deploying `Settlement` with the set (checks every proof of possession).
    pub deploy_gas: u64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct GasResult {
    /// Native payment (`payNative`).
    pub pay_native_gas: u64,
    /// ERC-20 payment (`payToken`, after `approve`).
    pub pay_token_gas: u64,
    /// `approve` before it.
    pub approve_gas: u64,
    /// Block gas limit of the chain.
    pub block_gas_limit: u64,
    /// By batch size, 4 operators.
    pub batches: Vec<BatchGas>,
    /// By operator set.
    pub operators: Vec<OperatorGas>,
}

fn keys(n: usize) -> Result<Vec<BlsSecretKey>> {
    (0..n).map(|i| BlsSecretKey::from_ikm(&[(i + 1) as u8; 32]).map_err(|e| eyre!("{e}"))).collect()
}

async fn deploy(p: &DynProvider, keys: &[BlsSecretKey]) -> Result<(Deployment, u64)> {
    let entries: Vec<OperatorEntry> = keys
        .iter()
        .map(|k| OperatorEntry {
            account: PrivateKeySigner::random().address(),
            bls_public_key: Bytes::from(k.public_key().to_eip2537().to_vec()),
            proof_of_possession: Bytes::from(k.prove_possession().to_eip2537().to_vec()),
        })
        .collect();
    let before = p.get_block_number().await?;
    let d = deploy_all(p.clone(), &entries, (keys.len() * 2 / 3 + 1) as u64).await?;
    let mut gas = 0;
    for b in before + 1..=p.get_block_number().await? {
        for r in p.get_block_receipts(b.into()).await?.unwrap_or_default() {
            if r.contract_address == Some(d.settlement) {
                gas = r.gas_used;
            }
        }
    }
    Ok((d, gas))
}

/// Sends `settle` for `batch` signed by the first 2n/3+1 of `keys`; returns (gas, calldata bytes).
async fn settle(p: &DynProvider, d: &Deployment, keys: &[BlsSecretKey], batch: Batch) -> Result<(u64, usize)> {
    let chain_id = p.get_chain_id().await?;
    let message = batch.message(chain_id, d.settlement);
    let signers: Vec<usize> = (0..keys.len() * 2 / 3 + 1).collect();
    let bitmap = signers.iter().fold(U256::ZERO, |a, i| a | (U256::from(1u8) << *i));
    let pks: Vec<u8> = signers.iter().flat_map(|i| keys[*i].public_key().to_eip2537()).collect();
    let sig = BlsSignature::aggregate(&signers.iter().map(|i| keys[*i].sign(message.as_slice())).collect::<Vec<_>>())?;
    let s = Settlement::new(d.settlement, p);
    let call = s.settle(
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
    let r = p.send_transaction(tx).await?.get_receipt().await?;
    if !r.status() {
        return Err(eyre!("settle reverted (round {})", batch.round));
    }
    Ok((r.gas_used, calldata))
}

async fn gas_of(p: &DynProvider, tx: TransactionRequest) -> Result<u64> {
    let r = p.send_transaction(tx).await?.get_receipt().await?;
    if !r.status() {
        return Err(eyre!("transaction reverted"));
    }
    Ok(r.gas_used)
}

/// Runs every case on a fresh anvil under `dir`.
pub async fn run(dir: &std::path::Path, batch_sizes: &[u32]) -> Result<GasResult> {
    let anvil = Anvil::start(dir, None).await?;
    let p = ProviderBuilder::new()
        .wallet(EthereumWallet::from(anvil.keys[0].clone()))
        .connect_http(anvil.url.parse()?)
        .erased();
    let four = keys(4)?;
    let (d, _) = deploy(&p, &four).await?;

    let merchant = Address::repeat_byte(0x42);
    let payments = InvoicePayments::new(d.payments, &p);
    let native = payments.payNative(B256::repeat_byte(1), merchant).value(U256::from(1000u64));
    let pay_native_gas = gas_of(&p, native.into_transaction_request()).await?;
    let token = TestToken::new(d.token, &p);
    let me = anvil.keys[0].address();
    gas_of(&p, token.mint(me, U256::from(10u64).pow(U256::from(24u64))).into_transaction_request()).await?;
    let approve_gas = gas_of(&p, token.approve(d.payments, U256::from(1000u64)).into_transaction_request()).await?;
    let pay = payments.payToken(B256::repeat_byte(2), merchant, d.token, U256::from(1000u64));
    let pay_token_gas = gas_of(&p, pay.into_transaction_request()).await?;
    let block_gas_limit = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await?
        .map(|b| b.header.gas_limit)
        .unwrap_or_default();

    let mut batches = Vec::new();
    let mut naive = None;
    for (round, &size) in batch_sizes.iter().enumerate() {
        let leaves: Vec<B256> =
            (0..u64::from(size)).map(|i| keccak256([(round as u64).to_be_bytes(), i.to_be_bytes()].concat())).collect();
        let root = merkle::root(&leaves).ok_or_else(|| eyre!("empty batch"))?;
        let round = round as u64 + 1;
        let batch = Batch { round, from_block: round * 10, to_block: round * 10 + 9, root, leaf_count: size };
        let (gas, _) = settle(&p, &d, &four, batch).await?;
        let per_invoice = gas as f64 / f64::from(size);
        let one = *naive.get_or_insert(gas as f64);
        batches.push(BatchGas { batch_size: size, settle_gas: gas, per_invoice, naive_ratio: one / per_invoice });
        eprintln!("  gas: batch of {size}: settle {gas} gas, {per_invoice:.1} per invoice");
    }

    let mut operators = Vec::new();
    for n in [4usize, 16, 64] {
        let ks = keys(n)?;
        let (d, deploy_gas) = deploy(&p, &ks).await?;
        let batch = Batch { round: 1, from_block: 1, to_block: 5, root: B256::repeat_byte(7), leaf_count: 1 };
        let (settle_gas, calldata_bytes) = settle(&p, &d, &ks, batch).await?;
        operators.push(OperatorGas { operators: n, signers: n * 2 / 3 + 1, settle_gas, calldata_bytes, deploy_gas });
        eprintln!("  gas: {n} operators: settle {settle_gas} gas, deploy {deploy_gas} gas");
    }
    Ok(GasResult { pay_native_gas, pay_token_gas, approve_gas, block_gas_limit, batches, operators })
}
