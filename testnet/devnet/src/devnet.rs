//! A local operator network on a development chain (anvil): keys, contracts, funded operator
//! accounts and one configuration file per node. Used by `settleproof devnet init` (and so by
//! `testnet/up.sh`) and by the end-to-end tests, so both run the same setup.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use rand::RngCore;
use serde_json::json;
use settleproof_config::*;
use settleproof_contracts::{DeployError, Deployment, OperatorEntry, SettlementParams, deploy_all};
use settleproof_merchant_auth::{KeyAlg, MerchantSigner};
use settleproof_node::keys::{KeyError, OperatorKeys};
use settleproof_node::webhook::signature::generate_secret;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rounds a superseded operator set may still settle after its successor starts.
const GRACE_ROUNDS: u64 = 30;
/// Rounds (beyond the confirmation depth) a set update must precede its first round.
const LEAD_ROUNDS: u64 = 2;

/// What to set up.
#[derive(Debug, Clone)]
pub struct DevnetSpec {
    /// Chain RPC URL (loopback).
    pub rpc_url: String,
    /// Number of operators.
    pub nodes: usize,
    /// Output directory.
    pub dir: PathBuf,
    /// Funded account that deploys and funds the operators.
    pub deployer: PrivateKeySigner,
    /// Funded account the payer uses (written to testnet.json).
    pub payer: PrivateKeySigner,
    /// RPC endpoints of node i (e.g. fault-injecting proxies); empty: every node uses `rpc_url`.
    pub node_rpc: Vec<Vec<String>>,
    /// Merchant webhook URL.
    pub webhook_url: String,
    /// API port of node i.
    pub api_ports: Vec<u16>,
    /// p2p port of node i.
    pub p2p_ports: Vec<u16>,
    /// Admin API port of each node.
    pub admin_ports: Vec<u16>,
    /// Extra trust roots of every node (`tls.extra_ca_file`).
    pub extra_ca_file: Option<PathBuf>,
    /// Confirmation depth.
    pub confirmations: u64,
    /// Blocks per round.
    pub round_length: u64,
    /// Head polling period.
    pub poll_interval_ms: u64,
    /// Each keeper's turn before the next takes over.
    pub keeper_deadline_ms: u64,
    /// Webhook retry schedule, seconds.
    pub retry_schedule_s: Vec<u64>,
    /// Webhook delivery failover delay per position, ms.
    pub failover_delay_ms: u64,
    /// OTLP/HTTP collector of the nodes' traces.
    pub otlp_endpoint: Option<String>,
    /// Further chains the nodes serve beside the one at `rpc_url` (each gets the contracts and
    /// funded operator accounts; every node serves every chain).
    pub more_chains: Vec<ChainSpec>,
}

/// A further chain of the network.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// Its RPC URL (loopback).
    pub rpc_url: String,
    /// A funded account on it that deploys and funds the operators.
    pub deployer: PrivateKeySigner,
    /// RPC endpoints of node i on it; empty: every node uses `rpc_url`.
    pub node_rpc: Vec<Vec<String>>,
}

/// One chain as set up.
#[derive(Debug, Clone)]
pub struct DevnetChain {
    /// Chain id.
    pub chain_id: u64,
    /// RPC URL.
    pub rpc_url: String,
    /// Contract addresses.
    pub deployment: Deployment,
}

/// What was set up.
#[derive(Debug, Clone)]
pub struct Devnet {
    /// Config file path and config of each node.
    pub nodes: Vec<(PathBuf, NodeConfig)>,
    /// Contract addresses of the first chain.
    pub deployment: Deployment,
    /// Every chain, the first one first.
    pub chains: Vec<DevnetChain>,
    /// The demo merchant.
    pub merchant: MerchantConfig,
    /// Chain id of the first chain.
    pub chain_id: u64,
    /// Bearer token of every node's admin API.
    pub admin_token: Secret,
    /// The merchant's root key (the configs hold only its public half).
    pub merchant_key: Arc<MerchantSigner>,
}

