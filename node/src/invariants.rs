//! Invariants checked continuously; a violation halts settlement ([`crate::halt`]).
//!
//! - `root_settled_twice`: two settled rounds with one Merkle root.
//! - `settled_root_mismatch`: the payments this node stored for a settled round do not hash to
//!   the root settled on chain.
//! - `settled_amount_mismatch`: the sum of those payments differs from the sum of the
//!   `InvoicePaid` logs a provider quorum shows for the same blocks now.
//! - `bad_merkle_proof`: a proof this node made does not verify against its root (checked where
//!   receipts are built).
//! - `keeper_nonce_desync`: the settlement account's nonce moved without this node (checked
//!   where settlements are sent).
//!
//! A round whose last block the chain no longer has (a reorg below the confirmation depth that
//! the watcher has yet to rewind) is not compared with the chain until the rewind: its stored
//! payments are the old fork's then, and every node would halt at once.
//!
//! A settled batch built on another fork (its last block's hash is not the one this node
//! processed) is not audited against this chain's payments: it is counted
//! (`settlements_of_another_fork_total`) and alerted on, and does not halt, since anyone can
//! land one once the chain no longer knows the hash it names.

use crate::chain::ChainClient;
use crate::halt::Halt;
use crate::store::Store;
use alloy::primitives::{B256, U256};
use settleproof_consensus::{Batch, RoundSchedule};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Settled rounds audited per pass, newest first.
const RECENT: usize = 64;

/// Audits settled rounds against the store and the chain.
#[derive(Debug)]
pub struct Auditor {
    /// Store.
    pub store: Store,
    /// Chain.
    pub chain: ChainClient,
    /// Rounds.
    pub schedule: RoundSchedule,
    /// The switch to pull.
    pub halt: Halt,
    /// Time between passes.
    pub interval: Duration,
}

