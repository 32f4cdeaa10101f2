//! Every operator set this node knows, by epoch: the one epoch 0 bootstraps from configuration
//! and those the watcher reads from the settlement contract. The round driver takes each
//! round's set from here (its keeper schedule, failover ranks, threshold and signers), the
//! gossip checks take the set of the epoch a message names, and the p2p allow list follows the
//! sets that still matter.

use crate::operators::OperatorSet;
use settleproof_consensus::OperatorSetSpec;
use settleproof_p2p::{Multiaddr, PeerId};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tracing::{info, warn};

/// What an insert changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A set this node did not know.
    New,
    /// The same set again.
    Same,
    /// Another set for the epoch (the configuration's epoch 0 disagreed with the chain's):
    /// the chain's replaces it.
    Replaced,
}

/// The known operator sets, shared across tasks; subscribers learn when one is added.
#[derive(Debug)]
pub struct Epochs {
    me: PeerId,
    /// The chain whose settlement contract holds these sets.
    chain_id: u64,
    sets: RwLock<BTreeMap<u64, Arc<OperatorSet>>>,
    changed: watch::Sender<u64>,
}

impl Epochs {
    /// The sets of the node with peer id `me` on chain `chain_id` (each chain's settlement
    /// contract holds its own), starting with `genesis` when the configuration lists one.
    pub fn new(me: PeerId, chain_id: u64, genesis: Option<OperatorSet>) -> Arc<Self> {
        let sets = genesis.into_iter().map(|s| (s.epoch, Arc::new(s))).collect();
        let (changed, _) = watch::channel(0);
        Arc::new(Self { me, chain_id, sets: RwLock::new(sets), changed })
    }

