//! The live view's model: everything one screen shows, built from the tracker and the
//! store at each refresh. Plain data, so that rendering is a pure function of it and
//! the tests can build one by hand.
use agent_common::{SYNC_CALLS, SYNC_FDATASYNC, SYNC_FSYNC};

use crate::{
    events::{
        hist::Hist,
        session::{IoHists, Tracker},
    },
    live::store::{Rates, Store, pct_of_rss},
    text::{diagnosis::HostFacts, exit::exit_text, sync::DURABLE_LATENCY, units::Unit},
    trace::schema::{Quantiles, SessionKind},
};

/// A traced Redis process as the runner read it from /proc.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcInfo {
    pub pid: u32,
    /// The server's name (`procfs::sockets::instance_name`): `host:port`, a unix socket
    /// path, or `pid N`.
    pub instance: String,
    pub rss: Option<u64>,
}

/// What the runner knows besides the store and the tracker.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub version: &'static str,
    pub now_ns: u64,
    pub start_ns: u64,
    pub interval_ms: u64,
    /// `-p` given: the traced pids; empty: every Redis/Valkey server.
    pub pids: Vec<u32>,
    pub host: HostFacts,
    pub losses: Losses,
}

/// Events the kernel could not deliver and records that did not decode. Totals and
/// rates stay exact (they come from maps); histograms and event lines miss them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    pub detail_events: u64,
    pub session_events: u64,
    pub decode_errors: u64,
    /// Kernel-side failures (failed map inserts, `end.kernel_errors`): unlike lost
    /// events, these can lose a session or a process, totals included.
    pub kernel_errors: u64,
}