impl Auditor {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut audited: HashSet<(u64, B256, B256)> = HashSet::new();
        let mut every = tokio::time::interval(self.interval);
        loop {
            tokio::select! {
                _ = every.tick() => self.pass(&mut audited).await,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Audits each settlement (round, root, hash of its last block) once: a round settled again
    /// after a deep reorg is audited again.
    async fn pass(&self, audited: &mut HashSet<(u64, B256, B256)>) {
        let Ok(recent) = self.store.recent_settlements(RECENT) else { return };
        let mut roots: HashMap<B256, u64> = HashMap::new();
        for s in &recent {
            if let Some(other) = roots.insert(s.root, s.round) {
                self.halt.violation(
                    "root_settled_twice",
                    format!("root {} settled in rounds {other} and {}", s.root, s.round),
                );
            }
        }
        let checkpoint = self.store.checkpoint().ok().flatten();
        for s in recent {
            // Audit a round once its payments and its settlement transaction are both at the
            // confirmation depth.
            let settlement_confirmed = checkpoint.is_some_and(|c| s.block_number <= c);
            let key = (s.round, s.root, s.to_block_hash);
            if audited.contains(&key) || !self.schedule.is_closed(s.round, checkpoint) || !settlement_confirmed {
                continue;
            }
            match self.of_another_fork(&s).await {
                Ok(true) => {
                    audited.insert(key);
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    debug!(round = s.round, error = %e, "audit postponed");
                    continue;
                }
            }
            match self.audit_round(&s).await {
                Ok(()) => {
                    audited.insert(key);
                }
                Err(e) => debug!(round = s.round, error = %e, "audit postponed"),
            }
        }
    }

    /// Whether `s` settled a batch built on another fork than the one this node processed. A
    /// round end no longer kept is read through the provider quorum (such a batch can only
    /// land once the chain forgot the hash, which is after the store did).
    async fn of_another_fork(
        &self,
        s: &crate::store::SettlementRecord,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        use crate::store::RoundEnd;
        if s.to_block_hash.is_zero() {
            return Ok(false);
        }
        let hash = match self.store.round_end(s.to_block)? {
            RoundEnd::Kept(hash) => hash,
            RoundEnd::Pruned => self.chain.block(s.to_block).await?.hash,
            RoundEnd::NotReached => return Ok(false),
        };
        if hash == s.to_block_hash {
            return Ok(false);
        }
        metrics::counter!("settlements_of_another_fork_total", "chain_id" => self.chain.chain_id().to_string())
            .increment(1);
        tracing::error!(
            round = s.round,
            root = %s.root,
            batch_to_block_hash = %s.to_block_hash,
            chain_to_block_hash = %hash,
            tx_hash = %s.tx_hash,
            "a batch built on another fork was settled: its payments are not this chain's, and the round cannot be settled again"
        );
        Ok(true)
    }

    async fn audit_round(
        &self,
        s: &crate::store::SettlementRecord,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use crate::store::RoundEnd;
        let (round, root) = (s.round, s.root);
        let Some((from, to)) = self.schedule.range(round) else { return Ok(()) };
        // The chain may have reorganised below the confirmation depth since the store kept the
        // round: its payments are then another fork's until the watcher rewinds, and comparing
        // them with this chain would halt every node at once. So the round is audited only
        // while what the store holds is one consistent view (the settlement and the round's
        // last block unchanged across the reads) and, after the chain's logs are read, that
        // last block is still the chain's.
        let end = self.store.round_end(to)?;
        let stored = self.store.payments_in_range(from, to)?;
        let settled_still = self.store.settlement(round)?.is_some_and(|now| now.root == root);
        if !settled_still || self.store.round_end(to)? != end || end == RoundEnd::NotReached {
            return Err(format!("round {round} changed while it was read (a rewind): audited later").into());
        }
        let mut leaves: Vec<_> = stored.iter().map(|r| r.leaf.clone()).collect();
        // The root depends on neither the epoch nor the hash of the round's last block.
        let ours = Batch::build(0, round, (from, to), B256::ZERO, &mut leaves).map(|b| b.root);
        if ours != Some(root) {
            self.halt.violation(
                "settled_root_mismatch",
                format!("round {round}: stored payments hash to {ours:?}, settled root is {root}"),
            );
            return Ok(());
        }
        let chain = self.chain.events(from, to).await?;
        let expected = match end {
            RoundEnd::Kept(kept) => Some(kept),
            _ => (!s.to_block_hash.is_zero()).then_some(s.to_block_hash),
        };
        let now = self.chain.block(to).await?.hash;
        if expected.is_some_and(|h| h != now) || self.store.round_end(to)? != end {
            metrics::counter!("audits_postponed_by_reorg_total", "chain_id" => self.chain.chain_id().to_string())
                .increment(1);
            return Err(format!(
                "round {round}: block {to} is {now} on the chain now, the store holds {expected:?}: a reorg below the confirmation depth, left to the watcher's rewind"
            )
            .into());
        }
        let sum = |v: &mut dyn Iterator<Item = U256>| v.fold(U256::ZERO, |a, x| a.saturating_add(x));
        let stored_sum = sum(&mut stored.iter().map(|r| r.leaf.amount));
        let chain_sum = sum(&mut chain.payments.iter().map(|r| r.leaf.amount));
        if stored_sum != chain_sum {
            self.halt.violation(
                "settled_amount_mismatch",
                format!("round {round}: stored payments add up to {stored_sum}, the chain shows {chain_sum}"),
            );
        } else if stored.len() != chain.payments.len() {
            warn!(round, stored = stored.len(), chain = chain.payments.len(), "payment count differs with equal sums");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SettlementRecord, temp_store};
    use alloy::signers::local::PrivateKeySigner;
    use settleproof_config::{EXAMPLE, NodeConfig};

    fn auditor(store: Store) -> Auditor {
        let cfg = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example");
        // The client is never called: both violations below are found before any chain read.
        let chain = ChainClient::new(&cfg.chains[0], PrivateKeySigner::random().address(), &reqwest::Client::new())
            .expect("client");
        let halt = Halt::load(store.clone(), 31337).expect("halt");
        Auditor {
            store,
            chain,
            schedule: RoundSchedule { start_block: 0, length: 5 },
            halt,
            interval: Duration::from_secs(1),
        }
    }

    fn settled(round: u64, root: u8) -> SettlementRecord {
        SettlementRecord { round, root: B256::repeat_byte(root), block_number: round * 5 + 6, ..Default::default() }
    }

    #[tokio::test]
    async fn a_root_settled_twice_halts() {
        let (_dir, store) = temp_store();
        store.record_settlement(&settled(1, 7), &[], 0).expect("record");
        store.record_settlement(&settled(2, 7), &[], 0).expect("record");
        let a = auditor(store);
        a.pass(&mut HashSet::new()).await;
        assert_eq!(a.halt.reason().map(|r| r.invariant), Some("root_settled_twice".to_string()));
    }

    #[tokio::test]
    async fn stored_payments_that_do_not_hash_to_the_settled_root_halt() {
        let (_dir, store) = temp_store();
        let to = crate::store::StoredBlock { number: 20, hash: B256::ZERO, timestamp: 0 };
        store.apply_range(to, &[], &[settled(1, 9)], &[]).expect("apply");
        let a = auditor(store.clone());
        assert!(!a.halt.is_halted());
        a.pass(&mut HashSet::new()).await;
        assert_eq!(a.halt.reason().map(|r| r.invariant), Some("settled_root_mismatch".to_string()));
        // The halt survives a restart until resumed.
        assert!(Halt::load(store.clone(), 31337).expect("load").is_halted());
        a.halt.resume().expect("resume");
        assert!(!Halt::load(store, 31337).expect("load").is_halted());
    }

    #[tokio::test]
    async fn a_batch_of_another_fork_settled_is_counted_not_halted_on() {
        let (_dir, store) = temp_store();
        let block =
            |number, hash: u8| crate::store::StoredBlock { number, hash: B256::repeat_byte(hash), timestamp: 0 };
        // Round 1 ends at block 9, processed here with hash 0x09; the settled batch names 0x99.
        let forked = SettlementRecord { to_block: 9, to_block_hash: B256::repeat_byte(0x99), ..settled(1, 9) };
        store.apply_range(block(20, 0x20), &[], &[forked], &[block(9, 0x09)]).expect("apply");
        let a = auditor(store.clone());
        let mut audited = HashSet::new();
        a.pass(&mut audited).await;
        assert!(!a.halt.is_halted(), "{:?}", a.halt.reason());
        assert_eq!(audited.len(), 1, "audited once, as a settlement of another fork");
    }
}
