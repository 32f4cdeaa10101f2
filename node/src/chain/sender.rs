//! The keeper's sending side: the settlement transaction, managed as a keeper must. The
//! [`SettlementSender`] owns the nonce, the fee policy and the halt; every read it decides on
//! (the chain's nonce, fees, whether the round is settled) goes through the provider quorum of
//! [`ChainClient`], so one stale or lying provider can neither halt it nor fool it.
//!
//! The nonce is tracked locally and checked against the quorum's count (a desync, e.g. the key
//! used elsewhere, is detected, confirmed by a second read, and recovered by adopting the
//! chain's count); gas is estimated (which also simulates the call, so a submission that would
//! revert is never sent and costs nothing) plus a buffer; a transaction not mined in time is
//! replaced with the same nonce and higher fees; a revert is explained with the contract's
//! decoded error. The receipt is looked for at each announced head ([`super::inclusion`]).

use super::client::{ChainClient, ChainError, SettleCall};
use super::inclusion::ReceiptWatch;
use crate::store::SettlementRecord;
use alloy::eips::BlockId;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use settleproof_config::ChainSection;
use settleproof_contracts::Settlement;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Reads of the quorum's settled root after the writer's receipt, and the pause between them.
const CONFIRM_TRIES: u32 = 10;
/// The pause.
const CONFIRM_PAUSE: Duration = Duration::from_millis(300);
/// How long the last look for a receipt of ours may take once the quorum shows our root.
const LAST_LOOK: Duration = Duration::from_secs(2);
/// How long the other endpoints' answers are awaited when the writer refused a settlement.
const OTHER_SENDS_GRACE: Duration = Duration::from_secs(5);
/// Reads of the quorum's settled root after a failed receipt (a revert is reported sooner).
const FAILED_RECEIPT_TRIES: u32 = 3;

/// How long to wait before reading the chain's nonce a second time when it disagrees with the
/// local one, so that a provider that is briefly behind is not taken for a desync.
const DESYNC_RECHECK: Duration = Duration::from_millis(1500);

/// How often a sender over bare providers (no chain section) looks for its receipt.
const DEFAULT_RECEIPT_POLL: Duration = Duration::from_millis(250);

/// How settlement transactions are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPolicy {
    /// Percent added to the gas estimate.
    pub gas_buffer_pct: u64,
    /// How long to wait for inclusion before replacing.
    pub inclusion_timeout: Duration,
    /// Replacements after the first submission.
    pub max_replacements: u32,
    /// Percent each replacement raises both fee caps (nodes need at least 10).
    pub fee_bump_pct: u128,
    /// Highest fee per gas paid, wei; `None`: no cap.
    pub max_fee_per_gas: Option<u128>,
}

impl Default for TxPolicy {
    fn default() -> Self {
        Self {
            gas_buffer_pct: 25,
            inclusion_timeout: Duration::from_secs(12),
            max_replacements: 3,
            fee_bump_pct: 25,
            max_fee_per_gas: None,
        }
    }
}

impl TxPolicy {
    /// The policy of a chain's `fees` section.
    pub fn from_config(fees: &settleproof_config::FeePolicy) -> Self {
        Self {
            inclusion_timeout: Duration::from_millis(fees.inclusion_timeout_ms),
            max_replacements: fees.max_replacements,
            fee_bump_pct: u128::from(fees.bump_pct),
            max_fee_per_gas: fees.max_fee_per_gas_gwei.map(|g| u128::from(g) * 1_000_000_000),
            ..Self::default()
        }
    }

    /// Both fee caps held at or below the policy's cap (the tip never above the fee cap).
    pub fn capped(&self, max_fee: u128, tip: u128) -> (u128, u128) {
        let max_fee = self.max_fee_per_gas.map_or(max_fee, |cap| max_fee.min(cap));
        (max_fee, tip.min(max_fee))
    }
}

/// What became of a settlement submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Our transaction settled the round.
    Settled(Box<SettlementRecord>),
    /// The round was settled by someone else first; nothing was sent or paid.
    SettledByOther,
}

/// `gas` plus `pct` percent.
pub fn with_buffer(gas: u64, pct: u64) -> u64 {
    gas.saturating_add(gas.saturating_mul(pct) / 100)
}

/// A fee raised by `pct` percent, and by at least 1 wei.
pub fn bump(fee: u128, pct: u128) -> u128 {
    fee.saturating_add((fee.saturating_mul(pct) / 100).max(1))
}

