//! A round's batch: the payments it settles, their Merkle root, and the message operators sign.
//!
//! Every honest node derives the same batch from the same chain data: the leaves are the
//! round's confirmed `InvoicePaid` logs, ordered by (block number, log index), each hashed with
//! [`PaymentLeaf::hash`]. The signed message binds chain, settlement contract, operator-set
//! epoch, round, block range, root and leaf count, and equals `Settlement.batchMessage(...)` on
//! chain: a signature of one set can never count for another.

use crate::merkle;
use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::SolValue;
use serde::{Deserialize, Serialize};

/// Type string whose hash prefixes every batch message (must match `Settlement.BATCH_TYPEHASH`).
pub const BATCH_TYPE: &str = "SettleproofBatch(uint256 chainId,address settlement,uint64 epoch,uint64 round,uint64 fromBlock,uint64 toBlock,bytes32 toBlockHash,bytes32 root,uint32 leafCount)";

/// Type string whose hash prefixes every payment leaf.
pub const LEAF_TYPE: &str = "SettleproofPayment(uint256 chainId,bytes32 txHash,uint64 logIndex,uint64 blockNumber,bytes32 invoiceId,address merchant,address payer,address token,uint256 amount)";

/// keccak256 of [`BATCH_TYPE`], hashed once: every batch message starts with it.
static BATCH_TYPEHASH: std::sync::LazyLock<B256> = std::sync::LazyLock::new(|| keccak256(BATCH_TYPE));
/// keccak256 of [`LEAF_TYPE`], hashed once: every leaf starts with it.
static LEAF_TYPEHASH: std::sync::LazyLock<B256> = std::sync::LazyLock::new(|| keccak256(LEAF_TYPE));

/// One confirmed payment as it appears in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLeaf {
    /// Chain the payment happened on.
    pub chain_id: u64,
    /// Transaction that emitted the `InvoicePaid` log.
    pub tx_hash: B256,
    /// Index of the log in its block.
    pub log_index: u64,
    /// Block that holds the transaction.
    pub block_number: u64,
    /// Invoice the payment is for.
    pub invoice_id: B256,
    /// Merchant payout address that received the funds.
    pub merchant: Address,
    /// Account that paid.
    pub payer: Address,
    /// ERC-20 token, or the zero address for the native coin.
    pub token: Address,
    /// Amount in the token's base units.
    pub amount: U256,
}

impl PaymentLeaf {
    /// keccak256 of the ABI encoding of the leaf type hash and every field.
    pub fn hash(&self) -> B256 {
        keccak256(
            (
                *LEAF_TYPEHASH,
                U256::from(self.chain_id),
                self.tx_hash,
                self.log_index,
                self.block_number,
                self.invoice_id,
                self.merchant,
                self.payer,
                self.token,
                self.amount,
            )
                .abi_encode(),
        )
    }

    /// Canonical position of a payment inside its round.
    pub fn order_key(&self) -> (u64, u64) {
        (self.block_number, self.log_index)
    }
}

/// The summary of a round that operators sign and the settlement contract records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Batch {
    /// Epoch of the operator set that signs the round.
    #[serde(default)]
    pub epoch: u64,
    /// Round number.
    pub round: u64,
    /// First block of the round (inclusive).
    pub from_block: u64,
    /// Last block of the round (inclusive).
    pub to_block: u64,
    /// Hash of block `to_block` in the chain the batch was built from: it fixes every block of
    /// the range, so two honest nodes on one chain build one batch.
    #[serde(default)]
    pub to_block_hash: B256,
    /// Merkle root over the ordered leaves.
    pub root: B256,
    /// Number of leaves.
    pub leaf_count: u32,
}

impl Batch {
    /// Builds the batch of a round, signed by the set of `epoch`, from its payments (any order;
    /// they are sorted here) in the chain whose block `to_block` has `to_block_hash`. Returns
    /// `None` when the round has no payments: nothing to settle.
    pub fn build(
        epoch: u64,
        round: u64,
        (from_block, to_block): (u64, u64),
        to_block_hash: B256,
        payments: &mut [PaymentLeaf],
    ) -> Option<Self> {
        Self::build_with_tree(epoch, round, (from_block, to_block), to_block_hash, payments).map(|(batch, ..)| batch)
    }

    /// [`Batch::build`], also handing back the leaf hashes in batch order and their tree: what
    /// the receipts of the round need, so the leaves are hashed and the tree built once.
    pub fn build_with_tree(
        epoch: u64,
        round: u64,
        (from_block, to_block): (u64, u64),
        to_block_hash: B256,
        payments: &mut [PaymentLeaf],
    ) -> Option<(Self, Vec<B256>, merkle::BatchTree)> {
        payments.sort_by_key(PaymentLeaf::order_key);
        let leaves: Vec<B256> = payments.iter().map(PaymentLeaf::hash).collect();
        let tree = merkle::BatchTree::new(&leaves);
        let root = tree.root()?;
        let leaf_count = u32::try_from(leaves.len()).ok()?;
        Some((Self { epoch, round, from_block, to_block, to_block_hash, root, leaf_count }, leaves, tree))
    }

    /// The 32-byte message operators sign, equal to `Settlement.batchMessage` on chain.
    pub fn message(&self, chain_id: u64, settlement: Address) -> B256 {
        keccak256(
            (
                *BATCH_TYPEHASH,
                U256::from(chain_id),
                settlement,
                self.epoch,
                self.round,
                self.from_block,
                self.to_block,
                self.to_block_hash,
                self.root,
                self.leaf_count,
            )
                .abi_encode(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(block: u64, log_index: u64) -> PaymentLeaf {
        PaymentLeaf {
            chain_id: 31337,
            tx_hash: keccak256(block.to_be_bytes()),
            log_index,
            block_number: block,
            invoice_id: B256::repeat_byte(1),
            merchant: Address::repeat_byte(2),
            payer: Address::repeat_byte(3),
            token: Address::ZERO,
            amount: U256::from(1000),
        }
    }

    #[test]
    fn order_of_input_does_not_change_the_batch() {
        let mut a = vec![leaf(5, 1), leaf(4, 9), leaf(5, 0)];
        let mut b = vec![leaf(5, 0), leaf(5, 1), leaf(4, 9)];
        assert_eq!(Batch::build(0, 1, (0, 9), B256::ZERO, &mut a), Batch::build(0, 1, (0, 9), B256::ZERO, &mut b));
        assert_eq!(a[0].order_key(), (4, 9));
    }

    #[test]
    fn empty_round_has_no_batch() {
        assert_eq!(Batch::build(0, 1, (0, 9), B256::ZERO, &mut []), None);
    }

    #[test]
    fn every_field_changes_leaf_and_message() {
        let base = leaf(5, 1);
        let mut other = base.clone();
        other.amount = U256::from(999);
        assert_ne!(base.hash(), other.hash());
        let batch = Batch::build(0, 1, (0, 9), B256::ZERO, &mut [base]).expect("one payment");
        let settlement = Address::repeat_byte(9);
        let msg = batch.message(31337, settlement);
        assert_ne!(msg, batch.message(1, settlement));
        assert_ne!(msg, batch.message(31337, Address::repeat_byte(8)));
        assert_ne!(msg, Batch { round: 2, ..batch }.message(31337, settlement));
        assert_ne!(msg, Batch { epoch: 1, ..batch }.message(31337, settlement));
        assert_ne!(msg, Batch { leaf_count: 2, ..batch }.message(31337, settlement));
        assert_ne!(msg, Batch { to_block_hash: B256::repeat_byte(4), ..batch }.message(31337, settlement));
    }
}
