//! An in-process chain for unit tests of the watcher and the keeper, without anvil: a JSON-RPC
//! transport over blocks the test builds and edits (append blocks with logs, replace a fork),
//! answering the reads the node makes (head, blocks, logs, nonce, balance, fees, calls) and the
//! keeper's writes (gas estimates, raw transactions, receipts). Each provider made from it can
//! be honest, down, hung, or tamper with its answers (a liar), so quorum votes, timeouts and
//! breakers run as in production.

use alloy::consensus::{Transaction, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, B256, Bytes, LogData, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::json_rpc::{ErrorPayload, RequestPacket, Response, ResponsePacket, ResponsePayload};
use alloy::sol_types::{SolCall, SolError, SolEvent};
use alloy::transports::{TransportError, TransportFut};
use serde_json::{Value, json};
use settleproof_contracts::Settlement;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Base fee every block reports, wei.
pub const BASE_FEE: u128 = 1_000_000_000;
/// Tip the fee history reports, wei.
pub const TIP: u128 = 100_000_000;
/// Gas every estimate returns.
pub const GAS: u64 = 300_000;

/// One block: its logs are `(address, topics and data)` in log-index order.
#[derive(Debug, Clone)]
pub struct FakeBlock {
    /// Hash.
    pub hash: B256,
    /// Unix seconds.
    pub timestamp: u64,
    /// Logs, with the transaction hash of each.
    pub logs: Vec<(Address, LogData, B256)>,
}

/// A transaction the keeper sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its hash.
    pub hash: B256,
    /// Its nonce.
    pub nonce: u64,
    /// Its fee cap, wei.
    pub max_fee: u128,
    /// Its tip cap, wei.
    pub tip: u128,
}

#[derive(Debug, Default)]
struct State {
    chain_id: u64,
    /// Index = block number.
    blocks: Vec<FakeBlock>,
    /// Salt of the block hashes, changed by [`FakeChain::fork_from`].
    fork: u64,
    settlement: Address,
    settled: HashMap<u64, B256>,
    /// Mined transactions per account.
    nonces: HashMap<Address, u64>,
    /// Sent transactions not mined, by hash, with their input.
    pool: HashMap<B256, (Address, Sent, Bytes)>,
    sent: Vec<Sent>,
    receipts: HashMap<B256, (u64, Address)>,
    /// Sends before this many are left in the pool for good; later ones are mined at once.
    mine_from_send: usize,
    /// The clock (unix ms) new blocks are stamped with; `None`: fixed two-second steps.
    clock: Option<fn() -> u64>,
}

/// A chain shared by the providers made from it; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FakeChain(Arc<Mutex<State>>);

/// Changes the answer (second argument) to a method (first argument).
pub type Tampering = Arc<dyn Fn(&str, &mut Value) + Send + Sync>;

/// Says (method, params) whether a request is never answered.
pub type Stalling = Arc<dyn Fn(&str, &Value) -> bool + Send + Sync>;

/// What one provider does with each request.
#[derive(Clone)]
pub enum Behaviour {
    /// Answers from the chain.
    Honest,
    /// Answers every request with a server error (a provider that is down).
    Down,
    /// Never answers (a provider that accepts the request and stalls).
    Hang,
    /// Down while the flag is set, honest otherwise.
    DownWhile(Arc<std::sync::atomic::AtomicBool>),
    /// Answers from the chain, then lets the function change the answer of a method (a liar).
    Tamper(Tampering),
    /// Never answers a request for which the function (method, params) says so; answers the
    /// rest from the chain.
    HangIf(Stalling),
    /// Answers `eth_sendRawTransaction` with the transaction's hash without passing it on (a
    /// writer that accepts and never broadcasts); honest otherwise.
    Swallow,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Honest => "Honest",
            Self::Down => "Down",
            Self::Hang => "Hang",
            Self::DownWhile(_) => "DownWhile",
            Self::Tamper(_) => "Tamper",
            Self::HangIf(_) => "HangIf",
            Self::Swallow => "Swallow",
        })
    }
}

impl FakeChain {
    /// A chain `chain_id` whose settlement contract is `settlement`, holding blocks `0..=head`
    /// without logs.
    pub fn new(chain_id: u64, settlement: Address, head: u64) -> Self {
        let chain = Self(Arc::new(Mutex::new(State { chain_id, settlement, ..State::default() })));
        chain.mine_to(head);
        chain
    }

