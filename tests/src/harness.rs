//! A local network for tests and benchmarks: anvil (killed on drop), contracts, N in-process nodes and the demo
//! merchant receiver, all set up by the same `devnet::init` that `testnet/up.sh` uses.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolEvent;
use eyre::{Result, bail, eyre};
use serde_json::Value;
use settleproof_contracts::Settlement;
use settleproof_devnet::demo_merchant::Receiver;
use settleproof_devnet::devnet::{self, Devnet, DevnetSpec};
use settleproof_node::node::{self, NodeHandle};
use settleproof_rpc_proxy::{Fault, ProxyHandle};

use crate::anvil::repo_root;
pub use crate::anvil::{Anvil, free_port};
pub use crate::signing::{signed, signed_invoice, signed_invoice_at};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How to set up a test network.
#[derive(Debug, Clone)]
pub struct Options {
    /// Operators.
    pub nodes: usize,
    /// RPC providers per node, each a fault-injecting proxy in front of anvil (0: anvil directly).
    pub providers: usize,
    /// Confirmation depth.
    pub confirmations: u64,
    /// Blocks per round.
    pub round_length: u64,
    /// Seconds between blocks.
    pub block_time: &'static str,
    /// Run nodes as `settleproof` processes (so they can be killed with SIGKILL).
    pub processes: bool,
    /// Each keeper's turn before the next takes over, ms.
    pub keeper_deadline_ms: u64,
    /// Webhook retry schedule, seconds.
    pub retry_schedule_s: Vec<u64>,
    /// Webhook delivery failover delay per position, ms.
    pub failover_delay_ms: u64,
    /// OTLP/HTTP collector of the nodes' traces.
    pub otlp_endpoint: Option<String>,
    /// Extra environment of process nodes (configuration overrides such as
    /// `SETTLEPROOF__API__RATE_LIMIT_PER_S`).
    pub env: Vec<(String, String)>,
    /// Every provider and the merchant's endpoint behind TLS, with a CA made at run time that
    /// process nodes trust through `SSL_CERT_FILE` and in-process nodes through
    /// `tls.extra_ca_file`.
    pub tls: bool,
    /// Path of every provider URL (`/rpc/<key>`, as hosted providers carry an API key).
    pub rpc_path: String,
    /// An extra provider of every node that never answers (nodes then report `degraded`).
    pub dead_rpc: Option<String>,
    /// Chains every node serves (the first through `providers` proxies, the others read
    /// directly); chain i has chain id 31337 + i.
    pub chains: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 4,
            providers: 0,
            confirmations: 1,
            round_length: 2,
            block_time: "1",
            processes: false,
            keeper_deadline_ms: 6000,
            retry_schedule_s: vec![0, 1, 1, 2, 2, 3],
            failover_delay_ms: 4000,
            otlp_endpoint: None,
            env: Vec::new(),
            tls: false,
            rpc_path: String::new(),
            dead_rpc: None,
            chains: 1,
        }
    }
}

/// A node of the test network.
#[derive(Debug)]
pub enum NodeRun {
    /// Running in this process.
    InProcess(Box<NodeHandle>),
    /// Running as a child process.
    Process(Child),
    /// Not running.
    Stopped,
}

/// Anvil + contracts + nodes + merchant receiver.
#[derive(Debug)]
pub struct Testnet {
    pub anvil: Anvil,
    /// The chains after the first, in order (`devnet.chains[1..]`).
    pub more_anvils: Vec<Anvil>,
    pub devnet: Devnet,
    pub nodes: Vec<NodeRun>,
    pub proxies: Vec<Vec<ProxyHandle>>,
    pub receiver: Receiver,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// Extra environment of process nodes.
    pub env: Vec<(String, String)>,
    /// The health status a started node must reach.
    pub ready_status: &'static str,
}

/// Builds the `settleproof` binary once and returns its path; `SETTLEPROOF_BIN` names a binary
/// built elsewhere (the benchmarks use the release build).
pub fn settleproof_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SETTLEPROOF_BIN") {
        return Ok(PathBuf::from(bin));
    }
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().map_err(|_| eyre!("lock"))?;
    if let Some(p) = built.as_ref() {
        return Ok(p.clone());
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "-p", "settleproof-node", "--bin", "settleproof"])
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        bail!("cargo build of settleproof failed");
    }
    // The test binary lives in <target>/debug/deps; the node binary in <target>/debug.
    let exe = std::env::current_exe()?;
    let bin =
        exe.parent().and_then(Path::parent).map(|d| d.join("settleproof")).ok_or_else(|| eyre!("no target dir"))?;
    *built = Some(bin.clone());
    Ok(bin)
}

