//! `cowtrace serve`: the agent for fleets. The same kernel side and event loop as
//! `record`; the records feed Prometheus metrics (`metrics`), served over HTTP (`http`),
//! and each ended session can also be kept as its own trace (`tracedir`).
//!
//! [`Exporter`] is pure: it turns records and the agent's own figures into metric
//! updates, so it is tested without a kernel or a socket.
pub mod http;
pub mod metrics;
pub mod tracedir;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use metrics::{MapName, Metrics, Save, SaveCause, SaveOutcome, SaveSide, Server};

use crate::trace::schema::{IoEvent, Meta, Record, SessionEnd};

/// What is counted of a session still running, so that the counters move with each
/// sample and the session's end adds only the rest.
#[derive(Debug, Clone)]
struct Open {
    save: Save,
    parent_bytes: u64,
    child_bytes: u64,
    written: u64,
    disk: u64,
    /// Its last sample showed a stall (a new one counts once).
    stalled: bool,
}

/// The agent's own figures, read once an interval.
#[derive(Debug, Clone, Default)]
pub struct AgentFigures {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub lost_events: u64,
    pub decode_errors: u64,
    /// Kernel-side failures so far (failed map inserts), by map name.
    pub kernel_errors: Vec<(String, u64)>,
    /// Entries of each kernel map.
    pub maps: Vec<(String, u64)>,
}

/// Records in, metric updates out.
pub struct Exporter {
    m: Metrics,
    open: HashMap<u64, Open>,
    /// Last absolute values seen, to turn them into counter increments.
    seen: AgentFigures,
    pub trace_dir: Option<tracedir::TraceDir>,
    /// Where the metrics are served (for messages).
    pub listen: String,
    /// Set once every program is attached (`/healthz` says so).
    pub ready: Arc<AtomicBool>,
}

const PAGE: u64 = 4096;

/// `ok`, `failed`, `killed` or `oom`; None for a session the agent stopped watching
/// before it ended (not a save's outcome).
pub fn outcome(e: &SessionEnd) -> Option<&'static str> {
    if !e.complete {
        return None;
    }
    if e.oom_kill.is_some() {
        return Some("oom");
    }
    Some(match (e.exit_code, e.exit_signal) {
        (Some(0), _) => "ok",
        (_, Some(_)) => "killed",
        _ => "failed",
    })
}

