//! The `settleproof` command line.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// settleproof: invoice payments settled by a quorum of permissioned nodes.
#[derive(Debug, Parser)]
#[command(name = "settleproof", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Operator keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run a node.
    Node {
        /// Configuration file (TOML); `SETTLEPROOF__SECTION__FIELD` variables override it.
        #[arg(long)]
        config: PathBuf,
    },
    /// The node's store: backup (online when the node runs), integrity check, restore.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Local development network.
    #[command(subcommand)]
    Devnet(DevnetCommand),
    /// Print the SHA-256 of a merchant API token read from standard input (one line), for
    /// `api_token_sha256` in `[[merchants]]`: operators hold the hash, never the token.
    HashToken,
    /// Print the OpenAPI 3.1 document of the merchant API (as served at `/v1/openapi.json`
    /// and committed as docs/openapi.json), or with `--webhooks` that of the webhook events.
    Openapi {
        /// The webhook event bodies instead (docs/webhooks.json).
        #[arg(long)]
        webhooks: bool,
    },
    /// Check a settlement receipt without trusting any node: Merkle proof, aggregate signature,
    /// and, over RPC, the signers' registered keys, the settled batch and the payment log.
    /// FILE holds a receipt, a webhook body carrying one, or `GET /v1/invoices/{id}/receipt`'s
    /// answer. Exits 1 when any check fails.
    VerifyReceipt {
        /// The JSON file.
        file: PathBuf,
        /// JSON-RPC endpoint of the chain (your own node or provider, not an operator's).
        #[arg(long)]
        rpc: String,
        /// The settlement contract you trust (from your onboarding, not from the receipt): a
        /// receipt naming any other contract, chain or operator set is rejected.
        #[arg(long)]
        settlement: alloy::primitives::Address,
    },
    /// Run the demo merchant webhook receiver.
    DemoMerchant {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9999")]
        listen: SocketAddr,
        /// `testnet.json` to read the webhook secret from.
        #[arg(long)]
        testnet: PathBuf,
        /// JSON-lines file to append deliveries to.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `settleproof keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write new libp2p, BLS and EVM keys into DIR (never overwrites) and print the public keys.
    Generate {
        /// Keys directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the public keys of DIR.
    Show {
        /// Keys directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print a new Standard Webhooks secret (`whsec_...`).
    WebhookSecret,
}

/// `settleproof devnet ...`
#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Generate keys, deploy contracts, fund operators and write node configs + testnet.json.
    Init {
        /// Chain RPC URL.
        #[arg(long)]
        rpc: String,
        /// anvil's `--config-out` file (funded dev keys: #0 deploys, #1 pays).
        #[arg(long)]
        anvil_config: PathBuf,
        /// Output directory.
        #[arg(long)]
        dir: PathBuf,
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Merchant webhook URL.
        #[arg(long)]
        webhook_url: String,
        /// API port of node 0 (node i uses base + i).
        #[arg(long, default_value_t = 8700)]
        api_port: u16,
        /// p2p port of node 0 (node i uses base + i).
        #[arg(long, default_value_t = 9700)]
        p2p_port: u16,
        /// Admin API port of node 0 (node i uses base + i), on loopback.
        #[arg(long, default_value_t = 8800)]
        admin_port: u16,
        /// PEM file of extra trust roots for every node (`tls.extra_ca_file`), e.g. the CA of
        /// an https:// webhook URL.
        #[arg(long)]
        extra_ca_file: Option<PathBuf>,
        /// Confirmation depth.
        #[arg(long, default_value_t = 2)]
        confirmations: u64,
        /// Blocks per round.
        #[arg(long, default_value_t = 3)]
        round_length: u64,
        /// First port of the fault-injecting RPC proxies (node i uses the `providers` ports from
        /// proxy_port + providers·i); without it every node reads `--rpc` directly.
        #[arg(long)]
        proxy_port: Option<u16>,
        /// RPC providers per node (with --proxy-port).
        #[arg(long, default_value_t = 3)]
        providers: usize,
    },
}

/// `settleproof store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write a consistent copy of the store. While the node runs, it writes the copy itself
    /// (through its admin API, so on the node's host); otherwise the file is copied directly.
    Backup {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// Backup file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a store file (no node may have it open).
    Check {
        /// Store file; defaults to the one of --config.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The node's configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replace the node's store with a checked backup (stop the node first).
    Restore {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
}
