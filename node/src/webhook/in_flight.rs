//! The delivery worker's slots: which deliveries are under way, counted per endpoint and per
//! merchant, and which bound refuses the next one ([`Take`]), so a pass steps over what a full
//! bound holds back.
//!
//! Every endpoint has a budget of its own: a merchant's primary endpoint the whole
//! `max_in_flight_per_merchant`, each of its own endpoints half of it (at least one). So a slow
//! or hanging endpoint holds only its own slots, never its merchant's primary endpoint's nor
//! another endpoint's. Across merchants the node's slots are shared fairly: a merchant may hold
//! at most its share of them, the node's slots over the merchants holding some (never less than
//! the primary's budget), so a merchant with many slow endpoints cannot crowd out the others.

use crate::store::{DueDelivery, Take};
use std::collections::{HashMap, HashSet};

/// Deliveries under way: by event, and counted per endpoint ([`OutboxEvent::endpoint_key`])
/// and per merchant (over all its endpoints).
#[derive(Debug, Default)]
pub(super) struct InFlight {
    pub(super) events: HashSet<String>,
    pub(super) per_endpoint: HashMap<String, usize>,
    pub(super) per_merchant: HashMap<String, usize>,
}

/// The most deliveries under way to the endpoint with delivery state `key`: the merchant's
/// whole bound for its primary endpoint (keyed by the merchant id), half of it (at least one)
/// for each of its own endpoints (keyed `<merchant>/<endpoint id>`).
pub(super) fn endpoint_bound(key: &str, per_merchant: usize) -> usize {
    if key.contains('/') { (per_merchant / 2).max(1) } else { per_merchant }
}

impl InFlight {
    /// The most slots `merchant` may hold: the node's `total` over the merchants holding slots
    /// (it counted), and never less than `per_merchant`.
    pub(super) fn fair_share(&self, merchant: &str, total: usize, per_merchant: usize) -> usize {
        let holders = self.per_merchant.len() + usize::from(!self.per_merchant.contains_key(merchant));
        (total / holders.max(1)).max(per_merchant)
    }

    /// Takes a slot for `event` unless it is already under way or a bound is reached (which
    /// one, so that the pass steps over what that bound holds back).
    pub(super) fn try_take(&mut self, event: &DueDelivery, total: usize, per_merchant: usize) -> Take {
        let here = self.per_endpoint.get(&event.endpoint_key).copied().unwrap_or(0);
        let merchant = self.per_merchant.get(&event.merchant_id).copied().unwrap_or(0);
        if self.events.len() >= total {
            return Take::AllFull;
        }
        if merchant >= self.fair_share(&event.merchant_id, total, per_merchant) {
            return Take::MerchantFull;
        }
        if here >= endpoint_bound(&event.endpoint_key, per_merchant) {
            return Take::EndpointFull;
        }
        if self.events.contains(&event.id) {
            return Take::Passed;
        }
        self.events.insert(event.id.clone());
        *self.per_endpoint.entry(event.endpoint_key.clone()).or_default() += 1;
        *self.per_merchant.entry(event.merchant_id.clone()).or_default() += 1;
        Take::Taken
    }

    /// How many more deliveries the endpoints' budgets let start, over `merchants` primary
    /// endpoints and `own_endpoints` of the merchants' own: a pass that took that many can
    /// stop, instead of reading every due entry of endpoints that are full.
    pub(super) fn room(&self, merchants: usize, own_endpoints: usize, per_merchant: usize) -> usize {
        let budgets =
            merchants.saturating_mul(per_merchant) + own_endpoints.saturating_mul(endpoint_bound("m/e", per_merchant));
        let used: usize = self.per_endpoint.iter().map(|(k, n)| (*n).min(endpoint_bound(k, per_merchant))).sum();
        budgets.saturating_sub(used)
    }

