//! A token bucket per merchant on the public API: `rate` requests per second on average, bursts
//! up to `burst`. Over the budget the API answers 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Per-merchant token buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl RateLimiter {
    /// `rate` requests per second, bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst: burst.max(1.0), buckets: Arc::default() }
    }

    /// Takes one token for `key` at `now`; `Err(seconds)` to wait when none is left.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        self.take_n(key, now, 1.0)
    }

    /// Takes `n` tokens for `key` at `now` (a request that costs as much as `n` ordinary ones);
    /// `Err(seconds)` to wait when fewer are left.
    pub fn take_n(&self, key: &str, now: Instant, n: f64) -> Result<(), u64> {
        let Ok(mut b) = self.buckets.lock() else { return Ok(()) };
        let (tokens, last) = b.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= n {
            *tokens -= n;
            Ok(())
        } else {
            Err(((n - *tokens) / self.rate.max(f64::MIN_POSITIVE)).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_merchant() {
        let l = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("a", t0), Ok(()));
        }
        assert_eq!(l.take("a", t0), Err(1));
        assert_eq!(l.take("b", t0), Ok(()), "merchants have their own budget");
        assert_eq!(l.take("a", t0 + Duration::from_millis(500)), Ok(()), "one token after half a second at 2/s");
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_err());
    }
}
