//! What `watch` shows beyond the tracker's live sessions: each session's deltas per
//! output interval (COW, write and disk rates, the COW sparkline and the "COW copies
//! per interval" histogram), the sessions that ended recently with their histograms,
//! and run-wide histograms for the end of the run. Pure: the runner feeds it.
use std::collections::{HashMap, VecDeque};

use agent_common::{IoCounters, SYNC_CALLS};

use crate::{
    events::hist::Hist,
    events::session::{IoHists, Session, Tracker},
    live::screen::model::SessionHists,
    trace::schema::{SessionEnd, SessionStart},
};

/// Ended sessions kept for the live view (all reachable by scrolling).
pub const RECENT: usize = 50;
/// Points of a session's COW series kept (the sparkline shows the newest ones).
pub const SERIES_MAX: usize = 512;

/// COW, write and disk rates in bytes/s: over one interval, or averaged over a
/// session's run (`Rates::average`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub cow: f64,
    pub write: f64,
    pub disk: f64,
}

impl Rates {
    /// Bytes copied, written and sent to disk over `ms` milliseconds, per second (a
    /// run shorter than 1 ms counts as 1 ms).
    pub fn average(cow: u64, write: u64, disk: u64, ms: u64) -> Self {
        let secs = ms.max(1) as f64 / 1000.0;
        Self {
            cow: cow as f64 / secs,
            write: write as f64 / secs,
            disk: disk as f64 / secs,
        }
    }
}

/// Per-interval accounting of one live session.
#[derive(Debug, Clone)]
struct Track {
    last_pages: u64,
    last_io: IoCounters,
    last_ts: u64,
    rates: Rates,
    /// Pages copied in each interval, oldest first.
    series: VecDeque<u64>,
    cow_per_interval: Hist,
    fork_us: Option<f64>,
}

impl Track {
    fn new(fork_ts_ns: u64) -> Self {
        Self {
            last_pages: 0,
            last_io: IoCounters::default(),
            last_ts: fork_ts_ns,
            rates: Rates::default(),
            series: VecDeque::new(),
            cow_per_interval: Hist::new(),
            fork_us: None,
        }
    }

    /// Account for the interval ending at `now`; returns the pages it copied.
    fn step(&mut self, now: u64, pages: u64, io: &IoCounters) -> u64 {
        let dt = now.saturating_sub(self.last_ts).max(1) as f64 / 1e9;
        let delta = pages.saturating_sub(self.last_pages);
        self.rates = Rates {
            cow: (delta * 4096) as f64 / dt,
            write: io.write_bytes.saturating_sub(self.last_io.write_bytes) as f64 / dt,
            disk: io.disk_bytes.saturating_sub(self.last_io.disk_bytes) as f64 / dt,
        };
        self.last_pages = self.last_pages.max(pages);
        self.last_io = *io;
        self.last_ts = now;
        if self.series.len() == SERIES_MAX {
            self.series.pop_front();
        }
        self.series.push_back(delta);
        self.cow_per_interval.record(delta);
        delta
    }
}

/// A session that ended, as the live view shows it. Its histograms no longer change,
/// so they are kept as drawn (buckets and quantiles), not as hdrhistograms.
#[derive(Debug, Clone)]
pub struct Ended {
    pub end: SessionEnd,
    pub hists: SessionHists,
    pub series: Vec<u64>,
    pub fork_us: Option<f64>,
}

impl Ended {
    /// Average rates over the session's run (with the COW estimated before the attach
    /// of a session attached mid-save).
    pub fn rates(&self) -> Rates {
        Rates::average(
            self.end.cow_bytes_with_estimate(),
            self.end.writes.bytes,
            self.end.disk.bytes,
            self.end.duration_ms,
        )
    }
}

/// Histograms over every session of the run.
#[derive(Debug, Clone, Default)]
pub struct RunHists {
    pub io: IoHists,
    pub fork_us: Hist,
    pub cow_per_interval: Hist,
}

/// One `watch --plain` line: a live session at the end of an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    pub session: u64,
    pub kind: &'static str,
    /// The server's name (`pid N` until it is known).
    pub instance: String,
    /// For a session attached mid-save: the COW estimated before the attach (`cow_bytes`
    /// is what was counted since).
    pub cow_estimate: Option<u64>,
    pub ts_ns: u64,
    pub cow_bytes: u64,
    pub pct_of_rss: Option<f64>,
    /// The parent's RSS at the fork: the base of `pct_of_rss`.
    pub rss_at_fork: Option<u64>,
    pub written_bytes: u64,
    /// Bytes sent to pipes and sockets so far (a diskless replica sync's RDB).
    pub sent_bytes: u64,
    /// Sync calls so far, per call (`IoCounters::sync_calls`).
    pub sync_calls: [u64; SYNC_CALLS],
    pub rates: Rates,
}

