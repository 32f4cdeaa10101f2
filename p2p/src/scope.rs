//! Scopes: several pipelines over one swarm. A scoped handle publishes on `<topic>/<scope>` and
//! prefixes its requests with `<scope>\n`; [`demux`] splits the swarm's events by scope, takes
//! the scope off, and hands each pipeline only its own messages and requests. One pipeline may
//! also own the plain topics and untagged requests (a node's first chain does, publishing on
//! both, so nodes of the version before scopes still hear it and are heard). Connection events
//! go to every pipeline.

use crate::{NetworkEvent, NetworkHandle, Verdict};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
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

fn split_request(data: &str) -> Option<(&str, &str)> {
    data.split_once(REQUEST_SEPARATOR).filter(|(scope, _)| scope.len() <= MAX_SCOPE_LEN)
}

/// One pipeline of [`demux`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Its tag: topics `<topic>/<tag>`, requests `<tag>\n…`.
    pub tag: String,
    /// Whether it also owns the plain topics and untagged requests (at most one does).
    pub plain: bool,
}

/// Splits `events` between pipelines: one receiver per entry of `scopes`, in that order;
/// `topics` are the base topics every pipeline uses. A message is routed by its exact topic,
/// a request by its tag (an untagged one to the pipeline owning the plain names). A message on
/// a topic of no pipeline is ignored (no penalty: the sender may serve a chain this node does
/// not) and a request of none is answered with an empty body. A pipeline whose receiver is
/// full (it is stuck) loses what comes for it meanwhile, as if the network had dropped it
/// (messages are ignored, requests answered empty: votes are published again until their round
/// settles, requests are retried, and a keeper fetches a missed invoice before it records its settlement),
/// and never holds back another. The task ends when `events` closes.
pub fn demux(
    net: NetworkHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
    scopes: &[Scope],
    topics: &[&str],
    capacity: usize,
) -> (Vec<mpsc::Receiver<NetworkEvent>>, JoinHandle<()>) {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut by_topic: HashMap<String, (usize, String)> = HashMap::new();
    let (mut by_tag, mut untagged) = (HashMap::new(), None);
    for (i, scope) in scopes.iter().enumerate() {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        senders.push(tx);
        receivers.push(rx);
        for base in topics {
            by_topic.insert(scoped_topic(base, &scope.tag), (i, base.to_string()));
            if scope.plain {
                by_topic.entry(base.to_string()).or_insert((i, base.to_string()));
            }
        }
        by_tag.insert(scope.tag.clone(), i);
        if scope.plain {
            untagged = untagged.or(Some(i));
        }
    }
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Message { topic, source, data, reference } => {
                    let Some((i, base)) = by_topic.get(&topic) else {
                        net.report(reference, Verdict::Ignore).await;
                        continue;
                    };
                    let event = NetworkEvent::Message { topic: base.clone(), source, data, reference };
                    if let Err(TrySendError::Full(NetworkEvent::Message { reference, .. })) =
                        senders[*i].try_send(event)
                    {
                        net.report(reference, Verdict::Ignore).await;
                    }
                }
                NetworkEvent::Request { peer, data, reference } => {
                    let tagged = split_request(&data).and_then(|(tag, body)| Some((*by_tag.get(tag)?, body)));
                    let route = match tagged {
                        Some((i, body)) => Some((i, body.to_string())),
                        None => untagged.map(|i| (i, data)),
                    };
                    let Some((i, body)) = route else {
                        net.respond(reference, String::new()).await;
                        continue;
                    };
                    let event = NetworkEvent::Request { peer, data: body, reference };
                    if let Err(TrySendError::Full(NetworkEvent::Request { reference, .. })) = senders[i].try_send(event)
                    {
                        net.respond(reference, String::new()).await;
                    }
                }
                other => {
                    for tx in &senders {
                        let _ = tx.try_send(other.clone());
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
    use crate::{MessageRef, NetworkConfig, RequestRef, parse_multiaddr};
    use libp2p::PeerId;

    fn message(topic: &str, n: u8) -> NetworkEvent {
        NetworkEvent::Message {
            topic: topic.into(),
            source: PeerId::random(),
            data: vec![n],
            reference: MessageRef { id: libp2p::gossipsub::MessageId::new(&[n]), propagated_by: PeerId::random() },
        }
    }

    /// A scope whose pipeline reads nothing fills up; the other scope still gets everything,
    /// with the scope taken off, and requests are routed by their tag.
    #[tokio::test]
    async fn a_stuck_scope_never_holds_back_another() {
        let (net, _swarm_events) = crate::spawn(NetworkConfig {
            keypair: libp2p::identity::Keypair::generate_ed25519(),
            listen: parse_multiaddr("/ip4/127.0.0.1/tcp/0").expect("addr"),
            peers: Vec::new(),
            topics: Vec::new(),
            redial_interval: std::time::Duration::from_secs(60),
        })
        .expect("network");
        let (tx, rx) = mpsc::channel(64);
        // Chain 1 (Ethereum's id, the version number of the base topics too), and a stuck
        // pipeline that also owns the plain topics.
        let scopes = [Scope { tag: "1".into(), plain: false }, Scope { tag: "2".into(), plain: true }];
        let (mut scopes, _task) = demux(net, rx, &scopes, &["settleproof/attestations/1"], 2);
        let (mut one, mut unscoped) = (scopes.remove(0), scopes.remove(0));
        for n in 0..10 {
            tx.send(message("settleproof/attestations/1", n)).await.expect("send");
        }
        tx.send(message("settleproof/attestations/1/1", 42)).await.expect("send");
        tx.send(NetworkEvent::Request { peer: PeerId::random(), data: "1\n{}".into(), reference: RequestRef(7) })
            .await
            .expect("send");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), one.recv()).await.expect("not held back");
        match got {
            Some(NetworkEvent::Message { topic, data, .. }) => {
                assert_eq!((topic.as_str(), data), ("settleproof/attestations/1", vec![42]));
            }
            other => panic!("expected the message of scope 1, got {other:?}"),
        }
        match tokio::time::timeout(std::time::Duration::from_secs(5), one.recv()).await.expect("request") {
            Some(NetworkEvent::Request { data, .. }) => assert_eq!(data, "{}"),
            other => panic!("expected the request of scope 1, got {other:?}"),
        }
        // The unscoped pipeline got its plain-topic messages (as many as it holds), with the
        // topic as sent.
        match unscoped.recv().await {
            Some(NetworkEvent::Message { topic, data, .. }) => {
                assert_eq!((topic.as_str(), data), ("settleproof/attestations/1", vec![0]));
            }
            other => panic!("expected an unscoped message, got {other:?}"),
        }
        // An untagged request goes to the unscoped pipeline, once it has room.
        while unscoped.try_recv().is_ok() {}
        tx.send(NetworkEvent::Request { peer: PeerId::random(), data: "{}".into(), reference: RequestRef(8) })
            .await
            .expect("send");
        match tokio::time::timeout(std::time::Duration::from_secs(5), unscoped.recv()).await.expect("request") {
            Some(NetworkEvent::Request { data, .. }) => assert_eq!(data, "{}"),
            other => panic!("expected the untagged request, got {other:?}"),
        }
    }

    #[test]
    fn requests_split_back_into_scope_and_body() {
        let r = scoped_request("8453", "{\"rounds\":[1]}\nsecond line");
        assert_eq!(split_request(&r), Some(("8453", "{\"rounds\":[1]}\nsecond line")));
        assert_eq!(split_request("{\"rounds\":[1]}"), None, "an unscoped request names no scope");
        let long = scoped_request(&"9".repeat(MAX_SCOPE_LEN + 1), "{}");
        assert_eq!(split_request(&long), None, "an overlong scope is no scope");
    }
}