    /// This node's peer id.
    pub fn me(&self) -> PeerId {
        self.me
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<OperatorSet>>> {
        // A panic while holding the lock cannot leave the map half-written (inserts are single
        // operations), so a poisoned lock is still consistent.
        self.sets.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The set of `epoch`.
    pub fn get(&self, epoch: u64) -> Option<Arc<OperatorSet>> {
        self.read().get(&epoch).cloned()
    }

    /// The set that settles `round`: the latest epoch starting at or before it.
    pub fn for_round(&self, round: u64) -> Option<Arc<OperatorSet>> {
        self.read().values().rev().find(|s| s.start_round <= round).cloned()
    }

    /// The latest known set.
    pub fn latest(&self) -> Option<Arc<OperatorSet>> {
        self.read().values().next_back().cloned()
    }

    /// Every known set, by epoch.
    pub fn all(&self) -> Vec<Arc<OperatorSet>> {
        self.read().values().cloned().collect()
    }

    /// Adds the set of its epoch; subscribers are told when something changed.
    pub fn insert(&self, set: OperatorSet) -> Inserted {
        let outcome = {
            let mut sets = self.sets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let outcome = match sets.get(&set.epoch) {
                None => Inserted::New,
                Some(old) if **old == set => Inserted::Same,
                Some(_) => Inserted::Replaced,
            };
            if outcome != Inserted::Same {
                sets.insert(set.epoch, Arc::new(set));
            }
            outcome
        };
        if outcome != Inserted::Same {
            self.changed.send_modify(|v| *v += 1);
        }
        outcome
    }

    /// Adds a set read from the chain (or the store), logging what changed. A set this node
    /// cannot use (an unparsable peer id or address) is counted and logged, never applied.
    pub fn learn(&self, spec: &OperatorSetSpec) {
        match OperatorSet::from_spec(spec, &self.me) {
            Ok(set) => {
                let member = set.me.is_some();
                match self.insert(set) {
                    Inserted::New => {
                        metrics::gauge!("operator_set_epoch", "chain_id" => self.chain_id.to_string())
                            .set(spec.epoch as f64);
                        info!(
                            epoch = spec.epoch,
                            start_round = spec.start_round,
                            operators = spec.operators.len(),
                            threshold = spec.threshold,
                            member,
                            "operator set of a new epoch"
                        );
                    }
                    Inserted::Replaced => {
                        warn!(
                            epoch = spec.epoch,
                            "the configured operator set differs from the chain's: following the chain"
                        );
                    }
                    Inserted::Same => {}
                }
            }
            Err(e) => {
                metrics::counter!("operator_set_unusable_total", "chain_id" => self.chain_id.to_string()).increment(1);
                tracing::error!(epoch = spec.epoch, error = %e, "an operator set on chain cannot be used by this node");
            }
        }
    }

    /// Wakes when a set is added or replaced.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The sets that matter at `round`: the one settling it, every later one, and earlier ones
    /// whose last round is fewer than `grace_rounds` behind (their rounds may still settle).
    pub fn relevant(&self, round: u64, grace_rounds: u64) -> Vec<Arc<OperatorSet>> {
        let sets = self.read();
        let starts: Vec<u64> = sets.values().map(|s| s.start_round).collect();
        sets.values()
            .enumerate()
            .filter(|(i, _)| match starts.get(i + 1) {
                // The next set starts at `end`: this one's rounds end there.
                Some(end) => end.saturating_add(grace_rounds) > round,
                None => true,
            })
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The peers this node keeps connections to at `round`: every other operator of the
    /// relevant sets, with the address of the latest set naming it.
    pub fn peers(&self, round: u64, grace_rounds: u64) -> Vec<(PeerId, Multiaddr)> {
        let mut out: BTreeMap<PeerId, Multiaddr> = BTreeMap::new();
        for set in self.relevant(round, grace_rounds) {
            for o in set.operators.iter().filter(|o| o.peer_id != self.me) {
                out.insert(o.peer_id, o.p2p_addr.clone());
            }
        }
        out.into_iter().collect()
    }

    /// Whether `peer`'s messages are heard at `round`: it is an operator of a set that still
    /// matters ([`Self::relevant`]). A removed operator is not heard once its last set's grace
    /// period is over, even through a relay.
    pub fn hears(&self, peer: &PeerId, round: u64, grace_rounds: u64) -> bool {
        self.relevant(round, grace_rounds).iter().any(|s| s.index_of_peer(peer).is_some())
    }

    /// Whether `peer` is an operator of any known set.
    pub fn knows_peer(&self, peer: &PeerId) -> bool {
        self.read().values().any(|s| s.index_of_peer(peer).is_some())
    }

    /// The name `peer` has in the latest set naming it.
    pub fn name_of_peer(&self, peer: &PeerId) -> Option<String> {
        self.read().values().rev().find_map(|s| s.index_of_peer(peer).map(|i| s.operators[i].name.clone()))
    }
}

/// A stable number for an operator across epochs (its index changes from set to set), for
/// counting distinct operators: the first four bytes of the hash of its peer id.
pub fn peer_tag(peer: &PeerId) -> u32 {
    let h = alloy::primitives::keccak256(peer.to_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Operator;
    use settleproof_consensus::BlsSecretKey;

    fn op(i: u8) -> Operator {
        Operator {
            name: format!("op-{i}"),
            peer_id: PeerId::random(),
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 9000 + u16::from(i)).parse().expect("multiaddr"),
            bls: BlsSecretKey::from_ikm(&[i + 1; 32]).expect("ikm").public_key(),
            evm: alloy::primitives::Address::repeat_byte(i),
        }
    }

    #[test]
    fn rounds_map_to_the_epoch_that_settles_them_and_peers_follow_the_sets() {
        let ops: Vec<Operator> = (0..5).map(op).collect();
        let me = ops[0].peer_id;
        let set = |epoch, start_round, range: std::ops::Range<usize>| OperatorSet {
            epoch,
            start_round,
            operators: ops[range].to_vec(),
            threshold: 2,
            me: Some(0),
        };
        let epochs = Epochs::new(me, 31337, Some(set(0, 0, 0..4)));
        let mut changes = epochs.subscribe();
        assert_eq!(epochs.insert(set(1, 10, 0..5)), Inserted::New);
        assert!(changes.has_changed().expect("sender alive"));
        changes.mark_unchanged();
        assert_eq!(epochs.insert(set(1, 10, 0..5)), Inserted::Same);
        assert!(!changes.has_changed().expect("sender alive"));
        // Epoch 2 removes op-3 at round 20.
        let mut e2 = set(2, 20, 0..5);
        e2.operators.remove(3);
        epochs.insert(e2);
        let table = [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (99, 2)];
        for (round, epoch) in table {
            assert_eq!(epochs.for_round(round).map(|s| s.epoch), Some(epoch), "round {round}");
        }
        let peers = |round| epochs.peers(round, 3).into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert!(peers(5).contains(&ops[4].peer_id), "a set that is coming is connected before it starts");
        assert!(peers(22).contains(&ops[3].peer_id), "a removed operator stays during the grace period");
        assert!(!peers(23).contains(&ops[3].peer_id), "and is dropped after it");
        assert!(!peers(23).contains(&me));
        assert!(epochs.hears(&ops[3].peer_id, 22, 3) && !epochs.hears(&ops[3].peer_id, 23, 3));
        assert_eq!(epochs.name_of_peer(&ops[4].peer_id).as_deref(), Some("op-4"));
    }
}
