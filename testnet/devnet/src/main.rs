//! `settleproof-devnet`: sets up the local testnet (`init`) and runs its demo merchant
//! (`demo-merchant`). Used by `testnet/up.sh`; production nodes need neither.

use clap::{Parser, Subcommand};
use eyre::{Context, Result, bail};
use settleproof_devnet::{demo_merchant, devnet};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The local testnet's set-up and demo merchant.
#[derive(Debug, Parser)]
#[command(name = "settleproof-devnet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
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
        /// A further chain every node serves, as `<rpc url>,<anvil --config-out file>` (its
        /// key #0 deploys); repeatable. Nodes read it directly.
        #[arg(long = "more-chain")]
        more_chains: Vec<String>,
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

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Init {
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
            more_chains,
        } => {
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
                more_chains: more_chains.iter().map(|c| more_chain(c)).collect::<Result<_>>()?,
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

        Command::DemoMerchant { listen, testnet, out } => {
            settleproof_node::telemetry::init_logging(settleproof_config::LogFormat::Json, "info", None);
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

/// A `--more-chain <rpc url>,<anvil config>` argument.
fn more_chain(arg: &str) -> Result<devnet::ChainSpec> {
    let Some((rpc, config)) = arg.split_once(',') else {
        bail!("--more-chain `{arg}`: give <rpc url>,<anvil --config-out file>")
    };
    let keys = devnet::anvil_keys(std::path::Path::new(config))?;
    let Some(deployer) = keys.first() else { bail!("{config} lists no key") };
    Ok(devnet::ChainSpec { rpc_url: rpc.to_string(), deployer: deployer.clone(), node_rpc: Vec::new() })
}

/// Endpoints of node i when each node has `per_node` proxies from `base` on: base + per_node·i + j.
fn providers_from(base: Option<u16>, per_node: usize, nodes: usize) -> Vec<Vec<String>> {
    let Some(base) = base else { return Vec::new() };
    (0..nodes)
        .map(|i| (0..per_node).map(|j| format!("http://127.0.0.1:{}", usize::from(base) + i * per_node + j)).collect())
        .collect()
}