impl Exporter {
    pub fn new(m: Metrics, trace_dir: Option<tracedir::TraceDir>) -> Self {
        Self {
            m,
            open: HashMap::new(),
            seen: AgentFigures::default(),
            trace_dir,
            listen: String::new(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Every program is attached: `/healthz` turns ok, and the session traces get the
    /// run's `meta` line.
    pub fn attached(&mut self, meta: Meta) {
        if let Some(d) = &mut self.trace_dir {
            d.set_meta(meta);
        }
        self.ready.store(true, Ordering::Relaxed);
    }

    fn side(save: &Save, side: &str) -> SaveSide {
        SaveSide {
            server: save.server.clone(),
            kind: save.kind.clone(),
            side: side.into(),
        }
    }

    /// Bring the counters of `open` up to these cumulative values.
    fn count_up(m: &Metrics, o: &mut Open, parent: u64, child: u64) {
        let d = parent.saturating_sub(o.parent_bytes);
        if d > 0 {
            m.cow_bytes
                .get_or_create(&Self::side(&o.save, "parent"))
                .inc_by(d);
        }
        let d = child.saturating_sub(o.child_bytes);
        if d > 0 {
            m.cow_bytes
                .get_or_create(&Self::side(&o.save, "child"))
                .inc_by(d);
        }
        o.parent_bytes = o.parent_bytes.max(parent);
        o.child_bytes = o.child_bytes.max(child);
    }

    pub fn on_record(&mut self, rec: &Record) {
        let m = &self.m;
        match rec {
            Record::SessionStart(s) => {
                let save = Save {
                    server: s
                        .instance
                        .clone()
                        .unwrap_or_else(|| format!("pid {}", s.parent_pid)),
                    kind: s.kind.as_str().to_string(),
                };
                m.in_progress.get_or_create(&save).inc();
                if s.slow_fork.is_some() {
                    m.slow_forks
                        .get_or_create(&Server {
                            server: save.server.clone(),
                        })
                        .inc();
                }
                if let Some(us) = s.fork_us {
                    m.last_fork_seconds
                        .get_or_create(&Server {
                            server: save.server.clone(),
                        })
                        .set(us / 1e6);
                    m.fork_seconds
                        .get_or_create(&Server {
                            server: save.server.clone(),
                        })
                        .observe(us / 1e6);
                }
                self.open.insert(
                    s.session,
                    Open {
                        save,
                        parent_bytes: 0,
                        child_bytes: 0,
                        written: 0,
                        disk: 0,
                        stalled: false,
                    },
                );
            }
            Record::Sample(s) => {
                if let Some(o) = self.open.get_mut(&s.session) {
                    Self::count_up(m, o, s.parent_pages * PAGE, s.child_pages * PAGE);
                    m.written_bytes.get_or_create(&o.save).inc_by(s.write_bytes);
                    m.disk_bytes.get_or_create(&o.save).inc_by(s.disk_bytes);
                    o.written = o.written.saturating_add(s.write_bytes);
                    o.disk = o.disk.saturating_add(s.disk_bytes);
                    m.current_cow_bytes
                        .get_or_create(&o.save)
                        .set(i64::try_from(s.cow_bytes).unwrap_or(i64::MAX));
                    m.current_cow_rate
                        .get_or_create(&o.save)
                        .set(s.cow_pages_per_s * PAGE as f64);
                    m.stalled_seconds
                        .get_or_create(&o.save)
                        .set(s.stall.as_ref().map_or(0.0, |st| st.for_ms as f64 / 1000.0));
                    if s.stall.is_some() && !o.stalled {
                        m.stalls.get_or_create(&o.save).inc();
                    }
                    o.stalled = s.stall.is_some();
                    if let Some(p) = &s.projection {
                        m.projected_peak_ratio
                            .get_or_create(&o.save)
                            .set(p.pct_of_limit / 100.0);
                        m.projected_seconds_left
                            .get_or_create(&o.save)
                            .set(p.seconds_left.unwrap_or(0.0));
                    }
                }
            }
            Record::SessionEnd(e) => self.on_end(e),
            _ => {}
        }
        if let Some(d) = &mut self.trace_dir
            && let Err(err) = d.on_record(rec)
        {
            self.m.trace_dir_errors.inc();
            log::warn!("--trace-dir: {err}");
        }
    }

    fn on_end(&mut self, e: &SessionEnd) {
        let m = &self.m;
        let save = Save {
            server: e.instance_name(),
            kind: e.kind.as_str().to_string(),
        };
        let mut o = match self.open.remove(&e.session) {
            Some(o) => o,
            // Its start was not seen (the agent started mid-session): counted from zero.
            None => {
                m.in_progress.get_or_create(&save).inc();
                Open {
                    save: save.clone(),
                    parent_bytes: 0,
                    child_bytes: 0,
                    written: 0,
                    disk: 0,
                    stalled: false,
                }
            }
        };
        if o.save != save {
            // Classified after its start: its gauges were under the start's kind.
            m.in_progress.get_or_create(&o.save).dec();
            m.in_progress.get_or_create(&save).inc();
            m.current_cow_bytes.get_or_create(&o.save).set(0);
            m.current_cow_rate.get_or_create(&o.save).set(0.0);
            m.stalled_seconds.get_or_create(&o.save).set(0.0);
            o.save = save.clone();
        }
        Self::count_up(m, &mut o, e.cow.parent_bytes, e.cow.child_bytes);
        m.written_bytes
            .get_or_create(&save)
            .inc_by(e.writes.bytes.saturating_sub(o.written));
        m.disk_bytes
            .get_or_create(&save)
            .inc_by(e.disk.bytes.saturating_sub(o.disk));
        m.sync_calls.get_or_create(&save).inc_by(e.fsync.calls);
        if let Some(c) = &e.causes {
            for row in c.by_cause.iter().filter(|r| r.copies > 0) {
                m.cause_bytes
                    .get_or_create(&SaveCause {
                        server: save.server.clone(),
                        kind: save.kind.clone(),
                        cause: row.cause.clone(),
                    })
                    .inc_by(row.copies * PAGE);
            }
        }
        if let Some(sent) = &e.sent {
            m.sent_bytes.get_or_create(&save).inc_by(sent.bytes);
        }
        m.in_progress.get_or_create(&save).dec();
        m.current_cow_bytes.get_or_create(&save).set(0);
        m.current_cow_rate.get_or_create(&save).set(0.0);
        m.projected_peak_ratio.get_or_create(&save).set(0.0);
        m.projected_seconds_left.get_or_create(&save).set(0.0);
        m.stalled_seconds.get_or_create(&save).set(0.0);
        if let Some(pct) = e.memory.as_ref().and_then(|m| m.peak_pct()) {
            m.last_peak_ratio
                .get_or_create(&Server {
                    server: save.server.clone(),
                })
                .set(pct / 100.0);
        }
        let cow = e.cow_bytes_with_estimate();
        if let Some(outcome) = outcome(e) {
            m.saves
                .get_or_create(&SaveOutcome {
                    server: save.server.clone(),
                    kind: save.kind.clone(),
                    outcome: outcome.into(),
                })
                .inc();
            m.save_seconds
                .get_or_create(&save)
                .observe(e.duration_ms as f64 / 1000.0);
            m.save_cow_bytes.get_or_create(&save).observe(cow as f64);
            m.last_cow_bytes
                .get_or_create(&save)
                .set(i64::try_from(cow).unwrap_or(i64::MAX));
        }
    }

    /// A server cowtrace traces: its per-server series exist from now on, at zero, so
    /// that `rate()` and `increase()` see its first fork and its first save.
    pub fn on_server(&mut self, server: &str) {
        let l = Server {
            server: server.to_string(),
        };
        let _ = self.m.fork_seconds.get_or_create(&l);
        for kind in ["rdb-bgsave", "aof-rewrite"] {
            let save = Save {
                server: server.to_string(),
                kind: kind.to_string(),
            };
            let _ = self.m.save_seconds.get_or_create(&save);
            let _ = self.m.save_cow_bytes.get_or_create(&save);
            let _ = self.m.written_bytes.get_or_create(&save);
            let _ = self.m.disk_bytes.get_or_create(&save);
            let _ = self.m.in_progress.get_or_create(&save);
            for side in ["parent", "child"] {
                let _ = self.m.cow_bytes.get_or_create(&Self::side(&save, side));
            }
            let _ = self.m.saves.get_or_create(&SaveOutcome {
                server: server.to_string(),
                kind: kind.to_string(),
                outcome: "ok".into(),
            });
        }
    }

    /// A detail event: write and sync latencies.
    pub fn on_event(&mut self, rec: &Record) {
        let (ev, hist): (&IoEvent, _) = match rec {
            Record::Write(ev) => (ev, &self.m.write_latency),
            Record::Fsync(ev) => (ev, &self.m.sync_latency),
            _ => return,
        };
        let Some(o) = ev.session.and_then(|s| self.open.get(&s)) else {
            return;
        };
        hist.get_or_create(&Server {
            server: o.save.server.clone(),
        })
        .observe(ev.latency_us / 1e6);
    }

    /// The agent's own figures (once an interval).
    pub fn on_agent(&mut self, a: AgentFigures) {
        let m = &self.m;
        let cpu = a.cpu_seconds - self.seen.cpu_seconds;
        if cpu > 0.0 {
            m.agent_cpu.inc_by(cpu);
        }
        m.agent_rss
            .set(i64::try_from(a.rss_bytes).unwrap_or(i64::MAX));
        m.lost_events
            .inc_by(a.lost_events.saturating_sub(self.seen.lost_events));
        m.decode_errors
            .inc_by(a.decode_errors.saturating_sub(self.seen.decode_errors));
        for (name, n) in &a.kernel_errors {
            let before = self
                .seen
                .kernel_errors
                .iter()
                .find(|(s, _)| s == name)
                .map_or(0, |(_, v)| *v);
            m.kernel_errors
                .get_or_create(&MapName { map: name.clone() })
                .inc_by(n.saturating_sub(before));
        }
        for (name, n) in &a.maps {
            m.map_entries
                .get_or_create(&MapName { map: name.clone() })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.seen = AgentFigures {
            cpu_seconds: a.cpu_seconds.max(self.seen.cpu_seconds),
            lost_events: a.lost_events.max(self.seen.lost_events),
            decode_errors: a.decode_errors.max(self.seen.decode_errors),
            ..a
        };
    }

    /// A server's memory limit and usage (sampled while its saves run).
    pub fn on_memory(&mut self, server: &str, limit: u64, usage: u64) {
        let i = Server {
            server: server.to_string(),
        };
        self.m
            .memory_limit
            .get_or_create(&i)
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
        self.m
            .memory_usage
            .get_or_create(&i)
            .set(i64::try_from(usage).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::{Sample, SessionKind, SessionStart};

    fn exporter() -> (Exporter, prometheus_client::registry::Registry) {
        let (m, r) = Metrics::new();
        (Exporter::new(m, None), r)
    }

    fn start(id: u64, kind: SessionKind) -> Record {
        Record::SessionStart(SessionStart {
            session: id,
            instance: Some("10.0.0.1:6379".into()),
            parent_pid: 100,
            child_pid: 100 + id as u32,
            kind,
            fork_us: Some(2500.0),
            ..Default::default()
        })
    }

    fn sample(id: u64, parent_pages: u64, written: u64) -> Record {
        Record::Sample(Sample {
            session: id,
            parent_pages,
            cow_pages: parent_pages,
            cow_bytes: parent_pages * 4096,
            cow_pages_per_s: 1000.0,
            write_bytes: written,
            disk_bytes: written,
            ..Default::default()
        })
    }

    fn end(
        id: u64,
        kind: SessionKind,
        parent_pages: u64,
        child_pages: u64,
        code: Option<i32>,
    ) -> Record {
        let mut e = SessionEnd {
            session: id,
            instance: Some("10.0.0.1:6379".into()),
            parent_pid: 100,
            child_pid: 100 + id as u32,
            kind,
            duration_ms: 1500,
            complete: true,
            exit_code: code,
            exit_signal: if code.is_none() { Some(9) } else { None },
            ..Default::default()
        };
        e.cow.parent_bytes = parent_pages * 4096;
        e.cow.child_bytes = child_pages * 4096;
        e.cow.bytes = (parent_pages + child_pages) * 4096;
        e.writes.bytes = 10_000;
        e.disk.bytes = 12_000;
        e.fsync.calls = 3;
        Record::SessionEnd(Box::new(e))
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    const L: &str = "{server=\"10.0.0.1:6379\",kind=\"rdb-bgsave\"";

    #[test]
    fn causes_are_counted_by_cause_and_only_when_there() {
        use crate::trace::ledger::{CauseShare, Causes};
        let (mut x, r) = exporter();
        x.on_record(&start(1, SessionKind::RdbBgsave));
        let Record::SessionEnd(mut e) = end(1, SessionKind::RdbBgsave, 100, 0, Some(0)) else {
            unreachable!()
        };
        let row = |cause: &str, copies| CauseShare {
            cause: cause.into(),
            kind: "command".into(),
            copies,
            share_pct: copies as f64,
        };
        e.causes = Some(Causes {
            copies: 100,
            by_cause: vec![row("SET", 97), row("expiry", 3), row("other", 0)],
            note: None,
        });
        x.on_record(&Record::SessionEnd(e));
        // Without --causes a session has none: no series, no zero.
        x.on_record(&start(2, SessionKind::RdbBgsave));
        x.on_record(&end(2, SessionKind::RdbBgsave, 50, 0, Some(0)));
        let text = metrics::openmetrics(&r);
        let series = "cowtrace_save_parent_cow_by_cause_bytes_total{server=\"10.0.0.1:6379\",kind=\"rdb-bgsave\",cause=";
        assert_eq!(value(&text, &format!("{series}\"SET\"}}")), 97.0 * 4096.0);
        assert_eq!(value(&text, &format!("{series}\"expiry\"}}")), 3.0 * 4096.0);
        assert!(!text.contains("cause=\"other\""), "{text}");
    }

    #[test]
    fn stalls_and_slow_forks_are_flagged() {
        let (mut x, r) = exporter();
        let Record::SessionStart(mut st) = start(1, SessionKind::RdbBgsave) else {
            unreachable!()
        };
        st.slow_fork = Some(crate::trace::schema::SlowFork::default());
        x.on_record(&Record::SessionStart(st));
        let stalled = |ms| {
            let Record::Sample(mut s) = sample(1, 10, 0) else {
                unreachable!()
            };
            s.stall = Some(crate::trace::schema::Stall {
                for_ms: ms,
                ..Default::default()
            });
            Record::Sample(s)
        };
        x.on_record(&stalled(2500));
        x.on_record(&stalled(3500));
        let t = metrics::openmetrics(&r);
        assert_eq!(
            value(&t, &format!("cowtrace_save_stalled_seconds{L}}}")),
            3.5
        );
        assert_eq!(value(&t, &format!("cowtrace_save_stalls_total{L}}}")), 1.0);
        assert_eq!(
            value(&t, "cowtrace_slow_forks_total{server=\"10.0.0.1:6379\"}"),
            1.0
        );
        // Progress clears the gauge; a second stall counts again.
        x.on_record(&sample(1, 10, 100));
        let t = metrics::openmetrics(&r);
        assert_eq!(
            value(&t, &format!("cowtrace_save_stalled_seconds{L}}}")),
            0.0
        );
        x.on_record(&stalled(2000));
        x.on_record(&end(1, SessionKind::RdbBgsave, 10, 0, Some(0)));
        let t = metrics::openmetrics(&r);
        assert_eq!(value(&t, &format!("cowtrace_save_stalls_total{L}}}")), 2.0);
        assert_eq!(
            value(&t, &format!("cowtrace_save_stalled_seconds{L}}}")),
            0.0
        );
    }

    #[test]
    fn counters_move_with_samples_and_end_at_the_sessions_totals() {
        let (mut x, r) = exporter();
        x.on_record(&start(1, SessionKind::RdbBgsave));
        x.on_record(&sample(1, 100, 4000));
        let t = metrics::openmetrics(&r);
        assert_eq!(
            value(
                &t,
                &format!("cowtrace_cow_bytes_total{L},side=\"parent\"}}")
            ),
            409_600.0
        );
        assert_eq!(value(&t, &format!("cowtrace_save_in_progress{L}}}")), 1.0);
        assert_eq!(
            value(&t, &format!("cowtrace_save_current_cow_bytes{L}}}")),
            409_600.0
        );
        x.on_record(&sample(1, 150, 4000));
        x.on_record(&end(1, SessionKind::RdbBgsave, 160, 5, Some(0)));
        let t = metrics::openmetrics(&r);
        assert_eq!(
            value(
                &t,
                &format!("cowtrace_cow_bytes_total{L},side=\"parent\"}}")
            ),
            160.0 * 4096.0
        );
        assert_eq!(
            value(&t, &format!("cowtrace_cow_bytes_total{L},side=\"child\"}}")),
            5.0 * 4096.0
        );
        assert_eq!(
            value(&t, &format!("cowtrace_save_written_bytes_total{L}}}")),
            10_000.0
        );
        assert_eq!(
            value(&t, &format!("cowtrace_save_disk_bytes_total{L}}}")),
            12_000.0
        );
        assert_eq!(
            value(&t, &format!("cowtrace_save_sync_calls_total{L}}}")),
            3.0
        );
        assert_eq!(
            value(&t, &format!("cowtrace_saves_total{L},outcome=\"ok\"}}")),
            1.0
        );
        assert_eq!(value(&t, &format!("cowtrace_save_in_progress{L}}}")), 0.0);
        assert_eq!(
            value(&t, &format!("cowtrace_last_save_cow_bytes{L}}}")),
            165.0 * 4096.0
        );
        assert_eq!(
            value(&t, &format!("cowtrace_save_duration_seconds_count{L}}}")),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "cowtrace_fork_duration_seconds_sum{server=\"10.0.0.1:6379\"}"
            ),
            0.0025
        );
    }

    #[test]
    fn a_kind_known_only_at_the_end_moves_the_gauges() {
        let (mut x, r) = exporter();
        x.on_record(&start(1, SessionKind::Fork));
        x.on_record(&end(1, SessionKind::RdbBgsave, 1, 0, None));
        let t = metrics::openmetrics(&r);
        assert_eq!(
            value(
                &t,
                "cowtrace_save_in_progress{server=\"10.0.0.1:6379\",kind=\"fork\"}"
            ),
            0.0
        );
        assert_eq!(value(&t, &format!("cowtrace_save_in_progress{L}}}")), 0.0);
        assert_eq!(
            value(&t, &format!("cowtrace_saves_total{L},outcome=\"killed\"}}")),
            1.0
        );
    }

    #[test]
    fn a_thousand_saves_keep_the_series_bounded() {
        let (mut x, r) = exporter();
        let series = |r: &prometheus_client::registry::Registry| {
            metrics::openmetrics(r)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count()
        };
        for id in 1..=10 {
            x.on_record(&start(id, SessionKind::RdbBgsave));
            x.on_record(&sample(id, 10, 100));
            x.on_record(&end(id, SessionKind::RdbBgsave, 10, 1, Some(0)));
        }
        let after_ten = series(&r);
        for id in 11..=1000 {
            x.on_record(&start(id, SessionKind::RdbBgsave));
            x.on_record(&sample(id, 10, 100));
            x.on_record(&end(id, SessionKind::RdbBgsave, 10, 1, Some(0)));
        }
        assert_eq!(series(&r), after_ten, "no series per save");
        assert!(x.open.is_empty());
    }

    #[test]
    fn agent_figures_become_counters_and_gauges() {
        let (mut x, r) = exporter();
        x.on_agent(AgentFigures {
            cpu_seconds: 1.5,
            rss_bytes: 30 << 20,
            lost_events: 4,
            decode_errors: 0,
            kernel_errors: vec![("SESSIONS".into(), 1)],
            maps: vec![("traced".into(), 3)],
        });
        x.on_agent(AgentFigures {
            cpu_seconds: 2.0,
            rss_bytes: 31 << 20,
            lost_events: 6,
            decode_errors: 0,
            kernel_errors: vec![("SESSIONS".into(), 3)],
            maps: vec![("traced".into(), 2)],
        });
        let t = metrics::openmetrics(&r);
        assert_eq!(value(&t, "cowtrace_agent_cpu_seconds_total"), 2.0);
        assert_eq!(value(&t, "cowtrace_lost_events_total"), 6.0);
        assert_eq!(
            value(&t, "cowtrace_agent_resident_memory_bytes"),
            f64::from(31u32 << 20)
        );
        assert_eq!(value(&t, "cowtrace_map_entries{map=\"traced\"}"), 2.0);
        assert_eq!(
            value(&t, "cowtrace_kernel_errors_total{map=\"SESSIONS\"}"),
            3.0
        );
    }
}

#[cfg(test)]
mod trace_dir_tests {
    use super::*;
    use crate::trace::schema::{SessionKind, SessionStart};

    #[test]
    fn an_unwritable_trace_dir_is_counted_and_serving_goes_on() {
        let (m, r) = Metrics::new();
        let d = tracedir::TraceDir::new(std::path::PathBuf::from("/proc/no-such-dir"), 5);
        let mut x = Exporter::new(m, Some(d));
        for id in 1..=2 {
            x.on_record(&Record::SessionStart(SessionStart {
                session: id,
                instance: Some("s".into()),
                kind: SessionKind::RdbBgsave,
                ..Default::default()
            }));
            x.on_record(&Record::SessionEnd(Box::new(SessionEnd {
                session: id,
                instance: Some("s".into()),
                kind: SessionKind::RdbBgsave,
                complete: true,
                exit_code: Some(0),
                ..Default::default()
            })));
        }
        let t = metrics::openmetrics(&r);
        assert!(t.contains("cowtrace_trace_dir_errors_total 2\n"), "{t}");
        assert!(
            t.contains("cowtrace_saves_total{server=\"s\",kind=\"rdb-bgsave\",outcome=\"ok\"} 2\n"),
            "the metrics go on: {t}"
        );
    }
}
