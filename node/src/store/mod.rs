//! The node's embedded store: one redb file with ACID transactions (see docs/adr/0001).
//!
//! Tables and what they hold:
//! - `invoices`: invoice id → [`Invoice`] (JSON); `merchant_invoices`: (merchant, created, id);
//!   `invoice_expiries`: (expiry, id) of invoices whose expiry is not yet handled;
//!   `unannounced_invoices`: ids of invoices this node created that no announcement carried yet;
//!   `created_invoices`: (created, id) of the invoices this node created, for peers catching up
//! - `payments`: (block, log index) → confirmed [`PaymentRecord`] (JSON), ordered for round ranges
//! - `processed`: invoice id ‖ tx hash ‖ log index → (block, log index): the idempotency key
//! - `invoice_payments`: invoice id → (block, log index) of its payments
//! - `blocks`: block number → (hash, timestamp) of processed blocks, to detect reorgs
//! - `meta`: `checkpoint` (last fully processed block), `next_round` (first round not yet closed),
//!   `chain_id` (the chain whose pipeline writes this file; one file per chain)
//! - `state`: `halt` (why settlement is halted, when it is)
//! - `signed`: round → the batch this node signed and its signature (the signing guard)
//! - `settlements`: round → how the round was settled; `provisional_settlements`: rounds whose
//!   record came from this node's own receipt and awaits the watcher's confirmation
//! - `epochs`: epoch → the operator set committed on chain ([`OperatorSetSpec`], JSON);
//!   `set_approvals`: approvals of the next set
//! - `merchant_registry`: merchant id → its record and the approvals that made it;
//!   `merchant_changes`, `merchant_approvals`: changes waiting for approvals;
//!   `merchant_own_approvals`: (merchant, version) → the change this node approved, for good;
//!   `merchant_audit`: (applied at, change hash) → what was applied (see `merchants.rs`; kept in
//!   the first chain's file); `api_keys`: token SHA-256 → a merchant's API key (see
//!   `api_keys.rs`); `webhook_endpoints`: endpoint id → a merchant's own endpoint (see
//!   `webhook_endpoints.rs`)
//! - `outbox`, `outbox_pending`, `outbox_dead`, `outbox_attempts`, `delivery_acks`,
//!   `delivery_ack_times`, `merchant_endpoints`: webhook events, their attempts, the other
//!   operators' acknowledgements and delivery state (see `outbox.rs`); `outbox_due`,
//!   `outbox_order`: the queue's indexes by due time and by invoice (see `outbox_queue.rs`)
//!
//! Every multi-record change (a block range with its payments and checkpoint, a settlement with
//! its webhooks) is one write transaction, so a crash leaves either all of it or none.

mod acks;
mod api_keys;
mod approvals;
mod attempt_writer;
mod backup;
mod chain;
mod endpoint_state;
mod epochs;
mod group_writer;
mod halt_reason;
mod idempotency;
mod invoice_writer;
mod invoices;
mod merchant_pages;
mod merchants;
mod outbox;
mod outbox_queue;
mod rounds;
mod webhook_endpoints;

pub use api_keys::{ApiKey, KeyPut, Scope, key_slot};
pub use approvals::{ApprovalPut, MAX_APPROVALS_PER_SIGNER, StoredApproval};
pub use attempt_writer::AttemptWriter;
pub use backup::{check, restore};
pub use chain::{PaymentRecord, RangeApplied, RoundEnd, StoredBlock};
pub use endpoint_state::EndpointState;
pub use halt_reason::HaltReason;
pub use idempotency::{IDEMPOTENCY_TTL_S, IdempotencyRecord, KeyState, key_hash};
pub use invoice_writer::InvoiceWriter;
pub use invoices::{CreatedKey, Invoice, MAX_METADATA_BYTES};
pub use merchant_pages::{Page, PageBudget};
pub use merchants::{
    AuditEntry, MAX_PENDING_PER_SIGNER, MerchantApprovalPut, MerchantChange, PendingChange, PreviousSecret,
    RegistryEntry,
};
pub use outbox::{Attempt, AttemptEffect, AttemptOn, DueDelivery, OutboxEvent, Take, webhook_id};
pub use rounds::{SettlementRecord, SignedBatch, SigningOutcome};
pub use webhook_endpoints::{EndpointPut, EndpointRoutes, WebhookEndpoint, endpoint_state_key, takes};

