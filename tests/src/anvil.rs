//! A local anvil chain for the tests: the pinned binary from `npm ci`, on a free loopback
//! port, killed on drop, paused and continued to stand for a chain whose providers are down.

use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use eyre::{Result, WrapErr, bail};
use settleproof_devnet::devnet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    pub url: String,
    pub keys: Vec<PrivateKeySigner>,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's root (the tests crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pinned anvil from `npm ci`.
fn anvil_bin() -> Result<PathBuf> {
    let bin = repo_root().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if !bin.exists() {
        bail!("anvil not found at {}: run `npm ci` at the repository root", bin.display());
    }
    Ok(bin)
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Anvil {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the chain: while stopped, every call to it
    /// hangs until its caller's timeout, as a chain whose providers are all down.
    pub fn pause(&self, paused: bool) -> Result<()> {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status()?;
        if !status.success() {
            bail!("kill {signal} {} failed", self.pid());
        }
        Ok(())
    }

    /// Starts anvil, mining every `block_time` seconds, or on each transaction when `None`.
    pub async fn start(dir: &Path, block_time: Option<&str>) -> Result<Self> {
        Self::start_chain(dir, block_time, None).await
    }

    /// Starts anvil as [`Anvil::start`] does, with chain id `chain_id` (anvil's 31337 when
    /// `None`).
    pub async fn start_chain(dir: &Path, block_time: Option<&str>, chain_id: Option<u64>) -> Result<Self> {
        let port = free_port();
        let config_out = dir.join(format!("anvil-{port}.json"));
        let mut cmd = Command::new(anvil_bin()?);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"]);
        if let Some(id) = chain_id {
            cmd.args(["--chain-id", &id.to_string()]);
        }
        if let Some(t) = block_time {
            cmd.args(["--block-time", t]);
        }
        let child = cmd
            .arg("--config-out")
            .arg(&config_out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .wrap_err("spawn anvil")?;
        let url = format!("http://127.0.0.1:{port}");
        let mut anvil = Self { child, url, keys: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if config_out.exists()
                && let Ok(keys) = devnet::anvil_keys(&config_out)
                && !keys.is_empty()
            {
                let p = ProviderBuilder::new().connect_http(anvil.url.parse()?);
                if p.get_block_number().await.is_ok() {
                    anvil.keys = keys;
                    return Ok(anvil);
                }
            }
            if Instant::now() > deadline {
                bail!("anvil did not come up on {}", anvil.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