impl Losses {
    pub fn any(&self) -> bool {
        self.detail_events + self.session_events + self.decode_errors + self.kernel_errors > 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcRow {
    pub pid: u32,
    /// The server's name, as sessions and trace lines name it.
    pub instance: String,
    pub rss: Option<u64>,
    /// The saves it is running now: (kind, ms since the fork).
    pub saving: Vec<(String, u64)>,
}

/// A histogram as drawn: contiguous power-of-two buckets `(low, count)` from the
/// first non-empty one to the last (empty ones in between included), and quantiles.
#[derive(Debug, Clone, PartialEq)]
pub struct HistView {
    pub name: &'static str,
    pub unit: Unit,
    pub buckets: Vec<(u64, u64)>,
    pub q: Quantiles,
}

impl HistView {
    pub fn of(name: &'static str, unit: Unit, h: &Hist) -> Self {
        Self {
            name,
            unit,
            buckets: contiguous(&h.log2_buckets()),
            q: h.quantiles(),
        }
    }

    pub fn empty(name: &'static str, unit: Unit) -> Self {
        Self {
            name,
            unit,
            buckets: Vec::new(),
            q: Quantiles::default(),
        }
    }
}

/// Fill the gaps between non-empty power-of-two buckets with zero counts.
pub fn contiguous(b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(b.len());
    for &(lo, c) in b {
        if let Some(&(last, _)) = out.last() {
            let mut next = last.saturating_mul(2);
            while next < lo && next > last {
                out.push((next, 0));
                next = next.saturating_mul(2);
            }
        }
        out.push((lo, c));
    }
    out
}

/// The histograms drawn for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionHists {
    pub write_lat: HistView,
    pub write_size: HistView,
    /// `fsync` and `fdatasync`, which wait for the disk; `sync_file_range` is left out.
    pub sync_lat: HistView,
    pub disk_lat: HistView,
    pub cow_per_interval: HistView,
}

impl SessionHists {
    pub fn of(io: &IoHists, cow_per_interval: Option<&Hist>) -> Self {
        let mut durable = io.sync_lat_us[SYNC_FSYNC].clone();
        durable.merge(&io.sync_lat_us[SYNC_FDATASYNC]);
        Self {
            write_lat: HistView::of("write latency", Unit::Micros, &io.write_lat_us),
            write_size: HistView::of("write size", Unit::Bytes, &io.write_size),
            sync_lat: HistView::of(DURABLE_LATENCY, Unit::Micros, &durable),
            disk_lat: HistView::of("block I/O latency", Unit::Micros, &io.disk_lat_us),
            cow_per_interval: cow_per_interval.map_or_else(
                || HistView::empty(COW_HIST, Unit::Pages),
                |h| HistView::of(COW_HIST, Unit::Pages, h),
            ),
        }
    }
}

/// The histogram of pages copied per output interval (a count of 4 KiB pages).
pub const COW_HIST: &str = "COW pages/interval";

/// One session as the table and its detail show it. Every column means the same for a
/// running and an ended session: how long it ran (so far), totals, and rates averaged
/// over its run (so far); the last interval's rates of a running one are apart (`now`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: u64,
    pub kind: String,
    /// The server's name (`host:port`, a unix socket path, or `pid N`).
    pub instance: String,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub active: bool,
    /// `running`, or how it ended (`text::exit`): `exit 0`, `signal 9`.
    pub status: String,
    /// How long it ran: from the fork to now (running) or to its end.
    pub elapsed_ms: u64,
    /// Counted by cowtrace.
    pub cow_bytes: u64,
    /// For a session attached mid-save: the COW estimated before the attach (shown
    /// with `≈`, added to `cow_bytes` in the share and the average rate).
    pub cow_estimate: Option<u64>,
    /// Of the counted COW plus the estimate.
    pub pct_of_rss: Option<f64>,
    /// The parent's RSS at the fork: the base of `pct_of_rss`.
    pub rss_at_fork: Option<u64>,
    /// Averaged over `elapsed_ms`.
    pub rates: Rates,
    /// Over the last output interval, while it runs.
    pub now: Option<Rates>,
    /// Pages copied per interval, oldest first.
    pub series: Vec<u64>,
    pub written_bytes: u64,
    /// Sync calls per call (`IoCounters::sync_calls`).
    pub sync_calls: [u64; SYNC_CALLS],
    pub fork_us: Option<f64>,
    pub hists: SessionHists,
    /// An ended session's parent copies by cause, in words (`SET 96.1%, other 3.9%`).
    pub causes: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewModel {
    pub version: &'static str,
    pub pids: Vec<u32>,
    pub elapsed_ms: u64,
    pub interval_ms: u64,
    pub host: HostFacts,
    pub procs: Vec<ProcRow>,
    /// Live sessions (newest first), then recently ended ones (newest first).
    pub sessions: Vec<SessionRow>,
    pub fork_lat: HistView,
    pub losses: Losses,
    /// Sessions ended in the run, also the ones no longer listed.
    pub ended_total: u64,
}

impl ViewModel {
    pub fn active(&self) -> usize {
        self.sessions.iter().filter(|s| s.active).count()
    }