use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(doc)]
use settleproof_consensus::OperatorSetSpec;
use std::path::Path;
use std::sync::Arc;

pub(crate) const INVOICES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("invoices");
pub(crate) const EXPIRIES: TableDefinition<(u64, [u8; 32]), ()> = TableDefinition::new("invoice_expiries");
pub(crate) const MERCHANT_INVOICES: TableDefinition<(&str, u64, [u8; 32]), ()> =
    TableDefinition::new("merchant_invoices");
/// (merchant, nonce) → the id of the invoice the merchant's signed request with that nonce
/// made, and when this node stored it (unix s, its own clock): one signed request makes one
/// invoice, whatever payout address or payments contract holds when it is replayed
/// (`Store::invoice_of_nonce`), and the time is what this node tells an operator that asks it
/// to vouch for the invoice (`rounds::invoice_fetch`). One table for both: each invoice every
/// node stores costs one more insert, not two. Invoices without a signed request (of versions
/// before them) are not in it.
pub(crate) const INVOICE_NONCES: TableDefinition<(&str, [u8; 32]), MadeAt> = TableDefinition::new("invoice_nonces");
/// An invoice id and when this node stored it (unix s).
pub(crate) type MadeAt = ([u8; 32], u64);
/// `meta` key set once every stored invoice is in `invoice_nonces`.
pub(crate) const INVOICE_NONCES_INDEXED: &str = "invoice_nonces_indexed";
/// Invoices this node created whose first announcement has not gone out yet: written with the
/// invoice in its durable create, removed once the announcement was sent.
pub(crate) const UNANNOUNCED: TableDefinition<[u8; 32], ()> = TableDefinition::new("unannounced_invoices");
/// Invoices this node created, by (creation time in seconds, id): written with the invoice in
/// its durable create, read by the operators that ask what they missed while they were away.
pub(crate) const CREATED: TableDefinition<(u64, [u8; 32]), ()> = TableDefinition::new("created_invoices");
pub(crate) const PAYMENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("payments");
pub(crate) const INVOICE_PAYMENTS: MultimapTableDefinition<[u8; 32], (u64, u64)> =
    MultimapTableDefinition::new("invoice_payments");
pub(crate) const PROCESSED: TableDefinition<[u8; 72], (u64, u64)> = TableDefinition::new("processed");
pub(crate) const BLOCKS: TableDefinition<u64, ([u8; 32], u64)> = TableDefinition::new("blocks");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// `meta` key of the chain whose data the file holds.
pub(crate) const CHAIN_ID: &str = "chain_id";
/// `meta` key of the first round not yet closed.
pub(crate) const NEXT_ROUND: &str = "next_round";
pub(crate) const SIGNED: TableDefinition<u64, &[u8]> = TableDefinition::new("signed");
pub(crate) const SETTLEMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("settlements");
pub(crate) const PROVISIONAL: TableDefinition<u64, ()> = TableDefinition::new("provisional_settlements");
pub(crate) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// Delivery id → the event's JSON body, written once (see `outbox.rs`).
pub(crate) const OUTBOX_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_bodies");
pub(crate) const OUTBOX_PENDING: TableDefinition<&str, u64> = TableDefinition::new("outbox_pending");
pub(crate) const DEAD: TableDefinition<&str, u64> = TableDefinition::new("outbox_dead");
pub(crate) const ATTEMPTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("outbox_attempts");
pub(crate) const ACKS: TableDefinition<(&str, u32), u64> = TableDefinition::new("delivery_acks");
pub(crate) const ACK_TIMES: TableDefinition<(u64, &str, u32), ()> = TableDefinition::new("delivery_ack_times");
pub(crate) const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("merchant_endpoints");
/// Payments a rewind removed after the merchant was told of them, by the told event's id: the
/// `payment.reverted` events still to queue.
/// Idempotency keys: (merchant, key hash) → (invoice id, unix seconds first seen).
type IdempotencyKey<'a> = (&'a str, [u8; 32]);
pub(crate) const IDEMPOTENCY: TableDefinition<IdempotencyKey, ([u8; 32], u64)> =
    TableDefinition::new("idempotency_keys");
