//! What each operator's gossip may cost this node, in two budgets per author: one for consensus
//! (attestations, heartbeats, operator set approvals: a few messages a second, whatever the
//! load, and the resends of the rounds pending) and one for replicated records (invoices,
//! delivery acknowledgements, merchant approvals, API keys, webhook endpoints: as many as there
//! are payments and merchant changes). An operator that
//! creates invoices, acknowledges deliveries or relays merchant records at its records budget's
//! limit, honest under load or not, still has every vote and heartbeat heard: replication can
//! never crowd out consensus.

use crate::api::RateLimiter;
use crate::gossip;
use std::time::Instant;

/// Consensus messages per second one operator may have handled, and the burst: a vote and a
/// heartbeat per chain every second or so, set approvals, and at each rebroadcast the votes of
/// every round still pending (a thousand rounds behind fit one burst).
pub(crate) const CONSENSUS_PER_S: f64 = 100.0;
/// The burst of [`CONSENSUS_PER_S`].
pub(crate) const CONSENSUS_BURST: f64 = 1000.0;
/// Record messages per second one operator may have handled, and the burst (extra tokens for
/// messages that carry many records are taken from the same budget).
pub(crate) const RECORDS_PER_S: f64 = 200.0;
/// The burst of [`RECORDS_PER_S`].
pub(crate) const RECORDS_BURST: f64 = 2000.0;

/// Which budget a topic's messages spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Votes, heartbeats and operator set approvals.
    Consensus,
    /// Invoices, acknowledgements and merchants' records (approvals of registry changes
    /// too: they are resent for an hour after they apply), and any topic not named here.
    Records,
}

impl Budget {
    /// The budget of `topic` (as the code names it, without its chain tag).
    pub(crate) fn of(topic: &str) -> Self {
        match topic {
            gossip::ATTESTATIONS | gossip::HEARTBEATS | crate::set_approval::TOPIC => Budget::Consensus,
            _ => Budget::Records,
        }
    }
}

/// Both budgets of every operator.
#[derive(Debug, Clone)]
pub(crate) struct AuthorBudgets {
    consensus: RateLimiter,
    records: RateLimiter,
}

impl Default for AuthorBudgets {
    fn default() -> Self {
        Self {
            consensus: RateLimiter::new(CONSENSUS_PER_S, CONSENSUS_BURST),
            records: RateLimiter::new(RECORDS_PER_S, RECORDS_BURST),
        }
    }
}

impl AuthorBudgets {
    /// Takes one message of `topic` from `author`'s budget; `Err` with the budget spent.
    pub(crate) fn take(&self, topic: &str, author: &str, now: Instant) -> Result<(), Budget> {
        let budget = Budget::of(topic);
        let limiter = match budget {
            Budget::Consensus => &self.consensus,
            Budget::Records => &self.records,
        };
        limiter.take(author, now).map_err(|_| budget)
    }

    /// Takes `n` more tokens from `author`'s records budget (a message carrying many records).
    pub(crate) fn take_records(&self, author: &str, now: Instant, n: f64) -> Result<(), Budget> {
        self.records.take_n(author, now, n).map_err(|_| Budget::Records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_spends_the_budget_of_what_it_carries() {
        let table = [
            (gossip::ATTESTATIONS, Budget::Consensus, "votes"),
            (gossip::HEARTBEATS, Budget::Consensus, "liveness"),
            (crate::set_approval::TOPIC, Budget::Consensus, "operator set approvals"),
            (crate::merchants::TOPIC, Budget::Records, "merchant approvals, resent for an hour"),
            (gossip::INVOICES, Budget::Records, "one invoice, as the load"),
            (gossip::INVOICE_BATCHES, Budget::Records, "invoices, as the load"),
            (gossip::DELIVERIES, Budget::Records, "acknowledgements, as the load"),
            (gossip::DELIVERY_BATCHES, Budget::Records, "acknowledgements, as the load"),
            (crate::merchants::KEYS_TOPIC, Budget::Records, "merchants' keys"),
            (crate::merchants::ENDPOINTS_TOPIC, Budget::Records, "merchants' endpoints"),
            (crate::merchants::DIGESTS_TOPIC, Budget::Records, "digests of merchants' records"),
            ("settleproof/unknown/9", Budget::Records, "anything else"),
        ];
        for (topic, budget, why) in table {
            assert_eq!(Budget::of(topic), budget, "{topic}: {why}");
        }
        assert_eq!(table.len() - 1, gossip::TOPICS.len(), "every topic is in the table");
    }

    #[test]
    fn an_author_at_its_records_limit_still_has_its_votes_heard() {
        let budgets = AuthorBudgets::default();
        let now = Instant::now();
        let mut taken = 0;
        while budgets.take(gossip::INVOICE_BATCHES, "op-1", now).is_ok() {
            taken += 1;
        }
        assert_eq!(taken, RECORDS_BURST as usize);
        assert_eq!(budgets.take_records("op-1", now, 4.0), Err(Budget::Records));
        assert_eq!(budgets.take(crate::merchants::KEYS_TOPIC, "op-1", now), Err(Budget::Records));
        for topic in [gossip::ATTESTATIONS, gossip::HEARTBEATS] {
            assert_eq!(budgets.take(topic, "op-1", now), Ok(()), "{topic} after the records ran out");
        }
        assert_eq!(budgets.take(gossip::INVOICE_BATCHES, "op-2", now), Ok(()), "each author has its own");
    }

    #[test]
    fn an_author_flooding_votes_keeps_its_records_budget_and_is_bounded() {
        let budgets = AuthorBudgets::default();
        let now = Instant::now();
        let heard = (0..10_000).filter(|_| budgets.take(gossip::ATTESTATIONS, "op-1", now).is_ok()).count();
        assert_eq!(heard, CONSENSUS_BURST as usize);
        assert_eq!(budgets.take(gossip::INVOICE_BATCHES, "op-1", now), Ok(()));
        let later = now + std::time::Duration::from_secs(1);
        let refilled = (0..10_000).filter(|_| budgets.take(gossip::HEARTBEATS, "op-1", later).is_ok()).count();
        assert_eq!(refilled, CONSENSUS_PER_S as usize);
    }
}
