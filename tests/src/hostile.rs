//! Hostile merchant endpoints on raw sockets, for the webhook tests and the tarpit benchmark: a
//! tarpit that accepts and never answers, an endpoint that streams an endless body, one that
//! redirects elsewhere, one that answers 503 with an absurd `Retry-After`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    }
}
