//! Operator sets for contract tests and benchmarks: BLS keys, staged entries, quorum
//! signatures, and a chain fixture that can mine blocks and settle closed rounds.

use crate::harness::Anvil;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, eyre};
use settleproof_consensus::{Batch, BlsSecretKey, BlsSignature, OperatorRecord};
use settleproof_contracts::{Deployment, OperatorEntry, Settlement, SettlementParams};

/// `n` deterministic BLS keys; `seed` keeps sets of different tests apart.
pub fn bls_keys(seed: u8, n: usize) -> Vec<BlsSecretKey> {
    (0..n)
        .map(|i| {
            let ikm = keccak256([&[seed], &(i as u64).to_be_bytes()[..]].concat());
            // 32 bytes of input keying material always derive a key.
            BlsSecretKey::from_ikm(ikm.as_slice()).expect("32 bytes of ikm")
        })
        .collect()
}

/// The staged entry of an operator named `name` with BLS key `key`.
pub fn entry(name: &str, key: &BlsSecretKey) -> OperatorEntry {
    OperatorEntry {
        record: OperatorRecord {
            name: name.into(),
            account: Address::from_slice(&keccak256(name.as_bytes())[12..]),
            peer_id: Bytes::from(keccak256([b"peer:", name.as_bytes()].concat()).to_vec()),
            p2p_addr: format!("/dns4/{name}.example/tcp/9000"),
            bls: key.public_key(),
        },
        proof_of_possession: Bytes::from(key.prove_possession().to_eip2537().to_vec()),
    }
}

/// Entries `op-0 … op-(n-1)` for `keys`.
pub fn entries(keys: &[BlsSecretKey]) -> Vec<OperatorEntry> {
    keys.iter().enumerate().map(|(i, k)| entry(&format!("op-{i}"), k)).collect()
}

/// Bitmap and EIP-2537 aggregate signature of `signers` (indices into `keys`) over `message`.
pub fn quorum(keys: &[BlsSecretKey], signers: &[usize], message: &[u8]) -> (U256, Bytes) {
    let bitmap = signers.iter().fold(U256::ZERO, |acc, i| acc | (U256::from(1u8) << *i));
    let sigs: Vec<_> = signers.iter().map(|i| keys[*i].sign(message)).collect();
    // Callers pass at least one signer.
    let agg = BlsSignature::aggregate(&sigs).expect("non-empty");
    (bitmap, Bytes::from(agg.to_eip2537().to_vec()))
}

/// A wallet provider for `key`.
pub fn provider(anvil: &Anvil, key: &PrivateKeySigner) -> Result<DynProvider> {
    Ok(ProviderBuilder::new().wallet(EthereumWallet::from(key.clone())).connect_http(anvil.url.parse()?).erased())
}

/// The decoded revert of a contract call, or its error text.
pub fn revert(e: alloy::contract::Error) -> String {
    e.as_decoded_interface_error::<Settlement::SettlementErrors>()
        .map(|d| format!("{d:?}"))
        .unwrap_or_else(|| e.to_string())
}

/// A deployment on one anvil with helpers to move the chain and settle rounds.
#[allow(missing_debug_implementations)]
pub struct Chain {
    /// The deployer's provider.
    pub p: DynProvider,
    /// The contracts.
    pub d: Deployment,
    /// The schedule.
    pub params: SettlementParams,
    /// Chain id.
    pub chain_id: u64,
    /// The deployer's account, which stages the sets.
    pub deployer: Address,
}

impl Chain {
    /// The settlement contract through the deployer's provider.
    pub fn settlement(&self) -> Settlement::SettlementInstance<&DynProvider> {
        Settlement::new(self.d.settlement, &self.p)
    }

    /// Mines `n` empty blocks.
    pub async fn mine(&self, n: u64) -> Result<()> {
        self.p.raw_request::<_, serde_json::Value>("anvil_mine".into(), (U256::from(n),)).await?;
        Ok(())
    }

