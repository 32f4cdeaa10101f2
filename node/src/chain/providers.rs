//! The node's own RPC providers, read as a quorum.
//!
//! Each call runs in a task of its own (so responses are decoded off the caller's task), with a
//! timeout, retries of transient failures with exponential backoff and jitter, and a circuit
//! breaker per provider so a dead one is not waited on. The answers are combined by
//! [`super::quorum`].
//!
//! A read is hedged: it asks `rpc_quorum` providers first, and returns as soon as the answers so
//! far decide it (a quorum of identical answers; for logs, no log left undecided). A failed
//! answer, or answers that leave the read undecided with nothing else in flight (a
//! disagreement), ask one more provider at once; after `rpc_hedge_ms` without a decision every
//! provider not yet asked is asked (a stall). Which providers come first rotates from read to
//! read, so every provider is asked in most reads and its breaker and metrics keep reflecting
//! it: a provider that is never asked would look healthy. Calls still running when the read
//! returns go on to the end for the same reason.
//!
//! The head is taken once a quorum of heads lie within one block of each other
//! ([`quorum::height_decided`]). The fees need every answer (the median) and ask every provider
//! at once: an early answer of a lying provider would otherwise weigh more.

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The parent block's hash.
    pub parent_hash: B256,
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
    /// The chain id, for metric labels.
    chain: String,
    provider: DynProvider,
    breaker: Mutex<CircuitBreaker>,
    /// Calls under way: reads return before slow calls end, so a provider answering just
    /// under the timeout would otherwise gather calls as fast as the node reads.
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Most calls under way to one provider; past it a read counts that provider as not answering
/// (`rpc_requests_total{outcome="busy"}`).
const MAX_IN_FLIGHT_PER_PROVIDER: usize = 32;

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
struct CallPolicy {
    timeout: Duration,
    retries: u32,
}

