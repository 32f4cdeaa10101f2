//! Every metric the node defines, with its help text and its known label sets. At start-up
//! each is registered at zero (counters and gauges for every known label set, histograms
//! empty), so dashboards and ratio alerts work on a node that has not yet done that work (the
//! Prometheus guidance: export a metric from the start, not only after its first event). A test
//! checks that the code defines no metric missing here.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution.
    Histogram,
}

/// Labels of a metric: one name, with its known values (or values known only at start-up).
#[derive(Debug, Clone, Copy)]
pub enum Labels {
    /// No labels.
    None,
    /// One label with these values.
    One(&'static str, &'static [&'static str]),
    /// One label per RPC provider (`rpc-0`, …).
    Provider,
    /// Per provider and outcome.
    ProviderOutcome(&'static [&'static str]),
    /// One label per listener (`api`, `admin`).
    Listener,
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Kind.
    pub kind: Kind,
    /// Whether it is a chain's (a `chain_id` label first, then its own labels) or the node's.
    pub per_chain: bool,
    /// Name.
    pub name: &'static str,
    /// Help text (docs/operations.md has the same table).
    pub help: &'static str,
    /// Its label sets.
    pub labels: Labels,
}

/// A metric of the node as a whole.
const fn m(kind: Kind, name: &'static str, help: &'static str, labels: Labels) -> Metric {
    Metric { kind, per_chain: false, name, help, labels }
}

/// A metric of one chain's pipeline: every sample has a `chain_id` label.
const fn c(kind: Kind, name: &'static str, help: &'static str, labels: Labels) -> Metric {
    Metric { kind, per_chain: true, name, help, labels }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};

const GOSSIP_TOPICS: &[&str] = &[
    "settleproof/attestations/1",
    "settleproof/invoices/1",
    "settleproof/invoices/2",
    "settleproof/heartbeats/1",
    "settleproof/deliveries/1",
    "settleproof/deliveries/2",
    "settleproof/set-approvals/1",
    "settleproof/merchant-approvals/1",
    "settleproof/api-keys/1",
    "settleproof/webhook-endpoints/1",
];
const REJECTIONS: &[&str] = &[
    "malformed",
    "unknown_signer",
    "unknown_epoch",
    "wrong_epoch",
    "wrong_publisher",
    "bad_signature",
    "foreign_heartbeat",
    "bad_invoice",
    "invoice_id_mismatch",
    "equivocation",
];
const INVARIANTS: &[&str] = &[
    "root_settled_twice",
    "settled_root_mismatch",
    "settled_amount_mismatch",
    "bad_merkle_proof",
    "keeper_nonce_desync",
    "double_sign_attempt",
    "round_signed_on_too_many_chains",
];
const RPC_OPS: &[&str] = &["balance", "block", "call", "chain_id", "fees", "head", "logs", "transaction_count"];
const RPC_OUTCOMES: &[&str] = &["ok", "breaker_open", "timeout", "transient_error", "permanent_error", "busy"];

/// The catalogue.
pub const CATALOG: &[Metric] = &[
    c(C, "attestations_rejected_total", "Attestations rejected, by reason", Labels::One("reason", REJECTIONS)),
    c(
        C,
        "attestations_ignored_total",
        "Attestations ignored unread, by reason (outside the round window, an epoch not known here or not the round's)",
        Labels::One("reason", &["outside_window", "unknown_epoch", "wrong_epoch"]),
    ),
    c(
        C,
        "attestation_verifications_total",
        "BLS pairings spent verifying gossiped attestations on arrival (votes of operators caught forging)",
        Labels::None,
    ),
    c(
        C,
        "forged_votes_discarded_total",
        "Operators whose signature failed in a quorum's aggregate: their votes were discarded and they were penalised",
        Labels::None,
    ),
    c(
        C,
        "gossip_rate_limited_total",
        "Gossip messages dropped over their author's budget (consensus or records, by topic), by topic",
        Labels::One("topic", GOSSIP_TOPICS),
    ),
    c(
        C,
        "gossip_stale_total",
        "Gossip messages older than the freshness window, dropped",
        Labels::One("topic", GOSSIP_TOPICS),
    ),
    c(
        C,
        "gossip_unknown_author_total",
        "Gossip messages whose author this node does not hear (a set not read yet, or not an operator), ignored",
        Labels::None,
    ),
    c(
        C,
        "gossip_messages_total",
        "Gossip messages heard from operators (first copies), by topic",
        Labels::One("topic", GOSSIP_TOPICS),
    ),
    c(
        C,
        "invoice_conflicts_total",
        "Invoices refused: id not committing to the terms, another author, or another copy",
        Labels::One(
            "reason",
            &[
                "foreign_creator",
                "other_copy",
                "bad_invoice",
                "not_in_registry",
                "not_taken",
                "invoice_id_mismatch",
                "invoice_not_as_signed",
            ],
        ),
    ),
    c(
        C,
        "invoices_vouched_total",
        "Fetched invoices this node's merchant registry refuses, taken because f + 1 operators hand out the same copy",
        Labels::None,
    ),
    m(
        C,
        "invoices_nonce_taken_total",
        "Invoices not kept because their merchant's signed request (its nonce) made another invoice already",
        Labels::None,
    ),
    c(
        C,
        "invoices_resumed_total",
        "Invoices this node created that no announcement carried when it stopped, announced as it started",
        Labels::None,
    ),
    c(
        G,
        "invoices_unannounced",
        "Invoices this node created that no send carried yet (still marked): announced at its next start",
        Labels::None,
    ),
    c(
        C,
        "invoices_caught_up_total",
        "Invoices other operators created while this node was away from them, taken when they connected",
        Labels::None,
    ),
    c(
        C,
        "invoice_catch_up_limited_total",
        "Pages of this node's invoices refused to an operator that asked more often than the catch-up budget",
        Labels::None,
    ),
    c(
        C,
        "invoices_parked_total",
        "Announced invoices whose merchant this node's registry did not hold yet, by what became of them",
        Labels::One("outcome", &["parked", "pushed_out", "too_large", "taken", "expired"]),
    ),
    c(
        C,
        "chain_undecodable_logs_total",
        "Agreed logs of our contracts that did not decode, by event; skipped",
        Labels::One("event", &["InvoicePaid", "Settled"]),
    ),
    c(
        C,
        "rpc_logs_unresolved_total",
        "Logs neither agreed nor outvoted by a provider quorum; their range is read again",
        Labels::None,
    ),
    c(C, "settlements_dropped_by_reorg_total", "Settlements of this node's keeper that a reorg dropped", Labels::None),
    c(
        C,
        "settlements_seen_ahead_total",
        "Settlements read above the confirmation depth and kept as provisional (receipts served at once)",
        Labels::None,
    ),
    c(
        C,
        "settlements_seen_ahead_dropped_total",
        "Settlements read above the confirmation depth that a reorg then dropped (routine on chains with shallow reorgs)",
        Labels::None,
    ),
    c(C, "keeper_resubmissions_total", "Settlements submitted again after a reorg dropped them", Labels::None),
    c(
        C,
        "webhook_settlements_rendered_total",
        "Settlements whose webhook events this node rendered and queued",
        Labels::None,
    ),
    c(C, "chain_reorgs_total", "Reorgs deeper than the confirmation depth, rewound", Labels::None),
    c(
        C,
        "set_approvals_rejected_total",
        "Gossiped set change approvals refused (not their author's, bad signature), by reason",
        Labels::One("reason", &["malformed", "unknown_signer", "wrong_publisher", "bad_signature", "too_many"]),
    ),
    m(
        C,
        "merchant_approvals_rejected_total",
        "Gossiped merchant registry approvals refused, by reason (rival: a second change to one version from one operator)",
        Labels::One(
            "reason",
            &["malformed", "unknown_signer", "wrong_publisher", "bad_signature", "rival", "too_many"],
        ),
    ),
    m(
        C,
        "merchant_changes_applied_total",
        "Merchant registry changes applied after a threshold of operators approved them",
        Labels::None,
    ),
    c(
        C,
        "settlements_of_another_fork_total",
        "Settled batches built on another fork than the chain this node processed",
        Labels::None,
    ),
    c(
        C,
        "audits_postponed_by_reorg_total",
        "Settled rounds not compared with the chain yet: their last block left it (a reorg below the confirmation depth, before the watcher's rewind)",
        Labels::None,
    ),
    c(C, "batches_signed_total", "Batches this node signed (each round once per chain)", Labels::None),
    c(
        C,
        "rounds_signed_again_total",
        "Signed rounds whose blocks a deep reorg replaced, signed again on the new chain",
        Labels::None,
    ),
    c(C, "consensus_round_retries_total", "Failed settlement submissions that will be retried", Labels::None),
    c(C, "duplicate_events_dropped_total", "Payment logs seen again and dropped", Labels::None),
    c(
        C,
        "invariant_violations_total",
        "Invariant violations, by invariant; each halts settlement",
        Labels::One("invariant", INVARIANTS),
    ),
    c(C, "keeper_failover_total", "Settlements submitted as a failover keeper", Labels::None),
    c(C, "keeper_gas_used_total", "Gas used by this node's settlement transactions", Labels::None),
    c(
        C,
        "keeper_receipt_read_failures_total",
        "Reads of a settlement's receipt that failed at the writer or went unanswered (read again at the next head or poll)",
        Labels::None,
    ),
    c(C, "keeper_nonce_desync_total", "Settlement account nonce found out of sync with the chain", Labels::None),
    c(C, "keeper_selection_rounds_total", "Rounds this node submitted as keeper", Labels::None),
    c(C, "rpc_log_disagreements_total", "Logs returned by fewer providers than the quorum", Labels::None),
    c(C, "rpc_head_notifications_total", "New heads reported by the newHeads subscriptions", Labels::None),
    c(C, "rpc_head_subscription_failures_total", "newHeads subscriptions that failed or ended", Labels::None),
    c(
        C,
        "rpc_head_notifications_late_total",
        "Notified heads whose block was stamped more than a second and a poll interval earlier",
        Labels::None,
    ),
    c(C, "rpc_quorum_failures_total", "Reads without a provider quorum, by operation", Labels::One("op", RPC_OPS)),
    c(C, "rpc_requests_total", "RPC calls per provider and outcome", Labels::ProviderOutcome(RPC_OUTCOMES)),
    m(
        C,
        "webhook_deliveries_total",
        "Webhook delivery attempts, by outcome",
        Labels::One("outcome", &["delivered", "retry", "dead", "endpoint_disabled"]),
    ),
    m(C, "webhook_dlq_total", "Webhook events moved to the dead-letter queue", Labels::None),
    m(
        C,
        "webhook_unknown_invoice_events_total",
        "Settled payments of invoices no operator knows: not sent, rate-limited, or sent to an endpoint that asks",
        Labels::One("outcome", &["not_sent", "rate_limited", "sent"]),
    ),
    m(C, "webhook_answers_truncated_total", "Webhook answers cut at webhooks.max_response_bytes", Labels::None),
    m(
        C,
        "webhook_targets_refused_total",
        "Webhook targets refused: they resolve only to loopback, private or metadata addresses",
        Labels::None,
    ),
    m(C, "api_auth_lockouts_total", "Clients locked out after repeated failed authentications", Labels::None),
    m(
        C,
        "merchant_records_refused_total",
        "Merchant records heard (API keys, webhook endpoints) whose merchant signatures do not verify here, by kind",
        Labels::One("kind", &["api_key", "webhook_endpoint"]),
    ),
    m(
        C,
        "merchant_records_dropped_total",
        "Merchant records heard while their task's inbox was full, or its author's share of it, or that waited too long: ignored, by kind",
        Labels::One("kind", &["approval", "api_key", "webhook_endpoint", "digest"]),
    ),
    m(
        C,
        "merchant_digest_pulls_total",
        "Merchants' snapshots pulled from a peer whose digest kept differing, by whether they changed anything here",
        Labels::One("changed", &["true", "false"]),
    ),
    m(
        C,
        "merchant_requests_refused_total",
        "Merchant-signed requests refused, by reason",
        Labels::One(
            "reason",
            &[
                "missing",
                "plain_token",
                "malformed",
                "missing_kid",
                "bad_nonce",
                "unknown_key",
                "wrong_alg",
                "bad_signature",
                "wrong_subject",
                "lifetime",
                "not_yet_valid",
                "expired",
                "wrong_host",
                "wrong_target",
                "body_hash",
                "replayed",
                "replay_cache_full",
            ],
        ),
    ),
    m(C, "http_connections_refused_total", "Connections closed at once: their client held its share", Labels::Listener),
    m(C, "http_idle_connections_closed_total", "HTTP connections closed for idleness, by listener", Labels::Listener),
    m(
        C,
        "otlp_export_requests_total",
        "Trace export requests to the OTLP collector, by outcome",
        Labels::One("outcome", &["ok", "error"]),
    ),
    c(
        C,
        "operator_set_unusable_total",
        "Operator sets on chain this node cannot use (bad peer id or address)",
        Labels::None,
    ),
    c(
        C,
        "signing_key_missing_total",
        "Rounds not signed: no BLS key here matches the one the epoch registered",
        Labels::None,
    ),
    c(G, "chain_head_lag_blocks", "Quorum head minus the last processed block", Labels::None),
    c(G, "operator_set_epoch", "Latest operator set epoch read from the settlement contract", Labels::None),
    m(G, "peers_connected", "Operators connected", Labels::None),
    c(G, "settlement_halted", "1 while settlement is halted by a violated invariant or an operator", Labels::None),
    c(G, "webhook_backlog", "Webhook events not yet delivered", Labels::None),
    m(G, "webhook_in_flight", "Webhook deliveries under way", Labels::None),
    m(G, "http_open_connections", "Open HTTP connections, by listener", Labels::Listener),
    c(
        H,
        "confirmation_to_attestation_seconds",
        "Payment seen at confirmation depth to this node's attestation",
        Labels::None,
    ),
    c(H, "invoice_verification_latency_seconds", "Payment block timestamp to this node's attestation", Labels::None),
    c(H, "rpc_provider_latency_seconds", "Latency of each RPC call, by provider", Labels::Provider),
    c(H, "settlement_latency_seconds", "Payment block timestamp to its settlement being mined", Labels::None),
    m(H, "store_invoice_group_size", "Invoices the API created written in one durable transaction", Labels::None),
    m(H, "store_attempt_group_size", "Webhook attempts recorded in one transaction", Labels::None),
];

/// Help text of every metric.
pub fn describe() {
    for metric in CATALOG {
        match metric.kind {
            C => describe_counter!(metric.name, metric.help),
            G => describe_gauge!(metric.name, metric.help),
            H => describe_histogram!(metric.name, metric.help),
        }
    }
}

/// Registers every metric at zero, for each known label set; `chains` are the chain ids with
/// the labels of their RPC providers, `listeners` the HTTP listeners.
pub fn register_all(chains: &[(u64, Vec<String>)], listeners: &[&'static str]) {
    for metric in CATALOG {
        let scopes: Vec<Option<(u64, &[String])>> = if metric.per_chain {
            chains.iter().map(|(id, p)| Some((*id, p.as_slice()))).collect()
        } else {
            vec![None]
        };
        for scope in scopes {
            let providers = scope.map_or(&[][..], |(_, p)| p);
            for labels in label_sets(metric.labels, providers, listeners) {
                let chain = scope.map(|(id, _)| metrics::Label::new("chain_id", id.to_string()));
                let labels: Vec<metrics::Label> =
                    chain.into_iter().chain(labels.into_iter().map(|(k, v)| metrics::Label::new(k, v))).collect();
                match metric.kind {
                    C => metrics::counter!(metric.name, labels).increment(0),
                    G => metrics::gauge!(metric.name, labels).increment(0.0),
                    H => drop(metrics::histogram!(metric.name, labels)),
                }
            }
        }
    }
}

fn label_sets(labels: Labels, providers: &[String], listeners: &[&'static str]) -> Vec<Vec<(&'static str, String)>> {
    match labels {
        Labels::None => vec![vec![]],
        Labels::One(name, values) => values.iter().map(|v| vec![(name, v.to_string())]).collect(),
        Labels::Provider => providers.iter().map(|p| vec![("provider", p.clone())]).collect(),
        Labels::ProviderOutcome(outcomes) => providers
            .iter()
            .flat_map(|p| outcomes.iter().map(move |o| vec![("provider", p.clone()), ("outcome", o.to_string())]))
            .collect(),
        Labels::Listener => listeners.iter().map(|l| vec![("listener", l.to_string())]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `counter!`, `gauge!` and `histogram!` in the node's sources names a catalogued
    /// metric of that kind.
    #[test]
    fn the_code_defines_no_metric_missing_from_the_catalog() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("metrics_catalog.rs") {
                    let text = std::fs::read_to_string(&path).expect("read");
                    for (kind, mac) in [(C, "counter!("), (G, "gauge!("), (H, "histogram!(")] {
                        for (i, _) in text.match_indices(mac) {
                            let rest = text[i + mac.len()..].trim_start();
                            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                                // The macro's arguments: up to its closing parenthesis.
                                let args = rest.split(')').next().unwrap_or_default();
                                found.push((
                                    kind,
                                    name.to_string(),
                                    path.display().to_string(),
                                    args.contains("\"chain_id\""),
                                ));
                            }
                        }
                    }
                }
            }
        }
        assert!(found.len() > 30, "the scan found only {} metrics", found.len());
        for (kind, name, file, labelled) in found {
            let metric = CATALOG.iter().find(|m| m.name == name && m.kind == kind);
            let Some(metric) = metric else {
                panic!("{file} defines {kind:?} {name}, which metrics_catalog::CATALOG lacks");
            };
            assert_eq!(
                labelled,
                metric.per_chain,
                "{file}: {name} {} a chain_id label, as a metric of {}",
                if metric.per_chain { "needs" } else { "must not have" },
                if metric.per_chain { "one chain" } else { "the node" }
            );
        }
    }

    /// After start-up registration every catalogued metric renders, before any event.
    #[test]
    fn every_metric_is_exported_at_zero_from_the_start() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            register_all(&[(31337, vec!["rpc-0".to_string()]), (8453, vec!["rpc-0".to_string()])], &["api", "admin"]);
        });
        let text = handle.render();
        for m in CATALOG {
            assert!(text.contains(&format!("\n{}", m.name)) || text.starts_with(m.name), "{} missing:\n{text}", m.name);
        }
        assert!(text.contains("keeper_failover_total{chain_id=\"8453\"} 0"), "{text}");
        assert!(text.contains("webhook_deliveries_total{outcome=\"dead\"} 0"), "{text}");
        assert!(
            text.contains("rpc_requests_total{chain_id=\"31337\",provider=\"rpc-0\",outcome=\"timeout\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn names_are_unique_and_every_label_set_is_known() {
        let mut names: Vec<_> = CATALOG.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        let providers = vec!["rpc-0".to_string(), "rpc-1".to_string()];
        for m in CATALOG {
            assert!(!label_sets(m.labels, &providers, &["api", "admin"]).is_empty(), "{}", m.name);
        }
    }
}
