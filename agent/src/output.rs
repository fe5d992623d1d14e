//! Text for people: `watch` lines and the summary that ends every run.
use crate::{
    diagnose::{HostFacts, diagnose},
    hist::Hist,
    record::{End, Record, SessionEnd},
    view::store::{IntervalRow, RunHists},
};

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
            exit_text(e),
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

/// Sessions listed by name in the end-of-run summary.
pub const SUMMARY_MAX_SESSIONS: usize = 20;

/// The ended sessions the end-of-run summary names: the costliest
/// [`SUMMARY_MAX_SESSIONS`] by COW bytes, in bounded memory however many sessions a
/// run has (a fork storm makes thousands), plus how many ended in all.
#[derive(Debug, Default)]
pub struct KeptEnds {
    kept: Vec<SessionEnd>,
    total: usize,
}

impl KeptEnds {
    pub fn push(&mut self, e: SessionEnd) {
        self.total += 1;
        self.kept.push(e);
        if self.kept.len() > SUMMARY_MAX_SESSIONS {
            // Drop the cheapest (the oldest among equals).
            let (i, _) = self
                .kept
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    a.cow
                        .bytes
                        .cmp(&b.cow.bytes)
                        .then(b.session.cmp(&a.session))
                })
                .expect("not empty");
            self.kept.remove(i);
        }
    }

    /// The kept sessions, in session order.
    pub fn sessions(&self) -> Vec<SessionEnd> {
        let mut v = self.kept.clone();
        v.sort_by_key(|e| e.session);
        v
    }

    /// Sessions ended in all, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// The summary printed at the end of every run.
