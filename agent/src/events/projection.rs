//! "Will this save push us over the limit?", asked while there is still time to act:
//! a running save's peak memory, projected from its copy rate and the time it has left,
//! against its server's memory limit. Pure: the runner feeds it samples, memory readings
//! and session ends.
//!
//! The time left comes from the child's write progress against what the last save of
//! the same server and kind wrote (its output size); without a last save it is unknown
//! and the projection is the worst case: every page of the parent's RSS at the fork
//! copied. COW never exceeds that RSS (a page is copied at most once), so neither does
//! the projection. The peak is the usage now plus the copies still to come, plus, when
//! the output size is known, the output still to write: the child's file pages are
//! charged to the same cgroup until they are written back and reclaimed.
use std::collections::HashMap;

use crate::trace::schema::{Projection, ProjectionCheck, SessionEnd};

/// At most this many projections are kept per session (for the check at its end).
const HISTORY: usize = 4096;

/// One running session at a sample.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub session: u64,
    pub server: &'a str,
    pub kind: &'a str,
    pub elapsed_ms: u64,
    pub cow_bytes: u64,
    /// Copy rate over the last interval, bytes per second.
    pub cow_rate: f64,
    /// Bytes the child wrote in the last interval.
    pub write_bytes: u64,
    pub rss_at_fork: Option<u64>,
    /// The server's memory (limit, usage) now.
    pub memory: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Track {
    written: u64,
    history: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Projector {
    sessions: HashMap<u64, Track>,
    /// What the last ended save of each (server, kind) wrote.
    last_output: HashMap<(String, String), u64>,
}

impl Projector {
    pub fn on_sample(&mut self, i: &Inputs) -> Option<Projection> {
        let t = self.sessions.entry(i.session).or_default();
        t.written = t.written.saturating_add(i.write_bytes);
        let (limit, usage) = i.memory?;
        if limit == 0 {
            return None;
        }
        let ceiling = i.rss_at_fork.unwrap_or(0).max(i.cow_bytes);
        let expected = self
            .last_output
            .get(&(i.server.to_string(), i.kind.to_string()))
            .copied()
            .filter(|&b| b > 0);
        let secs = i.elapsed_ms as f64 / 1000.0;
        let write_rate = if secs > 0.0 {
            t.written as f64 / secs
        } else {
            0.0
        };
        let (cow_end, seconds_left, output_left, basis) = match expected {
            Some(out) if t.written >= out => {
                (i.cow_bytes as f64, Some(0.0), 0, "last save's output")
            }
            Some(out) if write_rate > 0.0 => {
                let left = (out - t.written) as f64 / write_rate;
                (
                    i.cow_bytes as f64 + i.cow_rate.max(0.0) * left,
                    Some(left),
                    out - t.written,
                    "last save's output",
                )
            }
            _ => (
                ceiling as f64,
                None,
                0,
                "worst case: all of the RSS at fork copied",
            ),
        };
        let cow_end = cow_end.min(ceiling as f64).max(i.cow_bytes as f64);
        let peak = usage
            .saturating_add((cow_end - i.cow_bytes as f64).round() as u64)
            .saturating_add(output_left);
        if t.history.len() < HISTORY {
            t.history.push((i.elapsed_ms, peak));
        }
        Some(Projection {
            peak_bytes: peak,
            limit_bytes: limit,
            pct_of_limit: (peak as f64 * 1000.0 / limit as f64).round() / 10.0,
            seconds_left: seconds_left.map(|s| (s * 10.0).round() / 10.0),
            basis: basis.into(),
        })
    }

    /// A session ended: remember its output for the next save, and say how good the
    /// projection made at 30% of its run was.
    pub fn on_end(&mut self, e: &SessionEnd) -> Option<ProjectionCheck> {
        let t = self.sessions.remove(&e.session)?;
        if e.complete && e.exit_code == Some(0) {
            self.last_output.insert(
                (e.instance_name(), e.kind.as_str().to_string()),
                e.writes.bytes,
            );
        }
        let actual = e.memory.as_ref()?.peak_bytes;
        let target = e.duration_ms * 3 / 10;
        let &(at, projected) = t.history.iter().min_by_key(|(ms, _)| ms.abs_diff(target))?;
        Some(ProjectionCheck {
            at_ms: at,
            projected_peak_bytes: projected,
            actual_peak_bytes: actual,
            error_pct: if actual > 0 {
                ((projected as f64 - actual as f64) * 1000.0 / actual as f64).round() / 10.0
            } else {
                0.0
            },
        })
    }

    /// Forget a session without an end (bounded memory when ends are lost).
    pub fn forget(&mut self, session: u64) {
        self.sessions.remove(&session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::{SaveMemory, SessionKind};

    const MIB: u64 = 1 << 20;

    fn input(ms: u64, cow: u64, written: u64) -> Inputs<'static> {
        Inputs {
            session: 1,
            server: "s",
            kind: "rdb-bgsave",
            elapsed_ms: ms,
            cow_bytes: cow,
            cow_rate: 10.0 * MIB as f64,
            write_bytes: written,
            rss_at_fork: Some(400 * MIB),
            memory: Some((1000 * MIB, 500 * MIB)),
        }
    }

    fn end(session: u64, written: u64, peak: u64, ms: u64) -> SessionEnd {
        let mut e = SessionEnd {
            session,
            instance: Some("s".into()),
            kind: SessionKind::RdbBgsave,
            complete: true,
            exit_code: Some(0),
            duration_ms: ms,
            ..Default::default()
        };
        e.writes.bytes = written;
        e.memory = Some(SaveMemory {
            peak_bytes: peak,
            limit_bytes: 1000 * MIB,
            ..Default::default()
        });
        e
    }

    #[test]
    fn without_a_last_save_the_worst_case_is_every_page_copied() {
        let mut p = Projector::default();
        let x = p.on_sample(&input(1000, 100 * MIB, 20 * MIB)).unwrap();
        // 500 MiB used now, 300 MiB of the 400 MiB RSS still to copy at worst.
        assert_eq!(x.peak_bytes, 800 * MIB);
        assert_eq!(x.pct_of_limit, 80.0);
        assert_eq!(x.seconds_left, None);
        assert!(x.basis.starts_with("worst case"));
    }

    #[test]
    fn the_last_saves_output_gives_the_time_left() {
        let mut p = Projector::default();
        p.on_sample(&input(1000, 10 * MIB, 10 * MIB));
        p.on_end(&end(1, 100 * MIB, 0, 10_000));
        let mut i = input(2000, 100 * MIB, 20 * MIB);
        i.session = 2;
        // 20 MiB of 100 MiB in 2 s: 8 s left; 10 MiB/s of copies for 8 s = 80 MiB more,
        // and 80 MiB of output still to land in the page cache.
        let x = p.on_sample(&i).unwrap();
        assert_eq!(x.seconds_left, Some(8.0));
        assert_eq!(x.peak_bytes, 660 * MIB);
        assert_eq!(x.basis, "last save's output");
        // Never more than the RSS at fork copied in all.
        i.session = 3;
        i.cow_rate = 1e12;
        let x = p.on_sample(&i).unwrap();
        assert_eq!(x.peak_bytes, 880 * MIB);
    }

    #[test]
    fn the_end_checks_the_projection_made_at_30_percent() {
        let mut p = Projector::default();
        for (ms, cow) in [(1000, 100), (3000, 200), (6000, 300)] {
            p.on_sample(&input(ms, cow * MIB, 10 * MIB));
        }
        let c = p.on_end(&end(1, 30 * MIB, 900 * MIB, 10_000)).unwrap();
        assert_eq!(c.at_ms, 3000);
        assert_eq!(c.projected_peak_bytes, 700 * MIB);
        assert_eq!(c.actual_peak_bytes, 900 * MIB);
        assert_eq!(c.error_pct, -22.2);
        assert!(p.sessions.is_empty());
    }

    #[test]
    fn no_memory_reading_no_projection() {
        let mut p = Projector::default();
        let mut i = input(1000, MIB, MIB);
        i.memory = None;
        assert!(p.on_sample(&i).is_none());
    }
}