pub(crate) const REVERSALS: TableDefinition<&str, &[u8]> = TableDefinition::new("payment_reversals");
pub(crate) const EPOCHS: TableDefinition<u64, &[u8]> = TableDefinition::new("epochs");
/// Approvals of set changes heard: (approving epoch, set hash, signer) → signature.
pub(crate) const SET_APPROVALS: TableDefinition<(u64, [u8; 32], u32), &[u8]> = TableDefinition::new("set_approvals");
pub(crate) const MERCHANT_REGISTRY: TableDefinition<&str, &[u8]> = TableDefinition::new("merchant_registry");
pub(crate) const MERCHANT_CHANGES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("merchant_changes");
pub(crate) const MERCHANT_APPROVALS: TableDefinition<([u8; 32], u32), &[u8]> =
    TableDefinition::new("merchant_approvals");
pub(crate) const MERCHANT_OWN: TableDefinition<(&str, u64), [u8; 32]> = TableDefinition::new("merchant_own_approvals");
pub(crate) const API_KEYS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("api_keys");
pub(crate) const WEBHOOK_ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhook_endpoints");
pub(crate) const MERCHANT_AUDIT: TableDefinition<(u64, [u8; 32]), &[u8]> = TableDefinition::new("merchant_audit");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb reported an error (I/O, corruption, lock).
    #[error("store error: {0}")]
    Db(#[from] redb::Error),
    /// A grouped invoice write failed (the transaction's error, shared by every invoice in it).
    #[error("the invoice write failed: {reason}")]
    GroupWrite {
        /// The transaction's error.
        reason: String,
    },
    /// A group writer's thread is gone (the node is stopping).
    #[error("the store's writer thread has stopped; the node is shutting down")]
    WriterStopped,
    /// A record could not be decoded.
    #[error("corrupt record in table `{table}`: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// The signing guard refused: a different batch was signed for this round on the same
    /// chain before.
    #[error("refusing to sign round {round}: root {signed} was signed for it on this chain before")]
    Equivocation {
        /// Round.
        round: u64,
        /// Root signed earlier.
        signed: alloy::primitives::B256,
    },
    /// The file holds another chain's data than the chain it was opened for.
    #[error(
        "{file} holds the data of chain {holds}, not of chain {wanted}; keep each chain's entry in [[chains]] where it was (the first chain's store is settleproof.redb, the others' settleproof-<chain_id>.redb)"
    )]
    OtherChain {
        /// The file.
        file: String,
        /// The chain it holds.
        holds: u64,
        /// The chain it was opened for.
        wanted: u64,
    },
    /// A file of a version before several chains holds another chain's records.
    #[error(
        "{file} holds no chain mark and its records are not of chain {wanted} ({why}); keep the chain this file was written for first in [[chains]], or restore that chain's own store"
    )]
    ForeignData {
        /// The file.
        file: String,
        /// The chain it was opened for.
        wanted: u64,
        /// What shows it.
        why: String,
    },
    /// The signing guard refused: batches of this round were signed on as many chains as it
    /// allows ([`settleproof_consensus::MAX_BATCHES_PER_ROUND`]).
    #[error("refusing to sign round {round}: it was signed on {signed} chains already, the most allowed")]
    TooManyChains {
        /// Round.
        round: u64,
        /// Batches signed.
        signed: usize,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
    ack_quorum: Arc<std::sync::atomic::AtomicUsize>,
    /// The merchants' own endpoints events fan out to (set once by the node).
    routes: Arc<std::sync::OnceLock<EndpointRoutes>>,
}