pub fn summary(kept: &KeptEnds, end: &End) -> String {
    let ends = kept.sessions();
    let ends = ends.as_slice();
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
        shown.sort_by(|a, b| {
            b.cow
                .bytes
                .cmp(&a.cow.bytes)
                .then(a.session.cmp(&b.session))
        });
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
    if kept.total() > shown.len() {
        s.push_str(&format!(
            "  ... and {} more session(s) with less COW (all of them are in a `record` trace)\n",
            kept.total() - shown.len()
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

/// A histogram of power-of-two buckets `(low, count)` as bcc's tools print them
/// (`print_log2_hist` in libbpf-tools' trace_helpers.c): every bucket from 0 up to the
/// last non-empty one, `low -> high : count |stars|`.
pub fn log2_hist(val_type: &str, buckets: &[(u64, u64)]) -> String {
    let count_of = |i: u32| {
        buckets
            .iter()
            .find(|&&(lo, _)| lo.trailing_zeros() == i)
            .map_or(0, |b| b.1)
    };
    let Some(idx_max) = buckets
        .iter()
        .filter(|b| b.1 > 0)
        .map(|b| b.0.trailing_zeros())
        .max()
    else {
        return String::new();
    };
    let val_max = buckets.iter().map(|b| b.1).max().unwrap_or(0);
    let narrow = idx_max <= 32;
    let (pad, name_w, stars_w, num_w) = if narrow {
        (5, 19, 40, 10)
    } else {
        (15, 29, 20, 20)
    };
    let mut s = format!("{:pad$}{val_type:<name_w$} : count    distribution\n", "");
    for i in 0..=idx_max {
        let high = (1u128 << (i + 1)) - 1;
        let low = if i == 0 { 0 } else { 1u128 << i };
        let val = count_of(i);
        let stars = (val as u128 * stars_w as u128 / val_max.max(1) as u128) as usize;
        s.push_str(&format!(
            "{low:>num_w$} -> {high:<num_w$} : {val:<8} |{}{}|\n",
            "*".repeat(stars),
            " ".repeat(stars_w - stars)
        ));
    }
    s
}

/// One histogram with its name and quantiles, for the end of a `watch` run.
pub fn named_hist(name: &str, val_type: &str, h: &Hist) -> String {
    if h.is_empty() {
        return format!("{name}: no events\n");
    }
    let q = h.quantiles();
    format!(
        "{name}: count {}, p50 {} {val_type}, p99 {}, max {}\n{}",
        q.count,
        q.p50,
        q.p99,
        q.max,
        log2_hist(val_type, &h.log2_buckets())
    )
}

/// The run-wide histograms of `watch`.
pub fn run_hists(h: &RunHists, sessions: usize) -> String {
    if sessions == 0 {
        return String::new();
    }
    let mut s = format!("\nHistograms of all {sessions} session(s):\n");
    for (name, unit, hist) in [
        ("write latency", "usecs", &h.io.write_lat_us),
        ("write size", "bytes", &h.io.write_size),
        ("fsync latency", "usecs", &h.io.fsync_lat_us),
        ("block I/O latency", "usecs", &h.io.disk_lat_us),
        ("fork latency", "usecs", &h.fork_us),
        ("COW copies per interval", "pages", &h.cow_per_interval),
    ] {
        s.push('\n');
        s.push_str(&named_hist(name, unit, hist));
    }
    s
}

/// The diagnosis of each session, for the end of a `watch` run.
pub fn diagnoses(ends: &[SessionEnd], host: &HostFacts) -> String {
    let mut s = String::new();
    if ends.is_empty() {
        return s;
    }
    s.push_str("\nDiagnosis:\n");
    for e in ends {
        s.push_str(&format!(
            "session {} {} (parent {}, child {}, {:.1}s, {}):\n",
            e.session,
            e.kind.as_str(),
            e.parent_pid,
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            exit_text(e)
        ));
        for line in diagnose(e, host) {
            s.push_str(&format!("  {line}\n"));
        }
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
            cow: CowSummary::new(
                &p,
                &CowCounters::default(),
                Some(4 << 20),
                &Timeline::new(0),
            ),
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
        assert_eq!(
            l,
            "   1.000s START session 3 aof-rewrite parent 10 child 11 fork 1.5 ms, parent RSS 1.00 GiB"
        );
        let l = watch_line(&Record::SessionEnd(end_rec()), 0).unwrap();
        assert!(
            l.contains("END   session 3 rdb-bgsave")
                && l.contains("COW 1.0 MiB (256 pages: parent 256, child 0) = 25.0% of parent RSS"),
            "{l}"
        );
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
        let mut one = KeptEnds::default();
        one.push(end_rec());
        let s = summary(&one, &end);
        assert!(
            s.contains("1 session(s) in 2.0s (duration)") && s.contains("lost events: 0"),
            "{s}"
        );
        let many: Vec<SessionEnd> = (1..=25)
            .map(|i| SessionEnd {
                session: i,
                cow: CowSummary {
                    bytes: i * 4096,
                    ..end_rec().cow
                },
                ..end_rec()
            })
            .collect();
        let mut kept = KeptEnds::default();
        for e in many {
            kept.push(e);
        }
        assert_eq!(
            (kept.total(), kept.sessions().len()),
            (25, SUMMARY_MAX_SESSIONS)
        );
        let text = summary(&kept, &end);
        assert!(text.contains("... and 5 more session(s)"), "{text}");
        assert!(
            text.contains("session  25 ") && !text.contains("session   5 "),
            "{text}"
        );
        end.lost_events = 5;
        end.lost_cow_events = 5;
        assert!(summary(&KeptEnds::default(), &end).contains("LOST EVENTS: 5 COW"));
    }

    #[test]
    fn interval_lines() {
        use crate::view::store::{IntervalRow, Rates};
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

    #[test]
    fn log2_hist_like_bcc() {
        let text = log2_hist("usecs", &[(1, 2), (16, 42), (64, 1)]);
        let want = "
     usecs               : count    distribution
         0 -> 1          : 2        |*                                       |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 42       |****************************************|
        32 -> 63         : 0        |                                        |
        64 -> 127        : 1        |                                        |
";
        assert_eq!(format!("\n{text}"), want);
        assert_eq!(log2_hist("usecs", &[]), "");
        // Past 2^32 the columns widen, as in bcc.
        assert!(
            log2_hist("bytes", &[(1 << 40, 1)])
                .starts_with(&format!("{:15}{:<29} : count", "", "bytes"))
        );
    }

    #[test]
    fn end_of_watch_histograms_and_diagnosis() {
        use crate::view::store::RunHists;
        let mut h = RunHists::default();
        assert_eq!(run_hists(&h, 0), "");
        h.fork_us.record(1500);
        let text = run_hists(&h, 1);
        assert!(text.contains("Histograms of all 1 session(s):"), "{text}");
        assert!(text.contains("write latency: no events"), "{text}");
        assert!(
            text.contains("fork latency: count 1, p50 1500 usecs, p99 1500, max 1500\n     usecs "),
            "{text}"
        );
        assert!(
            text.contains("      1024 -> 2047       : 1        |****"),
            "{text}"
        );
        let host = HostFacts {
            thp: Some("never".into()),
            overcommit_memory: Some(1),
        };
        let d = diagnoses(&[end_rec()], &host);
        assert!(d.starts_with("\nDiagnosis:\nsession 3 rdb-bgsave (parent 10, child 11, 1.5s, exit 0):\n  COW copied 1.0 MiB"), "{d}");
        assert_eq!(diagnoses(&[], &host), "");
    }
}