    /// Stamps the blocks mined from now on with `clock` (unix ms), as a chain does with its time.
    pub fn stamped_by(self, clock: fn() -> u64) -> Self {
        self.state().clock = Some(clock);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test's panic while holding the lock fails that test anyway.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A provider of this chain that behaves as `behaviour` says.
    pub fn provider(&self, behaviour: Behaviour) -> DynProvider {
        ProviderBuilder::new().connect_client(self.client(behaviour, Address::ZERO)).erased()
    }

    /// A provider that signs with `signer` before sending (the keeper's writer).
    pub fn writer(&self, signer: alloy::signers::local::PrivateKeySigner) -> DynProvider {
        self.writer_with(signer, Behaviour::Honest)
    }

    /// A writer that behaves as `behaviour` says.
    pub fn writer_with(&self, signer: alloy::signers::local::PrivateKeySigner, behaviour: Behaviour) -> DynProvider {
        let from = signer.address();
        let wallet = alloy::network::EthereumWallet::from(signer);
        ProviderBuilder::new().wallet(wallet).connect_client(self.client(behaviour, from)).erased()
    }

    /// Mines the pooled transaction `hash` (sent earlier, left unmined); whether it was pooled.
    pub fn mine_pooled(&self, hash: B256) -> bool {
        let mut s = self.state();
        let Some((from, sent, input)) = s.pool.remove(&hash) else { return false };
        s.mine(from, &sent, &input);
        true
    }

    /// A client whose raw transactions count as sent by `from` (the fake checks no signature).
    fn client(&self, behaviour: Behaviour, from: Address) -> RpcClient {
        // Local: receipts are polled every 250 ms instead of every 7 s.
        RpcClient::new(FakeTransport { chain: self.clone(), behaviour, from }, true)
    }

    /// The head.
    pub fn head(&self) -> u64 {
        self.state().blocks.len().saturating_sub(1) as u64
    }

    /// The hash of block `number`.
    pub fn hash(&self, number: u64) -> Option<B256> {
        self.state().blocks.get(number as usize).map(|b| b.hash)
    }

    /// Appends empty blocks up to `head`.
    pub fn mine_to(&self, head: u64) {
        let mut s = self.state();
        while (s.blocks.len() as u64) <= head {
            s.push_block(Vec::new());
        }
    }

    /// Appends a block holding `logs` (address, data, transaction hash); returns its number.
    pub fn mine_logs(&self, logs: Vec<(Address, LogData, B256)>) -> u64 {
        self.state().push_block(logs)
    }

    /// Replaces every block from `number` on with a fork of as many empty blocks (a reorg):
    /// they get other hashes and lose their logs.
    pub fn fork_from(&self, number: u64) {
        let mut s = self.state();
        let head = s.blocks.len() as u64;
        s.fork += 1;
        s.blocks.truncate(number as usize);
        while (s.blocks.len() as u64) < head {
            s.push_block(Vec::new());
        }
    }

    /// Sends before the `n`-th (from 0) stay in the pool, unmined; later ones are mined at once.
    pub fn mine_from_send(&self, n: usize) {
        self.state().mine_from_send = n;
    }

    /// Marks `round` settled with `root` (by another keeper).
    pub fn settle(&self, round: u64, root: B256) {
        self.state().settled.insert(round, root);
    }

    /// Counts a transaction of `account` sent by someone else (its key used elsewhere).
    pub fn use_nonce(&self, account: Address) {
        *self.state().nonces.entry(account).or_default() += 1;
    }

    /// Sets the mined transaction count of `account` (a reorg dropped its transactions).
    pub fn set_nonce(&self, account: Address, count: u64) {
        self.state().nonces.insert(account, count);
    }

    /// A log of block `number` as a provider shows it (a liar forges one with this).
    pub fn log_json(&self, number: u64, index: u64, address: Address, data: &LogData, tx: B256) -> Value {
        let s = self.state();
        s.blocks.get(number as usize).map_or(Value::Null, |b| log_json(number, b, index, address, data, tx))
    }

    /// Every transaction sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state().sent.clone()
    }

