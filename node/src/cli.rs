//! The `settleproof` command line.

use clap::{Parser, Subcommand};
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
