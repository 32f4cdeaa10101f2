//! The operators this node connects to: the union of every chain's. Each chain's operator set
//! changes on its own settlement contract; the swarm allows and dials an operator while any
//! chain still counts it, and drops it once none does.

use settleproof_p2p::{Multiaddr, NetworkHandle, PeerId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The union of `lists`, each operator once (its address from the first list naming it).
pub fn union<'a>(lists: impl Iterator<Item = &'a Vec<(PeerId, Multiaddr)>>) -> Vec<(PeerId, Multiaddr)> {
    let mut out: Vec<(PeerId, Multiaddr)> = Vec::new();
    for (peer, addr) in lists.flatten() {
        if !out.iter().any(|(p, _)| p == peer) {
            out.push((*peer, addr.clone()));
        }
    }
    out
}

/// Operators and where to reach them.
type Peers = Vec<(PeerId, Multiaddr)>;

/// Every chain's operators, applied to the swarm as one allow list.
#[derive(Debug, Clone)]
pub struct PeerUnion {
    net: NetworkHandle,
    by_chain: Arc<Mutex<BTreeMap<u64, Peers>>>,
}

impl PeerUnion {
    /// Applies to `net`, starting from each chain's operators at start (so the first chain to
    /// report a change does not drop the others' operators meanwhile).
    pub fn new(net: NetworkHandle, initial: impl IntoIterator<Item = (u64, Peers)>) -> Self {
        Self { net, by_chain: Arc::new(Mutex::new(initial.into_iter().collect())) }
    }

    /// Chain `chain_id` now counts `peers`; the swarm gets the union of all chains.
    pub async fn set(&self, chain_id: u64, peers: Vec<(PeerId, Multiaddr)>) {
        let all = {
            let Ok(mut by_chain) = self.by_chain.lock() else { return };
            by_chain.insert(chain_id, peers);
            union(by_chain.values())
        };
        self.net.set_peers(all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_of_two_chains_is_listed_once() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let addr = |port: u16| -> Multiaddr { format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr") };
        let one = vec![(a, addr(1)), (b, addr(2))];
        let two = vec![(b, addr(2)), (c, addr(3))];
        let all = union([one, two].iter());
        assert_eq!(all.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![a, b, c]);
    }
}
