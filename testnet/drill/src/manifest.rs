//! The running testnet as `testnet/up.sh` describes it in `testnet.json`, plus what the drills
//! read from each node's config (peer ids, confirmation depth).

use alloy::primitives::Address;
use eyre::{Result, WrapErr, eyre};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `testnet.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Admin API token of every node.
    pub admin_token: String,
    /// Contract addresses.
    pub contracts: Contracts,
    /// The demo merchant.
    pub merchant: Merchant,
    /// The operators' nodes, in operator order.
    pub nodes: Vec<Node>,
    /// Funded payer key.
    pub payer_private_key: String,
    /// anvil itself (the payer's RPC; the nodes read through proxies).
    pub rpc_url: String,
    /// Every chain the nodes serve, the first (`rpc_url`, `contracts`) first.
    #[serde(default)]
    pub chains: Vec<Chain>,
    /// Where the file was read from (set after parsing).
    #[serde(skip)]
    pub path: PathBuf,
}

/// One chain of the testnet.
#[derive(Debug, Clone, Deserialize)]
pub struct Chain {
    /// Its id.
    pub chain_id: u64,
    /// Its anvil.
    pub rpc_url: String,
    /// Its anvil process.
    pub anvil: Process,
    /// Its contracts.
    pub contracts: Contracts,
}

/// A process `up.sh` started.
#[derive(Debug, Clone, Deserialize)]
pub struct Process {
    /// Its pid.
    pub pid: Option<u32>,
}

/// Contract addresses.
#[derive(Debug, Clone, Deserialize)]
pub struct Contracts {
    /// `InvoicePayments`.
    pub payments: Address,
    /// `Settlement`.
    pub settlement: Address,
    /// `TestToken`.
    pub token: Address,
}

/// The demo merchant.
#[derive(Debug, Clone, Deserialize)]
pub struct Merchant {
    /// The merchant id.
    pub id: String,
    /// The merchant's root key, PKCS#8 PEM: it signs every merchant API request.
    pub private_key_pem: String,
    /// The network its requests are signed for (`aud`).
    #[serde(default)]
    pub audience: Option<String>,
    /// Where nodes deliver webhooks.
    pub webhook_url: String,
    /// The demo receiver, when `up.sh` started one.
    pub receiver: Option<Receiver>,
}

/// The demo merchant's receiver process.
#[derive(Debug, Clone, Deserialize)]
pub struct Receiver {
    /// Its JSON-lines file of deliveries.
    pub deliveries: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

/// One node.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    /// `node-i`.
    pub name: String,
    /// HTTP API base URL.
    pub api_url: String,
    /// Base URL of its admin API (its own loopback listener).
    pub admin_url: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its RPC providers (fault-injecting proxies).
    pub rpc_endpoints: Vec<String>,
}

impl Manifest {
    /// Reads `testnet.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .wrap_err_with(|| format!("{}: no testnet manifest; start one with ./testnet/up.sh", path.display()))?;
        let mut m: Self =
            serde_json::from_str(&text).wrap_err_with(|| format!("{}: not a testnet.json", path.display()))?;
        m.path = path.to_path_buf();
        Ok(m)
    }

    /// The testnet's run directory (pid files, logs).
    pub fn run_dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// The receiver, or an error naming why it is needed.
    pub fn receiver(&self) -> Result<&Receiver> {
        self.merchant.receiver.as_ref().ok_or_else(|| {
            eyre!("the drills read the demo merchant's deliveries; start the testnet without --webhook-url")
        })
    }

    /// Node `i`'s config file, parsed.
    pub fn node_config(&self, i: usize) -> Result<toml::Value> {
        let path = &self.nodes[i].config;
        let text = std::fs::read_to_string(path).wrap_err_with(|| format!("{}", path.display()))?;
        toml::from_str(&text).wrap_err_with(|| format!("{}", path.display()))
    }

    /// The operators' libp2p peer ids, in operator order.
    pub fn peer_ids(&self) -> Result<Vec<String>> {
        let cfg = self.node_config(0)?;
        let ops = cfg["network"]["operators"].as_array().ok_or_else(|| eyre!("no [[network.operators]]"))?;
        ops.iter()
            .map(|o| o["peer_id"].as_str().map(str::to_string).ok_or_else(|| eyre!("operator without peer_id")))
            .collect()
    }

    /// Confirmation depth the nodes use.
    pub fn confirmations(&self) -> Result<u64> {
        let cfg = self.node_config(0)?;
        cfg["chains"][0]["confirmations"]
            .as_integer()
            .and_then(|c| u64::try_from(c).ok())
            .ok_or_else(|| eyre!("chains[0].confirmations missing from the node config"))
    }

    /// Updates the recorded pid of `name` (`node-i` or `merchant`) in its pid file and in
    /// `testnet.json`, so `down.sh` and later drills find the restarted process.
    pub fn record_pid(&self, name: &str, pid: u32) -> Result<()> {
        std::fs::write(self.run_dir().join(format!("{name}.pid")), pid.to_string())?;
        let text = std::fs::read_to_string(&self.path)?;
        let mut raw: serde_json::Value = serde_json::from_str(&text)?;
        if name == "merchant" {
            raw["merchant"]["receiver"]["pid"] = pid.into();
        } else if let Some(nodes) = raw["nodes"].as_array_mut() {
            for n in nodes.iter_mut().filter(|n| n["name"] == name) {
                n["pid"] = pid.into();
            }
        }
        write_atomically(&self.path, &(serde_json::to_string_pretty(&raw)? + "\n"))
    }

    /// The pid recorded for `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.run_dir().join(format!("{name}.pid"))).ok()?.trim().parse().ok()
    }
}

/// Writes `path` whole or not at all (a file beside it, renamed over it): a process started a
/// moment before, such as the demo merchant reading its secret, never reads it half written.
/// Readable by its owner only: it holds the demo merchant's key and tokens.
fn write_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
