//! The chains a node serves, as the handlers see them: each chain's store, contracts, watcher,
//! providers and halt switch. Requests name a chain by `chain_id`; those that name none use
//! the first configured chain.

use super::ApiError;
use crate::chain::ChainClient;
use crate::chain::watcher::WatcherStatus;
use crate::replication::InvoiceReplicator;
use crate::store::{InvoiceWriter, Store};
use alloy::primitives::Address;
use settleproof_consensus::RoundSchedule;
use std::sync::Arc;

/// One chain's part of the API state.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Its name (`chains[].name`).
    pub name: String,
    /// Its store.
    pub store: Store,
    /// Rounds, to tell which round settles a payment.
    pub schedule: RoundSchedule,
    /// `InvoicePayments` address, for payment instructions.
    pub payments_contract: Address,
    /// `Settlement` address, for receipts.
    pub settlement_contract: Address,
    /// Replicates new invoices to the other operators; `None` in handler tests.
    pub replicator: Option<InvoiceReplicator>,
    /// Writes created invoices durably in groups; `None` in handler tests (a commit each).
    pub invoice_writer: Option<InvoiceWriter>,
    /// The operator sets by epoch; `None` in handler tests (one operator, threshold 1).
    pub epochs: Option<Arc<crate::epochs::Epochs>>,
    /// Chain client, for provider health; `None` in handler tests.
    pub chain: Option<ChainClient>,
    /// What the watcher last saw; `None` in handler tests.
    pub watcher: Option<Arc<WatcherStatus>>,
    /// Wakes the chain's webhook worker after a replay.
    pub webhook_wake: Option<Arc<tokio::sync::Notify>>,
    /// The chain's safety switch; `None` in handler tests.
    pub halt: Option<crate::halt::Halt>,
    /// Balance below which the keeper hands its turns over on this chain, wei.
    pub min_balance_wei: u128,
}

impl ChainState {
    /// A chain of a handler test: its store and contracts, no network.
    pub fn offline(
        chain_id: u64,
        store: Store,
        schedule: RoundSchedule,
        payments: Address,
        settlement: Address,
    ) -> Self {
        Self {
            chain_id,
            name: format!("chain-{chain_id}"),
            store,
            schedule,
            payments_contract: payments,
            settlement_contract: settlement,
            replicator: None,
            invoice_writer: None,
            epochs: None,
            chain: None,
            watcher: None,
            webhook_wake: None,
            halt: None,
            min_balance_wei: 0,
        }
    }

    /// Operators and threshold of the set settling the next round to close on this chain (the
    /// latest set before the first round is known).
    pub fn set_size(&self) -> (usize, usize) {
        let round = self.store.next_round().unwrap_or(0);
        self.epochs
            .as_ref()
            .and_then(|e| e.for_round(round).or_else(|| e.latest()))
            .map_or((1, 1), |s| (s.len(), s.threshold))
    }

    /// How many of the `connected` peers are operators of the set settling this chain's next
    /// round (all of them in handler tests, which have no sets).
    pub fn connected_operators(&self, connected: &[settleproof_p2p::PeerId]) -> usize {
        let Some(epochs) = &self.epochs else { return connected.len() };
        let round = self.store.next_round().unwrap_or(0);
        match epochs.for_round(round).or_else(|| epochs.latest()) {
            Some(set) => connected.iter().filter(|p| set.index_of_peer(p).is_some()).count(),
            None => connected.len(),
        }
    }

    /// Wakes the webhook worker.
    pub fn wake(&self) {
        if let Some(w) = &self.webhook_wake {
            w.notify_one();
        }
    }
}

/// The chains, never empty: the first is the default.
#[derive(Debug, Clone)]
pub struct Chains {
    first: ChainState,
    rest: Vec<ChainState>,
}

impl Chains {
    /// The chains, `first` the default.
    pub fn new(first: ChainState, rest: Vec<ChainState>) -> Self {
        Self { first, rest }
    }

    /// The default chain (the first configured).
    pub fn first(&self) -> &ChainState {
        &self.first
    }

    /// Every chain, the default first.
    pub fn iter(&self) -> impl Iterator<Item = &ChainState> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// Chain `id`, or the default when `None`; a 400 naming `field` and the served chains when
    /// this node does not serve it.
    pub fn get(&self, id: Option<u64>, field: &'static str) -> Result<&ChainState, ApiError> {
        let Some(id) = id else { return Ok(&self.first) };
        self.iter().find(|c| c.chain_id == id).ok_or_else(|| {
            let served: Vec<String> = self.iter().map(|c| format!("{} ({})", c.chain_id, c.name)).collect();
            ApiError::invalid(field, format!("chain {id} is not served by this node; served: {}", served.join(", ")))
        })
    }
}
