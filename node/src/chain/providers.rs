//! The node's own RPC providers, read as a quorum.
//!
//! Every read goes to all providers in parallel. Each call has a timeout, transient failures are
//! retried with exponential backoff and jitter, and each provider has a circuit breaker so a
//! dead one is not waited on. The answers are then combined by [`super::quorum`].

use super::breaker::{BreakerState, CircuitBreaker};
use super::classify::{ErrorClass, classify};
use super::quorum::{self, LogKey, LogVote, QuorumError};
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::transports::TransportError;
use rand::Rng;
use serde::Serialize;
use settleproof_config::ChainSection;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A block as the quorum agreed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Timestamp, unix seconds.
    pub timestamp: u64,
}

/// Health of one provider, for readiness checks.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    /// Label used in logs and metrics (`rpc-0`, `rpc-1`, …; URLs may hold credentials).
    pub label: String,
    /// `closed` (healthy), `open` (failing, skipped) or `half_open` (probing).
    pub breaker: &'static str,
}

#[derive(Debug)]
struct Slot {
    label: String,
    provider: DynProvider,
    breaker: Mutex<CircuitBreaker>,
}

/// The providers of one node.
#[derive(Debug)]
pub struct ProviderSet {
    slots: Vec<Slot>,
    quorum: usize,
    timeout: Duration,
    retries: u32,
}

/// Why a single provider call failed.
#[derive(Debug)]
enum CallError {
    Refused,
    Timeout,
    Rpc(TransportError),
}

impl ProviderSet {
    /// Providers for `cfg.rpc_endpoints`, over `http` (see [`crate::outbound`]); `Err` names
    /// the endpoint that is not a URL. Each URL is registered with [`crate::redact`] under its
    /// label, so no error shows it.
    pub fn new(cfg: &ChainSection, http: &reqwest::Client) -> Result<Self, String> {
        let mut slots = Vec::new();
        for (i, url) in cfg.rpc_endpoints.iter().enumerate() {
            let label = format!("rpc-{i}");
            crate::redact::register(url, &label);
            let parsed = url.parse().map_err(|_| format!("chain.rpc_endpoints[{i}] is not a URL"))?;
            slots.push(Slot {
                label,
                provider: ProviderBuilder::new().connect_reqwest(http.clone(), parsed).erased(),
                breaker: Mutex::new(CircuitBreaker::new(
                    cfg.rpc_breaker_failures,
                    Duration::from_millis(cfg.rpc_breaker_open_ms),
                )),
            });
        }
        Ok(Self {
            slots,
            quorum: cfg.rpc_quorum,
            timeout: Duration::from_millis(cfg.rpc_timeout_ms),
            retries: cfg.rpc_retries,
        })
    }

    /// Breaker state of each provider.
    pub fn status(&self) -> Vec<ProviderStatus> {
        self.slots
            .iter()
            .map(|s| ProviderStatus {
                label: s.label.clone(),
                breaker: match s.breaker.lock().map(|b| b.state()) {
                    Ok(BreakerState::Closed { .. }) => "closed",
                    Ok(BreakerState::HalfOpen) => "half_open",
                    _ => "open",
                },
            })
            .collect()
    }

    /// Providers needed to agree.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The highest block a quorum of providers has reached.
    pub async fn head(&self) -> Result<u64, QuorumError> {
        let heads = self.all("eth_blockNumber", |p| async move { p.get_block_number().await }).await;
        self.check("head", quorum::pinned_height(&heads, self.quorum))
    }

    /// Chain id as a quorum reports it.
    pub async fn chain_id(&self) -> Result<u64, QuorumError> {
        let ids = self.all("eth_chainId", |p| async move { p.get_chain_id().await }).await;
        self.check("chain_id", quorum::agreed(&ids, self.quorum))
    }

    /// Hash and timestamp of block `number`, as a quorum reports them.
    pub async fn block(&self, number: u64) -> Result<BlockRef, QuorumError> {
        let answers = self
            .all("eth_getBlockByNumber", |p| async move {
                let block = p.get_block_by_number(BlockNumberOrTag::Number(number)).await?;
                let b = block.ok_or(alloy::transports::RpcError::NullResp)?;
                Ok(BlockRef { number, hash: b.header.hash, timestamp: b.header.timestamp })
            })
            .await;
        self.check("block", quorum::agreed(&answers, self.quorum))
    }

    /// The transaction count of `account` (its next nonce; with `pending`, counting its
    /// transactions in the pool), as a quorum reports it.
    pub async fn transaction_count(&self, account: Address, pending: bool) -> Result<u64, QuorumError> {
        let answers = self
            .all("eth_getTransactionCount", |p| async move {
                let count = p.get_transaction_count(account);
                if pending { count.pending().await } else { count.latest().await }
            })
            .await;
        self.check("transaction_count", quorum::agreed(&answers, self.quorum))
    }

    /// The balance of `account` at the latest block, as a quorum reports it.
    pub async fn balance(&self, account: Address) -> Result<alloy::primitives::U256, QuorumError> {
        let answers = self.all("eth_getBalance", |p| async move { p.get_balance(account).await }).await;
        self.check("balance", quorum::agreed(&answers, self.quorum))
    }

