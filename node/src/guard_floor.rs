//! The signing guard never sits below what the chain shows this node signed. A node restored
//! from a backup has lost the guard records made after the backup; before it signs anything it
//! reads the `Settled` events from its checkpoint to the head (through the provider quorum) and
//! raises the guard to every batch whose signer bitmap holds its bit. Rebuilding one of those
//! rounds differently later (a lying provider, a reorg) is then refused as an equivocation.

use crate::chain::{ChainClient, ChainError};
use crate::epochs::Epochs;
use crate::store::{Store, StoreError};
use tracing::{info, warn};

/// Errors of raising the guard.
#[derive(Debug, thiserror::Error)]
pub enum GuardFloorError {
    /// Chain reads failed or had no quorum.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tries of the whole read before the node gives up starting, and the pause between them.
const TRIES: u32 = 5;
/// The pause.
const PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// [`raise_once`], tried again while the provider quorum cannot be had: the node does not sign
/// before its guard is up, nor give up at the first unreachable provider.
pub async fn raise_to_chain(
    chain: &ChainClient,
    store: &Store,
    epochs: &Epochs,
    start_block: u64,
    step: u64,
) -> Result<usize, GuardFloorError> {
    let mut tries = 0;
    loop {
        match raise_once(chain, store, epochs, start_block, step).await {
            Err(GuardFloorError::Chain(e)) if tries + 1 < TRIES => {
                tries += 1;
                warn!(error = %e, attempt = tries, "cannot read the settlements this node signed yet; trying again");
                tokio::time::sleep(PAUSE).await;
            }
            other => return other,
        }
    }
}

/// Raises the guard of this node to the batches settled with its signature (its bit in the
/// bitmap of the batch's epoch, for the epochs it knows) in blocks after
/// the checkpoint (from `start_block` on a new store), reading `step` blocks at a time. Returns
/// how many rounds it raised.
async fn raise_once(
    chain: &ChainClient,
    store: &Store,
    epochs: &Epochs,
    start_block: u64,
    step: u64,
) -> Result<usize, GuardFloorError> {
    let head = chain.head().await?;
    let mut from = store.checkpoint()?.map_or(start_block, |c| c + 1);
    let mut raised = 0;
    while from <= head {
        let to = head.min(from.saturating_add(step.max(1) - 1));
        for batch in chain.batches_signed_by(epochs, from, to).await? {
            if store.raise_guard(batch)? {
                raised += 1;
                warn!(round = batch.round, root = %batch.root, "signing guard raised to a batch the chain shows this node signed (the store predates it)");
            }
        }
        from = to + 1;
    }
    if raised > 0 {
        info!(raised, "signing guard raised to the chain");
    }
    Ok(raised)
}
