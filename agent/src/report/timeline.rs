//! A session's timeline in the report: sample rows, downsampled so that any number of
//! samples fits in bounded memory.
use serde::Serialize;

/// One row of a session's timeline: the end of an interval after the fork.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub elapsed_ms: u64,
    /// Cumulative COW at the end of the row, and its 4 KiB pages by the side that copied.
    pub cow_bytes: u64,
    pub parent_pages: u64,
    pub child_pages: u64,
    /// Written and block I/O bytes during the row.
    pub write_bytes: u64,
    pub disk_bytes: u64,
    /// Samples merged into this row; 0 for the closing row made from `session_end`.
    pub samples: u32,
}

/// Sample rows, downsampled to at most `cap` rows of `width` samples each (the last row
/// may be partial), so that any number of samples fits in bounded memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub(super) rows: Vec<Row>,
    pub(super) pending: Option<Row>,
    width: u32,
    cap: usize,
}

fn merge(a: Row, b: Row) -> Row {
    Row {
        elapsed_ms: b.elapsed_ms,
        cow_bytes: b.cow_bytes,
        parent_pages: b.parent_pages,
        child_pages: b.child_pages,
        write_bytes: a.write_bytes.saturating_add(b.write_bytes),
        disk_bytes: a.disk_bytes.saturating_add(b.disk_bytes),
        samples: a.samples.saturating_add(b.samples),
    }
}

impl Timeline {
    pub fn new(cap: usize) -> Self {
        Self {
            rows: Vec::new(),
            pending: None,
            width: 1,
            cap: cap.max(2),
        }
    }

    pub fn push(&mut self, r: Row) {
        let row = match self.pending.take() {
            Some(p) => merge(p, r),
            None => r,
        };
        if row.samples < self.width {
            self.pending = Some(row);
            return;
        }
        self.rows.push(row);
        if self.rows.len() > self.cap {
            let old = std::mem::take(&mut self.rows);
            let mut it = old.chunks(2);
            for pair in it.by_ref() {
                match pair {
                    [a, b] => self.rows.push(merge(*a, *b)),
                    [a] => self.pending = Some(*a),
                    _ => {}
                }
            }
            self.width = self.width.saturating_mul(2);
        }
    }

    /// Samples per full row.
    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().chain(self.pending.as_ref())
    }

    pub fn last(&self) -> Option<&Row> {
        self.pending.as_ref().or(self.rows.last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ms: u64, w: u64) -> Row {
        Row {
            elapsed_ms: ms,
            cow_bytes: ms,
            parent_pages: ms,
            child_pages: 0,
            write_bytes: w,
            disk_bytes: 0,
            samples: 1,
        }
    }

    #[test]
    fn timeline_stays_bounded_and_keeps_sums() {
        let mut t = Timeline::new(10);
        for i in 1..=1000 {
            t.push(row(i, 1));
        }
        let rows: Vec<_> = t.rows().copied().collect();
        assert!(rows.len() <= 10 && rows.len() >= 5, "{}", rows.len());
        assert_eq!(rows.iter().map(|r| r.write_bytes).sum::<u64>(), 1000);
        assert_eq!(
            rows.last().unwrap().cow_bytes,
            1000,
            "cumulative value of the last sample"
        );
        let w = t.width();
        assert!(
            rows[..rows.len() - 1].iter().all(|r| r.samples == w),
            "uniform rows but the last"
        );
        assert!(rows.windows(2).all(|p| p[0].elapsed_ms < p[1].elapsed_ms));
    }

    #[test]
    fn short_timeline_is_sample_per_row() {
        let mut t = Timeline::new(200);
        for i in 1..=3 {
            t.push(row(i * 1000, i));
        }
        assert_eq!(
            t.rows().map(|r| r.write_bytes).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(t.width(), 1);
    }
}
