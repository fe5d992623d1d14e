//! The `watch` lines (when stdout is not a terminal, or `--plain`): one when a session
//! starts and ends, and one per interval for each running session. Every line names the
//! server (`instance`); sizes and rates are IEC (MiB, MiB/s).
use crate::{
    live::store::IntervalRow,
    text::{
        exit::exit_text,
        sent::sent_text,
        stall,
        sync::sync_counts,
        units::{fmt_bytes, fmt_rate},
    },
    trace::schema::{MidSave, Record, SessionEnd, SessionKind},
};

/// How lines are stamped: seconds since the start of the run, or with `-T` the
/// wall-clock time (`HH:MM:SS`, local time), as bcc's tools do.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start_ns: u64,
    /// Wall-clock ms at `start_ns`, when `-T` was given.
    pub wall_start_ms: Option<u64>,
}

impl Clock {
    pub fn relative(start_ns: u64) -> Self {
        Self {
            start_ns,
            wall_start_ms: None,
        }
    }

    fn stamp(&self, ts_ns: u64) -> String {
        let since_ns = ts_ns.saturating_sub(self.start_ns);
        match self.wall_start_ms {
            None => format!("{:>8.3}s", since_ns as f64 / 1e9),
            Some(ms) => local_hms((ms + since_ns / 1_000_000) / 1000),
        }
    }
}

