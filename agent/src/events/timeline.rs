//! COW timeline: pages copied per fixed-width bucket, from cumulative counter samples.
//!
//! The agent samples the exact in-kernel counters every 100 ms, so the timeline never
//! depends on ring-buffer events (which may be dropped). The bucket width doubles
//! whenever the series would exceed [`MAX_BUCKETS`], so memory stays bounded for saves
//! that run for hours.
use agent_common::CowCounters;
use serde::Serialize;

use crate::trace::schema::CowSummary;

pub const BUCKET_NS: u64 = 100_000_000;
pub const MAX_BUCKETS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    start_ns: u64,
    bucket_ns: u64,
    buckets: Vec<u64>,
    last_total: u64,
}

impl Timeline {
    pub fn new(start_ns: u64) -> Self {
        Self {
            start_ns,
            bucket_ns: BUCKET_NS,
            buckets: Vec::new(),
            last_total: 0,
        }
    }

    /// Record that `total` pages had been copied by time `ts_ns` (cumulative, from the
    /// kernel counters). The pages added since the last call go in `ts_ns`'s bucket.
    pub fn observe(&mut self, ts_ns: u64, total: u64) {
        let delta = total.saturating_sub(self.last_total);
        self.last_total = self.last_total.max(total);
        let mut idx = (ts_ns.saturating_sub(self.start_ns) / self.bucket_ns) as usize;
        while idx >= MAX_BUCKETS {
            self.halve();
            idx = (ts_ns.saturating_sub(self.start_ns) / self.bucket_ns) as usize;
        }
        if self.buckets.len() <= idx {
            self.buckets.resize(idx + 1, 0);
        }
        self.buckets[idx] += delta;
    }

    /// Merge pairs of buckets, doubling the width.
    fn halve(&mut self) {
        self.buckets = self.buckets.chunks(2).map(|c| c.iter().sum()).collect();
        self.bucket_ns *= 2;
    }

    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ns / 1_000_000
    }

    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    pub fn total(&self) -> u64 {
        self.last_total
    }

    /// The busiest bucket: (pages per second, ms after start of that bucket).
    pub fn peak(&self) -> (f64, u64) {
        let mut best = (0u64, 0usize);
        for (i, &v) in self.buckets.iter().enumerate() {
            if v > best.0 {
                best = (v, i);
            }
        }
        let secs = self.bucket_ns as f64 / 1e9;
        (best.0 as f64 / secs, best.1 as u64 * self.bucket_ms())
    }

    /// The `cow` object of a session's end: the parent's and child's exact counters, the
    /// parent's RSS at fork (for the share) and this timeline.
    pub fn summary(
        &self,
        parent: &CowCounters,
        child: &CowCounters,
        rss: Option<u64>,
    ) -> CowSummary {
        let pages = |c: &CowCounters| c.copy_bytes / 4096;
        let bytes = parent.copy_bytes + child.copy_bytes;
        let rss = plausible_rss(bytes, rss);
        let (peak, peak_at) = self.peak();
        CowSummary {
            pages: pages(parent) + pages(child),
            bytes,
            parent_pages: pages(parent),
            child_pages: pages(child),
            parent_bytes: parent.copy_bytes,
            child_bytes: child.copy_bytes,
            copies_4k: parent.copies_4k + child.copies_4k,
            copies_2m: parent.copies_2m + child.copies_2m,
            copies_other: parent.copies_other + child.copies_other,
            reuse_faults: parent.reuses() + child.reuses(),
            parent_reuse_faults: parent.reuses(),
            child_reuse_faults: child.reuses(),
            zero_fills: parent.zero_fills + child.zero_fills,
            wp_faults: parent.wp_faults + child.wp_faults,
            parent_rss_at_fork_bytes: rss,
            pct_of_parent_rss: pct(bytes, rss),
            peak_pages_per_s: peak.round(),
            peak_at_ms: peak_at,
            ninety_pct_at_ms: self.ninety_pct_at_ms(),
            timeline_bucket_ms: self.bucket_ms(),
            timeline_pages: self.buckets.clone(),
        }
    }
}

impl Timeline {
    /// The end of the bucket in which the copies reached 90% of the session's total.
    pub fn ninety_pct_at_ms(&self) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let mut sum = 0u64;
        for (i, &p) in self.buckets.iter().enumerate() {
            sum = sum.saturating_add(p);
            if u128::from(sum) * 10 >= u128::from(total) * 9 {
                return Some((i as u64 + 1).saturating_mul(self.bucket_ms()));
            }
        }
        None
    }
}

