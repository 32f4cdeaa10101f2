//! The configuration structs, one per subsystem, with their defaults.

use crate::Secret;
use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything a node needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Identity and local files.
    pub node: NodeSection,
    /// Public HTTP API.
    pub api: ApiSection,
    /// Peer-to-peer networking.
    pub p2p: P2pSection,
    /// The chains this node serves, each with its RPC providers, contracts and pipeline
    /// (`[[chains]]`). The first is the default of requests that name none. A file of the
    /// older form with one `[chain]` table loads as a list of that one chain.
    pub chains: Vec<ChainSection>,
    /// How blocks are cut into rounds.
    #[serde(default)]
    pub rounds: RoundsSection,
    /// The operator set of epoch 0, shared by all nodes; empty (or left out) for a node that
    /// learns every set from the settlement contract.
    #[serde(default)]
    pub network: NetworkSection,
    /// Merchants served by the operator set (shared by all nodes).
    #[serde(default)]
    pub merchants: Vec<MerchantConfig>,
    /// Webhook delivery.
    #[serde(default)]
    pub webhooks: WebhookSection,
    /// Admin API; absent: the admin API is off.
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// Trace export.
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// TLS of outgoing connections (RPC providers, webhooks, trace export).
    #[serde(default)]
    pub tls: TlsSection,
}

/// TLS of the node's outgoing connections. Trust roots are the system's (the file named by
/// `SSL_CERT_FILE` when set), plus `extra_ca_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of extra trust roots (a private CA), added to the system's.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// Allows `http://` to hosts other than loopback for RPC endpoints, webhook URLs and the
    /// trace collector. Off by default: such URLs are refused, since the traffic (API keys in
    /// RPC URLs, signed webhooks) would cross the network in clear.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Trace export settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// OTLP/HTTP collector base URL (spans go to `<url>/v1/traces`); absent: no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

/// Identity and local files of this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Name of this node; must match one `network.operators[].name`.
    pub name: String,
    /// Directory of the store (`settleproof.redb`).
    pub data_dir: PathBuf,
    /// Directory holding `libp2p.key`, `bls.key` and `evm.key` (from `settleproof keys generate`).
    pub keys_dir: PathBuf,
    /// Log format: `json` (default) or `pretty`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `settleproof=debug,info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// On SIGINT/SIGTERM, how long in-flight work may take before the process exits anyway, ms.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Public HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Requests per second each merchant token may make on average.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_s: f64,
    /// Requests a merchant token may make in a burst.
    #[serde(default = "default_rate_burst")]
    pub rate_limit_burst: f64,
    /// Largest request body, in bytes (larger: 413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Time a request may take from its headers to its answer, in milliseconds (then 408).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Time a client has to send a request's headers, in milliseconds (slow clients are cut).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A connection with no bytes either way for this long is closed, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Open connections at most; further ones wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections of one client address (an IPv6 /64) at most; further ones are closed
    /// at once, so one client cannot take every slot.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Requests handled at once at most; further ones wait (and time out).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// `/health/ready` and `/status.json` answers are reused for this long, in milliseconds,
    /// so a flood of them costs no RPC calls.
    #[serde(default = "default_status_cache_ms")]
    pub status_cache_ms: u64,
    /// The address payers reach this node's API at, e.g. `https://pay.example.com`: the base of
    /// every invoice's `checkout_url`. Absent: `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Reverse proxies (TLS terminators, load balancers) in front of the API, as addresses or
    /// CIDR blocks (`10.0.0.0/8`, `2001:db8::1`): for a connection from one of them, the
    /// client's address is taken from `X-Forwarded-For` (its last entry that is not itself a
    /// listed proxy); from anyone else the header is ignored. Empty: the header is never read.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl ApiSection {
    /// The base of checkout URLs: `public_url` without a trailing `/`, or `http://<listen>`.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The defaults of every limit, listening on `listen`.
    pub fn with_listen(listen: SocketAddr) -> Self {
        Self {
            listen,
            rate_limit_per_s: default_rate_limit(),
            rate_limit_burst: default_rate_burst(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            max_concurrent_requests: default_max_concurrent_requests(),
            status_cache_ms: default_status_cache_ms(),
            public_url: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// `trusted_proxies` parsed (an address is its own /32 or /128); `Err` names the entry.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|t| {
                t.parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("`{t}` is not an IP address or CIDR block (e.g. 10.0.0.0/8)"))
            })
            .collect()
    }
}

