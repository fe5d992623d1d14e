//! Histograms (hdrhistogram) and their quantiles.
use hdrhistogram::Histogram;

use crate::trace::schema::Quantiles;

/// A histogram of positive integers (latencies in µs, sizes in bytes), 3 significant
/// digits, auto-resizing. Zero values are recorded as 1 (hdrhistogram's lowest).
/// Allocated at its first value: an empty hdrhistogram already takes tens of KiB, and a
/// fork storm opens thousands of sessions that never write.
#[derive(Clone, Debug)]
pub struct Hist(Option<Histogram<u64>>, u64);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Self(None, 0)
    }

    fn inner(&mut self) -> &mut Histogram<u64> {
        self.0.get_or_insert_with(|| {
            let mut h = Histogram::new(3).expect("3 significant digits is a valid precision");
            h.auto(true);
            h
        })
    }

    pub fn record(&mut self, v: u64) {
        // Auto-resizing histograms accept any u64 below u64::MAX / 2.
        let v = v.clamp(1, u64::MAX / 4);
        let _ = self.inner().record(v);
        // hdrhistogram reports the top of the max's bucket; keep the exact max.
        self.1 = self.1.max(v);
    }

    pub fn len(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn quantiles(&self) -> Quantiles {
        let Some(h) = self.0.as_ref().filter(|h| !h.is_empty()) else {
            return Quantiles::default();
        };
        // The lowest value of the quantile's bucket (within 0.1% of the true value),
        // so that a run of identical values reports that value, not its bucket's top.
        let q = |p: f64| h.lowest_equivalent(h.value_at_quantile(p)).min(self.1);
        Quantiles {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: self.1,
        }
    }

    pub fn max(&self) -> u64 {
        self.1
    }

    /// Add every value of `other` (run-wide histograms from per-session ones).
    pub fn merge(&mut self, other: &Hist) {
        let Some(o) = other.0.as_ref().filter(|h| !h.is_empty()) else {
            return;
        };
        // Both auto-resize, so adding cannot overflow the value range.
        let _ = self.inner().add(o);
        self.1 = self.1.max(other.1);
    }

    /// Counts per power-of-two bucket `[2^i, 2^(i+1))`, for text and terminal views.
    pub fn log2_buckets(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let Some(h) = self.0.as_ref() else { return out };
        for v in h.iter_recorded() {
            let x = v.value_iterated_to().max(1);
            let lo = 1u64 << (63 - x.leading_zeros());
            match out.last_mut() {
                Some((l, c)) if *l == lo => *c += v.count_at_value(),
                _ => out.push((lo, v.count_at_value())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_values() {
        let mut h = Hist::new();
        for v in 1..=100 {
            h.record(v);
        }
        let q = h.quantiles();
        assert_eq!(
            (q.count, q.p50, q.p90, q.p99, q.max),
            (100, 50, 90, 99, 100)
        );
        assert_eq!(Hist::new().quantiles(), Quantiles::default());
    }

    #[test]
    fn identical_values_report_themselves() {
        let mut h = Hist::new();
        for _ in 0..10 {
            h.record(65536);
        }
        let q = h.quantiles();
        assert_eq!((q.p50, q.p99, q.max), (65536, 65536, 65536));
    }

    #[test]
    fn zero_and_huge_values_are_kept() {
        let mut h = Hist::new();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn log2_buckets_group_powers_of_two() {
        let mut h = Hist::new();
        for v in [1, 2, 3, 4, 7, 8, 1000] {
            h.record(v);
        }
        let b = h.log2_buckets();
        assert_eq!(b, vec![(1, 1), (2, 2), (4, 2), (8, 1), (512, 1)]);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_exact_max() {
        let mut a = Hist::new();
        a.record(10);
        let mut b = Hist::new();
        b.record(20);
        b.record(1_000_001);
        a.merge(&b);
        assert_eq!((a.len(), a.max()), (3, 1_000_001));
        a.merge(&Hist::new());
        assert_eq!(a.len(), 3);
    }
}