/// How the local nonce compares with the chain's pending count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// They agree, or nothing was known locally.
    InSync,
    /// The chain counts fewer: a transaction this node counted left the chain (a reorg, or the
    /// pool dropped it). The chain's count is adopted; nothing else used the key.
    Behind,
    /// The chain counts more: the settlement key was used elsewhere. Settlement halts.
    Ahead,
}

/// The nonce to use (the chain's count wins whenever the two disagree) and how they compared.
pub fn reconcile_nonce(local: Option<u64>, chain_pending: u64) -> (u64, NonceCheck) {
    match local {
        Some(n) if n == chain_pending => (n, NonceCheck::InSync),
        Some(n) if n > chain_pending => (chain_pending, NonceCheck::Behind),
        Some(_) => (chain_pending, NonceCheck::Ahead),
        None => (chain_pending, NonceCheck::InSync),
    }
}

/// Sends this node's settlement transactions.
#[derive(Debug, Clone)]
pub struct SettlementSender {
    chain: ChainClient,
    writers: Vec<DynProvider>,
    account: Address,
    policy: TxPolicy,
    nonce: Arc<tokio::sync::Mutex<Option<u64>>>,
    halt: Option<crate::halt::Halt>,
    receipts: ReceiptWatch,
}

impl SettlementSender {
    /// A sender that signs with `signer` and reads through `chain`; `halt` is pulled when an
    /// invariant checked while sending is violated.
    pub fn new(
        cfg: &ChainSection,
        signer: PrivateKeySigner,
        chain: ChainClient,
        halt: Option<crate::halt::Halt>,
        http: &reqwest::Client,
    ) -> Result<Self, ChainError> {
        let account = signer.address();
        let wallet = EthereumWallet::from(signer);
        let mut writers = Vec::new();
        for (i, url) in cfg.rpc_endpoints.iter().enumerate() {
            // `chain` registered the URL with its label already (same `cfg`).
            let parsed =
                url.parse().map_err(|_| ChainError::BadUrl(format!("chain.rpc_endpoints[{i}] is not a URL")))?;
            writers.push(ProviderBuilder::new().wallet(wallet.clone()).connect_reqwest(http.clone(), parsed).erased());
        }
        let sender = Self::with_writers(writers, account, TxPolicy::from_config(&cfg.fees), chain, halt)?;
        Ok(Self { receipts: ReceiptWatch::new(None, Duration::from_millis(cfg.poll_interval_ms)), ..sender })
    }

    /// A sender over `writers` (providers that sign as `account`, in the order of `chain`'s
    /// readers), whatever their transport: an in-process chain in unit tests.
    pub fn with_writers(
        writers: Vec<DynProvider>,
        account: Address,
        policy: TxPolicy,
        chain: ChainClient,
        halt: Option<crate::halt::Halt>,
    ) -> Result<Self, ChainError> {
        if writers.is_empty() {
            return Err(ChainError::BadUrl("chain.rpc_endpoints: no endpoint".into()));
        }
        let receipts = ReceiptWatch::new(None, DEFAULT_RECEIPT_POLL);
        Ok(Self { chain, writers, account, policy, nonce: Arc::default(), halt, receipts })
    }

    /// The same sender, looking for its receipts every `poll`.
    #[cfg(test)]
    pub(crate) fn polling_receipts_every(self, poll: Duration) -> Self {
        Self { receipts: ReceiptWatch::new(None, poll), ..self }
    }

    /// The same sender, looking for its receipts at each head `announced` reports too
    /// ([`super::heads::HeadSignal::subscribe`]).
    pub fn with_heads(self, announced: tokio::sync::watch::Receiver<u64>) -> Self {
        Self { receipts: self.receipts.with_heads(announced), ..self }
    }

    /// Forgets the local nonce, so the next settlement adopts the chain's count without calling
    /// it a desync: a reorg dropped a transaction this node had counted.
    pub async fn forget_nonce(&self) {
        *self.nonce.lock().await = None;
    }

