//! Gas: `settle` per settled invoice at growing batch sizes against one settlement per invoice
//! (the naive design); `settle` and the set's registration for 4, 16, 64 and 128 operators,
//! beside the previous design and an ECDSA multisig measured in the same run; and the payment
//! itself, on anvil. Gas is deterministic: one run per case.

use crate::harness::Anvil;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, eyre};
use serde::Serialize;
use settleproof_consensus::{Batch, BlsSecretKey, OperatorRecord, merkle};
use settleproof_contracts::{
    Deployment, EcdsaMultisigBaseline, HashToCurveBench, InvoicePayments, OperatorEntry, Settlement, SettlementParams,
    TestToken, deploy_all,
};

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

/// The aggregate check and the set's registration for one operator set.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorGas {
    /// Operators.
    pub operators: usize,
    /// Signers (2n/3+1).
    pub signers: usize,
    /// `settle` gas of a 1-leaf batch (a whole transaction's `gasUsed`).
    pub settle_gas: u64,
    /// Calldata bytes of that call.
    pub calldata_bytes: usize,
    /// Gas of registering the set: the `Settlement` deployment, every `stageOperators` (each
    /// checks its operators' proofs of possession) and `commitEpoch`.
    pub registration_gas: u64,
    /// Transactions of that registration.
    pub registration_txs: usize,
    /// The largest of them.
    pub largest_tx_gas: u64,
    /// `settle` of the design before epochs (keys in calldata, checked one slot each, hash to G2
    /// in Solidity, four slots written), measured by this benchmark before the change; `None`
    /// where that design could not register the set.
    pub previous_design_gas: Option<u64>,
    /// `settle` of `EcdsaMultisigBaseline` (Hyperlane-style multisig) with the same signers,
    /// measured in this run.
    pub ecdsa_multisig_gas: u64,
}

/// `settle` gas of the previous design (commit 322e856, same benchmark, anvil 1.7.1): 64
/// operators took 26.3M gas to register and 128 did not fit a block.
const PREVIOUS_DESIGN: [(usize, u64); 3] = [(4, 337_426), (16, 389_720), (64, 600_059)];

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
    /// Hashing a 32-byte batch message, gas beyond the call itself.
    pub hash_to_curve: HashGas,
}

/// Hash-to-curve of one batch message, min-sig against min-pk.
#[derive(Debug, Clone, Serialize)]
pub struct HashGas {
    /// To G1 (min-sig, this design, in assembly).
    pub to_g1: u64,
    /// To G2 (min-pk, the previous design's Solidity).
    pub to_g2: u64,
}

async fn hash_gas(p: &DynProvider) -> Result<HashGas> {
    let h = HashToCurveBench::deploy(p).await?;
    let message = Bytes::from(vec![0x5a; 32]);
    let estimate = |data: Bytes| {
        let tx = TransactionRequest::default().with_to(*h.address()).with_input(data);
        async move { p.estimate_gas(tx).await }
    };
    let base = estimate(h.noop(message.clone()).calldata().clone()).await?;
    let to_g1 = estimate(h.toG1(message.clone()).calldata().clone()).await?.saturating_sub(base);
    let to_g2 = estimate(h.toG2(message).calldata().clone()).await?.saturating_sub(base);
    Ok(HashGas { to_g1, to_g2 })
}

fn keys(n: usize) -> Result<Vec<BlsSecretKey>> {
    (0..n)
        .map(|i| BlsSecretKey::from_ikm(&[i as u8, (i >> 8) as u8 + 1].repeat(16)).map_err(|e| eyre!("{e}")))
        .collect()
}

/// Blocks per round in the benchmark: every mined transaction closes a round.
const PARAMS: SettlementParams = SettlementParams { round_blocks: 1, grace_blocks: 100, lead_blocks: 2 };

/// Deploys with `keys` as epoch 0; returns the deployment, the registration's gas, its
/// transaction count and the largest transaction's gas.
async fn deploy(p: &DynProvider, deployer: Address, keys: &[BlsSecretKey]) -> Result<(Deployment, u64, usize, u64)> {
    let entries: Vec<OperatorEntry> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| OperatorEntry {
            record: OperatorRecord {
                name: format!("op-{i}"),
                account: PrivateKeySigner::random().address(),
                peer_id: Bytes::from(keccak256(i.to_be_bytes()).to_vec()),
                p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 20_000 + i),
                bls: k.public_key(),
            },
            proof_of_possession: Bytes::from(k.prove_possession().to_eip2537().to_vec()),
        })
        .collect();
    let before = p.get_block_number().await?;
    let threshold = u16::try_from(keys.len() * 2 / 3 + 1)?;
    let d = deploy_all(p.clone(), deployer, &entries, threshold, PARAMS).await?;
    let (mut gas, mut txs, mut largest) = (0, 0, 0);
    for b in before + 1..=p.get_block_number().await? {
        for r in p.get_block_receipts(b.into()).await?.unwrap_or_default() {
            if r.contract_address == Some(d.settlement) || r.to == Some(d.settlement) {
                gas += r.gas_used;
                txs += 1;
                largest = largest.max(r.gas_used);
            }
        }
    }
    Ok((d, gas, txs, largest))
}

