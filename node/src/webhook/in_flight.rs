//! The delivery worker's slots: which deliveries are under way, counted per endpoint and per
//! merchant, and which bound refuses the next one ([`Take`]), so a pass steps over what a full
//! bound holds back.
//!
//! Budgets are fixed, whatever else the node is doing: a merchant's primary endpoint has
//! `max_in_flight_per_merchant` slots of its own, and its own endpoints share as many again,
//! each taking at most half of them (at least one). So a slow or hanging endpoint of the
//! merchant's own never holds back the primary endpoint, nor another merchant; a merchant
//! holds at most twice `max_in_flight_per_merchant` of the node's slots.

use crate::store::{DueDelivery, Take};
use std::collections::{HashMap, HashSet};

/// Deliveries under way: by event, and counted per endpoint ([`OutboxEvent::endpoint_key`])
/// and, for the merchant's own endpoints, per merchant.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    pub(super) events: HashSet<String>,
    pub(super) per_endpoint: HashMap<String, usize>,
    /// Per merchant, its deliveries to endpoints of its own (not the primary).
    pub(super) own_per_merchant: HashMap<String, usize>,
}

/// Whether the delivery state key names one of a merchant's own endpoints
/// (`<merchant>/<endpoint id>`; the primary's is the merchant id, which has no `/`).
fn is_own(key: &str) -> bool {
    key.contains('/')
}

/// The most deliveries under way to the endpoint with delivery state `key`: the merchant's
/// whole bound for its primary endpoint, half of it (at least one) for one of its own.
pub(super) fn endpoint_bound(key: &str, per_merchant: usize) -> usize {
    if is_own(key) { (per_merchant / 2).max(1) } else { per_merchant }
}

impl InFlight {
    /// Takes a slot for `event` unless it is already under way or a bound is reached (which
    /// one, so that the pass steps over what that bound holds back).
    pub(super) fn try_take(&mut self, event: &DueDelivery, total: usize, per_merchant: usize) -> Take {
        let here = self.per_endpoint.get(&event.endpoint_key).copied().unwrap_or(0);
        let own = is_own(&event.endpoint_key);
        if self.events.len() >= total {
            return Take::AllFull;
        }
        if here >= endpoint_bound(&event.endpoint_key, per_merchant)
            || (own && self.own_of(&event.merchant_id) >= per_merchant)
        {
            return Take::EndpointFull;
        }
        if self.events.contains(&event.id) {
            return Take::Passed;
        }
        self.events.insert(event.id.clone());
        *self.per_endpoint.entry(event.endpoint_key.clone()).or_default() += 1;
        if own {
            *self.own_per_merchant.entry(event.merchant_id.clone()).or_default() += 1;
        }
        Take::Taken
    }

    /// Deliveries under way to `merchant`'s own endpoints.
    pub(super) fn own_of(&self, merchant: &str) -> usize {
        self.own_per_merchant.get(merchant).copied().unwrap_or(0)
    }

    /// How many more deliveries the budgets let start, over `merchants` primary endpoints and
    /// the own endpoints of `with_own` merchants: a pass that took that many can stop, instead
    /// of reading every due entry of endpoints that are full. O(deliveries under way).
    pub(super) fn room(&self, merchants: usize, with_own: usize, per_merchant: usize) -> usize {
        let budgets = merchants.saturating_add(with_own).saturating_mul(per_merchant);
        let primary: usize =
            self.per_endpoint.iter().filter(|(k, _)| !is_own(k)).map(|(_, n)| (*n).min(per_merchant)).sum();
        let own: usize = self.own_per_merchant.values().map(|n| (*n).min(per_merchant)).sum();
        budgets.saturating_sub(primary + own)
    }

    pub(super) fn release(&mut self, event: &DueDelivery) {
        self.events.remove(&event.id);
        let mut maps = vec![(&mut self.per_endpoint, event.endpoint_key.clone())];
        if is_own(&event.endpoint_key) {
            maps.push((&mut self.own_per_merchant, event.merchant_id.clone()));
        }
        for (map, key) in maps {
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

    /// The room left is the free budgets: none once every budget is full, so the pass reads
    /// nothing.
    #[test]
    fn room_counts_the_free_budgets() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (32, 2);
        assert_eq!(f.room(3, 1, per_merchant), 8, "three primaries of 2, one merchant's own endpoints 2");
        assert_eq!(f.try_take(&due("a1", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("a1", "m", "m"), total, per_merchant), Take::Passed, "under way");
        assert_eq!(f.try_take(&due("a2", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.room(3, 1, per_merchant), 6);
        assert_eq!(f.try_take(&due("a3", "m", "m"), total, per_merchant), Take::EndpointFull);
        assert_eq!(f.try_take(&due("b1", "m", "m/we_1"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("b2", "m", "m/we_1"), total, per_merchant), Take::EndpointFull);
        assert_eq!(f.try_take(&due("c1", "m", "m/we_2"), total, per_merchant), Take::Taken);
        assert_eq!(f.room(1, 1, per_merchant), 0, "every budget full: nothing to read");
        f.release(&due("a1", "m", "m"));
        assert_eq!(f.room(1, 1, per_merchant), 1);
    }

    /// Sixteen hanging endpoints of one merchant hold its own endpoints' two slots and no
    /// more: its primary endpoint keeps its own two, whoever else holds slots, and another
    /// merchant still gets its own.
    #[test]
    fn hanging_endpoints_hold_only_their_merchants_own_endpoint_slots() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (32, 2);
        assert_eq!(f.try_take(&due("n1", "n", "n"), total, per_merchant), Take::Taken);
        let mut taken = 0;
        for e in 0..16 {
            let key = format!("m/we_{e}");
            if f.try_take(&due(&format!("h{e}"), "m", &key), total, per_merchant) == Take::Taken {
                taken += 1;
            }
        }
        assert_eq!(taken, 2, "the merchant's own endpoints share its bound");
        assert_eq!(f.try_take(&due("p1", "m", "m"), total, per_merchant), Take::Taken, "the primary's own budget");
        assert_eq!(f.try_take(&due("p2", "m", "m"), total, per_merchant), Take::Taken);
        assert_eq!(f.try_take(&due("n2", "n", "n"), total, per_merchant), Take::Taken);
        assert_eq!(f.events.len(), 6, "a merchant holds at most twice its bound");
        f.release(&due("h0", "m", "m/we_0"));
        assert_eq!(f.own_of("m"), 1);
        assert_eq!(f.try_take(&due("h9", "m", "m/we_9"), total, per_merchant), Take::Taken);
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
