//! Real sockets on loopback: operators exchange gossip, an outsider can neither connect nor be
//! heard.

use settleproof_p2p::{Keypair, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, PeerId, spawn};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio::time::{Instant, timeout};

const TOPIC: &str = "test/1";

fn free_addr() -> Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("multiaddr")
}

struct Peer {
    key: Keypair,
    addr: Multiaddr,
}

impl Peer {
    fn new() -> Self {
        Self { key: Keypair::generate_ed25519(), addr: free_addr() }
    }
    fn id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }
    fn start(&self, allowed: &[&Peer]) -> (NetworkHandle, Receiver<NetworkEvent>) {
        spawn(NetworkConfig {
            keypair: self.key.clone(),
            listen: self.addr.clone(),
            peers: allowed.iter().map(|p| (p.id(), p.addr.clone())).collect(),
            topics: vec![TOPIC.into()],
            redial_interval: Duration::from_millis(200),
        })
        .expect("network starts")
    }
}

/// Publishes `data` until `rx` sees it (gossipsub needs the subscription exchange first).
async fn deliver(from: &NetworkHandle, rx: &mut Receiver<NetworkEvent>, data: &[u8], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut n = 0u32;
    while Instant::now() < deadline {
        let mut payload = data.to_vec();
        payload.extend_from_slice(&n.to_be_bytes());
        n += 1;
        let _ = from.publish(TOPIC, payload).await;
        while let Ok(Some(ev)) = timeout(Duration::from_millis(200), rx.recv()).await {
            if let NetworkEvent::Message { data: got, .. } = ev
                && got.starts_with(data)
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_gossip_and_outsiders_are_refused() {
    let (a, b, outsider) = (Peer::new(), Peer::new(), Peer::new());
    let (net_a, mut rx_a) = a.start(&[&b]);
    let (net_b, mut rx_b) = b.start(&[&a]);
    // The outsider knows A and keeps dialling it; A's allow list does not contain it.
    let (net_x, _rx_x) = outsider.start(&[&a]);

    assert!(deliver(&net_a, &mut rx_b, b"from-a", Duration::from_secs(10)).await, "B hears A");
    assert!(deliver(&net_b, &mut rx_a, b"from-b", Duration::from_secs(10)).await, "A hears B");
    assert!(!deliver(&net_x, &mut rx_a, b"from-outsider", Duration::from_secs(3)).await, "A never hears the outsider");
    assert_eq!(net_a.connected_peers(), 1, "A is connected to B only");
    assert_eq!(net_x.connected_peers(), 0, "the outsider has no connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_answer_direct_requests() {
    let (a, b) = (Peer::new(), Peer::new());
    let (net_a, _rx_a) = a.start(&[&b]);
    let (_net_b, mut rx_b) = b.start(&[&a]);
    let server = tokio::spawn(async move {
        while let Some(ev) = rx_b.recv().await {
            if let NetworkEvent::Request { data, reference, .. } = ev {
                _net_b.respond(reference, format!("echo {data}")).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match net_a.request(b.id(), "ping".into()).await {
            Ok(a) => break a,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no answer: {e}"),
        }
    };
    assert_eq!(answer, "echo ping");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_operator_is_cut_off_until_unblocked() {
    let (a, b) = (Peer::new(), Peer::new());
    let (net_a, mut rx_a) = a.start(&[&b]);
    let (net_b, _rx_b) = b.start(&[&a]);
    assert!(deliver(&net_b, &mut rx_a, b"before", Duration::from_secs(10)).await);
    net_a.block(b.id()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(net_a.connected_peers(), 0, "blocking disconnects");
    assert!(!deliver(&net_b, &mut rx_a, b"while-blocked", Duration::from_secs(2)).await);
    net_a.unblock(b.id()).await;
    assert!(deliver(&net_b, &mut rx_a, b"after", Duration::from_secs(10)).await, "reconnects once unblocked");
}
