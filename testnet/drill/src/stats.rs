//! Percentiles of a sample.

use serde::Serialize;

/// Nearest-rank percentiles of a sample, in its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Sorts `v` and takes its percentiles; `None` when empty.
    pub fn of(v: &mut [u64]) -> Option<Self> {
        v.sort_unstable();
        let max = *v.last()?;
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Self { n: v.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99), max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut v).expect("non-empty");
        assert_eq!((p.n, p.p50, p.p95, p.p99, p.max), (100, 50, 95, 99, 100));
        assert_eq!(Percentiles::of(&mut [7]).map(|p| (p.p50, p.p99)), Some((7, 7)));
        assert_eq!(Percentiles::of(&mut []), None);
    }
}
