//! New-head notifications: each WebSocket endpoint of a chain (`rpc_ws_endpoints`) is
//! subscribed to `newHeads` (`eth_subscribe` through alloy's pubsub), and every header it sends
//! wakes the watcher at once instead of at its next poll, and the keeper's wait for its
//! settlement's receipt ([`super::inclusion`]) through a [`HeadSignal`].
//!
//! A notification is a hint, never data: woken, the watcher reads the head and the logs through
//! the provider quorum exactly as on a poll, and a wake that brought no new head turns it deaf
//! to notifications until its next poll (`Watcher::run`); the keeper's receipt wait does the
//! same after a notified read that found nothing. A lying endpoint can therefore cost at most
//! one extra step per poll interval, and, while a settlement is pending, one extra receipt read
//! (a request per transaction sent with its nonce); a silent, slow or failed one changes
//! nothing, since polling every `poll_interval_ms` goes on. What one endpoint can make this
//! node hold is bounded: messages of at most [`MAX_MESSAGE`] bytes, one header waiting. A
//! connection that fails, ends, stalls on connecting or stays silent for [`silence`] is opened
//! again after a pause of its own (alloy's reconnection is turned off: it would reconnect at
//! once, forever, to an endpoint that accepts and drops). Providers that offer only HTTP need
//! no WebSocket endpoint.
//!
//! `wss://` is checked against the WebPKI roots bundled with the WebSocket client, not the
//! system's or `tls.extra_ca_file`: a provider behind a private CA gets no subscription (the
//! failure is logged and counted) and is polled.

use alloy::providers::{Provider, ProviderBuilder};
use alloy::pubsub::{ConnectionHandle, PubSubConnect};
use alloy::rpc::client::ClientBuilder;
use alloy::transports::ws::{WebSocketConfig, WsConnect};
use alloy::transports::{TransportErrorKind, TransportResult};
use futures::StreamExt;
use settleproof_config::netpolicy::mask_urls;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

/// The shortest pause between the start of a watcher step and a step a notification causes.
pub const MIN_STEP_GAP: Duration = Duration::from_millis(50);
/// The largest WebSocket message or frame taken from an endpoint (a header is about 1 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause before a failed subscription is opened again; it doubles up to [`MAX_RETRY`]
/// and starts over once a subscription delivered a header.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest pause between two tries.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// How long a subscription may stay without a header before it is taken for stalled and opened
/// again: twenty poll intervals, at least a minute (blocks may be slow).
pub fn silence(poll: Duration) -> Duration {
    poll.saturating_mul(20).max(Duration::from_secs(60))
}

/// Where a notified head goes: the watcher's wake (one waiting permit: wakes coalesce), and a
/// count that any number of other tasks wait on with [`HeadSignal::subscribe`]. Once every
/// clone is dropped (a chain without WebSocket endpoints drops its own after spawning none),
/// the subscribers' `changed()` fails at once, and they poll instead.
#[derive(Debug, Clone, Default)]
pub struct HeadSignal {
    watcher: Arc<Notify>,
    count: Arc<watch::Sender<u64>>,
}

impl HeadSignal {
    /// The watcher's wake ([`super::watcher::Watcher::woken_by`]).
    pub fn watcher_wake(&self) -> Arc<Notify> {
        self.watcher.clone()
    }

    /// A receiver whose `changed()` resolves at each head notified after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }

    /// One header arrived.
    pub fn announce(&self) {
        self.watcher.notify_one();
        self.count.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Subscribes to new heads at each of `urls` until `shutdown`, announcing each header to
/// `wake`; one task per endpoint, in the current span.
pub fn spawn(
    urls: &[String],
    chain_id: u64,
    poll: Duration,
    wake: HeadSignal,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    urls.iter()
        .map(|url| {
            let follow = follow(url.clone(), chain_id, silence(poll), wake.clone(), shutdown.clone());
            tokio::spawn(follow.in_current_span())
        })
        .collect()
}

/// What ended a subscription.
enum Ended {
    /// The endpoint closed it, after `headers` headers.
    Closed { headers: u64 },
    /// It failed (connecting, subscribing, or silent too long), after `headers` headers.
    Failed { headers: u64, why: String },
}

async fn follow(url: String, chain_id: u64, silence: Duration, wake: HeadSignal, mut shutdown: watch::Receiver<bool>) {
    let shown = mask_urls(&url);
    let failures = metrics::counter!("rpc_head_subscription_failures_total", "chain_id" => chain_id.to_string());
    let notified = metrics::counter!("rpc_head_notifications_total", "chain_id" => chain_id.to_string());
    let mut retry = FIRST_RETRY;
    loop {
        let ended = tokio::select! {
            e = subscribe(&url, silence, &wake, &notified) => e,
            _ = shutdown.changed() => return,
        };
        failures.increment(1);
        let headers = match ended {
            Ended::Closed { headers } => {
                info!(endpoint = %shown, headers, retry_in_ms = retry.as_millis() as u64, "new-head subscription closed by the endpoint; the watcher polls meanwhile");
                headers
            }
            Ended::Failed { headers, why } => {
                warn!(endpoint = %shown, headers, error = %mask_urls(&why), retry_in_ms = retry.as_millis() as u64, "new-head subscription failed; the watcher polls meanwhile");
                headers
            }
        };
        if headers > 0 {
            retry = FIRST_RETRY;
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => return,
        }
        retry = retry.saturating_mul(2).min(MAX_RETRY);
    }
}

/// One subscription, until it ends.
async fn subscribe(url: &str, silence: Duration, wake: &HeadSignal, notified: &metrics::Counter) -> Ended {
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let connect = Once(WsConnect::new(url).with_config(config));
    let failed = |why: String| Ended::Failed { headers: 0, why };
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, ClientBuilder::default().pubsub(connect)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(_) => return failed(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())),
    };
    let provider = ProviderBuilder::new().disable_recommended_fillers().connect_client(client);
    // One header waiting is enough: notifications coalesce into one wake anyway.
    let subscription = match tokio::time::timeout(CONNECT_TIMEOUT, provider.subscribe_blocks().channel_size(1)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(_) => return failed(format!("no subscription within {} s", CONNECT_TIMEOUT.as_secs())),
    };
    let mut heads = subscription.into_stream();
    let mut headers = 0u64;
    loop {
        match tokio::time::timeout(silence, heads.next()).await {
            Ok(Some(header)) => {
                headers += 1;
                notified.increment(1);
                debug!(block = header.number, "new head notified");
                wake.announce();
            }
            Ok(None) => return Ended::Closed { headers },
            Err(_) => return Ended::Failed { headers, why: format!("no new head for {} s", silence.as_secs()) },
        }
    }
}

/// alloy's WebSocket connector without alloy's own reconnection: a connection that ends ends
/// the subscription, and [`follow`] opens it again after its pause.
#[derive(Debug, Clone)]
struct Once(WsConnect);

impl PubSubConnect for Once {
    fn is_local(&self) -> bool {
        self.0.is_local()
    }

    async fn connect(&self) -> TransportResult<ConnectionHandle> {
        self.0.connect().await
    }

    async fn try_reconnect(&self) -> TransportResult<ConnectionHandle> {
        Err(TransportErrorKind::non_retryable_str("new-head subscriptions are opened again on their own schedule"))
    }
}
