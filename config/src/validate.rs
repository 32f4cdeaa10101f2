//! Second loading step: checks every field and reports all problems with their paths.

use crate::netpolicy::{UrlProblem, check_url, check_webhook_url};
use crate::{ChainSection, ConfigError, FieldError, NodeConfig};
use std::collections::HashSet;

pub(crate) fn validate(cfg: &NodeConfig) -> Result<(), ConfigError> {
    let mut v = Problems::default();
    node(cfg, &mut v);
    chains(cfg, &mut v);
    network(cfg, &mut v);
    merchants(cfg, &mut v);
    if cfg.rounds.length_blocks == 0 {
        v.add("rounds.length_blocks", "must be at least 1 block per round");
    }
    if cfg.rounds.rebroadcast_interval_ms < 100 {
        v.add("rounds.rebroadcast_interval_ms", "must be at least 100 ms");
    }
    if cfg.rounds.keeper_deadline_ms < 1000 {
        v.add("rounds.keeper_deadline_ms", "must be at least 1000 ms (submission, inclusion and confirmations)");
    }
    if cfg.rounds.heartbeat_interval_ms < 100 {
        v.add("rounds.heartbeat_interval_ms", "must be at least 100 ms");
    }
    if cfg.rounds.heartbeat_timeout_ms <= cfg.rounds.heartbeat_interval_ms * 2 {
        v.add(
            "rounds.heartbeat_timeout_ms",
            "must be more than twice rounds.heartbeat_interval_ms, or one lost heartbeat marks a peer down",
        );
    }
    let positive = cfg.api.rate_limit_per_s.is_finite() && cfg.api.rate_limit_per_s > 0.0;
    if !positive || !cfg.api.rate_limit_burst.is_finite() || cfg.api.rate_limit_burst < 1.0 {
        v.add("api.rate_limit_per_s", "must be positive, with api.rate_limit_burst at least 1");
    }
    if cfg.webhooks.retry_schedule_s.is_empty() || cfg.webhooks.retry_schedule_s.iter().any(|s| *s > 7 * 24 * 3600) {
        v.add(
            "webhooks.retry_schedule_s",
            "must list at least one delay, each at most 7 days (e.g. [0, 5, 300, 1800])",
        );
    }
    if let Some(url) = &cfg.telemetry.otlp_endpoint
        && let Err(e) = check_url(url, cfg.tls.allow_insecure_http)
    {
        v.add("telemetry.otlp_endpoint", format!("{e} (e.g. http://127.0.0.1:4318)"));
    }
    api(cfg, &mut v);
    webhooks(cfg, &mut v);
    if let Some(admin) = &cfg.admin
        && admin.token.expose().len() < 16
    {
        v.add("admin.token", "must be at least 16 characters");
    }
    if v.0.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(v.0)) }
}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
}

fn node(cfg: &NodeConfig, v: &mut Problems) {
    if cfg.node.name.trim().is_empty() {
        v.add("node.name", "must not be empty; use this node's name from network.operators");
    } else if !cfg.network.operators.is_empty() && !cfg.network.operators.iter().any(|o| o.name == cfg.node.name) {
        v.add("node.name", format!("`{}` is not in network.operators; add it or fix the name", cfg.node.name));
    }
    if !cfg.p2p.listen.starts_with('/') {
        v.add("p2p.listen", "must be a multiaddr such as /ip4/127.0.0.1/tcp/9000");
    }
}

fn chains(cfg: &NodeConfig, v: &mut Problems) {
    if cfg.chains.is_empty() {
        v.add("chains", "must list at least one chain as a `[[chains]]` entry");
    }
    if cfg.chains.len() > MAX_CHAINS {
        v.add("chains", format!("must list at most {MAX_CHAINS} chains, found {}", cfg.chains.len()));
    }
    let mut ids = HashSet::new();
    for (i, c) in cfg.chains.iter().enumerate() {
        if !ids.insert(c.chain_id) {
            v.add(format!("chains[{i}].chain_id"), format!("{} is listed twice; each chain once", c.chain_id));
        }
        chain(cfg, &format!("chains[{i}]"), c, v);
    }
}

/// WebSocket endpoints of one chain at most (each holds a connection open).
const MAX_WS_ENDPOINTS: usize = 8;

/// Chains one node serves at most (each has its own pipeline, store and tasks).
const MAX_CHAINS: usize = 16;