/// The latest round whose block has been mined (round length 1).
async fn closed_round(p: &DynProvider, d: &Deployment) -> Result<u64> {
    let head = p.get_block_number().await?;
    head.checked_sub(d.start_block + 1).ok_or_else(|| eyre!("no round has closed yet"))
}

/// Sends `settle` for a closed round with `root`, signed by the first 2n/3+1 of `keys`;
/// returns (gas, calldata bytes).
async fn settle(p: &DynProvider, d: &Deployment, keys: &[BlsSecretKey], root: B256, size: u32) -> Result<(u64, usize)> {
    let round = closed_round(p, d).await?;
    let from = d.start_block + round;
    let to_block_hash = p.get_block_by_number(from.into()).await?.map(|b| b.header.hash).unwrap_or_default();
    let batch = Batch { epoch: 0, round, from_block: from, to_block: from, to_block_hash, root, leaf_count: size };
    let chain_id = p.get_chain_id().await?;
    let message = batch.message(chain_id, d.settlement);
    let signers: Vec<usize> = (0..keys.len() * 2 / 3 + 1).collect();
    let (bitmap, sig) = crate::sets::quorum(keys, &signers, message.as_slice());
    let s = Settlement::new(d.settlement, p);
    let call = s.call_builder(&settleproof_contracts::settle_call(&batch, bitmap, sig));
    let calldata = call.calldata().len();
    let tx = TransactionRequest::default().with_to(d.settlement).with_input(call.calldata().clone());
    let r = p.send_transaction(tx).await?.get_receipt().await?;
    if !r.status() {
        return Err(eyre!("settle reverted (round {})", batch.round));
    }
    Ok((r.gas_used, calldata))
}

/// `settle` gas of the ECDSA multisig baseline with `n` validators and 2n/3+1 signatures.
async fn ecdsa_settle(p: &DynProvider, n: usize) -> Result<u64> {
    let validators: Vec<PrivateKeySigner> = (0..n).map(|_| PrivateKeySigner::random()).collect();
    let signers = n * 2 / 3 + 1;
    let m =
        EcdsaMultisigBaseline::deploy(p, validators.iter().map(|v| v.address()).collect(), U256::from(signers)).await?;
    let (round, root) = (1u64, B256::repeat_byte(7));
    let digest = m.digest(round, root).call().await?;
    let mut sigs = Vec::with_capacity(signers * 65);
    for v in &validators[..signers] {
        let mut rsv = v.sign_hash_sync(&digest)?.as_bytes();
        // ecrecover takes v as 27 or 28.
        if rsv[64] < 27 {
            rsv[64] += 27;
        }
        sigs.extend_from_slice(&rsv);
    }
    let r = m.settle(round, root, Bytes::from(sigs)).send().await?.get_receipt().await?;
    if !r.status() {
        return Err(eyre!("baseline settle reverted"));
    }
    Ok(r.gas_used)
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
    let deployer = anvil.keys[0].address();
    let four = keys(4)?;
    let (d, ..) = deploy(&p, deployer, &four).await?;

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
        let (gas, _) = settle(&p, &d, &four, root, size).await?;
        let per_invoice = gas as f64 / f64::from(size);
        let one = *naive.get_or_insert(gas as f64);
        batches.push(BatchGas { batch_size: size, settle_gas: gas, per_invoice, naive_ratio: one / per_invoice });
        eprintln!("  gas: batch of {size}: settle {gas} gas, {per_invoice:.1} per invoice");
    }

    let mut operators = Vec::new();
    for n in [4usize, 16, 64, 128] {
        let ks = keys(n)?;
        let (d, registration_gas, registration_txs, largest_tx_gas) = deploy(&p, deployer, &ks).await?;
        let (settle_gas, calldata_bytes) = settle(&p, &d, &ks, B256::repeat_byte(7), 1).await?;
        let ecdsa_multisig_gas = ecdsa_settle(&p, n).await?;
        let previous_design_gas = PREVIOUS_DESIGN.iter().find(|(k, _)| *k == n).map(|(_, g)| *g);
        operators.push(OperatorGas {
            operators: n,
            signers: n * 2 / 3 + 1,
            settle_gas,
            calldata_bytes,
            registration_gas,
            registration_txs,
            largest_tx_gas,
            previous_design_gas,
            ecdsa_multisig_gas,
        });
        eprintln!(
            "  gas: {n} operators: settle {settle_gas} (ECDSA multisig {ecdsa_multisig_gas}), registration {registration_gas} in {registration_txs} txs"
        );
    }
    let hash_to_curve = hash_gas(&p).await?;
    eprintln!("  gas: hash to G1 {}, to G2 {}", hash_to_curve.to_g1, hash_to_curve.to_g2);
    Ok(GasResult { pay_native_gas, pay_token_gas, approve_gas, block_gas_limit, batches, operators, hash_to_curve })
}