    /// The round containing the head block (still open).
    pub async fn current_round(&self) -> Result<u64> {
        let head = self.p.get_block_number().await?;
        Ok(head.saturating_sub(self.d.start_block) / self.params.round_blocks)
    }

    /// Mines until `round` has closed.
    pub async fn close(&self, round: u64) -> Result<()> {
        let last = self.d.start_block + (round + 1) * self.params.round_blocks - 1;
        let head = self.p.get_block_number().await?;
        if head <= last {
            self.mine(last + 1 - head).await?;
        }
        Ok(())
    }

    /// The batch of `round` in `epoch` with `root`, over the round's block range, built on
    /// this chain (the hash of its last block; zero while that block is not mined).
    pub async fn batch(&self, epoch: u64, round: u64, root: B256) -> Batch {
        let from = self.d.start_block + round * self.params.round_blocks;
        let to = from + self.params.round_blocks - 1;
        Batch {
            epoch,
            round,
            from_block: from,
            to_block: to,
            to_block_hash: self.block_hash(to).await,
            root,
            leaf_count: 1,
        }
    }

    /// The hash of block `number`, zero while it is not mined.
    pub async fn block_hash(&self, number: u64) -> B256 {
        match self.p.get_block_by_number(number.into()).await {
            Ok(Some(b)) => b.header.hash,
            _ => B256::ZERO,
        }
    }

    /// Sends `commitEpoch` for `next` (staged by the deployer) with `signers` of `keys` signing
    /// `message`; the revert text on failure.
    pub async fn commit(
        &self,
        next: &settleproof_consensus::OperatorSetSpec,
        keys: &[BlsSecretKey],
        signers: &[usize],
        message: B256,
    ) -> Result<(), String> {
        let (bitmap, sig) = quorum(keys, signers, message.as_slice());
        let s = self.settlement();
        let call =
            s.commitEpoch(self.deployer, next.set_hash(), next.epoch, next.start_round, next.threshold, bitmap, sig);
        call.call().await.map_err(revert)?;
        let receipt = call.send().await.map_err(revert)?.get_receipt().await.map_err(|e| e.to_string())?;
        receipt.status().then_some(()).ok_or_else(|| "mined but reverted".to_string())
    }

    /// The update message of `next` on this contract.
    pub fn update_message(&self, next: &settleproof_consensus::OperatorSetSpec) -> B256 {
        settleproof_consensus::update_message(self.chain_id, self.d.settlement, next.set_hash())
    }

    /// Sends `settle` for `batch` signed by `signers` of `keys`; the revert text on failure.
    pub async fn settle(&self, batch: &Batch, keys: &[BlsSecretKey], signers: &[usize]) -> Result<(), String> {
        let (bitmap, sig) = quorum(keys, signers, batch.message(self.chain_id, self.d.settlement).as_slice());
        let s = self.settlement();
        let call = s.call_builder(&settleproof_contracts::settle_call(batch, bitmap, sig));
        call.call().await.map_err(revert)?;
        let receipt = call.send().await.map_err(revert)?.get_receipt().await.map_err(|e| e.to_string())?;
        receipt.status().then_some(()).ok_or_else(|| "mined but reverted".to_string())
    }
}

/// Deploys on `anvil` with `keys` as epoch 0 (named `op-i`) and `threshold`.
pub async fn deploy(anvil: &Anvil, keys: &[BlsSecretKey], threshold: u16, params: SettlementParams) -> Result<Chain> {
    let p = provider(anvil, &anvil.keys[0])?;
    let d = settleproof_contracts::deploy_all(p.clone(), anvil.keys[0].address(), &entries(keys), threshold, params)
        .await
        .map_err(|e| eyre!("{e}"))?;
    let chain_id = p.get_chain_id().await?;
    Ok(Chain { p, d, params, chain_id, deployer: anvil.keys[0].address() })
}