fn chain(cfg: &NodeConfig, at: &str, c: &ChainSection, v: &mut Problems) {
    if c.chain_id == 0 {
        v.add(format!("{at}.chain_id"), "must be the chain's EIP-155 id (e.g. 31337 for anvil), not 0");
    }
    if c.rpc_endpoints.is_empty() {
        v.add(format!("{at}.rpc_endpoints"), "must list at least one URL, e.g. [\"http://127.0.0.1:8545\"]");
    }
    for (i, url) in c.rpc_endpoints.iter().enumerate() {
        if let Err(e) = check_url(url, cfg.tls.allow_insecure_http) {
            v.add(format!("{at}.rpc_endpoints[{i}]"), redacted(&e, url));
        }
    }
    for (i, url) in c.rpc_ws_endpoints.iter().enumerate() {
        if let Err(e) = crate::netpolicy::check_ws_url(url, cfg.tls.allow_insecure_http) {
            v.add(format!("{at}.rpc_ws_endpoints[{i}]"), redacted(&e, url));
        }
    }
    if c.rpc_ws_endpoints.len() > MAX_WS_ENDPOINTS {
        v.add(
            format!("{at}.rpc_ws_endpoints"),
            format!("at most {MAX_WS_ENDPOINTS} endpoints; one per provider is enough"),
        );
    }
    if c.rpc_quorum == 0 || c.rpc_quorum > c.rpc_endpoints.len().max(1) {
        v.add(
            format!("{at}.rpc_quorum"),
            format!("must be between 1 and the number of rpc_endpoints ({})", c.rpc_endpoints.len()),
        );
    }
    if c.rpc_timeout_ms < 10 {
        v.add(format!("{at}.rpc_timeout_ms"), "must be at least 10 ms");
    }
    if c.rpc_retries > 10 {
        v.add(format!("{at}.rpc_retries"), "must be at most 10 (retries multiply the time a read can take)");
    }
    if c.rpc_hedge_ms > c.rpc_timeout_ms {
        v.add(
            format!("{at}.rpc_hedge_ms"),
            format!(
                "must be at most rpc_timeout_ms ({}): later, the first providers have timed out already",
                c.rpc_timeout_ms
            ),
        );
    }
    if c.rpc_breaker_failures == 0 {
        v.add(format!("{at}.rpc_breaker_failures"), "must be at least 1");
    }
    if c.rpc_endpoints.len() > 1 && c.rpc_quorum * 2 <= c.rpc_endpoints.len() {
        v.add(
            format!("{at}.rpc_quorum"),
            "must be more than half of rpc_endpoints, so two disagreeing groups cannot both form a quorum",
        );
    }
    if c.payments_contract.is_zero() {
        v.add(format!("{at}.payments_contract"), "must be the deployed InvoicePayments address, not the zero address");
    }
    if c.settlement_contract.is_zero() {
        v.add(format!("{at}.settlement_contract"), "must be the deployed Settlement address, not the zero address");
    }
    if c.payments_contract == c.settlement_contract && !c.payments_contract.is_zero() {
        v.add(format!("{at}.settlement_contract"), "must differ from payments_contract");
    }
    if c.poll_interval_ms < 50 {
        v.add(format!("{at}.poll_interval_ms"), "must be at least 50 ms");
    }
    if c.max_log_range == 0 {
        v.add(format!("{at}.max_log_range"), "must be at least 1 block");
    }
    if c.round_length_blocks == Some(0) {
        v.add(format!("{at}.round_length_blocks"), "must be at least 1 block per round (or left out)");
    }
    if c.name.as_deref().is_some_and(|n| {
        n.is_empty() || n.len() > 32 || !n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    }) {
        v.add(format!("{at}.name"), "must be 1 to 32 letters, digits, `-` or `_` (e.g. base-mainnet)");
    }
    if c.fees.bump_pct < 10 || c.fees.bump_pct > 1000 {
        v.add(format!("{at}.fees.bump_pct"), "must be between 10 and 1000 (nodes refuse a replacement under 10 %)");
    }
    if c.fees.inclusion_timeout_ms < 1000 {
        v.add(format!("{at}.fees.inclusion_timeout_ms"), "must be at least 1000 ms");
    }
    if c.fees.max_replacements > 10 {
        v.add(format!("{at}.fees.max_replacements"), "must be at most 10");
    }
    if c.fees.max_fee_per_gas_gwei == Some(0) {
        v.add(format!("{at}.fees.max_fee_per_gas_gwei"), "must be at least 1 gwei (or left out for no cap)");
    }
}