/// Errors of devnet setup.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// Keys.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Deployment.
    #[error(transparent)]
    Deploy(#[from] Box<DeployError>),
    /// RPC.
    #[error("rpc: {0}")]
    Rpc(String),
    /// Files.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

/// Generates keys, deploys, funds operators and writes configs and `testnet.json`.
pub async fn init(spec: &DevnetSpec) -> Result<Devnet, DevnetError> {
    if spec.nodes == 0
        || spec.nodes > 64
        || spec.api_ports.len() < spec.nodes
        || spec.p2p_ports.len() < spec.nodes
        || spec.admin_ports.len() < spec.nodes
    {
        return Err(DevnetError::Invalid(format!("--nodes must be 1..=64 with a port per node, got {}", spec.nodes)));
    }
    let keys: Vec<OperatorKeys> = (0..spec.nodes).map(|_| OperatorKeys::random()).collect::<Result<_, _>>()?;
    let name = |i: usize| format!("node-{i}");
    let p2p_addr = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", spec.p2p_ports[i]);
    let entries: Vec<OperatorEntry> = keys.iter().enumerate().map(|(i, k)| k.entry(&name(i), &p2p_addr(i))).collect();
    let threshold = spec.nodes * 2 / 3 + 1;
    let params = SettlementParams {
        round_blocks: spec.round_length,
        grace_blocks: GRACE_ROUNDS * spec.round_length,
        lead_blocks: spec.confirmations + LEAD_ROUNDS * spec.round_length,
    };
    let first =
        ChainSpec { rpc_url: spec.rpc_url.clone(), deployer: spec.deployer.clone(), node_rpc: spec.node_rpc.clone() };
    let mut chains = Vec::new();
    for c in std::iter::once(&first).chain(spec.more_chains.iter()) {
        chains.push(deploy_chain(c, &keys, &entries, threshold, params).await?);
    }
    if chains.iter().enumerate().any(|(i, c)| chains[..i].iter().any(|o| o.chain_id == c.chain_id)) {
        return Err(DevnetError::Invalid("every chain needs its own chain id (anvil --chain-id)".into()));
    }
    // `chains` starts with the first chain, deployed above.
    let (chain_id, deployment) = (chains[0].chain_id, chains[0].deployment);

    // The merchant's root key stays with the merchant (testnet.json): made here at run time,
    // its public half in the registry record.
    // It signs for this network only (`aud`), as docs/merchants.md asks.
    let audience = settleproof_merchant_auth::network_audience(chain_id, &format!("{:#x}", deployment.settlement));
    let merchant_key = Arc::new(
        MerchantSigner::generate("demo", KeyAlg::EdDsa)
            .map_err(|e| DevnetError::Invalid(format!("merchant key: {e}")))?
            .with_audience(audience),
    );
    let merchant = MerchantConfig {
        id: "demo".into(),
        payout_address: PrivateKeySigner::random().address(),
        webhook_url: spec.webhook_url.clone(),
        webhook_secret: Secret::new(generate_secret()),
        root_key: Some(merchant_key.public_key().clone()),
        api_token_sha256: None,
    };
    let admin_token = Secret::new(format!("admin_{}", random_hex(16)));
    let operators: Vec<OperatorConfig> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let p = k.public();
            OperatorConfig {
                name: name(i),
                peer_id: p.peer_id,
                p2p_addr: p2p_addr(i),
                bls_public_key: p.bls_public_key,
                evm_address: p.evm_address,
            }
        })
        .collect();

    let mut nodes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let node_dir = spec.dir.join(format!("node-{i}"));
        k.write(&node_dir.join("keys"))?;
        let cfg = NodeConfig {
            node: NodeSection {
                name: format!("node-{i}"),
                data_dir: node_dir.join("data"),
                keys_dir: node_dir.join("keys"),
                log_format: LogFormat::Json,
                log_level: "info".into(),
                shutdown_grace_ms: 5000,
            },
            api: ApiSection::with_listen(([127, 0, 0, 1], spec.api_ports[i]).into()),
            p2p: P2pSection {
                listen: format!("/ip4/127.0.0.1/tcp/{}", spec.p2p_ports[i]),
                plain_topics: false,
                single_messages: false,
            },
            chains: chains
                .iter()
                .zip(std::iter::once(&first).chain(spec.more_chains.iter()))
                .enumerate()
                .map(|(c, (chain, chain_spec))| chain_section(spec, chain, chain_spec, i, c))
                .collect(),
            rounds: RoundsSection {
                length_blocks: spec.round_length,
                rebroadcast_interval_ms: 1000,
                keeper_deadline_ms: spec.keeper_deadline_ms,
                heartbeat_interval_ms: 500,
                heartbeat_timeout_ms: 2000,
                keeper_min_balance_gwei: 10_000_000,
            },
            network: NetworkSection { threshold, operators: operators.clone(), audience_optional_before_s: None },
            merchants: vec![merchant.clone()],
            webhooks: WebhookSection {
                timeout_ms: 5000,
                retry_schedule_s: spec.retry_schedule_s.clone(),
                disable_after_s: 5 * 24 * 3600,
                failover_delay_ms: spec.failover_delay_ms,
                expired_event_delay_s: 3,
                // The testnet's merchant listens on loopback.
                allow_private_targets: true,
                ..WebhookSection::default()
            },
            admin: Some(AdminSection {
                token: admin_token.clone(),
                listen: Some(([127, 0, 0, 1], spec.admin_ports[i]).into()),
            }),
            telemetry: TelemetrySection { otlp_endpoint: spec.otlp_endpoint.clone() },
            tls: TlsSection { extra_ca_file: spec.extra_ca_file.clone(), allow_insecure_http: false },
        };
        let path = node_dir.join("config.toml");
        let text = toml::to_string(&cfg).map_err(|e| DevnetError::Invalid(e.to_string()))?;
        write(&path, &text)?;
        nodes.push((path, cfg));
    }
    let devnet = Devnet { nodes, deployment, chains, merchant, merchant_key, chain_id, admin_token };
    // It holds the merchant's private key and tokens: readable by its owner only.
    write_private(&spec.dir.join("testnet.json"), &manifest(spec, &devnet).to_string())?;
    Ok(devnet)
}

