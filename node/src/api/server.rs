//! The HTTP server loop: hyper's HTTP/1 with a header-read timeout (slow clients cannot hold a
//! connection by dribbling headers), an idle timeout, a cap on open connections and graceful
//! shutdown. Each request carries its peer address (`ConnectInfo`) for the auth throttle.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time to receive a request's headers.
    pub header_read_timeout: Duration,
    /// A connection without traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections of one client address (IPv6: its /64) at most.
    pub max_connections_per_ip: usize,
    /// After shutdown, time for requests under way.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    /// The limits of `[api]`.
    pub fn from_config(api: &settleproof_config::ApiSection, shutdown_grace_ms: u64) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(api.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(api.idle_timeout_ms),
            max_connections: api.max_connections,
            max_connections_per_ip: api.max_connections_per_ip,
            shutdown_grace: Duration::from_millis(shutdown_grace_ms),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` turns true; `name` labels metrics and logs.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_client: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(client) = PerClient::take(&per_client, peer.ip(), limits.max_connections_per_ip) else {
            metrics::counter!("http_connections_refused_total", "listener" => name).increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (io, last_activity) = IdleIo::new(stream);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        let idle = limits.idle_timeout;
        metrics::gauge!("http_open_connections", "listener" => name).increment(1.0);
        tokio::spawn(async move {
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                },
                _ = idle_watch(last_activity, idle) => {
                    metrics::counter!("http_idle_connections_closed_total", "listener" => name).increment(1);
                }
            }
            metrics::gauge!("http_open_connections", "listener" => name).decrement(1.0);
            drop(client);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, "requests still under way at the end of the shutdown grace");
    }
}

/// One client address's share of the open connections, given back on drop.
struct PerClient {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl PerClient {
    fn take(counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let key = super::throttle::client_key(ip);
        let mut c = counts.lock().ok()?;
        let n = c.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self { counts: counts.clone(), key })
    }
}

impl Drop for PerClient {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock()
            && let Some(n) = c.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.key);
            }
        }
    }
}

/// Resolves once `last` (ms since `EPOCH`) is older than `idle`.
async fn idle_watch(last: Arc<AtomicU64>, idle: Duration) {
    loop {
        let since = epoch_ms().saturating_sub(last.load(Ordering::Relaxed));
        let idle_ms = idle.as_millis() as u64;
        if since >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
    }
}

fn epoch_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A TCP stream that notes the time of its last read or write.
struct IdleIo {
    inner: TcpStream,
    last: Arc<AtomicU64>,
}

impl IdleIo {
    fn new(inner: TcpStream) -> (Self, Arc<AtomicU64>) {
        let last = Arc::new(AtomicU64::new(epoch_ms()));
        (Self { inner, last: last.clone() }, last)
    }

    fn touch(&self) {
        self.last.store(epoch_ms(), Ordering::Relaxed);
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: ServerLimits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve("test", listener, router, limits, rx));
        (addr, tx)
    }

    fn limits() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(800),
            max_connections: 4,
            max_connections_per_ip: 4,
            shutdown_grace: Duration::from_secs(1),
        }
    }

    /// Reads until the server closes; `true` if it closed within `within`.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    #[tokio::test]
    async fn a_client_dribbling_headers_is_cut() {
        let (addr, _tx) = start(limits()).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        assert!(closed_within(&mut s, Duration::from_secs(3)).await, "slow headers were not cut");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_and_a_quick_one_served() {
        let (addr, _tx) = start(ServerLimits { header_read_timeout: Duration::from_secs(30), ..limits() }).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.expect("read");
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        assert!(closed_within(&mut s, Duration::from_secs(3)).await, "idle connection stayed open");
    }

    #[tokio::test]
    async fn one_client_cannot_take_every_connection() {
        let (addr, _tx) = start(ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections_per_ip: 2,
            ..limits()
        })
        .await;
        let held = [TcpStream::connect(addr).await.expect("connect"), TcpStream::connect(addr).await.expect("connect")];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut third, Duration::from_secs(2)).await, "a third connection of one client was kept");
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.expect("connect");
        again.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 64];
        let n =
            tokio::time::timeout(Duration::from_secs(3), again.read(&mut buf)).await.expect("served").expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_closes() {
        let (addr, _tx) = start(ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..limits()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.expect("connect (kernel backlog)");
        extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(300), extra.read(&mut buf)).await;
        assert!(early.is_err(), "a fifth connection was served while four were open");
        drop(held);
        let n =
            tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await.expect("served").expect("read");
        assert!(n > 0);
    }
}
