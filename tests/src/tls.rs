//! TLS for the tests: a certificate authority made at run time, a server certificate it signs
//! for `localhost` and `127.0.0.1`, and a TLS terminator that puts any loopback service (an RPC
//! proxy, the merchant's receiver) behind `https://`.

use eyre::{Result, WrapErr};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and the server configuration of a certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate, PEM, written to `ca_file`.
    pub ca_file: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Makes a CA and a `localhost` server certificate; writes the CA to `dir/ca.pem`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "settleproof test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf.distinguished_name.push(DnType::CommonName, "localhost");
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).wrap_err("write ca.pem")?;
        Ok(Self { ca_file, server: Arc::new(server) })
    }

    /// Serves TLS on `listen` (port 0: any) and forwards each connection, decrypted, to
    /// `backend`; returns the bound address.
    pub async fn terminate(&self, listen: SocketAddr, backend: SocketAddr) -> Result<SocketAddr> {
        let listener = TcpListener::bind(listen).await?;
        let bound = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(self.server.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(bound)
    }
}