/// `HH:MM:SS` of a Unix time in the local time zone.
fn local_hms(unix_s: u64) -> String {
    // libc deprecates `time_t` on musl because it is 32-bit on musl's 32-bit targets
    // before musl 1.2; on x86-64 (the static release) it is 64-bit.
    #[allow(deprecated)]
    let t = unix_s as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{unix_s}");
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `; attached mid-save after 3.0s: before it COW ≈120.5 MiB, wrote ≈40.0 MiB (estimates)`
fn mid_save_text(m: &MidSave) -> String {
    let est = |v: Option<u64>| v.map_or("?".into(), |b| format!("≈{}", fmt_bytes(b)));
    format!(
        "; attached mid-save after {:.1}s: before it COW {}, wrote {} (estimates)",
        m.ran_ms as f64 / 1000.0,
        est(m.cow_bytes_estimate),
        est(m.written_bytes_estimate)
    )
}

/// The COW of an ended session: counted, or for a session attached mid-save the
/// estimate before the attach plus what was counted after it.
fn end_cow(e: &SessionEnd) -> String {
    let counted = format!(
        "{} ({} pages: parent {}, child {})",
        fmt_bytes(e.cow.bytes),
        e.cow.pages,
        e.cow.parent_pages,
        e.cow.child_pages
    );
    match e
        .attached_mid_save
        .as_ref()
        .and_then(|m| m.cow_bytes_estimate)
    {
        None => counted,
        Some(est) => format!(
            "≈{} = ≈{} before attach (estimate) + {counted} counted",
            fmt_bytes(e.cow_bytes_with_estimate()),
            fmt_bytes(est)
        ),
    }
}

/// `{lead}35% of the parent's RSS at fork (358.0 MiB)`: a share always names its base.
/// Empty without a percentage.
fn pct_of_rss_at_fork(
    pct: Option<f64>,
    rss: Option<u64>,
    lead: &str,
    fmt: impl Fn(f64) -> String,
) -> String {
    let Some(p) = pct else {
        return String::new();
    };
    let base = rss.map_or(String::new(), |r| format!(" ({})", fmt_bytes(r)));
    format!("{lead}{}% of the parent's RSS at fork{base}", fmt(p))
}

/// One line per session start and end (the `watch` view when stdout is not a terminal).
pub fn watch_line(rec: &Record, clock: &Clock) -> Option<String> {
    match rec {
        Record::SessionStart(s) => Some(format!(
            "{} START session {} {:<11} {} parent {} child {} fork {}{}{}{}",
            clock.stamp(s.ts_ns.max(clock.start_ns)),
            s.session,
            s.kind.as_str(),
            s.instance.as_deref().unwrap_or("?"),
            s.parent_pid,
            s.child_pid,
            s.fork_us
                .map_or("?".into(), |us| format!("{:.1} ms", us / 1000.0)),
            s.parent_rss_bytes
                .map_or(String::new(), |r| format!(", parent RSS {}", fmt_bytes(r))),
            s.attached_mid_save
                .as_ref()
                .map_or(String::new(), mid_save_text),
            s.slow_fork
                .as_ref()
                .map_or(String::new(), stall::slow_fork_mark),
        )),
        // A session still running when cowtrace stops is not an end: say so.
        Record::SessionEnd(e) if !e.complete => Some(format!(
            "{} STOP  session {} {:<11} {} child {} still running when cowtrace stopped, after {:.2}s: COW {}; wrote {} in {} file(s)",
            clock.stamp(e.ts_ns),
            e.session,
            e.kind.as_str(),
            e.instance_name(),
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            end_cow(e),
            fmt_bytes(e.writes.bytes),
            e.writes.files.len(),
        )),
        Record::SessionEnd(e) => Some(format!(
            "{} END   session {} {:<11} {} child {} after {:.2}s, {}: COW {}{}, reuse faults {}; wrote {} in {} file(s), {}, disk {}{}{}{}{}",
            clock.stamp(e.ts_ns),
            e.session,
            e.kind.as_str(),
            e.instance_name(),
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            exit_text(e.complete, e.exit_code, e.exit_signal),
            end_cow(e),
            pct_of_rss_at_fork(
                e.cow.pct_of_parent_rss,
                e.cow.parent_rss_at_fork_bytes,
                " = ",
                |p| format!("{p:.1}")
            ),
            e.cow.reuse_faults,
            fmt_bytes(e.writes.bytes),
            e.writes.files.len(),
            sync_counts(e.fsync.calls, e.fsync.calls_by_call()),
            fmt_bytes(e.disk.bytes),
            sent_text(e).map_or(String::new(), |t| format!("; {t}")),
            e.causes.as_ref().map_or(String::new(), |c| format!(
                "; causes {}",
                crate::text::causes::causes_brief(c, 3)
            )),
            e.stall
                .as_ref()
                .map_or(String::new(), stall::stall_end_mark),
            e.main_thread.as_ref().map_or(String::new(), |m| format!(
                "; {}",
                crate::text::latency::brief(m, e.duration_ms)
            )),
        )),
        _ => None,
    }
}

/// One `watch --plain` line per live session at the end of each interval.
/// A running save's projected peak, for the end of its interval line: `  projected
/// peak 412.0 MiB of 512.0 MiB limit (80.5%), ~12.0 s left`, marked `WARNING` from 80%
/// and `DANGER` from 95%.
pub fn projection_text(p: &crate::trace::schema::Projection) -> String {
    let mark = match p.pct_of_limit {
        x if x >= 95.0 => "DANGER ",
        x if x >= 80.0 => "WARNING ",
        _ => "",
    };
    let left = match p.seconds_left {
        Some(s) => format!(", ~{s:.1} s left"),
        None => " (worst case: every page copied)".to_string(),
    };
    format!(
        "  {mark}projected peak {} of {} limit ({:.1}%){left}",
        fmt_bytes(p.peak_bytes),
        fmt_bytes(p.limit_bytes),
        p.pct_of_limit
    )
}

pub fn interval_line(r: &IntervalRow, clock: &Clock) -> String {
    let cow = match r.cow_estimate {
        None => fmt_bytes(r.cow_bytes),
        Some(est) => format!(
            "≈{} (≈{} estimated before attach)",
            fmt_bytes(r.cow_bytes.saturating_add(est)),
            fmt_bytes(est)
        ),
    };
    format!(
        "{} session {} {:<11} {}  COW {} (+{}){}  wrote {} ({})  disk {}  {}{}",
        clock.stamp(r.ts_ns),
        r.session,
        r.kind,
        r.instance,
        cow,
        fmt_rate(r.rates.cow),
        pct_of_rss_at_fork(r.pct_of_rss, r.rss_at_fork, " ", |p| if p < 9.95 {
            format!("{p:.1}")
        } else {
            format!("{p:.0}")
        }),
        fmt_bytes(r.written_bytes),
        fmt_rate(r.rates.write),
        fmt_rate(r.rates.disk),
        sync_counts(r.sync_calls.iter().sum(), Some(r.sync_calls)),
        sent_so_far(r.kind, r.sent_bytes),
    )
}

/// `  sent 12.0 MiB` for a replica sync (or any child that sent much) in an interval line.
fn sent_so_far(kind: &str, bytes: u64) -> String {
    if bytes > 0 && (kind == SessionKind::RdbReplica.as_str() || bytes >= 64 * 1024) {
        format!("  sent {}", fmt_bytes(bytes))
    } else {
        String::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use agent_common::CowCounters;

    use super::*;
    use crate::{
        events::timeline::Timeline,
        trace::schema::{
            DiskSummary, FsyncSummary, Quantiles, SessionKind, SessionStart, SyncByCall,
            SyncCallSummary, WritesSummary,
        },
    };

    /// A session end for the tests of the text outputs.
    pub(crate) fn end_rec() -> SessionEnd {
        let p = CowCounters {
            copies_4k: 256,
            copy_bytes: 1 << 20,
            wp_faults: 300,
            ..Default::default()
        };
        SessionEnd {
            session: 3,
            stall: None,
            slow_fork: None,
            main_thread: None,
            parent_pid: 10,
            child_pid: 11,
            kind: SessionKind::RdbBgsave,
            ts_ns: 2_500_000_000,
            duration_ms: 1500,
            exit_code: Some(0),
            exit_signal: None,
            complete: true,
            cow: Timeline::new(0).summary(&p, &CowCounters::default(), Some(4 << 20)),
            writes: WritesSummary {
                calls: 3,
                bytes: 3 << 20,
                files: vec![],
                latency_us: Quantiles::default(),
                size_bytes: Quantiles::default(),
            },
            fsync: FsyncSummary {
                calls: 1,
                total_ms: 1.0,
                latency_us: Quantiles::default(),
                by_call: Some(SyncByCall {
                    fdatasync: SyncCallSummary {
                        calls: 1,
                        total_ms: 1.0,
                        latency_us: Quantiles::default(),
                    },
                    ..Default::default()
                }),
            },
            disk: DiskSummary {
                bytes: 3 << 20,
                ios: 3,
                latency_us: Quantiles::default(),
            },
            instance: None,
            attached_mid_save: None,
            memory: None,
            oom_kill: None,
            projection_check: None,
            aof: None,
            sent: None,
            replication: None,
            causes: None,
            regions: None,
        }
    }

    #[test]
    fn projections_say_how_close_and_warn() {
        let mut p = crate::trace::schema::Projection {
            peak_bytes: 412 << 20,
            limit_bytes: 512 << 20,
            pct_of_limit: 80.5,
            seconds_left: Some(12.0),
            basis: "last save's output".into(),
        };
        assert_eq!(
            projection_text(&p),
            "  WARNING projected peak 412.0 MiB of 512.0 MiB limit (80.5%), ~12.0 s left"
        );
        p.pct_of_limit = 96.0;
        p.seconds_left = None;
        assert!(projection_text(&p).starts_with("  DANGER projected peak"));
        assert!(projection_text(&p).ends_with("(worst case: every page copied)"));
        p.pct_of_limit = 20.0;
        assert!(projection_text(&p).starts_with("  projected peak"));
    }

    #[test]
    fn lines() {
        let clock = Clock::relative(0);
        let start = Record::SessionStart(SessionStart {
            session: 3,
            instance: Some("db1:6379".into()),
            parent_pid: 10,
            child_pid: 11,
            kind: SessionKind::AofRewrite,
            ts_ns: 1_000_000_000,
            fork_us: Some(1500.0),
            title: None,
            parent_rss_bytes: Some(1 << 30),
            attached_mid_save: None,
            replication: None,
            slow_fork: None,
        });
        let l = watch_line(&start, &clock).unwrap();
        assert_eq!(
            l,
            "   1.000s START session 3 aof-rewrite db1:6379 parent 10 child 11 fork 1.5 ms, parent RSS 1.00 GiB"
        );
        let l = watch_line(&Record::SessionEnd(Box::new(end_rec())), &clock).unwrap();
        assert!(
            l.contains("END   session 3 rdb-bgsave  pid 10 child 11")
                && l.contains(
                    "COW 1.0 MiB (256 pages: parent 256, child 0) = 25.0% of the parent's RSS at fork (4.0 MiB), reuse"
                )
                && l.contains("wrote 3.0 MiB in 0 file(s), sync 1 (fdatasync 1), disk 3.0 MiB"),
            "{l}"
        );
        // Still running at the end: not an END.
        let cut = SessionEnd {
            complete: false,
            ..end_rec()
        };
        let l = watch_line(&Record::SessionEnd(Box::new(cut)), &clock).unwrap();
        assert!(
            l.contains("STOP  session 3") && l.contains("still running when cowtrace stopped"),
            "{l}"
        );
        assert!(!l.contains("END"), "{l}");
    }

    #[test]
    fn attached_mid_save_is_labelled_as_an_estimate() {
        let clock = Clock::relative(0);
        let mid = MidSave {
            ran_ms: 3000,
            cow_bytes_estimate: Some(100 << 20),
            cow_source: "smaps_rollup".into(),
            written_bytes_estimate: Some(40 << 20),
        };
        let start = Record::SessionStart(SessionStart {
            session: 1,
            instance: Some("/tmp/r.sock".into()),
            attached_mid_save: Some(mid.clone()),
            ..Default::default()
        });
        let l = watch_line(&start, &clock).unwrap();
        assert!(
            l.contains("/tmp/r.sock")
                && l.contains(
                    "attached mid-save after 3.0s: before it COW ≈100.0 MiB, wrote ≈40.0 MiB (estimates)"
                ),
            "{l}"
        );
        let end = SessionEnd {
            attached_mid_save: Some(mid),
            memory: None,
            oom_kill: None,
            projection_check: None,
            aof: None,
            causes: None,
            regions: None,
            sent: None,
            replication: None,
            ..end_rec()
        };
        let l = watch_line(&Record::SessionEnd(Box::new(end)), &clock).unwrap();
        assert!(
            l.contains("COW ≈101.0 MiB = ≈100.0 MiB before attach (estimate) + 1.0 MiB (256 pages"),
            "{l}"
        );
    }

    #[test]
    fn wall_clock_stamps() {
        let clock = Clock {
            start_ns: 5_000_000_000,
            wall_start_ms: Some(1_000_000),
        };
        let s = clock.stamp(7_000_000_000);
        assert_eq!(s.len(), 8, "{s}");
        assert_eq!(s.matches(':').count(), 2, "{s}");
    }

    #[test]
    fn interval_lines() {
        use crate::live::store::Rates;
        let clock = Clock::relative(0);
        let r = IntervalRow {
            session: 3,
            kind: "rdb-bgsave",
            instance: "db1:6379".into(),
            cow_estimate: None,
            ts_ns: 12_000_000_000,
            cow_bytes: 126_353_408,
            pct_of_rss: Some(35.2),
            rss_at_fork: Some(358 << 20),
            written_bytes: 84_095_795,
            sent_bytes: 40,
            sync_calls: [1, 0, 3],
            rates: Rates {
                cow: 12.1 * 1048576.0,
                write: 40.1e6,
                disk: 38.0e6,
            },
        };
        assert_eq!(
            interval_line(&r, &clock),
            "  12.000s session 3 rdb-bgsave  db1:6379  COW 120.5 MiB (+12.1 MiB/s) 35% of the parent's RSS at fork (358.0 MiB)  wrote 80.2 MiB (38.2 MiB/s)  disk 36.2 MiB/s  sync 4 (fsync 1, sync_file_range 3)"
        );
        let r = IntervalRow {
            pct_of_rss: None,
            cow_estimate: Some(1 << 20),
            ..r
        };
        let l = interval_line(&r, &clock);
        assert!(l.contains("MiB/s)  wrote"), "{l}");
        assert!(
            l.contains("COW ≈121.5 MiB (≈1.0 MiB estimated before attach)"),
            "{l}"
        );
        // A diskless sync says what it sent so far.
        let r = IntervalRow {
            kind: "rdb-replica",
            sent_bytes: 12 << 20,
            ..r
        };
        assert!(
            interval_line(&r, &clock)
                .ends_with("sync 4 (fsync 1, sync_file_range 3)  sent 12.0 MiB")
        );
    }
}