/// Deploys the contracts on one chain and funds every operator's account there.
async fn deploy_chain(
    c: &ChainSpec,
    keys: &[OperatorKeys],
    entries: &[OperatorEntry],
    threshold: usize,
    params: SettlementParams,
) -> Result<DevnetChain, DevnetError> {
    let url = c.rpc_url.parse().map_err(|_| DevnetError::Invalid(format!("--rpc `{}` is not a URL", c.rpc_url)))?;
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(c.deployer.clone())).connect_http(url);
    let chain_id = provider.get_chain_id().await.map_err(|e| DevnetError::Rpc(e.to_string()))?;
    // At most 64 nodes (checked by the caller), so the threshold fits a u16.
    let deployment = deploy_all(provider.clone(), c.deployer.address(), entries, threshold as u16, params)
        .await
        .map_err(Box::new)?;
    for k in keys {
        let tx = TransactionRequest::default().with_to(k.evm.address()).with_value(U256::from(10u128 * 10u128.pow(18)));
        provider
            .send_transaction(tx)
            .await
            .map_err(|e| DevnetError::Rpc(e.to_string()))?
            .get_receipt()
            .await
            .map_err(|e| DevnetError::Rpc(e.to_string()))?;
    }
    Ok(DevnetChain { chain_id, rpc_url: c.rpc_url.clone(), deployment })
}

