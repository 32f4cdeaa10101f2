//! Short-lived answers: `/health/ready` and `/status.json` read the chain, so a flood of them
//! would spend the providers' quota. Each answer is reused for `api.status_cache_ms`, and
//! requests arriving while it is computed wait for that one computation.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One cached answer.
#[derive(Debug, Clone)]
pub struct Cached<T> {
    slot: Arc<tokio::sync::Mutex<Option<(Instant, T)>>>,
    ttl: Duration,
}

impl<T: Clone> Cached<T> {
    /// Answers live for `ttl` (zero: never reused).
    pub fn new(ttl: Duration) -> Self {
        Self { slot: Arc::default(), ttl }
    }

    /// The cached answer if fresh, else `compute`'s (then cached).
    pub async fn get_or<F: Future<Output = T>>(&self, compute: F) -> T {
        let mut slot = self.slot.lock().await;
        if let Some((at, v)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return v.clone();
        }
        let v = compute.await;
        *slot = Some((Instant::now(), v.clone()));
        v
    }
}

impl<T> Cached<T> {
    /// Forgets the answer: the next request computes a fresh one (after a change that must
    /// show at once, such as a halt or a resume).
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }
}

impl<T: Clone> Default for Cached<T> {
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

/// The cached answers of the API.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// `/health/ready`.
    pub ready: Cached<(axum::http::StatusCode, serde_json::Value)>,
    /// `/status.json`.
    pub status: Cached<serde_json::Value>,
}

impl Answers {
    /// Answers reused for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ready: Cached::new(ttl), status: Cached::new(ttl) }
    }

    /// Forgets both answers.
    pub async fn invalidate(&self) {
        self.ready.invalidate().await;
        self.status.invalidate().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_burst_costs_one_computation_per_interval() {
        let cache: Cached<usize> = Cached::new(Duration::from_secs(60));
        let calls = Arc::new(AtomicUsize::new(0));
        let burst = (0..50).map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            async move { cache.get_or(async { calls.fetch_add(1, Ordering::SeqCst) }).await }
        });
        let answers = futures::future::join_all(burst).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| *a == 0));
        let fresh: Cached<usize> = Cached::new(Duration::ZERO);
        assert_eq!(fresh.get_or(async { 1 }).await, 1);
        assert_eq!(fresh.get_or(async { 2 }).await, 2, "a zero ttl never reuses");
    }
}
