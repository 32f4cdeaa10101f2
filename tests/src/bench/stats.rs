//! Percentiles of latency samples.

use serde::Serialize;

/// Percentiles of a sample in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `v` (any order).
    pub fn of(v: &[f64]) -> Self {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            return Self::default();
        }
        let at = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        Self { n: s.len(), p50: at(0.5), p95: at(0.95), p99: at(0.99), max: s[s.len() - 1], mean }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.n, s.p50, s.p95, s.p99, s.max), (200, 100.0, 190.0, 198.0, 200.0));
        assert_eq!(Summary::of(&[]).n, 0);
    }
}