    fn answer(&self, method: &str, params: &Value, from: Address) -> Result<Value, ErrorPayload> {
        let mut s = self.state();
        let p = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
        match method {
            "eth_chainId" => Ok(hex(s.chain_id)),
            "eth_blockNumber" => Ok(hex(s.blocks.len().saturating_sub(1) as u64)),
            "eth_getBlockByNumber" => {
                let number = match p(0).as_str() {
                    Some("latest" | "pending" | "safe" | "finalized") => s.blocks.len().saturating_sub(1) as u64,
                    Some(n) => parse_u64(n)?,
                    None => return Err(invalid("block number")),
                };
                let parent = number.checked_sub(1).and_then(|n| s.blocks.get(n as usize)).map(|b| b.hash);
                Ok(s.blocks.get(number as usize).map_or(Value::Null, |b| block_json(number, b, parent)))
            }
            "eth_getLogs" => Ok(Value::Array(s.logs(&p(0))?)),
            "eth_getTransactionCount" => {
                let account = address(&p(0))?;
                let mined = s.nonces.get(&account).copied().unwrap_or(0);
                let pending = p(1).as_str() == Some("pending");
                let pooled = s.pool.values().filter(|(a, _, _)| *a == account).map(|(_, t, _)| t.nonce + 1).max();
                Ok(hex(if pending { pooled.unwrap_or(0).max(mined) } else { mined }))
            }
            "eth_getBalance" => Ok(json!(format!("{:#x}", U256::from(10u128.pow(19))))),
            "eth_feeHistory" => {
                let n = parse_u64(p(0).as_str().unwrap_or("0x1"))?.max(1) as usize;
                let head = s.blocks.len().saturating_sub(1) as u64;
                Ok(json!({
                    "oldestBlock": hex(head.saturating_sub(n as u64 - 1)),
                    "baseFeePerGas": vec![hex128(BASE_FEE); n + 1],
                    "gasUsedRatio": vec![0.5; n],
                    "reward": vec![vec![hex128(TIP)]; n],
                }))
            }
            "eth_call" => s.call(&p(0)),
            "eth_estimateGas" => {
                let input = call_input(&p(0))?;
                if let Ok(c) = Settlement::settleCall::abi_decode(&input)
                    && s.settled.contains_key(&c.round)
                {
                    let revert = Settlement::RoundAlreadySettled { round: c.round }.abi_encode();
                    return Err(ErrorPayload {
                        code: 3,
                        message: "execution reverted".into(),
                        data: serde_json::value::to_raw_value(&Bytes::from(revert)).ok(),
                    });
                }
                Ok(hex(GAS))
            }
            "eth_sendRawTransaction" => s.send_raw(p(0).as_str().unwrap_or_default(), from),
            "eth_getTransactionReceipt" => {
                let hash: B256 = serde_json::from_value(p(0)).map_err(|_| invalid("transaction hash"))?;
                Ok(s.receipts.get(&hash).map_or(Value::Null, |(block, from)| s.receipt_json(hash, *block, *from)))
            }
            _ => Err(ErrorPayload { code: -32601, message: format!("{method} not served").into(), data: None }),
        }
    }
}

impl State {
    fn push_block(&mut self, logs: Vec<(Address, LogData, B256)>) -> u64 {
        let number = self.blocks.len() as u64;
        let hash = keccak256([self.fork.to_be_bytes(), number.to_be_bytes()].concat());
        let timestamp = self.clock.map_or(1_700_000_000 + number * 2, |clock| clock() / 1000);
        self.blocks.push(FakeBlock { hash, timestamp, logs });
        number
    }

