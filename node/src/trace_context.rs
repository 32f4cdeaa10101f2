//! One trace per payment, across stages, tasks and nodes: the trace id is derived from the
//! payment's `webhook-id` (itself derived from chain data), so every node's span of every stage
//! of one payment (`watch_range`, `sign_round`, `aggregate`, `settle`, `deliver`) lands in the
//! same trace, and the webhook carries it on to the merchant in `traceparent`.

use alloy::primitives::keccak256;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use settleproof_consensus::PaymentLeaf;
use tracing_opentelemetry::OpenTelemetrySpanExt;

fn root(webhook_id: &str) -> SpanContext {
    let h = keccak256([b"settleproof/trace/1:".as_slice(), webhook_id.as_bytes()].concat());
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&h[..16]);
    let mut span = [0u8; 8];
    span.copy_from_slice(&h[16..24]);
    SpanContext::new(
        TraceId::from_bytes(trace),
        SpanId::from_bytes(span),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

/// The trace id of the payment (or other event) whose `webhook-id` is `webhook_id`, hex.
pub fn trace_id(webhook_id: &str) -> String {
    root(webhook_id).trace_id().to_string()
}

/// A span named `stage` in the trace of `webhook_id`.
pub fn span(stage: &'static str, webhook_id: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "stage",
        otel.name = stage,
        webhook_id = %webhook_id,
        attempt = tracing::field::Empty,
        status = tracing::field::Empty
    );
    // The parent matters to exported spans only (`traceparent` derives the header itself).
    if crate::otlp::exporting() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(root(webhook_id)));
    }
    span
}

/// Marks that `leaf` went through `stage` (in `round`): a short span in the payment's trace.
/// Without export the span only frames a debug log line: then nothing is made (no hash, no
/// span) unless debug logs are on.
pub fn mark(stage: &'static str, leaf: &PaymentLeaf, round: Option<u64>) {
    if !crate::otlp::exporting() && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let id = crate::webhook::payload::webhook_id(leaf.invoice_id, leaf.tx_hash, leaf.log_index);
    let span = span(stage, &id);
    span.in_scope(|| {
        tracing::debug!(invoice_id = %leaf.invoice_id, tx_hash = %leaf.tx_hash, block = leaf.block_number, round, stage, "payment stage");
    });
}

/// The W3C `traceparent` of `span`, or of the event's own trace when spans are not exported.
pub fn traceparent(span: &tracing::Span, webhook_id: &str) -> String {
    let cx = span.context();
    let own = cx.span().span_context().clone();
    let sc = if own.is_valid() { own } else { root(webhook_id) };
    format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
}

#[cfg(test)]
mod tests {
    /// Spans made while `f` runs under a subscriber logging at `level`, spans not exported.
    fn spans_made(level: tracing::Level, f: impl FnOnce()) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing_subscriber::layer::SubscriberExt;
        struct Count(std::sync::Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
            fn on_new_span(
                &self,
                _: &tracing::span::Attributes<'_>,
                _: &tracing::span::Id,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = std::sync::Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(Count(n.clone()))
            .with(tracing_subscriber::filter::LevelFilter::from_level(level));
        tracing::subscriber::with_default(subscriber, f);
        n.load(Ordering::SeqCst)
    }

    #[test]
    fn a_stage_mark_costs_no_span_unless_exported_or_logged() {
        use alloy::primitives::{Address, B256, U256};
        let leaf = settleproof_consensus::PaymentLeaf {
            chain_id: 31337,
            tx_hash: B256::repeat_byte(1),
            log_index: 0,
            block_number: 1,
            invoice_id: B256::repeat_byte(2),
            merchant: Address::repeat_byte(3),
            payer: Address::repeat_byte(4),
            token: Address::ZERO,
            amount: U256::from(10),
        };
        assert_eq!(spans_made(tracing::Level::INFO, || super::mark("sign_round", &leaf, Some(1))), 0);
        assert_eq!(spans_made(tracing::Level::DEBUG, || super::mark("sign_round", &leaf, Some(1))), 1);
    }

    #[test]
    fn the_trace_of_a_payment_is_the_same_everywhere() {
        let a = super::trace_id("msg_0123");
        assert_eq!(a, super::trace_id("msg_0123"));
        assert_ne!(a, super::trace_id("msg_0124"));
        assert_eq!(a.len(), 32);
        let tp = super::traceparent(&tracing::Span::none(), "msg_0123");
        assert!(tp.starts_with(&format!("00-{a}-")) && tp.ends_with("-01") && tp.len() == 55, "{tp}");
    }
}
