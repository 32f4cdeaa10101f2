//! The chain client: typed reads. Every read goes to all configured providers and counts only
//! with a quorum ([`ProviderSet`]); the keeper's transactions go out through
//! [`super::sender::SettlementSender`].

use super::providers::{BlockRef, ProviderSet, ProviderStatus};
use super::quorum::{LogKey, QuorumError};
use crate::store::{PaymentRecord, SettlementRecord, StoredBlock};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use futures::{StreamExt, TryStreamExt};
use settleproof_config::ChainSection;
use settleproof_consensus::{Batch, OperatorSetSpec, PaymentLeaf};
use settleproof_contracts::{InvoicePayments, Settlement};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Block reads of one range under way at once (each asks every provider).
pub(crate) const PARALLEL_BLOCK_READS: usize = 8;

/// Errors talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// An RPC endpoint URL is invalid.
    #[error("{0}")]
    BadUrl(String),
    /// The RPC call failed.
    #[error("rpc call failed: {}", crate::redact::scrub(&.0.to_string()))]
    Rpc(#[from] alloy::transports::TransportError),
    /// The providers did not reach a quorum.
    #[error("provider quorum: {0}")]
    Quorum(#[from] QuorumError),
    /// A contract call failed or reverted.
    #[error("contract call failed: {}", crate::redact::scrub(&.0.to_string()))]
    Contract(#[from] alloy::contract::Error),
    /// Waiting for a transaction failed.
    #[error("transaction not confirmed: {}", crate::redact::scrub(&.0.to_string()))]
    Pending(#[from] alloy::providers::PendingTransactionError),
    /// The providers serve another chain.
    #[error("providers report chain id {got}, config says chain.chain_id = {expected}")]
    WrongChain {
        /// Configured.
        expected: u64,
        /// Reported.
        got: u64,
    },
    /// Agreed answers contradict each other (the chain moved between two reads); retried.
    #[error("inconsistent chain data: {0}")]
    Inconsistent(String),
    /// The settlement transaction was mined but reverted, or its simulation failed.
    #[error("settlement transaction {tx} reverted: {reason}")]
    Reverted {
        /// Transaction (zero for a simulation).
        tx: B256,
        /// The decoded revert reason, or what is known.
        reason: String,
    },
    /// A contract's answer could not be decoded.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// Which answer.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// Settlement is halted by a violated invariant.
    #[error("settlement halted: {0}")]
    Halted(String),
    /// The settlement transaction was not mined after every fee bump.
    #[error("settlement transaction not mined after {0} attempts")]
    NotMined(u32),
}

/// Everything `Settlement.settle` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleCall {
    /// The batch.
    pub batch: Batch,
    /// Bit i set when operator i signed.
    pub signer_bitmap: U256,
    /// The signers' EIP-2537 G2 public keys, ascending by index: not sent (the contract holds
    /// the keys), kept for the receipts of the provisional record.
    pub signer_keys: Bytes,
    /// The EIP-2537 G1 aggregate signature.
    pub signature: Bytes,
}

/// An `EpochCommitted` log: the settlement contract installed an operator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochCommit {
    /// The event.
    pub event: Settlement::EpochCommitted,
    /// Block of the commit.
    pub block_number: u64,
}

/// Typed reads of the chain for one node.
#[derive(Debug, Clone)]
pub struct ChainClient {
    pub(super) reads: Arc<ProviderSet>,
    chain_id: u64,
    payments: Address,
    settlement: Address,
    account: Address,
}

/// Logs of one block range, decoded and agreed by a provider quorum.
#[derive(Debug, Clone, Default)]
pub struct RangeEvents {
    /// `InvoicePaid` logs with their blocks.
    pub payments: Vec<PaymentRecord>,
    /// `Settled` logs.
    pub settlements: Vec<SettlementRecord>,
    /// `EpochCommitted` logs: operator sets installed.
    pub epochs: Vec<EpochCommit>,
    /// The blocks holding those logs.
    pub blocks: Vec<StoredBlock>,
    /// Logs some providers showed that neither a quorum agrees on nor a quorum answered
    /// without: the range must be read again.
    pub unagreed: usize,
    /// Logs of our contracts with a known event signature that do not decode (a lying
    /// provider, or an event this version does not know): counted and skipped.
    pub undecodable: usize,
}

impl ChainClient {
    /// A client for `cfg`; `account` is this node's settlement account.
    /// Reads through `cfg.rpc_endpoints` over `http`.
    pub fn new(cfg: &ChainSection, account: Address, http: &reqwest::Client) -> Result<Self, ChainError> {
        Ok(Self::over(ProviderSet::new(cfg, http).map_err(ChainError::BadUrl)?, cfg, account))
    }

    /// A client for `cfg` reading through `reads`, whatever their transport (an in-process
    /// chain in unit tests).
    pub fn over(reads: ProviderSet, cfg: &ChainSection, account: Address) -> Self {
        Self {
            reads: Arc::new(reads),
            chain_id: cfg.chain_id,
            payments: cfg.payments_contract,
            settlement: cfg.settlement_contract,
            account,
        }
    }

    /// Fails unless a quorum of providers serves the configured chain.
    pub async fn check_chain_id(&self) -> Result<(), ChainError> {
        let got = self.reads.chain_id().await?;
        if got != self.chain_id {
            return Err(ChainError::WrongChain { expected: self.chain_id, got });
        }
        Ok(())
    }

    /// The highest block a quorum of providers has reached.
    pub async fn head(&self) -> Result<u64, ChainError> {
        Ok(self.reads.head().await?)
    }

    /// Block `number` as a quorum reports it.
    pub async fn block(&self, number: u64) -> Result<StoredBlock, ChainError> {
        Ok(self.block_and_parent(number).await?.0)
    }

    /// Block `number` and its parent's hash, as a quorum reports them.
    pub async fn block_and_parent(&self, number: u64) -> Result<(StoredBlock, B256), ChainError> {
        let BlockRef { number, hash, timestamp, parent_hash } = self.reads.block(number).await?;
        Ok((StoredBlock { number, hash, timestamp }, parent_hash))
    }

    /// Breaker state of each provider.
    pub fn provider_status(&self) -> Vec<ProviderStatus> {
        self.reads.status()
    }

    /// Providers that must agree.
    pub fn rpc_quorum(&self) -> usize {
        self.reads.quorum()
    }

    /// This node's settlement account balance, as a quorum reports it.
    pub async fn balance(&self) -> Result<U256, ChainError> {
        Ok(self.reads.balance(self.account).await?)
    }

    /// This node's next nonce counting its pooled transactions, as a quorum reports it.
    pub async fn pending_nonce(&self) -> Result<u64, ChainError> {
        Ok(self.reads.transaction_count(self.account, true).await?)
    }

    /// EIP-1559 fees (max fee, tip), the median of the providers' estimates.
    pub async fn fees(&self) -> Result<(u128, u128), ChainError> {
        Ok(self.reads.fees().await?)
    }

    /// `InvoicePaid`, `Settled` and `EpochCommitted` logs of blocks `from..=to` that a quorum of
    /// providers agree on.
    pub async fn events(&self, from: u64, to: u64) -> Result<RangeEvents, ChainError> {
        self.events_where(self.event_filter().from_block(from).to_block(to), from, to, None).await
    }

    /// [`ChainClient::events`] of blocks `from..=to.number`, `to` as the quorum read it (it is not
    /// read again). A range of one block is asked for by its hash (EIP-234), so its logs are
    /// that block's whatever the chain did meanwhile.
    pub async fn events_up_to(&self, from: u64, to: &StoredBlock) -> Result<RangeEvents, ChainError> {
        let filter = if from == to.number {
            self.event_filter().at_block_hash(to.hash)
        } else {
            self.event_filter().from_block(from).to_block(to.number)
        };
        self.events_where(filter, from, to.number, Some(to)).await
    }

    fn event_filter(&self) -> Filter {
        Filter::new().address(vec![self.payments, self.settlement]).event_signature(vec![
            InvoicePayments::InvoicePaid::SIGNATURE_HASH,
            Settlement::Settled::SIGNATURE_HASH,
            Settlement::EpochCommitted::SIGNATURE_HASH,
        ])
    }

    async fn events_where(
        &self,
        filter: Filter,
        from: u64,
        to: u64,
        known: Option<&StoredBlock>,
    ) -> Result<RangeEvents, ChainError> {
        let vote = self.reads.logs(&filter).await?;
        let mut out = RangeEvents { unagreed: vote.unresolved(self.reads.quorum()), ..RangeEvents::default() };
        // The blocks holding the logs, read in parallel (but the one already read).
        let numbers: std::collections::BTreeSet<u64> = vote
            .accepted
            .iter()
            .map(|l| l.block_number)
            .filter(|n| (from..=to).contains(n) && known.is_none_or(|k| k.number != *n))
            .collect();
        let read: Vec<StoredBlock> = futures::stream::iter(numbers.into_iter().map(|n| self.block(n)))
            .buffered(PARALLEL_BLOCK_READS)
            .try_collect()
            .await?;
        let mut blocks: BTreeMap<u64, StoredBlock> = read.into_iter().map(|b| (b.number, b)).collect();
        if let Some(k) = known.filter(|k| vote.accepted.iter().any(|l| l.block_number == k.number)) {
            blocks.insert(k.number, *k);
        }
        for log in &vote.accepted {
            let Some(&block) = blocks.get(&log.block_number) else {
                return Err(ChainError::Inconsistent(format!(
                    "a quorum shows a log of block {} for blocks {from}..={to}",
                    log.block_number
                )));
            };
            if block.hash != log.block_hash {
                return Err(ChainError::Inconsistent(format!(
                    "log of block {} names hash {}, the block is {}",
                    block.number, log.block_hash, block.hash
                )));
            }
            if log.address == self.payments {
                match InvoicePayments::InvoicePaid::decode_raw_log(log.topics.iter().copied(), &log.data) {
                    Ok(e) => out.payments.push(PaymentRecord {
                        leaf: self.payment_leaf(log, &e),
                        block_hash: block.hash,
                        block_timestamp: block.timestamp,
                        confirmed_at_ms: crate::time::now_ms(),
                    }),
                    Err(e) => undecodable(self.chain_id(), &mut out, log, "InvoicePaid", &e.to_string()),
                }
            } else if log.address == self.settlement
                && log.topics.first() == Some(&Settlement::EpochCommitted::SIGNATURE_HASH)
            {
                match Settlement::EpochCommitted::decode_raw_log(log.topics.iter().copied(), &log.data) {
                    Ok(event) => out.epochs.push(EpochCommit { event, block_number: log.block_number }),
                    Err(e) => undecodable(self.chain_id(), &mut out, log, "EpochCommitted", &e.to_string()),
                }
            } else if log.address == self.settlement {
                match Settlement::Settled::decode_raw_log(log.topics.iter().copied(), &log.data) {
                    Ok(e) => out.settlements.push(settlement_of(log, e)),
                    Err(e) => undecodable(self.chain_id(), &mut out, log, "Settled", &e.to_string()),
                }
            }
        }
        out.blocks = blocks.into_values().collect();
        Ok(out)
    }

    fn payment_leaf(&self, log: &LogKey, e: &InvoicePayments::InvoicePaid) -> PaymentLeaf {
        PaymentLeaf {
            chain_id: self.chain_id,
            tx_hash: log.tx_hash,
            log_index: log.log_index,
            block_number: log.block_number,
            invoice_id: e.invoiceId,
            merchant: e.merchant,
            payer: e.payer,
            token: e.token,
            amount: e.amount,
        }
    }

    /// The settlements of blocks `from..=to` (above the confirmation depth) that a quorum of
    /// providers agree on now, as provisional records: a log some providers do not show yet is
    /// left for a later read. The watcher takes them at the depth, or drops them.
    pub async fn settlements_ahead(&self, from: u64, to: u64) -> Result<Vec<SettlementRecord>, ChainError> {
        Ok(self
            .settled_logs(from, to)
            .await?
            .into_iter()
            .filter(|(l, _)| (from..=to).contains(&l.block_number))
            .map(|(l, e)| SettlementRecord { provisional: true, seen_ahead: true, ..settlement_of(&l, e) })
            .collect())
    }

    /// The `Settled` events of blocks `from..=to` that a quorum of providers agree on, with
    /// their logs.
    async fn settled_logs(&self, from: u64, to: u64) -> Result<Vec<(LogKey, Settlement::Settled)>, ChainError> {
        let filter = Filter::new()
            .address(self.settlement)
            .event_signature(Settlement::Settled::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let vote = self.reads.logs(&filter).await?;
        Ok(vote
            .accepted
            .into_iter()
            .filter(|l| l.address == self.settlement)
            .filter_map(|l| {
                let e = Settlement::Settled::decode_raw_log(l.topics.iter().copied(), &l.data).ok()?;
                Some((l, e))
            })
            .collect())
    }

    /// The batches of blocks `from..=to` that the chain shows settled with this node's bit in
    /// their bitmap (its index in the batch's epoch, for the epochs it knows), from the
    /// `Settled` events a quorum agrees on.
    pub async fn batches_signed_by(
        &self,
        epochs: &crate::epochs::Epochs,
        from: u64,
        to: u64,
    ) -> Result<Vec<Batch>, ChainError> {
        Ok(self
            .settled_logs(from, to)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| epochs.get(e.epoch).and_then(|s| s.me).is_some_and(|i| e.signerBitmap.bit(i)))
            .map(|e| Batch {
                epoch: e.epoch,
                round: e.round,
                from_block: e.fromBlock,
                to_block: e.toBlock,
                to_block_hash: e.toBlockHash,
                root: e.root,
                leaf_count: e.leafCount,
            })
            .collect())
    }

    /// The operator set `commit` installed, from the `OperatorsStaged` logs of its stager and
    /// set hash that a quorum agrees on, read `step` blocks at a time backwards from the
    /// commit's block (never below `from`) and only until they make the set: a set is staged
    /// shortly before it is committed, so a year of chain history costs no more reads than a
    /// day. The records must be contiguous and hash to the committed set hash.
    pub async fn staged_set(&self, commit: &EpochCommit, from: u64, step: u64) -> Result<OperatorSetSpec, ChainError> {
        let mut chunks: BTreeMap<u64, Vec<Settlement::OperatorRecord>> = BTreeMap::new();
        let mut end = commit.block_number;
        loop {
            let start = end.saturating_sub(step.max(1) - 1).max(from);
            let filter = Filter::new()
                .address(self.settlement)
                .event_signature(Settlement::OperatorsStaged::SIGNATURE_HASH)
                .topic1(commit.event.stager.into_word())
                .topic2(commit.event.setHash)
                .from_block(start)
                .to_block(end);
            let vote = self.reads.logs(&filter).await?;
            if vote.unresolved(self.reads.quorum()) > 0 {
                return Err(ChainError::Inconsistent(format!(
                    "the staged operators of epoch {} lack a provider quorum in blocks {start}..={end}",
                    commit.event.epoch
                )));
            }
            for log in vote.accepted.iter().filter(|l| l.address == self.settlement) {
                let e = Settlement::OperatorsStaged::decode_raw_log(log.topics.iter().copied(), &log.data)
                    .map_err(|e| ChainError::Decode { what: "OperatorsStaged", detail: e.to_string() })?;
                // Read backwards: a later staging of the same set stands over an earlier one.
                chunks.entry(e.firstIndex.saturating_to::<u64>()).or_insert(e.records);
            }
            let assembled = settleproof_contracts::assemble_set(&commit.event, chunks.clone());
            if assembled.is_ok() || start <= from {
                return assembled.map_err(ChainError::Inconsistent);
            }
            end = start - 1;
        }
    }

    /// The settlement contract's grace period, blocks, as a quorum reports it.
    pub async fn grace_blocks(&self) -> Result<u64, ChainError> {
        let data = Settlement::graceBlocksCall {}.abi_encode();
        let answer = self.reads.call(self.settlement, Bytes::from(data)).await?;
        Settlement::graceBlocksCall::abi_decode_returns(&answer)
            .map_err(|e| ChainError::Decode { what: "graceBlocks", detail: e.to_string() })
    }

    /// An ERC-20's `symbol()` and `decimals()`, as a quorum reports them.
    pub async fn token_info(&self, token: Address) -> Result<(String, u8), ChainError> {
        use settleproof_contracts::IERC20;
        let symbol = self.reads.call(token, Bytes::from(IERC20::symbolCall {}.abi_encode())).await?;
        let decimals = self.reads.call(token, Bytes::from(IERC20::decimalsCall {}.abi_encode())).await?;
        let symbol = IERC20::symbolCall::abi_decode_returns(&symbol)
            .map_err(|e| ChainError::Decode { what: "symbol", detail: e.to_string() })?;
        let decimals = IERC20::decimalsCall::abi_decode_returns(&decimals)
            .map_err(|e| ChainError::Decode { what: "decimals", detail: e.to_string() })?;
        Ok((symbol, decimals))
    }

    /// Root settled on chain for `round`, zero when not settled, as a quorum reports it.
    pub async fn settled_root(&self, round: u64) -> Result<B256, ChainError> {
        let data = Settlement::settledRootCall { round }.abi_encode();
        let answer = self.reads.call(self.settlement, Bytes::from(data)).await?;
        Settlement::settledRootCall::abi_decode_returns(&answer)
            .map_err(|e| ChainError::Decode { what: "settledRoot", detail: e.to_string() })
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// This node's settlement account.
    pub fn account(&self) -> Address {
        self.account
    }

    /// `InvoicePayments` contract address.
    pub fn payments_address(&self) -> Address {
        self.payments
    }

    /// Settlement contract address.
    pub fn settlement_address(&self) -> Address {
        self.settlement
    }
}

/// Counts and logs a log of one of our contracts that does not decode; the watcher moves on.
/// The record of a `Settled` event.
fn settlement_of(log: &LogKey, e: Settlement::Settled) -> SettlementRecord {
    SettlementRecord {
        round: e.round,
        epoch: e.epoch,
        root: e.root,
        signer_bitmap: e.signerBitmap,
        tx_hash: log.tx_hash,
        block_number: log.block_number,
        submitter: e.submitter,
        signature: e.signature,
        from_block: e.fromBlock,
        to_block: e.toBlock,
        to_block_hash: e.toBlockHash,
        leaf_count: e.leafCount,
        ..Default::default()
    }
}

fn undecodable(chain_id: u64, out: &mut RangeEvents, log: &LogKey, event: &'static str, error: &str) {
    out.undecodable += 1;
    metrics::counter!("chain_undecodable_logs_total", "chain_id" => chain_id.to_string(), "event" => event)
        .increment(1);
    tracing::error!(event, tx_hash = %log.tx_hash, block = log.block_number, log_index = log.log_index, error, "agreed log does not decode: skipped");
}
