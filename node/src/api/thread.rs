//! The HTTP listeners on a thread of their own, with a single-threaded runtime.
//!
//! The rest of the node (watchers, round loops, gossip, delivery) runs on one runtime thread
//! (`main.rs`): its tasks wake each other dozens of times a second, and on a multi-threaded
//! runtime most of those wake-ups unparked a second worker that found nothing to steal. Serving
//! the API beside that work on the same thread would make a burst of requests wait behind a
//! round's rendering; here it has its own thread, which the kernel schedules as it does the
//! writer threads. Handlers reach the rest of the node only through thread-safe handles (the
//! store, channels, the network handle), so which runtime polls them does not matter.

use super::server::{ServerLimits, serve};
use axum::Router;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// One listener to serve: its name (for metrics and logs), its socket and its routes.
#[derive(Debug)]
pub struct Listener {
    /// Labels metrics and logs.
    pub name: &'static str,
    /// The bound socket.
    pub listener: tokio::net::TcpListener,
    /// What it serves.
    pub router: Router,
}

/// Serves `listeners` on a new thread until `shutdown` turns true. The returned task ends when
/// every listener has finished its graceful shutdown (or the thread could not start, which is
/// logged).
pub fn serve_on_own_thread(
    listeners: Vec<Listener>,
    limits: ServerLimits,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, std::io::Error> {
    // A tokio listener is registered with the runtime that bound it: it moves to the new
    // runtime as a plain socket.
    let sockets = listeners
        .into_iter()
        .map(|l| Ok((l.name, l.listener.into_std()?, l.router)))
        .collect::<Result<Vec<_>, std::io::Error>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new().name("api-server".into()).spawn(move || {
        runtime.block_on(async move {
            let mut served = Vec::new();
            for (name, socket, router) in sockets {
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => served.push(tokio::spawn(serve(name, listener, router, limits, shutdown.clone()))),
                    Err(e) => tracing::error!(listener = name, error = %e, "cannot serve the listener"),
                }
            }
            for s in served {
                let _ = s.await;
            }
        });
        let _ = done_tx.send(());
    })?;
    Ok(tokio::spawn(async move {
        let _ = done_rx.await;
    }))
}