/// Peer-to-peer networking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// Multiaddr to listen on, e.g. `/ip4/127.0.0.1/tcp/9000`.
    pub listen: String,
    /// Also publish on and listen to the plain (unscoped) topics for the first chain, and take
    /// untagged requests: only while upgrading from the version before several chains, whose
    /// nodes know no other topics. Off, every message goes out once.
    #[serde(default)]
    pub plain_topics: bool,
    /// Also send each invoice announcement and delivery acknowledgement in a message of its
    /// own on the topics of the versions before batched gossip (`settleproof/invoices/1`,
    /// `settleproof/deliveries/1`): only while upgrading from such a version, whose nodes hear
    /// no other. Off, they go out packed.
    #[serde(default)]
    pub single_messages: bool,
}

/// One chain: its RPC providers, contracts, depth, rounds and fees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// EIP-155 chain id; the node refuses to start when a provider reports another.
    pub chain_id: u64,
    /// A name for logs, health and the status page (e.g. `base`); absent: `chain-<chain_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP JSON-RPC endpoints of this node's own providers.
    pub rpc_endpoints: Vec<String>,
    /// WebSocket endpoints (`wss://`, or `ws://` to loopback) whose `newHeads` subscription
    /// wakes the watcher at each new block; what it reads still comes from `rpc_endpoints` and
    /// their quorum. Empty: the watcher polls every `poll_interval_ms` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpc_ws_endpoints: Vec<String>,
    /// How many providers must agree on a read.
    #[serde(default = "one")]
    pub rpc_quorum: usize,
    /// Timeout of one RPC call, in milliseconds.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// Retries of a call that failed transiently (timeout, 5xx, 429, connection error).
    #[serde(default = "default_rpc_retries")]
    pub rpc_retries: u32,
    /// Consecutive failures that open a provider's circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub rpc_breaker_failures: u32,
    /// How long an open breaker skips its provider before one probe, in milliseconds.
    #[serde(default = "default_breaker_open_ms")]
    pub rpc_breaker_open_ms: u64,
    /// How long a read waits on the first `rpc_quorum` providers before it asks all the others,
    /// in milliseconds; 0 asks every provider at once. A failed or disagreeing answer asks one
    /// more at once.
    #[serde(default = "default_rpc_hedge_ms")]
    pub rpc_hedge_ms: u64,
    /// Address of the `InvoicePayments` contract.
    pub payments_contract: Address,
    /// Address of the `Settlement` contract.
    pub settlement_contract: Address,
    /// First block to watch (the deployment block); also the first block of round 0.
    pub start_block: u64,
    /// Blocks a payment must be buried under before it counts.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// How often to poll the head, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Largest block range of one `eth_getLogs` call.
    #[serde(default = "default_log_range")]
    pub max_log_range: u64,
    /// Blocks per round on this chain; absent: `rounds.length_blocks`. Must equal the
    /// settlement contract's `roundBlocks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_length_blocks: Option<u64>,
    /// Balance (gwei) of the settlement account on this chain below which this node hands its
    /// keeper turns over; absent: `rounds.keeper_min_balance_gwei`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeper_min_balance_gwei: Option<u64>,
    /// How settlement transactions are priced and replaced on this chain.
    #[serde(default)]
    pub fees: FeePolicy,
}

impl ChainSection {
    /// The chain's name: `name`, else `chain-<chain_id>`.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("chain-{}", self.chain_id))
    }

    /// Blocks per round on this chain.
    pub fn round_length(&self, rounds: &RoundsSection) -> u64 {
        self.round_length_blocks.unwrap_or(rounds.length_blocks)
    }

    /// Balance below which this node hands its keeper turns over on this chain, wei.
    pub fn min_balance_wei(&self, rounds: &RoundsSection) -> u128 {
        u128::from(self.keeper_min_balance_gwei.unwrap_or(rounds.keeper_min_balance_gwei)) * 1_000_000_000
    }
}

/// How settlement transactions are priced and replaced: the fees come from the chain (the
/// providers' quorum), each replacement raises them by `bump_pct`, both caps stay at or below
/// `max_fee_per_gas_gwei` when it is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeePolicy {
    /// Percent each replacement raises both fee caps (nodes need at least 10).
    #[serde(default = "default_fee_bump_pct")]
    pub bump_pct: u64,
    /// How long to wait for inclusion before replacing, in milliseconds.
    #[serde(default = "default_inclusion_timeout_ms")]
    pub inclusion_timeout_ms: u64,
    /// Replacements after the first submission.
    #[serde(default = "default_max_replacements")]
    pub max_replacements: u32,
    /// Highest fee per gas this node pays on this chain, in gwei; absent: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas_gwei: Option<u64>,
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self {
            bump_pct: default_fee_bump_pct(),
            inclusion_timeout_ms: default_inclusion_timeout_ms(),
            max_replacements: default_max_replacements(),
            max_fee_per_gas_gwei: None,
        }
    }
}