    /// The read client.
    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }

    fn writer(&self) -> &DynProvider {
        // `new` refuses an empty provider list, so the first writer exists.
        self.writers.get(self.chain.reads.writer_url_index()).unwrap_or(&self.writers[0])
    }

    /// The chain's pending nonce, read twice through the quorum when it disagrees with the
    /// local one; (nonce, how the second read compared).
    async fn checked_nonce(&self, local: Option<u64>) -> Result<(u64, NonceCheck), ChainError> {
        let first = self.chain.pending_nonce().await?;
        let (nonce, check) = reconcile_nonce(local, first);
        if check == NonceCheck::InSync {
            return Ok((nonce, check));
        }
        tokio::time::sleep(DESYNC_RECHECK).await;
        let second = self.chain.pending_nonce().await?;
        Ok(reconcile_nonce(local, second))
    }

    /// The root the quorum shows settled for `round`, waiting a few seconds for providers a block
    /// behind the writer; `None` while it shows none.
    async fn confirmed_root(&self, round: u64, tries: u32) -> Result<Option<B256>, ChainError> {
        for attempt in 0..tries {
            if attempt > 0 {
                tokio::time::sleep(CONFIRM_PAUSE).await;
            }
            let root = self.chain.settled_root(round).await?;
            if !root.is_zero() {
                return Ok(Some(root));
            }
        }
        Ok(None)
    }

    /// The writer's receipt of the first of `hashes` (sent with one nonce) that it shows mined.
    /// A receipt that names another transaction or no block is no receipt.
    async fn receipt_of_any(
        &self,
        provider: &DynProvider,
        hashes: &[B256],
    ) -> Result<Option<TransactionReceipt>, alloy::transports::TransportError> {
        for &hash in hashes.iter().rev() {
            let found = provider.get_transaction_receipt(hash).await?;
            if let Some(r) = found.filter(|r| r.transaction_hash == hash && r.block_number.is_some()) {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Submits `settle` and tracks it to inclusion.
    /// One settlement at a time per node: the nonce is held from the chain check to the
    /// receipt, so settlements of several rounds due at once (after a partition heals, or a
    /// resume) queue instead of taking the same nonce or mistaking each other for a desync.
    pub async fn settle(&self, call: &SettleCall) -> Result<SettleOutcome, ChainError> {
        let mut nonce_slot = self.nonce.lock().await;
        let policy = self.policy;
        let provider = self.writer();
        let b = &call.batch;
        let data = settleproof_contracts::settle_call(b, call.signer_bitmap, call.signature.clone()).abi_encode();
        let base = TransactionRequest::default()
            .with_from(self.account)
            .with_to(self.chain.settlement_address())
            .with_input(data);
        let gas = match provider.estimate_gas(base.clone()).await {
            Ok(g) => with_buffer(g, policy.gas_buffer_pct),
            Err(e) => {
                // The writer's word is one provider's: only the quorum decides that the round is
                // settled (a lying writer must not make every keeper stand down).
                if matches!(settlement_error(&e), Some(Settlement::SettlementErrors::RoundAlreadySettled(_)))
                    && !self.chain.settled_root(b.round).await?.is_zero()
                {
                    return Ok(SettleOutcome::SettledByOther);
                }
                return Err(ChainError::Reverted {
                    tx: Default::default(),
                    reason: format!("simulation: {}", decode_revert(&e)),
                });
            }
        };
        let local = *nonce_slot;
        let (nonce, check) = self.checked_nonce(local).await?;
        let pending_count = nonce;
        if check == NonceCheck::Behind {
            warn!(local = ?local, chain = nonce, "a settlement transaction this node counted left the chain; using the chain's nonce");
        }
        if check == NonceCheck::Ahead {
            metrics::counter!("keeper_nonce_desync_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            let detail = format!(
                "expected nonce {local:?}, the chain has {pending_count}: the settlement key was used elsewhere"
            );
            // After an operator resumes, continue from the chain's count.
            *nonce_slot = Some(pending_count);
            if let Some(h) = &self.halt {
                h.violation("keeper_nonce_desync", detail.clone());
                return Err(ChainError::Halted(detail));
            }
            warn!(detail, "keeper nonce out of sync with the chain; using the chain's");
        }
        let (fee, tip) = self.chain.fees().await?;
        let (mut max_fee, mut tip) = policy.capped(fee, tip);
        // From the first send on, whether `nonce` gets used is unknown until a receipt says so
        // (a send error may hide an accepted transaction; a replacement may lose to the
        // original; another keeper may settle first while ours is still pending). Every exit
        // but a receipt leaves the next call to adopt the chain's count without calling it a
        // desync.
        *nonce_slot = None;
        // Every transaction sent with this nonce: a replaced one may still be the one mined.
        let mut sent: Vec<B256> = Vec::new();
        for attempt in 0..=policy.max_replacements {
            let tx = base
                .clone()
                .with_nonce(nonce)
                .with_gas_limit(gas)
                .with_max_fee_per_gas(max_fee)
                .with_max_priority_fee_per_gas(tip);
            let tx_hash = match self.broadcast(provider, tx).await {
                Ok(hash) => hash,
                Err(e) => {
                    // A replacement racing the original's inclusion: the nonce is used.
                    let error = crate::redact::scrub(&e.to_string());
                    warn!(round = b.round, attempt, %error, "settlement send failed");
                    let outcome = self.settled_meanwhile(provider, &base, call, &sent, attempt).await?;
                    if let Some(outcome) = outcome {
                        if matches!(outcome, SettleOutcome::Settled(_)) {
                            *nonce_slot = Some(nonce + 1);
                        }
                        return Ok(outcome);
                    }
                    return Err(e.into());
                }
            };
            if !sent.contains(&tx_hash) {
                sent.push(tx_hash);
            }
            let waited = self.receipts.wait(policy.inclusion_timeout, || self.receipt_of_any(provider, &sent)).await;
            metrics::counter!("keeper_receipt_read_failures_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(u64::from(waited.failed_reads));
            if let Some(receipt) = waited.found {
                *nonce_slot = Some(nonce + 1);
                return self.judge(provider, &base, call, receipt, attempt).await;
            }
            let waited_ms = policy.inclusion_timeout.as_millis() as u64;
            let (failed_reads, last_error) = (waited.failed_reads, waited.last_error.unwrap_or_default());
            warn!(round = b.round, tx_hash = %tx_hash, attempt, waited_ms, failed_reads, %last_error, "settlement not mined in time; replacing with higher fees");
            if let Some(outcome) = self.settled_meanwhile(provider, &base, call, &sent, attempt).await? {
                if matches!(outcome, SettleOutcome::Settled(_)) {
                    *nonce_slot = Some(nonce + 1);
                }
                return Ok(outcome);
            }
            (max_fee, tip) = policy.capped(bump(max_fee, policy.fee_bump_pct), bump(tip, policy.fee_bump_pct));
        }
        Err(ChainError::NotMined(policy.max_replacements + 1))
    }

    /// Sends `tx` through the writer, and the same transaction (signed alike: the same hash)
    /// through every other endpoint too, so a writer that accepts and never broadcasts cannot
    /// keep it off the chain. The writer's hash; when the writer refused, the first other
    /// endpoint's within [`OTHER_SENDS_GRACE`]. The other sends are not waited for otherwise (a
    /// stalled endpoint cannot hold the keeper).
    async fn broadcast(
        &self,
        provider: &DynProvider,
        tx: TransactionRequest,
    ) -> Result<B256, alloy::transports::TransportError> {
        let mut others = tokio::task::JoinSet::new();
        for w in self.writers.iter().filter(|w| !std::ptr::eq(*w, provider)) {
            let (w, tx) = (w.clone(), tx.clone());
            others.spawn(async move { w.send_transaction(tx).await.map(|p| *p.tx_hash()) });
        }
        let first = provider.send_transaction(tx).await;
        let refused = match first {
            Ok(pending) => {
                others.detach_all();
                return Ok(*pending.tx_hash());
            }
            Err(e) => e,
        };
        let accepted = tokio::time::timeout(OTHER_SENDS_GRACE, async {
            while let Some(sent) = others.join_next().await {
                if let Ok(Ok(hash)) = sent {
                    return Some(hash);
                }
            }
            None
        })
        .await;
        others.detach_all();
        accepted.ok().flatten().ok_or(refused)
    }

    /// What a receipt of ours means: the quorum decides whether the round is settled, and by
    /// whose root.
    async fn judge(
        &self,
        provider: &DynProvider,
        base: &TransactionRequest,
        call: &SettleCall,
        receipt: TransactionReceipt,
        attempt: u32,
    ) -> Result<SettleOutcome, ChainError> {
        let b = &call.batch;
        let tx_hash = receipt.transaction_hash;
        let gas_used = || {
            metrics::counter!("keeper_gas_used_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(receipt.gas_used);
        };
        if !receipt.status() {
            // A failed receipt is the writer's word too: a quorum a block behind it gets a few
            // reads to show the round settled (by another keeper in the same block, or the
            // receipt was a lie).
            if self.confirmed_root(b.round, FAILED_RECEIPT_TRIES).await?.is_some() {
                return Ok(SettleOutcome::SettledByOther);
            }
            gas_used();
            let at = receipt.block_number.map(|n| BlockId::number(n.saturating_sub(1))).unwrap_or(BlockId::latest());
            let reason = match provider.call(base.clone()).block(at).await {
                Err(e) => decode_revert(&e),
                Ok(_) => "reverted (the call succeeds when replayed: state changed in the same block)".into(),
            };
            return Err(ChainError::Reverted { tx: tx_hash, reason });
        }
        // The receipt is one provider's word: the quorum must show our root settled before the
        // merchant hears of it.
        match self.confirmed_root(b.round, CONFIRM_TRIES).await? {
            Some(root) if root == b.root => {}
            Some(_) => return Ok(SettleOutcome::SettledByOther),
            None => {
                return Err(ChainError::Inconsistent(format!(
                    "the writer reports settlement {tx_hash} mined, the provider quorum shows round {} unsettled",
                    b.round
                )));
            }
        }
        gas_used();
        info!(round = b.round, tx_hash = %tx_hash, gas_used = receipt.gas_used, attempt, "settlement mined");
        Ok(SettleOutcome::Settled(Box::new(SettlementRecord {
            round: b.round,
            epoch: b.epoch,
            root: b.root,
            signer_bitmap: call.signer_bitmap,
            tx_hash,
            block_number: receipt.block_number.unwrap_or_default(),
            submitter: self.account,
            signer_keys: call.signer_keys.clone(),
            signature: call.signature.clone(),
            from_block: b.from_block,
            to_block: b.to_block,
            to_block_hash: b.to_block_hash,
            leaf_count: b.leaf_count,
            provisional: true,
            seen_ahead: false,
        })))
    }

    /// After a send failed or our transactions went unseen: `None` while the quorum shows the
    /// round unsettled. Settled with our root, the writer is asked once more for a receipt of
    /// ours, so that our own settlement is recorded as ours.
    async fn settled_meanwhile(
        &self,
        provider: &DynProvider,
        base: &TransactionRequest,
        call: &SettleCall,
        sent: &[B256],
        attempt: u32,
    ) -> Result<Option<SettleOutcome>, ChainError> {
        let root = self.chain.settled_root(call.batch.round).await?;
        if root.is_zero() {
            return Ok(None);
        }
        if root == call.batch.root
            && let Ok(Ok(Some(receipt))) = tokio::time::timeout(LAST_LOOK, self.receipt_of_any(provider, sent)).await
            && receipt.status()
        {
            return self.judge(provider, base, call, receipt, attempt).await.map(Some);
        }
        Ok(Some(SettleOutcome::SettledByOther))
    }
}

/// The settlement contract's error in a failed call, decoded.
fn settlement_error(e: &alloy::transports::TransportError) -> Option<Settlement::SettlementErrors> {
    e.as_error_resp().and_then(|p| p.as_decoded_interface_error::<Settlement::SettlementErrors>())
}

/// The settlement contract's error in a failed call, by name and arguments, or the raw error.
fn decode_revert(e: &alloy::transports::TransportError) -> String {
    settlement_error(e).map(|d| format!("{d:?}")).unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_cap_holds_both_caps_under_it() {
        let policy = TxPolicy { max_fee_per_gas: Some(100), ..TxPolicy::default() };
        assert_eq!(policy.capped(80, 2), (80, 2));
        assert_eq!(policy.capped(150, 2), (100, 2));
        assert_eq!(policy.capped(150, 120), (100, 100), "the tip never above the fee cap");
        assert_eq!(TxPolicy::default().capped(150, 2), (150, 2), "no cap");
        let fees = settleproof_config::FeePolicy { max_fee_per_gas_gwei: Some(3), bump_pct: 40, ..Default::default() };
        let p = TxPolicy::from_config(&fees);
        assert_eq!((p.max_fee_per_gas, p.fee_bump_pct), (Some(3_000_000_000), 40));
    }

    #[test]
    fn gas_and_fee_arithmetic() {
        assert_eq!(with_buffer(100_000, 25), 125_000);
        assert_eq!(with_buffer(u64::MAX, 25), u64::MAX);
        assert_eq!(bump(100, 25), 125);
        assert_eq!(bump(1, 25), 2, "at least one wei");
        assert_eq!(bump(u128::MAX, 25), u128::MAX);
    }

    #[test]
    fn nonce_reconciliation_table() {
        assert_eq!(reconcile_nonce(None, 7), (7, NonceCheck::InSync));
        assert_eq!(reconcile_nonce(Some(7), 7), (7, NonceCheck::InSync));
        assert_eq!(reconcile_nonce(Some(5), 7), (7, NonceCheck::Ahead), "the key was used elsewhere");
        assert_eq!(reconcile_nonce(Some(9), 7), (7, NonceCheck::Behind), "a transaction we counted was dropped");
    }
}
