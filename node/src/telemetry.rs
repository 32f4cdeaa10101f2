//! Logs (tracing, JSON by default) and the Prometheus metrics recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use settleproof_config::LogFormat;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides `level`. The filter can
/// be changed at runtime with [`set_log_level`]. With `otlp` (the collector's base URL and the
/// client to reach it), spans are also exported over OTLP/HTTP ([`crate::otlp`]), filtered on
/// their own (`info`), so the log level does not decide what is traced; call this inside the
/// tokio runtime.
pub fn init_logging(format: LogFormat, level: &str, otlp: Option<(String, reqwest::Client)>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = quieted(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)));
    // Traces have a filter of their own: a quieter log level must not stop them.
    let otlp = otlp.and_then(|(endpoint, client)| match crate::otlp::tracer(&endpoint, client, "settleproof") {
        Ok(tracer) => Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(EnvFilter::new("info"))),
        Err(e) => {
            eprintln!("{e}; traces are not exported");
            None
        }
    });
    let registry = tracing_subscriber::registry().with(otlp);
    match format {
        LogFormat::Json => {
            let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
            let logs = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(filter);
            if registry.with(logs).try_init().is_ok() {
                remember(handle);
            }
        }
        LogFormat::Pretty => {
            let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
            if registry.with(tracing_subscriber::fmt::layer().with_filter(filter)).try_init().is_ok() {
                remember(handle);
            }
        }
    }
}

/// Keeps the handle that changes the log filter at runtime ([`set_log_level`]).
fn remember<S: Send + Sync + 'static>(handle: tracing_subscriber::reload::Handle<EnvFilter, S>) {
    let _ = RELOAD.set(Box::new(move |f| handle.reload(parse(f)?).map_err(|e| e.to_string())));
}

fn parse(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(filter)
        .map(quieted)
        .map_err(|e| format!("`{filter}` is not a log filter ({e}); e.g. `info` or `settleproof_node=debug,info`"))
}

/// Libraries that print secrets at their verbose levels, held at `warn` whatever the filter
/// asks: the WebSocket client logs its upgrade request (the URL, which may hold an API key,
/// and an Authorization header) at `trace`.
const QUIET: [&str; 2] = ["tungstenite=warn", "tokio_tungstenite=warn"];

fn quieted(mut filter: EnvFilter) -> EnvFilter {
    for d in QUIET {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
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
            crate::metrics_catalog::describe();
            handle
        })
        .clone()
}