fn network(cfg: &NodeConfig, v: &mut Problems) {
    let ops = &cfg.network.operators;
    let n = ops.len();
    // No operators: the node learns every set from the settlement contract (an operator
    // joining an existing network needs only its keys and the contract address).
    if n == 0 {
        return;
    }
    if n > 256 {
        v.add("network.operators", format!("must list between 1 and 256 operators, found {n}"));
    }
    let t = cfg.network.threshold;
    if t == 0 || t > n || t * 2 <= n {
        v.add(
            "network.threshold",
            format!(
                "must be more than half of the {n} operators and at most {n} (e.g. {} for {n}), found {t}",
                n * 2 / 3 + 1
            ),
        );
    }
    let (mut names, mut peers, mut keys, mut accounts) =
        (HashSet::new(), HashSet::new(), HashSet::new(), HashSet::new());
    for (i, o) in ops.iter().enumerate() {
        let at = |f: &str| format!("network.operators[{i}].{f}");
        if o.name.trim().is_empty() || !names.insert(o.name.as_str()) {
            v.add(at("name"), "must be non-empty and unique");
        }
        if o.peer_id.is_empty()
            || !o.peer_id.chars().all(|c| c.is_ascii_alphanumeric())
            || !peers.insert(o.peer_id.as_str())
        {
            v.add(at("peer_id"), "must be a unique base58 libp2p peer id (see `settleproof keys show`)");
        }
        if !o.p2p_addr.starts_with('/') {
            v.add(at("p2p_addr"), "must be a multiaddr such as /ip4/127.0.0.1/tcp/9000");
        }
        if !is_hex_bytes(&o.bls_public_key, 96) || !keys.insert(o.bls_public_key.to_ascii_lowercase()) {
            v.add(
                at("bls_public_key"),
                "must be a unique 0x-prefixed 96-byte compressed BLS12-381 G2 public key (192 hex digits; see `settleproof keys show`)",
            );
        }
        if o.evm_address.is_zero() || !accounts.insert(o.evm_address) {
            v.add(at("evm_address"), "must be a unique non-zero address");
        }
    }
}

fn merchants(cfg: &NodeConfig, v: &mut Problems) {
    let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
    for (i, m) in cfg.merchants.iter().enumerate() {
        let at = |f: &str| format!("merchants[{i}].{f}");
        if !ids.insert(m.id.as_str()) {
            v.add(at("id"), "must be non-empty and unique");
        }
        let problems = merchant_problems(m, cfg.tls.allow_insecure_http, cfg.webhooks.allow_private_targets);
        for (field, problem) in problems.into_iter().chain(new_merchant_problems(m)) {
            v.add(at(field), problem);
        }
        if let Some(key) = &m.root_key
            && !keys.insert(key.key_id())
        {
            v.add(at("root_key"), "must be the merchant's own key: another merchant has it");
        }
    }
}

/// What is wrong with one merchant's entry by itself, as (field, problem): the checks of a
/// `[[merchants]]` entry and of a merchant registry change alike. `insecure_http` and
/// `private_targets` are `tls.allow_insecure_http` and `webhooks.allow_private_targets`.
pub fn merchant_problems(
    m: &crate::MerchantConfig,
    insecure_http: bool,
    private_targets: bool,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let valid_id =
        (1..=64).contains(&m.id.len()) && m.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid_id {
        problems.push(("id", "must be 1–64 letters, digits, `-`, `_` or `.`, and unique".to_string()));
    }
    if m.payout_address.is_zero() {
        problems.push(("payout_address", "must be the merchant's non-zero payout address".to_string()));
    }
    if let Err(e) = check_webhook_url(&m.webhook_url, insecure_http, private_targets) {
        problems.push(("webhook_url", e.to_string()));
    }
    let secret = m.webhook_secret.expose();
    let body = secret.strip_prefix("whsec_").unwrap_or("");
    if body.len() < 24 || !body.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) {
        problems.push((
            "webhook_secret",
            "must be `whsec_` followed by base64 of at least 24 bytes (see `settleproof keys webhook-secret`)"
                .to_string(),
        ));
    }
    if let Some(Err(e)) = m.root_key.as_ref().map(settleproof_merchant_auth::MerchantKey::check) {
        problems.push(("root_key", e.to_string()));
    }
    problems
}

/// What a merchant record made now must have beyond [`merchant_problems`]: a root key, and not
/// the retired token hash. (Records approved before signed requests may lack the one and carry
/// the other; they are still read and applied, and authenticate nothing.)
pub fn new_merchant_problems(m: &crate::MerchantConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if m.root_key.is_none() {
        problems.push((
            "root_key",
            "required: the merchant's public key, { alg = \"EdDSA\", public_key = \"<hex>\" } (the merchant's `settleproof merchant keygen --out merchant.pem` prints it)".to_string(),
        ));
    }
    if m.api_token_sha256.is_some() {
        problems.push((
            "api_token_sha256",
            "bearer tokens are retired: remove it; the merchant signs its requests with the key in root_key"
                .to_string(),
        ));
    }
    problems
}

