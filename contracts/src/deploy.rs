//! Deployment of the three contracts, for test networks and tests.

use crate::{InvoicePayments, Settlement, TestToken};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;

/// One operator as the settlement contract registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorEntry {
    /// Account that may submit settlements.
    pub account: Address,
    /// BLS public key, EIP-2537 encoded (128 bytes).
    pub bls_public_key: Bytes,
    /// Proof of possession of its secret key: a BLS signature over the 128 key bytes under the
    /// proof-of-possession tag, EIP-2537 encoded (256 bytes).
    pub proof_of_possession: Bytes,
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
    /// Block of the first deployment transaction.
    pub start_block: u64,
}

/// Errors of deployment.
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
    /// The RPC provider failed.
    #[error("rpc error during deployment: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
}

/// Deploys `InvoicePayments`, `Settlement` (with `operators` and `threshold`) and `TestToken`
/// from the provider's default signer.
pub async fn deploy_all<P: Provider + Clone>(
    provider: P,
    operators: &[OperatorEntry],
    threshold: u64,
) -> Result<Deployment, DeployError> {
    let start_block = provider.get_block_number().await?;
    let payments = InvoicePayments::deploy(provider.clone())
        .await
        .map_err(|source| DeployError::Contract { contract: "InvoicePayments", source })?;
    let accounts: Vec<Address> = operators.iter().map(|o| o.account).collect();
    let keys: Vec<Bytes> = operators.iter().map(|o| o.bls_public_key.clone()).collect();
    let pops: Vec<Bytes> = operators.iter().map(|o| o.proof_of_possession.clone()).collect();
    let settlement = Settlement::deploy(provider.clone(), accounts, keys, pops, U256::from(threshold))
        .await
        .map_err(|source| DeployError::Contract { contract: "Settlement", source })?;
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