    /// The return data of calling `to` with `data` at the latest block, as a quorum reports it.
    pub async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, QuorumError> {
        let answers = self
            .all("eth_call", |p| {
                let req = TransactionRequest::default().with_to(to).with_input(data.clone());
                // At the latest block: the pending one would count transactions still in the
                // pool (a keeper's own settlement) as settled.
                async move { p.call(req).block(BlockId::latest()).await }
            })
            .await;
        self.check("call", quorum::agreed(&answers, self.quorum))
    }

    /// EIP-1559 fee estimates (max fee, tip): the median of the providers' answers, over at
    /// least a quorum of them, so one provider cannot make the keeper overpay or stall.
    pub async fn fees(&self) -> Result<(u128, u128), QuorumError> {
        let answers = self
            .all("eth_feeHistory", |p| async move {
                p.estimate_eip1559_fees().await.map(|f| (f.max_fee_per_gas, f.max_priority_fee_per_gas))
            })
            .await;
        let max_fee: Vec<Option<u128>> = answers.iter().map(|a| a.map(|f| f.0)).collect();
        let tip: Vec<Option<u128>> = answers.iter().map(|a| a.map(|f| f.1)).collect();
        let max_fee = self.check("fees", quorum::median(&max_fee, self.quorum))?;
        let tip = self.check("fees", quorum::median(&tip, self.quorum))?;
        Ok((max_fee, tip.min(max_fee)))
    }

    /// Logs matching `filter`, voted on.
    pub async fn logs(&self, filter: &Filter) -> Result<LogVote, QuorumError> {
        let answers = self
            .all("eth_getLogs", |p| {
                let filter = filter.clone();
                async move {
                    let logs = p.get_logs(&filter).await?;
                    Ok(logs.iter().filter_map(log_key).collect::<Vec<_>>())
                }
            })
            .await;
        let vote = self.check("logs", quorum::vote_logs(&answers, self.quorum))?;
        for (log, votes) in &vote.rejected {
            tracing::warn!(tx_hash = %log.tx_hash, block = log.block_number, votes, quorum = self.quorum, "log without provider quorum ignored");
            metrics::counter!("rpc_log_disagreements_total").increment(1);
        }
        Ok(vote)
    }

    /// A provider for sending transactions: the first whose breaker is closed.
    pub fn writer_url_index(&self) -> usize {
        self.slots
            .iter()
            .position(|s| matches!(s.breaker.lock().map(|b| b.state()), Ok(BreakerState::Closed { .. })))
            .unwrap_or(0)
    }

    fn check<T>(&self, op: &'static str, r: Result<T, QuorumError>) -> Result<T, QuorumError> {
        if let Err(e) = &r {
            metrics::counter!("rpc_quorum_failures_total", "op" => op).increment(1);
            tracing::warn!(op, error = %e, "provider quorum not reached");
        }
        r
    }

    async fn all<T, F, Fut>(&self, method: &'static str, f: F) -> Vec<Option<T>>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        futures::future::join_all(self.slots.iter().map(|s| self.one(s, method, &f))).await
    }

    async fn one<T, F, Fut>(&self, slot: &Slot, method: &'static str, f: &F) -> Option<T>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let base = 100u64 << attempt.min(6);
                let jitter = rand::thread_rng().gen_range(0..=base / 2);
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
            let started = Instant::now();
            let result = if slot.breaker.lock().map(|mut b| b.allow(started)).unwrap_or(false) {
                match tokio::time::timeout(self.timeout, f(slot.provider.clone())).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(CallError::Rpc(e)),
                    Err(_) => Err(CallError::Timeout),
                }
            } else {
                Err(CallError::Refused)
            };
            let latency = started.elapsed();
            let (outcome, retry) = match &result {
                Ok(_) => ("ok", false),
                Err(CallError::Refused) => ("breaker_open", false),
                Err(CallError::Timeout) => ("timeout", true),
                Err(CallError::Rpc(e)) => match classify(e) {
                    ErrorClass::Transient => ("transient_error", true),
                    ErrorClass::Permanent => ("permanent_error", false),
                },
            };
            metrics::counter!("rpc_requests_total", "provider" => slot.label.clone(), "outcome" => outcome)
                .increment(1);
            if !matches!(result, Err(CallError::Refused)) {
                metrics::histogram!("rpc_provider_latency_seconds", "provider" => slot.label.clone())
                    .record(latency.as_secs_f64());
                if let Ok(mut b) = slot.breaker.lock() {
                    if result.is_ok() { b.on_success() } else { b.on_failure(Instant::now()) }
                }
            }
            match result {
                Ok(v) => return Some(v),
                Err(CallError::Rpc(e)) => {
                    let error = crate::redact::scrub(&e.to_string());
                    tracing::debug!(provider = %slot.label, method, attempt, %error, "rpc call failed")
                }
                Err(e) => {
                    tracing::debug!(provider = %slot.label, method, attempt, error = ?e, "rpc call failed")
                }
            }
            if !retry {
                return None;
            }
        }
        None
    }
}

fn log_key(log: &alloy::rpc::types::Log) -> Option<LogKey> {
    Some(LogKey {
        tx_hash: log.transaction_hash?,
        block_number: log.block_number?,
        block_hash: log.block_hash?,
        log_index: log.log_index?,
        address: log.address(),
        topics: log.topics().to_vec(),
        data: log.data().data.clone(),
    })
}
