//! Request ids and the access log. tower-http sets the id (the caller's `x-request-id`, or a
//! new UUID) and returns it; this module drops a caller's id that is unfit for logs, and
//! shapes the access log: one span per request with its id, method and route, and one line per
//! answer with status and latency.

use axum::extract::{MatchedPath, Request};
use axum::http::Response;
use std::time::Duration;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;

/// Removes an `x-request-id` longer than 64 characters or with anything but letters, digits
/// and `-`, so a new id replaces it.
pub(super) fn drop_unfit(mut req: Request) -> Request {
    let fit = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !fit {
        req.headers_mut().remove("x-request-id");
    }
    req
}

type MakeSpan = fn(&Request) -> tracing::Span;
type OnResponse = fn(&Response<axum::body::Body>, Duration, &tracing::Span);

/// The access log layer (one line per answer: `answered` logs 5xx too, so the layer's own
/// failure line is off).
pub(super) fn access_log() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, MakeSpan, (), OnResponse, (), (), ()>
{
    TraceLayer::new_for_http()
        .make_span_with(span as MakeSpan)
        .on_request(())
        .on_response(answered as OnResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn span(req: &Request) -> tracing::Span {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    // The route template, not the path: paths hold invoice ids and would flood the labels.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route)
}

fn answered(resp: &Response<axum::body::Body>, latency: Duration, _span: &tracing::Span) {
    let status = resp.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(status, latency_ms, "request answered");
    } else {
        tracing::info!(status, latency_ms, "request answered");
    }
}
