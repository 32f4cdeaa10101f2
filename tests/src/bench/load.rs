//! Fast payers for the benchmarks: transactions signed locally with a local nonce, fixed gas and
//! fees, so each payment costs one RPC call (`eth_sendRawTransaction`).

use crate::harness::Testnet;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// The payer account with its own nonce counter.
#[derive(Debug)]
pub struct FastPayer {
    wallet: DynProvider,
    nonce: AtomicU64,
    chain_id: u64,
    me: Address,
}

impl FastPayer {
    /// The testnet's payer, nonce read once from the chain.
    pub async fn new(net: &Testnet) -> Result<Self> {
        let key = net.anvil.keys[1].clone();
        let me = key.address();
        let wallet =
            ProviderBuilder::new().wallet(EthereumWallet::from(key)).connect_http(net.anvil.url.parse()?).erased();
        let nonce = wallet.get_transaction_count(me).pending().await?;
        let chain_id = wallet.get_chain_id().await?;
        Ok(Self { wallet, nonce: AtomicU64::new(nonce), chain_id, me })
    }

    /// Sends the native payment of `created` (an invoice as the API returned it).
    pub async fn pay_native(&self, created: &Value) -> Result<B256> {
        let tx = &created["payment_instructions"]["transactions"][0];
        let to: Address = tx["to"].as_str().ok_or_else(|| eyre!("no to"))?.parse()?;
        let value = U256::from_str_radix(tx["value"].as_str().ok_or_else(|| eyre!("no value"))?, 10)?;
        let data: Bytes = tx["data"].as_str().ok_or_else(|| eyre!("no data"))?.parse()?;
        let req = TransactionRequest::default()
            .with_to(to)
            .with_value(value)
            .with_input(data)
            .with_nonce(self.nonce.fetch_add(1, Ordering::SeqCst))
            .with_chain_id(self.chain_id)
            .with_gas_limit(120_000)
            .with_max_fee_per_gas(20_000_000_000)
            .with_max_priority_fee_per_gas(1_000_000_000);
        match self.wallet.send_transaction(req).await {
            Ok(pending) => Ok(*pending.tx_hash()),
            Err(e) => {
                // The nonce taken may be unused now: start again from the chain's count so later
                // payments do not wait behind a gap.
                if let Ok(n) = self.wallet.get_transaction_count(self.me).pending().await {
                    self.nonce.store(n, Ordering::SeqCst);
                }
                Err(e.into())
            }
        }
    }
}

/// `POST /v1/invoices` for a native invoice on node `i`.
pub async fn create_native(net: &Testnet, i: usize, amount: &str) -> Result<Value> {
    let (status, created) = net.create_invoice(i, json!({ "amount": amount, "token": "native" })).await?;
    if status != 201 {
        return Err(eyre!("create on node {i}: HTTP {status} {created}"));
    }
    Ok(created)
}
