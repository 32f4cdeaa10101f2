//! The `settleproof` binary: parses the command line and hands off to the library.

use clap::Parser;
use eyre::{Context, Result, bail};
use settleproof_config::NodeConfig;
use settleproof_node::cli::{Cli, Command, KeysCommand, StoreCommand};

mod merchant_cmd;
mod merchants_cmd;
mod operators_cmd;
use settleproof_node::{keys::OperatorKeys, node, telemetry, webhook};

// One worker: the node's tasks wake each other often, and a second worker mostly woke up to
// find nothing to steal; the API has a runtime of its own (`api::thread`), and blocking work
// goes to the blocking pool.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keys(KeysCommand::Generate { dir }) => print_json(&OperatorKeys::generate(&dir)?.public()),
        Command::Keys(KeysCommand::Show { dir }) => print_json(&OperatorKeys::load(&dir)?.public()),
        Command::Keys(KeysCommand::RotateBls { dir }) => {
            print_json(&settleproof_node::keys::BlsPublic::of(&OperatorKeys::add_next_bls(&dir)?))
        }
        Command::Operators(cmd) => operators_cmd::run(cmd).await,
        Command::Merchants(cmd) => merchants_cmd::run(cmd).await,
        Command::Merchant(cmd) => merchant_cmd::run(cmd).await,
        Command::Keys(KeysCommand::WebhookSecret) => {
            println!("{}", webhook::signature::generate_secret());
            Ok(())
        }
        Command::Node { config } => run_node(config).await,
        Command::VerifyReceipt { file, rpc, settlement } => verify_receipt(&file, &rpc, settlement).await,
        Command::VerifyInvoice { file, payments, payout, keys, id } => {
            merchant_cmd::verify_invoice(&file, payments, payout, &keys, id)
        }
        Command::Store(cmd) => store_command(cmd).await,
        Command::Openapi { webhooks } => {
            use settleproof_node::api::openapi;
            print!("{}", if webhooks { openapi::webhooks_json() } else { openapi::api_json() });
            Ok(())
        }
    }
}

/// The configuration and the store file of chain `chain_id` (default: the first chain).
fn store_path(config: &std::path::Path, chain_id: Option<u64>) -> Result<(NodeConfig, std::path::PathBuf, u64)> {
    let cfg = NodeConfig::load(config, std::env::vars()).wrap_err("cannot load the configuration")?;
    let index = match chain_id {
        None => 0,
        Some(id) => cfg.chains.iter().position(|c| c.chain_id == id).ok_or_else(|| {
            let served: Vec<String> = cfg.chains.iter().map(|c| c.chain_id.to_string()).collect();
            eyre::eyre!("--chain-id {id}: the configuration has chains {}", served.join(", "))
        })?,
    };
    let id = cfg.chains.get(index).map(|c| c.chain_id).ok_or_else(|| eyre::eyre!("the configuration has no chain"))?;
    let path = settleproof_node::store::chain_store_path(&cfg.node.data_dir, index, id);
    Ok((cfg, path, id))
}

async fn store_command(cmd: StoreCommand) -> Result<()> {
    use settleproof_node::store;
    match cmd {
        StoreCommand::Check { path, config, chain_id } => {
            let path = match (path, config) {
                (Some(p), _) => p,
                (None, Some(c)) => store_path(&c, chain_id)?.1,
                (None, None) => bail!("give --path FILE or --config FILE"),
            };
            store::check(&path).wrap_err_with(|| format!("{} failed the check", path.display()))?;
            println!("{}: ok", path.display());
        }
        StoreCommand::Restore { config, from, chain_id } => {
            let (_, path, _) = store_path(&config, chain_id)?;
            store::restore(&from, &path).wrap_err("restore failed (is the node stopped?)")?;
            println!("restored {} from {}", path.display(), from.display());
        }
        StoreCommand::Backup { config, out, chain_id } => {
            let (cfg, path, id) = store_path(&config, chain_id)?;
            match store::Store::open(&path) {
                Ok(s) => {
                    let n = s.backup_to(&out)?;
                    println!("offline backup of {n} records written to {}", out.display());
                }
                Err(store::StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
                    let Some(admin) = cfg.admin.as_ref() else {
                        bail!("the node is running and has no [admin] token: cannot ask it for a backup")
                    };
                    let (token, admin_addr) = (admin.token.expose().to_string(), admin.listen_addr(cfg.api.listen));
                    let out_abs = std::path::absolute(&out)?;
                    let resp = reqwest::Client::new()
                        .post(format!("http://{admin_addr}/admin/v1/backup"))
                        .bearer_auth(token)
                        .json(&serde_json::json!({ "path": out_abs, "chain_id": id }))
                        .send()
                        .await?;
                    let status = resp.status();
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    if !status.is_success() {
                        bail!("the node refused the backup ({status}): {body}");
                    }
                    println!("online backup of {} records written by the node to {}", body["records"], out.display());
                }
                Err(e) => return Err(e).wrap_err("cannot open the store"),
            }
        }
    }
    Ok(())
}

async fn verify_receipt(file: &std::path::Path, rpc: &str, settlement: alloy::primitives::Address) -> Result<()> {
    let text = std::fs::read_to_string(file).wrap_err_with(|| format!("read {}", file.display()))?;
    let receipts = settleproof_node::receipt::parse_receipts(&text)?;
    settleproof_node::redact::register(rpc, "--rpc");
    let provider = alloy::providers::ProviderBuilder::new().connect_http(rpc.parse().wrap_err("--rpc is not a URL")?);
    let mut failed = 0;
    for r in &receipts {
        println!("receipt of payment {} (log {}) in round {}:", r.payment.tx_hash, r.payment.log_index, r.batch.round);
        let mut checks = r.verify_offchain();
        checks.extend(settleproof_node::receipt::verify_onchain(&provider, r, settlement).await);
        for c in checks {
            println!("  {} {:<20} {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail);
            if !c.ok {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    println!("all checks passed");
    Ok(())
}

async fn run_node(config: std::path::PathBuf) -> Result<()> {
    let cfg = NodeConfig::load(&config, std::env::vars()).wrap_err("cannot load the configuration")?;
    let otlp = match &cfg.telemetry.otlp_endpoint {
        Some(endpoint) => {
            let client = settleproof_node::outbound::Outbound::from_config(&cfg.tls)?.telemetry()?;
            Some((endpoint.clone(), client))
        }
        None => None,
    };
    telemetry::init_logging(cfg.node.log_format, &cfg.node.log_level, otlp);
    let grace = std::time::Duration::from_millis(cfg.node.shutdown_grace_ms);
    let handle = node::start(cfg).await.wrap_err("cannot start the node")?;
    shutdown_signal().await;
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutdown requested: no new work, finishing what is in flight");
    match tokio::time::timeout(grace, handle.stop()).await {
        Ok(()) => tracing::info!("node stopped cleanly"),
        Err(_) => {
            tracing::warn!("grace period over: exiting with work in flight (it is persisted and resumes on restart)")
        }
    }
    settleproof_node::otlp::shutdown();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
