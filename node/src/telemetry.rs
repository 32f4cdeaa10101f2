//! Logs (tracing, JSON by default) and the Prometheus metrics recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use settleproof_config::LogFormat;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides `level`. The filter can
/// be changed at runtime with [`set_log_level`]. With `otlp_endpoint`, spans are also exported
/// over OTLP/HTTP ([`crate::otlp`]); call this inside the tokio runtime.
pub fn init_logging(format: LogFormat, level: &str, otlp_endpoint: Option<&str>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let otlp = otlp_endpoint.map(|e| crate::otlp::layer(e, "settleproof"));
    let registry = tracing_subscriber::registry().with(filter).with(otlp);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    if installed.is_ok() {
        let _ = RELOAD.set(Box::new(move |f| handle.reload(parse(f)?).map_err(|e| e.to_string())));
    }
}

fn parse(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(filter)
        .map_err(|e| format!("`{filter}` is not a log filter ({e}); e.g. `info` or `settleproof_node=debug,info`"))
}

/// Changes the log filter of a running node.
pub fn set_log_level(filter: &str) -> Result<(), String> {
    let reload = RELOAD.get().ok_or("logging was not set up by this process (in-process test node)")?;
    reload(filter)
}

/// The process-wide Prometheus recorder, installed (with every metric's help text) on first use.
pub fn metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            describe();
            handle
        })
        .clone()
}

/// Help text of every metric (docs/operations.md has the same table).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("attestations_rejected_total", "Attestations rejected, by reason");
    describe_counter!(
        "attestations_ignored_total",
        "Attestations ignored unread, by reason (outside the round window)"
    );
    describe_counter!("attestation_verifications_total", "BLS pairings spent verifying gossiped attestations");
    describe_counter!("gossip_rate_limited_total", "Gossip messages dropped over their author's budget, by topic");
    describe_counter!(
        "invoice_conflicts_total",
        "Invoices refused: id not committing to the terms, another author, or another copy"
    );
    describe_counter!(
        "chain_undecodable_logs_total",
        "Agreed logs of our contracts that did not decode, by event; skipped"
    );
    describe_counter!(
        "rpc_logs_unresolved_total",
        "Logs neither agreed nor outvoted by a provider quorum; their range is read again"
    );
    describe_counter!("settlements_dropped_by_reorg_total", "Settlements of this node's keeper that a reorg dropped");
    describe_counter!("keeper_resubmissions_total", "Settlements submitted again after a reorg dropped them");
    describe_counter!("chain_reorgs_total", "Reorgs deeper than the confirmation depth, rewound");
    describe_counter!("consensus_round_retries_total", "Failed settlement submissions that will be retried");
    describe_counter!("duplicate_events_dropped_total", "Payment logs seen again and dropped");
    describe_counter!("invariant_violations_total", "Invariant violations, by invariant; each halts settlement");
    describe_counter!("keeper_failover_total", "Settlements submitted as a failover keeper");
    describe_counter!("keeper_gas_used_total", "Gas used by this node's settlement transactions");
    describe_counter!("keeper_nonce_desync_total", "Settlement account nonce found out of sync with the chain");
    describe_counter!("keeper_selection_rounds_total", "Rounds this node submitted as keeper");
    describe_counter!("rpc_log_disagreements_total", "Logs returned by fewer providers than the quorum");
    describe_counter!("rpc_quorum_failures_total", "Reads without a provider quorum, by operation");
    describe_counter!("rpc_requests_total", "RPC calls per provider and outcome");
    describe_counter!("webhook_deliveries_total", "Webhook delivery attempts, by outcome");
    describe_counter!("webhook_dlq_total", "Webhook events moved to the dead-letter queue");
    describe_gauge!("chain_head_lag_blocks", "Quorum head minus the last processed block");
    describe_gauge!("peers_connected", "Operators connected");
    describe_gauge!("settlement_halted", "1 while settlement is halted by a violated invariant or an operator");
    describe_gauge!("webhook_backlog", "Webhook events not yet delivered");
    describe_histogram!(
        "confirmation_to_attestation_seconds",
        "Payment seen at confirmation depth to this node's attestation"
    );
    describe_histogram!("invoice_verification_latency_seconds", "Payment block timestamp to this node's attestation");
    describe_histogram!("rpc_provider_latency_seconds", "Latency of each RPC call, by provider");
    describe_histogram!("settlement_latency_seconds", "Payment block timestamp to its settlement being mined");
    describe_counter!("otlp_spans_exported_total", "Spans exported over OTLP");
    describe_counter!("otlp_spans_dropped_total", "Spans dropped because the collector was slow or down");
}
