//! The HTTP listeners on a runtime of their own, with one worker thread (`api-server`).
//!
//! The rest of the node (watchers, round loops, gossip, delivery) runs on a runtime with one
//! worker (`main.rs`): its tasks wake each other dozens of times a second, and with two workers
//! most of those wake-ups unparked the second one, which found nothing to steal. Serving the API
//! on that same worker would make a burst of requests wait behind a round's work; here it has a
//! thread of its own, which the kernel schedules as it does the writer threads. Handlers reach
//! the rest of the node only through thread-safe handles (the store, channels, the network
//! handle, the chain clients), so which runtime polls them does not matter.
//!
//! A connection a handler opens through a shared client (a provider's, for a health or checkout
//! read) is driven by this runtime and may be reused by the pipelines afterwards: the runtime
//! therefore lives until the node has stopped ([`ApiRuntime`] is dropped after the pipelines).

use super::server::{ServerLimits, serve};
use axum::Router;
use tokio::sync::watch;
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

/// The API's runtime; shut down (without waiting for its worker) when dropped, which may happen
/// inside another runtime.
#[derive(Debug)]
pub struct ApiRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Serves `listeners` on a runtime of their own until `shutdown` turns true: the runtime, and
/// one task per listener that ends when its graceful shutdown is over.
pub fn serve_on_own_runtime(
    listeners: Vec<Listener>,
    limits: ServerLimits,
    shutdown: watch::Receiver<bool>,
) -> Result<(ApiRuntime, Vec<JoinHandle<()>>), std::io::Error> {
    // Wrapped at once: a plain runtime dropped on an error below would panic in the caller's.
    let runtime = ApiRuntime(Some(
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("api-server").enable_all().build()?,
    ));
    let Some(rt) = runtime.0.as_ref() else { return Ok((runtime, Vec::new())) };
    let mut served = Vec::new();
    for l in listeners {
        // A tokio listener is registered with the runtime that bound it: it moves to this one
        // as a plain socket.
        let socket = l.listener.into_std()?;
        let listener = {
            let _inside = rt.enter();
            tokio::net::TcpListener::from_std(socket)?
        };
        served.push(rt.spawn(serve(l.name, listener, l.router, limits, shutdown.clone())));
    }
    Ok((runtime, served))
}