impl Store {
    /// Opens (or creates) the store file and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(INVOICES)?;
        tx.open_table(MERCHANT_INVOICES)?;
        tx.open_table(EXPIRIES)?;
        tx.open_table(UNANNOUNCED)?;
        tx.open_table(CREATED)?;
        tx.open_table(PAYMENTS)?;
        tx.open_multimap_table(INVOICE_PAYMENTS)?;
        tx.open_table(PROCESSED)?;
        tx.open_table(BLOCKS)?;
        tx.open_table(META)?;
        tx.open_table(STATE)?;
        tx.open_table(SIGNED)?;
        tx.open_table(SETTLEMENTS)?;
        tx.open_table(PROVISIONAL)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(OUTBOX_BODIES)?;
        tx.open_table(OUTBOX_PENDING)?;
        tx.open_table(DEAD)?;
        tx.open_table(ATTEMPTS)?;
        tx.open_table(ACKS)?;
        tx.open_table(ACK_TIMES)?;
        tx.open_table(ENDPOINTS)?;
        tx.open_table(REVERSALS)?;
        tx.open_table(IDEMPOTENCY)?;
        tx.open_table(EPOCHS)?;
        tx.open_table(SET_APPROVALS)?;
        tx.open_table(MERCHANT_REGISTRY)?;
        tx.open_table(MERCHANT_CHANGES)?;
        tx.open_table(MERCHANT_APPROVALS)?;
        tx.open_table(MERCHANT_AUDIT)?;
        tx.open_table(API_KEYS)?;
        tx.open_table(MERCHANT_OWN)?;
        tx.open_table(WEBHOOK_ENDPOINTS)?;
        tx.open_table(outbox_queue::OUTBOX_DUE)?;
        tx.open_table(outbox_queue::OUTBOX_ORDER)?;
        let indexed = outbox_queue::rebuild(&tx)?;
        let nonces = invoices::index_nonces(&tx)?;
        tx.commit()?;
        if indexed > 0 {
            tracing::info!(deliveries = indexed, "webhook queue indexed");
        }
        if nonces > 0 {
            tracing::info!(invoices = nonces, "invoices indexed by their merchant's nonce");
        }
        Ok(Self {
            db: Arc::new(db),
            ack_quorum: Arc::new(std::sync::atomic::AtomicUsize::new(1)),
            routes: Arc::default(),
        })
    }

    /// Opens the store of chain `chain_id` (payments contract `payments`) at `path`. A new file
    /// is marked as that chain's; a file marked for another chain is refused
    /// ([`StoreError::OtherChain`]). A file of a version before several chains has no mark: it
    /// is marked only when what it holds is of this chain (its payments name the chain, its
    /// invoices commit to the chain and contract), and refused otherwise
    /// ([`StoreError::ForeignData`]), so reordering `[[chains]]` while upgrading cannot hand
    /// one chain's checkpoint, signing guard and outbox to another.
    pub fn open_for_chain(
        path: &Path,
        chain_id: u64,
        payments: alloy::primitives::Address,
    ) -> Result<Self, StoreError> {
        let store = Self::open(path)?;
        let holds = store.read()?.open_table(META)?.get(CHAIN_ID)?.map(|v| v.value());
        match holds {
            Some(h) if h != chain_id => {
                return Err(StoreError::OtherChain { file: path.display().to_string(), holds: h, wanted: chain_id });
            }
            Some(_) => return Ok(store),
            None => {}
        }
        if let Some(why) = store.foreign_evidence(chain_id, payments)? {
            return Err(StoreError::ForeignData { file: path.display().to_string(), wanted: chain_id, why });
        }
        let tx = store.db.begin_write()?;
        tx.open_table(META)?.insert(CHAIN_ID, chain_id)?;
        tx.commit()?;
        Ok(store)
    }

    /// Why the unmarked file's records are not of chain `chain_id`, if they are not: its first
    /// payment names another chain, or its first invoice does not commit to this chain and
    /// `payments` contract.
    fn foreign_evidence(
        &self,
        chain_id: u64,
        payments: alloy::primitives::Address,
    ) -> Result<Option<String>, StoreError> {
        let tx = self.read()?;
        if let Some(entry) = tx.open_table(PAYMENTS)?.iter()?.next() {
            let (_, v) = entry?;
            let record: PaymentRecord = decode("payments", v.value())?;
            if record.leaf.chain_id != chain_id {
                return Ok(Some(format!("its payments are of chain {}", record.leaf.chain_id)));
            }
        }
        if let Some(entry) = tx.open_table(INVOICES)?.iter()?.next() {
            let (_, v) = entry?;
            let invoice: Invoice = decode("invoices", v.value())?;
            if !invoice.id_matches(chain_id, payments) {
                return Ok(Some(format!("its invoices are not payable on chain {chain_id} through {payments}")));
            }
        }
        Ok(None)
    }

    /// How many distinct other operators must acknowledge an event before this node takes it
    /// as delivered: f + 1 of them, so at least one is honest (1 until set).
    pub fn set_ack_quorum(&self, operators: usize) {
        self.ack_quorum.store(operators.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn ack_quorum(&self) -> usize {
        self.ack_quorum.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// A write transaction for bookkeeping that can be made again (webhook attempts and
    /// acknowledgements, replicated invoices, the next round to close), committed without
    /// waiting for the disk: the next durable commit persists it. A crash
    /// before that can only send an event again (receivers drop repeats by `webhook-id`), never
    /// lose one, because the events themselves are written durably with their settlement. It
    /// takes a delivery from one fsync per event to none.
    pub(crate) fn begin_bookkeeping(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::None)?;
        Ok(tx)
    }

    /// A read transaction.
    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs (no maps with non-string keys) to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    #[cfg(test)]
    decodes::count(table);
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { table, reason: e.to_string() })
}