#[derive(Debug, Default)]
pub struct Store {
    interval_ns: u64,
    tracks: HashMap<u64, Track>,
    recent: VecDeque<Ended>,
    /// Histograms of sessions about to end, taken before the tracker drops them.
    pending: HashMap<u32, IoHists>,
    pub run: RunHists,
    /// Sessions ended in the run (also those no longer in `recent`).
    pub ended: u64,
}

/// COW bytes as a percentage of the parent's RSS at fork.
pub fn pct_of_rss(cow_bytes: u64, rss: Option<u64>) -> Option<f64> {
    rss.filter(|&r| r > 0)
        .map(|r| cow_bytes as f64 * 100.0 / r as f64)
}

impl Store {
    pub fn new(interval_ns: u64) -> Self {
        Self {
            interval_ns: interval_ns.max(1),
            ..Default::default()
        }
    }

    /// End of an output interval: step every live session. Returns a line's worth of
    /// numbers for each session whose start was announced.
    pub fn on_interval(&mut self, now_ns: u64, tracker: &Tracker) -> Vec<IntervalRow> {
        let mut rows = Vec::new();
        for s in tracker.live() {
            let t = self
                .tracks
                .entry(s.id)
                .or_insert_with(|| Track::new(s.fork_ts_ns));
            if now_ns <= t.last_ts {
                continue;
            }
            let delta = t.step(now_ns, s.pages(), &s.io);
            self.run.cow_per_interval.record(delta);
            if s.started {
                rows.push(row(s, t.rates, now_ns));
            }
        }
        rows
    }

    pub fn on_start(&mut self, s: &SessionStart) {
        let t = self
            .tracks
            .entry(s.session)
            .or_insert_with(|| Track::new(s.ts_ns));
        t.fork_us = s.fork_us;
        if let Some(us) = s.fork_us {
            self.run.fork_us.record(us.round() as u64);
        }
    }

    /// Call before the tracker closes `child`'s session: keeps its histograms.
    pub fn before_exit(&mut self, tracker: &Tracker, child: u32) {
        if let Some(s) = tracker.get(child) {
            self.pending.insert(child, s.hists.clone());
        }
    }

    /// Call before the tracker closes every live session (end of the run).
    pub fn before_finish(&mut self, tracker: &Tracker) {
        for s in tracker.live() {
            self.pending.insert(s.child_pid, s.hists.clone());
        }
    }

    pub fn on_end(&mut self, e: &SessionEnd) {
        let hists = self.pending.remove(&e.child_pid).unwrap_or_default();
        let fork_ts = e.ts_ns.saturating_sub(e.duration_ms * 1_000_000);
        let mut t = self
            .tracks
            .remove(&e.session)
            .unwrap_or_else(|| Track::new(fork_ts));
        // The last, partial interval: counted unless it is a sliver with nothing in it.
        let delta = e.cow.pages.saturating_sub(t.last_pages);
        if e.ts_ns > t.last_ts && (delta > 0 || (e.ts_ns - t.last_ts) * 2 >= self.interval_ns) {
            t.step(e.ts_ns, e.cow.pages, &IoCounters::default());
            self.run.cow_per_interval.record(delta);
        }
        self.run.io.merge(&hists);
        self.ended += 1;
        self.recent.push_front(Ended {
            end: e.clone(),
            hists: SessionHists::of(&hists, Some(&t.cow_per_interval)),
            series: t.series.into_iter().collect(),
            fork_us: t.fork_us,
        });
        self.recent.truncate(RECENT);
    }

    /// Ended sessions, newest first.
    pub fn recent(&self) -> impl Iterator<Item = &Ended> {
        self.recent.iter()
    }

    /// Rates of a live session over its last interval (zero before the first one).
    pub fn rates(&self, session: u64) -> Rates {
        self.tracks
            .get(&session)
            .map(|t| t.rates)
            .unwrap_or_default()
    }