/// The providers of one node.
#[derive(Debug)]
pub struct ProviderSet {
    chain_id: u64,
    slots: Vec<Arc<Slot>>,
    quorum: usize,
    policy: CallPolicy,
    /// How long a read waits on its first providers before asking the rest; zero: ask all.
    hedge: Duration,
    /// Reads so far: the first provider a read asks.
    rotation: AtomicUsize,
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
        let mut providers = Vec::new();
        for (i, url) in cfg.rpc_endpoints.iter().enumerate() {
            let label = format!("rpc-{i}");
            crate::redact::register(url, &label);
            let parsed = url.parse().map_err(|_| format!("chain.rpc_endpoints[{i}] is not a URL"))?;
            providers.push(ProviderBuilder::new().connect_reqwest(http.clone(), parsed).erased());
        }
        Self::from_providers(providers, cfg)
    }

    /// A set over `providers` (labelled `rpc-0`, `rpc-1`, … in order), with the quorum, limits
    /// and breakers `cfg` sets (its endpoint list is not read): any transport, a mocked one too.
    /// `Err` unless the quorum is more than half of the providers and at most all of them: a
    /// read returns on the first value a quorum agrees on, which is then the only one.
    pub fn from_providers(providers: Vec<DynProvider>, cfg: &ChainSection) -> Result<Self, String> {
        let (k, q) = (providers.len(), cfg.rpc_quorum);
        if q == 0 || q > k || (k > 1 && q * 2 <= k) {
            return Err(format!(
                "chain.rpc_quorum is {q} for {k} provider(s): it must be more than half of them and at most all"
            ));
        }
        let slots = providers
            .into_iter()
            .enumerate()
            .map(|(i, provider)| {
                Arc::new(Slot {
                    label: format!("rpc-{i}"),
                    chain: cfg.chain_id.to_string(),
                    provider,
                    breaker: Mutex::new(CircuitBreaker::new(
                        cfg.rpc_breaker_failures,
                        Duration::from_millis(cfg.rpc_breaker_open_ms),
                    )),
                    in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_PER_PROVIDER)),
                })
            })
            .collect();
        Ok(Self {
            chain_id: cfg.chain_id,
            slots,
            quorum: cfg.rpc_quorum,
            policy: CallPolicy { timeout: Duration::from_millis(cfg.rpc_timeout_ms), retries: cfg.rpc_retries },
            hedge: Duration::from_millis(cfg.rpc_hedge_ms),
            rotation: AtomicUsize::new(0),
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
        let quorum = self.quorum;
        let (heads, _) = self
            .until(
                "eth_blockNumber",
                self.quorum,
                |p| async move { p.get_block_number().await },
                move |heads| quorum::height_decided(heads, quorum),
            )
            .await;
        self.check("head", quorum::pinned_height(&heads, self.quorum))
    }

    /// Chain id as a quorum reports it.
    pub async fn chain_id(&self) -> Result<u64, QuorumError> {
        let ids = self.agreed("eth_chainId", |p| async move { p.get_chain_id().await }).await;
        self.check("chain_id", quorum::agreed(&ids, self.quorum))
    }

    /// Hash, timestamp and parent hash of block `number`, as a quorum reports them.
    pub async fn block(&self, number: u64) -> Result<BlockRef, QuorumError> {
        let answers = self
            .agreed("eth_getBlockByNumber", move |p| async move {
                let block = p.get_block_by_number(BlockNumberOrTag::Number(number)).await?;
                let b = block.ok_or(alloy::transports::RpcError::NullResp)?;
                Ok(BlockRef {
                    number,
                    hash: b.header.hash,
                    timestamp: b.header.timestamp,
                    parent_hash: b.header.parent_hash,
                })
            })
            .await;
        self.check("block", quorum::agreed(&answers, self.quorum))
    }

    /// The transaction count of `account` (its next nonce; with `pending`, counting its
    /// transactions in the pool), as a quorum reports it.
    pub async fn transaction_count(&self, account: Address, pending: bool) -> Result<u64, QuorumError> {
        let answers = self
            .agreed("eth_getTransactionCount", move |p| async move {
                let count = p.get_transaction_count(account);
                if pending { count.pending().await } else { count.latest().await }
            })
            .await;
        self.check("transaction_count", quorum::agreed(&answers, self.quorum))
    }

    /// The balance of `account` at the latest block, as a quorum reports it.
    pub async fn balance(&self, account: Address) -> Result<alloy::primitives::U256, QuorumError> {
        let answers = self.agreed("eth_getBalance", move |p| async move { p.get_balance(account).await }).await;
        self.check("balance", quorum::agreed(&answers, self.quorum))
    }

    /// The return data of calling `to` with `data` at the latest block, as a quorum reports it.
    pub async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, QuorumError> {
        let answers = self
            .agreed("eth_call", move |p| {
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

    /// Logs matching `filter`, voted on. An answer holding a log of another block than the
    /// filter names (outside its range, or of another hash) is a failed answer, not a vote.
    pub async fn logs(&self, filter: &Filter) -> Result<LogVote, QuorumError> {
        let filter = Arc::new(filter.clone());
        let quorum = self.quorum;
        let (answers, late) = self
            .until(
                "eth_getLogs",
                self.quorum,
                move |p| {
                    let filter = filter.clone();
                    async move {
                        let logs = p.get_logs(&filter).await?;
                        let keys = logs.iter().filter_map(log_key).collect::<Vec<_>>();
                        if keys.iter().any(|k| !within(&filter, k)) {
                            return Err(alloy::transports::RpcError::local_usage_str(
                                "eth_getLogs answered a log of a block the filter does not name",
                            ));
                        }
                        Ok(keys)
                    }
                },
                move |answers| quorum::logs_decided(answers, quorum),
            )
            .await;
        let vote = self.check("logs", quorum::vote_logs(&answers, self.quorum))?;
        for (log, votes) in &vote.rejected {
            tracing::warn!(tx_hash = %log.tx_hash, block = log.block_number, votes, quorum = self.quorum, "log without provider quorum ignored");
            metrics::counter!("rpc_log_disagreements_total", "chain_id" => self.chain_id.to_string()).increment(1);
        }
        // A provider answering after the vote is still checked against it: a liar that is never
        // among the first answers is seen all the same.
        let known: std::collections::HashSet<LogKey> =
            vote.accepted.iter().chain(vote.rejected.iter().map(|(l, _)| l)).cloned().collect();
        let chain_id = self.chain_id.to_string();
        late.on_each(move |provider, list| {
            let unique: std::collections::HashSet<&LogKey> = list.iter().collect();
            for log in unique.into_iter().filter(|l| !known.contains(*l)) {
                tracing::warn!(provider = %format!("rpc-{provider}"), tx_hash = %log.tx_hash, block = log.block_number, "log without provider quorum ignored (answered after the vote)");
                metrics::counter!("rpc_log_disagreements_total", "chain_id" => chain_id.clone()).increment(1);
            }
        });
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
            metrics::counter!("rpc_quorum_failures_total", "chain_id" => self.chain_id.to_string(), "op" => op)
                .increment(1);
            tracing::warn!(op, error = %e, "provider quorum not reached");
        }
        r
    }

    /// Every provider's answer (`None`: failed), once all have answered.
    async fn all<T, F, Fut>(&self, method: &'static str, f: F) -> Vec<Option<T>>
    where
        F: Fn(DynProvider) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
        T: Send + 'static,
    {
        self.until(method, self.slots.len(), f, |_| false).await.0
    }

    /// The answers, as soon as a quorum of them is one value.
    async fn agreed<T, F, Fut>(&self, method: &'static str, f: F) -> Vec<Option<T>>
    where
        F: Fn(DynProvider) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
        T: Clone + Eq + std::hash::Hash + Send + 'static,
    {
        let quorum = self.quorum;
        self.until(method, quorum, f, move |answers| quorum::agreed(answers, quorum).is_ok()).await.0
    }

    /// Asks `first` providers (all of them without a hedge delay), starting at the next in
    /// rotation, each call in a task of its own, and returns the answers so far (`None`: failed,
    /// not in yet, or not asked) as soon as `decided` holds for them, or once every provider
    /// asked has answered and none is left, with the calls still running. Those go on whether
    /// or not they are looked at: they complete, count in metrics and move breakers. One more
    /// provider is asked on each failed answer and whenever nothing is in flight, and all the
    /// rest once the hedge delay has passed.
    async fn until<T, F, Fut>(
        &self,
        method: &'static str,
        first: usize,
        f: F,
        decided: impl Fn(&[Option<T>]) -> bool,
    ) -> (Vec<Option<T>>, Stragglers<T>)
    where
        F: Fn(DynProvider) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
        T: Send + 'static,
    {
        use futures::StreamExt;
        let f = Arc::new(f);
        let k = self.slots.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut waiting = (0..k).map(|j| (start + j) % k);
        let first = if self.hedge.is_zero() { k } else { first.max(1) };
        let mut running: futures::stream::FuturesUnordered<_> =
            waiting.by_ref().take(first).map(|i| self.ask(i, method, f.clone())).collect();
        let mut answers: Vec<Option<T>> = self.slots.iter().map(|_| None).collect();
        let hedge = tokio::time::sleep(self.hedge);
        tokio::pin!(hedge);
        let mut hedged = first >= k;
        loop {
            tokio::select! {
                next = running.next() => {
                    let Some((i, answer)) = next else { break };
                    let failed = answer.is_none();
                    answers[i] = answer;
                    if decided(&answers) {
                        break;
                    }
                    if (failed || running.is_empty())
                        && let Some(i) = waiting.next()
                    {
                        running.push(self.ask(i, method, f.clone()));
                    }
                }
                () = &mut hedge, if !hedged => {
                    hedged = true;
                    running.extend(waiting.by_ref().map(|i| self.ask(i, method, f.clone())));
                }
            }
        }
        (answers, Stragglers(running))
    }

    /// Provider `i`'s answer to `f`, in a task of its own; `None` at once when the provider has
    /// too many calls under way.
    fn ask<T, F, Fut>(
        &self,
        i: usize,
        method: &'static str,
        f: Arc<F>,
    ) -> futures::future::BoxFuture<'static, (usize, Option<T>)>
    where
        F: Fn(DynProvider) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
        T: Send + 'static,
    {
        let (slot, policy) = (self.slots[i].clone(), self.policy);
        let task = match slot.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(tokio::spawn(async move {
                let answer = call(&slot, policy, method, &*f).await;
                drop(permit);
                answer
            })),
            Err(_) => {
                metrics::counter!("rpc_requests_total", "chain_id" => slot.chain.clone(), "provider" => slot.label.clone(), "outcome" => "busy")
                    .increment(1);
                None
            }
        };
        futures::FutureExt::boxed(async move {
            match task {
                Some(task) => (i, task.await.ok().flatten()),
                None => (i, None),
            }
        })
    }
}

/// The calls of a read still running when its answers were decided.
struct Stragglers<T>(futures::stream::FuturesUnordered<futures::future::BoxFuture<'static, (usize, Option<T>)>>);

impl<T: Send + 'static> Stragglers<T> {
    /// Hands each answer still to come, with its provider's index, to `f`, in a task of its own.
    fn on_each(self, f: impl Fn(usize, T) + Send + 'static) {
        use futures::StreamExt;
        let mut running = self.0;
        if running.is_empty() {
            return;
        }
        tokio::spawn(async move {
            while let Some((i, answer)) = running.next().await {
                if let Some(a) = answer {
                    f(i, a);
                }
            }
        });
    }
}

/// One provider's answer to `f`, with the policy's timeout and retries, through its breaker.
async fn call<T, F, Fut>(slot: &Slot, policy: CallPolicy, method: &'static str, f: &F) -> Option<T>
where
    F: Fn(DynProvider) -> Fut,
    Fut: Future<Output = Result<T, TransportError>>,
{
    for attempt in 0..=policy.retries {
        if attempt > 0 {
            let base = 100u64 << attempt.min(6);
            let jitter = rand::thread_rng().gen_range(0..=base / 2);
            tokio::time::sleep(Duration::from_millis(base + jitter)).await;
        }
        let started = Instant::now();
        let result = if slot.breaker.lock().map(|mut b| b.allow(started)).unwrap_or(false) {
            match tokio::time::timeout(policy.timeout, f(slot.provider.clone())).await {
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
        metrics::counter!("rpc_requests_total", "chain_id" => slot.chain.clone(), "provider" => slot.label.clone(), "outcome" => outcome).increment(1);
        if !matches!(result, Err(CallError::Refused)) {
            metrics::histogram!("rpc_provider_latency_seconds", "chain_id" => slot.chain.clone(), "provider" => slot.label.clone())
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

/// Whether `log` is of a block `filter` names: its block hash, or its range of numbers.
fn within(filter: &Filter, log: &LogKey) -> bool {
    match filter.get_block_hash() {
        Some(hash) => log.block_hash == hash,
        None => {
            filter.get_from_block().is_none_or(|from| log.block_number >= from)
                && filter.get_to_block().is_none_or(|to| log.block_number <= to)
        }
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

#[cfg(test)]
#[path = "providers_tests.rs"]
mod tests;