/// An RPC URL may hold an API key in its path or query: the message shows the host only.
fn redacted(e: &UrlProblem, url: &str) -> String {
    match e {
        UrlProblem::NotHttp(_) => "is not an http:// or https:// URL with a host".to_string(),
        UrlProblem::NotWs(_) => "is not a ws:// or wss:// URL with a host".to_string(),
        other => {
            let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
            other.to_string().replace(url, &host)
        }
    }
}

fn api(cfg: &NodeConfig, v: &mut Problems) {
    let a = &cfg.api;
    let checks: [(&str, bool, &str); 8] = [
        ("api.max_body_bytes", (256..=16 << 20).contains(&a.max_body_bytes), "must be between 256 bytes and 16 MiB"),
        ("api.request_timeout_ms", a.request_timeout_ms >= 100, "must be at least 100 ms"),
        ("api.header_read_timeout_ms", a.header_read_timeout_ms >= 100, "must be at least 100 ms"),
        ("api.idle_timeout_ms", a.idle_timeout_ms >= 1000, "must be at least 1000 ms"),
        ("api.max_connections", a.max_connections >= 8, "must be at least 8"),
        (
            "api.max_connections_per_ip",
            (1..=a.max_connections).contains(&a.max_connections_per_ip),
            "must be between 1 and api.max_connections",
        ),
        ("api.max_concurrent_requests", a.max_concurrent_requests >= 1, "must be at least 1"),
        ("api.status_cache_ms", a.status_cache_ms <= 60_000, "must be at most 60000 ms"),
    ];
    for (field, ok, message) in checks {
        if !ok {
            v.add(field, message);
        }
    }
    if let Some(u) = &a.public_url
        && let Err(e) = check_url(u, cfg.tls.allow_insecure_http)
    {
        v.add("api.public_url", format!("{e}; give the https address payers reach this node's API at"));
    }
    if let Err(e) = a.trusted_proxy_nets() {
        v.add("api.trusted_proxies", e);
    }
    if let Some(admin) = &cfg.admin
        && admin.listen_addr(a.listen) == a.listen
    {
        v.add("admin.listen", "must differ from api.listen: the admin API has its own listener");
    }
}

fn webhooks(cfg: &NodeConfig, v: &mut Problems) {
    let w = &cfg.webhooks;
    let checks: [(&str, bool, &str); 6] = [
        ("webhooks.timeout_ms", w.timeout_ms > 0, "must be more than 0 ms"),
        (
            "webhooks.failover_delay_ms",
            w.failover_delay_ms >= 1000,
            "must be at least 1000 ms: the next operator waits this long for the acknowledgement of a delivery (sent within about 100 ms of the merchant's answer), and a shorter delay makes it deliver again events the merchant already has; a merchant that answers slower than the delay still gets some twice, which webhook-id deduplication absorbs",
        ),
        ("webhooks.connect_timeout_ms", w.connect_timeout_ms > 0, "must be more than 0 ms"),
        ("webhooks.max_response_bytes", w.max_response_bytes >= 256, "must be at least 256 bytes"),
        ("webhooks.max_in_flight", w.max_in_flight >= 1, "must be at least 1"),
        (
            "webhooks.max_in_flight_per_merchant",
            (1..=w.max_in_flight.max(1)).contains(&w.max_in_flight_per_merchant),
            "must be between 1 and webhooks.max_in_flight",
        ),
    ];
    for (field, ok, message) in checks {
        if !ok {
            v.add(field, message);
        }
    }
}

