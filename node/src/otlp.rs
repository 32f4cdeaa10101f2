//! Optional trace export over OTLP/HTTP with JSON encoding (`[telemetry] otlp_endpoint`): a
//! tracing layer records each span's timing and fields, and a background task posts them in
//! batches to `<endpoint>/v1/traces`. Export is best effort: when the collector is slow or
//! down, spans are dropped (counted), never the node's work.

use rand::RngCore;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, field::Field, field::Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans kept waiting for export at most.
const QUEUE: usize = 4096;

/// A finished span.
#[derive(Debug, Clone)]
struct SpanRecord {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &'static str,
    start_ns: u128,
    end_ns: u128,
    attributes: Vec<(String, String)>,
}

struct Timing {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_ns: u128,
    attributes: Vec<(String, String)>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

/// The tracing layer that feeds the exporter.
#[derive(Debug)]
pub struct OtlpLayer {
    tx: mpsc::Sender<SpanRecord>,
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for OtlpLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| p.extensions().get::<Timing>().map(|t| (t.trace_id, t.span_id)));
        let mut attributes = Vec::new();
        attrs.record(&mut Fields(&mut attributes));
        let timing = Timing {
            trace_id: parent.map_or_else(random, |p| p.0),
            span_id: random(),
            parent: parent.map(|p| p.1),
            start_ns: now_ns(),
            attributes,
        };
        span.extensions_mut().insert(timing);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(t) = span.extensions_mut().get_mut::<Timing>()
        {
            values.record(&mut Fields(&mut t.attributes));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(t) = span.extensions_mut().remove::<Timing>() else { return };
        let record = SpanRecord {
            trace_id: t.trace_id,
            span_id: t.span_id,
            parent: t.parent,
            name: span.name(),
            start_ns: t.start_ns,
            end_ns: now_ns(),
            attributes: t.attributes,
        };
        if self.tx.try_send(record).is_err() {
            metrics::counter!("otlp_spans_dropped_total").increment(1);
        }
    }
}

/// The layer and its exporter task (spawned on the current tokio runtime).
pub fn layer(endpoint: &str, service: &str) -> OtlpLayer {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(export(format!("{}/v1/traces", endpoint.trim_end_matches('/')), service.to_string(), rx));
    OtlpLayer { tx }
}

async fn export(url: String, service: String, mut rx: mpsc::Receiver<SpanRecord>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(deadline);
        while batch.len() < 256 {
            tokio::select! {
                Some(s) = rx.recv() => batch.push(s),
                _ = &mut deadline => break,
            }
        }
        let n = batch.len() as u64;
        match client.post(&url).json(&payload(&service, &batch)).send().await {
            Ok(r) if r.status().is_success() => metrics::counter!("otlp_spans_exported_total").increment(n),
            _ => metrics::counter!("otlp_spans_dropped_total").increment(n),
        }
    }
}

/// The OTLP/HTTP JSON body of a batch.
fn payload(service: &str, spans: &[SpanRecord]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "parentSpanId": s.parent.map(hex::encode).unwrap_or_default(),
                "name": s.name,
                "kind": 1,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] },
            "scopeSpans": [{ "scope": { "name": "settleproof" }, "spans": spans }],
        }]
    })
}
