//! The delivery worker's slots: which deliveries are under way, counted per endpoint and per
//! merchant, and which bound refuses the next one ([`Take`]), so a pass steps over what a full
//! bound holds back.

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

/// The most deliveries under way to one endpoint: the merchant's whole bound when it has no
/// endpoints of its own, else half of it (at least one), so one hanging endpoint leaves its
/// merchant's other endpoints a slot.
pub(super) fn per_endpoint_bound(per_merchant: usize, shared: bool) -> usize {
    if shared { (per_merchant / 2).max(1) } else { per_merchant }
}

impl InFlight {
    /// Takes a slot for `event` unless it is already under way or a bound is reached (which
    /// one, so that the pass steps over what that bound holds back).
    pub(super) fn try_take(&mut self, event: &DueDelivery, total: usize, per_merchant: usize, shared: bool) -> Take {
        let here = self.per_endpoint.get(&event.endpoint_key).copied().unwrap_or(0);
        let merchant = self.per_merchant.get(&event.merchant_id).copied().unwrap_or(0);
        if self.events.len() >= total {
            return Take::AllFull;
        }
        if merchant >= per_merchant {
            return Take::MerchantFull;
        }
        if here >= per_endpoint_bound(per_merchant, shared) {
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

    /// How many more deliveries the merchant bounds let start, over `merchants` merchants
    /// (each may have `per_merchant` under way): a pass that took that many can stop, instead of
    /// reading every due entry of merchants that are full. O(deliveries under way).
    pub(super) fn merchant_room(&self, merchants: usize, per_merchant: usize) -> usize {
        let used: usize = self.per_merchant.values().map(|n| (*n).min(per_merchant)).sum();
        merchants.saturating_mul(per_merchant).saturating_sub(used)
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

    /// Each bound refuses with its own verdict: a merchant's hanging endpoint fills its half of
    /// the merchant's slots (the endpoint is full, the merchant is not, so its other endpoint
    /// still gets a slot); then the merchant is full; then the node.
    /// The room left is the merchants' free slots: none once every merchant is full, so the
    /// pass reads nothing.
    #[test]
    fn merchant_room_counts_the_free_slots_of_every_merchant() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (32, 2);
        assert_eq!(f.merchant_room(3, per_merchant), 6);
        assert_eq!(f.try_take(&due("a1", "m", "m"), total, per_merchant, false), Take::Taken);
        assert_eq!(f.try_take(&due("a2", "m", "m"), total, per_merchant, false), Take::Taken);
        assert_eq!(f.merchant_room(3, per_merchant), 4);
        assert_eq!(f.try_take(&due("b1", "n", "n"), total, per_merchant, false), Take::Taken);
        assert_eq!(f.merchant_room(2, per_merchant), 1);
        assert_eq!(f.try_take(&due("b2", "n", "n"), total, per_merchant, false), Take::Taken);
        assert_eq!(f.merchant_room(2, per_merchant), 0, "every merchant full: nothing to read");
        f.release(&due("a1", "m", "m"));
        assert_eq!(f.merchant_room(2, per_merchant), 1);
    }

    #[test]
    fn each_bound_refuses_with_its_own_verdict() {
        let mut f = InFlight::default();
        let (total, per_merchant) = (5, 4);
        assert_eq!(f.try_take(&due("a1", "m", "m/hang"), total, per_merchant, true), Take::Taken);
        assert_eq!(f.try_take(&due("a1", "m", "m/hang"), total, per_merchant, true), Take::Passed, "under way");
        assert_eq!(f.try_take(&due("a2", "m", "m/hang"), total, per_merchant, true), Take::Taken);
        assert_eq!(f.try_take(&due("a3", "m", "m/hang"), total, per_merchant, true), Take::EndpointFull);
        assert_eq!(f.try_take(&due("b1", "m", "m/ok"), total, per_merchant, true), Take::Taken);
        assert_eq!(f.try_take(&due("b2", "m", "m/ok"), total, per_merchant, true), Take::Taken);
        assert_eq!(f.try_take(&due("b3", "m", "m/ok"), total, per_merchant, true), Take::MerchantFull);
        assert_eq!(f.try_take(&due("c1", "n", "n"), total, per_merchant, false), Take::Taken);
        assert_eq!(f.try_take(&due("c2", "n", "n"), total, per_merchant, false), Take::AllFull);
        f.release(&due("a1", "m", "m/hang"));
        assert_eq!(
            f.try_take(&due("c2", "n", "n"), total, per_merchant, false),
            Take::Taken,
            "a released slot is free"
        );
    }
}
