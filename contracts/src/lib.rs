//! settleproof's on-chain contracts: Solidity sources in `solidity/`, compiled artifacts in
//! `artifacts/` (ABI + bytecode, rebuilt by `node contracts/scripts/compile.mjs`; a test fails
//! when they are stale), and the alloy bindings generated from those artifacts.
//!
//! - [`InvoicePayments`]: payers pay invoices in native coin or ERC-20; funds go straight to the
//!   merchant and an `InvoicePaid` event records the payment.
//! - [`Settlement`]: operator sets by epoch, changed only by the current set; records each
//!   round's settled batch.
//! - [`TestToken`]: an ERC-20 anyone can mint, for local test networks only.
//! - [`Relay`]: forwards any call from its own address (as a contract wallet or multicall
//!   does), for tests of settlements that reach the chain wrapped.
//! - [`EcdsaMultisigBaseline`]: an m-of-n ECDSA multisig settlement, only as the gas benchmark's
//!   point of comparison.
//! - [`HashToCurveBench`]: hashing to G1 (min-sig) and to G2 (min-pk) side by side, only for the
//!   gas benchmark.

mod deploy;

pub use deploy::{
    CHUNK_SIZE, DeployError, Deployment, OperatorEntry, SettlementParams, assemble_set, commit_epoch, deploy_all,
    record_of, spec_of, stage_set,
};

#[allow(missing_docs, clippy::too_many_arguments)]
mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        InvoicePayments,
        "artifacts/InvoicePayments.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        Settlement,
        "artifacts/Settlement.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        TestToken,
        "artifacts/TestToken.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        Relay,
        "artifacts/Relay.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        EcdsaMultisigBaseline,
        "artifacts/EcdsaMultisigBaseline.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        HashToCurveBench,
        "artifacts/HashToCurveBench.json"
    );
    alloy::sol! {
        /// The part of ERC-20 that payment instructions and tests use.
        #[sol(rpc)]
        interface IERC20 {
            function approve(address spender, uint256 value) external returns (bool);
            function balanceOf(address account) external view returns (uint256);
            function symbol() external view returns (string);
            function decimals() external view returns (uint8);
        }
    }
}

pub use bindings::{EcdsaMultisigBaseline, HashToCurveBench, IERC20, InvoicePayments, Relay, Settlement, TestToken};

/// The `settle` call of `batch`, signed by the operators in `signer_bitmap` with the EIP-2537
/// aggregate `signature` (the one place the batch's fields are laid out as the call's).
pub fn settle_call(
    batch: &settleproof_consensus::Batch,
    signer_bitmap: alloy::primitives::U256,
    signature: alloy::primitives::Bytes,
) -> Settlement::settleCall {
    Settlement::settleCall {
        epoch: batch.epoch,
        round: batch.round,
        fromBlock: batch.from_block,
        toBlock: batch.to_block,
        toBlockHash: batch.to_block_hash,
        root: batch.root,
        leafCount: batch.leaf_count,
        signerBitmap: signer_bitmap,
        signature,
    }
}