    /// The line shown when there is nothing to show yet, if any.
    pub fn waiting(&self) -> Option<String> {
        if self.procs.is_empty() && self.sessions.is_empty() {
            Some(if self.pids.is_empty() {
                "Waiting for a Redis or Valkey server to start…".into()
            } else {
                "The traced process has exited.".into()
            })
        } else if self.sessions.is_empty() {
            Some("No save yet: waiting for a BGSAVE, AOF rewrite or other fork…".into())
        } else {
            None
        }
    }
}

/// Build the model of one screen.
pub fn build(store: &Store, tracker: &Tracker, procs: &[ProcInfo], cx: &Context) -> ViewModel {
    let mut live: Vec<_> = tracker.live().collect();
    live.sort_by_key(|s| std::cmp::Reverse(s.id));
    let kind = |k: Option<SessionKind>| k.map_or("…", |k| k.as_str()).to_string();
    let mut sessions: Vec<SessionRow> = live
        .iter()
        .map(|s| {
            let cow_bytes = s.parent.copy_bytes + s.child.copy_bytes;
            let cow_estimate = s.mid_save.as_ref().and_then(|m| m.cow_bytes_estimate);
            let cow_total = cow_bytes.saturating_add(cow_estimate.unwrap_or(0));
            let elapsed_ms = cx.now_ns.saturating_sub(s.fork_ts_ns) / 1_000_000;
            SessionRow {
                id: s.id,
                kind: kind(s.effective_kind()),
                instance: s
                    .instance
                    .clone()
                    .unwrap_or_else(|| format!("pid {}", s.parent_pid)),
                parent_pid: s.parent_pid,
                child_pid: s.child_pid,
                active: true,
                status: "running".into(),
                elapsed_ms,
                cow_bytes,
                cow_estimate,
                pct_of_rss: pct_of_rss(cow_total, s.parent_rss),
                rss_at_fork: s.parent_rss,
                rates: Rates::average(cow_total, s.io.write_bytes, s.io.disk_bytes, elapsed_ms),
                now: Some(store.rates(s.id)),
                series: store.series(s.id),
                written_bytes: s.io.write_bytes,
                sync_calls: s.io.sync_calls,
                fork_us: s.fork_us,
                hists: SessionHists::of(&s.hists, store.cow_per_interval(s.id)),
                causes: None,
            }
        })
        .collect();
    sessions.extend(store.recent().map(|e| {
        SessionRow {
            id: e.end.session,
            kind: e.end.kind.as_str().to_string(),
            instance: e.end.instance_name(),
            parent_pid: e.end.parent_pid,
            child_pid: e.end.child_pid,
            active: false,
            status: exit_text(e.end.complete, e.end.exit_code, e.end.exit_signal),
            elapsed_ms: e.end.duration_ms,
            cow_bytes: e.end.cow.bytes,
            cow_estimate: e
                .end
                .attached_mid_save
                .as_ref()
                .and_then(|m| m.cow_bytes_estimate),
            pct_of_rss: e.end.cow.pct_of_parent_rss,
            rss_at_fork: e.end.cow.parent_rss_at_fork_bytes,
            rates: e.rates(),
            now: None,
            series: e.series.clone(),
            written_bytes: e.end.writes.bytes,
            sync_calls: e.end.fsync.calls_by_call().unwrap_or_default(),
            fork_us: e.fork_us,
            hists: e.hists.clone(),
            causes: e
                .end
                .causes
                .as_ref()
                .filter(|c| c.copies > 0)
                .map(|c| crate::text::causes::causes_brief(c, 3)),
        }
    }));
    let procs = procs
        .iter()
        .map(|p| {
            let mut saving: Vec<(String, u64)> = live
                .iter()
                .filter(|s| s.parent_pid == p.pid)
                .map(|s| {
                    (
                        kind(s.effective_kind()),
                        cx.now_ns.saturating_sub(s.fork_ts_ns) / 1_000_000,
                    )
                })
                .collect();
            saving.reverse(); // oldest first
            ProcRow {
                pid: p.pid,
                instance: p.instance.clone(),
                rss: p.rss,
                saving,
            }
        })
        .collect();
    ViewModel {
        version: cx.version,
        pids: cx.pids.clone(),
        elapsed_ms: cx.now_ns.saturating_sub(cx.start_ns) / 1_000_000,
        interval_ms: cx.interval_ms,
        host: cx.host.clone(),
        procs,
        sessions,
        fork_lat: HistView::of("fork latency (all)", Unit::Micros, &store.run.fork_us),
        losses: cx.losses,
        ended_total: store.ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{
        CowCounters, EV_EXIT, EV_FORK, EV_FORK_RET, EV_RESYNC, IoCounters, ProcEvent, RESYNC_NONE,
    };

    use crate::trace::schema::Record;

    fn ev(kind: u32, pid: u32, ppid: u32, ts: u64, value: u64) -> ProcEvent {
        ProcEvent::new(kind, pid, ppid, ts, value)
    }

    #[test]
    fn contiguous_fills_gaps() {
        assert_eq!(
            contiguous(&[(1, 3), (8, 1), (16, 2)]),
            vec![(1, 3), (2, 0), (4, 0), (8, 1), (16, 2)]
        );
        assert!(contiguous(&[]).is_empty());
    }

    #[test]
    fn model_lists_live_then_recent_and_marks_saving_processes() {
        const S: u64 = 1_000_000_000;
        let mut t = Tracker::new();
        let mut st = Store::new(S);
        // Session 1 (child 20) ends; session 2 (child 21) is running.
        for (pid, ts) in [(20, 0), (21, 5 * S)] {
            t.on_fork(&ev(EV_FORK, pid, 10, ts, 0));
            t.on_fork_ret(&ev(EV_FORK_RET, pid, 10, ts + 1, 1_500_000));
            t.observe_cmdline(
                pid,
                b"redis-rdb-bgsave *:6379",
                b"redis-server *:6379",
                ts + 2,
            );
            // The server's reply to BGSAVE: no replica sync.
            t.on_resync(&ev(EV_RESYNC, pid, 10, ts + 2, RESYNC_NONE));
            t.set_parent_rss(pid, 1 << 30);
        }
        for r in t.ready_starts(5 * S + 2) {
            let Record::SessionStart(s) = r else { panic!() };
            st.on_start(&s);
        }
        let mut exit = ev(EV_EXIT, 20, 10, 2 * S, 0);
        exit.cow_parent = CowCounters {
            copies_4k: 256,
            copy_bytes: 1 << 20,
            ..Default::default()
        };
        st.before_exit(&t, 20);
        for r in t.on_exit(&exit, &[]) {
            if let Record::SessionEnd(e) = r {
                st.on_end(&e);
            }
        }
        t.set_instance(21, "db1:6379".into());
        t.on_counters(
            21,
            6 * S,
            CowCounters {
                copy_bytes: 4 << 20,
                ..Default::default()
            },
            CowCounters::default(),
            IoCounters::default(),
        );
        st.on_interval(6 * S, &t);
        let cx = Context {
            version: "0.1.0",
            now_ns: 7 * S,
            start_ns: 0,
            interval_ms: 1000,
            ..Default::default()
        };
        let procs = [
            ProcInfo {
                pid: 10,
                instance: "db1:6379".into(),
                rss: Some(1 << 30),
            },
            ProcInfo {
                pid: 11,
                instance: "pid 11".into(),
                rss: None,
            },
        ];
        let vm = build(&st, &t, &procs, &cx);
        let ids: Vec<(u64, bool, &str)> = vm
            .sessions
            .iter()
            .map(|s| (s.id, s.active, s.status.as_str()))
            .collect();
        assert_eq!(ids, vec![(2, true, "running"), (1, false, "exit 0")]);
        let (live, ended) = (&vm.sessions[0], &vm.sessions[1]);
        assert_eq!(live.elapsed_ms, 2000);
        assert_eq!(live.cow_bytes, 4 << 20);
        assert_eq!(live.series, vec![1024]);
        assert!((live.pct_of_rss.unwrap() - 0.390625).abs() < 1e-9);
        assert_eq!(live.rss_at_fork, Some(1 << 30));
        // The same columns for both: rates are averages over the run (so far); the
        // running one's last interval is apart.
        assert_eq!(live.rates.cow, (4 << 20) as f64 / 2.0);
        assert_eq!(live.now.unwrap().cow, (4 << 20) as f64);
        assert_eq!(ended.elapsed_ms, 2000);
        assert_eq!(ended.rates.cow, (1 << 20) as f64 / 2.0);
        assert_eq!(ended.now, None);
        // The sessions are named by their server (`pid N` until the name is known).
        assert_eq!(
            (live.instance.as_str(), ended.instance.as_str()),
            ("db1:6379", "pid 10")
        );
        assert_eq!(vm.procs[0].instance, "db1:6379");
        assert_eq!(vm.procs[0].saving, vec![("rdb-bgsave".to_string(), 2000)]);
        assert!(vm.procs[1].saving.is_empty());
        assert_eq!(vm.fork_lat.q.count, 2);
        assert_eq!((vm.active(), vm.elapsed_ms, vm.waiting()), (1, 7000, None));
    }

    #[test]
    fn waiting_lines() {
        let cx = Context::default();
        let vm = build(&Store::new(1), &Tracker::new(), &[], &cx);
        assert!(vm.waiting().unwrap().starts_with("Waiting for a Redis"));
        let vm = build(
            &Store::new(1),
            &Tracker::new(),
            &[ProcInfo {
                pid: 1,
                ..Default::default()
            }],
            &cx,
        );
        assert!(vm.waiting().unwrap().starts_with("No save yet"));
    }
}
