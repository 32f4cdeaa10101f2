//! Scopes: several pipelines over one swarm. A scoped handle publishes on `<topic>/<scope>` and
//! prefixes its requests with `<scope>\n`; [`demux`] splits the swarm's events by scope, takes
//! the scope off, and hands each pipeline only its own messages and requests. Connection
//! events go to every scope.

use crate::{NetworkEvent, NetworkHandle, Verdict};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Separates a request's scope from its body.
const REQUEST_SEPARATOR: char = '\n';

/// Longest scope accepted on a request (ours are chain ids).
const MAX_SCOPE_LEN: usize = 32;

/// The gossip topic `topic` in `scope`.
pub fn scoped_topic(topic: &str, scope: &str) -> String {
    format!("{topic}/{scope}")
}

pub(crate) fn scoped_request(scope: &str, data: &str) -> String {
    format!("{scope}{REQUEST_SEPARATOR}{data}")
}

fn split_topic(topic: &str) -> Option<(&str, &str)> {
    topic.rsplit_once('/')
}

fn split_request(data: &str) -> Option<(&str, &str)> {
    data.split_once(REQUEST_SEPARATOR).filter(|(scope, _)| scope.len() <= MAX_SCOPE_LEN)
}

/// Splits `events` by scope: one receiver per entry of `scopes`, in that order. A message on a
/// topic of no listed scope is ignored (no penalty: the sender may serve a chain this node does
/// not) and a request of no listed scope is answered with an empty body. The task ends when
/// `events` closes.
pub fn demux(
    net: NetworkHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
    scopes: &[String],
    capacity: usize,
) -> (Vec<mpsc::Receiver<NetworkEvent>>, JoinHandle<()>) {
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for scope in scopes {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        senders.insert(scope.clone(), tx);
        receivers.push(rx);
    }
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Message { topic, source, data, reference } => {
                    let route = split_topic(&topic).and_then(|(base, scope)| Some((base, senders.get(scope)?)));
                    match route {
                        Some((base, tx)) => {
                            let event = NetworkEvent::Message { topic: base.to_string(), source, data, reference };
                            let _ = tx.send(event).await;
                        }
                        None => net.report(reference, Verdict::Ignore).await,
                    }
                }
                NetworkEvent::Request { peer, data, reference } => {
                    let route = split_request(&data).and_then(|(scope, body)| Some((body, senders.get(scope)?)));
                    match route {
                        Some((body, tx)) => {
                            let _ = tx.send(NetworkEvent::Request { peer, data: body.to_string(), reference }).await;
                        }
                        None => net.respond(reference, String::new()).await,
                    }
                }
                other => {
                    for tx in senders.values() {
                        let _ = tx.send(other.clone()).await;
                    }
                }
            }
        }
    });
    (receivers, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_requests_split_back_into_scope_and_body() {
        let t = scoped_topic("settleproof/attestations/1", "8453");
        assert_eq!(split_topic(&t), Some(("settleproof/attestations/1", "8453")));
        let r = scoped_request("8453", "{\"rounds\":[1]}\nsecond line");
        assert_eq!(split_request(&r), Some(("8453", "{\"rounds\":[1]}\nsecond line")));
        assert_eq!(split_request("{\"rounds\":[1]}"), None, "an unscoped request names no scope");
        let long = scoped_request(&"9".repeat(MAX_SCOPE_LEN + 1), "{}");
        assert_eq!(split_request(&long), None, "an overlong scope is no scope");
    }
}