/// The file of the store of `chains[index]` in `data_dir`: `settleproof.redb` for the first
/// chain (so a node of the single-chain form keeps its store), `settleproof-<chain_id>.redb`
/// for the others.
pub fn chain_store_path(data_dir: &Path, index: usize, chain_id: u64) -> std::path::PathBuf {
    if index == 0 { data_dir.join("settleproof.redb") } else { data_dir.join(format!("settleproof-{chain_id}.redb")) }
}

/// Records decoded per table on this thread, for tests that bound what an operation reads.
#[cfg(test)]
pub(crate) mod decodes {
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        static DECODED: RefCell<HashMap<&'static str, u64>> = RefCell::new(HashMap::new());
    }

    pub(crate) fn count(table: &'static str) {
        DECODED.with(|d| *d.borrow_mut().entry(table).or_default() += 1);
    }

    /// Records of `table` decoded on this thread since the last call, and starts again.
    pub(crate) fn take(table: &'static str) -> u64 {
        DECODED.with(|d| d.borrow_mut().remove(table).unwrap_or(0))
    }
}

#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("settleproof.redb")).expect("open store");
    (dir, store)
}

#[cfg(test)]
mod chain_stamp_tests {
    use super::*;

    const PAYMENTS: alloy::primitives::Address = alloy::primitives::Address::repeat_byte(0x22);

    #[test]
    fn a_store_opened_for_one_chain_refuses_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = chain_store_path(dir.path(), 0, 31337);
        drop(Store::open_for_chain(&path, 31337, PAYMENTS).expect("new file"));
        drop(Store::open_for_chain(&path, 31337, PAYMENTS).expect("same chain"));
        let err = Store::open_for_chain(&path, 8453, PAYMENTS).expect_err("another chain");
        assert!(matches!(err, StoreError::OtherChain { holds: 31337, wanted: 8453, .. }), "{err}");
        assert!(err.to_string().contains("[[chains]]"), "{err}");
        assert_eq!(chain_store_path(dir.path(), 1, 8453), dir.path().join("settleproof-8453.redb"));
    }

    /// A file written before chain marks existed is adopted only by the chain its records are
    /// of.
    #[test]
    fn an_unmarked_file_is_adopted_only_by_the_chain_of_its_invoices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("settleproof.redb");
        let store = Store::open(&path).expect("old file");
        let mut invoice = Invoice {
            id: alloy::primitives::B256::ZERO,
            nonce: alloy::primitives::B256::repeat_byte(7),
            merchant_id: "shop".into(),
            payout_address: alloy::primitives::Address::repeat_byte(0x11),
            amount: alloy::primitives::U256::from(5u64),
            token: alloy::primitives::Address::ZERO,
            created_at: 1,
            expires_at: None,
            metadata: None,
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
        };
        invoice.id = invoice.terms(31337, PAYMENTS).id();
        store.put_invoice(&invoice).expect("invoice");
        drop(store);
        let err = Store::open_for_chain(&path, 8453, PAYMENTS).expect_err("another chain's file");
        assert!(matches!(err, StoreError::ForeignData { wanted: 8453, .. }), "{err}");
        drop(Store::open_for_chain(&path, 31337, PAYMENTS).expect("its own chain"));
        let err = Store::open_for_chain(&path, 8453, PAYMENTS).expect_err("marked now");
        assert!(matches!(err, StoreError::OtherChain { holds: 31337, .. }), "{err}");
    }
}