fn is_hex_bytes(s: &str, len: usize) -> bool {
    s.strip_prefix("0x").is_some_and(|h| h.len() == len * 2 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, EXAMPLE, NodeConfig};

    fn problems(text: &str) -> Vec<String> {
        match NodeConfig::from_toml_str(text, std::iter::empty()) {
            Err(ConfigError::Invalid(errs)) => errs.into_iter().map(|e| e.field).collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn example_is_valid() {
        let cfg = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example parses");
        assert_eq!(cfg.network.operators.len(), 1);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("chain_id = 31337", "chain_id = 0", "chains[0].chain_id"),
            ("rpc_endpoints = [\"http://127.0.0.1:8545\"]", "rpc_endpoints = []", "chains[0].rpc_endpoints"),
            (
                "rpc_endpoints = [\"http://127.0.0.1:8545\"]",
                "rpc_endpoints = [\"ftp://x\"]",
                "chains[0].rpc_endpoints[0]",
            ),
            (
                "rpc_endpoints = [\"http://127.0.0.1:8545\"]",
                "rpc_endpoints = [\"http://127.0.0.1:8545\"]\nrpc_ws_endpoints = [\"http://127.0.0.1:8545\"]",
                "chains[0].rpc_ws_endpoints[0]",
            ),
            (
                "rpc_endpoints = [\"http://127.0.0.1:8545\"]",
                "rpc_endpoints = [\"http://127.0.0.1:8545\"]\nrpc_ws_endpoints = [\"ws://rpc.example.com/KEY\"]",
                "chains[0].rpc_ws_endpoints[0]",
            ),
            ("rpc_quorum = 1", "rpc_quorum = 2", "chains[0].rpc_quorum"),
            ("rpc_hedge_ms = 250 ", "rpc_hedge_ms = 2001 ", "chains[0].rpc_hedge_ms"),
            ("threshold = 1", "threshold = 0", "network.threshold"),
            ("name = \"node-0\"\ndata_dir", "name = \"ghost\"\ndata_dir", "node.name"),
            ("length_blocks = 5", "length_blocks = 0", "rounds.length_blocks"),
            (
                "listen = \"127.0.0.1:8080\"",
                "listen = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "api.trusted_proxies",
            ),
            ("public_key = \"7444", "public_key = \"0x7444", "merchants[0].root_key"),
            ("root_key = {", "# root_key = {", "merchants[0].root_key"),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret", "merchants[0].webhook_secret"),
            (
                "root_key = {",
                "api_token_sha256 = \"0xa5d71413118ae3c5ae34908616b6fe76c2e0f2db435da6c7a1ffd7a82a1312b0\"\nroot_key = {",
                "merchants[0].api_token_sha256",
            ),
            ("\"https://shop.example.com/settleproof/webhooks\"", "\"nope\"", "merchants[0].webhook_url"),
            (
                "\"https://shop.example.com/settleproof/webhooks\"",
                "\"http://shop.example.com/\"",
                "merchants[0].webhook_url",
            ),
            ("\"https://shop.example.com/settleproof/webhooks\"", "\"https://10.0.0.8/\"", "merchants[0].webhook_url"),
            (
                "rpc_endpoints = [\"http://127.0.0.1:8545\"]",
                "rpc_endpoints = [\"http://rpc.example.com/KEY\"]",
                "chains[0].rpc_endpoints[0]",
            ),
            ("bls_public_key = \"0xb6", "bls_public_key = \"0x", "network.operators[0].bls_public_key"),
            ("p2p_addr = \"/ip4", "p2p_addr = \"ip4", "network.operators[0].p2p_addr"),
            (
                "payments_contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"",
                "payments_contract = \"0x0000000000000000000000000000000000000000\"",
                "chains[0].payments_contract",
            ),
            ("failover_delay_ms = 30000", "failover_delay_ms = 200", "webhooks.failover_delay_ms"),
        ];
        for (from, to, field) in cases {
            assert!(EXAMPLE.contains(from), "case {field}: example lacks {from}");
            let got = problems(&EXAMPLE.replacen(from, to, 1));
            assert!(got.iter().any(|f| f == field), "case {field}: got {got:?}");
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text =
            EXAMPLE.replace("chain_id = 31337", "chain_id = 0").replace("length_blocks = 5", "length_blocks = 0");
        assert_eq!(problems(&text), vec!["chains[0].chain_id", "rounds.length_blocks"]);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let err =
            NodeConfig::from_toml_str(&EXAMPLE.replace("confirmations = 2", "confirmatons = 2"), std::iter::empty())
                .expect_err("typo");
        assert!(err.to_string().contains("confirmatons"), "{err}");
        let err = NodeConfig::from_toml_str(
            &EXAMPLE.replace("confirmations = 2", "confirmations = \"two\""),
            std::iter::empty(),
        )
        .expect_err("type");
        assert!(err.to_string().contains("confirmations"), "{err}");
    }

    #[test]
    fn env_overrides_are_validated_too() {
        let vars = vec![("SETTLEPROOF__CHAINS__0__CONFIRMATIONS".to_string(), "9".to_string())];
        let cfg = NodeConfig::from_toml_str(EXAMPLE, vars).expect("valid");
        assert_eq!(cfg.chains[0].confirmations, 9);
        let vars = vec![("SETTLEPROOF__NETWORK__THRESHOLD".to_string(), "5".to_string())];
        assert!(matches!(NodeConfig::from_toml_str(EXAMPLE, vars), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cfg = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("valid");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("whsec_") && !dbg.contains("sk_test"), "{dbg}");
    }
}
