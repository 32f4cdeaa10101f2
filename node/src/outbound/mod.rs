//! Outgoing HTTP: every client the node builds (RPC providers, the keeper's writers, webhooks,
//! trace export) comes from here, so all speak TLS through rustls with the same trust roots:
//! the system's (the file named by `SSL_CERT_FILE` when it is set, through
//! rustls-platform-verifier and rustls-native-certs) plus `tls.extra_ca_file`.

mod public_dns;

pub use public_dns::{PublicOnly, TargetRefused, check_literal_target};

use settleproof_config::{TlsSection, WebhookSection};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why the node cannot build its HTTP clients.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The extra CA file cannot be read or holds no certificate.
    #[error("tls.extra_ca_file `{path}`: {detail}; point it at a PEM file of CA certificates")]
    Ca {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// reqwest refused the settings.
    #[error("cannot build the {what} HTTP client: {detail}")]
    Build {
        /// Which client.
        what: &'static str,
        /// reqwest's message.
        detail: String,
    },
}

/// Builds the node's HTTP clients.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    extra_roots: Arc<Vec<reqwest::Certificate>>,
}

impl Outbound {
    /// Reads `tls.extra_ca_file`, if set.
    pub fn from_config(tls: &TlsSection) -> Result<Self, OutboundError> {
        let extra_roots = match &tls.extra_ca_file {
            Some(path) => read_roots(path)?,
            None => Vec::new(),
        };
        Ok(Self { extra_roots: Arc::new(extra_roots) })
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    }

    /// The client of the RPC providers; the per-call timeout is the provider set's.
    pub fn rpc(&self) -> Result<reqwest::Client, OutboundError> {
        self.builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| build_error("rpc", &e))
    }

    /// The client of settlement transactions (estimate, send, receipt polls): as [`Self::rpc`],
    /// with `timeout` on every request, so a provider that accepts the connection and never
    /// answers cannot hold the keeper (and its nonce) for good.
    pub fn rpc_writes(&self, timeout: Duration) -> Result<reqwest::Client, OutboundError> {
        self.builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| build_error("rpc", &e))
    }

    /// The client of webhook deliveries: no redirects, connect and total timeouts, and, unless
    /// `webhooks.allow_private_targets`, a resolver that only hands out public addresses (the
    /// connector dials exactly what it returns, so a name that changes its answer between a
    /// check and the connect cannot reach a private address).
    pub fn webhooks(&self, w: &WebhookSection) -> Result<reqwest::Client, OutboundError> {
        let mut b = self
            .builder()
            .connect_timeout(Duration::from_millis(w.connect_timeout_ms))
            .timeout(Duration::from_millis(w.timeout_ms))
            .pool_max_idle_per_host(w.max_in_flight_per_merchant)
            .user_agent(concat!("settleproof/", env!("CARGO_PKG_VERSION")));
        if !w.allow_private_targets {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        b.build().map_err(|e| build_error("webhook", &e))
    }

    /// The client of trace export.
    pub fn telemetry(&self) -> Result<reqwest::Client, OutboundError> {
        self.builder().timeout(Duration::from_secs(5)).build().map_err(|e| build_error("telemetry", &e))
    }
}

fn build_error(what: &'static str, e: &reqwest::Error) -> OutboundError {
    OutboundError::Build { what, detail: crate::redact::scrub(&e.to_string()) }
}

fn read_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, OutboundError> {
    let err = |detail: String| OutboundError::Ca { path: path.to_path_buf(), detail };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("none.pem");
        let tls = TlsSection { extra_ca_file: Some(missing.clone()), allow_insecure_http: false };
        let e = Outbound::from_config(&tls).expect_err("missing file");
        assert!(e.to_string().contains("tls.extra_ca_file") && e.to_string().contains("none.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let tls = TlsSection { extra_ca_file: Some(empty), allow_insecure_http: false };
        let e = Outbound::from_config(&tls).expect_err("empty file");
        assert!(e.to_string().contains("no certificate"), "{e}");
    }

    #[test]
    fn clients_build_with_the_system_roots() {
        let o = Outbound::default();
        assert!(o.rpc().is_ok());
        assert!(o.webhooks(&WebhookSection::default()).is_ok());
        assert!(o.telemetry().is_ok());
    }
}
