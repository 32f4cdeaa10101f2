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
    /// Operator set changes: the sets on chain, and proposals to change them that a threshold
    /// of the current operators signs before anyone submits them.
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// The merchant registry, through the running node's admin API: list merchants, changes
    /// waiting and the audit log; propose a merchant or a change (approved by this node);
    /// approve a change another operator proposed. A change applies on every node once a
    /// threshold of operators approved it.
    #[command(subcommand)]
    Merchants(MerchantsCommand),
    /// The merchant's own tools: make a signing key, send a signed request.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Print the OpenAPI 3.1 document of the merchant API (as served at `/v1/openapi.json`
    /// and committed as docs/openapi.json), or with `--webhooks` that of the webhook events.
    Openapi {
        /// The webhook event bodies instead (docs/webhooks.json).
        #[arg(long)]
        webhooks: bool,
    },
    /// Check an invoice a node answered with, trusting no node, before showing it to a payer:
    /// the merchant's signature over the request it was made from, every term, the payout
    /// address, the id's commitment and the payment instructions. FILE holds a `POST` or `GET
    /// /v1/invoices` answer, or a webhook body. Exits 1 when any check fails.
    VerifyInvoice {
        /// The JSON file.
        file: PathBuf,
        /// The `InvoicePayments` contract of the invoice's chain (from your onboarding, not from
        /// a node's answer).
        #[arg(long)]
        payments: alloy::primitives::Address,
        /// Your payout address.
        #[arg(long)]
        payout: alloy::primitives::Address,
        /// A key that may have signed it: a private key file (PKCS#8 PEM), or a public key as
        /// JSON (`{"alg":"EdDSA","public_key":"<hex>"}`); repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// The id of the invoice you asked for (computed from your request): an answer with
        /// any other invoice, one you signed earlier say, fails.
        #[arg(long)]
        id: Option<alloy::primitives::B256>,
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
    /// Write a new BLS key to DIR/bls.next.key for a key rotation (never overwrites) and print
    /// its public key and proof of possession, for `operators propose --rotate`. The running
    /// node picks it up when the rotation's epoch starts.
    RotateBls {
        /// Keys directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `settleproof operators ...`
#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Print every operator set on chain (epoch, rounds, threshold, operators) and, for each
    /// proposal file given, what it changes and who has signed it.
    Show {
        /// JSON-RPC endpoint of the chain.
        #[arg(long)]
        rpc: String,
        /// The settlement contract.
        #[arg(long)]
        settlement: alloy::primitives::Address,
        /// Proposal files.
        #[arg(long = "proposal")]
        proposals: Vec<PathBuf>,
    },
    /// Write a proposal to change the latest set: exactly one of --add, --remove, --rotate,
    /// --threshold.
    Propose {
        /// JSON-RPC endpoint of the chain.
        #[arg(long)]
        rpc: String,
        /// The settlement contract.
        #[arg(long)]
        settlement: alloy::primitives::Address,
        /// First round of the new set; by default the first one the contract accepts plus
        /// --margin-blocks, to leave time for the signatures.
        #[arg(long)]
        start_round: Option<u64>,
        /// Blocks added to the earliest start for the signatures to be gathered.
        #[arg(long, default_value_t = 600)]
        margin_blocks: u64,
        /// Add the operator whose `settleproof keys show` output is in FILE (with --name and
        /// --p2p-addr).
        #[arg(long, value_name = "FILE")]
        add: Option<PathBuf>,
        /// Name of the operator added.
        #[arg(long)]
        name: Option<String>,
        /// Multiaddr where the operator added listens.
        #[arg(long)]
        p2p_addr: Option<String>,
        /// Remove the operator with this name.
        #[arg(long, value_name = "NAME")]
        remove: Option<String>,
        /// Rotate the BLS key of the operator with this name to the one in --bls-key.
        #[arg(long, value_name = "NAME")]
        rotate: Option<String>,
        /// `settleproof keys rotate-bls` output of the new key.
        #[arg(long, value_name = "FILE")]
        bls_key: Option<PathBuf>,
        /// Set the threshold.
        #[arg(long)]
        threshold: Option<u16>,
        /// Proposal file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proposal against the chain (its current set must be the latest one every --rpc
    /// shows, on the contract of --settlement) and add this operator's approval to it, signed
    /// with the BLS key the current set registered for it.
    Sign {
        /// The proposal file (rewritten in place).
        file: PathBuf,
        /// JSON-RPC endpoints of the chain, this operator's own; repeat to require them all to
        /// agree.
        #[arg(long, required = true)]
        rpc: Vec<String>,
        /// The settlement contract this operator serves.
        #[arg(long)]
        settlement: alloy::primitives::Address,
        /// This operator's keys directory.
        #[arg(long)]
        keys_dir: PathBuf,
        /// This operator's name in the current set.
        #[arg(long)]
        name: String,
    },
    /// Stage the proposed set and commit it with the approvals' aggregate; the keys
    /// directory's EVM key pays. Refused with fewer approvals than the current threshold. Use an
    /// account no node settles with: a node whose settlement key sends other transactions
    /// halts on the nonce desync.
    Submit {
        /// The proposal file.
        file: PathBuf,
        /// JSON-RPC endpoint of the chain.
        #[arg(long)]
        rpc: String,
        /// Keys directory whose `evm.key` sends the transactions.
        #[arg(long)]
        keys_dir: PathBuf,
    },
}

/// `settleproof merchants ...`; each takes the node's `--config` (for its admin address and
/// token).
#[derive(Debug, Subcommand)]
pub enum MerchantsCommand {
    /// Merchants, changes waiting (with what they change and who approved), the audit log.
    List {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Propose a new merchant.
    Create {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// Merchant id (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        id: String,
        /// Address receiving its payments.
        #[arg(long)]
        payout_address: alloy::primitives::Address,
        /// Where its webhooks go.
        #[arg(long)]
        webhook_url: String,
        /// Its webhook secret, read from this environment variable (never from the command line).
        #[arg(long, default_value = "SETTLEPROOF_WEBHOOK_SECRET")]
        webhook_secret_env: String,
        /// Its root public key as JSON, `{"alg":"EdDSA","public_key":"<hex>"}`: the `root_key`
        /// that the merchant's `settleproof merchant keygen` prints.
        #[arg(long, value_parser = merchant_key)]
        root_key: settleproof_merchant_auth::MerchantKey,
    },
    /// Propose a change to a merchant: the fields given change, the others stay.
    Update {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
        /// New payout address.
        #[arg(long)]
        payout_address: Option<alloy::primitives::Address>,
        /// New webhook URL.
        #[arg(long)]
        webhook_url: Option<String>,
        /// Read a new webhook secret from this environment variable.
        #[arg(long)]
        webhook_secret_env: Option<String>,
        /// New root public key as JSON (see `create`).
        #[arg(long, value_parser = merchant_key)]
        root_key: Option<settleproof_merchant_auth::MerchantKey>,
        /// Disable (true) or enable (false) the merchant.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Approve a change waiting on this node (see `list`).
    Approve {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The change's hash.
        #[arg(long)]
        change_hash: alloy::primitives::B256,
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
        /// The chain whose store to copy (each chain has its own); default: the first.
        #[arg(long)]
        chain_id: Option<u64>,
    },
    /// Check a store file (no node may have it open).
    Check {
        /// Store file; defaults to the one of --config.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The node's configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --config: the chain whose store to check; default: the first.
        #[arg(long)]
        chain_id: Option<u64>,
    },
    /// Replace the node's store with a checked backup (stop the node first).
    Restore {
        /// The node's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The chain whose store to replace; default: the first.
        #[arg(long)]
        chain_id: Option<u64>,
    },
}

/// `settleproof merchant ...`: what a merchant runs on its own machine. The private key never
/// leaves it; nodes hold only the public key, in the merchant's registry record.
#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Write a new signing key pair: the private key as PKCS#8 PEM into OUT (never
    /// overwritten, readable by its owner only), and print the public key for the registry
    /// record (`root_key`) with its key id.
    Keygen {
        /// Where the private key goes.
        #[arg(long)]
        out: PathBuf,
        /// `EdDSA` (Ed25519, the default) or `ES256` (P-256).
        #[arg(long, default_value = "EdDSA")]
        alg: String,
    },
    /// Sign one request with the merchant's key and send it; prints the status and the body,
    /// and exits 1 on an error status. For example:
    /// `settleproof merchant request POST http://127.0.0.1:8700/v1/invoices --data '{"amount":"1000","token":"native","chain_id":31337}'`
    Request {
        /// HTTP method.
        method: String,
        /// The full URL, as sent (the signature names its host and path).
        url: String,
        /// JSON body.
        #[arg(long)]
        data: Option<String>,
        /// A header to send as well, `Name: value` (e.g. `Idempotency-Key: order-1`); repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// The private key (PKCS#8 PEM).
        #[arg(long, env = "SETTLEPROOF_MERCHANT_KEY")]
        key: PathBuf,
        /// The merchant id.
        #[arg(long, env = "SETTLEPROOF_MERCHANT_ID")]
        merchant: String,
        /// The network the request is for (the operators' published `audience`, also in any
        /// node's `/health/ready`, or the testnet manifest's `merchant.audience`): signed as
        /// `aud`, so no other network where the key is registered takes the request or what it
        /// makes. Required: nodes refuse a request without it.
        #[arg(long, env = "SETTLEPROOF_AUDIENCE")]
        audience: String,
        /// Another node to send the same request to (its base URL, e.g.
        /// `http://127.0.0.1:8701`), signed for that node; repeatable. A change sent to f + 1
        /// nodes reaches every node even if one of them keeps it to itself. Fails only when no
        /// node took it.
        #[arg(long = "also")]
        also: Vec<String>,
    },
    /// Write the checkout to host on your own site (`settleproof-checkout.js` and `index.html`)
    /// into DIR, from this binary: the same files every node serves at
    /// `/checkout/assets/self-hosted/`, without trusting the node you would download them from.
    /// Existing files are never overwritten. Prints each file's SHA-256.
    CheckoutBundle {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// A merchant key given as JSON on the command line, checked.
fn merchant_key(text: &str) -> Result<settleproof_merchant_auth::MerchantKey, String> {
    let key: settleproof_merchant_auth::MerchantKey = serde_json::from_str(text)
        .map_err(|e| format!("{e}; expected {{\"alg\":\"EdDSA\",\"public_key\":\"<hex>\"}}"))?;
    key.check().map_err(|e| e.to_string())?;
    Ok(key)
}
