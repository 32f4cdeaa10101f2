//! The `settleproof` binary: parses the command line and hands off to the library.

use clap::Parser;
use eyre::{Context, Result, bail};
use settleproof_config::NodeConfig;
use settleproof_node::cli::{Cli, Command, DevnetCommand, KeysCommand, StoreCommand};
use settleproof_node::{demo_merchant, devnet, keys::OperatorKeys, node, telemetry, webhook};

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keys(KeysCommand::Generate { dir }) => print_json(&OperatorKeys::generate(&dir)?.public()),
        Command::Keys(KeysCommand::Show { dir }) => print_json(&OperatorKeys::load(&dir)?.public()),
        Command::Keys(KeysCommand::WebhookSecret) => {
            println!("{}", webhook::signature::generate_secret());
            Ok(())
        }
        Command::Node { config } => run_node(config).await,
        Command::Devnet(DevnetCommand::Init {
            rpc,
            anvil_config,
            dir,
            nodes,
            webhook_url,
            api_port,
            p2p_port,
            admin_port,
            extra_ca_file,
            confirmations,
            round_length,
            proxy_port,
            providers,
        }) => {
            let dev_keys = devnet::anvil_keys(&anvil_config)?;
            let [deployer, payer, ..] = dev_keys.as_slice() else {
                bail!("{} lists fewer than 2 keys", anvil_config.display())
            };
            let ports = |base: u16| (0..nodes).map(|i| base.saturating_add(i as u16)).collect();
            let spec = devnet::DevnetSpec {
                rpc_url: rpc,
                nodes,
                dir: dir.clone(),
                deployer: deployer.clone(),
                payer: payer.clone(),
                node_rpc: providers_from(proxy_port, providers, nodes),
                webhook_url,
                api_ports: ports(api_port),
                p2p_ports: ports(p2p_port),
                admin_ports: ports(admin_port),
                extra_ca_file,
                confirmations,
                round_length,
                poll_interval_ms: 250,
                keeper_deadline_ms: 8000,
                retry_schedule_s: vec![0, 2, 5, 10, 30, 60, 300],
                failover_delay_ms: 5000,
                otlp_endpoint: None,
            };
            let net = devnet::init(&spec).await?;
            eprintln!(
                "devnet: {} nodes, settlement {} written to {}",
                net.nodes.len(),
                net.deployment.settlement,
                dir.display()
            );
            Ok(())
        }
        Command::VerifyReceipt { file, rpc, settlement } => verify_receipt(&file, &rpc, settlement).await,
        Command::Store(cmd) => store_command(cmd).await,
        Command::Openapi { webhooks } => {
            use settleproof_node::api::openapi;
            print!("{}", if webhooks { openapi::webhooks_json() } else { openapi::api_json() });
            Ok(())
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token).wrap_err("read the token from standard input")?;
            let token = token.trim_end_matches(['\n', '\r']);
            if token.len() < 16 {
                bail!("the token is {} characters long: use at least 16 random characters", token.len());
            }
            println!("{}", settleproof_node::api::auth::token_hash(token));
            Ok(())
        }
        Command::DemoMerchant { listen, testnet, out } => {
            telemetry::init_logging(settleproof_config::LogFormat::Json, "info", None);
            let text = std::fs::read_to_string(&testnet).wrap_err_with(|| format!("read {}", testnet.display()))?;
            let manifest: serde_json::Value = serde_json::from_str(&text)?;
            let Some(secret) = manifest["merchant"]["webhook_secret"].as_str() else {
                bail!("no merchant.webhook_secret in testnet.json")
            };
            let listener = tokio::net::TcpListener::bind(listen).await.wrap_err_with(|| format!("bind {listen}"))?;
            demo_merchant::Receiver::new(secret.to_string(), Some(out)).serve(listener).await?;
            Ok(())
        }
    }
}

fn store_path(config: &std::path::Path) -> Result<(NodeConfig, std::path::PathBuf)> {
    let cfg = NodeConfig::load(config, std::env::vars()).wrap_err("cannot load the configuration")?;
    let path = cfg.node.data_dir.join("settleproof.redb");
    Ok((cfg, path))
}

async fn store_command(cmd: StoreCommand) -> Result<()> {
    use settleproof_node::store;
    match cmd {
        StoreCommand::Check { path, config } => {
            let path = match (path, config) {
                (Some(p), _) => p,
                (None, Some(c)) => store_path(&c)?.1,
                (None, None) => bail!("give --path FILE or --config FILE"),
            };
            store::check(&path).wrap_err_with(|| format!("{} failed the check", path.display()))?;
            println!("{}: ok", path.display());
        }
        StoreCommand::Restore { config, from } => {
            let (_, path) = store_path(&config)?;
            store::restore(&from, &path).wrap_err("restore failed (is the node stopped?)")?;
            println!("restored {} from {}", path.display(), from.display());
        }
        StoreCommand::Backup { config, out } => {
            let (cfg, path) = store_path(&config)?;
            match store::Store::open(&path) {
                Ok(s) => {
                    let n = s.backup_to(&out)?;
                    println!("offline backup of {n} records written to {}", out.display());
                }
                Err(store::StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
                    let token = cfg.admin.as_ref().map(|a| a.token.expose().to_string());
                    let Some(token) = token else {
                        bail!("the node is running and has no [admin] token: cannot ask it for a backup")
                    };
                    let out_abs = std::path::absolute(&out)?;
                    let resp = reqwest::Client::new()
                        .post(format!("http://{}/admin/v1/backup", cfg.api.listen))
                        .bearer_auth(token)
                        .json(&serde_json::json!({ "path": out_abs }))
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
    telemetry::init_logging(cfg.node.log_format, &cfg.node.log_level, cfg.telemetry.otlp_endpoint.as_deref());
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

/// Endpoints of node i when each node has `per_node` proxies from `base` on: base + per_node·i + j.
fn providers_from(base: Option<u16>, per_node: usize, nodes: usize) -> Vec<Vec<String>> {
    let Some(base) = base else { return Vec::new() };
    (0..nodes)
        .map(|i| (0..per_node).map(|j| format!("http://127.0.0.1:{}", usize::from(base) + i * per_node + j)).collect())
        .collect()
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
