//! Deployment of the contracts and installation of operator sets, for test networks, tests and
//! the operators' `settleproof operators submit`.

use crate::{InvoicePayments, Settlement, TestToken};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use settleproof_consensus::{OperatorRecord, OperatorSetSpec};

/// Most operators per staging transaction (`Settlement.CHUNK_SIZE`).
pub const CHUNK_SIZE: usize = 32;

/// One operator with the proof of possession of its BLS key, as staging needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorEntry {
    /// The record committed in the set.
    pub record: OperatorRecord,
    /// A BLS signature over the key's 256-byte EIP-2537 encoding under the proof-of-possession
    /// tag, EIP-2537 encoded (128 bytes). Checked on chain the first time a key is staged.
    pub proof_of_possession: Bytes,
}

/// The settlement contract's schedule parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementParams {
    /// Blocks per round.
    pub round_blocks: u64,
    /// Blocks a superseded epoch may still settle after its successor's first block.
    pub grace_blocks: u64,
    /// Blocks an update must be committed before its first round.
    pub lead_blocks: u64,
}

/// Addresses of a deployment and the block it started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    /// `InvoicePayments`.
    pub payments: Address,
    /// `Settlement`.
    pub settlement: Address,
    /// `TestToken`.
    pub token: Address,
    /// Block of the first deployment transaction: the first block of round 0.
    pub start_block: u64,
}

/// Errors of deployment and set installation.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A contract could not be deployed.
    #[error("deploying {contract} failed: {source}")]
    Contract {
        /// Contract name.
        contract: &'static str,
        /// Cause.
        source: alloy::contract::Error,
    },
    /// A transaction of set installation failed.
    #[error("{step} failed: {source}")]
    Install {
        /// `stageOperators` or `commitEpoch`.
        step: &'static str,
        /// Cause.
        source: alloy::contract::Error,
    },
    /// The RPC provider failed.
    #[error("rpc error during deployment: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    /// A transaction was sent but its receipt could not be had.
    #[error("waiting for the receipt of {step}: {detail}")]
    Receipt {
        /// The transaction.
        step: &'static str,
        /// Why.
        detail: String,
    },
    /// A transaction was mined but reverted.
    #[error("{step} reverted in transaction {tx}")]
    Reverted {
        /// The transaction.
        step: &'static str,
        /// Its hash.
        tx: B256,
    },
    /// The set or its entries are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// Deploys `InvoicePayments`, `Settlement` (whose epoch 0 is `genesis`) and `TestToken` from the
/// provider's signer, whose account is `deployer`, stages the genesis set in chunks and commits
/// it.
pub async fn deploy_all<P: Provider + Clone>(
    provider: P,
    deployer: Address,
    genesis: &[OperatorEntry],
    threshold: u16,
    params: SettlementParams,
) -> Result<Deployment, DeployError> {
    let spec = spec_of(0, 0, threshold, genesis);
    spec.validate().map_err(|e| DeployError::Invalid(format!("genesis operator set: {e}")))?;
    let start_block = provider.get_block_number().await?;
    let payments = InvoicePayments::deploy(provider.clone())
        .await
        .map_err(|source| DeployError::Contract { contract: "InvoicePayments", source })?;
    let settlement = Settlement::deploy(
        provider.clone(),
        spec.set_hash(),
        start_block,
        params.round_blocks,
        params.grace_blocks,
        params.lead_blocks,
    )
    .await
    .map_err(|source| DeployError::Contract { contract: "Settlement", source })?;
    stage_set(&settlement, deployer, &spec, genesis).await?;
    commit_epoch(&settlement, deployer, &spec, U256::ZERO, Bytes::new()).await?;
    let token = TestToken::deploy(provider.clone())
        .await
        .map_err(|source| DeployError::Contract { contract: "TestToken", source })?;
    Ok(Deployment {
        payments: *payments.address(),
        settlement: *settlement.address(),
        token: *token.address(),
        start_block,
    })
}

/// The set of `entries` at `epoch`, from `start_round`, with `threshold`.
pub fn spec_of(epoch: u64, start_round: u64, threshold: u16, entries: &[OperatorEntry]) -> OperatorSetSpec {
    OperatorSetSpec { epoch, start_round, threshold, operators: entries.iter().map(|e| e.record.clone()).collect() }
}

