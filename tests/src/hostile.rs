//! Hostile merchant endpoints on raw sockets, for the webhook tests and the tarpit benchmark: a
//! tarpit that accepts and never answers, an endpoint that streams an endless body, one that
//! redirects elsewhere, one that answers 503 with an absurd `Retry-After`, one that answers just
//! before the timeout.

use eyre::Result;
use settleproof_config::{MerchantConfig, Secret, WebhookSection};
use settleproof_consensus::RoundSchedule;
use settleproof_node::outbound::Outbound;
use settleproof_node::store::{OutboxEvent, Store};
use settleproof_node::webhook::delivery::Deliverer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// What a hostile endpoint saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Body bytes the endpoint managed to write.
    pub bytes_written: AtomicU64,
}

/// How the endpoint behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Reads forever, answers nothing.
    Tarpit,
    /// 200 with a chunked body that never ends.
    EndlessBody,
    /// 302 to `location`.
    Redirect(String),
    /// A fixed raw answer (status line, headers and body).
    Raw(String),
    /// 204 after this long (each answer counted in `bytes_written`).
    Slow(std::time::Duration),
}

/// Serves `behaviour` on a loopback port; returns its address and what it saw.
pub async fn spawn(behaviour: Behaviour) -> std::io::Result<(SocketAddr, Arc<Seen>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(handle(stream, behaviour.clone(), s.clone()));
        }
    });
    Ok((addr, seen))
}

async fn read_head(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

async fn handle(mut stream: TcpStream, behaviour: Behaviour, seen: Arc<Seen>) {
    match behaviour {
        Behaviour::Tarpit => {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        }
        Behaviour::EndlessBody => {
            read_head(&mut stream).await;
            if stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
            // Bounded: 1 GiB at most, whatever the client does.
            for _ in 0..16 * 1024 {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                seen.bytes_written.fetch_add(64 * 1024, Ordering::Relaxed);
            }
        }
        Behaviour::Redirect(location) => {
            read_head(&mut stream).await;
            let answer = format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
        Behaviour::Raw(answer) => {
            read_head(&mut stream).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        }
        Behaviour::Slow(after) => {
            read_head(&mut stream).await;
            tokio::time::sleep(after).await;
            if stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await.is_ok() {
                seen.bytes_written.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The webhook secret of the merchants made here.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A merchant whose endpoint is `url`.
pub fn merchant(id: &str, url: String) -> MerchantConfig {
    MerchantConfig {
        id: id.into(),
        payout_address: alloy::primitives::Address::repeat_byte(0x11),
        webhook_url: url,
        webhook_secret: Secret::new(SECRET),
        root_key: None,
        api_token_sha256: None,
    }
}

/// Event `n` of `merchant`, of an invoice of its own.
pub fn event(merchant: &str, n: u64) -> OutboxEvent {
    OutboxEvent {
        id: format!("msg_{merchant}_{n}"),
        merchant_id: merchant.into(),
        event_type: "test.event".into(),
        body: format!("{{\"type\":\"test.event\",\"n\":{n}}}"),
        invoice_id: Some(alloy::primitives::keccak256(format!("{merchant}/{n}"))),
        sequence: 1,
        ..OutboxEvent::default()
    }
}

/// A running deliverer.
#[derive(Debug)]
pub struct Run {
    /// Its store.
    pub store: Store,
    _dir: tempfile::TempDir,
    /// Stops it.
    pub stop: watch::Sender<bool>,
}

/// Starts a deliverer for `merchants` with `settings` and the events queued.
pub fn start(merchants: Vec<MerchantConfig>, settings: WebhookSection, events: &[OutboxEvent]) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("settleproof.redb"))?;
    store.enqueue_events(events, 0)?;
    let registry = settleproof_node::merchants::Registry::fixed(merchants);
    run(dir, store, registry, settings)
}

/// Starts a deliverer for `merchant` (its root key `key`) with endpoints of its own at `urls`,
/// each taking every event and created with a request the merchant signed; events queued
/// later fan out to them.
pub fn start_with_endpoints(
    merchant: MerchantConfig,
    key: &settleproof_merchant_auth::MerchantSigner,
    urls: &[String],
    settings: WebhookSection,
) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("settleproof.redb"))?;
    let home = settleproof_node::merchants::Home {
        store: store.clone(),
        epochs: settleproof_node::epochs::Epochs::new(settleproof_p2p::PeerId::random(), 31337, None),
        chain_id: 31337,
        settlement: alloy::primitives::Address::ZERO,
        url_policy: (true, true),
        secret_overlap_ms: 0,
        audience_optional_before_s: None,
    };
    let id = merchant.id.clone();
    let registry = settleproof_node::merchants::Registry::open(home, &[merchant])?;
    let key = settleproof_merchant_auth::MerchantSigner::from_pem(key.merchant_id(), key.private_key_pem())
        .map_err(|e| eyre::eyre!("{e}"))?
        .with_audience(registry.audience());
    for url in urls {
        let body = serde_json::json!({"url": url, "enabled_events": ["*"], "secret": SECRET}).to_string();
        let now = settleproof_node::time::now_s();
        let jwt = key
            .sign_request("POST", "http://127.0.0.1:8080/v1/webhook-endpoints", body.as_bytes(), now, 60)
            .map_err(|e| eyre::eyre!("{e}"))?;
        registry.create_endpoint(&id, settleproof_merchant_auth::SignedStatement { jwt, body })?;
    }
    store.route_endpoints(registry.routes());
    run(dir, store, registry, settings)
}

fn run(
    dir: tempfile::TempDir,
    store: Store,
    registry: settleproof_node::merchants::Registry,
    settings: WebhookSection,
) -> Result<Run> {
    let client = Outbound::default().webhooks(&settings)?;
    let schedule = RoundSchedule::new(0, 1).ok_or_else(|| eyre::eyre!("schedule"))?;
    let d = Deliverer::new(
        client,
        store.clone(),
        registry,
        settings,
        Arc::new(Notify::new()),
        "node-0".into(),
        None,
        schedule,
        31337,
    );
    let (stop, rx) = watch::channel(false);
    tokio::spawn(d.run(rx));
    Ok(Run { store, _dir: dir, stop })
}