/// `bytes` as a percentage of `rss`, to one decimal; `None` without an RSS.
pub fn pct(bytes: u64, rss: Option<u64>) -> Option<f64> {
    plausible_rss(bytes, rss)
        .filter(|&r| r > 0)
        .map(|r| (bytes as f64 * 1000.0 / r as f64).round() / 10.0)
}

/// The parent's RSS at fork, unless the copies prove it was read wrong. A save copies
/// at most the pages the parent and child shared at the fork, all of them resident then
/// (a page copied by one side is then the other's alone: a reuse, not a second copy). A
/// reading well below the copies was taken too late: a parent that had exited showed
/// 4 KiB, and its session "1000.0% of the parent's RSS". Then it is unknown, not shown.
pub fn plausible_rss(copied: u64, rss: Option<u64>) -> Option<u64> {
    rss.filter(|&r| copied <= r.saturating_add(r / 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rss_below_the_copies_is_unknown_not_a_share_above_100_percent() {
        assert_eq!(pct(40 << 10, Some(4 << 10)), None);
        assert_eq!(plausible_rss(40 << 10, Some(4 << 10)), None);
        // Up to all of it (and a margin for pages counted by size): kept.
        assert_eq!(pct(4 << 20, Some(4 << 20)), Some(100.0));
        assert_eq!(pct(1 << 20, Some(4 << 20)), Some(25.0));
        assert_eq!(pct(1 << 20, None), None);
    }

    #[test]
    fn summary_splits_parent_and_child() {
        let parent = CowCounters {
            wp_faults: 110,
            copies_4k: 100,
            copy_bytes: 100 * 4096,
            ..Default::default()
        };
        let child = CowCounters {
            wp_faults: 3,
            copies_4k: 1,
            copies_2m: 1,
            copy_bytes: 4096 + (2 << 20),
            zero_fills: 1,
            ..Default::default()
        };
        let mut t = Timeline::new(0);
        t.observe(50_000_000, 613);
        let s = t.summary(&parent, &child, Some(4096 * 1000));
        assert_eq!((s.parent_pages, s.child_pages, s.pages), (100, 513, 613));
        assert_eq!((s.copies_4k, s.copies_2m), (101, 1));
        assert_eq!(
            (s.parent_reuse_faults, s.child_reuse_faults, s.reuse_faults),
            (10, 0, 10)
        );
        assert_eq!(s.zero_fills, 1);
        assert_eq!(s.pct_of_parent_rss, Some(61.3));
        assert_eq!(s.timeline_pages, vec![613]);
    }

    #[test]
    fn deltas_land_in_their_buckets() {
        let mut t = Timeline::new(1_000);
        t.observe(1_000 + 50_000_000, 10);
        t.observe(1_000 + 150_000_000, 25);
        t.observe(1_000 + 450_000_000, 25);
        t.observe(1_000 + 460_000_000, 40);
        assert_eq!(t.buckets(), &[10, 15, 0, 0, 15]);
        assert_eq!(t.total(), 40);
        let (rate, at) = t.peak();
        assert!((rate - 150.0).abs() < 1e-9);
        assert_eq!(at, 100);
    }

    #[test]
    fn counters_never_go_backwards() {
        let mut t = Timeline::new(0);
        t.observe(0, 10);
        t.observe(BUCKET_NS, 5); // a stale read must not subtract
        t.observe(2 * BUCKET_NS, 12);
        assert_eq!(t.buckets(), &[10, 0, 2]);
    }

    #[test]
    fn width_doubles_to_stay_bounded() {
        let mut t = Timeline::new(0);
        for i in 0..(3 * MAX_BUCKETS as u64) {
            t.observe(i * BUCKET_NS, i + 1);
        }
        assert!(t.buckets().len() <= MAX_BUCKETS);
        assert_eq!(t.bucket_ms(), 400);
        assert_eq!(t.buckets().iter().sum::<u64>(), 3 * MAX_BUCKETS as u64);
    }

    #[test]
    fn empty_timeline_has_zero_peak() {
        let t = Timeline::new(0);
        assert_eq!(t.peak(), (0.0, 0));
    }
}