    fn logs(&self, filter: &Value) -> Result<Vec<Value>, ErrorPayload> {
        let head = self.blocks.len().saturating_sub(1) as u64;
        let bound = |key: &str| match filter.get(key).and_then(Value::as_str) {
            None | Some("latest") => Ok(head),
            Some(n) => parse_u64(n),
        };
        // A block named by its hash (EIP-234): its logs, or an error when no block has it.
        let by_hash = match filter.get("blockHash") {
            Some(h) => {
                let hash: B256 = serde_json::from_value(h.clone()).map_err(|_| invalid("blockHash"))?;
                let n = self.blocks.iter().position(|b| b.hash == hash).ok_or_else(|| invalid("unknown block"))?;
                Some(n as u64)
            }
            None => None,
        };
        let (from, to) = match by_hash {
            Some(n) => (n, n),
            None => (bound("fromBlock")?, bound("toBlock")?),
        };
        let addresses: Vec<Address> = match filter.get("address") {
            Some(Value::Array(list)) => list.iter().map(address).collect::<Result<_, _>>()?,
            Some(Value::Null) | None => Vec::new(),
            Some(one) => vec![address(one)?],
        };
        let topic0: Vec<B256> = match filter.get("topics").and_then(|t| t.get(0)) {
            Some(Value::Array(list)) => list.iter().filter_map(|t| serde_json::from_value(t.clone()).ok()).collect(),
            Some(Value::String(t)) => serde_json::from_value(json!(t)).into_iter().collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for number in from..=to.min(head) {
            let block = &self.blocks[number as usize];
            for (index, (addr, data, tx)) in block.logs.iter().enumerate() {
                let wanted = (addresses.is_empty() || addresses.contains(addr))
                    && (topic0.is_empty() || data.topics().first().is_some_and(|t| topic0.contains(t)));
                if wanted {
                    out.push(log_json(number, block, index as u64, *addr, data, *tx));
                }
            }
        }
        Ok(out)
    }

    fn call(&self, tx: &Value) -> Result<Value, ErrorPayload> {
        let input = call_input(tx)?;
        if let Ok(c) = Settlement::settledRootCall::abi_decode(&input) {
            let root = self.settled.get(&c.round).copied().unwrap_or_default();
            return Ok(json!(Bytes::from(root.to_vec())));
        }
        Err(ErrorPayload { code: 3, message: "execution reverted".into(), data: None })
    }

    fn send_raw(&mut self, raw: &str, from: Address) -> Result<Value, ErrorPayload> {
        let bytes: Bytes = raw.parse().map_err(|_| invalid("raw transaction"))?;
        let tx = TxEnvelope::decode_2718(&mut bytes.as_ref()).map_err(|_| invalid("raw transaction"))?;
        let hash = *tx.tx_hash();
        if self.sent.iter().any(|t| t.hash == hash) {
            // The same signed transaction through another endpoint: already known.
            return Ok(json!(hash));
        }
        let mined = self.nonces.get(&from).copied().unwrap_or(0);
        if tx.nonce() < mined {
            return Err(ErrorPayload { code: -32000, message: "nonce too low".into(), data: None });
        }
        let sent = Sent {
            hash,
            nonce: tx.nonce(),
            max_fee: tx.max_fee_per_gas(),
            tip: tx.max_priority_fee_per_gas().unwrap_or(0),
        };
        let index = self.sent.len();
        self.sent.push(sent.clone());
        if index < self.mine_from_send {
            self.pool.insert(hash, (from, sent, tx.input().clone()));
            return Ok(json!(hash));
        }
        self.mine(from, &sent, tx.input());
        Ok(json!(hash))
    }

    /// Mines `sent` in a block of its own, holding the `Settled` event of its batch, as the
    /// contract emits; the other transactions of its nonce leave the pool.
    fn mine(&mut self, from: Address, sent: &Sent, input: &[u8]) {
        let hash = sent.hash;
        let mut logs = Vec::new();
        if let Ok(c) = Settlement::settleCall::abi_decode(input) {
            self.settled.insert(c.round, c.root);
            let event = Settlement::Settled {
                round: c.round,
                root: c.root,
                epoch: c.epoch,
                fromBlock: c.fromBlock,
                toBlock: c.toBlock,
                toBlockHash: c.toBlockHash,
                leafCount: c.leafCount,
                signerBitmap: c.signerBitmap,
                submitter: from,
                signature: c.signature.clone(),
            };
            logs.push((self.settlement, event.encode_log_data(), hash));
        }
        self.pool.retain(|_, (a, t, _)| !(*a == from && t.nonce == sent.nonce));
        self.nonces.insert(from, sent.nonce + 1);
        let block = self.push_block(logs);
        self.receipts.insert(hash, (block, from));
    }

    fn receipt_json(&self, hash: B256, number: u64, from: Address) -> Value {
        let block = &self.blocks[number as usize];
        let logs: Vec<Value> = block
            .logs
            .iter()
            .enumerate()
            .filter(|(_, l)| l.2 == hash)
            .map(|(i, (a, d, t))| log_json(number, block, i as u64, *a, d, *t))
            .collect();
        json!({
            "transactionHash": hash,
            "transactionIndex": "0x0",
            "blockHash": block.hash,
            "blockNumber": hex(number),
            "from": from,
            "to": self.settlement,
            "cumulativeGasUsed": hex(GAS),
            "gasUsed": hex(GAS),
            "effectiveGasPrice": hex128(BASE_FEE),
            "contractAddress": null,
            "logs": logs,
            "logsBloom": Bytes::from(vec![0u8; 256]),
            "status": "0x1",
            "type": "0x2",
        })
    }
}

fn block_json(number: u64, b: &FakeBlock, parent: Option<B256>) -> Value {
    let mut block = alloy::rpc::types::Block::<alloy::rpc::types::Transaction>::default();
    block.header.hash = b.hash;
    block.header.inner.parent_hash = parent.unwrap_or_default();
    block.header.inner.number = number;
    block.header.inner.timestamp = b.timestamp;
    block.header.inner.base_fee_per_gas = Some(BASE_FEE as u64);
    serde_json::to_value(block).unwrap_or(Value::Null)
}

fn log_json(number: u64, block: &FakeBlock, index: u64, address: Address, data: &LogData, tx: B256) -> Value {
    let log = alloy::rpc::types::Log {
        inner: alloy::primitives::Log { address, data: data.clone() },
        block_hash: Some(block.hash),
        block_number: Some(number),
        block_timestamp: Some(block.timestamp),
        transaction_hash: Some(tx),
        transaction_index: Some(0),
        log_index: Some(index),
        removed: false,
    };
    serde_json::to_value(log).unwrap_or(Value::Null)
}

fn hex(n: u64) -> Value {
    json!(format!("{n:#x}"))
}

fn hex128(n: u128) -> Value {
    json!(format!("{n:#x}"))
}

fn invalid(what: &str) -> ErrorPayload {
    ErrorPayload { code: -32602, message: format!("invalid {what}").into(), data: None }
}

fn parse_u64(s: &str) -> Result<u64, ErrorPayload> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| invalid("quantity"))
}