impl Testnet {
    /// Starts a testnet of `n` in-process nodes reading anvil directly.
    pub async fn start(n: usize) -> Result<Self> {
        Self::start_with(Options { nodes: n, ..Options::default() }).await
    }

    /// Starts a testnet as `opts` says. Ports are picked free and bound later by the nodes, so
    /// another process may take one in between: a testnet that does not come up is stopped and
    /// started once more on fresh ports, with the reason printed.
    pub async fn start_with(opts: Options) -> Result<Self> {
        match Self::start_once(opts.clone()).await {
            Ok(net) => Ok(net),
            Err(e) => {
                eprintln!("the test network did not come up ({e:#}); starting a fresh one");
                Self::start_once(opts).await
            }
        }
    }

    async fn start_once(opts: Options) -> Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir()?;
        let anvil = Anvil::start(dir.path(), Some(opts.block_time)).await?;
        let mut more_anvils = Vec::new();
        for i in 1..opts.chains.max(1) {
            more_anvils.push(Anvil::start_chain(dir.path(), Some(opts.block_time), Some(31337 + i as u64)).await?);
        }
        let ca = if opts.tls { Some(crate::tls::TestCa::generate(dir.path())?) } else { None };
        let mut proxies = Vec::new();
        let mut node_rpc = Vec::new();
        for _ in 0..opts.nodes {
            let (mut mine, mut urls) = (Vec::new(), Vec::new());
            for _ in 0..opts.providers {
                let p = settleproof_rpc_proxy::spawn(([127, 0, 0, 1], 0).into(), &anvil.url).await?;
                let base = match &ca {
                    Some(ca) => {
                        format!("https://localhost:{}", ca.terminate(([127, 0, 0, 1], 0).into(), p.addr).await?.port())
                    }
                    None => p.url(),
                };
                urls.push(format!("{base}{}", opts.rpc_path));
                mine.push(p);
            }
            urls.extend(opts.dead_rpc.clone());
            proxies.push(mine);
            node_rpc.push(urls);
        }
        let webhook_port = free_port();
        let n = opts.nodes;
        let spec = DevnetSpec {
            rpc_url: anvil.url.clone(),
            nodes: n,
            dir: dir.path().join("net"),
            deployer: anvil.keys[0].clone(),
            payer: anvil.keys[1].clone(),
            node_rpc,
            webhook_url: match &ca {
                Some(_) => format!("https://localhost:{webhook_port}/webhooks"),
                None => format!("http://127.0.0.1:{webhook_port}/webhooks"),
            },
            api_ports: (0..n).map(|_| free_port()).collect(),
            p2p_ports: (0..n).map(|_| free_port()).collect(),
            admin_ports: (0..n).map(|_| free_port()).collect(),
            extra_ca_file: ca.as_ref().filter(|_| !opts.processes).map(|c| c.ca_file.clone()),
            confirmations: opts.confirmations,
            round_length: opts.round_length,
            poll_interval_ms: 200,
            keeper_deadline_ms: opts.keeper_deadline_ms,
            retry_schedule_s: opts.retry_schedule_s.clone(),
            failover_delay_ms: opts.failover_delay_ms,
            otlp_endpoint: opts.otlp_endpoint.clone(),
            more_chains: more_anvils
                .iter()
                .map(|a| devnet::ChainSpec {
                    rpc_url: a.url.clone(),
                    deployer: a.keys[0].clone(),
                    node_rpc: Vec::new(),
                })
                .collect(),
        };
        let devnet = devnet::init(&spec).await?;
        let receiver = Receiver::new(devnet.merchant.webhook_secret.expose().to_string(), None);
        match &ca {
            Some(ca) => {
                let plain = receiver.clone().spawn(([127, 0, 0, 1], 0).into()).await?;
                ca.terminate(([127, 0, 0, 1], webhook_port).into(), plain).await?;
            }
            None => {
                receiver.clone().spawn(([127, 0, 0, 1], webhook_port).into()).await?;
            }
        }
        let mut env = opts.env.clone();
        if let Some(ca) = ca.as_ref().filter(|_| opts.processes) {
            env.push(("SSL_CERT_FILE".into(), ca.ca_file.display().to_string()));
        }
        let ready_status = if opts.dead_rpc.is_some() { "degraded" } else { "ready" };
        let mut net = Self {
            anvil,
            more_anvils,
            devnet,
            nodes: Vec::new(),
            proxies,
            receiver,
            http: reqwest::Client::new(),
            dir,
            env,
            ready_status,
        };
        for i in 0..n {
            let run = if opts.processes {
                NodeRun::Process(net.spawn_process(i)?)
            } else {
                NodeRun::InProcess(Box::new(node::start(net.devnet.nodes[i].1.clone()).await?))
            };
            net.nodes.push(run);
        }
        for i in 0..n {
            if let Err(e) = net.wait_ready(i).await {
                net.stop().await;
                return Err(e);
            }
        }
        Ok(net)
    }

    fn spawn_process(&self, i: usize) -> Result<Child> {
        let (path, _) = &self.devnet.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{i}.log")))?;
        Ok(Command::new(settleproof_bin()?)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("node")
            .arg("--config")
            .arg(path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    }

    /// Waits until node `i` reports every dependency healthy.
    pub async fn wait_ready(&self, i: usize) -> Result<()> {
        let ready = self
            .eventually("node ready", Duration::from_secs(60), || async {
                let v = self.health(i).await?;
                (v["status"] == self.ready_status).then_some(())
            })
            .await;
        if ready.is_err() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("node-{i}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            bail!(
                "node {i} not ready: {:?}\nlast log lines (newest first):\n{}",
                self.health(i).await,
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// `GET /health/ready` of node `i`.
    pub async fn health(&self, i: usize) -> Option<Value> {
        let r = self.http.get(format!("{}/health/ready", self.api(i))).send().await.ok()?;
        r.json().await.ok()
    }

    /// SIGKILLs node `i` (a process node).
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        match std::mem::replace(&mut self.nodes[i], NodeRun::Stopped) {
            NodeRun::Process(mut child) => {
                child.kill()?;
                child.wait()?;
                Ok(())
            }
            other => {
                self.nodes[i] = other;
                bail!("node {i} is not a process")
            }
        }
    }

    /// Sends SIGTERM to process node `i` and waits up to `within` for it to exit; returns how
    /// long it took.
    pub fn term(&mut self, i: usize, within: Duration) -> Result<Duration> {
        let NodeRun::Process(child) = &mut self.nodes[i] else { bail!("node {i} is not a process") };
        let started = Instant::now();
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        while started.elapsed() < within {
            if let Some(status) = child.try_wait()? {
                self.nodes[i] = NodeRun::Stopped;
                if !status.success() {
                    bail!("node {i} exited with {status}");
                }
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("node {i} did not exit within {within:?} of SIGTERM")
    }

    /// Starts process node `i` again from its store.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i] = NodeRun::Process(self.spawn_process(i)?);
        Ok(())
    }

    /// Sets the fault of provider `p` of node `i`.
    pub fn fault(&self, i: usize, p: usize, fault: Fault) {
        self.proxies[i][p].set_fault(fault);
    }

    /// API base URL of node `i`.
    pub fn api(&self, i: usize) -> String {
        format!("http://{}", self.devnet.nodes[i].1.api.listen)
    }

    /// Base URL of node `i`'s admin API (its own listener).
    pub fn admin(&self, i: usize) -> String {
        let cfg = &self.devnet.nodes[i].1;
        let addr = cfg.admin.as_ref().map(|a| a.listen_addr(cfg.api.listen)).unwrap_or(cfg.api.listen);
        format!("http://{addr}")
    }

    /// A provider that signs as the payer.
    pub fn payer(&self) -> Result<DynProvider> {
        let wallet = EthereumWallet::from(self.anvil.keys[1].clone());
        Ok(ProviderBuilder::new().wallet(wallet).connect_http(self.anvil.url.parse()?).erased())
    }

    /// A read-only provider.
    pub fn provider(&self) -> Result<DynProvider> {
        Ok(ProviderBuilder::new().connect_http(self.anvil.url.parse()?).erased())
    }

    /// A request to `url` signed by the demo merchant's root key (a JWT bound to its method,
    /// host, path and body).
    pub fn merchant_request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::RequestBuilder> {
        signed(&self.http, &self.devnet.merchant_key, method, url, body)
    }

    /// `body` payable on the network's first chain when it names no `chain_id`.
    pub fn on_first_chain(&self, mut body: Value) -> Value {
        if let (Some(map), Some(first)) = (body.as_object_mut(), self.devnet.chains.first())
            && !map.contains_key("chain_id")
        {
            map.insert("chain_id".into(), first.chain_id.into());
        }
        body
    }

    /// `POST /v1/invoices` on node `i` (on the first chain unless `body` names one); returns
    /// status and body.
    pub async fn create_invoice(&self, i: usize, body: Value) -> Result<(u16, Value)> {
        let body = self.on_first_chain(body);
        let resp = self
            .merchant_request(reqwest::Method::POST, &format!("{}/v1/invoices", self.api(i)), Some(&body))?
            .send()
            .await?;
        Ok((resp.status().as_u16(), resp.json().await?))
    }

    /// `POST /v1/invoices` on node `i` with an `Idempotency-Key`; returns status, whether the
    /// answer was replayed (`Idempotent-Replayed`) and body.
    pub async fn create_invoice_with_key(&self, i: usize, key: &str, body: Value) -> Result<(u16, bool, Value)> {
        // Signed in the body too, as docs/merchants.md asks, so the key holds at every node.
        let mut body = self.on_first_chain(body);
        body["idempotency_key"] = key.into();
        let resp = self
            .merchant_request(reqwest::Method::POST, &format!("{}/v1/invoices", self.api(i)), Some(&body))?
            .header("idempotency-key", key)
            .send()
            .await?;
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        Ok((resp.status().as_u16(), replayed, resp.json().await?))
    }

    /// `GET /v1/invoices/{id}` on node `i`.
    pub async fn get_invoice(&self, i: usize, id: &str) -> Result<(u16, Value)> {
        let resp = self
            .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices/{id}", self.api(i)), None)?
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Sends every transaction of an invoice's payment instructions from the payer, on the
    /// chain the instructions name.
    pub async fn pay(&self, created: &Value) -> Result<u64> {
        let chain_id = created["payment_instructions"]["chain_id"].as_u64().ok_or_else(|| eyre!("no chain_id"))?;
        pay_with(&self.payer_on(chain_id)?, created).await
    }

    /// The anvil of chain `chain_id`.
    pub fn anvil_of(&self, chain_id: u64) -> Result<&Anvil> {
        let i = self.devnet.chains.iter().position(|c| c.chain_id == chain_id);
        match i {
            Some(0) => Ok(&self.anvil),
            Some(i) => self.more_anvils.get(i - 1).ok_or_else(|| eyre!("no anvil {i}")),
            None => bail!("chain {chain_id} is not part of the test network"),
        }
    }

    /// A provider of chain `chain_id` that signs as the payer.
    pub fn payer_on(&self, chain_id: u64) -> Result<DynProvider> {
        let anvil = self.anvil_of(chain_id)?;
        let wallet = EthereumWallet::from(anvil.keys[1].clone());
        Ok(ProviderBuilder::new().wallet(wallet).connect_http(anvil.url.parse()?).erased())
    }

    /// The checks of the receipt in webhook `body` that fail, off chain and on this chain.
    pub async fn receipt_failures(&self, body: &Value) -> Result<Vec<String>> {
        let receipt: settleproof_consensus::Receipt = serde_json::from_value(body["data"]["receipt"].clone())?;
        let mut checks = receipt.verify_offchain();
        // Checked on the chain the receipt names, against that chain's settlement contract.
        let chain = self.devnet.chains.iter().find(|c| c.chain_id == receipt.chain_id);
        let settlement = chain.map_or(self.devnet.deployment.settlement, |c| c.deployment.settlement);
        let provider = ProviderBuilder::new().connect_http(self.anvil_of(receipt.chain_id)?.url.parse()?).erased();
        checks.extend(settleproof_node::receipt::verify_onchain(&provider, &receipt, settlement).await);
        Ok(checks.into_iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect())
    }

    /// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        eventually(what, timeout, check).await
    }
}

/// Sends every transaction of an invoice's payment instructions from `payer`.
/// Sends the payment instructions of invoice `created` from `payer`; returns the block of the
/// last transaction.
pub async fn pay_with(payer: &DynProvider, created: &Value) -> Result<u64> {
    let mut block = 0;
    for tx in created["payment_instructions"]["transactions"].as_array().ok_or_else(|| eyre!("no instructions"))? {
        let to: Address = tx["to"].as_str().ok_or_else(|| eyre!("no to"))?.parse()?;
        let value = U256::from_str_radix(tx["value"].as_str().ok_or_else(|| eyre!("no value"))?, 10)?;
        let data: Bytes = tx["data"].as_str().ok_or_else(|| eyre!("no data"))?.parse()?;
        let req = TransactionRequest::default().with_to(to).with_value(value).with_input(data);
        let receipt = payer.send_transaction(req).await?.get_receipt().await?;
        if !receipt.status() {
            bail!("payment transaction {} reverted", receipt.transaction_hash);
        }
        block = receipt.block_number.unwrap_or_default();
    }
    Ok(block)
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Testnet {
    /// Waits for a verified webhook about `invoice` and returns its body.
    pub async fn webhook_for(&self, invoice: &str, within: Duration) -> Result<Value> {
        self.eventually("webhook", within, || async {
            self.receiver
                .snapshot()
                .into_iter()
                .find(|r| r.verified && r.body["data"]["invoice"]["id"] == invoice)
                .map(|r| r.body)
        })
        .await
    }

    /// The sum of every sample of metric `name` on node `i` (0 when it does not answer).
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let Ok(r) = self.http.get(format!("{}/metrics", self.api(i))).send().await else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Every `Settled` event of the settlement contract so far.
    pub async fn settlements(&self) -> Result<Vec<Settlement::Settled>> {
        let filter = Filter::new()
            .address(self.devnet.deployment.settlement)
            .event_signature(Settlement::Settled::SIGNATURE_HASH)
            .from_block(0);
        let logs = self.provider()?.get_logs(&filter).await?;
        Ok(logs.iter().filter_map(|l| l.log_decode::<Settlement::Settled>().ok()).map(|l| l.inner.data).collect())
    }

    /// Stops every node.
    pub async fn stop(mut self) {
        for n in self.nodes.iter_mut() {
            match std::mem::replace(n, NodeRun::Stopped) {
                NodeRun::InProcess(h) => h.stop().await,
                NodeRun::Process(mut c) => {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                NodeRun::Stopped => {}
            }
        }
    }
}

impl Drop for Testnet {
    /// Kills process nodes. With `SETTLEPROOF_KEEP_TESTNET` set, the network's folder (node
    /// logs, stores, configs) is kept and its path printed, to read what a failed test saw.
    fn drop(&mut self) {
        for n in self.nodes.iter_mut() {
            if let NodeRun::Process(c) = n {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::env::var_os("SETTLEPROOF_KEEP_TESTNET").is_some()
            && let Ok(empty) = tempfile::TempDir::new()
        {
            eprintln!("test network kept in {}", std::mem::replace(&mut self.dir, empty).keep().display());
        }
    }
}

/// Whether the Standard Webhooks reference library (Python) verifies `d` with `secret`.
pub fn standard_webhooks_verifies(secret: &str, d: &settleproof_devnet::demo_merchant::RawDelivery) -> Result<bool> {
    let script = "import json,sys\nfrom standardwebhooks.webhooks import Webhook\nd=json.load(sys.stdin)\nWebhook(d['secret']).verify(d['body'], {'webhook-id': d['id'], 'webhook-timestamp': d['timestamp'], 'webhook-signature': d['signature']})";
    let input = serde_json::json!({"secret": secret, "body": d.body, "id": d.id, "timestamp": d.timestamp, "signature": d.signature});
    let mut py = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(py.stdin.as_mut().ok_or_else(|| eyre!("stdin"))?, input.to_string().as_bytes())?;
    Ok(py.wait_with_output()?.status.success())
}