/// The `[[chains]]` entry of chain `c` for node `i`.
fn chain_section(spec: &DevnetSpec, chain: &DevnetChain, c: &ChainSpec, i: usize, index: usize) -> ChainSection {
    let endpoints = c.node_rpc.get(i).filter(|e| !e.is_empty()).cloned().unwrap_or_else(|| vec![c.rpc_url.clone()]);
    ChainSection {
        chain_id: chain.chain_id,
        name: Some(format!("anvil-{index}")),
        rpc_quorum: endpoints.len() / 2 + 1,
        rpc_endpoints: endpoints,
        // New heads straight from the chain (its WebSocket on the same port); reads go through
        // the providers above.
        rpc_ws_endpoints: c
            .rpc_url
            .strip_prefix("http://")
            .map(|rest| vec![format!("ws://{rest}")])
            .unwrap_or_default(),
        rpc_timeout_ms: 2000,
        rpc_retries: 2,
        rpc_breaker_failures: 3,
        rpc_breaker_open_ms: 3000,
        rpc_hedge_ms: 250,
        payments_contract: chain.deployment.payments,
        settlement_contract: chain.deployment.settlement,
        start_block: chain.deployment.start_block,
        confirmations: spec.confirmations,
        poll_interval_ms: spec.poll_interval_ms,
        max_log_range: 1000,
        round_length_blocks: None,
        keeper_min_balance_gwei: None,
        fees: FeePolicy::default(),
    }
}

/// The `testnet.json` manifest (node `pid`s are filled in by the script that starts them).
fn manifest(spec: &DevnetSpec, d: &Devnet) -> serde_json::Value {
    let nodes: Vec<_> = d
        .nodes
        .iter()
        .map(|(path, cfg)| {
            let api = format!("http://{}", cfg.api.listen);
            json!({
                "name": cfg.node.name,
                "api_url": api,
                "metrics_url": format!("{api}/metrics"),
                "admin_url": cfg.admin.as_ref().map(|a| format!("http://{}", a.listen_addr(cfg.api.listen))),
                "config": path,
                "pid": null,
                "log": path.parent().map(|p| p.join("node.log")),
            })
        })
        .collect();
    let chains: Vec<_> = d
        .chains
        .iter()
        .map(|c| {
            json!({
                "chain_id": c.chain_id,
                "rpc_url": c.rpc_url,
                "anvil": { "pid": null, "log": null },
                "contracts": {
                    "payments": c.deployment.payments,
                    "settlement": c.deployment.settlement,
                    "token": c.deployment.token,
                },
                "start_block": c.deployment.start_block,
            })
        })
        .collect();
    json!({
        "chains": chains,
        "rpc_url": spec.rpc_url,
        "chain_id": d.chain_id,
        "contracts": {
            "payments": d.deployment.payments,
            "settlement": d.deployment.settlement,
            "token": d.deployment.token,
        },
        "start_block": d.deployment.start_block,
        "payer_private_key": format!("0x{}", hex::encode(spec.payer.to_bytes())),
        "payer_address": spec.payer.address(),
        "merchant": {
            "id": d.merchant.id,
            "payout_address": d.merchant.payout_address,
            "key_id": d.merchant_key.key_id(),
            "private_key_pem": d.merchant_key.private_key_pem(),
            "audience": d.merchant_key.audience(),
            "webhook_url": d.merchant.webhook_url,
            "webhook_secret": d.merchant.webhook_secret.expose(),
        },
        "admin_token": d.admin_token.expose(),
        "nodes": nodes,
    })
}

fn write(path: &Path, text: &str) -> Result<(), DevnetError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| DevnetError::Io { path: parent.into(), source })?;
    }
    std::fs::write(path, text).map_err(|source| DevnetError::Io { path: path.into(), source })
}

fn write_private(path: &Path, text: &str) -> Result<(), DevnetError> {
    write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| DevnetError::Io { path: path.into(), source })?;
    }
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Reads the funded dev keys anvil writes with `--config-out`.
pub fn anvil_keys(path: &Path) -> Result<Vec<PrivateKeySigner>, DevnetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DevnetError::Io { path: path.into(), source })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| DevnetError::Invalid(format!("{}: {e}", path.display())))?;
    let keys = v["private_keys"]
        .as_array()
        .ok_or_else(|| DevnetError::Invalid(format!("{}: no private_keys", path.display())))?;
    keys.iter()
        .filter_map(|k| k.as_str())
        .map(|k| k.parse::<PrivateKeySigner>().map_err(|e| DevnetError::Invalid(format!("anvil key: {e}"))))
        .collect()
}
