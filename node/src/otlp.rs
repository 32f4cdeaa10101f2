//! Trace export through the OpenTelemetry SDK: `tracing` spans become OpenTelemetry spans
//! (tracing-opentelemetry) and go in batches over OTLP/HTTP (JSON) to
//! `<telemetry.otlp_endpoint>/v1/traces`, through the node's own HTTP client (rustls, the
//! configured trust roots). The SDK's batch processor runs on a thread of its own; its HTTP
//! calls are handed to the tokio runtime. Export is best effort
//! (`otlp_export_requests_total{outcome}`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use std::sync::OnceLock;
use std::time::Duration;

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("trace export to telemetry.otlp_endpoint: {0}")]
pub struct OtlpError(String);

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The tracer exporting to `endpoint` (its base URL) over `client`; call inside the tokio
/// runtime. The provider is kept for [`shutdown`].
pub fn tracer(endpoint: &str, client: reqwest::Client, service: &str) -> Result<Tracer, OtlpError> {
    let http = RuntimeClient { client, runtime: tokio::runtime::Handle::current() };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(5))
        .with_http_client(http)
        .build()
        .map_err(|e| OtlpError(crate::redact::scrub(&e.to_string())))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("settleproof");
    let _ = PROVIDER.set(provider);
    Ok(tracer)
}

/// Whether spans are exported (a tracer was set up).
pub fn exporting() -> bool {
    PROVIDER.get().is_some()
}

/// Flushes and stops export (at the end of a node's shutdown).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown_with_timeout(Duration::from_secs(3));
    }
}

/// An HTTP client for the SDK's export thread: each request runs on the tokio runtime, with
/// the node's reqwest client.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let call = async move {
            let resp =
                client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            // A collector's answer is small; anything past 64 KiB is left unread.
            let mut resp = resp;
            let mut body = Vec::new();
            while body.len() < 64 * 1024 {
                match resp.chunk().await? {
                    Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(64 * 1024 - body.len())]),
                    None => break,
                }
            }
            let mut out = Response::new(Bytes::from(body));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        };
        let result = self.runtime.spawn(call).await;
        let outcome = match &result {
            Ok(Ok(r)) if r.status().is_success() => "ok",
            _ => "error",
        };
        metrics::counter!("otlp_export_requests_total", "outcome" => outcome).increment(1);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Box::new(std::io::Error::other(crate::redact::scrub(&e.to_string())))),
            Err(e) => Err(Box::new(e)),
        }
    }
}
