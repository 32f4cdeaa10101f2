//! The chain client. Reads go to the node's RPC provider; this version reads through the first
//! configured endpoint (provider quorum over all of `chain.rpc_endpoints` is the next step and
//! plugs in behind these same methods).

use crate::store::SettlementRecord;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use settleproof_config::ChainSection;
use settleproof_consensus::{Batch, PaymentLeaf};
use settleproof_contracts::{InvoicePayments, Settlement};

/// Errors talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// An RPC endpoint URL is invalid.
    #[error("chain.rpc_endpoints: `{0}` is not a valid URL")]
    BadUrl(String),
    /// The RPC call failed.
    #[error("rpc call failed: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    /// A contract call failed or reverted.
    #[error("contract call failed: {0}")]
    Contract(#[from] alloy::contract::Error),
    /// Waiting for a transaction failed.
    #[error("transaction not confirmed: {0}")]
    Pending(#[from] alloy::providers::PendingTransactionError),
    /// The provider serves another chain.
    #[error("provider reports chain id {got}, config says chain.chain_id = {expected}")]
    WrongChain {
        /// Configured.
        expected: u64,
        /// Reported.
        got: u64,
    },
    /// A log lacks a field every mined log has.
    #[error("log without {0} from the provider")]
    IncompleteLog(&'static str),
    /// The settlement transaction was mined but reverted.
    #[error("settlement transaction {0} reverted")]
    Reverted(B256),
}

/// Typed access to the chain for one node.
#[derive(Debug, Clone)]
pub struct ChainClient {
    provider: DynProvider,
    chain_id: u64,
    payments: Address,
    settlement: Address,
    account: Address,
}

/// Logs of one block range, decoded.
#[derive(Debug, Clone, Default)]
pub struct RangeEvents {
    /// `InvoicePaid` logs.
    pub payments: Vec<PaymentLeaf>,
    /// `Settled` logs.
    pub settlements: Vec<SettlementRecord>,
}

impl ChainClient {
    /// A client for `cfg` that signs settlements with `signer`.
    pub fn new(cfg: &ChainSection, signer: PrivateKeySigner) -> Result<Self, ChainError> {
        let url_text = cfg
            .rpc_endpoints
            .first()
            .ok_or_else(|| ChainError::BadUrl(String::new()))?;
        let url = url_text
            .parse()
            .map_err(|_| ChainError::BadUrl(url_text.clone()))?;
        let account = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        Ok(Self {
            provider,
            chain_id: cfg.chain_id,
            payments: cfg.payments_contract,
            settlement: cfg.settlement_contract,
            account,
        })
    }

    /// Fails unless the provider serves the configured chain.
    pub async fn check_chain_id(&self) -> Result<(), ChainError> {
        let got = self.provider.get_chain_id().await?;
        if got != self.chain_id {
            return Err(ChainError::WrongChain {
                expected: self.chain_id,
                got,
            });
        }
        Ok(())
    }

    /// Latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        Ok(self.provider.get_block_number().await?)
    }

    /// This node's settlement account balance.
    pub async fn balance(&self) -> Result<U256, ChainError> {
        Ok(self.provider.get_balance(self.account).await?)
    }

    /// Decoded `InvoicePaid` and `Settled` logs of blocks `from..=to`.
    pub async fn events(&self, from: u64, to: u64) -> Result<RangeEvents, ChainError> {
        let filter = Filter::new()
            .address(vec![self.payments, self.settlement])
            .event_signature(vec![
                InvoicePayments::InvoicePaid::SIGNATURE_HASH,
                Settlement::Settled::SIGNATURE_HASH,
            ])
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await?;
        let mut out = RangeEvents::default();
        for log in logs {
            if log.address() == self.payments {
                if let Ok(decoded) = log.log_decode::<InvoicePayments::InvoicePaid>() {
                    out.payments
                        .push(self.payment_leaf(&log, &decoded.inner.data)?);
                }
            } else if let Ok(decoded) = log.log_decode::<Settlement::Settled>() {
                let e = &decoded.inner.data;
                out.settlements.push(SettlementRecord {
                    round: e.round,
                    root: e.root,
                    signer_bitmap: e.signerBitmap,
                    tx_hash: log
                        .transaction_hash
                        .ok_or(ChainError::IncompleteLog("transaction hash"))?,
                    block_number: log
                        .block_number
                        .ok_or(ChainError::IncompleteLog("block number"))?,
                });
            }
        }
        Ok(out)
    }

    fn payment_leaf(
        &self,
        log: &Log,
        e: &InvoicePayments::InvoicePaid,
    ) -> Result<PaymentLeaf, ChainError> {
        Ok(PaymentLeaf {
            chain_id: self.chain_id,
            tx_hash: log
                .transaction_hash
                .ok_or(ChainError::IncompleteLog("transaction hash"))?,
            log_index: log
                .log_index
                .ok_or(ChainError::IncompleteLog("log index"))?,
            block_number: log
                .block_number
                .ok_or(ChainError::IncompleteLog("block number"))?,
            invoice_id: e.invoiceId,
            merchant: e.merchant,
            payer: e.payer,
            token: e.token,
            amount: e.amount,
        })
    }

    /// Root settled on chain for `round`, zero when not settled.
    pub async fn settled_root(&self, round: u64) -> Result<B256, ChainError> {
        Ok(Settlement::new(self.settlement, &self.provider)
            .settledRoot(round)
            .call()
            .await?)
    }

    /// Submits `settle` for `batch` and waits for the receipt.
    pub async fn settle(
        &self,
        batch: &Batch,
        signer_bitmap: U256,
        signature: Bytes,
    ) -> Result<SettlementRecord, ChainError> {
        let contract = Settlement::new(self.settlement, &self.provider);
        let pending = contract
            .settle(
                batch.round,
                batch.from_block,
                batch.to_block,
                batch.root,
                batch.leaf_count,
                signer_bitmap,
                signature,
            )
            .send()
            .await?;
        let receipt = pending.get_receipt().await?;
        if !receipt.status() {
            return Err(ChainError::Reverted(receipt.transaction_hash));
        }
        metrics::counter!("keeper_gas_used_total").increment(receipt.gas_used);
        Ok(SettlementRecord {
            round: batch.round,
            root: batch.root,
            signer_bitmap,
            tx_hash: receipt.transaction_hash,
            block_number: receipt.block_number.unwrap_or_default(),
        })
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Settlement contract address.
    pub fn settlement_address(&self) -> Address {
        self.settlement
    }
}
