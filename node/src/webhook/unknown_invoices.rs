//! Payments of invoices no operator knows. Anyone can pay an invented invoice id to a
//! merchant's address (with a worthless token too), and one operator can withhold a real
//! invoice it created; the nodes that settle such a payment cannot tell the two apart. So its
//! event is held for `webhooks.unknown_invoice_grace_s` (the invoice may still arrive and the
//! event be rendered with it), then sent bare, at most [`UNKNOWN_INVOICE_RATE`] a second per
//! merchant, to the primary endpoint and to an endpoint of the merchant's own that lists
//! [`UNKNOWN_INVOICE_EVENTS`]; another of its own endpoints is not told. An invoice the
//! operators were asked for in vain is not asked for again for [`NOT_FOUND_FOR`].

use crate::api::RateLimiter;
use alloy::primitives::B256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The event type an endpoint of the merchant's own lists to be told of payments of invoices
/// no operator knows (never part of `*`).
pub const UNKNOWN_INVOICE_EVENTS: &str = "payment.unknown_invoice";
/// Payments of unknown invoices told to one merchant at most, per second and node, in bursts
/// of [`UNKNOWN_INVOICE_BURST`]; the others wait their turn (`unknown_invoice_rate_limited`).
pub const UNKNOWN_INVOICE_RATE: f64 = 1.0;
/// See [`UNKNOWN_INVOICE_RATE`].
pub const UNKNOWN_INVOICE_BURST: f64 = 10.0;
/// How long an invoice no operator had is not asked for again.
const NOT_FOUND_FOR: Duration = Duration::from_secs(60);
/// Most invoices remembered as not found.
const NOT_FOUND_KEPT: usize = 10_000;
/// How long a delivery over the rate waits, at least.
const RATE_WAIT_MS: u64 = 60_000;

/// What becomes of a delivery of a payment of an invoice no operator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnknownInvoice {
    /// Sent now.
    Send,
    /// Looked at again at this time, unix ms (the outcome recorded).
    Wait(&'static str, u64),
    /// Ended unsent.
    End(&'static str),
}

/// The rate per merchant and the invoices asked for lately in vain; clones share them.
#[derive(Debug, Clone)]
pub(super) struct UnknownInvoices {
    rate: RateLimiter,
    not_found: Arc<Mutex<HashMap<B256, Instant>>>,
}

impl Default for UnknownInvoices {
    fn default() -> Self {
        Self { rate: RateLimiter::new(UNKNOWN_INVOICE_RATE, UNKNOWN_INVOICE_BURST), not_found: Arc::default() }
    }
}

impl UnknownInvoices {
    /// For a delivery of `merchant` to an endpoint with `filter` (`None`: the primary
    /// endpoint), held until `held_until_ms`, at `now_ms`.
    pub(super) fn decide(
        &self,
        merchant: &str,
        filter: Option<&[String]>,
        held_until_ms: u64,
        now_ms: u64,
    ) -> UnknownInvoice {
        if filter.is_some_and(|f| !f.iter().any(|t| t == UNKNOWN_INVOICE_EVENTS)) {
            metrics::counter!("webhook_unknown_invoice_events_total", "outcome" => "not_sent").increment(1);
            return UnknownInvoice::End("unknown_invoice");
        }
        if now_ms < held_until_ms {
            return UnknownInvoice::Wait("unknown_invoice_waiting", held_until_ms);
        }
        if let Err(wait_s) = self.rate.take(merchant, Instant::now()) {
            metrics::counter!("webhook_unknown_invoice_events_total", "outcome" => "rate_limited").increment(1);
            let later = now_ms.saturating_add(wait_s.saturating_mul(1000).max(RATE_WAIT_MS));
            return UnknownInvoice::Wait("unknown_invoice_rate_limited", later);
        }
        metrics::counter!("webhook_unknown_invoice_events_total", "outcome" => "sent").increment(1);
        UnknownInvoice::Send
    }

    /// Whether the operators were asked for `invoice` within [`NOT_FOUND_FOR`] and none had it.
    pub(super) fn not_found_lately(&self, invoice: B256) -> bool {
        self.not_found.lock().is_ok_and(|m| m.get(&invoice).is_some_and(|at| at.elapsed() < NOT_FOUND_FOR))
    }

    /// Remembers that no operator had `invoice` (at most [`NOT_FOUND_KEPT`] at once).
    pub(super) fn remember_not_found(&self, invoice: B256) {
        if let Ok(mut m) = self.not_found.lock() {
            if m.len() >= NOT_FOUND_KEPT {
                m.retain(|_, at| at.elapsed() < NOT_FOUND_FOR);
            }
            if m.len() < NOT_FOUND_KEPT {
                m.insert(invoice, Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_for_the_grace_then_sent_within_the_rate_and_never_to_an_endpoint_that_does_not_ask() {
        let u = UnknownInvoices::default();
        let asks = vec![UNKNOWN_INVOICE_EVENTS.to_string()];
        let star = vec!["*".to_string()];
        assert_eq!(u.decide("m", Some(&star), 0, 1), UnknownInvoice::End("unknown_invoice"));
        assert_eq!(u.decide("m", None, 5_000, 1_000), UnknownInvoice::Wait("unknown_invoice_waiting", 5_000));
        assert_eq!(u.decide("m", Some(&asks), 5_000, 1_000), UnknownInvoice::Wait("unknown_invoice_waiting", 5_000));
        for _ in 0..UNKNOWN_INVOICE_BURST as usize {
            assert_eq!(u.decide("m", None, 5_000, 6_000), UnknownInvoice::Send);
        }
        assert!(
            matches!(u.decide("m", Some(&asks), 5_000, 6_000), UnknownInvoice::Wait("unknown_invoice_rate_limited", t) if t >= 66_000)
        );
        assert_eq!(u.decide("other", None, 5_000, 6_000), UnknownInvoice::Send, "the rate is per merchant");
        let id = B256::repeat_byte(7);
        assert!(!u.not_found_lately(id));
        u.remember_not_found(id);
        assert!(u.clone().not_found_lately(id), "clones share what was asked");
    }
}