/// How blocks are cut into rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundsSection {
    /// Blocks per round.
    #[serde(default = "default_round_length")]
    pub length_blocks: u64,
    /// How often an unsettled round's attestation is sent again, in milliseconds.
    #[serde(default = "default_rebroadcast_ms")]
    pub rebroadcast_interval_ms: u64,
    /// Time each keeper in turn gets, from the round's quorum, before the next operator takes
    /// over, in milliseconds. Must cover submission, inclusion and the confirmation depth.
    #[serde(default = "default_keeper_deadline_ms")]
    pub keeper_deadline_ms: u64,
    /// How often a node announces it is alive, in milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
    /// Silence after which an operator counts as down and its keeper turns are skipped.
    #[serde(default = "default_heartbeat_timeout_ms")]
    pub heartbeat_timeout_ms: u64,
    /// Balance (gwei) below which this node cannot pay for settlements and hands its turns over.
    #[serde(default = "default_min_balance_gwei")]
    pub keeper_min_balance_gwei: u64,
}

impl Default for RoundsSection {
    fn default() -> Self {
        Self {
            length_blocks: default_round_length(),
            rebroadcast_interval_ms: default_rebroadcast_ms(),
            keeper_deadline_ms: default_keeper_deadline_ms(),
            heartbeat_interval_ms: default_heartbeat_ms(),
            heartbeat_timeout_ms: default_heartbeat_timeout_ms(),
            keeper_min_balance_gwei: default_min_balance_gwei(),
        }
    }
}

/// The operator set of epoch 0. Later sets come from the settlement contract's events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Signatures needed to settle a round.
    #[serde(default)]
    pub threshold: usize,
    /// Operators in order: index i is bit i of a settlement's signer bitmap.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    /// Every merchant request and record must name this network as its JWT `aud` (the
    /// `audience` of `/health/ready`), so that no one can present it on another network. A
    /// network whose merchants signed without it before it was required sets this to that
    /// day (unix s, the same on every node): until then, what was signed before it without
    /// `aud` is still taken; from then on nothing without `aud` is. Absent: `aud` is always
    /// required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_optional_before_s: Option<u64>,
}

/// One operator of the set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Operator name.
    pub name: String,
    /// libp2p peer id (base58).
    pub peer_id: String,
    /// Multiaddr where the operator listens.
    pub p2p_addr: String,
    /// Compressed BLS12-381 G2 public key, 0x-hex (96 bytes).
    pub bls_public_key: String,
    /// EVM account that submits settlements.
    pub evm_address: Address,
}

/// A merchant served by the operator set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantConfig {
    /// Merchant id.
    pub id: String,
    /// Address that receives the merchant's payments.
    pub payout_address: Address,
    /// Where webhooks are POSTed.
    pub webhook_url: String,
    /// Standard Webhooks secret, `whsec_` + base64.
    pub webhook_secret: Secret,
    /// Retired: the SHA-256 of a bearer token, which no node accepts any more. Kept (in its
    /// place, so that a stored record encodes and hashes as it was approved) only so that
    /// records from before signed requests still decode; a new record must not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_sha256: Option<alloy::primitives::B256>,
    /// The merchant's root public key (`settleproof merchant keygen` prints it): requests signed
    /// with it are the merchant's own, and no operator holds its private half. Required of a
    /// new record; one without (kept from before requests were signed) authenticates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key: Option<settleproof_merchant_auth::MerchantKey>,
}

