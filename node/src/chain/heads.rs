//! New-head notifications: each WebSocket endpoint of a chain (`rpc_ws_endpoints`) is
//! subscribed to `newHeads` (`eth_subscribe` through alloy's pubsub), and every header it sends
//! wakes the watcher at once instead of at its next poll.
//!
//! A notification is a hint, never data: woken, the watcher reads the head and the logs through
//! the provider quorum exactly as on a poll. A lying endpoint can therefore only wake it early,
//! and no more often than once per [`MIN_STEP_GAP`] (the watcher's own bound); a silent, slow
//! or failed one changes nothing, since polling every `poll_interval_ms` goes on. A connection
//! that fails or ends is opened again after a growing pause. Providers that offer only HTTP
//! need no WebSocket endpoint.

use settleproof_config::netpolicy::mask_urls;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// The shortest pause between two watcher steps that notifications cause.
pub const MIN_STEP_GAP: Duration = Duration::from_millis(50);
/// The first pause before a failed subscription is opened again; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest pause between two tries.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Subscribes to new heads at each of `urls` until `shutdown`, notifying `wake` for each
/// header; one task per endpoint.
pub fn spawn(
    urls: &[String],
    chain_id: u64,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    urls.iter().map(|url| tokio::spawn(follow(url.clone(), chain_id, wake.clone(), shutdown.clone()))).collect()
}

async fn follow(url: String, chain_id: u64, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let shown = mask_urls(&url);
    let mut retry = FIRST_RETRY;
    loop {
        let outcome = tokio::select! {
            r = subscribe(&url, chain_id, &wake) => r,
            _ = shutdown.changed() => return,
        };
        match outcome {
            Ok(()) => info!(endpoint = %shown, "new-head subscription ended; subscribing again"),
            Err(e) => {
                warn!(endpoint = %shown, error = %mask_urls(&e), retry_in_ms = retry.as_millis() as u64, "new-head subscription failed; the watcher polls meanwhile");
                metrics::counter!("rpc_head_subscription_failures_total", "chain_id" => chain_id.to_string())
                    .increment(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => return,
        }
        retry = retry.saturating_mul(2).min(MAX_RETRY);
    }
}

/// One subscription, until its stream ends; an error names why it could not go on.
async fn subscribe(url: &str, chain_id: u64, wake: &Notify) -> Result<(), String> {
    use alloy::providers::{Provider, ProviderBuilder, WsConnect};
    use futures::StreamExt;
    let provider = ProviderBuilder::new().connect_ws(WsConnect::new(url)).await.map_err(|e| e.to_string())?;
    let mut heads = provider.subscribe_blocks().await.map_err(|e| e.to_string())?.into_stream();
    debug!(endpoint = %mask_urls(url), "subscribed to new heads");
    while let Some(header) = heads.next().await {
        metrics::counter!("rpc_head_notifications_total", "chain_id" => chain_id.to_string()).increment(1);
        debug!(block = header.number, "new head notified");
        wake.notify_one();
    }
    Ok(())
}
