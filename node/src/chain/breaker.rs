//! A three-state circuit breaker per RPC provider, with the clock passed in.
//!
//! Closed: calls go through; `failure_threshold` consecutive failures open it. Open: calls are
//! refused until `open_for` has passed, then one probe is let through (half-open). Half-open:
//! the probe's success closes the breaker, its failure opens it again.

use std::time::{Duration, Instant};

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls are refused until the instant.
    Open {
        /// When a probe is allowed.
        until: Instant,
    },
    /// One probe is in flight.
    HalfOpen,
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    state: BreakerState,
    failure_threshold: u32,
    open_for: Duration,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self { state: BreakerState::Closed { failures: 0 }, failure_threshold: failure_threshold.max(1), open_for }
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go out at `now` (moves Open to HalfOpen when its time has come).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    /// Records a successful call.
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// Records a failed call at `now`.
    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.failure_threshold => {
                BreakerState::Closed { failures: failures + 1 }
            }
            _ => BreakerState::Open { until: now + self.open_for },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_transitions() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut b = CircuitBreaker::new(3, Duration::from_secs(5));
        assert!(b.allow(t0));
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        for _ in 0..3 {
            b.on_failure(t0);
        }
        assert_eq!(b.state(), BreakerState::Open { until: t0 + 5 * s });
        assert!(!b.allow(t0 + 4 * s), "open refuses");
        assert!(b.allow(t0 + 5 * s), "probe after the wait");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(t0 + 5 * s), "only one probe");
        b.on_failure(t0 + 6 * s);
        assert_eq!(b.state(), BreakerState::Open { until: t0 + 11 * s }, "failed probe reopens");
        assert!(b.allow(t0 + 11 * s));
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 }, "successful probe closes");
    }
}
