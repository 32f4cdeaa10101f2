//! The levers of the drills: processes (SIGKILL, restart), RPC provider faults, peer links,
//! chain reorganisations, and waiting for nodes to be ready again. Everything goes to loopback.

use crate::manifest::Manifest;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use eyre::{Result, WrapErr, bail, eyre};
use serde_json::{Value, json};
use settleproof_merchant_auth::MerchantSigner;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Talks to a running testnet.
#[derive(Debug, Clone)]
pub struct Control {
    /// The manifest.
    pub m: Manifest,
    /// HTTP client with a short timeout.
    pub http: reqwest::Client,
    /// anvil, read-only.
    pub chain: DynProvider,
    /// The chain the load's invoices name (`None`: the nodes' first chain).
    pub chain_id: Option<u64>,
    /// The merchant's root key, which signs its API requests.
    pub merchant: std::sync::Arc<MerchantSigner>,
}

impl Control {
    /// Opens the testnet described by `m`.
    pub fn new(m: Manifest) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let chain = ProviderBuilder::new().connect_http(m.rpc_url.parse()?).erased();
        let merchant = MerchantSigner::from_pem(&m.merchant.id, &m.merchant.private_key_pem)
            .map_err(|e| eyre!("the manifest's merchant key: {e}"))?;
        let merchant = with_audience(&m, merchant)?;
        Ok(Self { m, http, chain, chain_id: None, merchant: std::sync::Arc::new(merchant) })
    }

    /// `signer`, signing for the testnet's network (`merchant.audience` of the manifest).
    pub fn signs_here(&self, signer: MerchantSigner) -> Result<MerchantSigner> {
        with_audience(&self.m, signer)
    }

    /// A merchant API request `method url` with `body`, signed by the merchant's key.
    pub fn merchant_request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::RequestBuilder> {
        let bytes = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let now = settleproof_node::time::now_s();
        let jwt = self
            .merchant
            .sign_request(method.as_str(), url, &bytes, now, settleproof_merchant_auth::DEFAULT_LIFETIME_S)
            .map_err(|e| eyre!("signing: {e}"))?;
        let req = self.http.request(method, url).bearer_auth(jwt);
        Ok(if body.is_some() { req.header("content-type", "application/json").body(bytes) } else { req })
    }

    /// The same testnet seen on chain `c`: its anvil, its contracts, invoices naming it.
    pub fn on_chain(&self, c: &crate::manifest::Chain) -> Result<Self> {
        let mut on = self.clone();
        on.m.rpc_url = c.rpc_url.clone();
        on.m.contracts = c.contracts.clone();
        on.chain = ProviderBuilder::new().connect_http(c.rpc_url.parse()?).erased();
        on.chain_id = Some(c.chain_id);
        Ok(on)
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) chain `c`'s anvil: while stopped, every call
    /// to it hangs, as a chain whose providers are all down.
    pub fn pause_chain(&self, c: &crate::manifest::Chain, paused: bool) -> Result<()> {
        let pid = c.anvil.pid.ok_or_else(|| eyre!("no anvil pid recorded for chain {}", c.chain_id))?;
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill {signal} {pid} (anvil of chain {}) failed", c.chain_id);
        }
        Ok(())
    }

    /// Operators in the set.
    pub fn n(&self) -> usize {
        self.m.nodes.len()
    }

    /// Whether node `i` left the operator set in a drill (`node-i.retired`): it stays stopped.
    pub fn retired(&self, i: usize) -> bool {
        self.m.run_dir().join(format!("{}.retired", self.m.nodes[i].name)).exists()
    }

    /// Sends SIGKILL to `name` (`node-i` or `merchant`) and waits until it is gone.
    pub async fn kill9(&self, name: &str) -> Result<()> {
        let pid = self.m.pid(name).ok_or_else(|| eyre!("no pid recorded for {name}"))?;
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        for _ in 0..50 {
            if !alive(pid) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{name} (pid {pid}) survived SIGKILL")
    }

    /// Starts node `i` again with its config, appending to its log, in its own process group so
    /// it outlives the drill.
    pub fn restart_node(&self, i: usize) -> Result<()> {
        let node = &self.m.nodes[i];
        let pid = spawn_detached(
            Command::new(sibling("settleproof")?).arg("node").arg("--config").arg(&node.config),
            &node.log,
        )?;
        self.m.record_pid(&node.name, pid)
    }

    /// Starts the demo merchant's receiver again on its address and waits until it takes
    /// connections; one that exits instead is an error with the end of its log.
    pub async fn restart_merchant(&self) -> Result<()> {
        let rx = self.m.receiver()?;
        let url = &self.m.merchant.webhook_url;
        let listen = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| eyre!("merchant.webhook_url {url} is not http://HOST:PORT/..."))?;
        let pid = spawn_detached(
            Command::new(sibling("settleproof-devnet")?)
                .args(["demo-merchant", "--listen", listen, "--testnet"])
                .arg(&self.m.path)
                .arg("--out")
                .arg(&rx.deliveries),
            &rx.log,
        )?;
        self.m.record_pid("merchant", pid)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Taking connections, and this process (not another one left on the address).
            if tokio::net::TcpStream::connect(listen).await.is_ok() && alive(pid) {
                return Ok(());
            }
            if !alive(pid) {
                let log = std::fs::read_to_string(&rx.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!("the receiver exited as it started; {}: {}", rx.log.display(), tail.join(" | "));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Not left behind to race the next attempt for the address.
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        bail!("the receiver takes no connection on {listen} 10 s after its start; see {}", rx.log.display())
    }

    /// Waits until node `i` answers `/health/ready` with 200.
    pub async fn wait_ready(&self, i: usize, within: Duration) -> Result<()> {
        let url = format!("{}/health/ready", self.m.nodes[i].api_url);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        bail!("{} not ready after {within:?}; see {}", self.m.nodes[i].name, self.m.nodes[i].log.display())
    }

    /// Waits until every node is ready.
    pub async fn wait_all_ready(&self, within: Duration) -> Result<()> {
        for i in 0..self.n() {
            self.wait_ready(i, within).await?;
        }
        Ok(())
    }

    /// Sets the fault of node `i`'s provider `p` (`{"mode": "none" | "down" | "forge_log", ...}`).
    pub async fn fault(&self, i: usize, p: usize, fault: Value) -> Result<()> {
        let url = self.m.nodes[i]
            .rpc_endpoints
            .get(p)
            .ok_or_else(|| eyre!("{} has no provider {p}", self.m.nodes[i].name))?;
        let r = self.http.post(format!("{url}/_fault")).json(&fault).send().await?;
        if !r.status().is_success() {
            bail!("fault {} on {url}: HTTP {} {}", fault["mode"], r.status(), r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// Blocks (or unblocks) on node `i` the link to operator `j`.
    pub async fn link(&self, i: usize, j: usize, block: bool) -> Result<()> {
        let peers = self.m.peer_ids()?;
        let peer = peers.get(j).ok_or_else(|| {
            eyre!("testnet.json lists node {j} but [[network.operators]] has {} operators", peers.len())
        })?;
        let action = if block { "block" } else { "unblock" };
        let r = self
            .http
            .post(format!("{}/admin/v1/peers/{action}", self.m.nodes[i].admin_url))
            .bearer_auth(&self.m.admin_token)
            .json(&json!({ "peer_id": peer }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{action} {peer} on {}: HTTP {} {}", self.m.nodes[i].name, r.status(), r.text().await?);
        }
        Ok(())
    }

    /// Replaces the last `depth` blocks of the chain with empty ones (`anvil_reorg`).
    pub async fn reorg(&self, depth: u64) -> Result<()> {
        let _: Value =
            self.chain.raw_request("anvil_reorg".into(), (depth, Vec::<Value>::new())).await.wrap_err("anvil_reorg")?;
        Ok(())
    }

    /// Node `i`'s `/status.json`, or `None` when it does not answer.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let r = self.http.get(format!("{}/status.json", self.m.nodes[i].api_url)).send().await.ok()?;
        r.json().await.ok()
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A binary built next to this one.
pub(crate) fn sibling(name: &str) -> Result<std::path::PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!("{} not found: build it with `cargo build --bin {name}`", path.display());
    }
    Ok(path)
}

pub(crate) fn spawn_detached(cmd: &mut Command, log: &std::path::Path) -> Result<u32> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let child =
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).process_group(0).spawn().wrap_err("spawn")?;
    Ok(child.id())
}

/// `signer` signing for the network of manifest `m`, which every node requires.
fn with_audience(m: &Manifest, signer: MerchantSigner) -> Result<MerchantSigner> {
    let audience = m.merchant.audience.clone().ok_or_else(|| eyre!("the manifest has no merchant.audience"))?;
    Ok(signer.with_audience(audience))
}
