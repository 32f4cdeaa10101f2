//! The payer's wallet: signs every transaction once, with nonces it assigns itself, and
//! rebroadcasts the same signed bytes whenever the chain no longer holds them (a reorg dropped
//! them), as a real wallet does. A dropped transaction therefore comes back with the same hash
//! and the same nonce, so a reorg never leaves a nonce gap and an ERC-20 `approve` always lands
//! before its `pay`.

use crate::control::Control;
use crate::time::now_ms;
use alloy::network::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, WrapErr, bail, eyre};
use settleproof_contracts::TestToken;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Gas limit of a payer transaction that names none (a payment or an approval costs well
/// under it).
const GAS_LIMIT: u64 = 300_000;
/// Fee cap, wei per gas: far above anything a local chain asks, so no transaction is ever
/// priced out.
const MAX_FEE: u128 = 200_000_000_000;
/// Tip, wei per gas.
const PRIORITY_FEE: u128 = 1_000_000_000;
/// How often the rebroadcaster looks for transactions the chain lost.
const REBROADCAST_EVERY: Duration = Duration::from_millis(500);
/// How long a payment may take to be included, rebroadcasts included, before it counts as lost.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(180);

/// One signed transaction of the payer.
#[derive(Debug, Clone)]
struct Signed {
    nonce: u64,
    hash: B256,
    raw: Bytes,
}

#[derive(Debug, Default)]
struct Book {
    /// The next nonce to assign.
    next_nonce: u64,
    /// Every transaction signed, in nonce order.
    signed: Vec<Signed>,
    /// How many sends of a transaction the chain had lost.
    rebroadcasts: usize,
}

/// Pays invoices from the testnet's payer account.
#[derive(Debug, Clone)]
pub struct Payer {
    me: Address,
    wallet: EthereumWallet,
    chain_id: u64,
    chain: DynProvider,
    book: Arc<Mutex<Book>>,
}

impl Payer {
    /// Opens the payer's account on anvil, mints it test tokens and starts the rebroadcaster.
    pub async fn start(ctl: &Control) -> Result<Self> {
        let key: PrivateKeySigner = ctl.m.payer_private_key.parse().wrap_err("payer_private_key")?;
        let me = key.address();
        let wallet = EthereumWallet::from(key);
        let chain = ctl.chain.clone();
        let chain_id = chain.get_chain_id().await.wrap_err("eth_chainId")?;
        let next_nonce = chain.get_transaction_count(me).pending().await.wrap_err("the payer's nonce")?;
        let payer =
            Self { me, wallet, chain_id, chain, book: Arc::new(Mutex::new(Book { next_nonce, ..Book::default() })) };
        let token = TestToken::new(ctl.m.contracts.token, ProviderBuilder::new().connect_http(ctl.m.rpc_url.parse()?));
        let mint = token.mint(me, U256::from(10u128.pow(30))).into_transaction_request();
        payer.pay(vec![mint]).await.wrap_err("minting test tokens to the payer")?;
        let rebroadcaster = payer.clone();
        tokio::spawn(async move { rebroadcaster.rebroadcast_forever().await });
        Ok(payer)
    }

    /// Signs and sends `txs` in order; returns the last one's hash once it is included, with
    /// its block and when the payer saw it, unix ms.
    pub async fn pay(&self, txs: Vec<TransactionRequest>) -> Result<(B256, u64, u64)> {
        let mut last = None;
        {
            // One signer at a time, so nonces are assigned and sent in order.
            let mut book = self.book.lock().await;
            for tx in txs {
                let signed = self.sign(tx, book.next_nonce).await?;
                book.next_nonce += 1;
                // A send that fails is retried by the rebroadcaster; the nonce stays taken.
                let _ = self.chain.send_raw_transaction(&signed.raw).await;
                last = Some(signed.hash);
                book.signed.push(signed);
            }
        }
        let hash = last.ok_or_else(|| eyre!("no transaction to send"))?;
        let (block, at) = self.included(hash).await?;
        Ok((hash, block, at))
    }

    /// Waits until `hash` is included (the rebroadcaster brings it back when a reorg drops it);
    /// its block and when it was seen, unix ms.
    pub async fn included(&self, hash: B256) -> Result<(u64, u64)> {
        let deadline = tokio::time::Instant::now() + INCLUSION_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(r)) = self.chain.get_transaction_receipt(hash).await {
                if !r.status() {
                    bail!("payment {hash:#x} reverted");
                }
                return Ok((r.block_number.unwrap_or_default(), now_ms()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("payment {hash:#x} not included after {} s of rebroadcasting", INCLUSION_TIMEOUT.as_secs())
    }

    /// How many times a transaction the chain had lost was sent again.
    pub async fn rebroadcasts(&self) -> usize {
        self.book.lock().await.rebroadcasts
    }

    async fn sign(&self, tx: TransactionRequest, nonce: u64) -> Result<Signed> {
        let gas = tx.gas.unwrap_or(GAS_LIMIT);
        let envelope = tx
            .with_from(self.me)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(MAX_FEE)
            .with_max_priority_fee_per_gas(PRIORITY_FEE)
            .build(&self.wallet)
            .await
            .map_err(|e| eyre!("signing a payer transaction: {e}"))?;
        Ok(Signed { nonce, hash: *envelope.tx_hash(), raw: envelope.encoded_2718().into() })
    }

    /// Sends again, in nonce order, every signed transaction the chain holds neither in a block
    /// nor in its pool. Runs for the life of the drill.
    async fn rebroadcast_forever(self) {
        loop {
            tokio::time::sleep(REBROADCAST_EVERY).await;
            let Ok(mined) = self.chain.get_transaction_count(self.me).latest().await else { continue };
            let open: Vec<Signed> =
                self.book.lock().await.signed.iter().filter(|s| s.nonce >= mined).cloned().collect();
            for s in open {
                if matches!(self.chain.get_transaction_by_hash(s.hash).await, Ok(Some(_))) {
                    continue;
                }
                if self.chain.send_raw_transaction(&s.raw).await.is_ok() {
                    self.book.lock().await.rebroadcasts += 1;
                }
            }
        }
    }
}