/// Webhook delivery settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Timeout of one delivery attempt, in milliseconds.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Seconds to wait after each failed attempt; after the last the event is dead-lettered.
    #[serde(default = "default_retry_schedule_s")]
    pub retry_schedule_s: Vec<u64>,
    /// An endpoint failing without a single success for this long is disabled, in seconds.
    #[serde(default = "default_disable_after_s")]
    pub disable_after_s: u64,
    /// After a merchant's webhook secret changes, deliveries are signed with the old secret too
    /// for this long (both signatures in `webhook-signature`), in seconds.
    #[serde(default = "default_secret_overlap_s")]
    pub secret_overlap_s: u64,
    /// A settled payment of an invoice no operator this node asks knows is held this long, in
    /// seconds, for the invoice to reach the node (one operator may have withheld it); then it
    /// is sent bare, at most one a second per merchant.
    #[serde(default = "default_unknown_invoice_grace_s")]
    pub unknown_invoice_grace_s: u64,
    /// When another operator submitted a settlement, wait this long per position after it
    /// before delivering its events here (unless acknowledged meanwhile), in milliseconds.
    #[serde(default = "default_failover_delay_ms")]
    pub failover_delay_ms: u64,
    /// `invoice.expired` is sent this long after the expiry, so that payments made before it
    /// have time to confirm, in seconds.
    #[serde(default = "default_expired_event_delay_s")]
    pub expired_event_delay_s: u64,
    /// Time to set up a connection to an endpoint, in milliseconds.
    #[serde(default = "default_webhook_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Bytes of an endpoint's answer read at most; the rest is dropped unread.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Deliveries in flight at once, over all merchants.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Deliveries in flight at once to one merchant.
    #[serde(default = "default_max_in_flight_per_merchant")]
    pub max_in_flight_per_merchant: usize,
    /// Longest `Retry-After` honoured, in seconds (longer values are cut to this).
    #[serde(default = "default_max_retry_after_s")]
    pub max_retry_after_s: u64,
    /// Allows webhook URLs that resolve to loopback, private, link-local, multicast or metadata
    /// addresses. Off by default, so a merchant URL cannot reach the operator's own network.
    #[serde(default)]
    pub allow_private_targets: bool,
}

/// The operators' admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Bearer token of `/admin/v1/*` (at least 16 characters).
    pub token: Secret,
    /// Address of the admin listener, apart from the public API; absent: loopback, on the
    /// port after `api.listen`'s.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

impl AdminSection {
    /// Where the admin API listens, given the public API's address.
    pub fn listen_addr(&self, api: SocketAddr) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), api.port().saturating_add(1)))
    }
}

impl Default for WebhookSection {
    fn default() -> Self {
        Self {
            timeout_ms: default_webhook_timeout_ms(),
            retry_schedule_s: default_retry_schedule_s(),
            disable_after_s: default_disable_after_s(),
            secret_overlap_s: default_secret_overlap_s(),
            unknown_invoice_grace_s: default_unknown_invoice_grace_s(),
            failover_delay_ms: default_failover_delay_ms(),
            expired_event_delay_s: default_expired_event_delay_s(),
            connect_timeout_ms: default_webhook_connect_timeout_ms(),
            max_response_bytes: default_max_response_bytes(),
            max_in_flight: default_max_in_flight(),
            max_in_flight_per_merchant: default_max_in_flight_per_merchant(),
            max_retry_after_s: default_max_retry_after_s(),
            allow_private_targets: false,
        }
    }
}

fn default_rate_limit() -> f64 {
    50.0
}
fn default_rate_burst() -> f64 {
    100.0
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_log_level() -> String {
    "info".into()
}
fn one() -> usize {
    1
}
fn default_rpc_timeout_ms() -> u64 {
    2000
}
fn default_rpc_retries() -> u32 {
    2
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_ms() -> u64 {
    10_000
}
fn default_rpc_hedge_ms() -> u64 {
    250
}
fn default_confirmations() -> u64 {
    2
}
fn default_poll_ms() -> u64 {
    500
}
fn default_log_range() -> u64 {
    1000
}
fn default_fee_bump_pct() -> u64 {
    25
}
fn default_inclusion_timeout_ms() -> u64 {
    12_000
}
fn default_max_replacements() -> u32 {
    3
}
fn default_round_length() -> u64 {
    5
}
fn default_rebroadcast_ms() -> u64 {
    2000
}
fn default_keeper_deadline_ms() -> u64 {
    20_000
}
fn default_heartbeat_ms() -> u64 {
    1000
}
fn default_heartbeat_timeout_ms() -> u64 {
    3500
}
fn default_min_balance_gwei() -> u64 {
    10_000_000
}
fn default_webhook_timeout_ms() -> u64 {
    10_000
}
fn default_retry_schedule_s() -> Vec<u64> {
    vec![0, 5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400]
}
fn default_secret_overlap_s() -> u64 {
    86_400
}
fn default_unknown_invoice_grace_s() -> u64 {
    600
}
fn default_disable_after_s() -> u64 {
    5 * 24 * 3600
}
fn default_failover_delay_ms() -> u64 {
    30_000
}
fn default_expired_event_delay_s() -> u64 {
    60
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_header_read_timeout_ms() -> u64 {
    5_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_connections_per_ip() -> usize {
    64
}
fn default_max_concurrent_requests() -> usize {
    256
}
fn default_status_cache_ms() -> u64 {
    1_000
}
fn default_webhook_connect_timeout_ms() -> u64 {
    3_000
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
fn default_max_in_flight() -> usize {
    32
}
fn default_max_in_flight_per_merchant() -> usize {
    2
}
fn default_max_retry_after_s() -> u64 {
    3_600
}
