//! Text for people: `watch` lines and the summary that ends every run.
use crate::record::{End, Record, SessionEnd};

pub fn fmt_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{b} B")
    }
}

/// Seconds since the start of the run, for line prefixes.
fn rel(ts_ns: u64, start_ns: u64) -> String {
    format!("{:>8.3}s", ts_ns.saturating_sub(start_ns) as f64 / 1e9)
}

fn exit_text(e: &SessionEnd) -> String {
    match (e.complete, e.exit_code, e.exit_signal) {
        (false, _, _) => "still running".into(),
        (_, Some(c), _) => format!("exit {c}"),
        (_, _, Some(s)) => format!("killed by signal {s}"),
        _ => "exit ?".into(),
    }
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
            s.fork_us.map_or("?".into(), |us| format!("{:.1} ms", us / 1000.0)),
            s.parent_rss_bytes.map_or(String::new(), |r| format!(", parent RSS {}", fmt_bytes(r))),
        )),
        Record::SessionEnd(e) => Some(format!(
            "{} END   session {} {:<11} child {} after {:.2}s, {}: COW {} ({} pages: parent {}, child {}){}, reuse faults {}; wrote {} in {} file(s), {} fsync, disk {}",
            rel(e.ts_ns, start_ns),
            e.session,
            e.kind.as_str(),
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            exit_text(e),
            fmt_bytes(e.cow.bytes),
            e.cow.pages,
            e.cow.parent_pages,
            e.cow.child_pages,
            e.cow.pct_of_parent_rss.map_or(String::new(), |p| format!(" = {p:.1}% of parent RSS")),
            e.cow.reuse_faults,
            fmt_bytes(e.writes.bytes),
            e.writes.files.len(),
            e.fsync.calls,
            fmt_bytes(e.disk.bytes),
        )),
        _ => None,
    }
}

/// Sessions listed by name in the end-of-run summary.
pub const SUMMARY_MAX_SESSIONS: usize = 20;

/// The summary printed at the end of every run.
pub fn summary(ends: &[SessionEnd], end: &End) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "cowtrace: {} session(s) in {:.1}s ({})\n",
        end.sessions,
        end.duration_ms as f64 / 1000.0,
        end.reason
    ));
    // A fork storm can make thousands of sessions: show the costliest ones.
    let mut shown: Vec<&SessionEnd> = ends.iter().collect();
    if shown.len() > SUMMARY_MAX_SESSIONS {
        shown.sort_by(|a, b| b.cow.bytes.cmp(&a.cow.bytes).then(a.session.cmp(&b.session)));
        shown.truncate(SUMMARY_MAX_SESSIONS);
        shown.sort_by_key(|e| e.session);
    }
    for e in &shown {
        s.push_str(&format!(
            "  session {:>3} {:<11} parent {:>7} child {:>7} {:>8.2}s  COW {:>10} ({:>6} pages{})  wrote {:>10}  disk {:>10}  {}\n",
            e.session,
            e.kind.as_str(),
            e.parent_pid,
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            fmt_bytes(e.cow.bytes),
            e.cow.pages,
            e.cow.pct_of_parent_rss.map_or(String::new(), |p| format!(", {p:.1}% of RSS")),
            fmt_bytes(e.writes.bytes),
            fmt_bytes(e.disk.bytes),
            exit_text(e),
        ));
    }
    if ends.len() > shown.len() {
        s.push_str(&format!(
            "  ... and {} more session(s) with less COW (all of them are in a `record` trace)\n",
            ends.len() - shown.len()
        ));
    }
    if end.lost_events > 0 || end.decode_errors > 0 {
        s.push_str(&format!(
            "  LOST EVENTS: {} COW, {} session (ring buffer full); totals above are exact, per-event detail is not; {} bad records\n",
            end.lost_cow_events, end.lost_session_events, end.decode_errors
        ));
    } else {
        s.push_str("  lost events: 0\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        classify::SessionKind,
        hist::Quantiles,
        record::{CowSummary, DiskSummary, FsyncSummary, SessionStart, WritesSummary},
        timeline::Timeline,
    };
    use agent_common::CowCounters;

    fn end_rec() -> SessionEnd {
        let p = CowCounters { copies_4k: 256, copy_bytes: 1 << 20, wp_faults: 300, ..Default::default() };
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
            cow: CowSummary::new(&p, &CowCounters::default(), Some(4 << 20), &Timeline::new(0)),
            writes: WritesSummary { calls: 3, bytes: 3 << 20, files: vec![], latency_us: Quantiles::default(), size_bytes: Quantiles::default() },
            fsync: FsyncSummary { calls: 1, total_ms: 1.0, latency_us: Quantiles::default() },
            disk: DiskSummary { bytes: 3 << 20, ios: 3, latency_us: Quantiles::default() },
        }
    }

    #[test]
    fn bytes() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(52 << 20), "52.0 MiB");
        assert_eq!(fmt_bytes(3 << 30), "3.00 GiB");
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
        assert_eq!(l, "   1.000s START session 3 aof-rewrite parent 10 child 11 fork 1.5 ms, parent RSS 1.00 GiB");
        let l = watch_line(&Record::SessionEnd(end_rec()), 0).unwrap();
        assert!(l.contains("END   session 3 rdb-bgsave") && l.contains("COW 1.0 MiB (256 pages: parent 256, child 0) = 25.0% of parent RSS"), "{l}");
    }

    #[test]
    fn summary_shows_losses() {
        let mut end = End {
            sessions: 1,
            lost_events: 0,
            lost_cow_events: 0,
            lost_session_events: 0,
            decode_errors: 0,
            ts_ns: 0,
            duration_ms: 2000,
            reason: "duration".into(),
            maps: Default::default(),
            agent_max_rss_bytes: None,
        };
        let s = summary(&[end_rec()], &end);
        assert!(s.contains("1 session(s) in 2.0s (duration)") && s.contains("lost events: 0"), "{s}");
        let many: Vec<SessionEnd> = (1..=25)
            .map(|i| SessionEnd { session: i, cow: CowSummary { bytes: i * 4096, ..end_rec().cow }, ..end_rec() })
            .collect();
        let text = summary(&many, &end);
        assert!(text.contains("... and 5 more session(s)"), "{text}");
        assert!(text.contains("session  25 ") && !text.contains("session   5 "), "{text}");
        end.lost_events = 5;
        end.lost_cow_events = 5;
        assert!(summary(&[], &end).contains("LOST EVENTS: 5 COW"));
    }
}