fn address(v: &Value) -> Result<Address, ErrorPayload> {
    serde_json::from_value(v.clone()).map_err(|_| invalid("address"))
}

fn call_input(tx: &Value) -> Result<Bytes, ErrorPayload> {
    let input = tx.get("input").or_else(|| tx.get("data")).cloned().unwrap_or(json!("0x"));
    serde_json::from_value(input).map_err(|_| invalid("call input"))
}

/// The transport of one provider of a [`FakeChain`].
#[derive(Debug, Clone)]
struct FakeTransport {
    chain: FakeChain,
    behaviour: Behaviour,
    from: Address,
}

impl FakeTransport {
    fn respond(&self, req: &alloy::rpc::json_rpc::SerializedRequest) -> Response {
        let params: Value = req.params().and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(Value::Null);
        let payload = match &self.behaviour {
            Behaviour::DownWhile(down) if down.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(ErrorPayload { code: -32603, message: "internal error: provider down".into(), data: None })
            }
            Behaviour::Down => {
                Err(ErrorPayload { code: -32603, message: "internal error: provider down".into(), data: None })
            }
            Behaviour::Swallow if req.method() == "eth_sendRawTransaction" => {
                let raw: Bytes = params.get(0).and_then(Value::as_str).unwrap_or_default().parse().unwrap_or_default();
                TxEnvelope::decode_2718(&mut raw.as_ref())
                    .map(|tx| json!(tx.tx_hash()))
                    .map_err(|_| invalid("raw transaction"))
            }
            _ => self.chain.answer(req.method(), &params, self.from),
        };
        let payload = payload.map(|mut v| {
            if let Behaviour::Tamper(f) = &self.behaviour {
                f(req.method(), &mut v);
            }
            v
        });
        Response {
            id: req.id().clone(),
            payload: match payload {
                Ok(v) => match serde_json::value::to_raw_value(&v) {
                    Ok(raw) => ResponsePayload::Success(raw),
                    Err(e) => ResponsePayload::Failure(ErrorPayload {
                        code: -32603,
                        message: e.to_string().into(),
                        data: None,
                    }),
                },
                Err(e) => ResponsePayload::Failure(e),
            },
        }
    }
}

impl tower::Service<RequestPacket> for FakeTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let hangs = match (&this.behaviour, &req) {
                (Behaviour::Hang, _) => true,
                (Behaviour::HangIf(f), RequestPacket::Single(r)) => {
                    let params = r.params().map(|p| serde_json::from_str(p.get()).unwrap_or(Value::Null));
                    f(r.method(), &params.unwrap_or(Value::Null))
                }
                _ => false,
            };
            if hangs {
                std::future::pending::<()>().await;
            }
            Ok(match req {
                RequestPacket::Single(r) => ResponsePacket::Single(this.respond(&r)),
                RequestPacket::Batch(list) => ResponsePacket::Batch(list.iter().map(|r| this.respond(r)).collect()),
            })
        })
    }
}