/// Stages `spec`'s operators under `stager` (the provider's signer), `CHUNK_SIZE` per transaction,
/// resuming after the chunks staged already. `entries` carry the proofs of possession, in
/// `spec`'s order.
pub async fn stage_set<P: Provider>(
    settlement: &Settlement::SettlementInstance<P>,
    stager: Address,
    spec: &OperatorSetSpec,
    entries: &[OperatorEntry],
) -> Result<(), DeployError> {
    if entries.len() != spec.operators.len() || entries.iter().zip(&spec.operators).any(|(e, r)| &e.record != r) {
        return Err(DeployError::Invalid("the entries are not the set's operators, in order".into()));
    }
    let set_hash = spec.set_hash();
    let progress = settlement
        .staged(stager, set_hash)
        .call()
        .await
        .map_err(|source| DeployError::Install { step: "staged", source })?;
    for chunk in entries.chunks(CHUNK_SIZE).skip(usize::from(progress.count) / CHUNK_SIZE) {
        let records: Vec<Settlement::OperatorRecord> = chunk.iter().map(OperatorEntry::to_sol).collect();
        let pending = settlement
            .stageOperators(set_hash, records)
            .send()
            .await
            .map_err(|source| DeployError::Install { step: "stageOperators", source })?;
        confirm(pending, "stageOperators").await?;
    }
    Ok(())
}

/// Commits `spec` as staged by `stager`. Anyone may send it. Epoch 0 needs no signature;
/// a later epoch needs the previous epoch's `signer_bitmap` and aggregate `signature` over
/// `update_message(set_hash)`.
pub async fn commit_epoch<P: Provider>(
    settlement: &Settlement::SettlementInstance<P>,
    stager: Address,
    spec: &OperatorSetSpec,
    signer_bitmap: U256,
    signature: Bytes,
) -> Result<B256, DeployError> {
    let pending = settlement
        .commitEpoch(stager, spec.set_hash(), spec.epoch, spec.start_round, spec.threshold, signer_bitmap, signature)
        .send()
        .await
        .map_err(|source| DeployError::Install { step: "commitEpoch", source })?;
    confirm(pending, "commitEpoch").await
}

impl OperatorEntry {
    /// The record as `stageOperators` takes it.
    pub fn to_sol(&self) -> Settlement::OperatorRecord {
        Settlement::OperatorRecord {
            account: self.record.account,
            peerId: self.record.peer_id.clone(),
            blsPublicKey: Bytes::from(self.record.bls.to_eip2537().to_vec()),
            proofOfPossession: self.proof_of_possession.clone(),
            name: self.record.name.clone(),
            p2pAddr: self.record.p2p_addr.clone(),
        }
    }
}

/// The set an `EpochCommitted` event installed, from the records of its `OperatorsStaged`
/// events by first index: they must be contiguous from 0, valid, and hash (with the commit's
/// parameters) to the committed set hash.
pub fn assemble_set(
    commit: &Settlement::EpochCommitted,
    chunks: std::collections::BTreeMap<u64, Vec<Settlement::OperatorRecord>>,
) -> Result<OperatorSetSpec, String> {
    let mut operators = Vec::with_capacity(usize::from(commit.count));
    for (first, records) in chunks {
        if first != operators.len() as u64 {
            return Err(format!("epoch {}: staged chunks are not contiguous at operator {first}", commit.epoch));
        }
        for r in records {
            operators.push(record_of(r).map_err(|e| format!("epoch {}: staged key: {e}", commit.epoch))?);
        }
    }
    let spec =
        OperatorSetSpec { epoch: commit.epoch, start_round: commit.startRound, threshold: commit.threshold, operators };
    if spec.set_hash() != commit.setHash || spec.operators.len() != usize::from(commit.count) {
        return Err(format!(
            "the {} staged operators of epoch {} do not hash to its committed set {}",
            spec.operators.len(),
            commit.epoch,
            commit.setHash
        ));
    }
    Ok(spec)
}

/// A record as an `OperatorsStaged` event carries it (its proof of possession dropped: the
/// contract checked it); fails on a key that is not a valid G2 point.
pub fn record_of(r: Settlement::OperatorRecord) -> Result<OperatorRecord, settleproof_consensus::BlsError> {
    Ok(OperatorRecord {
        bls: settleproof_consensus::BlsPublicKey::from_eip2537(&r.blsPublicKey)?,
        name: r.name,
        account: r.account,
        peer_id: r.peerId,
        p2p_addr: r.p2pAddr,
    })
}

async fn confirm(
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
    step: &'static str,
) -> Result<B256, DeployError> {
    let receipt = pending.get_receipt().await.map_err(|e| DeployError::Receipt { step, detail: e.to_string() })?;
    if !receipt.status() {
        return Err(DeployError::Reverted { step, tx: receipt.transaction_hash });
    }
    Ok(receipt.transaction_hash)
}