    pub(super) fn release(&mut self, event: &DueDelivery) {
        self.events.remove(&event.id);
        for (map, key) in
            [(&mut self.per_endpoint, event.endpoint_key.clone()), (&mut self.per_merchant, event.merchant_id.clone())]
        {
            if let Some(n) = map.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(id: &str, merchant: &str, endpoint: &str) -> DueDelivery {
        DueDelivery { id: id.into(), merchant_id: merchant.into(), endpoint_key: endpoint.into() }
    }

    /// The room left is the endpoints' free budgets: none once every endpoint is full, so the
    /// pass reads nothing.
    #[test]
    fn room_counts_the_free_budget_of_every_endpoint() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (32, 2);
        assert_eq!(f.room(3, 2, per_merchant), 8, "three primaries of 2, two own endpoints of 1");
        assert_eq!(f.try_take(&due("a1", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("a1", "m", "m"), total, per_merchant), Take::Passed, "under way");
        assert_eq!(f.try_take(&due("a2", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.room(3, 2, per_merchant), 6);
        assert_eq!(f.try_take(&due("a3", "m", "m"), total, per_merchant), Take::EndpointFull);
        assert_eq!(f.try_take(&due("b1", "m", "m/we_1"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("b2", "m", "m/we_1"), total, per_merchant), Take::EndpointFull);
        assert_eq!(f.room(1, 1, per_merchant), 0, "every endpoint full: nothing to read");
        f.release(&due("a1", "m", "m"));
        assert_eq!(f.room(1, 1, per_merchant), 1);
    }

    /// Sixteen hanging endpoints of one merchant hold one slot each: its primary endpoint keeps
    /// its own two, and another merchant still gets its share of the node.
    #[test]
    fn hanging_endpoints_hold_only_their_own_slots_and_a_merchant_only_its_share() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (32, 2);
        for e in 0..16 {
            let key = format!("m/we_{e}");
            assert_eq!(f.try_take(&due(&format!("h{e}"), "m", &key), total, per_merchant), Take::Taken);
            assert_eq!(f.try_take(&due(&format!("i{e}"), "m", &key), total, per_merchant), Take::EndpointFull);
        }
        assert_eq!(f.try_take(&due("p1", "m", "m"), total, per_merchant), Take::Taken, "the primary's own budget");
        assert_eq!(f.try_take(&due("p2", "m", "m"), total, per_merchant), Take::Taken);
        // Another merchant arrives: m is over its share (32 over 2 holders), n is not.
        assert_eq!(f.try_take(&due("n1", "n", "n"), total, per_merchant), Take::Taken);
        assert_eq!(f.fair_share("m", total, per_merchant), 16);
        f.release(&due("h0", "m", "m/we_0"));
        assert_eq!(f.try_take(&due("h0", "m", "m/we_0"), total, per_merchant), Take::MerchantFull);
        assert_eq!(f.try_take(&due("n2", "n", "n"), total, per_merchant), Take::Taken);
        // Many merchants: each keeps at least its primary's budget.
        assert_eq!(InFlight::default().fair_share("x", 4, 2), 4);
        let mut crowded = InFlight::default();
        for m in 0..8 {
            crowded.try_take(&due(&format!("e{m}"), &format!("m{m}"), &format!("m{m}")), 32, 2);
        }
        assert_eq!(crowded.fair_share("m9", 32, 2), 3);
        assert_eq!(crowded.fair_share("m0", 32, 2), 4);
    }

    #[test]
    fn every_bound_refuses_with_its_own_verdict() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (3, 2);
        assert_eq!(f.try_take(&due("a1", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("a2", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("a3", "m", "m"), total, per_merchant), Take::EndpointFull);
        assert_eq!(f.try_take(&due("c1", "n", "n"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("c2", "n", "n"), total, per_merchant), Take::AllFull);
        f.release(&due("a1", "m", "m"));
        assert_eq!(f.try_take(&due("c2", "n", "n"), total, per_merchant), Take::Taken, "a released slot is free");
    }
}