    /// Pages copied per interval by a live session, oldest first.
    pub fn series(&self, session: u64) -> Vec<u64> {
        self.tracks
            .get(&session)
            .map(|t| t.series.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn cow_per_interval(&self, session: u64) -> Option<&Hist> {
        self.tracks.get(&session).map(|t| &t.cow_per_interval)
    }
}

fn row(s: &Session, rates: Rates, now_ns: u64) -> IntervalRow {
    let cow_bytes = s.parent.copy_bytes + s.child.copy_bytes;
    IntervalRow {
        session: s.id,
        kind: s.effective_kind().map_or("fork", |k| k.as_str()),
        instance: s
            .instance
            .clone()
            .unwrap_or_else(|| format!("pid {}", s.parent_pid)),
        cow_estimate: s.mid_save.as_ref().and_then(|m| m.cow_bytes_estimate),
        ts_ns: now_ns,
        cow_bytes,
        pct_of_rss: pct_of_rss(
            cow_bytes
                + s.mid_save
                    .as_ref()
                    .and_then(|m| m.cow_bytes_estimate)
                    .unwrap_or(0),
            s.parent_rss,
        ),
        rss_at_fork: s.parent_rss,
        written_bytes: s.io.write_bytes,
        sent_bytes: s.io.sent_bytes,
        sync_calls: s.io.sync_calls,
        rates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{
        CowCounters, EV_EXIT, EV_FORK, EV_FORK_RET, EV_RESYNC, ProcEvent, RESYNC_NONE,
    };

    use crate::trace::schema::Record;

    fn ev(kind: u32, pid: u32, ppid: u32, ts: u64, value: u64) -> ProcEvent {
        ProcEvent::new(kind, pid, ppid, ts, value)
    }

    const S: u64 = 1_000_000_000;

    fn pages(p: u64) -> CowCounters {
        CowCounters {
            copies_4k: p,
            copy_bytes: p * 4096,
            ..Default::default()
        }
    }

    #[test]
    fn intervals_give_rates_series_and_a_histogram() {
        let mut t = Tracker::new();
        let mut st = Store::new(S);
        t.on_fork(&ev(EV_FORK, 20, 10, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 20, 10, 1, 2_000_000));
        t.observe_cmdline(20, b"redis-rdb-bgsave *:6379", b"redis-server *:6379", 2);
        t.on_resync(&ev(EV_RESYNC, 20, 10, 2, RESYNC_NONE));
        t.set_parent_rss(20, 4096 * 1000);
        for r in t.ready_starts(2) {
            let Record::SessionStart(s) = r else { panic!() };
            st.on_start(&s);
        }
        let io = |w: u64, d: u64| IoCounters {
            write_bytes: w,
            disk_bytes: d,
            sync_calls: [1, 0, 2],
            ..Default::default()
        };
        t.on_counters(20, S, pages(100), pages(0), io(2_000_000, 1_000_000));
        let rows = st.on_interval(S, &t);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (
                r.session,
                r.kind,
                r.cow_bytes,
                r.written_bytes,
                r.sync_calls
            ),
            (1, "rdb-bgsave", 409_600, 2_000_000, [1, 0, 2])
        );
        assert_eq!(
            (r.pct_of_rss, r.rss_at_fork),
            (Some(10.0), Some(4096 * 1000))
        );
        assert_eq!(
            r.rates,
            Rates {
                cow: 409_600.0,
                write: 2e6,
                disk: 1e6
            }
        );
        t.on_counters(20, 2 * S, pages(300), pages(0), io(3_000_000, 1_000_000));
        let r = &st.on_interval(2 * S, &t)[0];
        assert_eq!(
            r.rates,
            Rates {
                cow: 819_200.0,
                write: 1e6,
                disk: 0.0
            }
        );
        assert_eq!(st.series(1), vec![100, 200]);
        assert_eq!(st.cow_per_interval(1).unwrap().len(), 2);
        // The same instant twice (a late timer) does not add an empty interval.
        assert!(st.on_interval(2 * S, &t).is_empty());

        // The exit: a partial interval with copies, then the session moves to `recent`.
        let mut exit = ev(EV_EXIT, 20, 10, 2 * S + S / 10, 0);
        exit.cow_parent = pages(350);
        st.before_exit(&t, 20);
        for r in t.on_exit(&exit, &[]) {
            let Record::SessionEnd(e) = r else { panic!() };
            st.on_end(&e);
        }
        let e = st.recent().next().unwrap();
        assert_eq!(e.series, vec![100, 200, 50]);
        assert_eq!(e.hists.cow_per_interval.q.count, 3);
        assert_eq!(e.fork_us, Some(2000.0));
        assert_eq!(st.run.fork_us.len(), 1);
        assert_eq!(st.run.cow_per_interval.len(), 3);
        assert!(st.series(1).is_empty(), "no longer live");
        let rates = e.rates();
        assert!((rates.cow - 350.0 * 4096.0 / 2.1).abs() < 1.0, "{rates:?}");
    }

    #[test]
    fn ended_sessions_keep_histograms_and_only_the_newest_fifty() {
        let mut t = Tracker::new();
        let mut st = Store::new(S);
        for i in 0..52u32 {
            let pid = 100 + i;
            let ts = u64::from(i) * S;
            t.on_fork(&ev(EV_FORK, pid, 10, ts, 0));
            t.on_io(&agent_common::IoEvent {
                kind: agent_common::EV_WRITE,
                session: pid,
                latency_ns: 5_000,
                bytes: 4096,
                ..Default::default()
            });
            st.before_exit(&t, pid);
            // Ends 1 ms after the fork with nothing copied: no interval is recorded.
            for r in t.on_exit(&ev(EV_EXIT, pid, 10, ts + 1_000_000, 0), &[]) {
                if let Record::SessionEnd(e) = r {
                    st.on_end(&e);
                }
            }
        }
        let ids: Vec<u64> = st.recent().map(|e| e.end.session).collect();
        assert_eq!(ids, (3..=52).rev().collect::<Vec<_>>());
        assert_eq!(st.recent().next().unwrap().hists.write_lat.q.count, 1);
        assert_eq!(st.run.io.write_lat_us.len(), 52);
        assert_eq!(st.run.cow_per_interval.len(), 0);
        assert_eq!(st.ended, 52);
    }
}
