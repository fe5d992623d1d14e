//! The `watch` lines (when stdout is not a terminal, or `--plain`): one when a session
//! starts and ends, and one per interval for each running session.
use crate::{
    live::store::IntervalRow,
    text::{exit::exit_text, units::fmt_bytes},
    trace::schema::Record,
};

/// Seconds since the start of the run, for line prefixes.
fn rel(ts_ns: u64, start_ns: u64) -> String {
    format!("{:>8.3}s", ts_ns.saturating_sub(start_ns) as f64 / 1e9)
}

/// One line per session start and end (the `watch` view when stdout is not a terminal).
pub fn watch_line(rec: &Record, start_ns: u64) -> Option<String> {
    match rec {
        Record::SessionStart(s) => Some(format!(
            "{} START session {} {:<11} parent {} child {} fork {}{}",
            rel(s.ts_ns, start_ns),
            s.session,
            s.kind.as_str(),
            s.parent_pid,
            s.child_pid,
            s.fork_us
                .map_or("?".into(), |us| format!("{:.1} ms", us / 1000.0)),
            s.parent_rss_bytes
                .map_or(String::new(), |r| format!(", parent RSS {}", fmt_bytes(r))),
        )),
        Record::SessionEnd(e) => Some(format!(
            "{} END   session {} {:<11} child {} after {:.2}s, {}: COW {} ({} pages: parent {}, child {}){}, reuse faults {}; wrote {} in {} file(s), {} fsync, disk {}",
            rel(e.ts_ns, start_ns),
            e.session,
            e.kind.as_str(),
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            exit_text(e.complete, e.exit_code, e.exit_signal),
            fmt_bytes(e.cow.bytes),
            e.cow.pages,
            e.cow.parent_pages,
            e.cow.child_pages,
            e.cow
                .pct_of_parent_rss
                .map_or(String::new(), |p| format!(" = {p:.1}% of parent RSS")),
            e.cow.reuse_faults,
            fmt_bytes(e.writes.bytes),
            e.writes.files.len(),
            e.fsync.calls,
            fmt_bytes(e.disk.bytes),
        )),
        _ => None,
    }
}

/// One `watch --plain` line per live session at the end of each interval.
pub fn interval_line(r: &IntervalRow, start_ns: u64) -> String {
    let rate = |b: f64| fmt_bytes(b.round() as u64);
    format!(
        "{} session {} {:<11} COW {} (+{}/s){}  wrote {} ({:.1} MB/s)  disk {:.1} MB/s  fsync {}",
        rel(r.ts_ns, start_ns),
        r.session,
        r.kind,
        fmt_bytes(r.cow_bytes),
        rate(r.rates.cow),
        r.pct_of_rss.map_or(String::new(), |p| if p < 9.95 {
            format!(" {p:.1}% RSS")
        } else {
            format!(" {p:.0}% RSS")
        }),
        fmt_bytes(r.written_bytes),
        r.rates.write / 1e6,
        r.rates.disk / 1e6,
        r.fsync_calls,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use agent_common::CowCounters;

    use super::*;
    use crate::{
        events::timeline::Timeline,
        trace::schema::{
            DiskSummary, FsyncSummary, Quantiles, SessionEnd, SessionKind, SessionStart,
            WritesSummary,
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
            },
            disk: DiskSummary {
                bytes: 3 << 20,
                ios: 3,
                latency_us: Quantiles::default(),
            },
        }
    }

    #[test]
    fn lines() {
        let start = Record::SessionStart(SessionStart {
            session: 3,
            parent_pid: 10,
            child_pid: 11,
            kind: SessionKind::AofRewrite,
            ts_ns: 1_000_000_000,
            fork_us: Some(1500.0),
            title: None,
            parent_rss_bytes: Some(1 << 30),
        });
        let l = watch_line(&start, 0).unwrap();
        assert_eq!(
            l,
            "   1.000s START session 3 aof-rewrite parent 10 child 11 fork 1.5 ms, parent RSS 1.00 GiB"
        );
        let l = watch_line(&Record::SessionEnd(Box::new(end_rec())), 0).unwrap();
        assert!(
            l.contains("END   session 3 rdb-bgsave")
                && l.contains("COW 1.0 MiB (256 pages: parent 256, child 0) = 25.0% of parent RSS"),
            "{l}"
        );
    }

    #[test]
    fn interval_lines() {
        use crate::live::store::Rates;
        let r = IntervalRow {
            session: 3,
            kind: "rdb-bgsave",
            ts_ns: 12_000_000_000,
            cow_bytes: 126_353_408,
            pct_of_rss: Some(35.2),
            written_bytes: 84_095_795,
            fsync_calls: 4,
            rates: Rates {
                cow: 12.1 * 1048576.0,
                write: 40.1e6,
                disk: 38.0e6,
            },
        };
        assert_eq!(
            interval_line(&r, 0),
            "  12.000s session 3 rdb-bgsave  COW 120.5 MiB (+12.1 MiB/s) 35% RSS  wrote 80.2 MiB (40.1 MB/s)  disk 38.0 MB/s  fsync 4"
        );
        let r = IntervalRow {
            pct_of_rss: None,
            ..r
        };
        assert!(interval_line(&r, 0).contains("MiB/s)  wrote"));
    }
}
